//! Retention under tokio's paused clock against the real embedded store: it runs
//! every `check_interval`, deletes envelopes only once their time is up, purges
//! in batches until nothing is left, and stops on shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::watch;
use tokio::time::Instant;

use super::run;
use crate::config::RetentionConfig;
use crate::core::clock::Clock;
use crate::model::delivery::{DeliveryState, Failure, Recorded};
use crate::model::time::now_ms;
use crate::store::embedded::{counts, EmbeddedStore};
use crate::store::testing::{submission, Timeless};
use crate::store::Store;

const TARGET: &str = "dms";
/// One more than retention deletes in one go, so one run needs two batches.
const DELIVERED: usize = 501;

fn minutes(m: f64) -> Duration {
    Duration::from_secs_f64(m * 60.0)
}

#[tokio::test(start_paused = true)]
async fn retention_runs_every_check_interval_and_purges_until_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Timeless(
        EmbeddedStore::open(dir.path(), 64).unwrap(),
        Default::default(),
    ));
    // Stored before the clock starts, so all are due; straight to the store
    // (the clock cannot move yet: nothing waits on a timer).
    let mut ids: Vec<String> = (0..DELIVERED).map(|i| format!("d{i}")).collect();
    ids.push("p0".into());
    for accepted in join_all(ids.iter().map(|id| store.0.accept(submission(id, TARGET)))).await {
        accepted.unwrap();
    }
    let clock = Clock::following_tokio(now_ms());
    let start = Instant::now();
    let envelopes = || counts(dir.path()).unwrap().envelopes;

    let cfg = RetentionConfig {
        delivered: minutes(60.0),
        parked: minutes(120.0),
        check_interval: minutes(10.0),
    };
    let (stop, stopped) = watch::channel(false);
    let retention = tokio::spawn(run(store.clone(), cfg, clock, stopped));

    // At 5 min: d* delivered, p0 parked (not on the 10-minute beat, so which
    // run deletes them is unambiguous).
    tokio::time::sleep_until(start + minutes(5.0)).await;
    let claimed = store.claim(TARGET, clock.now_ms(), 1000).await.unwrap();
    assert_eq!(claimed.len(), DELIVERED + 1);
    let outcome = |id: &str| match id {
        "p0-dms" => Recorded::Parked {
            failure: Failure::new("http-422", "refused"),
            gave_up_after: None,
        },
        _ => Recorded::Delivered { receipt: None },
    };
    let now = clock.now_ms();
    for recorded in join_all(
        claimed
            .iter()
            .map(|c| store.0.record(&c.message_id, outcome(&c.message_id), now)),
    )
    .await
    {
        recorded.unwrap();
    }
    assert_eq!(envelopes(), DELIVERED as u64 + 1);

    // Delivered ones may go from 65 min, but retention only looks at 70 min —
    // then all of them, in two batches of one run.
    tokio::time::sleep_until(start + minutes(69.9)).await;
    assert_eq!(envelopes(), DELIVERED as u64 + 1);
    tokio::time::sleep_until(start + minutes(70.1)).await;
    assert_eq!(envelopes(), 1, "only the parked one is left");
    let purged = store.trace("d500").await.unwrap().pop().unwrap();
    assert_eq!(purged.event, "purged");
    assert_eq!(purged.detail["envelopes"], 1);
    let p0 = store.submission("p0").await.unwrap().unwrap();
    assert_eq!(p0.deliveries[0].state, DeliveryState::Parked);

    // The parked one may go from 125 min; retention discards it at 130 min.
    tokio::time::sleep_until(start + minutes(129.9)).await;
    assert_eq!(envelopes(), 1);
    tokio::time::sleep_until(start + minutes(130.1)).await;
    assert_eq!(envelopes(), 0);
    let p0 = store.submission("p0").await.unwrap().unwrap();
    assert_eq!(p0.deliveries[0].state, DeliveryState::Discarded);
    let discarded = store.trace("p0").await.unwrap().pop().unwrap();
    assert_eq!(discarded.event, "discarded");
    assert_eq!(discarded.detail["by"], "retention");

    // Shutdown ends it at once, in the middle of its wait.
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_millis(1), retention)
        .await
        .expect("retention stops on shutdown")
        .unwrap();
}
