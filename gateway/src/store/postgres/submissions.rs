//! Accepting a submission in PostgreSQL: the submission, its deliveries
//! with their sealed envelopes, its idempotency key, an outbox row per
//! delivery (the broker relay publishes from it) and the `received` and
//! `sealed` audit records — one transaction, committed before the portal
//! hears `202`. An idempotency key seen before (by any instance) answers
//! with the first submission's stored answer, or a conflict.

use deadpool_postgres::Pool;

use super::audit::append;
use super::backend;
use super::deliveries::want_message;
use crate::model::audit::AuditEvent;
use crate::model::submission::{Accepted, NewSubmission};
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::StoreError;

pub async fn accept(pool: &Pool, s: &NewSubmission) -> Result<Accepted, StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    if let Some(idem) = &s.idempotency {
        // Claim the key; a key claimed before (here or by another instance,
        // whose transaction we wait for) answers with what it was used for.
        let claimed = tx
            .execute(
                "INSERT INTO idempotency (portal, key, request_hash, submission_id) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (portal, key) DO NOTHING",
                &[&s.portal, &idem.key, &idem.request_hash, &s.id],
            )
            .await
            .map_err(backend)?;
        if claimed == 0 {
            let prior = tx
                .query_one(
                    "SELECT i.request_hash, i.submission_id, s.response FROM idempotency i
                     JOIN submissions s ON s.id = i.submission_id WHERE i.portal = $1 AND i.key = $2",
                    &[&s.portal, &idem.key],
                )
                .await
                .map_err(backend)?;
            let (hash, submission_id, response): (String, String, String) =
                (prior.get(0), prior.get(1), prior.get(2));
            return Ok(
                if hash == idem.request_hash || hash == idem.legacy_request_hash {
                    Accepted::Replay {
                        submission_id,
                        response,
                    }
                } else {
                    Accepted::Conflict { submission_id }
                },
            );
        }
    }
    tx.execute(
        "INSERT INTO submissions (id, portal, leistung, destination, received_at, response) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&s.id, &s.portal, &s.leistung, &s.destination, &s.received_at, &s.response],
    )
    .await
    .map_err(backend)?;
    let now = now_ms();
    let ts = rfc3339_ms(now);
    for d in &s.deliveries {
        tx.execute(
            "INSERT INTO deliveries (message_id, submission_id, target, state, attempts, next_attempt_at, created_at_ms,
                                     updated_at, updated_ms, envelope, envelope_crc32)
             VALUES ($1, $2, $3, 'pending', 0, $4, $4, $5, $4, $6, $7)",
            &[&d.message_id, &s.id, &d.target, &now, &s.received_at, &d.envelope, &i64::from(d.envelope_crc32)],
        )
        .await
        .map_err(backend)?;
        want_message(&tx, &d.message_id, &d.target, 0, now, now).await?;
    }
    append(&tx, &ts, AuditEvent::received(s)).await?;
    append(&tx, &ts, AuditEvent::sealed(s)).await?;
    tx.commit().await.map_err(backend)?;
    Ok(Accepted::Stored)
}
