//! A delivery's life in PostgreSQL as the broker's consumers drive it: `take`
//! one (by its message id and ticket, as a queue message names them) for an
//! attempt, read its envelope, and `record` the outcome with its audit record
//! — each in one transaction. A message whose delivery is not waiting for it
//! (already delivered, parked, attempted again since, or being attempted by a
//! live instance) is stale: it is acknowledged without delivering again.

use deadpool_postgres::Pool;

use super::backend;
use crate::model::audit::AuditEvent;
use crate::model::delivery::{Claimed, Recorded};
use crate::model::time::rfc3339_ms;
use crate::store::StoreError;
use crate::store::Take;

/// Takes the delivery a queue message names for an attempt (see [`Take`]):
/// a waiting delivery whose attempt count is still the message's `ticket`
/// and whose time has come is marked `in_flight`. A message the broker
/// redelivers because its consumer died mid-attempt (`redelivered`) takes
/// over that attempt: the delivery is `in_flight` with exactly one attempt
/// more than the ticket.
pub async fn take(
    pool: &Pool,
    message_id: &str,
    ticket: u32,
    redelivered: bool,
    now_ms: i64,
) -> Result<Take, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let ticket = ticket as i32;
    let take = conn
        .prepare_cached(
            "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, updated_at = $2
             WHERE message_id = $1 AND state IN ('pending', 'retry_wait') AND attempts = $3 AND next_attempt_at <= $4
             RETURNING submission_id, target, attempts, created_at_ms",
        )
        .await
        .map_err(backend)?;
    let row = conn
        .query_opt(&take, &[&message_id, &rfc3339_ms(now_ms), &ticket, &now_ms])
        .await
        .map_err(backend)?;
    if let Some(r) = row {
        return Ok(Take::Claimed(claimed(message_id, &r)));
    }
    let Some(r) = conn
        .query_opt(
            "SELECT submission_id, target, attempts, created_at_ms, state, next_attempt_at, offered_ms
             FROM deliveries WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .map_err(backend)?
    else {
        return Ok(Take::Stale);
    };
    let (attempts, state, due, offered): (i32, String, i64, Option<i64>) =
        (r.get(2), r.get(4), r.get(5), r.get(6));
    Ok(match state.as_str() {
        "pending" | "retry_wait" if attempts == ticket => Take::NotDue { at_ms: due },
        "in_flight" if redelivered && offered.is_none() && attempts == ticket + 1 => {
            Take::Claimed(claimed(message_id, &r))
        }
        _ => Take::Stale,
    })
}

fn claimed(message_id: &str, r: &tokio_postgres::Row) -> Claimed {
    Claimed {
        message_id: message_id.to_owned(),
        submission_id: r.get(0),
        target: r.get(1),
        attempts: r.get::<_, i32>(2) as u32,
        created_at_ms: r.get(3),
        // Not asked for: the envelope is one value of its row, read whole.
        size: 0,
        stored_at: None,
    }
}

