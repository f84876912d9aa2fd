//! Writing XTA 2 answers: the SOAP 1.2 envelope with its WS-Addressing
//! headers, the OSCI message metadata of a message, and XTA's codes. Every
//! value is escaped; nothing of a message's content is written but its base64.

use quick_xml::escape::escape;

use super::soap::{OSCIMETA, SOAP12, WSA, XTA};
use crate::model::delivery::Boxed;
use crate::model::routing::Payload;

pub const OSCI: &str = "http://www.osci.eu/ws/2008/05/transport";

/// How the gateway writes XTA message ids: `urn:de:xta:messageid:<system>:<uuid>`,
/// the form XTA servers hand out.
const ID_PREFIX: &str = "urn:de:xta:messageid:ozg-gateway:";
/// The XTA service of a Leistung (its FIM Leistungsschlüssel).
const SERVICE_PREFIX: &str = "urn:de:fim:leika:leistung:";
/// A list-request id (`MsgBoxRequestID`) of this gateway.
const REQUEST_PREFIX: &str = "urn:de:ozg-gateway:xta:msgbox:";

/// The XTA message id of a delivery (or of a message id the gateway made).
pub fn xta_id(message_id: &str) -> String {
    format!("{ID_PREFIX}{message_id}")
}

/// The delivery's message id in an XTA message id (the bare id is taken too).
pub fn message_id(xta_id: &str) -> &str {
    let id = xta_id.trim();
    id.strip_prefix(ID_PREFIX).unwrap_or(id)
}

/// The XTA service of a Leistung.
pub fn service(leistung: &str) -> String {
    format!("{SERVICE_PREFIX}{leistung}")
}

/// The Leistung an XTA service names (`urn:de:fim:leika:leistung:<key>`, or the bare key).
pub fn leistung(service: &str) -> &str {
    let s = service.trim();
    s.strip_prefix(SERVICE_PREFIX).unwrap_or(s)
}

/// Where a reader's list stands: what `getNextStatusList` / `getNextMessage`
/// continue from. Carried in the `MsgBoxRequestID` itself, so any instance
/// can answer the next request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The last message listed or fetched.
    pub after: Option<String>,
    /// Entries per list.
    pub limit: usize,
}

impl Cursor {
    pub fn request_id(&self) -> String {
        format!(
            "{REQUEST_PREFIX}{}:{}",
            self.limit,
            self.after.as_deref().unwrap_or("-")
        )
    }

    /// A request id this gateway gave out, or `None`.
    pub fn parse(request_id: &str) -> Option<Cursor> {
        let rest = request_id.trim().strip_prefix(REQUEST_PREFIX)?;
        let (limit, after) = rest.split_once(':')?;
        let limit = limit.parse().ok()?;
        let after = match after {
            "-" => None,
            a if !a.is_empty() && a.len() <= 64 && a.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(a.to_owned())
            }
            _ => return None,
        };
        Some(Cursor { after, limit })
    }
}

/// A SOAP 1.2 answer to `action` (XTA answers with the request's action),
/// relating to the request's `MessageID`.
pub fn envelope(action: &str, relates_to: Option<&str>, headers: &str, body: &str) -> String {
    let relates = relates_to
        .map(|r| format!("<wsa:RelatesTo>{}</wsa:RelatesTo>", escape(r)))
        .unwrap_or_default();
    let id = uuid::Uuid::new_v4();
    let body = if body.is_empty() {
        "<s12:Body/>".to_owned()
    } else {
        format!("<s12:Body>{body}</s12:Body>")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<s12:Envelope xmlns:s12=\"{SOAP12}\" xmlns:wsa=\"{WSA}\" xmlns:xta=\"{XTA}\" xmlns:osci=\"{OSCI}\" xmlns:oscimeta=\"{OSCIMETA}\"><s12:Header><wsa:Action>{}</wsa:Action><wsa:MessageID>urn:uuid:{id}</wsa:MessageID>{relates}{headers}</s12:Header>{body}</s12:Envelope>\n",
        escape(action)
    )
}

/// An `oscimeta:Identifier` of an account.
fn identifier(account: &str) -> String {
    format!(
        "<oscimeta:Identifier type=\"xoev\">{}</oscimeta:Identifier>",
        escape(account)
    )
}

/// What the opened envelope holds, as XTA's message type: the xdomea message,
/// or the gateway's envelope of raw parts.
fn message_type(payload: Payload) -> (&'static str, &'static str) {
    match payload {
        Payload::Xdomea => (
            "Geschaeftsgang.Geschaeftsgang.0201",
            "urn:xoev-de:xdomea:schema:3.0.0",
        ),
        Payload::Raw => ("ozg-gateway.envelope", "urn:de:ozg-gateway:envelope:1"),
    }
}

