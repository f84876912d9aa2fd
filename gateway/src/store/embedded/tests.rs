//! Tests of the embedded store: group commit, crash recovery, migrations, retention.

use super::*;
use crate::model::delivery::Failure;
use crate::model::submission::{IdempotencyKey, NewDelivery};
use crate::model::time::now_ms;
use audit_log::{read_checkpoints, read_covering_checkpoint};
use schema::SCHEMA_VERSION;

pub(super) fn sub(id: &str, key: Option<(&str, &str)>) -> NewSubmission {
    NewSubmission {
        id: id.into(),
        portal: "p".into(),
        leistung: "l".into(),
        destination: "d".into(),
        received_at: "2026-11-24T00:00:00Z".into(),
        response: format!("{{\"submission_id\":\"{id}\"}}"),
        idempotency: key.map(|(k, h)| IdempotencyKey {
            key: k.into(),
            request_hash: h.into(),
            legacy_request_hash: format!("legacy-{h}"),
        }),
        deliveries: vec![NewDelivery::whole(
            format!("{id}-m"),
            "t".into(),
            b"{}".to_vec(),
        )],
        shared: Vec::new(),
        parts: vec![],
        privacy_key_id: String::new(),
        receipt_sha256: String::new(),
        reply: None,
        spool: None,
    }
}

#[tokio::test]
async fn stores_and_reads_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    assert_eq!(
        store.accept(sub("a", None)).await.unwrap(),
        Accepted::Stored
    );
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    let s = store.submission("a").await.unwrap().unwrap();
    assert_eq!(s.deliveries.len(), 1);
    assert_eq!(s.deliveries[0].state, DeliveryState::Pending);
    assert!(store.submission("b").await.unwrap().is_none());
}

#[tokio::test]
async fn envelopes_sharing_a_piece_are_read_whole_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    assert_eq!(
        store
            .accept(crate::store::testing::shared_submission("a", &["t1", "t2"]))
            .await
            .unwrap(),
        Accepted::Stored
    );
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    for t in ["t1", "t2"] {
        let env = store.envelope(&format!("a-{t}")).await.unwrap().unwrap();
        assert_eq!(
            String::from_utf8(env).unwrap(),
            format!("{{\"for\":\"{t}\",\"c\":\"SHARED-CIPHERTEXT\"}}")
        );
    }
    // The piece is on disk once.
    let segments: Vec<u8> = std::fs::read_dir(dir.path().join("envelopes"))
        .unwrap()
        .flat_map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let hits = segments
        .windows(17)
        .filter(|w| *w == b"SHARED-CIPHERTEXT")
        .count();
    assert_eq!(hits, 1);
    // The rows know each envelope's whole size (what a message box lists).
    let conn = open_read_only(dir.path()).unwrap();
    let size: i64 = conn
        .query_row(
            "SELECT env_size FROM deliveries WHERE message_id = 'a-t2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        size as usize,
        "{\"for\":\"t2\",\"c\":\"SHARED-CIPHERTEXT\"}".len()
    );
}

#[tokio::test]
async fn a_claim_says_where_its_envelope_lies_and_it_is_read_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.accept(sub("a", None)).await.unwrap();
    store
        .accept(crate::store::testing::shared_submission("s", &["t", "t2"]))
        .await
        .unwrap();
    let claimed = store.claim("t", now_ms() + 1, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    for c in &claimed {
        let at = c.stored_at.as_ref().expect("the claim says where");
        assert!(at.len > 0 && c.size > 0, "{c:?}");
        // The same bytes as by message id (a whole one and one assembled from
        // its recipe), without the database.
        let by_id = store.envelope(&c.message_id).await.unwrap().unwrap();
        assert_eq!(store.claimed_envelope(c).await.unwrap().unwrap(), by_id);
        assert_eq!(by_id.len() as u64, c.size);
    }
    // Damaged where the claim points: `Damaged`, as when read by id.
    let c = &claimed[0];
    let at = c.stored_at.as_ref().unwrap();
    let seg = std::fs::read_dir(dir.path().join("envelopes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_stem().unwrap().to_str().unwrap().parse::<i64>().ok() == Some(at.segment))
        .unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"#", at.offset as u64).unwrap();
    assert!(matches!(
        store.claimed_envelope(c).await,
        Err(StoreError::Damaged(_))
    ));
}

#[tokio::test]
async fn idempotency_replay_and_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    assert_eq!(
        store.accept(sub("a", Some(("k", "h1")))).await.unwrap(),
        Accepted::Stored
    );
    assert_eq!(
        store.accept(sub("b", Some(("k", "h1")))).await.unwrap(),
        Accepted::Replay {
            submission_id: "a".into(),
            response: "{\"submission_id\":\"a\"}".into()
        }
    );
    assert_eq!(
        store.accept(sub("c", Some(("k", "h2")))).await.unwrap(),
        Accepted::Conflict {
            submission_id: "a".into()
        }
    );
    // A row stored by a release before the privacy key holds the plain hash:
    // a retry after the upgrade matches it and is a replay, not a conflict.
    let mut upgraded = sub("d", Some(("k", "hmac-now")));
    upgraded.idempotency.as_mut().unwrap().legacy_request_hash = "h1".into();
    assert!(matches!(
        store.accept(upgraded).await.unwrap(),
        Accepted::Replay { submission_id, .. } if submission_id == "a"
    ));
    let c = counts(dir.path()).unwrap();
    assert_eq!((c.submissions, c.deliveries, c.idempotency_keys), (1, 1, 1));
}

