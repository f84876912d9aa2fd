//! Audit verification and signed checkpoints.
//!
//! The store appends the hash-chained records (see [`crate::model::audit`]); this
//! module signs checkpoints over the chain's head with the seal key and verifies a
//! log: every record in sequence, each `prev` the SHA-256 of the record before,
//! each stored hash the SHA-256 of the record, and every checkpoint signed by a
//! seal that chained to the trust anchors when it was signed, matching the
//! recomputed chain and the RFC 9162 Merkle tree head of its batch of records
//! (which lets [`prove`] hand out inclusion proofs for single records). A log
//! that ends before its newest checkpoint was truncated. (A log truncated *after*
//! its newest checkpoint can only be caught with a copy of a later checkpoint kept
//! elsewhere — which is why checkpoints are exported on the admin listener.)

use std::time::{Duration, SystemTime};

use ozg_adapter_sdk::audit_proof::{
    parse_ts, verify_checkpoint, CheckpointError, CheckpointPayload, ProofDocument, RecordProof,
    SealPins, TYPE_PROOF,
};
use ozg_adapter_sdk::{jose, merkle, SealKey, TrustAnchors};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::model::audit::{record_hash, AuditRecord, Head, GENESIS};
use crate::store::{Checkpoint, Store, StoreError};

pub use ozg_adapter_sdk::audit_proof::TYP_CHECKPOINT;

