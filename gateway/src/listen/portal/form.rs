//! Reading a submission's `multipart/form-data` body within the limits: which
//! parts, how large, how many, and the attachments' file names.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::config::Limits;
use crate::core::intake::stream::{PartSeal, SealedPart, Stream, SEAL_PIECE, STREAM_ABOVE};
use crate::core::intake::{Metadata, Part};
use crate::core::refusal::Refusal;
use crate::listen::problem::Problem;

/// The parts of a submission as read from the multipart body.
#[derive(Debug)]
pub struct Form {
    pub metadata: Metadata,
    pub data: Part,
    pub attachments: Vec<Part>,
    /// Where large attachments were sealed as they arrived.
    pub stream: Option<Arc<Stream>>,
}

/// How a form's large attachments are sealed as they arrive (see
/// `core::intake::stream`).
pub struct Streaming<B, R> {
    /// Begins the submission's stream once its first attachment is large
    /// (`None`: hold the parts in memory).
    pub begin: B,
    /// Gives back to the body budget what was sealed and written out.
    pub release: R,
}

impl Streaming<fn(&Metadata) -> Result<Option<Arc<Stream>>, Refusal>, fn(usize)> {
    /// Every part held in memory.
    pub fn none() -> Self {
        Streaming {
            begin: |_| Ok(None),
            release: |_| {},
        }
    }
}

/// Reads and checks a `multipart/form-data` body within `limits`: exactly one
/// `metadata` (handed to `metadata` as soon as it is read, which parses,
/// checks and authorises it: a submission's, or a reply's made into one) and
/// one `data` part, any number of `attachment` parts with a plain file name and a
/// media type. The data itself is checked afterwards by the core.
pub async fn read_form<S, O, E, B, R>(
    body: S,
    boundary: String,
    limits: &Limits,
    mut metadata_of: impl FnMut(&[u8]) -> Result<Metadata, Refusal>,
    mut streaming: Streaming<B, R>,
) -> Result<Form, Problem>
where
    B: FnMut(&Metadata) -> Result<Option<Arc<Stream>>, Refusal>,
    R: Fn(usize),
    S: futures_util::Stream<Item = Result<O, E>> + Send + 'static,
    O: Into<Bytes> + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["metadata", "data", "attachment"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(limits.max_body.0)
                .per_field(limits.max_part.0)
                .for_field("metadata", limits.max_metadata.0),
        );
    let mut multipart = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut metadata: Option<Metadata> = None;
    let mut data: Option<Part> = None;
    let mut attachments = Vec::new();
    // Not asked yet (`None`), or the answer.
    let mut stream: Option<Option<Arc<Stream>>> = None;
    let mut count = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_problem)? {
        count += 1;
        if count > limits.max_parts {
            return Err(Problem::new(
                413,
                "too-many-parts",
                format!("more than {} parts", limits.max_parts),
            ));
        }
        let name = field.name().unwrap_or_default().to_owned();
        if metadata.is_none() && name != "metadata" {
            // Nothing of the data is read before the portal is known to be allowed.
            return Err(Problem::bad_request(
                "metadata-first",
                format!("the {name:?} part came before the metadata part; send metadata first"),
            ));
        }
        let media_type = field.content_type().map(|m| m.essence_str().to_owned());
        let filename = field.file_name().map(str::to_owned);
        // The chunks are kept as they come and joined once at the end: a buffer
        // grown while the part arrives would double its capacity as it fills,
        // holding up to twice the part (what the body budget counts) for as
        // long as the upload lasts, and copying it at every growth.
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut held = 0usize;
        let attachment = name == "attachment";
        // Set once this attachment is sealed as it arrives.
        let mut seal: Option<PartSeal> = None;
        while let Some(chunk) = field.chunk().await.map_err(multipart_problem)? {
            held += chunk.len();
            chunks.push(chunk);
            let due = match &seal {
                Some(_) => held >= SEAL_PIECE,
                None => attachment && held > STREAM_ABOVE,
            };
            if !due {
                continue;
            }
            if stream.is_none() {
                let md = metadata.as_ref().ok_or_else(|| {
                    Problem::bad_request("metadata-first", "send the metadata part first")
                })?;
                stream = Some((streaming.begin)(md)?);
            }
            if let Some(Some(s)) = &stream {
                let part = match seal.take() {
                    Some(p) => p,
                    None => s.part()?,
                };
                seal = Some(seal_pieces(part, std::mem::take(&mut chunks)).await?);
                (streaming.release)(std::mem::take(&mut held));
            }
        }
        let sealed = match seal {
            Some(part) => {
                let sealed = finish_sealed(part, std::mem::take(&mut chunks)).await?;
                (streaming.release)(held);
                Some(Arc::new(sealed))
            }
            None => None,
        };
        let body = match sealed {
            Some(_) => Bytes::new(),
            None => join(std::mem::take(&mut chunks)),
        };
        match name.as_str() {
            "metadata" => {
                if metadata.is_some() {
                    return Err(Problem::bad_request(
                        "part-duplicate",
                        "the metadata part was sent twice",
                    ));
                }
                // Authorised before reading further: an unauthorised client sends no more data into us.
                metadata = Some(metadata_of(&body)?);
            }
            "data" => {
                if data.is_some() {
                    return Err(Problem::bad_request(
                        "part-duplicate",
                        "the data part was sent twice",
                    ));
                }
                let media_type = media_type.ok_or_else(|| {
                    Problem::new(
                        415,
                        "unsupported-media-type",
                        "the data part needs a Content-Type (application/xml or application/json)",
                    )
                })?;
                data = Some(Part::held(media_type, None, body));
            }
            _ => {
                let n = attachments.len() + 1;
                let filename = check_filename(filename, n)?;
                if attachments
                    .iter()
                    .any(|a: &Part| a.filename.as_deref() == Some(filename.as_str()))
                {
                    return Err(Problem::bad_request(
                        "attachment-invalid",
                        format!("attachment {n}: another attachment has the same file name"),
                    ));
                }
                let media_type = media_type.ok_or_else(|| {
                    Problem::bad_request(
                        "attachment-invalid",
                        format!("attachment {n} has no Content-Type"),
                    )
                })?;
                attachments.push(Part {
                    media_type,
                    filename: Some(filename),
                    data: body,
                    sealed,
                });
            }
        }
    }
    Ok(Form {
        metadata: metadata
            .ok_or_else(|| Problem::bad_request("part-missing", "the metadata part is missing"))?,
        data: data
            .ok_or_else(|| Problem::bad_request("part-missing", "the data part is missing"))?,
        attachments,
        stream: stream.flatten(),
    })
}

