//! The adapter interface: how the delivery engine hands an envelope to a target.
//!
//! An adapter decides the outcome class; the engine never guesses:
//! [`Outcome::Delivered`] (with the recipient's receipt, if any),
//! [`Outcome::Retry`] (network error, timeout, 5xx, 408, 429, broker
//! unavailable — optionally with the receiver's `Retry-After`), or
//! [`Outcome::Permanent`] (other 4xx, certificate rejected, payload refused),
//! which parks the delivery at once. Reasons carry an error class and a short
//! message — never the envelope or any of its content.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// One delivery attempt.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Stable per (submission, target); receivers deduplicate by it.
    pub message_id: &'a str,
    pub submission_id: &'a str,
    pub target: &'a str,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The envelope JSON (see `schemas/envelope.schema.json`). A [`bytes::Bytes`]
    /// so an adapter can hand it to an HTTP body or another task without a
    /// copy (`d.envelope.clone()`); it derefs to `&[u8]` for everything else.
    pub envelope: &'a bytes::Bytes,
}

/// Why an attempt did not deliver: a stable class (for metrics) and a short message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// e.g. `connect`, `timeout`, `http-503`, `tls-certificate`, `unroutable`, `io`.
    pub class: String,
    /// Human-readable detail without payload.
    pub message: String,
    /// What the receiver said about it (bounded, control characters removed):
    /// its text, not the gateway's, so it may hold anything — shown to operators
    /// with the delivery, never written to a log line (see [`Failure::loggable`]).
    pub receiver_says: Option<String>,
}

impl Failure {
    pub fn new(class: impl Into<String>, message: impl Into<String>) -> Self {
        Failure {
            class: class.into(),
            message: message.into(),
            receiver_says: None,
        }
    }

    /// Class and message, without the receiver's words: what a log line may carry.
    pub fn loggable(&self) -> String {
        format!("{}: {}", self.class, self.message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)?;
        match &self.receiver_says {
            Some(said) => write!(f, " (the receiver says: {said})"),
            None => Ok(()),
        }
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target has it. `receipt`: its signed receipt, if it gave one.
    Delivered { receipt: Option<String> },
    /// The envelope waits in the gateway's own message box until the target's
    /// reader fetches and closes it (XTA): the delivery stays `in_flight` and
    /// becomes `delivered` at the reader's `close`.
    Offered,
    /// Try again later; `after` is the receiver's wish (`Retry-After`), if any.
    Retry {
        failure: Failure,
        after: Option<Duration>,
    },
    /// Will not succeed by retrying: park for an operator.
    Permanent { failure: Failure },
}

impl Outcome {
    pub fn retry(class: &str, message: impl Into<String>) -> Self {
        Outcome::Retry {
            failure: Failure::new(class, message),
            after: None,
        }
    }
    pub fn permanent(class: &str, message: impl Into<String>) -> Self {
        Outcome::Permanent {
            failure: Failure::new(class, message),
        }
    }
}

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// What every adapter implements. Implementations must be cancel-safe in the sense
/// that a dropped attempt leaves nothing half-delivered that would not be
/// recognised as the same `message_id` on the next attempt.
pub trait Adapter: Send + Sync {
    /// The adapter type, e.g. `http`.
    fn kind(&self) -> &'static str;
    /// Delivers one envelope.
    fn deliver<'a>(&'a self, delivery: Delivery<'a>) -> DeliverFuture<'a>;
}
