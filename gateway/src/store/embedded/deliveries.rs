//! The delivery rows: claiming due deliveries, recording an attempt's outcome,
//! handing back, operators' actions, retention, and recovery after a crash —
//! each with its audit record in the same transaction.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::audit_log::Chain as _;
use crate::model::audit::{AuditEvent, Head};
use crate::model::delivery::{Action, Actor, Claimed, DeliveryState, Operated, Recorded, StoredAt};
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::{Purge, StoreError};

/// Hands deliveries left `in_flight` by a crash back to `pending`, with an audit record each.
pub(super) fn recover_in_flight(
    conn: &mut Connection,
    head: &mut Head,
) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: Vec<(String, String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT message_id, submission_id, target FROM deliveries WHERE state = 'in_flight' AND offered_ms IS NULL",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let ts = rfc3339_ms(now_ms());
    let before = head.clone();
    for (message_id, submission_id, target) in &rows {
        tx.execute(
            "UPDATE deliveries SET state = 'pending' WHERE message_id = ?1",
            params![message_id],
        )?;
        if let Err(e) = head.append(
            &tx,
            &ts,
            AuditEvent::recovered(submission_id, message_id, target),
        ) {
            *head = before;
            return Err(e);
        }
    }
    if let Err(e) = tx.commit() {
        *head = before;
        return Err(e.into());
    }
    Ok(rows.len())
}

pub(super) fn operate(
    conn: &Connection,
    message_id: &str,
    action: Action,
    by: &Actor,
    head: &mut Head,
) -> Result<Operated, StoreError> {
    let row: Option<(String, String, String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT submission_id, target, state, offered_ms FROM deliveries WHERE message_id = ?1",
        )?
        .query_row(params![message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((submission_id, target, state, offered)) = row else {
        return Ok(Operated::NotFound);
    };
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state}")))?;
    if !action.applies_to(state, offered.is_some()) {
        return Ok(Operated::WrongState(state));
    }
    let now = now_ms();
    let ts = rfc3339_ms(now);
    let new_state = match action {
        Action::Retry => {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, updated_at = ?3, updated_ms = ?2 WHERE message_id = ?1",
            )?
            .execute(params![message_id, now, ts])?;
            DeliveryState::Pending
        }
        Action::Discard => {
            // The envelope's bytes go with their segment file once nothing refers to it.
            conn.prepare_cached(&format!("UPDATE deliveries SET state = 'discarded', updated_at = ?2, updated_ms = ?3, {FORGET_ENVELOPE} WHERE message_id = ?1"))?
                .execute(params![message_id, ts, now])?;
            DeliveryState::Discarded
        }
        Action::Park => {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 'parked', updated_at = ?2, updated_ms = ?3 WHERE message_id = ?1",
            )?
            .execute(params![message_id, ts, now])?;
            DeliveryState::Parked
        }
    };
    head.append(
        conn,
        &ts,
        AuditEvent::operated(&submission_id, message_id, &target, action, by, state),
    )?;
    Ok(Operated::Done {
        target,
        state: new_state,
    })
}

/// Removes a delivery's reference to its envelope; the bytes go with their
/// segment file once no delivery refers to it (see `collect_segments`).
pub(super) const FORGET_ENVELOPE: &str =
    "segment = NULL, env_offset = NULL, env_len = NULL, env_crc32 = NULL, env_size = NULL";

