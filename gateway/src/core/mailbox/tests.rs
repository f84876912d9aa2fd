//! The message boxes on the real embedded store: listing, fetching, closing,
//! who may see what, overdue messages, and a restart.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::embedded::EmbeddedStore;
use crate::store::testing::submission;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    boxes: MessageBoxes,
}

fn reader(account: &str, targets: &[&str]) -> Reader {
    Reader {
        account: account.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
    }
}

fn all(limit: usize) -> BoxQuery {
    BoxQuery {
        limit,
        ..BoxQuery::default()
    }
}

/// Stores `n` submissions to `target`; the first `offered` of them are put in the box.
async fn fixture(target: &str, n: usize, offered: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), 64).unwrap());
    for i in 0..n {
        let s = submission(&format!("s{i:03}"), target);
        store.accept(s).await.unwrap();
    }
    let claimed = store.claim(target, i64::MAX, offered).await.unwrap();
    for c in claimed {
        store
            .record(&c.message_id, Recorded::Offered, 1_000)
            .await
            .unwrap();
    }
    let boxes = MessageBoxes {
        store: store.clone(),
        metrics: Arc::new(Metrics::new()),
        clock: Clock::system(),
        overdue_after: Duration::from_secs(3 * 86400),
        max_list_items: 2,
    };
    Fixture {
        _dir: dir,
        store,
        boxes,
    }
}

#[tokio::test]
async fn a_reader_lists_fetches_and_closes_its_messages_once() {
    let f = fixture("fv", 3, 3).await;
    let r = reader("fv-account", &["fv"]);
    let page = f.boxes.list(&r, all(10)).await.unwrap();
    // Capped at max_list_items, with "more" telling that one waits.
    assert_eq!(page.entries.len(), 2);
    assert!(page.more);
    assert_eq!(page.entries[0].message_id, "s000-fv");
    let after = BoxQuery {
        after: Some(page.entries[1].message_id.clone()),
        ..all(10)
    };
    let rest = f.boxes.list(&r, after).await.unwrap();
    assert_eq!(rest.entries.len(), 1);
    assert!(!rest.more);

    let got = f.boxes.fetch(&r, "s000-fv").await.unwrap();
    assert_eq!(got.envelope, b"{\"sealed-for\":\"fv\"}");
    assert_eq!(got.entry.size, got.envelope.len() as u64);
    assert_eq!(f.boxes.close(&r, "s000-fv").await.unwrap(), Closed::Now);
    assert_eq!(f.boxes.close(&r, "s000-fv").await.unwrap(), Closed::Already);
    let s = f.store.submission("s000").await.unwrap().unwrap();
    assert_eq!(s.deliveries[0].state, DeliveryState::Delivered);
    let trace = f.store.trace("s000").await.unwrap();
    let events: Vec<&str> = trace.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["received", "sealed", "offered", "delivered"]);
    // Closed messages leave the box and cannot be fetched again.
    assert!(matches!(
        f.boxes.fetch(&r, "s000-fv").await,
        Err(BoxError::Closed(_))
    ));
    let page = f.boxes.list(&r, all(10)).await.unwrap();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.entries[0].message_id, "s001-fv");
    // The next message is the oldest still in the box.
    let next = f.boxes.next(&r, None).await.unwrap().unwrap();
    assert_eq!(next.entry.message_id, "s001-fv");
}

#[tokio::test]
async fn another_reader_neither_sees_nor_closes_them() {
    let f = fixture("fv", 1, 1).await;
    let other = reader("other", &["dms"]);
    let page = f.boxes.list(&other, all(10)).await.unwrap();
    assert!(page.entries.is_empty());
    assert!(matches!(
        f.boxes.fetch(&other, "s000-fv").await,
        Err(BoxError::NotYours(_))
    ));
    assert!(matches!(
        f.boxes.close(&other, "s000-fv").await,
        Err(BoxError::NotYours(_))
    ));
    assert!(matches!(
        f.boxes.close(&other, "nope").await,
        Err(BoxError::Unknown(_))
    ));
    let s = f.store.submission("s000").await.unwrap().unwrap();
    assert_eq!(s.deliveries[0].state, DeliveryState::InFlight);
}

#[tokio::test]
async fn a_message_not_yet_in_the_box_is_unknown_to_the_reader() {
    let f = fixture("fv", 2, 1).await;
    let r = reader("fv-account", &["fv"]);
    assert!(matches!(
        f.boxes.fetch(&r, "s001-fv").await,
        Err(BoxError::Unknown(_))
    ));
    assert!(matches!(
        f.boxes.close(&r, "s001-fv").await,
        Err(BoxError::Unknown(_))
    ));
}

#[tokio::test]
async fn messages_left_in_the_box_too_long_are_overdue() {
    let f = fixture("fv", 2, 2).await;
    // Offered at 1 s after the epoch: long overdue.
    let overdue = f
        .store
        .overdue(f.boxes.clock.now_ms() - 1000)
        .await
        .unwrap();
    assert_eq!(overdue.len(), 1);
    assert_eq!((overdue[0].target.as_str(), overdue[0].count), ("fv", 2));
    assert!(f.store.overdue(500).await.unwrap().is_empty());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let boxes = Arc::new(f.boxes);
    let task = tokio::spawn(boxes.clone().watch_overdue(Duration::from_secs(60), rx));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = tx.send(true);
    task.await.unwrap();
    let label = TargetLabel {
        target: "fv".into(),
    };
    assert_eq!(boxes.metrics.pickup_overdue.get_or_create(&label).get(), 2);
    // The status marks them overdue.
    let mut s = f.store.submission("s000").await.unwrap().unwrap();
    assert!(s.deliveries[0].offered_at.is_some());
    s.deliveries[0].mark_overdue(boxes.clock.now_ms() - 1000);
    assert!(s.deliveries[0].pickup_overdue);
}

#[tokio::test]
async fn a_restart_leaves_boxed_messages_in_the_box() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path(), 64).unwrap();
        store.accept(submission("s1", "fv")).await.unwrap();
        store.accept(submission("s2", "fv")).await.unwrap();
        for c in store.claim("fv", i64::MAX, 2).await.unwrap() {
            if c.message_id == "s1-fv" {
                store
                    .record(&c.message_id, Recorded::Offered, 5)
                    .await
                    .unwrap();
            }
        }
        store.close().await.unwrap();
    }
    let store = EmbeddedStore::open(dir.path(), 64).unwrap();
    let boxed = store.delivery("s1-fv").await.unwrap().unwrap();
    assert_eq!(
        (boxed.state, boxed.offered_ms),
        (DeliveryState::InFlight, Some(5))
    );
    // The attempt that was running at the crash goes back to pending as before.
    let other = store.delivery("s2-fv").await.unwrap().unwrap();
    assert_eq!(other.state, DeliveryState::Pending);
    store.close().await.unwrap();
}
