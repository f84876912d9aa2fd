//! The FIT-Connect listener: the OAuth2 token endpoint and the Submission and
//! Subscriber API v1 as the `fitconnect` SDKs call them. HTTPS with the
//! ingest listener's certificate; clients authenticate with client
//! credentials and bearer tokens, not certificates. Every refusal is a
//! problem document with FIT-Connect's problem `type` (the SDKs read it);
//! the token endpoint answers in OAuth2's own format.
//!
//! - `POST /token` — `grant_type=client_credentials`, `client_id`, `client_secret`.
//! - `GET|PATCH /v1/destinations/{id}`, `GET /v1/destinations/{id}/keys/{kid}`.
//! - `POST /v1/submissions`, `PUT /v1/submissions/{id}`,
//!   `PUT /v1/submissions/{id}/attachments/{aid}` (senders).
//! - `GET /v1/submissions`, `GET /v1/submissions/{id}`,
//!   `GET /v1/submissions/{id}/attachments/{aid}` (subscribers).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;

use crate::core::fitconnect::{FitError, Zustelldienst};
use crate::listen::portal::body::SharedBody;
use crate::listen::portal::budget::{read_all, Held, ReadAllError};
use crate::listen::portal::{HttpResponse, Ingest};
use crate::listen::problem::Problem;
use crate::listen::server::Service;

/// The FIT-Connect listener's state.
pub struct FitConnect {
    pub ingest: Arc<Ingest>,
    pub service: Arc<Zustelldienst>,
}

fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn json(status: u16, value: &serde_json::Value) -> HttpResponse {
    respond(status, "application/json", value.to_string())
}

/// `application/x-www-form-urlencoded` values.
fn form_value(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    for pair in text.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode_component(k)? == name {
            return decode_component(v);
        }
    }
    None
}