/// Seals `chunks` into `part` on the blocking pool (hashing and encryption
/// are CPU work, the spool write a copy into the page cache).
async fn seal_pieces(mut part: PartSeal, chunks: Vec<Bytes>) -> Result<PartSeal, Problem> {
    tokio::task::spawn_blocking(move || {
        chunks.iter().try_for_each(|c| part.update(c))?;
        Ok::<_, Refusal>(part)
    })
    .await
    .map_err(|_| sealing_failed())?
    .map_err(Problem::from)
}

/// Seals the last `chunks` into `part` and ends it.
async fn finish_sealed(mut part: PartSeal, chunks: Vec<Bytes>) -> Result<SealedPart, Problem> {
    tokio::task::spawn_blocking(move || {
        chunks.iter().try_for_each(|c| part.update(c))?;
        part.finish()
    })
    .await
    .map_err(|_| sealing_failed())?
    .map_err(Problem::from)
}

fn sealing_failed() -> Problem {
    Problem::from(Refusal::new(
        crate::core::refusal::Kind::Internal,
        "internal",
        "sealing a part failed; the submission was not accepted",
    ))
}

/// One buffer of exactly the chunks' bytes (no copy for a single chunk).
fn join(mut chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut buf = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
    for c in &chunks {
        buf.extend_from_slice(c);
    }
    buf.freeze()
}