#[tokio::test]
async fn a_bad_row_fails_alone_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path(), 64).unwrap());
    store.accept(sub("dup", None)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        let mut s = match i {
            7 => sub("dup", None),
            _ => sub(&format!("s{i}"), None),
        };
        if i == 9 {
            // Fails after its submission row is written: that row goes too.
            s.deliveries[0].message_id = "dup-m".into();
        }
        tasks.push(tokio::spawn(async move { store.accept(s).await }));
    }
    let mut failed = 0;
    for t in tasks {
        if t.await.unwrap().is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 2);
    assert_eq!(counts(dir.path()).unwrap().submissions, 31);
    assert!(store.submission("s9").await.unwrap().is_none());
    assert_eq!(
        store
            .submission("s8")
            .await
            .unwrap()
            .unwrap()
            .deliveries
            .len(),
        1
    );
    // The audit chain holds what was kept, and only that: received and sealed
    // of each of the 31, in one unbroken sequence.
    assert!(store.trace("s9").await.unwrap().is_empty());
    assert_eq!(store.audit_head().await.unwrap().seq, 62);
    let conn = open_read_only(dir.path()).unwrap();
    let (n, max): (i64, i64) = conn
        .query_row("SELECT count(*), max(seq) FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((n, max), (62, 62));
}

#[tokio::test]
async fn claim_record_and_crash_recovery_keep_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.accept(sub("a", None)).await.unwrap();
    store.accept(sub("b", None)).await.unwrap();
    let claimed = store.claim("t", now_ms() + 1, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].attempts, 1);
    assert!(
        store.claim("t", now_ms() + 1, 10).await.unwrap().is_empty(),
        "in flight is not claimed twice"
    );
    store
        .record(
            "a-m",
            Recorded::RetryAt {
                at_ms: now_ms() + 60_000,
                failure: Failure::new("http-503", "busy"),
            },
            now_ms(),
        )
        .await
        .unwrap();
    assert!(
        store
            .record("a-m", Recorded::Delivered { receipt: None }, now_ms())
            .await
            .is_err(),
        "only in-flight deliveries are recorded"
    );
    assert_eq!(
        store.next_due("t").await.unwrap().map(|d| d > now_ms()),
        Some(true)
    );
    // b stays in flight: a crash. The next open hands it back.
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    let b = store.submission("b").await.unwrap().unwrap();
    assert_eq!(b.deliveries[0].state, DeliveryState::Pending);
    let events: Vec<String> = store
        .trace("b")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(events, ["received", "sealed", "recovered"]);
    let events: Vec<String> = store
        .trace("a")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(events, ["received", "sealed", "attempt_failed"]);
    let head = store.audit_head().await.unwrap();
    assert_eq!(
        head.seq, 6,
        "2 x (received, sealed), attempt_failed, recovered"
    );
}

#[tokio::test]
async fn a_version_1_store_is_migrated_without_loss() {
    migrates_version_1(true).await;
}

#[tokio::test]
async fn a_version_1_store_from_before_the_audit_checkpoints_is_migrated() {
    migrates_version_1(false).await;
}

