//! Tests of the store's start-up checks against a data directory that lost or
//! rolled back its database (see `anchor`): refused with what to restore, and no
//! envelope deleted.

use std::path::Path;

use super::*;
use crate::model::audit::Checkpoint;

/// A submission whose envelope is its own (so segments differ by content).
fn sub(id: &str) -> NewSubmission {
    let mut s = super::tests::sub(id, None);
    let envelope = format!("{{\"envelope\":\"{id}\"}}").into_bytes();
    s.deliveries[0].envelope_crc32 = crate::model::submission::envelope_checksum(&envelope);
    s.deliveries[0].envelope = envelope;
    s
}

/// Opens, accepts `ids`, closes cleanly.
async fn run_with(dir: &Path, ids: &[&str]) {
    let store = EmbeddedStore::open(dir, 16).unwrap();
    for id in ids {
        assert_eq!(store.accept(sub(id)).await.unwrap(), Accepted::Stored);
    }
    store.close().await.unwrap();
}

/// The segment files and their bytes.
fn segments_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("envelopes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn refusal(dir: &Path) -> String {
    match EmbeddedStore::open(dir, 16) {
        Ok(_) => panic!("the store opened on an inconsistent data directory"),
        Err(e) => e.to_string(),
    }
}

fn remove_database(dir: &Path) {
    for f in ["gateway.db", "gateway.db-wal", "gateway.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

#[tokio::test]
async fn a_lost_database_is_refused_and_no_envelope_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), &["a", "b"]).await;
    let before = segments_of(dir.path());
    assert!(before.iter().any(|(_, b)| !b.is_empty()));

    // Missing altogether.
    remove_database(dir.path());
    let e = refusal(dir.path());
    assert!(
        e.contains("holds no store") && e.contains("Restore gateway.db"),
        "{e}"
    );
    assert_eq!(
        segments_of(dir.path()),
        before,
        "nothing deleted, nothing added"
    );

    // Truncated to nothing.
    std::fs::write(dir.path().join("gateway.db"), b"").unwrap();
    let e = refusal(dir.path());
    assert!(e.contains("holds no store"), "{e}");
    assert_eq!(segments_of(dir.path()), before);

    // Without the anchor, the envelopes alone still give it away.
    std::fs::remove_file(dir.path().join(anchor::ANCHOR_FILE)).unwrap();
    remove_database(dir.path());
    let e = refusal(dir.path());
    assert!(e.contains("segment file(s) with sealed envelopes"), "{e}");
    assert_eq!(segments_of(dir.path()), before);
}

#[tokio::test]
async fn after_a_clean_shutdown_the_database_file_alone_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), &["a", "b", "c"]).await;
    let wal = dir.path().join("gateway.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "the WAL was copied into the database file at shutdown"
    );
    // A copy of gateway.db, the anchor and envelopes/ — no -wal — is the whole store.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("gateway.db"),
        copy.path().join("gateway.db"),
    )
    .unwrap();
    std::fs::copy(
        dir.path().join(anchor::ANCHOR_FILE),
        copy.path().join(anchor::ANCHOR_FILE),
    )
    .unwrap();
    std::fs::create_dir(copy.path().join("envelopes")).unwrap();
    for (name, bytes) in segments_of(dir.path()) {
        std::fs::write(copy.path().join("envelopes").join(name), bytes).unwrap();
    }
    let store = EmbeddedStore::open(copy.path(), 16).unwrap();
    for id in ["a", "b", "c"] {
        assert!(store.submission(id).await.unwrap().is_some(), "{id}");
        assert!(store.envelope(&format!("{id}-m")).await.unwrap().is_some());
    }
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_database_rolled_back_behind_its_anchor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), &["a"]).await;
    let old = std::fs::read(dir.path().join("gateway.db")).unwrap();
    run_with(dir.path(), &["b", "c"]).await;
    // An older copy put in place of the database (or a WAL that lost its tail).
    remove_database(dir.path());
    std::fs::write(dir.path().join("gateway.db"), &old).unwrap();
    let e = refusal(dir.path());
    assert!(e.contains("rolled back"), "{e}");

    // The operator restored that older backup on purpose: moving the anchor away
    // accepts it, and the store anchors the restored state.
    std::fs::remove_file(dir.path().join(anchor::ANCHOR_FILE)).unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    assert!(store.submission("a").await.unwrap().is_some());
    assert!(store.submission("b").await.unwrap().is_none());
    store.close().await.unwrap();
    assert!(dir.path().join(anchor::ANCHOR_FILE).exists());
}

