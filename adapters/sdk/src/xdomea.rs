//! What a receiver of xdomea packages may answer: the DMS's receipt
//! `Geschaeftsgang.EmpfangBestaetigen.0202`, which names the 0201 it confirms
//! by its `Kopf/ProzessID` (and nothing else). Adapters use [`confirmation`] to
//! recognise one in an answer and keep it as the delivery's receipt.

use quick_xml::events::Event;
use quick_xml::Reader;

/// The root element of a receipt.
pub const CONFIRMATION: &str = "Geschaeftsgang.EmpfangBestaetigen.0202";
/// The xdomea 3.0.0 namespace.
pub const NAMESPACE: &str = "urn:xoev-de:xdomea:schema:3.0.0";

/// Largest answer looked at.
const MAX: usize = 64 << 10;
/// Deepest element followed.
const MAX_DEPTH: usize = 16;

/// A recognised receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// The `ProzessID` of the confirmed 0201.
    pub process_id: String,
}

/// The receipt in `answer`, if it is one: a well-formed xdomea 3.0.0
/// `Geschaeftsgang.EmpfangBestaetigen.0202` with a `Kopf/ProzessID`. No DOCTYPE,
/// no entities beyond XML's own, at most 64 KiB and 16 levels; anything else is
/// no receipt.
pub fn confirmation(answer: &[u8]) -> Option<Confirmation> {
    if answer.len() > MAX {
        return None;
    }
    let mut reader = Reader::from_reader(answer);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut process_id = None;
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).ok()?;
        match event {
            Event::DocType(_) => return None,
            Event::Start(e) => {
                let name = e.name();
                let local = String::from_utf8_lossy(name.local_name().as_ref()).into_owned();
                if path.is_empty() {
                    if local != CONFIRMATION || !declares_namespace(&e) {
                        return None;
                    }
                } else if path.len() >= MAX_DEPTH {
                    return None;
                }
                path.push(local);
            }
            Event::Empty(_) if path.is_empty() => return None,
            Event::End(_) => {
                path.pop();
                if path.is_empty() {
                    break;
                }
            }
            Event::Text(t) if path.len() == 3 && path[1] == "Kopf" && path[2] == "ProzessID" => {
                let text = t.decode().ok()?.into_owned();
                process_id = Some(text.trim().to_owned());
            }
            Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
    process_id
        .filter(|p| !p.is_empty())
        .map(|process_id| Confirmation { process_id })
}

/// The root declares the xdomea 3.0.0 namespace (default or prefixed).
fn declares_namespace(e: &quick_xml::events::BytesStart) -> bool {
    e.attributes().flatten().any(|a| {
        let key = a.key.as_ref();
        (key == b"xmlns" || key.starts_with(b"xmlns:")) && a.value.as_ref() == NAMESPACE.as_bytes()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<xdomea:Geschaeftsgang.EmpfangBestaetigen.0202 xmlns:xdomea="urn:xoev-de:xdomea:schema:3.0.0">
  <xdomea:Kopf>
    <xdomea:ProzessID>ca5232c5-f44d-42eb-8514-d3b509be81ea</xdomea:ProzessID>
    <xdomea:Nachrichtentyp><code>0202</code></xdomea:Nachrichtentyp>
  </xdomea:Kopf>
</xdomea:Geschaeftsgang.EmpfangBestaetigen.0202>"#;

    #[test]
    fn a_0202_names_the_process_it_confirms() {
        assert_eq!(
            confirmation(OK.as_bytes()),
            Some(Confirmation {
                process_id: "ca5232c5-f44d-42eb-8514-d3b509be81ea".into()
            })
        );
    }

    #[test]
    fn anything_else_is_no_receipt() {
        let cases = [
            OK.replace("EmpfangBestaetigen.0202", "Geschaeftsgang.0201"),
            OK.replace("urn:xoev-de:xdomea:schema:3.0.0", "urn:other"),
            OK.replace(
                "<xdomea:ProzessID>ca5232c5-f44d-42eb-8514-d3b509be81ea</xdomea:ProzessID>",
                "",
            ),
            OK.replace(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                "<!DOCTYPE x [<!ENTITY a \"b\">]>",
            ),
            OK.replace("</xdomea:Kopf>", ""),
            "{\"receipt\":\"x\"}".to_owned(),
            format!("{OK}{}", " ".repeat(MAX)),
            format!(
                "<xdomea:Geschaeftsgang.EmpfangBestaetigen.0202 xmlns:xdomea=\"{NAMESPACE}\">{}",
                "<a>".repeat(40)
            ),
        ];
        for c in cases {
            assert_eq!(
                confirmation(c.as_bytes()),
                None,
                "{}",
                &c[..c.len().min(200)]
            );
        }
    }
}
