//! The outbox relay of cluster mode: every instance runs one. It leases the oldest outbox
//! rows (so two relays never publish the same rows at once), publishes their
//! messages with confirms and deletes the confirmed rows. Woken when this
//! instance committed something that wants a message; otherwise it looks
//! every half second (rows of other instances, leases that ran out).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::model::time::now_ms;
use crate::store::queue::WorkQueue;
use crate::store::Store;

/// Rows per round.
const BATCH: usize = 512;
/// How long a lease holds (a relay that died leaves its rows this long).
const LEASE_MS: i64 = 5_000;
/// How often the relay looks without being woken.
const IDLE: Duration = Duration::from_millis(500);

/// Runs until shutdown.
pub async fn run(
    store: Arc<dyn Store>,
    broker: Arc<dyn WorkQueue>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(_) = store.outbox() else {
        tracing::error!("the store has no outbox: the relay does not run");
        return;
    };
    let mut errors = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Without a broker there is nothing to publish to: wait for it first,
        // so rows are not leased in vain.
        tokio::select! {
            _ = broker.until_connected() => {}
            _ = shutdown.changed() => continue,
        }
        let Some(outbox) = store.outbox() else { return };
        let round = async {
            let wanted = outbox.lease(BATCH, LEASE_MS).await.map_err(|e| e.to_string())?;
            let n = wanted.len();
            if n == 0 {
                return Ok(0);
            }
            let confirmed = broker
                .publish(wanted, now_ms())
                .await
                .map_err(|e| e.to_string())?;
            let done = confirmed.len();
            outbox
                .published(confirmed)
                .await
                .map_err(|e| e.to_string())?;
            if done < n {
                tracing::warn!(published = done, refused = n - done, "the broker refused some queue messages (a target's queue is full?); they stay in the outbox");
            }
            Ok::<usize, String>(n)
        }
        .await;
        match round {
            Ok(n) if n == BATCH => {
                errors = 0;
                continue;
            }
            Ok(_) => {
                errors = 0;
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                errors += 1;
                if errors == 1 || errors.is_multiple_of(20) {
                    tracing::error!(error = %e, errors, "outbox relay: publishing failed; the rows stay and are published again");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}