async fn migrates_version_1(with_checkpoint_table: bool) {
    // Version 1 kept envelope bodies in WITHOUT ROWID tables; version 3 keeps
    // them in segment files. The migration goes through every step.
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.accept(sub("a", None)).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    // Turn it back into what version 1 wrote: WITHOUT ROWID tables.
    let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
    let checkpoints = if with_checkpoint_table {
        "ALTER TABLE audit_checkpoints DROP COLUMN first_seq;
         ALTER TABLE audit_checkpoints DROP COLUMN root;"
    } else {
        "DROP TABLE audit_checkpoints;"
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = OFF;
         BEGIN;
         DROP TRIGGER case_accepted; DROP TRIGGER case_delivered; DROP TRIGGER case_parked; DROP TRIGGER case_discarded;
         DROP TABLE case_counts; DROP TABLE case_latency; DROP TABLE case_zone; DROP TABLE case_buckets;
         CREATE TABLE s1 (id TEXT PRIMARY KEY, portal TEXT NOT NULL, leistung TEXT NOT NULL,
             destination TEXT NOT NULL, received_at TEXT NOT NULL, response TEXT NOT NULL) WITHOUT ROWID;
         INSERT INTO s1 SELECT id, portal, leistung, destination, received_at, response FROM submissions; DROP TABLE submissions;
         ALTER TABLE s1 RENAME TO submissions;
         CREATE TABLE envelopes (message_id TEXT PRIMARY KEY REFERENCES deliveries(message_id),
             body BLOB NOT NULL) WITHOUT ROWID;
         INSERT INTO envelopes SELECT message_id, CAST('{{}}' AS BLOB) FROM deliveries;
         DROP INDEX deliveries_by_segment;
         DROP INDEX deliveries_holding;
         ALTER TABLE deliveries DROP COLUMN segment;
         ALTER TABLE deliveries DROP COLUMN env_offset;
         ALTER TABLE deliveries DROP COLUMN env_len;
         ALTER TABLE deliveries DROP COLUMN env_crc32;
         ALTER TABLE deliveries DROP COLUMN env_size;
         {checkpoints}
         DROP TRIGGER delivery_counts_insert;
         DROP TRIGGER delivery_counts_update;
         DROP TRIGGER delivery_counts_delete;
         DROP TABLE delivery_counts;
         PRAGMA user_version = 1;
         COMMIT;"
    ))
    .unwrap();
    drop(conn);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    let a = store.submission("a").await.unwrap().unwrap();
    assert_eq!(a.deliveries.len(), 1);
    assert_eq!(store.envelope("a-m").await.unwrap().unwrap(), b"{}");
    store.accept(sub("b", None)).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
    let (version, without_rowid): (i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%WITHOUT ROWID%')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (version, without_rowid),
        (SCHEMA_VERSION, 4),
        "only idempotency, delivery_counts, case_counts and case_latency are WITHOUT ROWID"
    );
    assert_counts_are_exact(&conn);
    let bodies: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'envelopes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bodies, 0, "envelope bodies live in segment files now");
    assert_eq!(
        files_in(&dir.path().join("envelopes")),
        ["0000000001.seg", "0000000002.seg"],
        "nothing refers to segment 1 of the first run after the migration, but segments are never deleted at start: the next purge collects it"
    );
    let c = counts(dir.path()).unwrap();
    assert_eq!((c.submissions, c.envelopes), (2, 2));
}

#[tokio::test]
async fn purged_envelopes_free_their_segment_files() {
    let dir = tempfile::tempdir().unwrap();
    let seg_files = || files_in(&dir.path().join("envelopes"));
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.accept(sub("a", None)).await.unwrap();
    store.accept(sub("b", None)).await.unwrap();
    for c in store.claim("t", now_ms() + 1, 10).await.unwrap() {
        let delivered = Recorded::Delivered { receipt: None };
        store
            .record(&c.message_id, delivered, now_ms())
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    drop(store);
    // A restart begins segment 2; segment 1 still holds both envelopes.
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    assert_eq!(seg_files(), ["0000000001.seg", "0000000002.seg"]);
    assert_eq!(store.envelope("a-m").await.unwrap().unwrap(), b"{}");
    let purge = Purge {
        delivered_before_ms: now_ms() + 60_000,
        parked_before_ms: 0,
        limit: 100,
    };
    assert_eq!(store.purge(purge).await.unwrap(), 2);
    assert!(store.envelope("a-m").await.unwrap().is_none());
    assert_eq!(
        seg_files(),
        ["0000000002.seg"],
        "segment 1 went with its last envelope"
    );
}

#[tokio::test]
async fn a_damaged_or_missing_envelope_is_reported_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let segment = dir.path().join("envelopes").join("0000000001.seg");
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.accept(sub("a", None)).await.unwrap();
    // One flipped byte in the envelope ("{}" at offset 0).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"[", 0).unwrap();
    let err = store.envelope("a-m").await.unwrap_err();
    assert!(matches!(err, StoreError::Damaged(_)), "{err}");
    assert!(err.to_string().contains("CRC-32"), "{err}");
    store.close().await.unwrap();
    drop(store);
    // The segment file gone altogether.
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    std::fs::remove_file(&segment).unwrap();
    let err = store.envelope("a-m").await.unwrap_err();
    assert!(matches!(err, StoreError::Damaged(_)), "{err}");
}

