//! The portal API on the ingest listener (HTTPS, client certificates).
//!
//! Thin by design: identify the portal, parse the request within its limits,
//! call the core, answer. Routes:
//!
//! - `POST /v1/submissions` — `multipart/form-data` with `metadata`, `data` and
//!   `attachment` parts; `202` once durable, with the signed receipt ([`submit`]).
//! - `GET /v1/submissions/{id}[/trace|/proof]` — status per target, Laufzettel,
//!   inclusion proofs; for the submitting portal only.
//! - `POST /v1/submissions/{id}/replies`, `/v1/replies…` — the way back: a
//!   target's reply, a portal's reply box ([`replies`]).
//! - `/v1/admin/…` — the operators' queue tools ([`operator`]).
//!
//! Every refusal is a [`Problem`] (RFC 9457), counted in
//! `ozg_requests_refused{listener="ingest",reason=...}`, and stores nothing.

pub(crate) mod body;
pub(crate) mod budget;
pub mod form;
pub mod quota;
mod replies;
mod submit;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;

use crate::config::Limits;
use crate::core::intake::Intake;
use crate::core::metrics::Metrics;
use crate::core::status::Submissions;
use crate::listen::identity::Client;
use crate::listen::problem::Problem;
use crate::model::portal::Portal;
use body::{SharedBody, LINGER};
pub use form::{read_form, Form};

/// Shared state of the ingest listener.
pub struct Ingest {
    pub intake: Arc<Intake>,
    pub submissions: Submissions,
    /// Request limits; replaced by a reload (read once per request).
    pub limits: arc_swap::ArcSwap<Limits>,
    pub metrics: Arc<Metrics>,
    /// What request bodies may hold in memory at once, in bytes (see `budget`).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Each portal's submission rate and uploads at once (see `quota`).
    pub quota: quota::PortalQuota,
    /// Replies of the targets, and the portals' reply boxes.
    pub replies: Arc<crate::core::replies::Replies>,
}

pub type HttpResponse = Response<Full<Bytes>>;

/// Renders a problem and counts the refusal.
pub fn problem_response(metrics: &Metrics, listener: &'static str, p: &Problem) -> HttpResponse {
    metrics.refuse(listener, p.slug);
    let mut resp = Response::new(Full::new(Bytes::from(p.body())));
    *resp.status_mut() = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if let Some(seconds) = p.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
    } else if p.status == 503 {
        // Nothing was accepted; the condition is usually over within seconds.
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    }
    if matches!(p.status, 403 | 408 | 413 | 429 | 501) {
        // The rest of the body is not read; the connection cannot be reused.
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// Counts and logs an accepted submission (or the replay of one), whichever
/// listener took it (`via`).
pub(crate) fn count_accepted(
    metrics: &Metrics,
    answer: &crate::core::intake::Answer,
    portal: &Portal,
    metadata: &crate::core::intake::Metadata,
    bytes: u64,
    via: &'static str,
) {
    if answer.replayed {
        metrics.replayed.inc();
        tracing::info!(submission_id = %answer.submission_id, portal = %portal.id, via, "idempotent replay answered");
    } else {
        metrics.accepted.inc();
        metrics.accepted_bytes.inc_by(bytes);
        tracing::info!(
            submission_id = %answer.submission_id,
            portal = %portal.id,
            leistung = %metadata.leistung,
            destination = %metadata.destination,
            bytes,
            via,
            "submission accepted"
        );
    }
}

pub(crate) fn json_response(status: StatusCode, body: String) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Transfer and content codings the gateway does not decode are refused, not
/// passed on undecoded: only `chunked` transfer coding and identity content.
fn codings_refused(head: &http::request::Parts) -> Option<Problem> {
    for value in head.headers.get_all(header::TRANSFER_ENCODING) {
        let text = value.to_str().unwrap_or("?");
        if text
            .split(',')
            .any(|c| !c.trim().eq_ignore_ascii_case("chunked"))
        {
            return Some(Problem::new(
                501,
                "transfer-coding-unsupported",
                format!(
                    "Transfer-Encoding {text:?} is not supported; send the body as is or chunked"
                ),
            ));
        }
    }
    for value in head.headers.get_all(header::CONTENT_ENCODING) {
        let text = value.to_str().unwrap_or("?");
        if !text.trim().eq_ignore_ascii_case("identity") {
            return Some(Problem::new(
                415,
                "content-coding-unsupported",
                format!("Content-Encoding {text:?} is not supported; send the body uncompressed"),
            ));
        }
    }
    None
}

/// A `200` with `value` as JSON.
fn json_body(value: &impl serde::Serialize) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(_) => problem_body(&Problem::new(500, "internal", "encoding the answer failed")),
    }
}

