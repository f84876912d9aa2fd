//! The audit chain in PostgreSQL with several writers, chained in deferred
//! batches (schema version 2).
//!
//! A transaction that changes something appends its records to
//! `audit_pending` ([`append`]): a plain insert, committed with the change,
//! with no lock shared between writers — so writers of all instances commit
//! at PostgreSQL's pace, not one after another. The chainer ([`chain`])
//! places committed records in the one chain: under an advisory lock (one
//! chainer in the cluster at a time), it reads the oldest pending records in
//! the order of `id`, gives each its sequence number and `prev` after the
//! head, moves them to `audit` and advances the head — one transaction per
//! batch. Every instance runs a chainer; whichever gets the lock does the
//! work, and a record left behind by an instance that died is placed by the
//! next round of any other.
//!
//! What this keeps: one chain in one order, records and hashes exactly as
//! the embedded store's (`audit verify` and the proofs read both alike); a
//! submission's records in the order they happened (a later transaction's
//! records get larger ids, and a record is visible to the chainer only after
//! the records it follows). What it costs: a record is committed with its
//! change at once but placed in the chain a moment later (one chainer round,
//! milliseconds under load). Reads that must see everything — the Laufzettel,
//! verification, proofs, the CLI — first place what is pending ([`chain_all`]).

use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;

use super::backend;
use crate::model::audit::{placed, unplaced, AuditEvent, AuditRecord, Head};
use crate::store::StoreError;

/// The advisory lock the chainer holds for its transaction ("ozg-gw-a").
const CHAIN_LOCK: i64 = 0x6f7a_672d_6777_2d61;

/// Records placed per chainer transaction, at most.
pub const CHAIN_BATCH: i64 = 4096;

const APPEND: &str = "INSERT INTO audit_pending (ts, event, submission_id, message_id, target, detail) VALUES ($1, $2, $3, $4, $5, $6)";

/// Appends `e` to the pending records, in `tx`.
pub async fn append(tx: &Transaction<'_>, ts: &str, e: AuditEvent) -> Result<(), StoreError> {
    let r = unplaced(ts, e);
    let detail = (!r.detail.is_null()).then(|| r.detail.to_string());
    let insert = tx.prepare_cached(APPEND).await.map_err(backend)?;
    tx.execute(
        &insert,
        &[
            &r.ts,
            &r.event,
            &r.submission_id,
            &r.message_id,
            &r.target,
            &detail,
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

/// Places up to [`CHAIN_BATCH`] pending records after the head, in `tx`
/// (the caller commits). Without `wait`, returns `None` at once if another
/// chainer holds the lock; with it, waits for that one to finish.
pub async fn chain(
    tx: &tokio_postgres::Transaction<'_>,
    wait: bool,
) -> Result<Option<usize>, StoreError> {
    if wait {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHAIN_LOCK])
            .await
            .map_err(backend)?;
    } else {
        let got: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&CHAIN_LOCK])
            .await
            .map_err(backend)?
            .get(0);
        if !got {
            return Ok(None);
        }
    }
    let pending = tx
        .query(
            "SELECT id, ts, event, submission_id, message_id, target, detail FROM audit_pending ORDER BY id LIMIT $1",
            &[&CHAIN_BATCH],
        )
        .await
        .map_err(backend)?;
    if pending.is_empty() {
        return Ok(Some(0));
    }
    let head = tx
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(backend)?;
    let mut head = Head {
        seq: head.get::<_, i64>(0) as u64,
        hash: head.get(1),
    };
    let n = pending.len();
    let (mut ids, mut seqs, mut subs, mut texts, mut hashes) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for row in &pending {
        let detail: Option<String> = row.get(6);
        let detail = match detail {
            Some(d) => serde_json::from_str(&d)
                .map_err(|e| StoreError::Corrupt(format!("pending audit record: {e}")))?,
            None => serde_json::Value::Null,
        };
        let record = AuditRecord {
            seq: 0,
            ts: row.get(1),
            event: row.get(2),
            submission_id: row.get(3),
            message_id: row.get(4),
            target: row.get(5),
            detail,
            prev: String::new(),
        };
        let (record, text, hash) =
            placed(&head, record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        ids.push(row.get::<_, i64>(0));
        seqs.push(record.seq as i64);
        subs.push(record.submission_id);
        texts.push(text);
        head = Head {
            seq: record.seq,
            hash: hash.clone(),
        };
        hashes.push(hash);
    }
    tx.execute(
        "INSERT INTO audit (seq, submission_id, record, hash)
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[])",
        &[&seqs, &subs, &texts, &hashes],
    )
    .await
    .map_err(backend)?;
    tx.execute("DELETE FROM audit_pending WHERE id = ANY($1)", &[&ids])
        .await
        .map_err(backend)?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
        &[&(head.seq as i64), &head.hash],
    )
    .await
    .map_err(backend)?;
    Ok(Some(n))
}

/// Places every record pending now, waiting for another chainer if one is
/// at work; returns how many this call placed.
pub async fn chain_all(client: &mut tokio_postgres::Client) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let tx = client.transaction().await.map_err(backend)?;
        let n = chain(&tx, true).await?.unwrap_or(0);
        tx.commit().await.map_err(backend)?;
        total += n;
        if (n as i64) < CHAIN_BATCH {
            return Ok(total);
        }
    }
}

/// [`chain_all`] on a connection of `pool`.
pub async fn chain_all_in(pool: &Pool) -> Result<usize, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    chain_all(&mut conn).await
}

/// One chainer round without waiting: places what is pending unless another
/// chainer is at it. `Ok(true)` if a full batch was placed (more may wait).
pub async fn chain_round(pool: &Pool) -> Result<bool, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    let n = chain(&tx, false).await?;
    tx.commit().await.map_err(backend)?;
    Ok(n.is_some_and(|n| n as i64 >= CHAIN_BATCH))
}

/// Records waiting for their place in the chain.
pub async fn pending(pool: &Pool) -> Result<u64, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let n: i64 = conn
        .query_one("SELECT count(*) FROM audit_pending", &[])
        .await
        .map_err(backend)?
        .get(0);
    Ok(n as u64)
}