/// Signs the current head, and the Merkle tree head over the batch of records
/// `from..=head.seq` whose stored texts are `batch`.
pub fn sign_checkpoint(
    seal: &SealKey,
    head: &Head,
    from: u64,
    batch: &[String],
    ts: &str,
) -> Result<Checkpoint, jose::JoseError> {
    let leaves: Vec<merkle::Hash> = batch
        .iter()
        .map(|r| merkle::leaf_hash(r.as_bytes()))
        .collect();
    let root = hex::encode(merkle::root(&leaves));
    let payload = CheckpointPayload {
        seq: head.seq,
        head: head.hash.clone(),
        ts: ts.to_owned(),
        from: Some(from),
        root: Some(root.clone()),
    };
    let jws = jose::sign(
        seal,
        TYP_CHECKPOINT,
        &serde_json::to_vec(&payload).unwrap_or_default(),
    )?;
    Ok(Checkpoint {
        seq: head.seq,
        head: head.hash.clone(),
        ts: ts.to_owned(),
        jws,
        from: Some(from),
        root: Some(root),
    })
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// Newest checkpoint's sequence number (0 if none).
    pub checkpoint_seq: u64,
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at seq {seq}: {reason}")]
pub struct Broken {
    /// The first record (or checkpoint) that does not verify.
    pub seq: u64,
    pub reason: String,
}

/// Verifies the log and checkpoints of a database.
///
/// One pass over the records; memory holds the leaf hashes of one checkpoint's
/// batch, not the log.
pub fn verify(
    conn: &Connection,
    trust: &TrustAnchors,
    seals: &SealPins,
    now: SystemTime,
) -> Result<Result<Report, Broken>, StoreError> {
    let broken = |seq: u64, reason: String| Ok(Err(Broken { seq, reason }));
    // The checkpoints first: each signed by a pinned seal, its stored values the
    // signed ones, each batch following the one before, signed no earlier than
    // the one before.
    let checkpoints = crate::store::embedded::read_checkpoints(conn)?;
    let mut previous = 0u64;
    let mut previous_ts = SystemTime::UNIX_EPOCH;
    for c in &checkpoints {
        let payload = match verify_checkpoint(&c.jws, trust, seals, now) {
            Ok(v) => v.payload,
            Err(e @ CheckpointError::Future(_)) => {
                return broken(c.seq, format!("checkpoint {}: {e}", c.seq))
            }
            Err(e) => return broken(c.seq, format!("checkpoint {}: {e}: forged", c.seq)),
        };
        let signed_at = parse_ts(&payload.ts).unwrap_or(SystemTime::UNIX_EPOCH);
        if signed_at < previous_ts {
            return broken(
                c.seq,
                format!(
                    "checkpoint {} is dated {}, before the checkpoint before it: backdated",
                    c.seq, payload.ts
                ),
            );
        }
        previous_ts = signed_at;
        if payload.seq != c.seq
            || payload.head != c.head
            || payload.from != c.from
            || payload.root != c.root
        {
            return broken(
                c.seq,
                format!(
                    "checkpoint {}: the stored values differ from the signed ones: forged",
                    c.seq
                ),
            );
        }
        if let Some(from) = c.from {
            if from != previous + 1 || from > c.seq {
                return broken(
                    c.seq,
                    format!(
                        "checkpoint {}: its batch starts at record {from}, but the checkpoint before ends at record {previous}",
                        c.seq
                    ),
                );
            }
        }
        previous = c.seq;
    }

    let mut stmt = conn.prepare("SELECT seq, record, hash FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_owned();
    let mut pending = checkpoints.iter().peekable();
    let mut batch: Vec<merkle::Hash> = Vec::new();
    while let Some(row) = rows.next()? {
        let stored_seq: u64 = row.get(0)?;
        let text: String = row.get(1)?;
        let stored_hash: String = row.get(2)?;
        if stored_seq != expected_seq {
            return broken(
                expected_seq,
                format!("record {expected_seq} is missing (the next stored record is {stored_seq}): deleted"),
            );
        }
        let record: AuditRecord = match serde_json::from_str(&text) {
            Ok(r) => r,
            Err(e) => return broken(stored_seq, format!("not a valid record: {e}")),
        };
        if record.seq != stored_seq {
            return broken(
                stored_seq,
                format!("the record at position {stored_seq} says it is record {}: records were reordered", record.seq),
            );
        }
        let hash = record_hash(&text);
        if hash != stored_hash {
            return broken(
                stored_seq,
                "the record's content does not match its hash: edited".into(),
            );
        }
        if record.prev != prev {
            return broken(
                stored_seq,
                format!(
                    "prev does not match the hash of record {}: a record before it was edited, removed or reordered",
                    stored_seq - 1
                ),
            );
        }
        batch.push(merkle::leaf_hash(text.as_bytes()));
        if let Some(c) = pending.next_if(|c| c.seq == stored_seq) {
            if parse_ts(&record.ts) > parse_ts(&c.ts) {
                return broken(
                    c.seq,
                    format!(
                        "checkpoint {} is dated {}, before the record it covers ({}): backdated",
                        c.seq, c.ts, record.ts
                    ),
                );
            }
            if hash != c.head {
                return broken(
                    c.seq,
                    format!("checkpoint {}: the signed head does not match the log: records up to {} were rewritten", c.seq, c.seq),
                );
            }
            if let Some(root) = &c.root {
                if *root != hex::encode(merkle::root(&batch)) {
                    return broken(
                        c.seq,
                        format!(
                            "checkpoint {}: the signed Merkle tree head does not match records {}..={}: rewritten",
                            c.seq,
                            c.from.unwrap_or(1),
                            c.seq
                        ),
                    );
                }
            }
            batch.clear();
        }
        prev = hash;
        expected_seq += 1;
    }
    let records = expected_seq - 1;
    if let Some(c) = pending.next() {
        return broken(
            records + 1,
            format!(
                "the log ends at record {records} but checkpoint {} covers more: records {}..={} were removed (truncated)",
                c.seq,
                records + 1,
                c.seq
            ),
        );
    }
    Ok(Ok(Report {
        records,
        checkpoints: checkpoints.len() as u64,
        head_seq: records,
        head_hash: prev,
        checkpoint_seq: checkpoints.last().map(|c| c.seq).unwrap_or(0),
    }))
}

/// Why no inclusion proof can be built.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("no audit records for submission {0}")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A proof document without records.
pub fn empty_proof(submission_id: &str) -> ProofDocument {
    ProofDocument {
        version: 1,
        kind: TYPE_PROOF.into(),
        submission_id: submission_id.to_owned(),
        records: Vec::new(),
        not_yet_covered: Vec::new(),
        without_merkle_head: Vec::new(),
    }
}

/// The inclusion proofs of every record of a submission that a checkpoint with a
/// Merkle tree head covers; the others are listed in `not_yet_covered`.
///
/// Costs one read of each covering checkpoint's batch (at most
/// `checkpoint_every` records plus what half a second adds).
pub fn prove(conn: &Connection, submission_id: &str) -> Result<ProofDocument, ProveError> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, record FROM audit WHERE submission_id = ?1 ORDER BY seq")
        .map_err(StoreError::from)?;
    let own: Vec<(u64, String)> = stmt
        .query_map(rusqlite::params![submission_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(StoreError::from)?
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)?;
    if own.is_empty() {
        return Err(ProveError::Unknown(submission_id.to_owned()));
    }
    let mut doc = empty_proof(submission_id);
    // (checkpoint seq, leaf hashes of its batch) of the batch read last.
    let mut cached: Option<(u64, Vec<merkle::Hash>)> = None;
    for (seq, record) in own {
        let (c, from) = match crate::store::embedded::read_covering_checkpoint(conn, seq)? {
            None => {
                doc.not_yet_covered.push(seq);
                continue;
            }
            Some(c) => match c.from {
                Some(from) => (c, from),
                None => {
                    doc.without_merkle_head.push(seq);
                    continue;
                }
            },
        };
        if cached.as_ref().map(|(s, _)| *s) != Some(c.seq) {
            let texts = crate::store::embedded::read_audit_texts(conn, from, c.seq)?;
            let leaves = texts
                .iter()
                .map(|t| merkle::leaf_hash(t.as_bytes()))
                .collect();
            cached = Some((c.seq, leaves));
        }
        let leaves = &cached.as_ref().map(|(_, l)| l).expect("just read");
        let index = (seq - from) as usize;
        let path = merkle::inclusion_path(leaves, index).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "checkpoint {} covers records {from}..={} but the log holds {} of them",
                c.seq,
                c.seq,
                leaves.len()
            ))
        })?;
        doc.records.push(RecordProof {
            seq,
            record,
            checkpoint: c.jws,
            leaf_index: index as u64,
            tree_size: leaves.len() as u64,
            path: path.iter().map(hex::encode).collect(),
        });
    }
    Ok(doc)
}

