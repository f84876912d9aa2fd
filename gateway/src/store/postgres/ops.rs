//! The cluster store's other writes, each one transaction with its audit
//! record: operators' actions, handing deliveries back, re-basing waits,
//! retention, audit records of their own and checkpoints.

use deadpool_postgres::Pool;

use super::audit::append;
use super::backend;
use super::deliveries::want_message;
use crate::model::audit::{AuditEvent, Checkpoint};
use crate::model::delivery::{Action, Actor, DeliveryState, Operated};
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::{Purge, StoreError};

/// The advisory lock checkpoints are stored under ("ozg-gw-c").
const CHECKPOINT_LOCK: i64 = 0x6f7a_672d_6777_2d63;

pub async fn operate(
    pool: &Pool,
    message_id: &str,
    action: Action,
    by: &Actor,
) -> Result<Operated, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    let Some(row) = tx
        .query_opt(
            "SELECT submission_id, target, state, offered_ms, attempts FROM deliveries WHERE message_id = $1 FOR UPDATE",
            &[&message_id],
        )
        .await
        .map_err(backend)?
    else {
        return Ok(Operated::NotFound);
    };
    let (submission_id, target, state, offered, attempts): (
        String,
        String,
        String,
        Option<i64>,
        i32,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state}")))?;
    if !action.applies_to(state, offered.is_some()) {
        return Ok(Operated::WrongState(state));
    }
    let now = now_ms();
    let ts = rfc3339_ms(now);
    let new_state = match action {
        Action::Retry => {
            tx.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = $2, updated_at = $3, updated_ms = $2 WHERE message_id = $1",
                &[&message_id, &now, &ts],
            )
            .await
            .map_err(backend)?;
            want_message(&tx, message_id, &target, attempts, now, now).await?;
            DeliveryState::Pending
        }
        Action::Discard => {
            tx.execute(
                "UPDATE deliveries SET state = 'discarded', updated_at = $2, updated_ms = $3, envelope = NULL, envelope_crc32 = NULL WHERE message_id = $1",
                &[&message_id, &ts, &now],
            )
            .await
            .map_err(backend)?;
            tx.execute("DELETE FROM outbox WHERE message_id = $1", &[&message_id])
                .await
                .map_err(backend)?;
            DeliveryState::Discarded
        }
        Action::Park => {
            // Its queue message finds it parked and is dropped (`take`: stale).
            tx.execute(
                "UPDATE deliveries SET state = 'parked', updated_at = $2, updated_ms = $3 WHERE message_id = $1",
                &[&message_id, &ts, &now],
            )
            .await
            .map_err(backend)?;
            tx.execute("DELETE FROM outbox WHERE message_id = $1", &[&message_id])
                .await
                .map_err(backend)?;
            DeliveryState::Parked
        }
    };
    append(
        &tx,
        &ts,
        AuditEvent::operated(&submission_id, message_id, &target, action, by, state),
    )
    .await?;
    tx.commit().await.map_err(backend)?;
    Ok(Operated::Done {
        target,
        state: new_state,
    })
}

/// Hands `in_flight` deliveries back to `pending`, each with a new queue message.
pub async fn release(pool: &Pool, message_ids: &[String]) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    let now = now_ms();
    let ts = rfc3339_ms(now);
    for id in message_ids {
        let Some(r) = tx
            .query_opt(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = $2 WHERE message_id = $1 AND state = 'in_flight' AND offered_ms IS NULL
                 RETURNING submission_id, target, attempts",
                &[&id, &now],
            )
            .await
            .map_err(backend)?
        else {
            continue;
        };
        let (submission_id, target, attempts): (String, String, i32) =
            (r.get(0), r.get(1), r.get(2));
        want_message(&tx, id, &target, attempts, now, now).await?;
        append(
            &tx,
            &ts,
            AuditEvent::handed_back(&submission_id, id, &target),
        )
        .await?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(())
}

/// Moves waits of `target` ending after `latest_ms` to `latest_ms`, each with
/// a new queue message due then (the one in a wait queue is dropped as a
/// duplicate when it comes).
pub async fn rebase(pool: &Pool, target: &str, latest_ms: i64) -> Result<u64, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    let moved = tx
        .query(
            "UPDATE deliveries SET next_attempt_at = $2
             WHERE target = $1 AND state = 'retry_wait' AND next_attempt_at > $2 RETURNING message_id, attempts",
            &[&target, &latest_ms],
        )
        .await
        .map_err(backend)?;
    let now = now_ms();
    for r in &moved {
        let id: String = r.get(0);
        want_message(&tx, &id, target, r.get(1), latest_ms, now).await?;
    }
    tx.commit().await.map_err(backend)?;
    Ok(moved.len() as u64)
}