#[tokio::test]
async fn a_version_3_copy_is_read_without_migrating_it() {
    // `audit verify` on a backup that no daemon of this version has opened.
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.accept(sub("a", None)).await.unwrap();
    let head = store.audit_head().await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO audit_checkpoints (seq, head, ts, jws) VALUES ({}, '{}', 'ts', 'jws');
         ALTER TABLE audit_checkpoints DROP COLUMN first_seq;
         ALTER TABLE audit_checkpoints DROP COLUMN root;
         PRAGMA user_version = 3;",
        head.seq, head.hash
    ))
    .unwrap();
    drop(conn);
    let conn = open_read_only(dir.path()).unwrap();
    let checkpoints = read_checkpoints(&conn).unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(
        (checkpoints[0].from, checkpoints[0].root.as_deref()),
        (None, None)
    );
    let covering = read_covering_checkpoint(&conn, 1).unwrap().unwrap();
    assert_eq!(covering.seq, head.seq);
}

/// The counts the triggers keep equal a count of the table.
fn assert_counts_are_exact(conn: &Connection) {
    let read = |sql: &str| -> Vec<(String, String, i64)> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let kept = read("SELECT target, state, n FROM delivery_counts WHERE n <> 0 ORDER BY 1, 2");
    let counted =
        read("SELECT target, state, COUNT(*) FROM deliveries GROUP BY target, state ORDER BY 1, 2");
    assert_eq!(kept, counted);
}

