//! The checkpoint task under tokio's paused clock against the real embedded
//! store: a checkpoint once `checkpoint_every` records were added or
//! `checkpoint_interval` passed with new records, a last one at shutdown, and
//! none while the head stands still.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ozg_adapter_sdk::audit_proof::SealPins;
use ozg_adapter_sdk::{SealKey, TrustAnchors};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::checkpoint_task;
use crate::config::AuditConfig;
use crate::core::audit::verify;
use crate::core::metrics::Metrics;
use crate::model::audit::AuditEvent;
use crate::store::embedded::audit_log::read_checkpoints;
use crate::store::embedded::{open_read_only, EmbeddedStore};
use crate::store::testing::Timeless;
use crate::store::Store;

fn demo(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../certs-example")
            .join(name),
    )
    .unwrap()
}

/// A checkpoint task on a store in `dir`, started now.
struct Rig {
    store: Arc<Timeless<EmbeddedStore>>,
    metrics: Arc<Metrics>,
    start: Instant,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Rig {
    fn start(dir: &Path, checkpoint_every: u64, checkpoint_interval: Duration) -> Rig {
        let store = Arc::new(Timeless(
            EmbeddedStore::open(dir, 16).unwrap(),
            Default::default(),
        ));
        let seal = SealKey::from_pem(&demo("seal.pem"), &demo("seal.key")).unwrap();
        let metrics = Arc::new(Metrics::new());
        let config = AuditConfig {
            checkpoint_interval,
            checkpoint_every,
            timestamp: None,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(checkpoint_task(
            store.clone(),
            Arc::new(crate::core::intake::rotation::Seals::single(Arc::new(seal))),
            config,
            metrics.clone(),
            stopped,
        ));
        Rig {
            store,
            metrics,
            start: Instant::now(),
            stop,
            task,
        }
    }

    async fn until(&self, secs: f64) {
        tokio::time::sleep_until(self.start + Duration::from_secs_f64(secs)).await;
    }

    /// Appends `n` audit records.
    async fn append(&self, n: u64) {
        for _ in 0..n {
            self.store
                .audit(AuditEvent::started("test", "", &[], None))
                .await
                .unwrap();
        }
    }

    /// Shuts the task down; it must finish at once.
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_millis(1), self.task)
            .await
            .expect("the checkpoint task stops on shutdown")
            .unwrap();
        self.store.close().await.unwrap();
    }
}

/// The stored checkpoints as (seq, first record of the batch).
fn checkpoints(dir: &Path) -> Vec<(u64, u64)> {
    read_checkpoints(&open_read_only(dir).unwrap())
        .unwrap()
        .iter()
        .map(|c| (c.seq, c.from.unwrap()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_is_signed_once_checkpoint_every_records_were_added() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path(), 5, Duration::from_secs(3600));
    rig.until(0.25).await;
    rig.append(4).await;
    rig.until(30.0).await;
    assert_eq!(checkpoints(dir.path()), []);
    rig.append(1).await;
    rig.until(30.6).await;
    assert_eq!(checkpoints(dir.path()), [(5, 1)]);
    rig.append(4).await;
    rig.until(60.0).await;
    assert_eq!(checkpoints(dir.path()), [(5, 1)]);
    rig.append(1).await;
    rig.until(60.6).await;
    assert_eq!(checkpoints(dir.path()), [(5, 1), (10, 6)]);
    assert_eq!(rig.metrics.audit_checkpoint.get(), 10);
    assert_eq!(rig.metrics.audit_head.get(), 10);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn new_records_are_signed_once_checkpoint_interval_passed_and_no_sooner() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path(), 1000, Duration::from_secs(60));
    rig.until(0.25).await;
    rig.append(3).await;
    rig.until(59.9).await;
    assert_eq!(checkpoints(dir.path()), []);
    rig.until(60.1).await;
    assert_eq!(checkpoints(dir.path()), [(3, 1)]);
    // The head stands still: nothing to sign, however long.
    rig.until(600.0).await;
    assert_eq!(checkpoints(dir.path()), [(3, 1)]);
    // A record after a long quiet time is signed at the next look…
    rig.append(1).await;
    rig.until(600.6).await;
    assert_eq!(checkpoints(dir.path()), [(3, 1), (4, 4)]);
    // … and the interval counts from that checkpoint (600.5 s).
    rig.until(610.0).await;
    rig.append(1).await;
    rig.until(660.4).await;
    assert_eq!(checkpoints(dir.path()), [(3, 1), (4, 4)]);
    rig.until(660.6).await;
    assert_eq!(checkpoints(dir.path()), [(3, 1), (4, 4), (5, 5)]);
    rig.stop().await;
    // What the task signed verifies: contiguous batches, the demo seal.
    let report = verify(
        &open_read_only(dir.path()).unwrap(),
        &TrustAnchors::from_pem(&demo("ca.pem")).unwrap(),
        &SealPins::from_pem(&demo("seal.pem")).unwrap(),
        SystemTime::now(),
    )
    .unwrap()
    .unwrap();
    assert_eq!((report.checkpoints, report.checkpoint_seq), (3, 5));
}

#[tokio::test(start_paused = true)]
async fn a_last_checkpoint_is_signed_at_shutdown_and_none_if_nothing_was_added() {
    let dir = tempfile::tempdir().unwrap();
    let rig = Rig::start(dir.path(), 1000, Duration::from_secs(3600));
    rig.until(0.25).await;
    rig.append(2).await;
    rig.until(10.0).await;
    assert_eq!(checkpoints(dir.path()), []);
    rig.stop().await;
    assert_eq!(checkpoints(dir.path()), [(2, 1)]);

    // Started again on the same store, stopped with no new record: no checkpoint.
    let rig = Rig::start(dir.path(), 1000, Duration::from_secs(3600));
    rig.until(10.0).await;
    rig.stop().await;
    assert_eq!(checkpoints(dir.path()), [(2, 1)]);
}
