//! Retention (Datenschutz): sealed envelopes are deleted once a submission was
//! delivered to all its targets and `retention.delivered` passed; parked
//! deliveries nobody acted on are discarded after `retention.parked`. The audit
//! records and the submission's status stay.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::RetentionConfig;
use crate::core::clock::Clock;
use crate::store::{Purge, Store};

/// Deletes envelopes whose retention ended, every `check_interval`.
pub async fn run(
    store: Arc<dyn Store>,
    cfg: RetentionConfig,
    clock: Clock,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.check_interval) => {}
            _ = shutdown.changed() => return,
        }
        loop {
            let now = clock.now_ms();
            let purge = Purge {
                delivered_before_ms: now - cfg.delivered.as_millis() as i64,
                parked_before_ms: now - cfg.parked.as_millis() as i64,
                limit: 500,
            };
            match store.purge(purge).await {
                Ok(0) => break,
                Ok(n) => tracing::info!(envelopes = n, "retention: sealed envelopes deleted"),
                Err(e) => {
                    tracing::error!(error = %e, "retention failed; trying again later");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
