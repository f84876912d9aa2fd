//! The conformance kit for AMQP consumers (`ozg-gateway conformance amqp`):
//! the series is published as the gateway's `amqp` adapter publishes
//! (persistent, the message id as AMQP `message-id`, publisher confirms), and
//! the vendor's consumer, in its test setup, reports what it made of each
//! envelope to a result queue: a JSON `{"message_id": "…", "verdict": "taken"
//! | "duplicate" | "refused" | "failed", "detail": "…"}` published to the
//! queue the kit names (`--results`). The demo receiver's AMQP consumer is the
//! reference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ozg_adapter_amqp::Amqp;
use ozg_adapter_sdk::{Adapter, Delivery, Outcome, RecipientCert, SealKey};

use super::conformance::{case_in, CaseResult, Report, Series};

/// What the kit publishes with and where the consumer reports.
pub struct AmqpKit {
    /// Publishes as the target's `amqp` adapter does.
    pub amqp: Amqp,
    /// The broker the result queue is on (amqp:// or amqps:// URL).
    pub broker: String,
    /// Where the consumer reads from (for the report).
    pub destination: String,
    /// The queue the consumer reports to.
    pub results: String,
    pub recipient: Arc<RecipientCert>,
    pub seal: Arc<SealKey>,
    pub forger: Option<SealKey>,
    pub large_bytes: usize,
    /// How long to wait for a report per case.
    pub wait: Duration,
}

/// The cases, the verdict a conformant consumer reports, and why.
pub const AMQP_CASES: [(&str, &str, &str); 7] = [
    ("valid", "taken", "a correct envelope must be opened and passed on"),
    ("duplicate", "duplicate", "the gateway publishes at least once with the same message-id (a lost confirm, a crash); the case worker must see it once"),
    ("tampered-ciphertext", "refused", "a part whose AES-GCM tag does not verify was changed on the way: reject it to a dead-letter queue, never pass it on, never requeue it forever"),
    ("forged-seal", "refused", "a manifest sealed by another key than the gateway's seal is not from the gateway"),
    ("wrong-recipient", "refused", "an envelope encrypted for another recipient cannot be opened here"),
    ("hash-mismatch", "refused", "the sealed manifest's SHA-512 of a part must match it"),
    ("large", "taken", "Bauanträge carry scans of tens of MiB; the consumer (and its broker's frame and message limits) must take them"),
];

/// The case's result: passed if the consumer reported what is expected.
fn case(name: &'static str, got: Result<String, String>) -> CaseResult {
    let expected = AMQP_CASES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, e, _)| *e);
    match got {
        Ok(verdict) => case_in(&AMQP_CASES, name, verdict.starts_with(expected), verdict),
        Err(e) => case_in(&AMQP_CASES, name, false, e),
    }
}

impl AmqpKit {
    async fn results_channel(&self) -> anyhow::Result<lapin::Channel> {
        use lapin::options::{QueueDeclareOptions, QueuePurgeOptions};
        let props = lapin::ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current())
            .with_connection_name("ozg-gateway conformance kit".into());
        let conn = lapin::Connection::connect(&self.broker, props).await?;
        let ch = conn.create_channel().await?;
        ch.queue_declare(
            &self.results,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await?;
        // Reports of an earlier run are not this run's.
        ch.queue_purge(&self.results, QueuePurgeOptions::default())
            .await?;
        Ok(ch)
    }

    /// Publishes one envelope and waits for the consumer's report on it.
    async fn verdict(
        &self,
        ch: &lapin::Channel,
        message_id: &str,
        envelope: &Bytes,
    ) -> Result<String, String> {
        let published = self
            .amqp
            .deliver(Delivery {
                message_id,
                submission_id: "conformance",
                target: "conformance",
                attempt: 1,
                envelope,
            })
            .await;
        if !matches!(published, Outcome::Delivered { .. }) {
            return Err(format!("the broker did not take it: {published:?}"));
        }
        let deadline = Instant::now() + self.wait;
        while Instant::now() < deadline {
            let got = ch
                .basic_get(
                    &self.results,
                    lapin::options::BasicGetOptions { no_ack: true },
                )
                .await
                .map_err(|e| format!("reading {}: {e}", self.results))?;
            let Some(m) = got else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(report) = serde_json::from_slice::<serde_json::Value>(&m.delivery.data) else {
                return Err(format!(
                    "a report on {} is not JSON: {:?}",
                    self.results,
                    String::from_utf8_lossy(&m.delivery.data)
                ));
            };
            if report["message_id"] != message_id {
                // A late report on an earlier case.
                continue;
            }
            let verdict = report["verdict"].as_str().unwrap_or("(no verdict)");
            let detail = report["detail"].as_str().unwrap_or_default();
            return Ok(if detail.is_empty() {
                verdict.to_owned()
            } else {
                format!("{verdict}: {detail}")
            });
        }
        Err(format!(
            "no report on {} within {:?}",
            self.results, self.wait
        ))
    }

    /// Runs every case.
    pub async fn run(&self) -> anyhow::Result<Report> {
        let ch = self.results_channel().await?;
        let mut cases = Vec::new();
        let series = Series::new(
            &self.seal,
            &self.recipient,
            self.forger.as_ref(),
            self.large_bytes,
            11,
        )?;
        let (id, env) = &series.valid;
        cases.push(case("valid", self.verdict(&ch, id, env).await));
        cases.push(case("duplicate", self.verdict(&ch, id, env).await));
        for (name, built) in series.rest {
            let got = match built {
                Ok((id, env)) => self.verdict(&ch, &id, &env).await,
                Err(e) => Err(format!("the kit could not build it: {e}")),
            };
            cases.push(case(name, got));
        }
        let passed = cases.iter().filter(|c| c.passed).count();
        Ok(Report {
            url: self.destination.clone(),
            recipient: self.recipient.certificate().subject().to_owned(),
            passed,
            failed: cases.len() - passed,
            cases,
        })
    }
}