#[tokio::test]
async fn a_database_of_another_store_is_refused() {
    let one = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    run_with(one.path(), &["a"]).await;
    run_with(other.path(), &["x"]).await;
    remove_database(one.path());
    std::fs::copy(
        other.path().join("gateway.db"),
        one.path().join("gateway.db"),
    )
    .unwrap();
    let e = refusal(one.path());
    assert!(e.contains("another installation"), "{e}");
}

#[tokio::test]
async fn each_stored_checkpoint_moves_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    let at_start = anchor::read(dir.path()).unwrap().unwrap();
    assert_eq!(at_start.seq, 0);
    store.accept(sub("a")).await.unwrap();
    let head = store.audit_head().await.unwrap();
    assert!(head.seq > 0);
    store
        .add_checkpoint(Checkpoint {
            seq: head.seq,
            head: head.hash.clone(),
            ts: crate::model::time::rfc3339_now(),
            jws: "not checked by the store".into(),
            from: Some(1),
            root: None,
        })
        .await
        .unwrap();
    // A stored checkpoint returns anchored.
    let anchored = anchor::read(dir.path()).unwrap().unwrap();
    assert_eq!((anchored.seq, anchored.hash), (head.seq, head.hash));
    assert_eq!(anchored.store_id, at_start.store_id);
    store.close().await.unwrap();
}

#[tokio::test]
async fn idempotent_replays_and_conflicts_write_no_envelopes() {
    use crate::model::submission::IdempotencyKey;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    let keyed = |id: &str, hash: &str| {
        let mut s = sub(id);
        s.deliveries[0].envelope = vec![b'x'; 1 << 20];
        s.deliveries[0].envelope_crc32 =
            crate::model::submission::envelope_checksum(&s.deliveries[0].envelope);
        s.idempotency = Some(IdempotencyKey {
            key: "portal-ref-1".into(),
            request_hash: hash.into(),
            legacy_request_hash: String::new(),
        });
        s
    };
    assert_eq!(
        store.accept(keyed("a", "h")).await.unwrap(),
        Accepted::Stored
    );
    let bytes = store.stats().envelope_bytes;
    for i in 0..5 {
        let replay = store.accept(keyed(&format!("r{i}"), "h")).await.unwrap();
        assert!(matches!(replay, Accepted::Replay { .. }), "{replay:?}");
    }
    let conflict = store.accept(keyed("c", "other")).await.unwrap();
    assert!(
        matches!(conflict, Accepted::Conflict { .. }),
        "{conflict:?}"
    );
    assert_eq!(
        store.stats().envelope_bytes,
        bytes,
        "replays and conflicts wrote no envelope bytes"
    );

    // Two uses of one new key in the same group: the first is stored, the second
    // answered from it, and only the first's envelope is written.
    let (one, two) = tokio::join!(
        store.accept(keyed_other("n1")),
        store.accept(keyed_other("n2"))
    );
    let results = [one.unwrap(), two.unwrap()];
    assert_eq!(
        results.iter().filter(|r| **r == Accepted::Stored).count(),
        1,
        "{results:?}"
    );
    assert!(
        results.iter().any(|r| matches!(r, Accepted::Replay { .. })),
        "{results:?}"
    );
    store.close().await.unwrap();
}

fn keyed_other(id: &str) -> NewSubmission {
    let mut s = sub(id);
    s.idempotency = Some(crate::model::submission::IdempotencyKey {
        key: "portal-ref-2".into(),
        request_hash: "h2".into(),
        legacy_request_hash: String::new(),
    });
    s
}

#[tokio::test]
async fn version_4_is_migrated_to_error_classes_and_hashed_idempotency_keys() {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), &["a"]).await;
    // What version 4 wrote: no class column, keys in clear.
    let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
    conn.execute_batch(
        "ALTER TABLE deliveries DROP COLUMN last_class;
         DROP TRIGGER case_replied; DROP TRIGGER case_accepted; DROP TRIGGER case_delivered; DROP TRIGGER case_parked; DROP TRIGGER case_discarded;
         DROP INDEX submissions_replies; ALTER TABLE submissions DROP COLUMN in_reply_to;
         ALTER TABLE submissions DROP COLUMN reply_by; ALTER TABLE submissions DROP COLUMN reply_type;
         ALTER TABLE deliveries DROP COLUMN env_size;
         INSERT INTO idempotency (portal, key, request_hash, submission_id) VALUES ('p', 'AZ-4711', 'h', 'a');
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(conn);
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    store.close().await.unwrap();
    drop(store);
    let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
    let (version, key): (i64, String) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT key FROM idempotency WHERE portal = 'p')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(version, schema::SCHEMA_VERSION);
    assert_eq!(
        key,
        crate::model::submission::idempotency_key_hash("AZ-4711")
    );
    let class_column: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('deliveries') WHERE name = 'last_class'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(class_column, 1);
}
