//! Tests of checkpoints, verification and proofs against a real embedded store.

use std::time::SystemTime;

use ozg_adapter_sdk::audit_proof::{verify_checkpoint, CheckpointError, SealPins};
use ozg_adapter_sdk::{jose, SealKey, TrustAnchors};

use super::checkpoint::sign_next;
use super::*;
use crate::model::audit::AuditEvent;
use crate::model::audit::{Checkpoint, Head};
use crate::store::embedded::{open_read_only, EmbeddedStore};
use crate::store::Store as _;

fn demo(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../certs-example")
            .join(name),
    )
    .unwrap()
}

/// The demo seal key, the demo CA and an empty store.
fn fixture() -> (SealKey, TrustAnchors, tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), 16).unwrap();
    (
        SealKey::from_pem(&demo("seal.pem"), &demo("seal.key")).unwrap(),
        TrustAnchors::from_pem(&demo("ca.pem")).unwrap(),
        dir,
        store,
    )
}

/// What `verify` finds wrong in the store of `dir`.
fn first_broken(dir: &std::path::Path, trust: &TrustAnchors) -> Broken {
    let conn = open_read_only(dir).unwrap();
    verify(&conn, trust, &demo_seal(), SystemTime::now())
        .unwrap()
        .unwrap_err()
}

/// The demo seal, pinned.
fn demo_seal() -> SealPins {
    SealPins::from_pem(&demo("seal.pem")).unwrap()
}

/// Appends `n` records, each of its own submission `s<seq - 1>`.
async fn append(store: &EmbeddedStore, n: u64) {
    let first = store.audit_head().await.unwrap().seq;
    for i in first..first + n {
        store
            .audit(AuditEvent::purged(&format!("s{i}"), 0))
            .await
            .unwrap();
    }
}

/// Signs a checkpoint over the head, covering records `from..=head`.
async fn checkpoint(store: &EmbeddedStore, seal: &SealKey, from: u64, root_of: Option<&[String]>) {
    let head = store.audit_head().await.unwrap();
    let batch = store.audit_texts(from, head.seq).await.unwrap();
    let c = sign_checkpoint(
        seal,
        &head,
        from,
        root_of.unwrap_or(&batch),
        &crate::model::time::rfc3339_now(),
    )
    .unwrap();
    store.add_checkpoint(c).await.unwrap();
}

#[tokio::test]
async fn checkpoints_carry_the_merkle_head_of_their_batch_and_proofs_follow() {
    let (seal, trust, dir, store) = fixture();
    append(&store, 5).await;
    // A checkpoint as gateways before inclusion proofs signed it: no batch, no root.
    let head = store.audit_head().await.unwrap();
    let ts = crate::model::time::rfc3339_now();
    let payload = serde_json::json!({"seq": head.seq, "head": head.hash, "ts": ts});
    let jws = jose::sign(&seal, TYP_CHECKPOINT, payload.to_string().as_bytes()).unwrap();
    store
        .add_checkpoint(Checkpoint {
            seq: head.seq,
            head: head.hash.clone(),
            ts,
            jws,
            from: None,
            root: None,
        })
        .await
        .unwrap();
    append(&store, 7).await;
    checkpoint(&store, &seal, 6, None).await;
    append(&store, 2).await;
    let conn = open_read_only(dir.path()).unwrap();
    let report = verify(&conn, &trust, &demo_seal(), SystemTime::now())
        .unwrap()
        .unwrap();
    assert_eq!((report.records, report.checkpoints), (14, 2));

    // s7 is record 8, leaf 2 of the batch 6..=12; s0 only has the old checkpoint,
    // s13 none yet.
    let doc = prove(&conn, "s7").unwrap();
    assert_eq!(doc.records.len(), 1);
    assert_eq!(
        (doc.records[0].leaf_index, doc.records[0].tree_size),
        (2, 7)
    );
    let proven =
        ozg_adapter_sdk::audit_proof::verify(&doc, &trust, &demo_seal(), SystemTime::now())
            .unwrap();
    assert_eq!(proven[0].checkpoint_seq, 12);
    assert_eq!(prove(&conn, "s0").unwrap().without_merkle_head, [1]);
    assert_eq!(prove(&conn, "s13").unwrap().not_yet_covered, [14]);
    assert!(matches!(
        prove(&conn, "nobody"),
        Err(ProveError::Unknown(_))
    ));
}

