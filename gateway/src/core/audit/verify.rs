//! `audit verify`: the whole log and its checkpoints, in one pass.

use std::time::SystemTime;

use ozg_adapter_sdk::audit_proof::{parse_ts, verify_checkpoint, CheckpointError, SealPins};
use ozg_adapter_sdk::{merkle, TrustAnchors};
use serde::Serialize;

use crate::model::audit::{record_hash, AuditRecord, Checkpoint, GENESIS};
use crate::store::{AuditLogRead, StoreError};

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// Newest checkpoint's sequence number (0 if none).
    pub checkpoint_seq: u64,
    /// What is worth knowing but does not break the log, e.g. checkpoints signed
    /// while the gateway's clock ran ahead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    log: &dyn AuditLogRead,
    trust: &TrustAnchors,
    seals: &SealPins,
    now: SystemTime,
) -> Result<Result<Report, Broken>, StoreError> {
    let broken = |seq: u64, reason: String| Ok(Err(Broken { seq, reason }));
    let checkpoints = log.checkpoints()?;
    let warnings = match check_checkpoints(&checkpoints, trust, seals, now) {
        Ok(w) => w,
        Err(b) => return Ok(Err(b)),
    };

    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_owned();
    let mut pending = checkpoints.iter().peekable();
    let mut batch: Vec<merkle::Hash> = Vec::new();
    let mut found: Option<Broken> = None;
    log.each_record(&mut |stored_seq, text, stored_hash| {
        let mut broken = |seq: u64, reason: String| {
            found = Some(Broken { seq, reason });
            false
        };
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
        true
    })?;
    if let Some(b) = found {
        return Ok(Err(b));
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
        warnings,
    }))
}

/// The checkpoints on their own: each signed by a pinned seal, its stored values
/// the signed ones, each batch following the one before, signed no earlier than
/// the one before.
fn check_checkpoints(
    checkpoints: &[Checkpoint],
    trust: &TrustAnchors,
    seals: &SealPins,
    now: SystemTime,
) -> Result<Vec<String>, Broken> {
    let broken = |seq: u64, reason: String| Err(Broken { seq, reason });
    let mut warnings = Vec::new();
    let mut previous = 0u64;
    let mut previous_ts = SystemTime::UNIX_EPOCH;
    for c in checkpoints {
        let payload = match verify_checkpoint(&c.jws, trust, seals, now) {
            Ok(v) => v.payload,
            // Dated ahead of this machine's clock: if the signature and chain hold
            // at the date it claims, the gateway's clock ran ahead when it signed
            // (and was set back since) — worth a warning, not a forgery.
            Err(CheckpointError::Future(ts)) => {
                let claimed = parse_ts(&ts).unwrap_or(now);
                match verify_checkpoint(&c.jws, trust, seals, claimed) {
                    Ok(v) => {
                        warnings.push(format!(
                            "checkpoint {} is dated {ts}, ahead of this machine's clock: it was signed while the gateway's clock ran ahead (set back since), or this clock is behind; its signature and chain are valid at that date",
                            c.seq
                        ));
                        v.payload
                    }
                    Err(e) => return broken(c.seq, format!("checkpoint {}: {e}: forged", c.seq)),
                }
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
    Ok(warnings)
}
