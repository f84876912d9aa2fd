//! A test harness for adapter authors: runs an [`Adapter`] against the
//! gateway's contract, so an adapter is known to behave before the delivery
//! engine relies on it.
//!
//! The contract (see [`crate::adapter`]): a delivery the remote took is
//! [`Outcome::Delivered`]; a remote that cannot be reached, or is busy, is
//! [`Outcome::Retry`]; a remote that refuses the message for good is
//! [`Outcome::Permanent`]; an attempt ends within the adapter's own timeout
//! when the remote hangs; the remote always sees the delivery's `message_id`
//! (a second attempt carries the same one, so the remote can deduplicate);
//! no failure names the envelope's content; and no attempt panics.
//!
//! The adapter's test provides a [`Rig`]: the adapter pointed at a remote that
//! behaves as asked (a test double of the remote, a directory, a broker), and
//! what the remote took. [`run`] gives one [`Check`] per rule;
//! [`assert_conformant`] fails the test naming every rule broken.
//!
//! ```ignore
//! let checks = ozg_adapter_sdk::conformance::run(&mut my_rig).await;
//! ozg_adapter_sdk::conformance::assert_conformant(&checks);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::adapter::{Adapter, Delivery, Outcome};

/// How the remote behaves for one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Takes every message.
    Takes,
    /// Cannot be reached (nothing listens, the directory is missing).
    Unreachable,
    /// Reached, but cannot take it now (HTTP 503, a full disk, no route in
    /// the broker).
    Busy,
    /// Refuses the message for good (HTTP 4xx).
    Refuses,
    /// Takes the request and never answers.
    Hangs,
}

/// A future the rig returns.
pub type RigFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What an adapter's test provides to [`run`].
pub trait Rig: Send {
    /// The adapter under test, pointed at a remote that behaves as `remote`
    /// says; `None` where the transport has no such behaviour (the check is
    /// then skipped, and says so).
    fn adapter(&mut self, remote: Remote) -> RigFuture<'_, Option<Arc<dyn Adapter>>>;
    /// The message ids the remote has taken so far, in order, duplicates included.
    fn taken(&mut self) -> RigFuture<'_, Vec<String>>;
    /// The longest one attempt may take with the adapter's settings.
    fn attempt_timeout(&self) -> Duration;
}

/// One rule of the contract and whether the adapter kept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub rule: &'static str,
    /// `None`: skipped (the rig has no such remote).
    pub passed: Option<bool>,
    pub detail: String,
}

/// Text in every envelope the harness sends: no failure may repeat it.
pub const CONTENT_MARKER: &str = "Antragsdaten-Marker-3f9a";

fn envelope(message_id: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!(
        r#"{{"version":2,"message_id":"{message_id}","content":"{CONTENT_MARKER}"}}"#
    ))
}

/// One attempt in a task of its own: its outcome, how long it took, or that it panicked.
async fn attempt(
    adapter: Arc<dyn Adapter>,
    message_id: String,
    limit: Duration,
) -> (Result<Outcome, String>, Duration) {
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let env = envelope(&message_id);
        adapter
            .deliver(Delivery {
                message_id: &message_id,
                submission_id: "conformance-submission",
                target: "conformance",
                attempt: 1,
                envelope: &env,
            })
            .await
    });
    let result = match tokio::time::timeout(limit, task).await {
        Ok(Ok(o)) => Ok(o),
        Ok(Err(e)) if e.is_panic() => Err("the attempt panicked".to_owned()),
        Ok(Err(e)) => Err(format!("the attempt's task failed: {e}")),
        Err(_) => Err(format!("no outcome within {limit:?}")),
    };
    (result, started.elapsed())
}

fn class(o: &Outcome) -> &'static str {
    match o {
        Outcome::Delivered { .. } => "delivered",
        Outcome::Offered => "offered",
        Outcome::Retry { .. } => "retry",
        Outcome::Permanent { .. } => "permanent",
    }
}

/// The failure text an outcome carries (empty for success).
fn failure_text(o: &Outcome) -> String {
    match o {
        Outcome::Retry { failure, .. } | Outcome::Permanent { failure } => {
            format!("{} {} {}", failure.class, failure.message, failure)
        }
        _ => String::new(),
    }
}

fn check(rule: &'static str, passed: bool, detail: String) -> Check {
    Check {
        rule,
        passed: Some(passed),
        detail,
    }
}

fn skipped(rule: &'static str) -> Check {
    Check {
        rule,
        passed: None,
        detail: "skipped: the rig has no such remote".into(),
    }
}