#[test]
fn a_checkpoint_stays_valid_after_its_seal_expired_but_not_one_signed_after() {
    use crate::tools::demo_pki::{Algorithm, DemoCa, Usage};
    let day = time::Duration::days(1);
    let now = time::OffsetDateTime::now_utc();
    let ca = DemoCa::generate("audit test CA", 5).unwrap();
    // A seal that was valid last month and expired a week ago.
    let old_seal = ca
        .issue_between(
            "old seal",
            Usage::Seal,
            Algorithm::EcP256,
            now - day * 40,
            now - day * 7,
        )
        .unwrap();
    let seal =
        SealKey::from_pem(old_seal.cert_pem.as_bytes(), old_seal.key_pem.as_bytes()).unwrap();
    let trust = TrustAnchors::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let pins = SealPins::from_pem(old_seal.cert_pem.as_bytes()).unwrap();
    let head = Head {
        seq: 1,
        hash: "ab".repeat(32),
    };
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let signed = |ts: time::OffsetDateTime| {
        sign_checkpoint(&seal, &head, 1, &["{}".to_owned()], &rfc3339(ts))
            .unwrap()
            .jws
    };
    // Signed while the seal was valid: still verifies today.
    let v = verify_checkpoint(&signed(now - day * 20), &trust, &pins, SystemTime::now()).unwrap();
    assert_eq!(v.payload.seq, 1);
    // Signed (claims to be) after it expired: refused.
    let err = verify_checkpoint(&signed(now - day), &trust, &pins, SystemTime::now())
        .unwrap_err()
        .to_string();
    println!("signed after expiry: {err}");
    assert!(err.contains("expired"), "{err}");
    // Signed in the future: refused.
    let err = verify_checkpoint(&signed(now + day), &trust, &pins, SystemTime::now())
        .unwrap_err()
        .to_string();
    assert!(err.contains("future"), "{err}");
    // The seal is not pinned: refused, however valid.
    let err = verify_checkpoint(
        &signed(now - day * 20),
        &trust,
        &demo_seal(),
        SystemTime::now(),
    )
    .unwrap_err();
    assert!(matches!(err, CheckpointError::NotASeal(_)), "{err}");
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_of_the_pki_is_refused() {
    // The demo portal's client certificate comes from the same CA as the seal
    // and may sign: without the seal pinned, a portal could vouch for records.
    let portal = SealKey::from_pem(&demo("portal.pem"), &demo("portal.key")).unwrap();
    let (_, trust, dir, store) = fixture();
    append(&store, 3).await;
    checkpoint(&store, &portal, 1, None).await;
    let broken = first_broken(dir.path(), &trust);
    assert!(
        broken
            .reason
            .contains("not one of the pinned seal certificates"),
        "{broken}"
    );
    let doc = prove(&open_read_only(dir.path()).unwrap(), "s1").unwrap();
    let err = ozg_adapter_sdk::audit_proof::verify(&doc, &trust, &demo_seal(), SystemTime::now())
        .unwrap_err();
    assert!(err.to_string().contains("pinned seal"), "{err}");
}

#[tokio::test]
async fn a_clock_set_back_does_not_make_the_next_checkpoint_look_backdated() {
    let (seal, trust, dir, store) = fixture();
    append(&store, 2).await;
    // A checkpoint signed while the clock ran two minutes ahead.
    let ahead = crate::model::time::rfc3339_ms(crate::model::time::now_ms() + 120_000);
    let head = store.audit_head().await.unwrap();
    let batch = store.audit_texts(1, head.seq).await.unwrap();
    let c = sign_checkpoint(&seal, &head, 1, &batch, &ahead).unwrap();
    store.add_checkpoint(c).await.unwrap();
    // The clock was corrected; more records, the next checkpoint.
    append(&store, 2).await;
    let head = store.audit_head().await.unwrap();
    assert_eq!(sign_next(&store, &seal, &head).await.unwrap(), 4);
    let newest = store.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(newest.ts, ahead, "dated no earlier than the one before");
    let conn = open_read_only(dir.path()).unwrap();
    let report = verify(&conn, &trust, &demo_seal(), SystemTime::now())
        .unwrap()
        .unwrap();
    assert_eq!((report.records, report.checkpoints), (4, 2));
}

#[tokio::test]
async fn checkpoints_signed_while_the_clock_ran_days_ahead_are_a_warning_not_a_forgery() {
    let (seal, trust, dir, store) = fixture();
    append(&store, 3).await;
    // The daemon ran ten days ahead when it signed; the clock is right again now.
    let ahead =
        crate::model::time::rfc3339_ms(crate::model::time::now_ms() + 10 * 24 * 3600 * 1000);
    let head = store.audit_head().await.unwrap();
    let batch = store.audit_texts(1, head.seq).await.unwrap();
    let c = sign_checkpoint(&seal, &head, 1, &batch, &ahead).unwrap();
    store.add_checkpoint(c).await.unwrap();
    let conn = open_read_only(dir.path()).unwrap();
    let report = verify(&conn, &trust, &demo_seal(), SystemTime::now())
        .unwrap()
        .expect("the chain is intact: no forgery");
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("clock ran ahead"),
        "{:?}",
        report.warnings
    );

    // Dated ahead and signed by a key that is not the seal: still a forgery.
    let (_, trust, dir, store) = fixture();
    append(&store, 3).await;
    let portal = SealKey::from_pem(&demo("portal.pem"), &demo("portal.key")).unwrap();
    let head = store.audit_head().await.unwrap();
    let batch = store.audit_texts(1, head.seq).await.unwrap();
    let c = sign_checkpoint(&portal, &head, 1, &batch, &ahead).unwrap();
    store.add_checkpoint(c).await.unwrap();
    let broken = first_broken(dir.path(), &trust);
    assert!(broken.reason.contains("forged"), "{broken}");
}