/// Deletes sealed envelopes whose time is up; the audit records stay.
pub async fn purge(pool: &Pool, p: Purge) -> Result<u64, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    let ts = rfc3339_ms(now_ms());
    let limit = p.limit.min(i64::MAX as usize) as i64;
    let mut purged = 0u64;
    let done = tx
        .query(
            "SELECT d.submission_id FROM deliveries d
             WHERE d.submission_id IN (SELECT d2.submission_id FROM deliveries d2
                                       WHERE d2.envelope IS NOT NULL AND d2.state = 'delivered' AND d2.updated_ms < $1)
             GROUP BY d.submission_id
             HAVING bool_and(d.state IN ('delivered', 'discarded')) AND MAX(d.updated_ms) < $1
             LIMIT $2",
            &[&p.delivered_before_ms, &limit],
        )
        .await
        .map_err(backend)?;
    for r in done {
        let id: String = r.get(0);
        let n = tx
            .execute(
                "UPDATE deliveries SET envelope = NULL, envelope_crc32 = NULL WHERE submission_id = $1 AND envelope IS NOT NULL",
                &[&id],
            )
            .await
            .map_err(backend)?;
        tx.execute("DELETE FROM idempotency WHERE submission_id = $1", &[&id])
            .await
            .map_err(backend)?;
        append(&tx, &ts, AuditEvent::purged(&id, n as usize)).await?;
        purged += n;
    }
    let parked = tx
        .query(
            "UPDATE deliveries SET state = 'discarded', updated_at = $3, updated_ms = $4, envelope = NULL, envelope_crc32 = NULL
             WHERE message_id IN (SELECT message_id FROM deliveries
                                  WHERE state = 'parked' AND updated_ms < $1 AND envelope IS NOT NULL LIMIT $2)
             RETURNING message_id, submission_id, target",
            &[&p.parked_before_ms, &limit, &ts, &now_ms()],
        )
        .await
        .map_err(backend)?;
    for r in parked {
        let (message_id, submission_id, target): (String, String, String) =
            (r.get(0), r.get(1), r.get(2));
        append(
            &tx,
            &ts,
            AuditEvent::discarded_by_retention(&submission_id, &message_id, &target),
        )
        .await?;
        purged += 1;
    }
    tx.commit().await.map_err(backend)?;
    Ok(purged)
}

pub async fn audit(pool: &Pool, event: AuditEvent) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    append(&tx, &rfc3339_ms(now_ms()), event).await?;
    tx.commit().await.map_err(backend)?;
    Ok(())
}

/// Stores a checkpoint that continues the stored ones. Instances sign
/// checkpoints each on their own: one that overlaps a checkpoint another
/// instance stored first is dropped (the next round starts after that one),
/// so batches stay contiguous.
pub async fn add_checkpoint(pool: &Pool, c: &Checkpoint) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHECKPOINT_LOCK])
        .await
        .map_err(backend)?;
    let hash: Option<String> = tx
        .query_opt("SELECT hash FROM audit WHERE seq = $1", &[&(c.seq as i64)])
        .await
        .map_err(backend)?
        .map(|r| r.get(0));
    if hash.as_deref() != Some(c.head.as_str()) {
        return Err(StoreError::Corrupt(format!(
            "checkpoint for seq {} does not match the log",
            c.seq
        )));
    }
    let newest: i64 = tx
        .query_one("SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints", &[])
        .await
        .map_err(backend)?
        .get(0);
    let continues = c.from.map(|f| f as i64 == newest + 1).unwrap_or(true);
    if c.seq as i64 <= newest || !continues {
        tracing::debug!(
            seq = c.seq,
            newest,
            "another instance stored an overlapping checkpoint first"
        );
        return Ok(());
    }
    tx.execute(
        "INSERT INTO audit_checkpoints (seq, head, ts, jws, first_seq, root) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&(c.seq as i64), &c.head, &c.ts, &c.jws, &c.from.map(|f| f as i64), &c.root],
    )
    .await
    .map_err(backend)?;
    tx.commit().await.map_err(backend)?;
    Ok(())
}

/// Sets or removes a run-time setting, with its audit record.
pub async fn set_setting(
    pool: &Pool,
    kind: &str,
    id: &str,
    value: Option<&str>,
    event: AuditEvent,
) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    let ts = rfc3339_ms(now_ms());
    match value {
        Some(v) => tx
            .execute(
                "INSERT INTO settings (kind, id, value, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                &[&kind, &id, &v, &ts],
            )
            .await
            .map_err(backend)?,
        None => tx
            .execute(
                "DELETE FROM settings WHERE kind = $1 AND id = $2",
                &[&kind, &id],
            )
            .await
            .map_err(backend)?,
    };
    append(&tx, &ts, event).await?;
    tx.commit().await.map_err(backend)?;
    Ok(())
}