fn decode_component(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

impl Service for FitConnect {
    type Client = ();
    const NAME: &'static str = "fitconnect";

    fn anonymous() -> Option<()> {
        Some(())
    }

    fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    async fn handle(
        self: Arc<Self>,
        _client: Result<(), Problem>,
        req: Request<Body>,
    ) -> HttpResponse {
        let (head, body) = req.into_parts();
        let body = SharedBody::new(body);
        let limits = self.ingest.limits.load_full();
        let answer = tokio::time::timeout(
            limits.request_timeout,
            self.route(&head, &body, limits.max_body.0),
        )
        .await;
        match answer {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => self.problem(&e),
            Err(_) => self.problem(&FitError::new(
                408,
                "request-timeout",
                "Request timeout",
                "the request was not completed in time",
            )),
        }
    }
}

impl FitConnect {
    fn problem(&self, e: &FitError) -> HttpResponse {
        self.ingest.metrics.refuse("fitconnect", e.kind);
        let mut resp = respond(e.status, "application/problem+json", e.body());
        if e.status == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }

    async fn read(&self, body: &SharedBody, max: u64) -> Result<(Vec<u8>, Arc<Held>), FitError> {
        read_all(body.stream(), self.ingest.body_budget.clone(), max)
            .await
            .map_err(|e| match e {
                ReadAllError::TooLarge(_) => {
                    FitError::new(413, "payload-too-large", "Payload too large", e.to_string())
                }
                ReadAllError::Body(_) => FitError::unavailable(
                    "the request body could not be read or the gateway is busy; retry",
                ),
            })
    }

    async fn route(
        &self,
        head: &http::request::Parts,
        body: &SharedBody,
        max: u64,
    ) -> Result<HttpResponse, FitError> {
        let path = head.uri.path().trim_end_matches('/');
        if head.method == Method::GET && path == "/.well-known/jwks.json" {
            return Ok(json(
                200,
                &serde_json::json!({"keys": [self.service.signer.jwk]}),
            ));
        }
        if head.method == Method::POST && path == "/token" {
            let (form, _held) = self.read(body, 16 << 10).await?;
            return Ok(self.token(&form));
        }
        let Some(rest) = path.strip_prefix("/v1/") else {
            return Err(FitError::new(
                404,
                "not-found",
                "Not found",
                format!("no resource at {path}"),
            ));
        };
        let auth = head
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let client = self.service.authenticate(auth)?;
        let seg: Vec<&str> = rest.split('/').collect();
        let s = &self.service;
        let query = head.uri.query().unwrap_or_default();
        let number = |name: &str, default: usize| {
            form_value(query.as_bytes(), name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        match (&head.method, seg.as_slice()) {
            (&Method::GET, ["destinations", id]) => Ok(json(200, &s.describe(id)?)),
            (&Method::PATCH, ["destinations", id]) => {
                s.destination_for(&client, id)?;
                Ok(json(200, &s.describe(id)?))
            }
            (&Method::GET, ["destinations", id, "keys", kid]) => Ok(respond(
                200,
                "application/jwk+json",
                s.key(id, kid)?.to_string(),
            )),
            (&Method::POST, ["submissions"]) => {
                let (b, _held) = self.read(body, 1 << 20).await?;
                let create = serde_json::from_slice(&b)
                    .map_err(|e| FitError::invalid(format!("not a submission: {e}")))?;
                Ok(json(201, &s.create(&client, create).await?))
            }
            (&Method::GET, ["submissions"]) => Ok(json(
                200,
                &s.list(&client, number("offset", 0), number("limit", 100))
                    .await?,
            )),
            (&Method::PUT, ["submissions", id]) => {
                let (b, _held) = self.read(body, max).await?;
                let submit = serde_json::from_slice(&b)
                    .map_err(|e| FitError::invalid(format!("not a submit request: {e}")))?;
                Ok(json(202, &s.submit(&client, id, submit).await?))
            }
            (&Method::GET, ["submissions", id]) => {
                let stored = s.fetch(&client, id).await?;
                Ok(json(
                    200,
                    &serde_json::json!({
                        "destinationId": stored.destination_id,
                        "submissionId": stored.submission_id,
                        "caseId": stored.case_id,
                        "serviceType": stored.service_type,
                        "attachments": stored.attachments,
                        "encryptedMetadata": stored.encrypted_metadata,
                        "encryptedData": stored.encrypted_data,
                    }),
                ))
            }
            (&Method::PUT, ["submissions", id, "attachments", aid]) => {
                let (b, _held) = self.read(body, max).await?;
                s.put_attachment(&client, id, aid, &b).await?;
                Ok(respond(204, "text/plain", Bytes::new()))
            }
            (&Method::GET, ["cases", case, "events"]) => {
                Ok(json(200, &s.events(&client, case).await?))
            }
            (&Method::POST, ["cases", case, "events"]) => {
                let (b, _held) = self.read(body, 64 << 10).await?;
                let set = std::str::from_utf8(&b)
                    .map_err(|_| FitError::invalid("the event is not a compact JWS"))?;
                s.post_event(&client, case, set).await?;
                Ok(respond(204, "text/plain", Bytes::new()))
            }
            (&Method::GET, ["submissions", id, "attachments", aid]) => {
                let stored = s.fetch(&client, id).await?;
                let jwe = stored.attachment_jwes.get(*aid).ok_or_else(|| {
                    FitError::new(
                        404,
                        "attachment-not-found",
                        "Attachment not found",
                        format!("submission {id} has no attachment {aid}"),
                    )
                })?;
                Ok(respond(200, "application/jose", jwe.clone()))
            }
            _ => Err(FitError::new(
                404,
                "not-found",
                "Not found",
                format!("no {} {path}", head.method),
            )),
        }
    }

    /// The OAuth2 token endpoint (client credentials in the form).
    fn token(&self, form: &[u8]) -> HttpResponse {
        let oauth = |status: u16, error: &str, why: &str| {
            self.ingest.metrics.refuse("fitconnect", "token-refused");
            json(
                status,
                &serde_json::json!({"error": error, "error_description": why}),
            )
        };
        if form_value(form, "grant_type").as_deref() != Some("client_credentials") {
            return oauth(
                400,
                "unsupported_grant_type",
                "grant_type must be client_credentials",
            );
        }
        let (Some(id), Some(secret)) = (
            form_value(form, "client_id"),
            form_value(form, "client_secret"),
        ) else {
            return oauth(
                401,
                "invalid_client",
                "client_id and client_secret are required",
            );
        };
        match self.service.token(&id, &secret) {
            Some((token, lifetime)) => json(
                200,
                &serde_json::json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": lifetime.as_secs(),
                }),
            ),
            None => {
                tracing::info!(client = %id.chars().take(64).collect::<String>(), "FIT-Connect token refused");
                oauth(401, "invalid_client", "unknown client or wrong secret")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_decoded() {
        let f = b"grant_type=client_credentials&client_id=a%2Bb&client_secret=x+y%3D";
        assert_eq!(form_value(f, "client_id").as_deref(), Some("a+b"));
        assert_eq!(form_value(f, "client_secret").as_deref(), Some("x y="));
        assert_eq!(form_value(f, "scope"), None);
        assert_eq!(form_value(b"a=%zz", "a"), None);
    }
}
