//! Inclusion proofs: for each record of a submission, its signed checkpoint and
//! its Merkle audit path (`audit prove`, `GET /v1/submissions/{id}/proof`).

use ozg_adapter_sdk::audit_proof::{ProofDocument, RecordProof, TYPE_PROOF};
use ozg_adapter_sdk::merkle;

use crate::store::{AuditLogRead, Store, StoreError};

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
pub fn prove(log: &dyn AuditLogRead, submission_id: &str) -> Result<ProofDocument, ProveError> {
    let own = log.submission_records(submission_id)?;
    if own.is_empty() {
        return Err(ProveError::Unknown(submission_id.to_owned()));
    }
    let mut doc = empty_proof(submission_id);
    // (checkpoint seq, leaf hashes of its batch) of the batch read last.
    let mut cached: Option<(u64, Vec<merkle::Hash>)> = None;
    for (seq, record) in own {
        let (c, from) = match log.covering_checkpoint(seq)? {
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
            let texts = log.texts(from, c.seq)?;
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
            checkpoint_timestamp: log.stamp(c.seq)?.map(|t| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(t)
            }),
        });
    }
    Ok(doc)
}

/// The inclusion proofs of one submission's records, read from a running store
/// off the async threads; a submission without records gives an empty document.
pub async fn prove_submission(
    store: &dyn Store,
    submission_id: &str,
) -> Result<ProofDocument, StoreError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let id = submission_id.to_owned();
    store
        .read_audit(Box::new(move |log| {
            let _ = tx.send(prove(log, &id));
        }))
        .await?;
    match rx.await.map_err(|_| StoreError::Closed)? {
        Ok(doc) => Ok(doc),
        Err(ProveError::Unknown(_)) => Ok(empty_proof(submission_id)),
        Err(ProveError::Store(e)) => Err(e),
    }
}
