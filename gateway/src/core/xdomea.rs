//! The xdomea payload profile: an application as an xdomea 3.0.0
//! `Geschaeftsgang.Geschaeftsgang.0201` message, packed with its primary
//! documents into `<ProzessID>_Geschaeftsgang.Geschaeftsgang.0201.zip` — the
//! form in which DMS/E-Akte systems import incoming cases.
//!
//! What is filled from what:
//! - `Kopf/ProzessID`: a UUID derived from submission id and target (one per
//!   delivery; a DMS's `EmpfangBestaetigen.0202` names it and nothing else);
//!   `Nachrichtentyp` 0201; `Erstellungszeitpunkt`: when the package was made;
//!   `Absender`: the portal (Institution, id as Kurzbezeichnung); `Empfaenger`:
//!   the destination as Behördenkennung (AGS); `SendendesSystem`: ozg-gateway,
//!   its version and the target id as instance; an
//!   `AnwendungsspezifischeErweiterung` carries submission id, receipt time,
//!   portal, Leistung and target (xdomea has no elements for them).
//! - `Hauptobjekt/Dokument`: the application (Typ `Antrag`, Betreff with the
//!   Leistung, the submission id as FremdesGeschaeftszeichen, the receipt date
//!   as Posteingangsdatum) whose primary document is the data part; every
//!   attachment is an `Anlage` of it with its own primary document, numbered
//!   in the order sent. Each file's media type, size and SHA-512 travel in an
//!   extension (xdomea 3.0.0 has no elements for them); the Dateiformat code
//!   comes from the media type (`100` "Sonstiges" with the extension for those
//!   the code list lacks, JSON among them).
//! - `ExternerGeschaeftsgang`: one Beteiligungsschritt (status 002, current),
//!   "Zur Bearbeitung" from the portal to the destination.
//!
//! File names in the package: the message as
//! `<ProzessID>_Geschaeftsgang.Geschaeftsgang.0201.xml`, each document as
//! `<UUID>_<name>` (the UUID first, as the schema requires; the name reduced to
//! safe ASCII), flat beside it; the original name in `DateinameOriginal`. The
//! same submission and target always give the same package (ids are derived,
//! times come from the submission).

use std::io::Write as _;

use aws_lc_rs::digest::{digest, Context, SHA256, SHA512};
use quick_xml::escape::escape;

/// One file of the application.
#[derive(Debug, Clone, Copy)]
pub struct File<'a> {
    /// The name the portal gave (the data part has none: `antrag.xml`/`.json`).
    pub name: Option<&'a str>,
    pub media_type: &'a str,
    pub bytes: &'a [u8],
}

/// What the package is made from.
#[derive(Debug, Clone)]
pub struct Application<'a> {
    pub submission_id: &'a str,
    /// RFC 3339, UTC.
    pub received_at: &'a str,
    pub portal: &'a str,
    pub leistung: &'a str,
    /// The destination's AGS (Amtlicher Gemeindeschlüssel).
    pub destination: &'a str,
    pub target: &'a str,
    pub data: File<'a>,
    pub attachments: &'a [File<'a>],
}

/// A built package.
#[derive(Debug, Clone)]
pub struct Package {
    pub process_id: String,
    /// `<ProzessID>_Geschaeftsgang.Geschaeftsgang.0201.zip`
    pub file_name: String,
    pub zip: Vec<u8>,
    /// The 0201 message (also inside the zip).
    pub message: String,
}

/// Why a package could not be made.
#[derive(Debug, thiserror::Error)]
pub enum XdomeaError {
    #[error("received_at {0:?} is not an RFC 3339 time")]
    Time(String),
    #[error("writing the zip: {0}")]
    Zip(String),
}

const MESSAGE: &str = "Geschaeftsgang.Geschaeftsgang.0201";
const NS: &str = "urn:xoev-de:xdomea:schema:3.0.0";
const EXTENSION_ID: &str = "urn:ozg-gateway:xdomea:antrag";
const FILE_EXTENSION_ID: &str = "urn:ozg-gateway:xdomea:datei";

