//! The audit chain in PostgreSQL with several writers: every append locks
//! the one head row (`SELECT … FOR UPDATE`) inside the caller's transaction,
//! so records of all instances form one chain in commit order, exactly as the
//! embedded store's (same record format, same hashes: `audit verify` and the
//! proofs read it alike). The price is that appends are serialised across
//! the cluster for the rest of their transaction.

use tokio_postgres::Transaction;

use super::backend;
use crate::model::audit::{chained, AuditEvent, Head};
use crate::store::StoreError;

/// Appends `e` after the head, in `tx`; returns its sequence number.
pub async fn append(tx: &Transaction<'_>, ts: &str, e: AuditEvent) -> Result<u64, StoreError> {
    let head = tx
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(backend)?;
    let (seq, prev): (i64, String) = (head.get(0), head.get(1));
    let head = Head {
        seq: seq as u64,
        hash: prev,
    };
    let (record, text, hash) =
        chained(&head, ts, e).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    let next = seq + 1;
    tx.execute(
        "INSERT INTO audit (seq, submission_id, record, hash) VALUES ($1, $2, $3, $4)",
        &[&next, &record.submission_id, &text, &hash],
    )
    .await
    .map_err(backend)?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&next, &hash],
    )
    .await
    .map_err(backend)?;
    Ok(record.seq)
}
