//! Submission rows: storing a new submission with its deliveries, envelope
//! locations and idempotency key; reading one back with its deliveries.

use rusqlite::{params, Connection, OptionalExtension};

use super::audit_log::Chain as _;
use super::segments::Location;
use crate::model::audit::{AuditEvent, Head};
use crate::model::delivery::DeliveryState;
use crate::model::submission::{
    Accepted, DeliveryStatus, NewSubmission, ReplyInfo, SubmissionStatus,
};
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::StoreError;

pub(super) fn insert_one(
    conn: &Connection,
    s: &NewSubmission,
    head: &mut Head,
    placed: &[Location],
) -> Result<Accepted, StoreError> {
    if let Some(idem) = &s.idempotency {
        let prior: Option<(String, String)> = conn
            .prepare_cached("SELECT request_hash, submission_id FROM idempotency WHERE portal = ?1 AND key = ?2")?
            .query_row(params![s.portal, idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((hash, submission_id)) = prior {
            if hash != idem.request_hash && hash != idem.legacy_request_hash {
                return Ok(Accepted::Conflict { submission_id });
            }
            let response: String = conn
                .prepare_cached("SELECT response FROM submissions WHERE id = ?1")?
                .query_row(params![submission_id], |r| r.get(0))?;
            return Ok(Accepted::Replay {
                submission_id,
                response,
            });
        }
    }
    // Envelopes are not written for a key known when the group began (see
    // `writer`); should that key's first use have failed in the same group, this
    // one is refused (the portal retries) rather than stored without envelopes.
    if placed.len() != s.deliveries.len() {
        return Err(StoreError::CommitFailed(
            "the submission's envelopes were not written; retry".into(),
        ));
    }
    conn.prepare_cached(
        "INSERT INTO submissions (id, portal, leistung, destination, received_at, response, in_reply_to, reply_by, reply_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![s.id, s.portal, s.leistung, s.destination, s.received_at, s.response,
                     s.reply.as_ref().map(|r| &r.submission_id), s.reply.as_ref().map(|r| &r.by),
                     s.reply.as_ref().map(|r| &r.reply_type)])?;
    if let Some(idem) = &s.idempotency {
        conn.prepare_cached("INSERT INTO idempotency (portal, key, request_hash, submission_id) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![s.portal, idem.key, idem.request_hash, s.id])?;
    }
    let now_ms = now_ms();
    for (d, at) in s.deliveries.iter().zip(placed) {
        conn.prepare_cached(
            "INSERT INTO deliveries (message_id, submission_id, target, state, attempts, next_attempt_at, created_at_ms, updated_at,
                                     segment, env_offset, env_len, env_crc32, env_size)
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![d.message_id, s.id, d.target, now_ms, s.received_at, at.segment, at.offset, at.len, at.crc32, at.size])?;
    }
    let ts = rfc3339_ms(now_ms);
    head.append(conn, &ts, AuditEvent::received(s))?;
    head.append(conn, &ts, AuditEvent::sealed(s))?;
    if let Some(replied) = AuditEvent::replied(s) {
        head.append(conn, &ts, replied)?;
    }
    Ok(Accepted::Stored)
}

/// The replies to submission `id`, oldest first.
pub(super) fn read_replies(conn: &Connection, id: &str) -> Result<Vec<ReplyInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, reply_by, reply_type, received_at FROM submissions WHERE in_reply_to = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok(ReplyInfo {
            reply_id: r.get(0)?,
            by: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            reply_type: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            received_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn read_submission(
    conn: &Connection,
    id: &str,
) -> Result<Option<SubmissionStatus>, StoreError> {
    let head = conn
        .prepare_cached(
            "SELECT portal, leistung, destination, received_at, in_reply_to FROM submissions WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()?;
    let Some((portal, leistung, destination, received_at, in_reply_to)) = head else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT target, message_id, state, attempts, last_error, updated_at, receipt, last_class, next_attempt_at, offered_ms FROM deliveries
         WHERE submission_id = ?1 ORDER BY target",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, i64>(8)?,
            r.get::<_, Option<i64>>(9)?,
        ))
    })?;
    let mut deliveries = Vec::new();
    for row in rows {
        let (
            target,
            message_id,
            state,
            attempts,
            last_error,
            updated_at,
            receipt,
            error_class,
            due,
            offered_ms,
        ) = row?;
        let state = DeliveryState::parse(&state).ok_or_else(|| {
            StoreError::Corrupt(format!("delivery {message_id} has unknown state {state:?}"))
        })?;
        deliveries.push(DeliveryStatus {
            target,
            message_id,
            state,
            attempts,
            last_error,
            error_class,
            receipt,
            updated_at,
            next_attempt_at: state.waits().then(|| rfc3339_ms(due)),
            offered_at: offered_ms.map(rfc3339_ms),
            offered_ms,
            pickup_overdue: false,
        });
    }
    Ok(Some(SubmissionStatus {
        submission_id: id.to_owned(),
        portal,
        leistung,
        destination,
        received_at,
        in_reply_to,
        deliveries,
        replies: Vec::new(),
    }))
}
