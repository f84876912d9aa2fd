//! The XTA 2 listener (web service 2.1.1: SOAP 1.2 and WS-Addressing over
//! HTTPS with client certificates), for Fachverfahren and DMS that fetch
//! their messages from a message box and send with XTA.
//!
//! - [`soap`] reads a request envelope (bounded, no DOCTYPE) and writes faults;
//!   [`tree`] gives the operations its header blocks and body.
//! - [`ops`]: the message box (`getStatusList`, `getMessage`, `getNext…`,
//!   `close`) and management (`checkAccountActive`, `createMessageId`,
//!   `lookupService`, `getTransportReport`, `cancelMessage`); [`send`]:
//!   `sendMessage` through the same intake as the portal API.
//! - [`reply`] writes the answers.
//!
//! The caller's accounts come from its client certificate: a registered
//! portal sends under its `xta_account`, a reader reads the boxes of the
//! `xta` targets pinned to its certificate. An `Author` header naming another
//! account is refused. Every refusal is a SOAP 1.2 fault with the XTA
//! exception, counted in `ozg_requests_refused{listener="xta"}`, and changes
//! nothing.

mod ops;
pub mod reply;
mod send;
pub mod soap;
pub mod tree;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;

use crate::core::mailbox::{BoxError, MessageBoxes};
use crate::core::refusal::{Kind, Refusal};
use crate::listen::identity::{Portals, XtaCaller};
use crate::listen::portal::body::SharedBody;
use crate::listen::portal::budget::{counted, read_all, Held, ReadAllError};
use crate::listen::portal::{HttpResponse, Ingest};
use crate::listen::problem::Problem;
use crate::listen::server::Service;
use crate::listen::tls::PeerCert;
use soap::Exception;

/// The XTA listener's state: the portal API's intake, limits and metrics, and
/// the message boxes.
pub struct Xta {
    pub ingest: Arc<Ingest>,
    pub boxes: Arc<MessageBoxes>,
    /// How the listener names itself in transport reports (`XTAServerIdentity`).
    pub identity: String,
}

/// An XTA fault: the exception, its code (code list
/// `urn:de:xta:webservice:codeliste:fehlernummer`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub exception: Exception,
    pub code: u16,
    pub reason: String,
}

/// Codes of the XTA error code list the gateway answers with.
pub mod code {
    /// The account is not known or not allowed this.
    pub const PERMISSION: u16 = 9012;
    /// A parameter is missing or not valid.
    pub const PARAMETER: u16 = 9020;
    /// The message id is already taken (another message was sent with it).
    pub const ID_TAKEN: u16 = 9024;
    /// A technical problem of the server.
    pub const TECHNICAL: u16 = 9030;
    /// The certificate does not belong to the account named.
    pub const NOT_THIS_ACCOUNT: u16 = 9014;
    /// Over a size limit.
    pub const SIZE: u16 = 9023;
    /// The message does not match its schema.
    pub const SCHEMA: u16 = 9050;
    /// The message is not in the encoding it must be in.
    pub const ENCODING: u16 = 9051;
    /// The message id is not known for the account.
    pub const UNKNOWN_ID: u16 = 9070;
    /// The service is offered asynchronously only.
    pub const ASYNC_ONLY: u16 = 9080;
    /// The message can no longer be cancelled.
    pub const CANCEL: u16 = 9100;
}

impl Fault {
    pub fn new(exception: Exception, code: u16, reason: impl Into<String>) -> Self {
        Fault {
            exception,
            code,
            reason: reason.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        Self::new(Exception::ParameterIsNotValid, code::PARAMETER, reason)
    }

    pub fn denied(reason: impl Into<String>) -> Self {
        Self::new(Exception::PermissionDenied, code::PERMISSION, reason)
    }

    pub fn technical(reason: impl Into<String>) -> Self {
        Self::new(Exception::TechnicalProblem, code::TECHNICAL, reason)
    }

    /// The metric's reason label.
    fn slug(&self) -> &'static str {
        match self.exception {
            Exception::PermissionDenied => "permission-denied",
            Exception::ParameterIsNotValid => "parameter-not-valid",
            Exception::InvalidMessageId => "invalid-message-id",
            Exception::TechnicalProblem => "technical-problem",
            Exception::MessageSchemaViolation => "schema-violation",
            Exception::CancelDenied => "cancel-denied",
            Exception::SyncAsync => "sync-not-offered",
        }
    }
}

