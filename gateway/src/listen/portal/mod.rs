//! The portal API on the ingest listener (HTTPS, client certificates).
//!
//! Thin by design: identify the portal, parse and check the request within
//! its limits, call the [`Pipeline`], answer. Routes:
//!
//! - `POST /v1/submissions` — `multipart/form-data` with `metadata`, `data` and
//!   `attachment` parts; `202` once durable, with the signed receipt.
//! - `GET /v1/submissions/{id}` — status per target, for the submitting portal only.
//!
//! Every refusal is a [`Problem`] (RFC 9457), counted in
//! `ozg_requests_refused{listener="ingest",reason=...}`, and stores nothing.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as Body;
use tokio::sync::Mutex;

use crate::config::Limits;
use crate::core::intake::validate;
use crate::core::intake::{Incoming, Metadata, Part, Pipeline};
use crate::core::metrics::Metrics;
use crate::daemon::setup::{Client, Portal};
use crate::listen::problem::Problem;

/// Shared state of the ingest listener.
pub struct Ingest {
    pub pipeline: Arc<Pipeline>,
    pub limits: Limits,
    pub schemas: std::collections::HashMap<String, Arc<jsonschema::Validator>>,
    pub xsds: std::collections::HashMap<String, Arc<crate::core::intake::xsd::XsdSchema>>,
    pub metrics: Arc<Metrics>,
}

pub type HttpResponse = Response<Full<Bytes>>;

/// How long a refused request's remaining body is read (at most 4 × `max_body`)
/// before the connection closes — as a web server's "lingering close" does.
const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// A pause in the client's sending that ends the lingering drain.
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_millis(250);

type BodyStream = BoxStream<'static, Result<Bytes, hyper::Error>>;

/// A request body that the parser streams from and that can still be drained
/// after the parser gave up on it.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Body>>);

impl SharedBody {
    fn new(body: Body) -> Self {
        SharedBody(Arc::new(Mutex::new(body)))
    }

    fn stream(&self) -> BodyStream {
        Box::pin(futures_util::stream::unfold(
            self.0.clone(),
            |body| async move {
                loop {
                    let frame = body.lock().await.frame().await;
                    match frame {
                        None => return None,
                        Some(Err(e)) => return Some((Err(e), body)),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                return Some((Ok(data), body));
                            }
                            // Trailers carry no data: read on.
                        }
                    }
                }
            },
        ))
    }

    /// Reads and discards up to `max` bytes for at most `time`.
    async fn drain(&self, max: u64, time: std::time::Duration) {
        let mut body = self.0.lock().await;
        let mut seen = 0u64;
        let _ = tokio::time::timeout(time, async {
            while seen < max {
                // A client that stopped sending is waiting for the answer: give it.
                match tokio::time::timeout(LINGER_IDLE, body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        seen += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0)
                    }
                    _ => break,
                }
            }
        })
        .await;
    }
}

/// Renders a problem and counts the refusal.
pub fn problem_response(metrics: &Metrics, listener: &'static str, p: &Problem) -> HttpResponse {
    metrics.refuse(listener, p.slug);
    let mut resp = Response::new(Full::new(Bytes::from(p.body())));
    *resp.status_mut() = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/problem+json"),
    );
    if p.status == 403 || p.status == 408 || p.status == 413 {
        // The rest of the body is not read; the connection cannot be reused.
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    resp
}