/// A UUID (version 8) derived from the submission id and a label: the same
/// inputs give the same id, so a package can be rebuilt identically.
fn derived_uuid(submission_id: &str, label: &str) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"ozg-gateway xdomea\0");
    ctx.update(submission_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(label.as_bytes());
    let hash = ctx.finish();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The `ProzessID` of the package for one submission and target (what a DMS's
/// `EmpfangBestaetigen.0202` names): the delivery's message id, so a receipt
/// that arrives on its own (over XTA) finds its delivery.
pub fn process_id(submission_id: &str, target: &str) -> String {
    match uuid::Uuid::parse_str(submission_id) {
        Ok(id) => crate::model::submission::message_id(&id, target),
        Err(_) => derived_uuid(submission_id, &format!("prozess:{target}")),
    }
}

/// The Dateiformat code (code list `dateiformat` 1.0) of a media type, and the
/// extension to name when the code is `100` (Sonstiges).
fn format_code(media_type: &str, name: &str) -> (&'static str, Option<String>) {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let code = match media_type.to_ascii_lowercase().as_str() {
        "application/pdf" => "018",
        "application/xml" | "text/xml" => "030",
        "image/jpeg" => "011",
        "image/png" => "019",
        "image/tiff" => "024",
        "text/plain" => "045",
        "text/csv" => "002",
        "text/html" => "008",
        "application/msword" => "003",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "035",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "036",
        "application/vnd.oasis.opendocument.text" => "015",
        "message/rfc822" => "006",
        _ => {
            let other = if ext.is_empty() {
                media_type.rsplit('/').next().unwrap_or("bin").to_owned()
            } else {
                ext
            };
            return ("100", Some(other));
        }
    };
    (code, None)
}

/// A file name reduced to what every zip tool and file system takes: ASCII
/// letters, digits, `.`, `-`, `_`; at most 100 characters.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('.');
    let mut out: String = trimmed
        .chars()
        .rev()
        .take(100)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if out.is_empty() {
        out.push_str("datei");
    }
    out
}

/// A file as it goes into the package.
struct Entry<'a> {
    id: String,
    zip_name: String,
    original: String,
    file: File<'a>,
}

fn text(out: &mut String, tag: &str, value: &str) {
    out.push_str(&format!("<xdomea:{tag}>{}</xdomea:{tag}>", escape(value)));
}

fn institution(out: &mut String, wrapper: &str, portal: &str) {
    out.push_str(&format!("<xdomea:{wrapper}><xdomea:Institution>"));
    text(out, "Name", portal);
    text(out, "Kurzbezeichnung", portal);
    out.push_str(&format!("</xdomea:Institution></xdomea:{wrapper}>"));
}

fn authority(out: &mut String, wrapper: &str, ags: &str) {
    out.push_str(&format!(
        "<xdomea:{wrapper}><xdomea:Behoerdenkennung><xdomea:Behoerdenschluessel><code>{}</code></xdomea:Behoerdenschluessel><xdomea:Praefix><code>ags</code></xdomea:Praefix></xdomea:Behoerdenkennung></xdomea:{wrapper}>",
        escape(ags)
    ));
}

fn extension(out: &mut String, id: &str, name: &str, fields: &[(&str, &str)]) {
    out.push_str("<xdomea:AnwendungsspezifischeErweiterung>");
    text(out, "Kennung", id);
    text(out, "Name", name);
    for (k, v) in fields {
        out.push_str("<xdomea:Feld>");
        text(out, "Name", k);
        text(out, "Wert", v);
        out.push_str("</xdomea:Feld>");
    }
    out.push_str("</xdomea:AnwendungsspezifischeErweiterung>");
}