#[tokio::test]
async fn a_signed_merkle_head_that_does_not_match_its_batch_is_found() {
    let (seal, trust, dir, store) = fixture();
    append(&store, 4).await;
    checkpoint(&store, &seal, 1, None).await;
    append(&store, 3).await;
    // Signed over other records than the batch 5..=7 holds.
    checkpoint(&store, &seal, 5, Some(&["{}".to_owned()])).await;
    let broken = first_broken(dir.path(), &trust);
    assert_eq!(broken.seq, 7);
    assert!(
        broken
            .reason
            .contains("Merkle tree head does not match records 5..=7"),
        "{broken}"
    );

    // A batch that does not follow the checkpoint before.
    let (_, _, dir, store) = fixture();
    append(&store, 4).await;
    checkpoint(&store, &seal, 1, None).await;
    append(&store, 3).await;
    checkpoint(&store, &seal, 6, None).await;
    let broken = first_broken(dir.path(), &trust);
    assert!(
        broken
            .reason
            .contains("starts at record 6, but the checkpoint before ends at record 4"),
        "{broken}"
    );
}

#[tokio::test]
async fn unstamped_checkpoints_are_listed_oldest_first_above_the_mark() {
    let (seal, _trust, _dir, store) = fixture();
    let mut from = 1;
    for _ in 0..3 {
        append(&store, 2).await;
        checkpoint(&store, &seal, from, None).await;
        from = store.audit_head().await.unwrap().seq + 1;
    }
    let seqs = |list: &[Checkpoint]| list.iter().map(|c| c.seq).collect::<Vec<_>>();
    let (all, total) = store.unstamped(0, 32).await.unwrap();
    assert_eq!((seqs(&all), total), (vec![2, 4, 6], 3));
    store.add_stamp(2, b"token".to_vec(), 0).await.unwrap();
    let (left, total) = store.unstamped(0, 1).await.unwrap();
    assert_eq!((seqs(&left), total), (vec![4], 2));
    // Above a mark, only what follows it is looked at and counted.
    let (left, total) = store.unstamped(4, 32).await.unwrap();
    assert_eq!((seqs(&left), total), (vec![6], 1));
}