fn json_response(status: StatusCode, body: String) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
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
        let result = match client {
            Ok(Client::Portal(portal)) if !admin => self.route(portal, &head, &body).await,
            Ok(Client::Operator(operator)) if admin => self.operate(&operator, &head).await,
            Ok(Client::Portal(p)) => Err(Problem::new(
                403,
                "operators-only",
                format!(
                    "{} is a portal; /v1/admin/ is for registered operators",
                    p.id
                ),
            )),
            Ok(Client::Operator(o)) => Err(Problem::new(
                403,
                "portals-only",
                format!("{o} is an operator; submissions are made by registered portals"),
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
                    body.drain(self.limits.max_body.0.saturating_mul(4), LINGER)
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
        match (&head.method, path.strip_prefix("/v1/submissions")) {
            (&Method::POST, Some("" | "/")) => {
                let started = Instant::now();
                match tokio::time::timeout(
                    self.limits.request_timeout,
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
                            self.limits.request_timeout
                        ),
                    )),
                }
            }
            (&Method::GET, Some(rest)) => match submission_path(rest) {
                Some((id, View::Status)) => self.status(&portal, id).await,
                Some((id, View::Trace)) => self.trace(&portal, id, false).await,
                Some((id, View::Proof)) => self.trace(&portal, id, true).await,
                None => Err(Problem::new(
                    404,
                    "not-found",
                    format!("no resource at {path}"),
                )),
            },
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

    /// The operator API: list deliveries by state; retry or discard one.
    ///
    /// - `GET /v1/admin/deliveries?state=parked[&target=T]`
    /// - `POST /v1/admin/deliveries/{message_id}/retry` and `/discard`
    async fn operate(
        &self,
        operator: &str,
        head: &http::request::Parts,
    ) -> Result<HttpResponse, Problem> {
        use crate::store::{Action, DeliveryState, Operated};
        let unavailable = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "operator action failed");
            Problem::new(
                503,
                "unavailable",
                "the store cannot be reached right now; retry later",
            )
        };
        let path = head.uri.path();
        let rest = path
            .strip_prefix("/v1/admin/deliveries")
            .unwrap_or_default();
        if head.method == Method::GET && rest.is_empty() {
            let mut state = DeliveryState::Parked;
            let mut target = None;
            for pair in head
                .uri
                .query()
                .unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
            {
                match pair.split_once('=') {
                    Some(("state", v)) => {
                        state = DeliveryState::parse(v).ok_or_else(|| {
                            Problem::bad_request("query-invalid", format!("unknown state {v:?}"))
                        })?
                    }
                    Some(("target", v)) => target = Some(v.to_owned()),
                    _ => {
                        return Err(Problem::bad_request(
                            "query-invalid",
                            "allowed are state= and target=",
                        ))
                    }
                }
            }
            let rows = self
                .pipeline
                .store
                .deliveries(state, target.as_deref(), 1000)
                .await
                .map_err(unavailable)?;
            return Ok(json_response(
                StatusCode::OK,
                serde_json::json!({ "deliveries": rows }).to_string(),
            ));
        }
        let action = match (&head.method, rest.rsplit_once('/')) {
            (&Method::POST, Some((id, "retry"))) => (id, Action::Retry),
            (&Method::POST, Some((id, "discard"))) => (id, Action::Discard),
            _ => {
                return Err(Problem::new(
                    404,
                    "not-found",
                    format!("no operator resource {} {path}", head.method),
                ))
            }
        };
        let (message_id, action) = (action.0.trim_start_matches('/'), action.1);
        if message_id.is_empty() || message_id.contains('/') {
            return Err(Problem::new(
                404,
                "not-found",
                format!("no operator resource at {path}"),
            ));
        }
        match self.pipeline.store.operate(message_id, action, operator).await.map_err(unavailable)? {
            Operated::Done { target, state } => {
                if action == Action::Retry {
                    self.pipeline.wakers.wake(&target);
                }
                tracing::info!(message_id, operator, action = ?action, "operator action");
                Ok(json_response(
                    StatusCode::OK,
                    serde_json::json!({"message_id": message_id, "target": target, "state": state, "by": operator}).to_string(),
                ))
            }
            Operated::NotFound => Err(Problem::new(404, "not-found", format!("no delivery {message_id}"))),
            Operated::WrongState(s) => Err(Problem::new(
                409,
                "wrong-state",
                format!("delivery {message_id} is {}; only parked or waiting deliveries can be retried or discarded", s.as_str()),
            )),
        }
    }

    /// The Laufzettel: every audit record of the portal's own submission.
    /// The Laufzettel of an own submission, or (`proof`) the inclusion proofs of
    /// its records against the signed audit checkpoints.
    async fn trace(&self, portal: &Portal, id: &str, proof: bool) -> Result<HttpResponse, Problem> {
        let not_found = || {
            Problem::new(
                404,
                "not-found",
                format!("no submission {id} of portal {}", portal.id),
            )
        };
        let unavailable = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "reading a trace failed");
            Problem::new(
                503,
                "unavailable",
                "the trace cannot be read right now; retry later",
            )
        };
        match self
            .pipeline
            .store
            .submission(id)
            .await
            .map_err(unavailable)?
        {
            Some(s) if s.portal == portal.id => {}
            _ => return Err(not_found()),
        }
        if proof {
            let doc = self.pipeline.store.prove(id).await.map_err(unavailable)?;
            let body = serde_json::to_string(&doc).unwrap_or_default();
            return Ok(json_response(StatusCode::OK, body));
        }
        let records = self.pipeline.store.trace(id).await.map_err(unavailable)?;
        let body = serde_json::json!({"submission_id": id, "events": records});
        Ok(json_response(StatusCode::OK, body.to_string()))
    }

    async fn status(&self, portal: &Portal, id: &str) -> Result<HttpResponse, Problem> {
        let not_found = || {
            Problem::new(
                404,
                "not-found",
                format!("no submission {id} of portal {}", portal.id),
            )
        };
        if id.len() > 64 {
            return Err(not_found());
        }
        let status = self.pipeline.store.submission(id).await.map_err(|e| {
            tracing::error!(error = %e, "reading a submission failed");
            Problem::new(
                503,
                "unavailable",
                "the status cannot be read right now; retry later",
            )
        })?;
        match status {
            // Another portal's submission is reported as absent: its existence is not disclosed.
            Some(s) if s.portal == portal.id => Ok(json_response(
                StatusCode::OK,
                serde_json::to_string(&s)
                    .map_err(|_| Problem::new(500, "internal", "status encoding failed"))?,
            )),
            _ => Err(not_found()),
        }
    }

    async fn submit(
        &self,
        portal: Arc<Portal>,
        head: &http::request::Parts,
        body: BodyStream,
    ) -> Result<HttpResponse, Problem> {
        let limits = &self.limits;
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
        let Form {
            metadata,
            data,
            attachments,
        } = read_form(body, boundary, limits, |md| {
            self.pipeline.authorize(&portal, md).map(|_| ())
        })
        .await?;
        self.check_data(&metadata, &data)?;

        let bytes: u64 =
            data.data.len() as u64 + attachments.iter().map(|a| a.data.len() as u64).sum::<u64>();
        let answer = self
            .pipeline
            .accept(Incoming {
                portal: portal.clone(),
                metadata: metadata.clone(),
                data,
                attachments,
                idempotency_key,
            })
            .await?;
        if answer.replayed {
            self.metrics.replayed.inc();
            tracing::info!(submission_id = %answer.submission_id, portal = %portal.id, "idempotent replay answered");
        } else {
            self.metrics.accepted.inc();
            self.metrics.accepted_bytes.inc_by(bytes);
            tracing::info!(
                submission_id = %answer.submission_id,
                portal = %portal.id,
                leistung = %metadata.leistung,
                destination = %metadata.destination,
                bytes,
                "submission accepted"
            );
        }
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

    fn check_data(&self, md: &Metadata, data: &Part) -> Result<(), Problem> {
        let to_problem = |i: validate::Invalid| Problem::bad_request(i.slug, i.detail);
        let schema = self.schemas.get(&md.leistung);
        let mt = data.media_type.as_str();
        if mt == "application/xml" || mt == "text/xml" || mt.ends_with("+xml") {
            if schema.is_some() {
                return Err(Problem::new(
                    415,
                    "unsupported-media-type",
                    format!(
                        "Leistung {} expects JSON data matching its schema, not XML",
                        md.leistung
                    ),
                ));
            }
            validate::check_xml(&data.data, self.limits.max_xml_depth).map_err(to_problem)?;
            match self.xsds.get(&md.leistung) {
                // Only the position and libxml2's error code: its messages may quote the data.
                Some(xsd) => xsd.validate(&data.data).map_err(|(code, line)| {
                    Problem::new(
                        422,
                        "schema-violation",
                        format!(
                            "data does not match the XML Schema of Leistung {} at line {line} (libxml2 error {code})",
                            md.leistung
                        ),
                    )
                }),
                None => Ok(()),
            }
        } else if mt == "application/json" || mt.ends_with("+json") {
            if self.xsds.contains_key(&md.leistung) {
                return Err(Problem::new(
                    415,
                    "unsupported-media-type",
                    format!(
                        "Leistung {} expects XML data matching its XML Schema, not JSON",
                        md.leistung
                    ),
                ));
            }
            let value = validate::check_json(&data.data, self.limits.max_json_depth, "data")
                .map_err(to_problem)?;
            match schema {
                Some(v) => validate::check_schema(v, &value, &md.leistung)
                    .map_err(|i| Problem::new(422, i.slug, i.detail)),
                None => Ok(()),
            }
        } else {
            Err(Problem::new(
                415,
                "unsupported-media-type",
                format!("data part has media type {mt}; use application/xml or application/json"),
            ))
        }
    }
}

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
/// media type. The data itself is checked afterwards (see `check_data`).
pub async fn read_form<S, O, E>(
    body: S,
    boundary: String,
    limits: &Limits,
    mut authorize: impl FnMut(&Metadata) -> Result<(), Problem>,
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
                let md = parse_metadata(&body, limits.max_json_depth)?;
                // Authorise before reading further: an unauthorised portal sends no more data into us.
                authorize(&md)?;
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

fn parse_metadata(body: &[u8], max_depth: usize) -> Result<Metadata, Problem> {
    let value = validate::check_json(body, max_depth, "metadata").map_err(|i| {
        Problem::bad_request(
            if i.slug == "json-too-deep" {
                i.slug
            } else {
                "metadata-invalid"
            },
            i.detail,
        )
    })?;
    let md: Metadata = serde_json::from_value(value).map_err(|e| {
        // serde's messages name fields and expected types, not values.
        Problem::bad_request("metadata-invalid", format!("metadata: {e}"))
    })?;
    md.check()?;
    Ok(md)
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