/// `Identifikation` … `Version` of a Dokument or Anlage (what both share).
fn document_body(
    out: &mut String,
    e: &Entry,
    subject: &str,
    received: &str,
    app: &Application,
    main: bool,
) {
    out.push_str("<xdomea:Identifikation>");
    text(out, "ID", &e.id);
    out.push_str("</xdomea:Identifikation><xdomea:AllgemeineMetadaten>");
    text(out, "Betreff", subject);
    out.push_str("</xdomea:AllgemeineMetadaten>");
    if main {
        text(out, "FremdesGeschaeftszeichen", app.submission_id);
    }
    text(out, "Posteingangsdatum", &received[..10]);
    if main {
        text(out, "Typ", "Antrag");
    }
    let (code, other) = format_code(e.file.media_type, &e.original);
    out.push_str("<xdomea:Version>");
    text(out, "Nummer", "1");
    out.push_str(&format!(
        "<xdomea:Format><xdomea:Name listURI=\"urn:xoev-de:xdomea:codeliste:dateiformat\" listVersionID=\"1.0\"><code>{code}</code></xdomea:Name>"
    ));
    if let Some(other) = other {
        text(out, "SonstigerName", &other);
    }
    out.push_str("<xdomea:Version></xdomea:Version><xdomea:Primaerdokument>");
    text(out, "Dateiname", &e.zip_name);
    text(out, "DateinameOriginal", &e.original);
    text(out, "DatumUhrzeit", app.received_at);
    out.push_str("</xdomea:Primaerdokument></xdomea:Format></xdomea:Version>");
}

fn file_extension(out: &mut String, e: &Entry) {
    let size = e.file.bytes.len().to_string();
    let sha512 = hex::encode(digest(&SHA512, e.file.bytes));
    extension(
        out,
        FILE_EXTENSION_ID,
        "Dateiangaben",
        &[
            ("MediaType", e.file.media_type),
            ("Groesse", &size),
            ("SHA-512", &sha512),
        ],
    );
}

/// The 0201 message for `app`, naming `entries` (data first, then attachments).
fn message(app: &Application, process_id: &str, created: &str, entries: &[Entry]) -> String {
    let mut out = String::with_capacity(8192);
    out.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xdomea:{MESSAGE} xmlns:xdomea=\"{NS}\"><xdomea:Kopf>"
    ));
    text(&mut out, "ProzessID", process_id);
    out.push_str(
        "<xdomea:Nachrichtentyp listURI=\"urn:xoev-de:xdomea:codeliste:nachrichtentyp\" listVersionID=\"2.0\"><code>0201</code><name>Geschaeftsgang.Geschaeftsgang</name></xdomea:Nachrichtentyp>",
    );
    text(&mut out, "Erstellungszeitpunkt", created);
    institution(&mut out, "Absender", app.portal);
    authority(&mut out, "Empfaenger", app.destination);
    out.push_str("<xdomea:SendendesSystem>");
    text(&mut out, "InstanzID", app.target);
    text(&mut out, "Produktname", "ozg-gateway");
    text(&mut out, "Version", env!("CARGO_PKG_VERSION"));
    out.push_str("</xdomea:SendendesSystem>");
    extension(
        &mut out,
        EXTENSION_ID,
        "Antragsuebermittlung",
        &[
            ("SubmissionID", app.submission_id),
            ("Eingangszeitpunkt", app.received_at),
            ("PortalID", app.portal),
            ("Leistungsschluessel", app.leistung),
            ("ZielsystemID", app.target),
        ],
    );
    out.push_str("<xdomea:EmpfangsbestaetigungAnInitiator>1</xdomea:EmpfangsbestaetigungAnInitiator><xdomea:EmpfangsbestaetigungAnVorgaenger>1</xdomea:EmpfangsbestaetigungAnVorgaenger></xdomea:Kopf><xdomea:Hauptobjekt><xdomea:Dokument>");
    let (main, attachments) = entries
        .split_first()
        .expect("the data part is always there");
    let subject = format!("Online-Antrag {}", app.leistung);
    document_body(&mut out, main, &subject, app.received_at, app, true);
    for (i, a) in attachments.iter().enumerate() {
        out.push_str("<xdomea:Anlage>");
        document_body(&mut out, a, &a.original, app.received_at, app, false);
        file_extension(&mut out, a);
        text(&mut out, "Nummer", &(i + 1).to_string());
        out.push_str("</xdomea:Anlage>");
    }
    file_extension(&mut out, main);
    out.push_str("</xdomea:Dokument></xdomea:Hauptobjekt><xdomea:ExternerGeschaeftsgang><xdomea:Identifikation>");
    text(
        &mut out,
        "ID",
        &derived_uuid(app.submission_id, &format!("geschaeftsgang:{}", app.target)),
    );
    out.push_str("</xdomea:Identifikation><xdomea:Beteiligungsschritt>");
    text(&mut out, "Nummer", "1");
    out.push_str("<xdomea:Status listURI=\"urn:xoev-de:xdomea:codeliste:beteiligungsstatus\" listVersionID=\"1.1\"><code>002</code></xdomea:Status><xdomea:Verfuegung>");
    institution(&mut out, "Ersteller", app.portal);
    authority(&mut out, "Adressat", app.destination);
    text(&mut out, "Erstellungsdatum", &created[..10]);
    text(&mut out, "Verfuegung", "Zur Bearbeitung");
    out.push_str(&format!(
        "</xdomea:Verfuegung></xdomea:Beteiligungsschritt></xdomea:ExternerGeschaeftsgang></xdomea:{MESSAGE}>\n"
    ));
    out
}