/// A problem's answer without counting it (the caller counts).
fn problem_body(p: &Problem) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(p.body())));
    *resp.status_mut() = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    resp
}

impl Ingest {
    /// Handles one request of an identified portal (or refuses the connection's client).
    pub async fn handle(
        self: Arc<Self>,
        client: Result<Client, Problem>,
        req: Request<Body>,
    ) -> HttpResponse {
        let (head, body) = req.into_parts();
        let body = SharedBody::new(body);
        let admin = head.uri.path().starts_with("/v1/admin/");
        // A coding the gateway would not decode is refused before any route runs.
        let client = match codings_refused(&head) {
            Some(p) if client.is_ok() => Err(p),
            _ => client,
        };
        let result = match client {
            // The operator API is on the admin listener.
            Ok(_) if admin => Err(Problem::new(
                404,
                "not-found",
                "the operator API is served by the admin listener under /admin/v1/ ([admin] listen)",
            )),
            Ok(Client::Portal(portal)) => self.route(portal, &head, &body).await,
            Ok(Client::Replier(targets)) => self.route_replier(targets, &head, &body).await,
            Ok(Client::Operator(o)) => Err(Problem::new(
                403,
                "portals-only",
                format!(
                    "{} is an operator; submissions are made by registered portals, and the operator API is on the admin listener",
                    o.id
                ),
            )),
            Err(p) => Err(p),
        };
        match result {
            Ok(resp) => resp,
            Err(p) => {
                // Read (and discard) what the client is still sending, within bounds, so
                // the refusal reaches it instead of being lost to a TCP reset. A client
                // that ran out of time gets no more.
                if p.status != 408 {
                    body.drain(self.limits.load().max_body.0.saturating_mul(4), LINGER)
                        .await;
                }
                problem_response(&self.metrics, "ingest", &p)
            }
        }
    }

    async fn route(
        &self,
        portal: Arc<Portal>,
        head: &http::request::Parts,
        body: &SharedBody,
    ) -> Result<HttpResponse, Problem> {
        let path = head.uri.path();
        if path == "/v1/replies" || path.starts_with("/v1/replies/") {
            return self.route_replies(&portal, head).await;
        }
        match (&head.method, path.strip_prefix("/v1/submissions")) {
            (&Method::POST, Some("" | "/")) => {
                let started = Instant::now();
                match tokio::time::timeout(
                    self.limits.load().request_timeout,
                    self.submit(portal, head, body.stream()),
                )
                .await
                {
                    Ok(r) => {
                        if r.is_ok() {
                            self.metrics
                                .accept_seconds
                                .observe(started.elapsed().as_secs_f64());
                        }
                        r
                    }
                    Err(_) => Err(Problem::new(
                        408,
                        "request-timeout",
                        format!(
                            "the request was not completed within {:?}",
                            self.limits.load().request_timeout
                        ),
                    )),
                }
            }
            (&Method::GET, Some(rest)) => match submission_path(rest) {
                Some((id, View::Status)) => {
                    let s = self.submissions.status(&portal.id, id).await?;
                    Ok(json_body(&s))
                }
                Some((id, View::Trace)) => {
                    let events = self.submissions.trace(&portal.id, id).await?;
                    Ok(json_body(
                        &serde_json::json!({"submission_id": id, "events": events}),
                    ))
                }
                Some((id, View::Proof)) => {
                    Ok(json_body(&self.submissions.proof(&portal.id, id).await?))
                }
                None => Err(Problem::new(
                    404,
                    "not-found",
                    format!("no resource at {path}"),
                )),
            },
            (&Method::POST, Some(rest)) if rest.ends_with("/replies") => Err(Problem::new(
                403,
                "repliers-only",
                format!(
                    "portal {} sends submissions; replies come from the certificate of a target's Fachverfahren",
                    portal.id
                ),
            )),
            (_, Some(_)) => Err(Problem::new(
                405,
                "method-not-allowed",
                format!("{} is not allowed on {path}", head.method),
            )),
            _ => Err(Problem::new(
                404,
                "not-found",
                format!("no resource at {path}"),
            )),
        }
    }
}

/// `/{id}` → (id, false); `/{id}/trace` → (id, true).
/// What `GET /v1/submissions/{id}[/…]` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Status,
    Trace,
    Proof,
}

fn submission_path(rest: &str) -> Option<(&str, View)> {
    let rest = rest.strip_prefix('/')?;
    let (id, view) = if let Some(id) = rest.strip_suffix("/trace") {
        (id, View::Trace)
    } else if let Some(id) = rest.strip_suffix("/proof") {
        (id, View::Proof)
    } else {
        (rest, View::Status)
    };
    (!id.is_empty() && !id.contains('/')).then_some((id, view))
}
