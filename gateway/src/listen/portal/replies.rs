//! The way back on the ingest listener:
//!
//! - a target's Fachverfahren (its `reply_client` certificate, or a message-box
//!   reader) sends `POST /v1/submissions/{id}/replies` and reads
//!   `GET /v1/submissions/{id}/replies/{reply_id}`;
//! - a portal that fetches its replies lists them (`GET /v1/replies?after=&limit=`),
//!   takes one as its sealed envelope (`GET /v1/replies/{reply_id}`) and
//!   acknowledges it (`POST /v1/replies/{reply_id}/ack`).

use std::sync::Arc;
use std::time::Instant;

use http::Method;

use super::body::SharedBody;
use super::{json_body, json_response, HttpResponse, Ingest};
use crate::core::mailbox::Closed;
use crate::listen::problem::Problem;
use crate::model::portal::Portal;
use crate::model::time::rfc3339_ms;

/// Replies listed in one page unless the portal asks for fewer.
const PAGE: usize = 100;

fn not_found(path: &str) -> Problem {
    Problem::new(404, "not-found", format!("no resource at {path}"))
}

fn method_not_allowed(method: &Method, path: &str) -> Problem {
    Problem::new(
        405,
        "method-not-allowed",
        format!("{method} is not allowed on {path}"),
    )
}

/// `after` and `limit` of a list request.
fn page_query(query: Option<&str>) -> Result<(Option<String>, usize), Problem> {
    let mut after = None;
    let mut limit = PAGE;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("after", v)) if !v.is_empty() => after = Some(v.to_owned()),
            Some(("limit", v)) => {
                limit = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    Problem::bad_request("query-invalid", "limit must be a whole number from 1")
                })?
            }
            _ => {
                return Err(Problem::bad_request(
                    "query-invalid",
                    "the query takes `after` (a reply id) and `limit`",
                ))
            }
        }
    }
    Ok((after, limit))
}

impl Ingest {
    /// Requests of a client that replies for `targets`.
    pub(super) async fn route_replier(
        &self,
        targets: Arc<[String]>,
        head: &http::request::Parts,
        body: &SharedBody,
    ) -> Result<HttpResponse, Problem> {
        let path = head.uri.path();
        let rest = path
            .strip_prefix("/v1/submissions/")
            .ok_or_else(|| {
                Problem::new(
                    403,
                    "repliers-only",
                    format!(
                        "this client certificate sends replies for {}: POST /v1/submissions/{{id}}/replies",
                        targets.join(", ")
                    ),
                )
            })?;
        let (submission_id, reply) = match rest.split_once("/replies") {
            Some((id, reply)) if !id.is_empty() && !id.contains('/') => (id, reply),
            _ => return Err(not_found(path)),
        };
        match (&head.method, reply) {
            (&Method::POST, "" | "/") => {
                let started = Instant::now();
                let timeout = self.limits.load().request_timeout;
                let r = tokio::time::timeout(
                    timeout,
                    self.reply(&targets, submission_id, head, body.stream()),
                )
                .await
                .map_err(|_| {
                    Problem::new(
                        408,
                        "request-timeout",
                        format!("the request was not completed within {timeout:?}"),
                    )
                })?;
                if r.is_ok() {
                    self.metrics
                        .accept_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                r
            }
            (&Method::GET, reply) => match reply.strip_prefix('/') {
                Some(reply_id) if !reply_id.is_empty() && !reply_id.contains('/') => {
                    let s = self
                        .replies
                        .status_for_replier(&targets, submission_id, reply_id)
                        .await?;
                    Ok(json_body(&s))
                }
                _ => Err(not_found(path)),
            },
            _ => Err(method_not_allowed(&head.method, path)),
        }
    }

    /// `/v1/replies…` of a portal.
    pub(super) async fn route_replies(
        &self,
        portal: &Portal,
        head: &http::request::Parts,
    ) -> Result<HttpResponse, Problem> {
        let path = head.uri.path();
        let rest = path.strip_prefix("/v1/replies").unwrap_or_default();
        match (&head.method, rest) {
            (&Method::GET, "" | "/") => {
                let (after, limit) = page_query(head.uri.query())?;
                let page = self.replies.list(portal, after, limit).await?;
                let replies: Vec<serde_json::Value> = page
                    .entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "reply_id": e.submission_id,
                            "message_id": e.message_id,
                            "in_reply_to": e.in_reply_to,
                            "received_at": e.received_at,
                            "offered_at": rfc3339_ms(e.offered_ms),
                            "size": e.size,
                        })
                    })
                    .collect();
                let next = page
                    .more
                    .then(|| page.entries.last().map(|e| e.submission_id.clone()))
                    .flatten();
                Ok(json_body(
                    &serde_json::json!({"replies": replies, "next_after": next}),
                ))
            }
            (&Method::GET, id) => match id.strip_prefix('/') {
                Some(id) if !id.is_empty() && !id.contains('/') => {
                    let fetched = self.replies.fetch(portal, id).await?;
                    let body = String::from_utf8(fetched.envelope).map_err(|_| {
                        Problem::new(500, "internal", "the stored envelope is not text")
                    })?;
                    Ok(json_response(http::StatusCode::OK, body))
                }
                _ => Err(not_found(path)),
            },
            (&Method::POST, id) => {
                match id.strip_prefix('/').and_then(|id| id.strip_suffix("/ack")) {
                    Some(id) if !id.is_empty() && !id.contains('/') => {
                        let closed = self.replies.ack(portal, id).await?;
                        tracing::info!(reply_id = %id, portal = %portal.id, "reply acknowledged by its portal");
                        Ok(json_body(&serde_json::json!({
                            "reply_id": id,
                            "acknowledged": match closed {
                                Closed::Now => "now",
                                Closed::Already => "before",
                            },
                        })))
                    }
                    _ => Err(not_found(path)),
                }
            }
            _ => Err(method_not_allowed(&head.method, path)),
        }
    }
}
