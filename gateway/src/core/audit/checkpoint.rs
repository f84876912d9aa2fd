//! Signed checkpoints: the seal key signs the chain's head and the RFC 9162
//! Merkle tree head over the batch of records since the checkpoint before; the
//! checkpoint task signs one when it is due.

use std::time::Duration;

use ozg_adapter_sdk::audit_proof::{parse_ts, CheckpointPayload, TYP_CHECKPOINT};
use ozg_adapter_sdk::{jose, merkle, SealKey};

use crate::core::throttle::Throttle;
use crate::model::audit::{AuditRecord, Checkpoint, Head};
use crate::store::Store;

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

/// Signs the checkpoint over the records after the newest stored one up to
/// `head`, and stores it; returns its `seq`.
///
/// The batch starts after the newest checkpoint *in the store* (not a remembered
/// one), so batches stay contiguous whatever failed before.
pub(super) async fn sign_next(
    store: &dyn Store,
    seal: &SealKey,
    head: &Head,
) -> Result<u64, String> {
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
        Some(crate::model::time::rfc3339_now()),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|ts| parse_ts(ts))
    .unwrap_or_else(crate::model::time::rfc3339_now);
    let c =
        sign_checkpoint(seal, head, from, &batch, &ts).map_err(|e| format!("cannot sign: {e}"))?;
    store
        .add_checkpoint(c)
        .await
        .map_err(|e| format!("cannot store: {e}"))?;
    Ok(head.seq)
}

/// How often a repeating checkpoint error is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Signs a checkpoint when the head moved and one is due; on shutdown a last one.
pub async fn checkpoint_task(
    store: std::sync::Arc<dyn Store>,
    seal: std::sync::Arc<crate::core::intake::rotation::Seals>,
    config: crate::config::AuditConfig,
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
    let mut sign_errors = Throttle::new(LOG_EVERY);
    let mut head_errors = Throttle::new(LOG_EVERY);
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(poll) => false,
            _ = shutdown.changed() => true,
        };
        match store.audit_head().await {
            Ok(head) => {
                head_errors.recovered();
                metrics.audit_head.set(head.seq as i64);
                let due = head.seq > last
                    && (stopping
                        || head.seq - last >= config.checkpoint_every
                        || last_time.elapsed() >= config.checkpoint_interval);
                if due {
                    match sign_next(store.as_ref(), &seal.current(), &head).await {
                        Ok(seq) => {
                            sign_errors.recovered();
                            last = seq;
                            last_time = tokio::time::Instant::now();
                            metrics.audit_checkpoint.set(seq as i64);
                            tracing::debug!(seq, "audit checkpoint signed");
                        }
                        Err(e) => {
                            if let Some(left_out) = sign_errors.occurred() {
                                tracing::error!(error = %e, repeated = left_out, "audit checkpoint not signed; retrying");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                if let Some(left_out) = head_errors.occurred() {
                    tracing::error!(error = %e, repeated = left_out, "cannot read the audit head; retrying");
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