/// Runs every rule against the adapter the rig gives.
pub async fn run(rig: &mut dyn Rig) -> Vec<Check> {
    let limit = rig.attempt_timeout() + Duration::from_secs(5);
    let mut checks = Vec::new();
    let mut failures = Vec::new();
    let mut panics = Vec::new();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = |n: &str| format!("conformance-{stamp}-{n}");

    // Delivered, then the same message again: the same id reaches the remote.
    let first = id("takes");
    match rig.adapter(Remote::Takes).await {
        None => checks.push(skipped("delivers")),
        Some(adapter) => {
            let (one, _) = attempt(adapter.clone(), first.clone(), limit).await;
            let (two, _) = attempt(adapter, first.clone(), limit).await;
            let taken = rig.taken().await;
            for r in [&one, &two] {
                match r {
                    Ok(o) => failures.push(failure_text(o)),
                    Err(e) => panics.push(e.clone()),
                }
            }
            let ok = |r: &Result<Outcome, String>| matches!(r, Ok(Outcome::Delivered { .. }));
            checks.push(check(
                "delivers",
                ok(&one) && taken.contains(&first),
                format!(
                    "{}; the remote took {:?}",
                    one.as_ref()
                        .map_or_else(|e| e.clone(), |o| class(o).to_owned()),
                    taken
                ),
            ));
            let mine: Vec<&String> = taken
                .iter()
                .filter(|t| t.starts_with("conformance-"))
                .collect();
            checks.push(check(
                "same-message-id",
                ok(&two) && !mine.is_empty() && mine.iter().all(|t| **t == first),
                format!(
                    "second attempt: {}; ids the remote saw: {mine:?}",
                    two.as_ref()
                        .map_or_else(|e| e.clone(), |o| class(o).to_owned())
                ),
            ));
        }
    }

    // Failures of the remote: retried, parked, or ended in time.
    for (rule, remote, want) in [
        ("unreachable-retries", Remote::Unreachable, "retry"),
        ("busy-retries", Remote::Busy, "retry"),
        ("refusal-parks", Remote::Refuses, "permanent"),
        ("hang-ends-in-time", Remote::Hangs, "retry"),
    ] {
        let Some(adapter) = rig.adapter(remote).await else {
            checks.push(skipped(rule));
            continue;
        };
        let (r, took) = attempt(adapter, id(rule), limit).await;
        let (passed, detail) = match &r {
            Ok(o) => {
                failures.push(failure_text(o));
                let in_time = took <= rig.attempt_timeout() + Duration::from_secs(2);
                (
                    class(o) == want && in_time,
                    format!(
                        "{} after {:.1} s: {}",
                        class(o),
                        took.as_secs_f64(),
                        failure_text(o)
                    ),
                )
            }
            Err(e) => {
                panics.push(e.clone());
                (false, e.clone())
            }
        };
        checks.push(check(rule, passed, detail));
    }

    let leaking: Vec<&String> = failures
        .iter()
        .filter(|f| f.contains(CONTENT_MARKER))
        .collect();
    checks.push(check(
        "no-content-in-failures",
        leaking.is_empty(),
        if leaking.is_empty() {
            format!(
                "{} failure(s) looked at",
                failures.iter().filter(|f| !f.is_empty()).count()
            )
        } else {
            format!("a failure repeats the envelope: {leaking:?}")
        },
    ));
    checks.push(check(
        "no-panic",
        panics.iter().all(|p| !p.contains("panicked")),
        if panics.is_empty() {
            "every attempt returned an outcome".into()
        } else {
            panics.join("; ")
        },
    ));
    checks
}

/// Panics naming every rule the adapter broke (skipped rules are not broken).
pub fn assert_conformant(checks: &[Check]) {
    let broken: Vec<String> = checks
        .iter()
        .filter(|c| c.passed == Some(false))
        .map(|c| format!("{}: {}", c.rule, c.detail))
        .collect();
    assert!(
        broken.is_empty(),
        "the adapter breaks the gateway's contract:\n  {}",
        broken.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::DeliverFuture;
    use std::sync::Mutex;

    /// An adapter that gets every rule wrong, one way per remote.
    struct Wrong {
        remote: Remote,
        taken: Arc<Mutex<Vec<String>>>,
    }

    impl Adapter for Wrong {
        fn kind(&self) -> &'static str {
            "wrong"
        }

        fn deliver<'a>(&'a self, d: Delivery<'a>) -> DeliverFuture<'a> {
            Box::pin(async move {
                match self.remote {
                    Remote::Takes => {
                        // Invents an id of its own for every attempt.
                        let mut taken = self.taken.lock().unwrap();
                        let n = taken.len();
                        taken.push(format!("conformance-invented-{n}"));
                        Outcome::Delivered { receipt: None }
                    }
                    Remote::Unreachable => Outcome::permanent("connect", "nobody listens"),
                    Remote::Busy => panic!("busy"),
                    Remote::Refuses => Outcome::retry(
                        "http-422",
                        format!("refused: {}", String::from_utf8_lossy(d.envelope)),
                    ),
                    Remote::Hangs => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Outcome::retry("timeout", "late")
                    }
                }
            })
        }
    }

    struct WrongRig(Arc<Mutex<Vec<String>>>);

    impl Rig for WrongRig {
        fn adapter(&mut self, remote: Remote) -> RigFuture<'_, Option<Arc<dyn Adapter>>> {
            let taken = self.0.clone();
            Box::pin(async move { Some(Arc::new(Wrong { remote, taken }) as Arc<dyn Adapter>) })
        }
        fn taken(&mut self) -> RigFuture<'_, Vec<String>> {
            let taken = self.0.lock().unwrap().clone();
            Box::pin(async move { taken })
        }
        fn attempt_timeout(&self) -> Duration {
            Duration::from_millis(200)
        }
    }

    #[tokio::test]
    async fn an_adapter_that_breaks_every_rule_is_named_for_each() {
        let checks = run(&mut WrongRig(Arc::default())).await;
        let broken: Vec<&str> = checks
            .iter()
            .filter(|c| c.passed == Some(false))
            .map(|c| c.rule)
            .collect();
        assert_eq!(
            broken,
            [
                "delivers",
                "same-message-id",
                "unreachable-retries",
                "busy-retries",
                "refusal-parks",
                "hang-ends-in-time",
                "no-content-in-failures",
                "no-panic"
            ],
            "{checks:#?}"
        );
        let outcome = std::panic::catch_unwind(|| assert_conformant(&checks));
        let message = outcome
            .unwrap_err()
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_default();
        assert!(message.contains("no-content-in-failures"), "{message}");
    }
}
