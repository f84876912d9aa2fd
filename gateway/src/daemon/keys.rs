//! Recipient key rotation while running: at every time a listed certificate
//! takes over or the one in use ends, the targets' keys in use are worked out
//! again (see [`crate::core::intake::rotation`]). A switch takes effect for
//! the next submission, is audited (`key_switched`, with both `kid`s) and
//! logged, and moves `ozg_certificate_not_after_seconds{certificate="target:<id>"}` to the
//! new certificate, so the expiry alert follows the key in use.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::core::intake::rotation;
use crate::core::intake::Intake;
use crate::core::metrics::{CertLabels, Metrics};
use crate::model::audit::AuditEvent;
use crate::store::Store;

/// Checked at least this often (a clock set forward, a reload with new windows).
const AT_LEAST: Duration = Duration::from_secs(3600);

/// Switches the keys whose time has come; returns when `shutdown` changes.
pub async fn rotate_task(
    intake: Arc<Intake>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = crate::model::time::now_s();
        let mut switches = Vec::new();
        intake.routes.rcu(|routes| {
            let mut next = (**routes).clone();
            switches = rotation::apply(&mut next.targets, &next.rotations, now);
            next
        });
        for s in &switches {
            let not_after = crate::model::time::rfc3339_ms(s.not_after * 1000);
            tracing::warn!(target_id = %s.target, from_kid = ?s.from_kid, to_kid = %s.to_kid, not_after = %not_after, "encryption key switched: new envelopes for this target use the new certificate");
            metrics
                .cert_not_after
                .get_or_create(&CertLabels {
                    certificate: format!("target:{}", s.target),
                })
                .set(s.not_after);
            let event =
                AuditEvent::key_switched(&s.target, s.from_kid.as_deref(), &s.to_kid, &not_after);
            if let Err(e) = store.audit(event).await {
                tracing::error!(error = %e, target_id = %s.target, "the key switch could not be audited");
            }
        }
        let wait = rotation::next_change(&intake.routes.load().rotations, now)
            .map(|t| Duration::from_secs((t - now).max(1) as u64))
            .unwrap_or(AT_LEAST)
            .min(AT_LEAST);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}