/// Deletes sealed envelopes whose time is up (Datenschutz); the audit records stay.
pub(super) fn purge(conn: &Connection, p: &Purge, head: &mut Head) -> Result<u64, StoreError> {
    let ts = rfc3339_ms(now_ms());
    let mut purged = 0u64;
    // Submissions whose deliveries are all finished, the last before the cut-off, with envelopes left.
    let done: Vec<String> = conn
        .prepare_cached(
            "SELECT d.submission_id FROM deliveries d
             WHERE d.submission_id IN (SELECT d2.submission_id FROM deliveries d2
                                       WHERE d2.segment IS NOT NULL AND d2.state = 'delivered' AND d2.updated_ms < ?1)
             GROUP BY d.submission_id
             HAVING SUM(d.state NOT IN ('delivered', 'discarded')) = 0 AND MAX(d.updated_ms) < ?1
             LIMIT ?2",
        )?
        .query_map(params![p.delivered_before_ms, p.limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in done {
        let n = conn
            .prepare_cached(&format!("UPDATE deliveries SET {FORGET_ENVELOPE} WHERE submission_id = ?1 AND segment IS NOT NULL"))?
            .execute(params![id])?;
        conn.prepare_cached("DELETE FROM idempotency WHERE submission_id = ?1")?
            .execute(params![id])?;
        head.append(conn, &ts, AuditEvent::purged(&id, n))?;
        purged += n as u64;
    }
    let parked: Vec<(String, String, String)> = conn
        .prepare_cached(
            "SELECT message_id, submission_id, target FROM deliveries
             WHERE state = 'parked' AND updated_ms < ?1 AND segment IS NOT NULL LIMIT ?2",
        )?
        .query_map(params![p.parked_before_ms, p.limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (message_id, submission_id, target) in parked {
        conn.prepare_cached(&format!("UPDATE deliveries SET state = 'discarded', updated_at = ?2, updated_ms = ?3, {FORGET_ENVELOPE} WHERE message_id = ?1"))?
            .execute(params![message_id, ts, now_ms()])?;
        head.append(
            conn,
            &ts,
            AuditEvent::discarded_by_retention(&submission_id, &message_id, &target),
        )?;
        purged += 1;
    }
    Ok(purged)
}

pub(super) fn claim(
    conn: &Connection,
    target: &str,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    // One index range per state, each already in next_attempt_at order: no sort over
    // the backlog, however long it is. Due retries go first, then the oldest new ones.
    let mut claimed = Vec::new();
    for state in ["retry_wait", "pending"] {
        if claimed.len() >= limit {
            break;
        }
        let mut stmt = conn.prepare_cached(
            "SELECT message_id, submission_id, attempts, created_at_ms, COALESCE(env_size, env_len, 0),
                    segment, env_offset, env_len, env_crc32 FROM deliveries
             WHERE target = ?1 AND state = ?2 AND next_attempt_at <= ?3
             ORDER BY next_attempt_at LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![target, state, now_ms, (limit - claimed.len()) as i64],
            |r| {
                let stored_at = match r.get::<_, Option<i64>>(5)? {
                    Some(segment) => Some(StoredAt {
                        segment,
                        offset: r.get(6)?,
                        len: r.get(7)?,
                        crc32: r.get(8)?,
                    }),
                    None => None,
                };
                Ok(Claimed {
                    message_id: r.get(0)?,
                    submission_id: r.get(1)?,
                    target: target.to_owned(),
                    attempts: r.get::<_, u32>(2)? + 1,
                    created_at_ms: r.get(3)?,
                    size: r.get::<_, i64>(4)?.max(0) as u64,
                    stored_at,
                })
            },
        )?;
        for row in rows {
            claimed.push(row?);
        }
    }
    let now = rfc3339_ms(now_ms);
    for c in &claimed {
        conn.prepare_cached(
            "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, updated_at = ?2 WHERE message_id = ?1",
        )?
        .execute(params![c.message_id, now])?;
    }
    Ok(claimed)
}

pub(super) fn record(
    conn: &Connection,
    message_id: &str,
    outcome: &Recorded,
    now_ms: i64,
    head: &mut Head,
) -> Result<(), StoreError> {
    let now = rfc3339_ms(now_ms);
    let (submission_id, target, attempt): (String, String, u32) = conn
        .prepare_cached(
            "SELECT submission_id, target, attempts FROM deliveries WHERE message_id = ?1",
        )?
        .query_row(params![message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("no delivery {message_id}")))?;
    let last_error = outcome.last_error();
    let last_class = outcome.class();
    let changed = match outcome {
        Recorded::Delivered { receipt } => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'delivered', receipt = ?2, last_error = NULL, last_class = NULL, updated_at = ?3, updated_ms = ?4
                 WHERE message_id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![message_id, receipt, now, now_ms])?,
        Recorded::Confirmed { receipt } => conn
            .prepare_cached(
                "UPDATE deliveries SET receipt = ?2, updated_at = ?3
                 WHERE message_id = ?1 AND state = 'delivered'",
            )?
            .execute(params![message_id, receipt, now])?,
        Recorded::Offered => conn
            .prepare_cached(
                "UPDATE deliveries SET offered_ms = ?3, updated_at = ?2, updated_ms = ?3
                 WHERE message_id = ?1 AND state = 'in_flight' AND offered_ms IS NULL",
            )?
            .execute(params![message_id, now, now_ms])?,
        Recorded::RetryAt { at_ms, .. } => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'retry_wait', next_attempt_at = ?2, last_error = ?3, last_class = ?5, updated_at = ?4
                 WHERE message_id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![message_id, at_ms, last_error, now, last_class])?,
        Recorded::Parked { .. } => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'parked', last_error = ?2, last_class = ?5, updated_at = ?3, updated_ms = ?4
                 WHERE message_id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![message_id, last_error, now, now_ms, last_class])?,
    };
    if changed != 1 {
        let expected = match outcome {
            Recorded::Confirmed { .. } => "delivered",
            _ => "in flight",
        };
        return Err(StoreError::Corrupt(format!(
            "delivery {message_id} is not {expected}"
        )));
    }
    head.append(
        conn,
        &now,
        AuditEvent::outcome(&submission_id, message_id, &target, attempt, outcome),
    )
}

pub(super) fn release(
    conn: &Connection,
    message_ids: &[String],
    head: &mut Head,
) -> Result<(), StoreError> {
    let ts = rfc3339_ms(now_ms());
    for id in message_ids {
        let changed = conn
            .prepare_cached("UPDATE deliveries SET state = 'pending' WHERE message_id = ?1 AND state = 'in_flight' AND offered_ms IS NULL")?
            .execute(params![id])?;
        if changed == 1 {
            let (submission_id, target): (String, String) = conn
                .prepare_cached(
                    "SELECT submission_id, target FROM deliveries WHERE message_id = ?1",
                )?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            head.append(
                conn,
                &ts,
                AuditEvent::handed_back(&submission_id, id, &target),
            )?;
        }
    }
    Ok(())
}

/// Moves the waits of `target` that end after `latest_ms` to `latest_ms`: after a
/// clock step back (or a long `Retry-After`), no delivery waits longer than the
/// retry policy allows from now. Returns how many moved.
pub(super) fn rebase(conn: &Connection, target: &str, latest_ms: i64) -> Result<u64, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET next_attempt_at = ?2
             WHERE target = ?1 AND state = 'retry_wait' AND next_attempt_at > ?2",
        )?
        .execute(params![target, latest_ms])?;
    Ok(n as u64)
}
