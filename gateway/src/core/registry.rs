//! Targets and routes registered at run time (the operator API's
//! `POST/PUT/DELETE /admin/v1/targets` and `/admin/v1/routes`), and the test
//! message a target is sent to prove it works: a sealed envelope encrypted
//! for the target's certificate, carrying no personal data, through the real
//! adapter. The daemon implements [`Registry`] (checking a change exactly as
//! `config check` checks the file, keeping it in the store, applying it
//! without a restart).

use std::time::Duration;

use futures_util::future::BoxFuture;
use ozg_adapter_sdk::envelope::{
    build_envelope, seal_manifest, sha512_hex, EnvelopeHeader, Manifest, ManifestPart,
};
use ozg_adapter_sdk::{Delivery, Outcome, RecipientCert, SealKey};

use crate::config::registered::{RegisteredRoute, RegisteredTarget};
use crate::core::engine::TargetRuntime;
use crate::core::refusal::Refusal;
use crate::model::portal::Operator;
use crate::model::time::{now_ms, rfc3339_ms};

/// What the operator API asks of the daemon to change targets and routes.
pub trait Registry: Send + Sync {
    /// Registers (`create`) or changes a target; answers the target as kept.
    fn put_target<'a>(
        &'a self,
        op: &'a Operator,
        target: RegisteredTarget,
        create: bool,
    ) -> BoxFuture<'a, Result<RegisteredTarget, Refusal>>;
    /// Removes a registered target (refused while a route names it).
    fn remove_target<'a>(
        &'a self,
        op: &'a Operator,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), Refusal>>;
    /// Registers a route.
    fn put_route<'a>(
        &'a self,
        op: &'a Operator,
        route: RegisteredRoute,
    ) -> BoxFuture<'a, Result<RegisteredRoute, Refusal>>;
    /// Removes a registered route.
    fn remove_route<'a>(
        &'a self,
        op: &'a Operator,
        leistung: &'a str,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<(), Refusal>>;
    /// Sends a test message to a target through its adapter.
    fn test_target<'a>(
        &'a self,
        op: &'a Operator,
        id: &'a str,
    ) -> BoxFuture<'a, Result<TestOutcome, Refusal>>;
}

/// What a test message met.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TestOutcome {
    pub target: String,
    pub message_id: String,
    /// `delivered`, `retry` (a failure that would be retried) or `permanent`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The receipt the target answered with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    pub envelope_bytes: usize,
    pub millis: u64,
}

/// The sender named in a test message's manifest.
pub const TEST_SENDER: &str = "ozg-gateway-test";

/// Seals a test message for `cert` and hands it to the target's adapter.
pub async fn send_test(
    seal: &SealKey,
    cert: &RecipientCert,
    target: &TargetRuntime,
) -> Result<TestOutcome, String> {
    let id = uuid::Uuid::now_v7();
    let at = rfc3339_ms(now_ms());
    let data = serde_json::to_vec(&serde_json::json!({
        "test": "ozg-gateway connection test: no application, no personal data",
        "target": target.id,
        "at": at,
    }))
    .unwrap_or_default();
    let manifest = Manifest {
        submission_id: id.to_string(),
        received_at: at.clone(),
        sender: TEST_SENDER.into(),
        leistung: "test".into(),
        destination: "test".into(),
        metadata: [("test".to_owned(), serde_json::Value::Bool(true))]
            .into_iter()
            .collect(),
        parts: vec![ManifestPart {
            id: "data".into(),
            media_type: "application/json".into(),
            filename: None,
            size: data.len() as u64,
            sha512: sha512_hex(&data),
        }],
        in_reply_to: None,
        reply_type: None,
    };
    let sealed = seal_manifest(&manifest, seal).map_err(|e| format!("sealing: {e}"))?;
    let message_id = crate::model::submission::message_id(&id, &target.id);
    let header = EnvelopeHeader {
        message_id: message_id.clone(),
        target: target.id.clone(),
        created_at: at,
    };
    let envelope = build_envelope(header, &manifest, &sealed, &[data.as_slice()], cert)
        .map_err(|e| format!("encrypting: {e}"))?
        .to_json()
        .into();
    let started = std::time::Instant::now();
    let delivery = Delivery {
        message_id: &message_id,
        submission_id: &manifest.submission_id,
        target: &target.id,
        attempt: 1,
        envelope: &envelope,
    };
    let timeout = target.attempt_timeout.max(Duration::from_secs(1));
    let outcome = tokio::time::timeout(timeout, target.adapter.deliver(delivery)).await;
    let mut out = TestOutcome {
        target: target.id.clone(),
        message_id,
        outcome: "delivered",
        error_class: None,
        error: None,
        receipt: None,
        envelope_bytes: envelope.len(),
        millis: started.elapsed().as_millis() as u64,
    };
    match outcome {
        Err(_) => {
            out.outcome = "retry";
            out.error_class = Some("timeout".into());
            out.error = Some(format!("no answer within {timeout:?}"));
        }
        Ok(Outcome::Delivered { receipt }) => out.receipt = receipt,
        Ok(Outcome::Retry { failure, .. }) => {
            out.outcome = "retry";
            out.error_class = Some(failure.class.clone());
            out.error = Some(failure.to_string());
        }
        Ok(Outcome::Permanent { failure }) => {
            out.outcome = "permanent";
            out.error_class = Some(failure.class.clone());
            out.error = Some(failure.to_string());
        }
        // A message-box target keeps it for its reader; the test is refused
        // for those before it is sent.
        Ok(Outcome::Offered) => {}
    }
    Ok(out)
}
