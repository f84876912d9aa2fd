//! RFC 9457 problem details: every refusal the gateway gives.
//!
//! `type` is `/problems/<slug>` (relative to the listener; the slugs are listed in
//! the README), `title` is fixed per slug, `detail` says precisely what was wrong
//! in this request — without echoing the request's data.

use serde::Serialize;

use crate::core::refusal::{Kind, Refusal};

/// A refusal: status, problem slug and a precise detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: u16,
    pub slug: &'static str,
    pub detail: String,
    /// The submission an idempotency conflict refers to.
    pub submission_id: Option<String>,
    /// Seconds a client should wait before trying again (`Retry-After`).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    submission_id: Option<&'a str>,
}

impl Problem {
    pub fn new(status: u16, slug: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            slug,
            detail: detail.into(),
            submission_id: None,
            retry_after: None,
        }
    }

    /// The same, answered with `Retry-After: seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, slug, detail)
    }

    /// The `title` of a problem type.
    pub fn title(&self) -> &'static str {
        match self.slug {
            "client-certificate-required" => "Client certificate required",
            "client-certificate-expired" => "Client certificate expired",
            "client-certificate-not-yet-valid" => "Client certificate not yet valid",
            "client-certificate-untrusted" => "Client certificate from an untrusted CA",
            "client-certificate-revoked" => "Client certificate revoked",
            "client-certificate-invalid" => "Client certificate not acceptable",
            "unknown-client" => "Unknown client",
            "portal-rate-limited" => "Too many submissions from this portal",
            "portal-too-many-uploads" => "Too many uploads at once from this portal",
            "leistung-not-allowed" => "Leistung or destination not allowed for this portal",
            "no-route" => "No route for this Leistung and destination",
            "body-too-large" => "Request body too large",
            "part-too-large" => "Part too large",
            "too-many-parts" => "Too many parts",
            "unsupported-media-type" => "Unsupported media type",
            "multipart-malformed" => "Malformed multipart body",
            "body-incomplete" => "Request body incomplete",
            "reload-refused" => "The config was not reloaded",
            "part-missing" => "Required part missing",
            "part-duplicate" => "Part sent twice",
            "part-unknown" => "Unknown part",
            "metadata-invalid" => "Invalid metadata",
            "attachment-invalid" => "Invalid attachment",
            "data-not-utf8" => "Data is not UTF-8",
            "xml-malformed" => "XML not well-formed",
            "xml-doctype" => "DOCTYPE not allowed",
            "xml-entity" => "Entity reference not allowed",
            "xml-too-deep" => "XML nested too deeply",
            "xml-too-many-attributes" => "Too many attributes on an XML element",
            "xml-too-many-elements" => "Too many XML elements",
            "xml-value-too-large" => "XML attribute value or text too large",
            "xml-encoding" => "XML encoding not supported",
            "json-malformed" => "JSON not well-formed",
            "json-too-deep" => "JSON nested too deeply",
            "json-too-many-values" => "Too many JSON values",
            "data-too-complex" => "Data too costly to check",
            "schema-violation" => "Data does not match the Leistung's schema",
            "idempotency-key-invalid" => "Invalid Idempotency-Key",
            "idempotency-conflict" => "Idempotency-Key reused with other content",
            "request-timeout" => "Request not completed in time",
            "metadata-first" => "The metadata part must come first",
            "transfer-coding-unsupported" => "Transfer coding not supported",
            "content-coding-unsupported" => "Content coding not supported",
            "not-found" => "Not found",
            "operators-only" => "Only for operators",
            "portals-only" => "Only for portals",
            "wrong-state" => "Not possible in the delivery's state",
            "query-invalid" => "Invalid query",
            "method-not-allowed" => "Method not allowed",
            "unavailable" => "Temporarily unavailable",
            "busy" => "Too many request bodies in memory",
            "too-many-connections" => "Too many connections of this client",
            "internal" => "Internal error",
            _ => "Request refused",
        }
    }

    /// The problem+json body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&Body {
            kind: format!("/problems/{}", self.slug),
            title: self.title(),
            status: self.status,
            detail: &self.detail,
            submission_id: self.submission_id.as_deref(),
        })
        .unwrap_or_default()
    }
}

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Self {
        let status = match r.kind {
            Kind::Invalid => 400,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::Timeout => 408,
            Kind::Conflict => 409,
            Kind::TooLarge => 413,
            Kind::UnsupportedMediaType => 415,
            Kind::Unprocessable => 422,
            Kind::Internal => 500,
            Kind::Unavailable => 503,
        };
        Problem {
            status,
            slug: r.slug,
            detail: r.detail,
            submission_id: r.submission_id,
            retry_after: None,
        }
    }
}
