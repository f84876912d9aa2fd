//! Accepting a submission in PostgreSQL: the submission, its deliveries
//! with their sealed envelopes, its idempotency key, an outbox row per
//! delivery (the broker relay publishes from it) and the `received` and
//! `sealed` audit records (and `replied` on the answered submission) — one statement (so one transaction and one round
//! trip), committed before the portal hears `202`. An idempotency key seen
//! before (by any instance) answers with the first submission's stored
//! answer, or a conflict.

use deadpool_postgres::Pool;

use super::backend;
use crate::model::audit::{unplaced, AuditEvent};
use crate::model::submission::{Accepted, NewSubmission};
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::StoreError;

/// The statement, with `c` the claim of the idempotency key (or a row that
/// is always there) and every insert gated on it: a key claimed before makes
/// the whole statement insert nothing. Constraints (the deliveries' and
/// outbox rows' foreign keys) are checked at the end of the statement.
macro_rules! accept_sql {
    ($claim:literal) => {
        concat!(
            "WITH c AS (",
            $claim,
            "),
             s AS (INSERT INTO submissions (id, portal, leistung, destination, received_at, response,
                                            in_reply_to, reply_by, reply_type)
                   SELECT $1, $2, $3, $4, $5, $6, $18, $19, $20 FROM c),
             d AS (INSERT INTO deliveries (message_id, submission_id, target, state, attempts, next_attempt_at,
                                           created_at_ms, updated_at, updated_ms, envelope, envelope_crc32)
                   SELECT x.m, $1, x.t, 'pending', 0, $7, $7, $5, $7, x.e, x.crc
                   FROM c, UNNEST($8::TEXT[], $9::TEXT[], $10::BYTEA[], $11::BIGINT[]) AS x(m, t, e, crc)),
             o AS (INSERT INTO outbox (message_id, target, ticket, due_ms, created_ms)
                   SELECT x.m, x.t, 0, $7, $7 FROM c, UNNEST($8::TEXT[], $9::TEXT[]) AS x(m, t)),
             a AS (INSERT INTO audit_pending (ts, event, submission_id, message_id, target, detail)
                   SELECT x.ts, x.ev, x.sub, x.mid, x.tgt, x.detail
                   FROM c, UNNEST($12::TEXT[], $13::TEXT[], $14::TEXT[], $15::TEXT[], $16::TEXT[], $17::TEXT[])
                           WITH ORDINALITY AS x(ts, ev, sub, mid, tgt, detail, n)
                   ORDER BY x.n)
             SELECT count(*) FROM c"
        )
    };
}

const ACCEPT: &str = accept_sql!("SELECT 1");
const ACCEPT_WITH_KEY: &str = accept_sql!(
    "INSERT INTO idempotency (portal, key, request_hash, submission_id) VALUES ($2, $21, $22, $1)
     ON CONFLICT (portal, key) DO NOTHING RETURNING 1"
);

pub async fn accept(pool: &Pool, s: &NewSubmission) -> Result<Accepted, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let now = now_ms();
    let ts = rfc3339_ms(now);
    let ids: Vec<&str> = s.deliveries.iter().map(|d| d.message_id.as_str()).collect();
    let targets: Vec<&str> = s.deliveries.iter().map(|d| d.target.as_str()).collect();
    // Each delivery's envelope whole (its row is its own; shared ciphertext is
    // kept once only by the embedded store's segments).
    let whole: Vec<_> = s
        .deliveries
        .iter()
        .map(|d| d.assembled(&s.shared))
        .collect();
    let envelopes: Vec<&[u8]> = whole.iter().map(|(e, _)| e.as_ref()).collect();
    let crcs: Vec<i64> = whole.iter().map(|(_, crc)| i64::from(*crc)).collect();
    let records: Vec<_> = [AuditEvent::received(s), AuditEvent::sealed(s)]
        .into_iter()
        .chain(AuditEvent::replied(s))
        .map(|e| unplaced(&ts, e))
        .collect();
    let in_reply_to = s.reply.as_ref().map(|r| r.submission_id.as_str());
    let reply_by = s.reply.as_ref().map(|r| r.by.as_str());
    let reply_type = s.reply.as_ref().map(|r| r.reply_type.as_str());
    let stamps: Vec<&str> = records.iter().map(|r| r.ts.as_str()).collect();
    let events: Vec<&str> = records.iter().map(|r| r.event.as_str()).collect();
    let subs: Vec<Option<&str>> = records.iter().map(|r| r.submission_id.as_deref()).collect();
    let mids: Vec<Option<&str>> = records.iter().map(|r| r.message_id.as_deref()).collect();
    let tgts: Vec<Option<&str>> = records.iter().map(|r| r.target.as_deref()).collect();
    let details: Vec<Option<String>> = records
        .iter()
        .map(|r| (!r.detail.is_null()).then(|| r.detail.to_string()))
        .collect();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &s.id,
        &s.portal,
        &s.leistung,
        &s.destination,
        &s.received_at,
        &s.response,
        &now,
        &ids,
        &targets,
        &envelopes,
        &crcs,
        &stamps,
        &events,
        &subs,
        &mids,
        &tgts,
        &details,
        &in_reply_to,
        &reply_by,
        &reply_type,
    ];
    let sql = match &s.idempotency {
        Some(idem) => {
            params.push(&idem.key);
            params.push(&idem.request_hash);
            ACCEPT_WITH_KEY
        }
        None => ACCEPT,
    };
    let statement = conn.prepare_cached(sql).await.map_err(backend)?;
    let claimed: i64 = conn
        .query_one(&statement, &params)
        .await
        .map_err(backend)?
        .get(0);
    if claimed == 1 {
        return Ok(Accepted::Stored);
    }
    // The key was claimed before (here or by another instance, whose
    // transaction the claim waited for): answer with what it was used for.
    let Some(idem) = &s.idempotency else {
        return Err(StoreError::Corrupt("accept inserted nothing".into()));
    };
    let prior = conn
        .query_one(
            "SELECT i.request_hash, i.submission_id, s.response FROM idempotency i
             JOIN submissions s ON s.id = i.submission_id WHERE i.portal = $1 AND i.key = $2",
            &[&s.portal, &idem.key],
        )
        .await
        .map_err(backend)?;
    let (hash, submission_id, response): (String, String, String) =
        (prior.get(0), prior.get(1), prior.get(2));
    Ok(
        if hash == idem.request_hash || hash == idem.legacy_request_hash {
            Accepted::Replay {
                submission_id,
                response,
            }
        } else {
            Accepted::Conflict { submission_id }
        },
    )
}
