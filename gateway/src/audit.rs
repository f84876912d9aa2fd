//! Audit verification and signed checkpoints.
//!
//! The store appends the hash-chained records (see [`crate::store::audit`]); this
//! module signs checkpoints over the chain's head with the seal key and verifies a
//! log: every record in sequence, each `prev` the SHA-256 of the record before,
//! each stored hash the SHA-256 of the record, and every checkpoint signed by a
//! seal that chains to the trust anchors and matching the recomputed chain. A log
//! that ends before its newest checkpoint was truncated. (A log truncated *after*
//! its newest checkpoint can only be caught with a copy of a later checkpoint kept
//! elsewhere — which is why checkpoints are exported on the admin listener.)

use std::time::{Duration, SystemTime};

use ozg_adapter_sdk::{jose, SealKey, TrustAnchors};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::store::audit::{record_hash, AuditRecord, Head, GENESIS};
use crate::store::{Checkpoint, Store, StoreError};

/// JWS `typ` of a checkpoint.
pub const TYP_CHECKPOINT: &str = "ozg-audit-checkpoint";

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CheckpointPayload {
    seq: u64,
    head: String,
    ts: String,
}

/// Signs the current head.
pub fn sign_checkpoint(
    seal: &SealKey,
    head: &Head,
    ts: &str,
) -> Result<Checkpoint, jose::JoseError> {
    let payload = CheckpointPayload {
        seq: head.seq,
        head: head.hash.clone(),
        ts: ts.to_owned(),
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
pub fn verify(
    conn: &Connection,
    trust: &TrustAnchors,
    now: SystemTime,
) -> Result<Result<Report, Broken>, StoreError> {
    let mut stmt = conn.prepare("SELECT seq, record, hash FROM audit ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_owned();
    let mut hashes: Vec<String> = Vec::new();
    let broken = |seq: u64, reason: String| Ok(Err(Broken { seq, reason }));
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
        prev = hash.clone();
        hashes.push(hash);
        expected_seq += 1;
    }
    let records = expected_seq - 1;
    let checkpoints = crate::store::embedded::read_checkpoints(conn)?;
    for c in &checkpoints {
        let v = match jose::verify(&c.jws, TYP_CHECKPOINT, trust, now) {
            Ok(v) => v,
            Err(e) => {
                return broken(
                    c.seq,
                    format!(
                        "checkpoint {}: signature does not verify ({e}): forged",
                        c.seq
                    ),
                )
            }
        };
        let payload: CheckpointPayload = match serde_json::from_slice(&v.payload) {
            Ok(p) => p,
            Err(e) => {
                return broken(
                    c.seq,
                    format!("checkpoint {}: unreadable payload ({e})", c.seq),
                )
            }
        };
        if payload.seq != c.seq || payload.head != c.head {
            return broken(
                c.seq,
                format!(
                    "checkpoint {}: the stored values differ from the signed ones: forged",
                    c.seq
                ),
            );
        }
        if c.seq > records {
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
        if c.seq > 0 && hashes[(c.seq - 1) as usize] != c.head {
            return broken(
                c.seq,
                format!("checkpoint {}: the signed head does not match the log: records up to {} were rewritten", c.seq, c.seq),
            );
        }
    }
    Ok(Ok(Report {
        records,
        checkpoints: checkpoints.len() as u64,
        head_seq: records,
        head_hash: prev,
        checkpoint_seq: checkpoints.last().map(|c| c.seq).unwrap_or(0),
    }))
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

/// Signs a checkpoint when the head moved and one is due; on shutdown a last one.
pub async fn checkpoint_task(
    store: std::sync::Arc<dyn Store>,
    seal: std::sync::Arc<SealKey>,
    config: AuditConfig,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
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
        let head = match store.audit_head().await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the audit head");
                if stopping {
                    return;
                }
                continue;
            }
        };
        metrics.audit_head.set(head.seq as i64);
        let due = head.seq > last
            && (stopping
                || head.seq - last >= config.checkpoint_every
                || last_time.elapsed() >= config.checkpoint_interval);
        if due {
            let ts = crate::store::embedded::rfc3339_now();
            match sign_checkpoint(&seal, &head, &ts) {
                Ok(c) => match store.add_checkpoint(c).await {
                    Ok(()) => {
                        last = head.seq;
                        last_time = tokio::time::Instant::now();
                        metrics.audit_checkpoint.set(head.seq as i64);
                        tracing::debug!(seq = head.seq, "audit checkpoint signed");
                    }
                    Err(e) => tracing::error!(error = %e, "cannot store the audit checkpoint"),
                },
                Err(e) => tracing::error!(error = %e, "cannot sign the audit checkpoint"),
            }
        }
        if stopping {
            return;
        }
    }
}
