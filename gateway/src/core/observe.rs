//! What the admin listener shows: the metrics (with the queue depths read from
//! the store at scrape time) and the newest signed audit checkpoint.

use std::sync::Arc;

use crate::core::metrics::Metrics;
use crate::core::refusal::Refusal;
use crate::model::audit::Checkpoint;
use crate::store::Store;

/// Read-only views for operators' monitoring.
pub struct Observe {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Cluster mode's broker.
    pub broker: Option<Arc<dyn crate::store::queue::WorkQueue>>,
    /// Set when shutdown began: not ready, so a load balancer sends no more.
    pub draining: std::sync::atomic::AtomicBool,
    /// Targets an operator paused.
    pub pauses: Arc<crate::core::engine::pauses::Pauses>,
}

impl Observe {
    /// The OpenMetrics text of every metric.
    pub async fn metrics_text(&self) -> String {
        let connected = self.broker.as_ref().map(|b| b.connected());
        let paused = &self.metrics.operator_paused;
        paused.clear();
        for target in self.pauses.all().into_keys() {
            paused
                .get_or_create(&crate::core::metrics::TargetLabel { target })
                .set(1);
        }
        self.metrics
            .render(&self.store, self.ready().is_ok(), connected)
            .await
    }

    /// Whether the gateway can take submissions now: `/readyz`. Not ready while
    /// it shuts down, while the store's last commit failed (a full disk, I/O errors) and none
    /// succeeded since; ready again with the next successful commit.
    pub fn ready(&self) -> Result<(), Refusal> {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Refusal::unavailable(
                "shutting down: open requests finish, new submissions go to another instance",
            ));
        }
        if let Some(broker) = &self.broker {
            if self.store.stats().write_failing {
                return Err(Refusal::unavailable(
                    "PostgreSQL does not answer: submissions are refused (503) until it does",
                ));
            }
            if !broker.connected() {
                return Err(Refusal::unavailable(
                    "not connected to RabbitMQ: deliveries wait until it is back (accepted submissions are kept in PostgreSQL)",
                ));
            }
            return Ok(());
        }
        if self.store.stats().write_failing {
            return Err(Refusal::unavailable(
                "the store's last write failed (disk full or I/O errors?): submissions are refused until a write succeeds; check the data directory's disk",
            ));
        }
        Ok(())
    }

    /// The newest checkpoint; refused as not found before the first is signed.
    pub async fn latest_checkpoint(&self) -> Result<Checkpoint, Refusal> {
        match self.store.latest_checkpoint().await {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(Refusal::not_found("no checkpoint signed yet")),
            Err(e) => Err(Refusal::unavailable(format!("store: {e}"))),
        }
    }
}