impl From<BoxError> for Fault {
    fn from(e: BoxError) -> Self {
        match &e {
            BoxError::Unknown(_) | BoxError::Closed(_) => {
                Fault::new(Exception::InvalidMessageId, code::UNKNOWN_ID, e.to_string())
            }
            BoxError::NotYours(_) => Fault::denied(e.to_string()),
            BoxError::NotCancellable { .. } => {
                Fault::new(Exception::CancelDenied, code::CANCEL, e.to_string())
            }
            BoxError::Store(inner) => {
                tracing::error!(error = %inner, "message box store error");
                Fault::technical(
                    "the message store cannot be read or written right now; retry later",
                )
            }
        }
    }
}

impl From<Refusal> for Fault {
    fn from(r: Refusal) -> Self {
        match r.kind {
            Kind::Forbidden => Fault::denied(r.detail),
            Kind::Conflict => Fault::new(Exception::ParameterIsNotValid, code::ID_TAKEN, r.detail),
            Kind::Unavailable | Kind::Internal | Kind::Timeout => Fault::technical(r.detail),
            // The Antragsdaten themselves are refused (not well-formed, too
            // complex, not matching the Leistung's schema).
            _ if r.slug == "xml-encoding" => {
                Fault::new(Exception::MessageSchemaViolation, code::ENCODING, r.detail)
            }
            _ if ["xml-", "json-", "schema-", "data-"]
                .iter()
                .any(|p| r.slug.starts_with(p)) =>
            {
                Fault::new(Exception::MessageSchemaViolation, code::SCHEMA, r.detail)
            }
            _ => Fault::invalid(r.detail),
        }
    }
}

impl From<Problem> for Fault {
    fn from(p: Problem) -> Self {
        match p.status {
            403 => Fault::denied(p.detail),
            500..=599 => Fault::technical(p.detail),
            _ => Fault::invalid(p.detail),
        }
    }
}