/// An attachment's file name is kept (encrypted) for the recipient, never used
/// as a path here; still, a name that a receiver's file system or its user could
/// be fooled by is refused: paths, control and bidirectional-override characters
/// (`Rechnung\u{202e}fdp.exe`), Windows device names (`CON`, `LPT1.txt`),
/// alternate data streams (`a.pdf:evil.exe`), a trailing dot or space. The name
/// is normalised to NFC, so look-alike spellings of one name are one name.
pub(crate) fn check_filename(name: Option<String>, n: usize) -> Result<String, Problem> {
    let bad =
        |why: &str| Problem::bad_request("attachment-invalid", format!("attachment {n}: {why}"));
    let name = name.ok_or_else(|| bad("no filename in its Content-Disposition"))?;
    let name = icu_normalizer::ComposingNormalizerBorrowed::new_nfc()
        .normalize(&name)
        .into_owned();
    if name.is_empty() || name.len() > 255 {
        return Err(bad("the filename must be 1 to 255 bytes"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(bad("the filename contains control characters"));
    }
    if name.chars().any(is_bidi_control) {
        return Err(bad(
            "the filename contains bidirectional text controls, which can disguise its extension",
        ));
    }
    if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err(bad("the filename must be a plain name, not a path"));
    }
    if name.contains(':') {
        return Err(bad(
            "the filename contains ':' (a drive or an alternate data stream)",
        ));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(bad("the filename ends with a dot or a space"));
    }
    if is_device_name(&name) {
        return Err(bad("the filename is a reserved device name on Windows"));
    }
    Ok(name)
}

/// Unicode's explicit bidirectional formatting characters (and the marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9`, with any extension, any case.
fn is_device_name(name: &str) -> bool {
    let stem = name
        .split('.')
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit()
            && stem.as_bytes()[3] != b'0')
}

fn multipart_problem(e: multer::Error) -> Problem {
    use multer::Error as E;
    match e {
        E::FieldSizeExceeded { limit, field_name } => Problem::new(
            413,
            "part-too-large",
            format!(
                "part {} exceeds the limit of {limit} bytes",
                field_name.as_deref().unwrap_or("(unnamed)")
            ),
        ),
        E::StreamSizeExceeded { limit } => Problem::new(
            413,
            "body-too-large",
            format!("the body exceeds the limit of {limit} bytes"),
        ),
        E::UnknownField {
            field_name: Some(name),
        } => {
            let shown: String = name.chars().filter(|c| !c.is_control()).take(40).collect();
            Problem::bad_request(
                "part-unknown",
                format!("unknown part {shown:?}; allowed are metadata, data and attachment"),
            )
        }
        E::UnknownField { field_name: None } => Problem::bad_request(
            "part-unknown",
            "a part has no name; every part needs Content-Disposition: form-data; name=...",
        ),
        // Not a malformed body: the client closed the connection or its body
        // stream broke off; counted apart so a vanished client is not mistaken
        // for a portal sending broken multipart.
        E::StreamReadFailed(_) => Problem::bad_request(
            "body-incomplete",
            "the body could not be read completely: the connection closed or broke off before its end",
        ),
        other => Problem::bad_request(
            "multipart-malformed",
            format!("malformed multipart body: {}", multipart_class(&other)),
        ),
    }
}

fn multipart_class(e: &multer::Error) -> &'static str {
    use multer::Error as E;
    match e {
        E::IncompleteFieldData { .. } => "a part ends before its boundary",
        E::IncompleteHeaders => "part headers are incomplete",
        E::ReadHeaderFailed(_) => "part headers cannot be parsed",
        E::DecodeHeaderName { .. } | E::DecodeHeaderValue { .. } => "a part header is not valid",
        E::IncompleteStream => "the body ends before the closing boundary",
        _ => "unexpected structure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disguised_reserved_and_stream_file_names_are_refused() {
        for name in [
            "Rechnung\u{202e}fdp.exe",
            "a\u{2066}b.pdf",
            "CON",
            "con.txt",
            "LPT1.pdf",
            "a.pdf:evil.exe",
            "C:scan.pdf",
            "scan.pdf.",
            "scan.pdf ",
            "../scan.pdf",
            "a\\b.pdf",
        ] {
            assert!(
                check_filename(Some(name.into()), 1).is_err(),
                "{name:?} accepted"
            );
        }
        for name in [
            "Nachweis.pdf",
            "COM0.txt",
            "console.log",
            "Ärztliches Attest.pdf",
        ] {
            assert_eq!(check_filename(Some(name.into()), 1).unwrap(), name);
        }
        // NFD (a + combining diaeresis) becomes NFC (ä): one name, one spelling.
        assert_eq!(
            check_filename(Some("Ma\u{308}rz.pdf".into()), 1).unwrap(),
            "M\u{e4}rz.pdf"
        );
    }
}
