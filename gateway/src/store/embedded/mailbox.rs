//! The message box reads (`xta` targets): what waits for a reader, one
//! delivery by id, and what waits too long.

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use crate::model::delivery::BoxQuery;
use crate::model::delivery::{Boxed, DeliveryInfo, DeliveryState};
use crate::store::{Overdue, StoreError};

/// Messages waiting in the boxes of `q.targets`, by message id (= by time).
pub(super) fn mailbox(conn: &Connection, q: &BoxQuery) -> Result<Vec<Boxed>, StoreError> {
    if q.targets.is_empty() || q.limit == 0 {
        return Ok(Vec::new());
    }
    let mut sql = String::from(
        "SELECT d.message_id, d.submission_id, d.target, d.offered_ms, COALESCE(d.env_size, d.env_len, 0), s.leistung, s.portal, s.received_at, s.in_reply_to
         FROM deliveries d JOIN submissions s ON s.id = d.submission_id
         WHERE d.state = 'in_flight' AND d.offered_ms IS NOT NULL AND d.target IN (",
    );
    let mut args: Vec<Value> = Vec::new();
    for (i, t) in q.targets.iter().enumerate() {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
        args.push(Value::Text(t.clone()));
    }
    sql.push(')');
    if let Some(after) = &q.after {
        sql.push_str(" AND d.message_id > ?");
        args.push(Value::Text(after.clone()));
    }
    if !q.ids.is_empty() {
        sql.push_str(" AND d.message_id IN (");
        for (i, id) in q.ids.iter().enumerate() {
            sql.push_str(if i == 0 { "?" } else { ", ?" });
            args.push(Value::Text(id.clone()));
        }
        sql.push(')');
    }
    if let Some(from) = q.from_ms {
        sql.push_str(" AND d.offered_ms >= ?");
        args.push(Value::Integer(from));
    }
    if let Some(to) = q.to_ms {
        sql.push_str(" AND d.offered_ms < ?");
        args.push(Value::Integer(to));
    }
    sql.push_str(" ORDER BY d.message_id LIMIT ?");
    args.push(Value::Integer(q.limit.min(i64::MAX as usize) as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(Boxed {
            message_id: r.get(0)?,
            submission_id: r.get(1)?,
            target: r.get(2)?,
            offered_ms: r.get(3)?,
            size: r.get::<_, i64>(4)?.max(0) as u64,
            leistung: r.get(5)?,
            portal: r.get(6)?,
            received_at: r.get(7)?,
            in_reply_to: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delivery(
    conn: &Connection,
    message_id: &str,
) -> Result<Option<DeliveryInfo>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT submission_id, target, state, offered_ms FROM deliveries WHERE message_id = ?1",
        )?
        .query_row(params![message_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
            ))
        })
        .optional()?;
    let Some((submission_id, target, state, offered_ms)) = row else {
        return Ok(None);
    };
    let state = DeliveryState::parse(&state).ok_or_else(|| {
        StoreError::Corrupt(format!("delivery {message_id} has unknown state {state:?}"))
    })?;
    Ok(Some(DeliveryInfo {
        message_id: message_id.to_owned(),
        submission_id,
        target,
        state,
        offered_ms,
    }))
}

pub(super) fn overdue(conn: &Connection, before_ms: i64) -> Result<Vec<Overdue>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT target, COUNT(*), MIN(offered_ms) FROM deliveries
         WHERE state = 'in_flight' AND offered_ms IS NOT NULL AND offered_ms < ?1
         GROUP BY target ORDER BY target",
    )?;
    let rows = stmt.query_map(params![before_ms], |r| {
        Ok(Overdue {
            target: r.get(0)?,
            count: r.get::<_, i64>(1)?.max(0) as u64,
            oldest_ms: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn submission_by_key(
    conn: &Connection,
    portal: &str,
    key_hash: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT submission_id FROM idempotency WHERE portal = ?1 AND key = ?2")?
        .query_row(params![portal, key_hash], |r| r.get(0))
        .optional()?)
}