#[tokio::test]
async fn delivery_counts_follow_every_change_of_state() {
    let dir = tempfile::tempdir().unwrap();
    let counts = || {
        let conn = open_read_only(dir.path()).unwrap();
        assert_counts_are_exact(&conn);
    };
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    for id in ["a", "b", "c", "d", "e"] {
        store.accept(sub(id, None)).await.unwrap();
    }
    counts();
    let claimed = store.claim("t", now_ms() + 1, 10).await.unwrap();
    assert_eq!(claimed.len(), 5);
    counts();
    let outcomes = [
        Recorded::Delivered { receipt: None },
        Recorded::Delivered { receipt: None },
        Recorded::RetryAt {
            at_ms: now_ms() + 60_000,
            failure: Failure::new("http-503", "busy"),
        },
        Recorded::Parked {
            failure: Failure::new("http-400", "refused"),
            gave_up_after: None,
        },
    ];
    for (c, outcome) in claimed.iter().zip(outcomes) {
        store
            .record(&c.message_id, outcome, now_ms())
            .await
            .unwrap();
    }
    counts();
    // An operator retries the parked one and discards the waiting one.
    let parked = &claimed[3].message_id;
    let waiting = &claimed[2].message_id;
    store
        .operate(
            parked,
            Action::Retry,
            &crate::model::delivery::Actor::new("op", None),
        )
        .await
        .unwrap();
    store
        .operate(
            waiting,
            Action::Discard,
            &crate::model::delivery::Actor::new("op", None),
        )
        .await
        .unwrap();
    counts();
    // A crash with one in flight: recovery hands it back to pending.
    store.claim("t", now_ms() + 1, 1).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    counts();
    let purge = Purge {
        delivered_before_ms: now_ms() + 60_000,
        parked_before_ms: now_ms() + 60_000,
        limit: 100,
    };
    store.purge(purge).await.unwrap();
    counts();
    let depths = store.queue_depths().await.unwrap();
    let total: u64 = depths.iter().map(|d| d.count).sum();
    assert_eq!(total, 5, "{depths:?}");
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn second_daemon_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _a = EmbeddedStore::open(dir.path(), 1).unwrap();
    match EmbeddedStore::open(dir.path(), 1) {
        Err(e @ StoreError::Locked { .. }) => {
            let pid = std::process::id().to_string();
            assert!(e.to_string().contains(&format!("process {pid}")), "{e}");
        }
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
}

/// The case statistics' counters against a count of the rows themselves:
/// per day and Leistung, accepted submissions and outcomes of deliveries
/// (as a migration counts them: parked counts every parking, so after a
/// parked delivery was discarded, only a migrated store's counts match).
fn assert_case_counts_are_exact(conn: &Connection) {
    let read = |sql: &str| -> Vec<(String, String, i64)> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let counted = read(
        "SELECT 'accepted', leistung || '/' || portal, COUNT(*) FROM submissions GROUP BY 2
         UNION ALL
         SELECT d.state, s.leistung || '/' || d.target, COUNT(*) FROM deliveries d JOIN submissions s ON s.id = d.submission_id
         WHERE d.state IN ('delivered', 'parked', 'discarded') GROUP BY 1, 2 ORDER BY 1, 2",
    );
    for period in ["day", "week", "month"] {
        let kept = read(&format!(
            "SELECT event, leistung || '/' || CASE event WHEN 'accepted' THEN portal ELSE target END, SUM(n)
             FROM case_counts WHERE period = '{period}' GROUP BY 1, 2 ORDER BY 1, 2"
        ));
        assert_eq!(kept, counted, "{period}");
    }
    let timed: i64 = conn
        .query_row(
            &format!(
                "SELECT coalesce(sum({}), 0) FROM case_latency WHERE period = 'month'",
                crate::model::cases::histogram_columns("", "").replace(", ", " + ")
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    let delivered: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(timed, delivered, "every delivery's time is in a histogram");
    let hours: i64 = conn
        .query_row(
            "SELECT SUM(n) FROM case_counts WHERE period = 'hour'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hours, counted.iter().map(|c| c.2).sum::<i64>());
}

#[tokio::test]
async fn case_counts_follow_submissions_and_outcomes_and_survive_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    for (i, leistung) in ["a", "a", "b", "b", "c"].iter().enumerate() {
        let mut s = sub(&format!("s{i}"), None);
        s.leistung = (*leistung).into();
        s.received_at = crate::model::time::rfc3339_now();
        store.accept(s).await.unwrap();
    }
    let claimed = store.claim("t", now_ms() + 1, 10).await.unwrap();
    let outcomes = [
        Recorded::Delivered { receipt: None },
        Recorded::Delivered { receipt: None },
        Recorded::Parked {
            failure: Failure::new("http-400", "refused"),
            gave_up_after: None,
        },
        Recorded::Parked {
            failure: Failure::new("http-400", "refused"),
            gave_up_after: None,
        },
    ];
    for (c, outcome) in claimed.iter().zip(outcomes) {
        store
            .record(&c.message_id, outcome, now_ms())
            .await
            .unwrap();
    }
    let actor = crate::model::delivery::Actor::new("op", None);
    store
        .operate(&claimed[3].message_id, Action::Discard, &actor)
        .await
        .unwrap();
    let today = crate::model::cases::StatsZone::EuropeBerlin.day_of(now_ms());
    let answer = store
        .case_counts(crate::model::cases::CaseQuery::all(
            crate::model::cases::Period::Day,
            today - 1,
            today + 2,
        ))
        .await
        .unwrap();
    let rows = &answer.counts;
    let n = |event: &str| {
        rows.iter()
            .filter(|r| r.event == event)
            .map(|r| r.n)
            .sum::<u64>()
    };
    assert_eq!(
        (n("accepted"), n("delivered"), n("parked"), n("discarded")),
        (5, 2, 2, 1)
    );
    let timed: u64 = answer
        .latency
        .iter()
        .map(|l| l.histogram.iter().sum::<u64>())
        .sum();
    assert_eq!(timed, 2, "each delivery's time is in a histogram");
    store.close().await.unwrap();
    drop(store);

    // A store of schema version 7 (before case statistics) is counted when migrated.
    let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
    conn.execute_batch(
        "DROP TRIGGER case_accepted; DROP TRIGGER case_delivered; DROP TRIGGER case_parked; DROP TRIGGER case_discarded;
         DROP TABLE case_counts; DROP TABLE case_latency; DROP TABLE case_zone; DROP TABLE case_buckets;
         DROP TRIGGER case_replied; DROP INDEX submissions_replies; ALTER TABLE submissions DROP COLUMN in_reply_to;
         ALTER TABLE submissions DROP COLUMN reply_by; ALTER TABLE submissions DROP COLUMN reply_type;
         ALTER TABLE deliveries DROP COLUMN env_size;
         PRAGMA user_version = 7;",
    )
    .unwrap();
    drop(conn);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.close().await.unwrap();
    drop(store);
    assert_case_counts_are_exact(&open_read_only(dir.path()).unwrap());
}

#[tokio::test]
async fn case_counts_fall_in_the_local_day_week_and_month() {
    use crate::model::cases::{parse_date, Period};
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    // 22:30 UTC on 30 June is 00:30 on 1 July in Berlin.
    let mut s = sub("midnight", None);
    s.received_at = "2026-06-30T22:30:00.123456789Z".into();
    store.accept(s).await.unwrap();
    let july = parse_date("2026-07-01").unwrap();
    for (period, from) in [
        (Period::Hour, july * 24),
        (Period::Day, july),
        (Period::Week, july - 2),
        (Period::Month, july),
    ] {
        let rows = store
            .case_counts(crate::model::cases::CaseQuery::all(period, from, from + 1))
            .await
            .unwrap()
            .counts;
        assert_eq!(rows.len(), 1, "{period:?}: {rows:?}");
        assert_eq!((rows[0].event.as_str(), rows[0].n), ("accepted", 1));
    }
    // In UTC it would be 30 June: a zone set now counts what comes from now on.
    store
        .set_case_zone(crate::model::cases::StatsZone::Utc)
        .await
        .unwrap();
    let mut s = sub("utc", None);
    s.received_at = "2026-06-30T22:30:00Z".into();
    store.accept(s).await.unwrap();
    let rows = store
        .case_counts(crate::model::cases::CaseQuery::all(
            Period::Day,
            july - 1,
            july,
        ))
        .await
        .unwrap()
        .counts;
    assert_eq!(rows.iter().map(|r| r.n).sum::<u64>(), 1);
}

#[tokio::test]
async fn a_reply_is_stored_with_what_it_answers_audited_there_and_counted_as_replied() {
    use crate::model::cases::{CaseQuery, Period};
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.accept(sub("s1", None)).await.unwrap();
    let mut r = sub("r1", None);
    r.deliveries[0].target = "p.replies".into();
    r.reply = Some(crate::model::submission::ReplyOf {
        submission_id: "s1".into(),
        by: "t".into(),
        reply_type: "bescheid".into(),
    });
    store.accept(r).await.unwrap();
    let stored = store.submission("r1").await.unwrap().unwrap();
    assert_eq!(stored.in_reply_to.as_deref(), Some("s1"));
    assert_eq!(
        store.submission("s1").await.unwrap().unwrap().in_reply_to,
        None
    );
    let replies = store.replies_to("s1").await.unwrap();
    assert_eq!(replies.len(), 1);
    assert_eq!(
        (
            replies[0].reply_id.as_str(),
            replies[0].by.as_str(),
            replies[0].reply_type.as_str()
        ),
        ("r1", "t", "bescheid")
    );
    assert!(store.replies_to("r1").await.unwrap().is_empty());
    // The reply's delivery to the portal is no case outcome.
    let claimed = store.claim("p.replies", now_ms() + 1, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .record(
            &claimed[0].message_id,
            Recorded::Delivered { receipt: None },
            now_ms(),
        )
        .await
        .unwrap();
    let today = crate::model::cases::StatsZone::EuropeBerlin.day_of(now_ms());
    let outcomes = store
        .case_counts(CaseQuery::all(Period::Day, today, today + 1))
        .await
        .unwrap()
        .counts;
    assert!(
        outcomes.iter().all(|c| c.event != "delivered"),
        "{outcomes:?}"
    );
    let trace = store.trace("s1").await.unwrap();
    let events: Vec<&str> = trace.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["received", "sealed", "replied"]);
    assert_eq!(trace[2].detail["reply_id"], "r1");
    assert_eq!(trace[2].target.as_deref(), Some("t"));
    let day = crate::model::cases::parse_date("2026-11-24").unwrap();
    let counts = store
        .case_counts(CaseQuery::all(Period::Day, day, day + 1))
        .await
        .unwrap()
        .counts;
    let of = |e: &str| {
        counts
            .iter()
            .filter(|c| c.event == e)
            .map(|c| c.n)
            .sum::<u64>()
    };
    assert_eq!((of("accepted"), of("replied")), (1, 1), "{counts:?}");
    // Reopened (and so past every migration): still there.
    store.close().await.unwrap();
    drop(store);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    let stored = store.submission("r1").await.unwrap().unwrap();
    assert_eq!(stored.in_reply_to.as_deref(), Some("s1"));
    store.close().await.unwrap();
}
