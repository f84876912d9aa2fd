//! Reading a submission's `multipart/form-data` body within the limits: which
//! parts, how large, how many, and the attachments' file names.

use bytes::{Bytes, BytesMut};

use crate::config::Limits;
use crate::core::intake::validate::DataLimits;
use crate::core::intake::{Metadata, Part};
use crate::core::refusal::Refusal;
use crate::listen::problem::Problem;

/// The parts of a submission as read from the multipart body.
#[derive(Debug)]
pub struct Form {
    pub metadata: Metadata,
    pub data: Part,
    pub attachments: Vec<Part>,
}

/// Reads and checks a `multipart/form-data` body within `limits`: exactly one
/// `metadata` (parsed, checked and handed to `authorize` as soon as it is read) and
/// one `data` part, any number of `attachment` parts with a plain file name and a
/// media type. The data itself is checked afterwards by the core.
pub async fn read_form<S, O, E>(
    body: S,
    boundary: String,
    limits: &Limits,
    mut authorize: impl FnMut(&Metadata) -> Result<(), Refusal>,
) -> Result<Form, Problem>
where
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
        let media_type = field.content_type().map(|m| m.essence_str().to_owned());
        let filename = field.file_name().map(str::to_owned);
        let mut buf = BytesMut::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_problem)? {
            buf.extend_from_slice(&chunk);
        }
        let body = buf.freeze();
        match name.as_str() {
            "metadata" => {
                if metadata.is_some() {
                    return Err(Problem::bad_request(
                        "part-duplicate",
                        "the metadata part was sent twice",
                    ));
                }
                let md = Metadata::parse(&body, &DataLimits::of(limits))?;
                // Authorise before reading further: an unauthorised portal sends no more data into us.
                authorize(&md).map_err(Problem::from)?;
                metadata = Some(md);
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
                data = Some(Part {
                    media_type,
                    filename: None,
                    data: body,
                });
            }
            _ => {
                let n = attachments.len() + 1;
                let filename = check_filename(filename, n)?;
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
    })
}

/// An attachment's file name is kept (encrypted) for the recipient, never used
/// as a path here; still, names that are paths or carry control characters are
/// refused so no receiver is tempted.
fn check_filename(name: Option<String>, n: usize) -> Result<String, Problem> {
    let bad =
        |why: &str| Problem::bad_request("attachment-invalid", format!("attachment {n}: {why}"));
    let name = name.ok_or_else(|| bad("no filename in its Content-Disposition"))?;
    if name.is_empty() || name.len() > 255 {
        return Err(bad("the filename must be 1 to 255 bytes"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(bad("the filename contains control characters"));
    }
    if name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err(bad("the filename must be a plain name, not a path"));
    }
    Ok(name)
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
        E::StreamReadFailed(_) => Problem::bad_request(
            "multipart-malformed",
            "the body could not be read completely",
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