/// Checkpoint settings.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Sign a checkpoint at least this often while records are added.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// … and whenever this many records were added since the last one.
    pub checkpoint_every: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_every: 1000,
        }
    }
}

/// Signs the checkpoint over the records after the newest stored one up to
/// `head`, and stores it; returns its `seq`.
///
/// The batch starts after the newest checkpoint *in the store* (not a remembered
/// one), so batches stay contiguous whatever failed before.
async fn sign_next(store: &dyn Store, seal: &SealKey, head: &Head) -> Result<u64, String> {
    let newest = store
        .latest_checkpoint()
        .await
        .map_err(|e| format!("cannot read the newest checkpoint: {e}"))?;
    let last = newest.as_ref().map(|c| c.seq).unwrap_or(0);
    if head.seq <= last {
        return Ok(last);
    }
    let from = last + 1;
    let batch = store
        .audit_texts(from, head.seq)
        .await
        .map_err(|e| format!("cannot read records {from}..={}: {e}", head.seq))?;
    if batch.len() as u64 != head.seq - from + 1 {
        return Err(format!(
            "records {from}..={} are {} rows, not {}: the log has a gap",
            head.seq,
            batch.len(),
            head.seq - from + 1
        ));
    }
    // Never dated before what it covers or before the checkpoint before, even if
    // the system clock was set back since: `audit verify` would call that backdated.
    let newest_record_ts = batch
        .last()
        .and_then(|r| serde_json::from_str::<AuditRecord>(r).ok())
        .map(|r| r.ts);
    let ts = [
        newest_record_ts,
        newest.map(|c| c.ts),
        Some(crate::store::embedded::rfc3339_now()),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|ts| parse_ts(ts))
    .unwrap_or_else(crate::store::embedded::rfc3339_now);
    let c =
        sign_checkpoint(seal, head, from, &batch, &ts).map_err(|e| format!("cannot sign: {e}"))?;
    store
        .add_checkpoint(c)
        .await
        .map_err(|e| format!("cannot store: {e}"))?;
    Ok(head.seq)
}

/// Signs a checkpoint when the head moved and one is due; on shutdown a last one.
pub async fn checkpoint_task(
    store: std::sync::Arc<dyn Store>,
    seal: std::sync::Arc<SealKey>,
    config: AuditConfig,
    metrics: std::sync::Arc<crate::core::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    // Only decides when one is due; `sign_next` reads where the batch starts.
    let mut last = store
        .latest_checkpoint()
        .await
        .ok()
        .flatten()
        .map(|c| c.seq)
        .unwrap_or(0);
    let mut last_time = tokio::time::Instant::now();
    let poll = Duration::from_millis(500).min(config.checkpoint_interval);
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(poll) => false,
            _ = shutdown.changed() => true,
        };
        match store.audit_head().await {
            Ok(head) => {
                metrics.audit_head.set(head.seq as i64);
                let due = head.seq > last
                    && (stopping
                        || head.seq - last >= config.checkpoint_every
                        || last_time.elapsed() >= config.checkpoint_interval);
                if due {
                    match sign_next(store.as_ref(), &seal, &head).await {
                        Ok(seq) => {
                            last = seq;
                            last_time = tokio::time::Instant::now();
                            metrics.audit_checkpoint.set(seq as i64);
                            tracing::debug!(seq, "audit checkpoint signed");
                        }
                        Err(e) => tracing::error!(error = %e, "audit checkpoint not signed"),
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the audit head"),
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::audit::AuditEvent;
    use crate::store::embedded::{open_read_only, EmbeddedStore};

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
                .audit(AuditEvent {
                    event: "received",
                    submission_id: Some(format!("s{i}")),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }

    /// Signs a checkpoint over the head, covering records `from..=head`.
    async fn checkpoint(
        store: &EmbeddedStore,
        seal: &SealKey,
        from: u64,
        root_of: Option<&[String]>,
    ) {
        let head = store.audit_head().await.unwrap();
        let batch = store.audit_texts(from, head.seq).await.unwrap();
        let c = sign_checkpoint(
            seal,
            &head,
            from,
            root_of.unwrap_or(&batch),
            &crate::store::embedded::rfc3339_now(),
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
        let ts = crate::store::embedded::rfc3339_now();
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
        let v =
            verify_checkpoint(&signed(now - day * 20), &trust, &pins, SystemTime::now()).unwrap();
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
        let err =
            ozg_adapter_sdk::audit_proof::verify(&doc, &trust, &demo_seal(), SystemTime::now())
                .unwrap_err();
        assert!(err.to_string().contains("pinned seal"), "{err}");
    }

    #[tokio::test]
    async fn a_clock_set_back_does_not_make_the_next_checkpoint_look_backdated() {
        let (seal, trust, dir, store) = fixture();
        append(&store, 2).await;
        // A checkpoint signed while the clock ran two minutes ahead.
        let ahead = crate::store::embedded::rfc3339_ms(crate::core::engine::now_ms() + 120_000);
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
}
