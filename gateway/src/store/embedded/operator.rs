//! What the operator API reads and sets: deliveries by filter and page, each
//! target's oldest waiting delivery and newest error, and the run-time
//! settings (paused targets, registered targets and routes).

use rusqlite::{params, Connection};

use super::audit_log::Chain as _;
use crate::model::audit::{AuditEvent, Head};
use crate::model::delivery::{DeliveryQuery, DeliveryRow, DeliveryState, TargetHealth};
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::StoreError;

/// Deliveries matching `q`, in message id order.
pub(super) fn deliveries(
    conn: &Connection,
    q: &DeliveryQuery,
) -> Result<Vec<DeliveryRow>, StoreError> {
    if q.targets.as_ref().is_some_and(Vec::is_empty) || q.limit == 0 {
        return Ok(Vec::new());
    }
    let targets = q
        .targets
        .as_ref()
        .map(|t| serde_json::to_string(t).unwrap_or_default());
    let mut stmt = conn.prepare_cached(
        "SELECT d.message_id, d.submission_id, d.target, d.state, d.attempts, d.last_error, d.updated_at,
                d.next_attempt_at, d.offered_ms, s.leistung, d.created_at_ms
         FROM deliveries d JOIN submissions s ON s.id = d.submission_id
         WHERE (?1 IS NULL OR d.state = ?1)
           AND (?2 IS NULL OR d.target IN (SELECT value FROM json_each(?2)))
           AND (?3 IS NULL OR s.leistung = ?3)
           AND (?4 IS NULL OR d.created_at_ms < ?4)
           AND (?5 IS NULL OR d.message_id > ?5)
         ORDER BY d.message_id LIMIT ?6",
    )?;
    let rows = stmt.query_map(
        params![
            q.state.map(DeliveryState::as_str),
            targets,
            q.leistung,
            q.created_before_ms,
            q.after,
            q.limit.min(i64::MAX as usize) as i64
        ],
        |r| {
            let state: String = r.get(3)?;
            let state = DeliveryState::parse(&state).unwrap_or(DeliveryState::Pending);
            Ok(DeliveryRow {
                message_id: r.get(0)?,
                submission_id: r.get(1)?,
                target: r.get(2)?,
                state,
                attempts: r.get(4)?,
                last_error: r.get(5)?,
                updated_at: r.get(6)?,
                next_attempt_at: state
                    .waits()
                    .then(|| r.get(7).map(rfc3339_ms))
                    .transpose()?,
                offered_at: r.get::<_, Option<i64>>(8)?.map(rfc3339_ms),
                leistung: r.get(9)?,
                created_at: rfc3339_ms(r.get(10)?),
            })
        },
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// For each target: its oldest waiting delivery's acceptance (ms), by index.
pub(super) fn oldest_waiting(
    conn: &Connection,
    targets: &[String],
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT MIN(created_at_ms) FROM deliveries WHERE target = ?1 AND state = ?2",
    )?;
    let mut out = Vec::new();
    for t in targets {
        let mut oldest: Option<i64> = None;
        for state in ["pending", "retry_wait"] {
            let ms: Option<i64> = stmt.query_row(params![t, state], |r| r.get(0))?;
            oldest = match (oldest, ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(ms) = oldest {
            out.push((t.clone(), ms));
        }
    }
    Ok(out)
}

/// Per target: the newest error of a delivery waiting for a retry or parked.
pub(super) fn target_health(conn: &Connection) -> Result<Vec<TargetHealth>, StoreError> {
    let mut by_target = std::collections::BTreeMap::<String, TargetHealth>::new();
    // SQLite takes the other columns from the row that has the MAX.
    let mut errors = conn.prepare_cached(
        "SELECT target, last_error, MAX(updated_ms) FROM deliveries
         WHERE state IN ('retry_wait', 'parked') AND last_error IS NOT NULL GROUP BY target",
    )?;
    for row in errors.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (target, error, ms) = row?;
        let h = by_target
            .entry(target.clone())
            .or_insert_with(|| TargetHealth {
                target,
                ..Default::default()
            });
        h.last_error = Some(error);
        h.last_error_ms = Some(ms);
    }
    Ok(by_target.into_values().collect())
}

/// The settings of one kind, by id.
pub(super) fn settings(conn: &Connection, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT id, value FROM settings WHERE kind = ?1 ORDER BY id")?;
    let rows = stmt.query_map(params![kind], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Sets or removes a setting, with its audit record.
pub(super) fn set_setting(
    conn: &Connection,
    kind: &str,
    id: &str,
    value: Option<&str>,
    event: AuditEvent,
    head: &mut Head,
) -> Result<(), StoreError> {
    let ts = rfc3339_ms(now_ms());
    match value {
        Some(v) => conn
            .prepare_cached(
                "INSERT INTO settings (kind, id, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, id) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![kind, id, v, ts])?,
        None => conn
            .prepare_cached("DELETE FROM settings WHERE kind = ?1 AND id = ?2")?
            .execute(params![kind, id])?,
    };
    head.append(conn, &ts, event)?;
    Ok(())
}
