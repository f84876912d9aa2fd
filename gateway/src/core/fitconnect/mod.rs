//! The gateway as a FIT-Connect Zustelldienst (Submission and Subscriber API
//! v1, as the `fitconnect` SDKs use it): API clients and their tokens, the
//! destinations with their published encryption keys ([`keys`]), and the
//! submissions ([`submissions`]).
//!
//! The sender encrypted everything for the destination: the gateway stores
//! the JWEs as they came and never sees plaintext. A submitted submission is
//! one delivery to the destination's message box (target
//! `fitconnect:<destination>`), from which its subscriber fetches it.

pub mod callback;
pub mod events;
pub mod keys;
pub mod submissions;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::core::privacy::PrivacyKey;
use crate::model::routing::PatternSet;
use crate::store::{Staging, Store};
pub use token::Tokens;

/// The problem types FIT-Connect clients know (RFC 9457 `type` after this prefix).
pub const PROBLEM_PREFIX: &str = "https://schema.fitko.de/fit-connect/submission-api/problems/";

/// The target a destination's submissions are delivered to: its message box.
pub fn box_target(destination: &str) -> String {
    format!("fitconnect:{destination}")
}

/// Why a FIT-Connect request is refused: HTTP status, problem type (after
/// [`PROBLEM_PREFIX`]), title and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub status: u16,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
}

impl FitError {
    pub fn new(
        status: u16,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        FitError {
            status,
            kind,
            title,
            detail: detail.into(),
        }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(400, "request-invalid", "Invalid request", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(403, "access-denied", "Access denied", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(503, "service-unavailable", "Service unavailable", detail)
    }

    /// The problem document (the OAuth2 token endpoint answers in its own format).
    pub fn body(&self) -> String {
        json!({
            "type": format!("{PROBLEM_PREFIX}{}", self.kind),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        })
        .to_string()
    }
}

impl From<crate::store::StoreError> for FitError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "FIT-Connect store error");
        FitError::unavailable(
            "the submission store cannot be read or written right now; retry later",
        )
    }
}

fn destination_not_found(id: &str) -> FitError {
    FitError::new(
        404,
        "destination-not-found",
        "Destination not found",
        format!("no destination {id}"),
    )
}

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Sender,
    Subscriber,
}

/// A registered API client.
#[derive(Debug)]
pub struct Client {
    pub id: String,
    /// SHA-256 of its secret.
    pub secret_sha256: [u8; 32],
    pub role: Role,
    pub destinations: Vec<String>,
    pub leistungen: PatternSet,
    /// A subscriber's signature key (PKCS#1 RSA public key): its events must verify.
    pub signing_key: Option<Vec<u8>>,
}

/// A destination (Zustellpunkt).
pub struct Destination {
    pub id: String,
    /// Local targets that get the submission's JWEs as they came.
    pub targets: Vec<String>,
    /// Its subscriber's callback, if it takes them.
    pub callback: Option<Arc<callback::Callback>>,
    pub leistungen: PatternSet,
    /// Its encryption keys as published (JWK with `kid`), with when each is
    /// used (one, or several during a key rotation).
    pub keys: Vec<PublishedKey>,
}

/// A destination's encryption key (the JWK of its certificate) and its
/// time: senders are told to use it from `start`, it is served until `end`
/// (its certificate's notAfter).
pub type PublishedKey = crate::core::intake::rotation::KeyWindow<keys::DestinationKey>;

impl Destination {
    /// The key senders encrypt for at `now`: the one that took over last
    /// among those in use (the latest started, if every one has ended).
    pub fn current_key(&self, now: i64) -> Option<&keys::DestinationKey> {
        crate::core::intake::rotation::current(&self.keys, now)
            .or_else(|| {
                self.keys
                    .iter()
                    .filter(|k| k.start <= now)
                    .max_by_key(|k| k.start)
            })
            .map(|k| &*k.cert)
    }

    /// A key a sender may fetch by `kid`: listed and not past its notAfter.
    pub fn published(&self, kid: &str, now: i64) -> Option<&keys::DestinationKey> {
        self.keys
            .iter()
            .find(|k| k.cert.kid == kid && now < k.end)
            .map(|k| &*k.cert)
    }
}

