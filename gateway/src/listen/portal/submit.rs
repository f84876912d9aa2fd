//! `POST /v1/submissions`: read the form, let the core check, seal and store it,
//! answer `202` with the receipt once it is durable.

use std::sync::Arc;

use http::{header, StatusCode};

use super::body::BodyStream;
use super::budget::{counted, Held};
use super::form::{read_form, Form};
use super::{json_response, HttpResponse, Ingest};
use crate::core::intake::Incoming;
use crate::listen::problem::Problem;
use crate::model::portal::Portal;

impl Ingest {
    pub(super) async fn submit(
        &self,
        portal: Arc<Portal>,
        head: &http::request::Parts,
        body: BodyStream,
    ) -> Result<HttpResponse, Problem> {
        let limits_now = self.limits.load_full();
        let limits = &*limits_now;
        // Before anything of the body is read: this portal's rate and uploads at once.
        let _slot = self.quota.admit(&portal, limits)?;
        let headers = &head.headers;
        let idempotency_key = match headers.get("idempotency-key") {
            None => None,
            Some(v) => {
                let key = v.to_str().ok().filter(|k| {
                    !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic())
                });
                Some(
                    key.ok_or_else(|| {
                        Problem::bad_request(
                            "idempotency-key-invalid",
                            "Idempotency-Key must be 1 to 255 visible ASCII characters",
                        )
                    })?
                    .to_owned(),
                )
            }
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let boundary = multer::parse_boundary(content_type).map_err(|_| {
            Problem::new(
                415,
                "unsupported-media-type",
                "the body must be multipart/form-data with a boundary",
            )
        })?;
        if let Some(len) = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > limits.max_body.0 {
                return Err(Problem::new(
                    413,
                    "body-too-large",
                    format!(
                        "Content-Length {len} exceeds the limit of {} bytes",
                        limits.max_body.0
                    ),
                ));
            }
        }
        // The body's bytes stay counted against the budget until this request is answered.
        let held = Arc::new(Held::default());
        let Form {
            metadata,
            data,
            attachments,
        } = {
            let body = counted(body, self.body_budget.clone(), held.clone());
            let form = read_form(body, boundary, limits, |md| {
                self.intake.authorize(&portal, md).map(|_| ())
            })
            .await;
            match form {
                Err(_) if held.exhausted() => {
                    return Err(Problem::new(
                        503,
                        "busy",
                        "the gateway holds as many request bodies as its memory budget allows; nothing was accepted, retry shortly",
                    ))
                }
                other => other?,
            }
        };
        self.intake.checks.check(&metadata, &data).await?;

        let bytes: u64 =
            data.data.len() as u64 + attachments.iter().map(|a| a.data.len() as u64).sum::<u64>();
        let answer = self
            .intake
            .accept(Incoming {
                portal: portal.clone(),
                metadata: metadata.clone(),
                data,
                attachments,
                idempotency_key,
            })
            .await?;
        super::count_accepted(
            &self.metrics,
            &answer,
            &portal,
            &metadata,
            bytes,
            "portal API",
        );
        let mut resp = json_response(StatusCode::ACCEPTED, answer.body);
        if let Ok(v) =
            header::HeaderValue::from_str(&format!("/v1/submissions/{}", answer.submission_id))
        {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        if answer.replayed {
            resp.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    }
}