/// The sealed envelope of a delivery, if it is still kept.
pub async fn envelope(pool: &Pool, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let read = conn
        .prepare_cached("SELECT envelope FROM deliveries WHERE message_id = $1")
        .await
        .map_err(backend)?;
    let row = conn
        .query_opt(&read, &[&message_id])
        .await
        .map_err(backend)?;
    Ok(row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
}

/// One statement recording an outcome: `u` updates the delivery (only in
/// the state the outcome needs) and `a` appends its audit record, with the
/// attempt count the update returns put into the record's `attempt`.
macro_rules! record_sql {
    ($update:literal, $ts:literal, $event:literal, $detail:literal, $more:literal) => {
        concat!(
            "WITH u AS (", $update, " RETURNING submission_id, target, attempts),
             a AS (INSERT INTO audit_pending (ts, event, submission_id, message_id, target, detail)
                   SELECT ", $ts, ", ", $event, ", u.submission_id, $1, u.target,
                          CASE WHEN (", $detail, "::TEXT)::JSONB ? 'attempt'
                               THEN jsonb_set((", $detail, "::TEXT)::JSONB, '{attempt}', to_jsonb(u.attempts))::TEXT
                               ELSE ", $detail, "::TEXT END
                   FROM u)", $more, "
             SELECT submission_id, target, attempts FROM u"
        )
    };
}

const RECORD_DELIVERED: &str = record_sql!(
    "UPDATE deliveries SET state = 'delivered', receipt = $2, last_error = NULL, last_class = NULL, updated_at = $3, updated_ms = $4
     WHERE message_id = $1 AND state = 'in_flight'",
    "$3", "$5", "$6", ""
);
// The next attempt's message in the same statement: a crash between this
// commit and the broker's confirm cannot strand the delivery.
const RECORD_RETRY: &str = record_sql!(
    "UPDATE deliveries SET state = 'retry_wait', next_attempt_at = $2, last_error = $3, last_class = $5, updated_at = $4
     WHERE message_id = $1 AND state = 'in_flight'",
    "$4", "$6", "$7",
    ", o AS (INSERT INTO outbox (message_id, target, ticket, due_ms, created_ms)
             SELECT $1, u.target, u.attempts, $2, $8 FROM u
             ON CONFLICT (message_id) DO UPDATE SET ticket = EXCLUDED.ticket, due_ms = EXCLUDED.due_ms,
                                                    created_ms = EXCLUDED.created_ms, lease_ms = 0)"
);
const RECORD_PARKED: &str = record_sql!(
    "UPDATE deliveries SET state = 'parked', last_error = $2, last_class = $5, updated_at = $3, updated_ms = $4
     WHERE message_id = $1 AND state = 'in_flight'",
    "$3", "$6", "$7", ""
);
const RECORD_OFFERED: &str = record_sql!(
    "UPDATE deliveries SET offered_ms = $2, updated_at = $3, updated_ms = $2
     WHERE message_id = $1 AND state = 'in_flight' AND offered_ms IS NULL",
    "$3",
    "$4",
    "$5",
    ""
);
const RECORD_CONFIRMED: &str = record_sql!(
    "UPDATE deliveries SET receipt = $2, updated_at = $3
     WHERE message_id = $1 AND state = 'delivered'",
    "$3",
    "$4",
    "$5",
    ""
);

/// Records the outcome of an attempt of an `in_flight` delivery, with its
/// audit record — one statement, so one round trip and one transaction.
pub async fn record(
    pool: &Pool,
    message_id: &str,
    outcome: &Recorded,
    now_ms: i64,
) -> Result<(), StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let now = rfc3339_ms(now_ms);
    let (last_error, last_class) = (outcome.last_error(), outcome.class().map(str::to_owned));
    // The record as the store writes it; the attempt count is the update's.
    let event = AuditEvent::outcome("", message_id, "", 0, outcome);
    let record = crate::model::audit::unplaced(&now, event);
    let detail = record.detail.to_string();
    let event = record.event.as_str();
    let (sql, params): (&str, Vec<&(dyn tokio_postgres::types::ToSql + Sync)>) = match outcome {
        Recorded::Delivered { receipt } => (
            RECORD_DELIVERED,
            vec![&message_id, receipt, &now, &now_ms, &event, &detail],
        ),
        Recorded::RetryAt { at_ms, .. } => (
            RECORD_RETRY,
            vec![
                &message_id,
                at_ms,
                &last_error,
                &now,
                &last_class,
                &event,
                &detail,
                &now_ms,
            ],
        ),
        Recorded::Parked { .. } => (
            RECORD_PARKED,
            vec![
                &message_id,
                &last_error,
                &now,
                &now_ms,
                &last_class,
                &event,
                &detail,
            ],
        ),
        Recorded::Offered => (
            RECORD_OFFERED,
            vec![&message_id, &now_ms, &now, &event, &detail],
        ),
        Recorded::Confirmed { receipt } => (
            RECORD_CONFIRMED,
            vec![&message_id, receipt, &now, &event, &detail],
        ),
    };
    let statement = conn.prepare_cached(sql).await.map_err(backend)?;
    conn.query_opt(&statement, &params)
        .await
        .map_err(backend)?
        .ok_or_else(|| {
            StoreError::Superseded(format!(
                "delivery {message_id} is not in the state this outcome needs"
            ))
        })?;
    Ok(())
}

/// Asks the relay for a message that takes `message_id` at attempt count
/// `ticket` from `due_ms` on (replacing one not yet published).
pub async fn want_message(
    tx: &deadpool_postgres::Transaction<'_>,
    message_id: &str,
    target: &str,
    ticket: i32,
    due_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let want = tx.prepare_cached(WANT_MESSAGE).await.map_err(backend)?;
    tx.execute(&want, &[&message_id, &target, &ticket, &due_ms, &now_ms])
        .await
        .map_err(backend)?;
    Ok(())
}

const WANT_MESSAGE: &str = "INSERT INTO outbox (message_id, target, ticket, due_ms, created_ms) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (message_id) DO UPDATE SET ticket = EXCLUDED.ticket, due_ms = EXCLUDED.due_ms, created_ms = EXCLUDED.created_ms, lease_ms = 0";