/// The Zustelldienst: who may do what, and where submissions go.
pub struct Zustelldienst {
    pub store: Arc<dyn Store>,
    pub staging: Arc<dyn Staging>,
    pub seal: Arc<crate::core::intake::rotation::Seals>,
    pub privacy: Arc<PrivacyKey>,
    /// Tells the delivery engine a destination's box has new work.
    pub wakers: Arc<crate::core::engine::Wakers>,
    pub tokens: Tokens,
    /// Signs the gateway's events (`submit-submission`); its JWKS is published.
    pub signer: Arc<events::EventSigner>,
    /// The events subscribers posted, per case.
    pub events: Arc<dyn Staging>,
    /// One decision (accept, reject, automatic reject) at a time: the state
    /// check, the kept event and the recorded decision go together.
    pub decisions: Arc<tokio::sync::Mutex<()>>,
    pub clients: HashMap<String, Arc<Client>>,
    pub destinations: BTreeMap<String, Arc<Destination>>,
    /// A submission not submitted this long is removed.
    pub incomplete_after: Duration,
    /// A submission not accepted or rejected this long is rejected by the gateway.
    pub auto_reject_after: Duration,
    /// Largest JWE taken per part, and most attachments per submission.
    pub max_part: u64,
    pub max_parts: usize,
}

impl Zustelldienst {
    /// A token for `client_id` if the secret is its own.
    pub fn token(&self, client_id: &str, secret: &str) -> Option<(String, Duration)> {
        let client = self.clients.get(client_id)?;
        let given = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        aws_lc_rs::constant_time::verify_slices_are_equal(given.as_ref(), &client.secret_sha256)
            .ok()?;
        Some(self.tokens.issue(client))
    }

    /// The client a bearer token belongs to.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Client>, FitError> {
        let unauthorized = |why: &str| FitError::new(401, "unauthorized", "Unauthorized", why);
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                unauthorized("send Authorization: Bearer <access_token> from the token endpoint")
            })?;
        let client_id = self
            .tokens
            .verify(token.trim())
            .ok_or_else(|| unauthorized("the access token is not valid or has expired"))?;
        self.clients
            .get(&client_id)
            .cloned()
            .ok_or_else(|| unauthorized("the token's client is no longer registered"))
    }

    /// A destination the client is bound to, or the problem the SDKs expect.
    pub fn destination_for(
        &self,
        client: &Client,
        id: &str,
    ) -> Result<&Arc<Destination>, FitError> {
        let d = self
            .destinations
            .get(id)
            .ok_or_else(|| destination_not_found(id))?;
        if !client.destinations.iter().any(|x| x == id) {
            return Err(FitError::forbidden(format!(
                "client {} is not bound to destination {id}",
                client.id
            )));
        }
        Ok(d)
    }

    /// The public description of a destination (any authenticated client).
    pub fn describe(&self, id: &str) -> Result<serde_json::Value, FitError> {
        let d = self
            .destinations
            .get(id)
            .ok_or_else(|| destination_not_found(id))?;
        let services: Vec<_> = d
            .leistungen
            .0
            .iter()
            .filter_map(|l| match l {
                crate::model::routing::Pattern::Exact(l) => Some(l),
                crate::model::routing::Pattern::Prefix(_) => None,
            })
            .map(|l| json!({"identifier": l, "submissionSchemas": [], "regions": []}))
            .collect();
        Ok(json!({
            "destinationId": d.id,
            "status": "active",
            "services": services,
            "encryptionKid": d.current_key(crate::model::time::now_s()).map(|k| k.kid.as_str()),
            "metadataVersions": ["1.0.0"],
            "replyChannels": {},
        }))
    }

    /// The destination's encryption key as a JWK.
    pub fn key(&self, id: &str, kid: &str) -> Result<serde_json::Value, FitError> {
        let d = self
            .destinations
            .get(id)
            .ok_or_else(|| destination_not_found(id))?;
        match d.published(kid, crate::model::time::now_s()) {
            Some(k) => Ok(k.jwk.clone()),
            None => Err(FitError::new(
                404,
                "key-not-found",
                "Key not found",
                format!("destination {id} has no key {kid}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, start: i64, end: i64) -> PublishedKey {
        PublishedKey {
            cert: Arc::new(keys::DestinationKey {
                kid: kid.into(),
                jwk: json!({"kid": kid}),
            }),
            start,
            end,
        }
    }

    #[test]
    fn senders_are_told_the_newest_key_and_may_fetch_every_live_one() {
        let d = Destination {
            id: "d".into(),
            targets: Vec::new(),
            callback: None,
            leistungen: crate::model::routing::PatternSet(Vec::new()),
            keys: vec![key("old", 0, 500), key("new", 100, 1000)],
        };
        assert_eq!(d.current_key(50).unwrap().kid, "old");
        assert_eq!(d.current_key(100).unwrap().kid, "new");
        // A sender that read `old` before the switch still gets it.
        assert!(d.published("old", 300).is_some());
        assert!(d.published("old", 500).is_none());
        assert!(d.published("new", 50).is_some());
        assert!(d.published("other", 50).is_none());
        // Every one ended: the latest started is still named (the daemon
        // refuses to start without one in use; this is a long-running one).
        assert_eq!(d.current_key(2000).unwrap().kid, "new");
    }
}
