//! SOAP 1.2 as XTA 2 (web service 2.1.1) uses it: reading a request envelope
//! and writing faults.
//!
//! A request is read once, bounded, with no DOCTYPE (and so no entities beyond
//! XML's five): the WS-Addressing headers (`Action` decides the operation — the
//! body element does not, several operations share one or have none), the
//! optional account header `oscimeta:Author/Identifier`, and where the body's
//! one element lies, for the operation to read. A header the caller marks
//! `mustUnderstand` that is not understood is refused, as SOAP 1.2 requires.

use std::ops::Range;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
/// OSCI transport metadata (`Author`, `MessageMetaData`).
pub const OSCIMETA: &str = "http://www.osci.eu/ws/2014/10/transport";
pub const XTA: &str = "http://xoev.de/transport/xta/211";
const ANONYMOUS: &str = "http://www.w3.org/2005/08/addressing/anonymous";

/// Deepest nesting read (XTA messages need far less).
const MAX_DEPTH: usize = 32;

/// The account a caller names in the `Author` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    /// `Identifier`'s text, e.g. `psw:01234567`.
    pub identifier: String,
    /// Its `type` attribute (`xoev` in practice).
    pub kind: String,
}

/// The body's element: its namespace, local name and bytes in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyElement {
    pub namespace: String,
    pub local: String,
    pub span: Range<usize>,
}

/// What a request envelope says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// `wsa:Action`: which operation.
    pub action: String,
    /// `wsa:MessageID`: the SOAP request's id (a reply's `RelatesTo`), never an
    /// XTA message id.
    pub message_id: Option<String>,
    pub author: Option<Author>,
    /// `None` for operations with an empty body.
    pub body: Option<BodyElement>,
}

/// Why a request envelope is refused; each becomes a SOAP fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    #[error("not well-formed XML at byte {0}")]
    Malformed(u64),
    #[error("a DOCTYPE is not allowed")]
    Doctype,
    #[error("nested deeper than {MAX_DEPTH} elements")]
    TooDeep,
    #[error("not a SOAP 1.2 envelope")]
    NotSoap12,
    #[error("the WS-Addressing header Action is missing")]
    NoAction,
    #[error("replies go back on the same connection: ReplyTo must be the anonymous address")]
    ReplyToNotAnonymous,
    #[error("the header {0} is marked mustUnderstand and is not understood")]
    MustUnderstand(String),
    #[error("the body holds more than one element")]
    BodyNotOne,
}

fn ns_of<'a>(r: &ResolveResult<'a>) -> &'a [u8] {
    match r {
        ResolveResult::Bound(Namespace(ns)) => ns,
        _ => b"",
    }
}

/// `mustUnderstand="true"` (or `1`) in the SOAP 1.2 namespace.
fn must_understand(reader: &NsReader<&[u8]>, e: &BytesStart) -> bool {
    e.attributes().flatten().any(|a| {
        let (ns, local) = reader.resolve_attribute(a.key);
        ns_of(&ns) == SOAP12.as_bytes()
            && local.as_ref() == b"mustUnderstand"
            && matches!(a.value.as_ref(), b"true" | b"1")
    })
}