/// Builds the package for one target. `created` (RFC 3339) is the message's
/// Erstellungszeitpunkt; give the submission's receipt time for a package that
/// is the same whenever it is built.
pub fn build(app: &Application, created: &str) -> Result<Package, XdomeaError> {
    let time = time::OffsetDateTime::parse(
        app.received_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| XdomeaError::Time(app.received_at.to_owned()))?;
    if time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339).is_err()
    {
        return Err(XdomeaError::Time(created.to_owned()));
    }
    let process_id = process_id(app.submission_id, app.target);
    let data_name = match app.data.name {
        Some(n) => n.to_owned(),
        None if app.data.media_type.contains("json") => "antrag.json".to_owned(),
        None => "antrag.xml".to_owned(),
    };
    let mut entries = Vec::with_capacity(1 + app.attachments.len());
    for (i, (file, original)) in std::iter::once((app.data, data_name))
        .chain(app.attachments.iter().enumerate().map(|(i, a)| {
            (
                *a,
                a.name
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("anlage-{}", i + 1)),
            )
        }))
        .enumerate()
    {
        let id = derived_uuid(app.submission_id, &format!("datei:{}:{i}", app.target));
        entries.push(Entry {
            zip_name: format!("{id}_{}", safe_name(&original)),
            id,
            original,
            file,
        });
    }
    let message = message(app, &process_id, created, &entries);
    let stamp = zip::DateTime::from_date_and_time(
        time.year().clamp(1980, 2107) as u16,
        time.month() as u8,
        time.day(),
        time.hour(),
        time.minute(),
        time.second(),
    )
    .unwrap_or_default();
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(stamp);
    let zip_err = |e: &dyn std::fmt::Display| XdomeaError::Zip(e.to_string());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(format!("{process_id}_{MESSAGE}.xml"), options)
        .map_err(|e| zip_err(&e))?;
    zip.write_all(message.as_bytes()).map_err(|e| zip_err(&e))?;
    for e in &entries {
        zip.start_file(e.zip_name.as_str(), options)
            .map_err(|e| zip_err(&e))?;
        zip.write_all(e.file.bytes).map_err(|e| zip_err(&e))?;
    }
    let zip = zip.finish().map_err(|e| zip_err(&e))?.into_inner();
    Ok(Package {
        file_name: format!("{process_id}_{MESSAGE}.zip"),
        process_id,
        zip,
        message,
    })
}

#[cfg(test)]
mod tests;