/// An answer of the listener.
fn soap_response(status: StatusCode, xml: String, close: bool) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(xml)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/soap+xml; charset=utf-8"),
    );
    if close {
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

impl Service for Xta {
    type Client = XtaCaller;
    const NAME: &'static str = "xta";

    fn identify(portals: &Portals, cert: &PeerCert) -> Option<XtaCaller> {
        portals.identify_xta(cert)
    }

    fn client_key(client: &XtaCaller) -> String {
        format!("xta {}", client.accounts())
    }

    fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    async fn handle(
        self: Arc<Self>,
        client: Result<XtaCaller, Problem>,
        req: Request<Body>,
    ) -> HttpResponse {
        let (head, body) = req.into_parts();
        let body = SharedBody::new(body);
        let limits = self.ingest.limits.load_full();
        let answer = match client {
            Err(p) => {
                // The fault answers the request's operation where the request
                // is small enough to read for that (an unknown client's is
                // never read further).
                let (action, relates) = self.peek(&body).await;
                Err((action, relates, Fault::denied(p.detail)))
            }
            Ok(caller) => {
                match tokio::time::timeout(
                    limits.request_timeout,
                    self.serve(&caller, &head, &body, &limits),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err((
                        String::new(),
                        None,
                        Fault::technical(format!(
                            "the request was not completed within {:?}",
                            limits.request_timeout
                        )),
                    )),
                }
            }
        };
        match answer {
            Ok(xml) => soap_response(StatusCode::OK, xml, false),
            Err((action, relates_to, fault)) => {
                self.ingest.metrics.refuse("xta", fault.slug());
                // Before the request's action is known: WS-Addressing's fault action.
                let action = if action.is_empty() {
                    "http://www.w3.org/2005/08/addressing/soap/fault".to_owned()
                } else {
                    action
                };
                let xml = soap::fault(
                    &action,
                    relates_to.as_deref(),
                    fault.exception,
                    fault.code,
                    &fault.reason,
                );
                let status = StatusCode::from_u16(fault.exception.http_status())
                    .unwrap_or(StatusCode::BAD_REQUEST);
                // The rest of an unread body would be taken as the next request.
                soap_response(status, xml, true)
            }
        }
    }
}

/// Most bytes of an unidentified client's request read to answer its operation.
const PEEK: usize = 64 << 10;

/// A refused request: the action and request id it answers, and the fault.
type Refused = (String, Option<String>, Fault);

impl Xta {
    /// Reads the envelope within the limits and runs its operation.
    async fn serve(
        &self,
        caller: &XtaCaller,
        head: &http::request::Parts,
        body: &SharedBody,
        limits: &crate::config::Limits,
    ) -> Result<String, Refused> {
        let early = |f: Fault| (String::new(), None, f);
        if head.method != Method::POST {
            return Err(early(Fault::invalid(format!(
                "{} is not a SOAP request; XTA requests are POSTed",
                head.method
            ))));
        }
        let content_type = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !content_type.starts_with("application/soap+xml") {
            return Err(early(Fault::invalid(
                "the request must be SOAP 1.2 (Content-Type application/soap+xml); MTOM/XOP multipart requests are not taken: send the content inline as base64",
            )));
        }
        if head.headers.contains_key(header::CONTENT_ENCODING)
            || head
                .headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .any(|v| {
                    !v.to_str()
                        .unwrap_or("?")
                        .trim()
                        .eq_ignore_ascii_case("chunked")
                })
        {
            return Err(early(Fault::invalid(
                "send the request body as it is: no Content-Encoding, no transfer coding but chunked",
            )));
        }
        let (xml, _held) = self.read_body(body, limits).await.map_err(early)?;
        let request = soap::read(&xml).map_err(|e| early(Fault::invalid(e.to_string())))?;
        let action = request.action.clone();
        let relates = request.message_id.clone();
        let refused = |f: Fault| (action.clone(), relates.clone(), f);
        if let Some(author) = &request.author {
            if !caller.owns(&author.identifier) {
                return Err(refused(Fault::new(
                    Exception::PermissionDenied,
                    code::NOT_THIS_ACCOUNT,
                    format!(
                        "the client certificate does not belong to account {:?}",
                        author.identifier
                    ),
                )));
            }
        }
        let doc = tree::parse(&xml).map_err(|e| refused(Fault::invalid(e)))?;
        let call = ops::Call {
            xta: self,
            caller,
            request: &request,
            doc: &doc,
        };
        let body = call.run().await.map_err(refused)?;
        Ok(body)
    }

    /// The request body, within `max_body` and the memory budget.
    /// The action and request id of a request up to [`PEEK`] bytes, for a
    /// fault to an unidentified client; nothing for anything else.
    async fn peek(&self, body: &SharedBody) -> (String, Option<String>) {
        let held = Arc::new(Held::default());
        let mut stream = counted(body.stream(), self.ingest.body_budget.clone(), held);
        let mut xml = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            if xml.len() + chunk.len() > PEEK {
                return (String::new(), None);
            }
            xml.extend_from_slice(&chunk);
        }
        match soap::read(&xml) {
            Ok(r) => (r.action, r.message_id),
            Err(_) => (String::new(), None),
        }
    }

    /// The bytes stay counted against the budget while the `Held` lives.
    async fn read_body(
        &self,
        body: &SharedBody,
        limits: &crate::config::Limits,
    ) -> Result<(Vec<u8>, Arc<Held>), Fault> {
        use crate::listen::portal::budget::BodyError;
        read_all(body.stream(), self.ingest.body_budget.clone(), limits.max_body.0)
            .await
            .map_err(|e| match e {
                ReadAllError::TooLarge(max) => Fault::new(
                    Exception::ParameterIsNotValid,
                    code::SIZE,
                    format!("the request exceeds the limit of {max} bytes"),
                ),
                ReadAllError::Body(BodyError::Budget) => Fault::technical(
                    "the gateway holds as many request bodies as its memory budget allows; nothing was accepted, retry shortly",
                ),
                ReadAllError::Body(BodyError::Read(_)) => {
                    Fault::invalid("the request body could not be read")
                }
            })
    }
}
