//! Key rotation while running: at every time a listed certificate takes
//! over or the one in use ends, the targets' keys and the seal in use are
//! worked out again (see [`crate::core::intake::rotation`]). A switch takes
//! effect for the next submission (and the next checkpoint), is audited
//! (`key_switched` with the target, `seal_switched`; both `kid`s) and logged,
//! and moves `ozg_certificate_not_after_seconds{certificate="target:<id>"}`
//! (or `"seal"`) to the new certificate, so the expiry alert follows the key
//! in use.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::core::intake::rotation;
use crate::core::intake::Intake;
use crate::core::metrics::{CertLabels, Metrics};
use crate::daemon::setup::{expiry_warnings, Watched};
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
        // Every key in use is swapped before anything is written: an audit
        // record that waits on a slow store must not keep the old key signing.
        let seal_switch = intake.seal.update(now);
        for s in &switches {
            let not_after = crate::model::time::rfc3339_ms(s.not_after * 1000);
            tracing::warn!(target_id = %s.target, from_kid = ?s.from_kid, to_kid = %s.to_kid, not_after = %not_after, "encryption key switched: new envelopes for this target use the new certificate");
            let event =
                AuditEvent::key_switched(&s.target, s.from_kid.as_deref(), &s.to_kid, &not_after);
            let label = format!("target:{}", s.target);
            switched(&store, &metrics, label, s.not_after, event).await;
        }
        if let Some(s) = seal_switch {
            let not_after = crate::model::time::rfc3339_ms(s.not_after * 1000);
            tracing::warn!(from_kid = %s.from_kid, to_kid = %s.to_kid, not_after = %not_after, "seal switched: manifests, receipts and checkpoints are signed with the new seal certificate");
            let event = AuditEvent::seal_switched(&s.from_kid, &s.to_kid, &not_after);
            switched(&store, &metrics, "seal".into(), s.not_after, event).await;
        }
        let targets = rotation::next_change(intake.routes.load().rotations.values().flatten(), now);
        let wait = [targets, intake.seal.next_change(now)]
            .into_iter()
            .flatten()
            .min()
            .map(|t| Duration::from_secs((t - now).max(1) as u64))
            .unwrap_or(AT_LEAST)
            .min(AT_LEAST);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What follows every switch: the expiry metric of `certificate` moves to the
/// new certificate's notAfter, and the switch is audited.
async fn switched(
    store: &Arc<dyn Store>,
    metrics: &Metrics,
    certificate: String,
    not_after: i64,
    event: AuditEvent,
) {
    let labels = CertLabels { certificate };
    metrics.cert_not_after.get_or_create(&labels).set(not_after);
    if let Err(e) = store.audit(event).await {
        tracing::error!(error = %e, certificate = %labels.certificate, "the key switch could not be audited");
    }
}

/// Logs a warning, once a day, for every watched certificate within its
/// expiry window. The seal and the targets' keys are looked at as in use
/// that day, so a rotation's new certificate is watched after the switch.
pub async fn watch_expiry(
    watched: Vec<Watched>,
    intake: Arc<Intake>,
    window: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(24 * 3600));
    tick.tick().await; // the start-up check already warned
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now: Vec<Watched> = watched.iter().map(|w| in_use(w, &intake)).collect();
                for w in expiry_warnings(&now, window, std::time::SystemTime::now()) {
                    tracing::warn!("{w}");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The certificate a watched label stands for now: the seal and a target's
/// key follow their rotation; others (TLS) are as at start.
fn in_use(w: &Watched, intake: &Intake) -> Watched {
    let now = if w.label == "seal" {
        Some(intake.seal.current().certificate().clone())
    } else if let Some(id) = w.label.strip_prefix("target:") {
        let routes = intake.routes.load();
        routes.targets.get(id).map(|c| c.certificate().clone())
    } else {
        None
    };
    Watched {
        label: w.label.clone(),
        cert: now.unwrap_or_else(|| w.cert.clone()),
    }
}
