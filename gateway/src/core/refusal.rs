//! Why the core refuses a request, in its own terms: a kind (what the caller
//! should do about it), a stable slug (the problem type and the metrics label)
//! and a detail that names what was wrong without echoing the data. Listeners
//! turn it into their protocol's answer (RFC 9457 problems over HTTP).

/// What kind of refusal this is; each listener maps it to its protocol's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is malformed or its content is not acceptable as sent.
    Invalid,
    /// Well-formed, but the data does not match what is expected of it (a schema, a route).
    Unprocessable,
    /// The caller may not do this.
    Forbidden,
    /// Nothing of that name exists for this caller.
    NotFound,
    /// The media type is not one this request takes.
    UnsupportedMediaType,
    /// A size or count limit.
    TooLarge,
    /// It contradicts what is stored (an idempotency key reused, a delivery in another state).
    Conflict,
    /// The request took too long.
    Timeout,
    /// The gateway cannot take it right now; nothing was changed; retry later.
    Unavailable,
    /// A fault of the gateway itself; nothing was changed.
    Internal,
}

/// A refusal: its kind, a stable slug and a precise detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Kind,
    /// e.g. `leistung-not-allowed`; listed in the README.
    pub slug: &'static str,
    pub detail: String,
    /// The submission an idempotency conflict refers to.
    pub submission_id: Option<String>,
}

impl Refusal {
    pub fn new(kind: Kind, slug: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            kind,
            slug,
            detail: detail.into(),
            submission_id: None,
        }
    }

    pub fn invalid(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, slug, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(Kind::Unavailable, "unavailable", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, "not-found", detail)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.slug, self.detail)
    }
}
