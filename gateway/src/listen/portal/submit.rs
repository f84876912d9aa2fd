//! `POST /v1/submissions` (a portal) and `POST /v1/submissions/{id}/replies`
//! (a target's Fachverfahren): read the form, let the core check, seal and
//! store it, answer `202` with the receipt once it is durable.

use std::sync::Arc;

use http::{header, StatusCode};

use super::body::BodyStream;
use super::budget::{counted, Held};
use super::form::{read_form, Form, Streaming};
use super::{json_response, HttpResponse, Ingest};
use crate::config::Limits;
use crate::core::intake::stream::Stream;
use crate::core::intake::validate::DataLimits;
use crate::core::intake::{Answer, Incoming, Metadata, Part, ReplyMetadata, Sender};
use crate::core::refusal::Refusal;
use crate::core::replies::IncomingReply;
use crate::listen::problem::Problem;
use crate::model::portal::Portal;

/// Begins a submission's stream once its metadata is known (see `form::Streaming`).
type BeginStream<'a> = dyn Fn(&Metadata) -> Result<Option<Arc<Stream>>, Refusal> + Sync + 'a;

/// What the request's head says about its form: the idempotency key and the
/// multipart boundary (after the declared length is checked).
struct FormHead {
    idempotency_key: Option<String>,
    boundary: String,
}

fn form_head(head: &http::request::Parts, limits: &Limits) -> Result<FormHead, Problem> {
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
    Ok(FormHead {
        idempotency_key,
        boundary,
    })
}

/// The `202` with the receipt, its `Location` and the replay marker.
fn accepted(answer: Answer, location: String) -> HttpResponse {
    let mut resp = json_response(StatusCode::ACCEPTED, answer.body);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if answer.replayed {
        resp.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    resp
}

impl Ingest {
    /// Reads the form within `limits` and the body budget; `metadata_of`
    /// parses and authorises its metadata part as soon as it arrives.
    async fn read(
        &self,
        body: BodyStream,
        boundary: String,
        limits: &Limits,
        metadata_of: impl FnMut(&[u8]) -> Result<Metadata, Refusal>,
        begin_stream: Option<&BeginStream<'_>>,
    ) -> Result<Form, Problem> {
        // The body's bytes stay counted against the budget until this request
        // is answered, except what was sealed and written out as it arrived.
        let held = Arc::new(Held::default());
        let body = counted(body, self.body_budget.clone(), held.clone());
        let streaming = Streaming {
            begin: |md: &Metadata| match begin_stream {
                Some(begin) => begin(md),
                None => Ok(None),
            },
            release: |n| held.release(n),
        };
        match read_form(body, boundary, limits, metadata_of, streaming).await {
            Err(_) if held.exhausted() => Err(Problem::new(
                503,
                "busy",
                "the gateway holds as many request bodies as its memory budget allows; nothing was accepted, retry shortly",
            )),
            other => other,
        }
    }

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
        let FormHead {
            idempotency_key,
            boundary,
        } = form_head(head, limits)?;
        let Form {
            metadata,
            data,
            attachments,
            stream,
        } = self
            .read(
                body,
                boundary,
                limits,
                |body| {
                    let md = Metadata::parse(body, &DataLimits::of(limits))?;
                    self.intake.authorize(&portal, &md)?;
                    Ok(md)
                },
                Some(&|md: &Metadata| self.intake.begin_stream(&portal, md)),
            )
            .await?;
        self.intake.checks.check(&metadata, &data).await?;
        if let Some(stream) = &stream {
            // The spooled ciphertext is durable before the store refers to it.
            stream.sync().await?;
        }

        let bytes: u64 = data.size() + attachments.iter().map(Part::size).sum::<u64>();
        let answer = self
            .intake
            .accept(Incoming {
                sender: Sender::Portal(portal.clone()),
                metadata: metadata.clone(),
                data,
                attachments,
                idempotency_key,
                stream,
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
        let location = format!("/v1/submissions/{}", answer.submission_id);
        Ok(accepted(answer, location))
    }

    /// A reply of a target's Fachverfahren (`targets`: those it replies for)
    /// to submission `submission_id`.
    pub(super) async fn reply(
        &self,
        targets: &[String],
        submission_id: &str,
        head: &http::request::Parts,
        body: BodyStream,
    ) -> Result<HttpResponse, Problem> {
        let limits_now = self.limits.load_full();
        let limits = &*limits_now;
        let FormHead {
            idempotency_key,
            boundary,
        } = form_head(head, limits)?;
        // Before anything of the body is read: may it answer this submission?
        let answering = self.replies.may_reply(targets, submission_id).await?;
        let mut reply_md = None;
        let Form {
            data, attachments, ..
        } = self
            .read(
                body,
                boundary,
                limits,
                |body| {
                    let md = ReplyMetadata::parse(body, &DataLimits::of(limits))?;
                    self.replies.check_type(&md.reply_type)?;
                    let as_submission = answering.metadata(&md);
                    reply_md = Some(md);
                    Ok(as_submission)
                },
                None,
            )
            .await?;
        let metadata = reply_md
            .ok_or_else(|| Problem::bad_request("part-missing", "the metadata part is missing"))?;
        let bytes: u64 =
            data.data.len() as u64 + attachments.iter().map(|a| a.data.len() as u64).sum::<u64>();
        let reply_type = metadata.reply_type.clone();
        let answer = self
            .replies
            .accept(IncomingReply {
                answering: answering.clone(),
                metadata,
                data,
                attachments,
                idempotency_key,
            })
            .await?;
        if answer.replayed {
            self.metrics.replayed.inc();
        } else {
            self.metrics.replies.inc();
        }
        tracing::info!(
            reply_id = %answer.submission_id,
            submission_id = %answering.submission_id,
            by = %answering.by,
            portal = %answering.portal,
            reply_type = %reply_type,
            bytes,
            replayed = answer.replayed,
            "reply accepted"
        );
        let location = format!(
            "/v1/submissions/{}/replies/{}",
            answering.submission_id, answer.submission_id
        );
        Ok(accepted(answer, location))
    }
}