/// The `oscimeta:MessageMetaData` of a message in a box.
pub fn metadata(entry: &Boxed, reader: &str, payload: Payload) -> String {
    let (code, schema) = message_type(payload);
    let offered = crate::model::time::rfc3339_ms(entry.offered_ms);
    format!(
        "<oscimeta:MessageMetaData><oscimeta:DeliveryAttributes><oscimeta:Origin>{origin}</oscimeta:Origin><oscimeta:Delivery>{offered}</oscimeta:Delivery></oscimeta:DeliveryAttributes><oscimeta:Originators><oscimeta:Author>{author}</oscimeta:Author></oscimeta:Originators><oscimeta:Destinations><oscimeta:Reader>{reader}</oscimeta:Reader></oscimeta:Destinations><oscimeta:MsgIdentification><wsa:MessageID>{id}</wsa:MessageID></oscimeta:MsgIdentification><oscimeta:Qualifier><oscimeta:Service>{service}</oscimeta:Service><oscimeta:BusinessScenario><oscimeta:Undefined>OZG-Antrag</oscimeta:Undefined></oscimeta:BusinessScenario><oscimeta:MessageType listURI=\"urn:de:payloadSchema:elementName\" listVersionID=\"1.0\" payloadSchema=\"{schema}\"><code>{code}</code></oscimeta:MessageType></oscimeta:Qualifier>{size}</oscimeta:MessageMetaData>",
        origin = escape(&entry.received_at),
        author = identifier(&entry.portal),
        reader = identifier(reader),
        id = escape(xta_id(&entry.message_id)),
        service = escape(service(&entry.leistung)),
        size = msg_size(entry.size),
    )
}

/// `oscimeta:MsgSize` (a positive integer: left out for nothing).
pub fn msg_size(size: u64) -> String {
    match size.min(i32::MAX as u64) {
        0 => String::new(),
        n => format!("<oscimeta:MsgSize>{n}</oscimeta:MsgSize>"),
    }
}

/// `osci:MsgBoxResponse`: the request id to continue with, and how many
/// entries are left (or that none matched).
pub fn box_response(cursor: &Cursor, pending: Option<usize>) -> String {
    let inner = match pending {
        Some(n) => format!("<osci:ItemsPending>{n}</osci:ItemsPending>"),
        None => "<osci:NoMessageAvailable reason=\"http://www.osci.eu/ws/2008/05/transport/MsgBox/reasons/NoMatch\"/>".to_owned(),
    };
    format!(
        "<osci:MsgBoxResponse MsgBoxRequestID=\"{}\">{inner}</osci:MsgBoxResponse>",
        escape(cursor.request_id())
    )
}

/// The content container of a fetched message: the sealed envelope, still
/// end-to-end encrypted, as the message's one content item.
pub fn content(message_id: &str, envelope: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        "<xta:GenericContentContainer><xta:ContentContainer><xta:Message contentType=\"application/json\" filename=\"{}.json\" size=\"{}\">{}</xta:Message></xta:ContentContainer></xta:GenericContentContainer>",
        escape(message_id),
        envelope.len(),
        base64::engine::general_purpose::STANDARD.encode(envelope)
    )
}

/// One line of a transport report (`xta:RecordType`).
pub fn record(ts: &str, code: &str, reason: &str) -> String {
    format!(
        "<xta:Timestamp>{}</xta:Timestamp><xta:Code listURI=\"urn:de:ozg-gateway:codeliste:audit-event\" listVersionID=\"1\"><code>{}</code></xta:Code><xta:Reason>{}</xta:Reason>",
        escape(ts),
        escape(code),
        escape(reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_services_and_cursors_go_back_and_forth() {
        let id = "0190b2c4-1f00-8000-8000-000000000001";
        assert_eq!(message_id(&xta_id(id)), id);
        assert_eq!(message_id(id), id);
        assert_eq!(leistung(&service("99050012104000")), "99050012104000");
        let c = Cursor {
            after: Some(id.into()),
            limit: 50,
        };
        assert_eq!(Cursor::parse(&c.request_id()), Some(c));
        let first = Cursor {
            after: None,
            limit: 1,
        };
        assert_eq!(Cursor::parse(&first.request_id()), Some(first));
        assert_eq!(Cursor::parse("urn:other:1:-"), None);
        assert_eq!(Cursor::parse("urn:de:ozg-gateway:xta:msgbox:x:-"), None);
        assert_eq!(
            Cursor::parse("urn:de:ozg-gateway:xta:msgbox:5:a b"),
            None,
            "no spaces in an id"
        );
    }

    #[test]
    fn values_are_escaped() {
        let e = envelope("a<b", Some("x&y"), "", "");
        assert!(e.contains("<wsa:Action>a&lt;b</wsa:Action>"));
        assert!(e.contains("<wsa:RelatesTo>x&amp;y</wsa:RelatesTo>"));
        assert!(e.contains("<s12:Body/>"));
    }
}