/// Reads a request envelope (the caller bounds its size).
pub fn read(xml: &[u8]) -> Result<Request, SoapError> {
    let mut reader = NsReader::from_reader(xml);
    let mut req = Request::default();
    // The element path as (namespace, local name).
    let mut path: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut text_of: Option<&'static str> = None;
    let mut text = String::new();
    let mut author_kind = String::new();
    let mut body_start = None;
    loop {
        let before = reader.buffer_position();
        let (ns, event) = match reader.read_resolved_event() {
            Ok((ns, event)) => (ns_of(&ns).to_vec(), event),
            Err(_) => return Err(SoapError::Malformed(before)),
        };
        match event {
            Event::DocType(_) => return Err(SoapError::Doctype),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name().as_ref().to_vec();
                let empty = matches!(event, Event::Empty(_));
                if path.len() >= MAX_DEPTH {
                    return Err(SoapError::TooDeep);
                }
                match path.len() {
                    0 if ns != SOAP12.as_bytes() || local != b"Envelope" => {
                        return Err(SoapError::NotSoap12)
                    }
                    2 if path[1].1 == b"Header" => {
                        text_of = match (ns.as_slice(), local.as_slice()) {
                            (n, b"Action") if n == WSA.as_bytes() => Some("action"),
                            (n, b"MessageID") if n == WSA.as_bytes() => Some("message_id"),
                            (n, b"ReplyTo") if n == WSA.as_bytes() => None,
                            (n, b"To" | b"From" | b"FaultTo" | b"RelatesTo")
                                if n == WSA.as_bytes() =>
                            {
                                None
                            }
                            (n, b"Author") if n == OSCIMETA.as_bytes() => None,
                            (_, l) if must_understand(&reader, e) => {
                                return Err(SoapError::MustUnderstand(
                                    String::from_utf8_lossy(l).into_owned(),
                                ));
                            }
                            _ => None,
                        };
                    }
                    2 if path[1].1 == b"Body" => {
                        if req.body.is_some() || body_start.is_some() {
                            return Err(SoapError::BodyNotOne);
                        }
                        req.body = Some(BodyElement {
                            namespace: String::from_utf8_lossy(&ns).into_owned(),
                            local: String::from_utf8_lossy(&local).into_owned(),
                            span: before as usize..reader.buffer_position() as usize,
                        });
                        body_start = (!empty).then_some(before as usize);
                    }
                    3 if path[2].1 == b"ReplyTo" && local == b"Address" => {
                        text_of = Some("reply_to")
                    }
                    3 if path[2].1 == b"Author" && local == b"Identifier" => {
                        author_kind = e
                            .attributes()
                            .flatten()
                            .find(|a| a.key.as_ref() == b"type")
                            .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                            .unwrap_or_default();
                        text_of = Some("author");
                    }
                    _ => {}
                }
                if !empty {
                    path.push((ns, local));
                }
            }
            Event::Text(t) if text_of.is_some() => {
                let t = t
                    .decode()
                    .map_err(|_| SoapError::Malformed(reader.buffer_position()))?;
                text.push_str(&t);
            }
            // `&amp;` and `&#38;` come apart from the text around them.
            Event::GeneralRef(r) if text_of.is_some() => {
                let bad = || SoapError::Malformed(reader.buffer_position());
                match r.resolve_char_ref().map_err(|_| bad())? {
                    Some(c) => text.push(c),
                    None => {
                        let name = r.decode().map_err(|_| bad())?;
                        text.push_str(
                            quick_xml::escape::resolve_xml_entity(&name).ok_or_else(bad)?,
                        );
                    }
                }
            }
            Event::GeneralRef(_) => {}
            Event::End(_) => {
                if let Some(what) = text_of.take() {
                    let value = std::mem::take(&mut text).trim().to_owned();
                    match what {
                        "action" => req.action = value,
                        "message_id" => req.message_id = Some(value),
                        "reply_to" if value != ANONYMOUS => {
                            return Err(SoapError::ReplyToNotAnonymous)
                        }
                        "author" => {
                            req.author = Some(Author {
                                identifier: value,
                                kind: std::mem::take(&mut author_kind),
                            })
                        }
                        _ => {}
                    }
                }
                path.pop();
                if path.len() == 2 && path[1].1 == b"Body" {
                    if let (Some(start), Some(body)) = (body_start.take(), req.body.as_mut()) {
                        body.span = start..reader.buffer_position() as usize;
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if req.action.is_empty() {
        return Err(SoapError::NoAction);
    }
    Ok(req)
}

/// The XTA exceptions a fault carries (`xta:*Exception` in `s12:Detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    PermissionDenied,
    ParameterIsNotValid,
    InvalidMessageId,
    TechnicalProblem,
    MessageSchemaViolation,
    CancelDenied,
    SyncAsync,
}

impl Exception {
    fn element(self) -> &'static str {
        match self {
            Exception::PermissionDenied => "PermissionDeniedException",
            Exception::ParameterIsNotValid => "ParameterIsNotValidException",
            Exception::InvalidMessageId => "InvalidMessageIDException",
            Exception::TechnicalProblem => "XTAWSTechnicalProblemException",
            Exception::MessageSchemaViolation => "MessageSchemaViolationException",
            Exception::CancelDenied => "CancelDeniedException",
            Exception::SyncAsync => "SyncAsyncException",
        }
    }

    /// SOAP 1.2: the caller's fault (`Sender`, HTTP 400) or ours (`Receiver`, 500).
    pub fn http_status(self) -> u16 {
        match self {
            Exception::TechnicalProblem => 500,
            _ => 400,
        }
    }
}

/// A SOAP 1.2 fault with the XTA exception and its error code
/// (code list `urn:de:xta:webservice:codeliste:fehlernummer`), in reply to
/// `action` / `relates_to`.
pub fn fault(
    action: &str,
    relates_to: Option<&str>,
    exception: Exception,
    code: u16,
    reason: &str,
) -> String {
    use quick_xml::escape::escape;
    let value = match exception {
        Exception::TechnicalProblem => "s12:Receiver",
        _ => "s12:Sender",
    };
    let relates = relates_to
        .map(|r| format!("<wsa:RelatesTo>{}</wsa:RelatesTo>", escape(r)))
        .unwrap_or_default();
    let reply_id = uuid::Uuid::new_v4();
    let element = exception.element();
    let reason = escape(reason);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<s12:Envelope xmlns:s12=\"{SOAP12}\" xmlns:wsa=\"{WSA}\" xmlns:xta=\"{XTA}\"><s12:Header><wsa:Action>{}</wsa:Action><wsa:MessageID>urn:uuid:{reply_id}</wsa:MessageID>{relates}</s12:Header><s12:Body><s12:Fault><s12:Code><s12:Value>{value}</s12:Value></s12:Code><s12:Reason><s12:Text xml:lang=\"de\">{reason}</s12:Text></s12:Reason><s12:Detail><xta:{element}><xta:errorCode listURI=\"urn:de:xta:webservice:codeliste:fehlernummer\" listVersionID=\"1.0\"><code>{code}</code><name>{reason}</name></xta:errorCode></xta:{element}></s12:Detail></s12:Fault></s12:Body></s12:Envelope>\n",
        escape(action)
    )
}

#[cfg(test)]
mod tests;
