//! A delivery's life in PostgreSQL as the broker's consumers drive it: `take`
//! one (by its message id and ticket, as a queue message names them) for an
//! attempt, read its envelope, and `record` the outcome with its audit record
//! — each in one transaction. A message whose delivery is not waiting for it
//! (already delivered, parked, attempted again since, or being attempted by a
//! live instance) is stale: it is acknowledged without delivering again.

use deadpool_postgres::Pool;

use super::audit::append;
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
    let row = conn
        .query_opt(
            "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, updated_at = $2
             WHERE message_id = $1 AND state IN ('pending', 'retry_wait') AND attempts = $3 AND next_attempt_at <= $4
             RETURNING submission_id, target, attempts, created_at_ms",
            &[&message_id, &rfc3339_ms(now_ms), &ticket, &now_ms],
        )
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
    }
}

/// The sealed envelope of a delivery, if it is still kept.
pub async fn envelope(pool: &Pool, message_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let row = conn
        .query_opt(
            "SELECT envelope FROM deliveries WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .map_err(backend)?;
    Ok(row.and_then(|r| r.get::<_, Option<Vec<u8>>>(0)))
}

/// Records the outcome of an attempt of an `in_flight` delivery, with its audit record.
pub async fn record(
    pool: &Pool,
    message_id: &str,
    outcome: &Recorded,
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(backend)?;
    let tx = conn.transaction().await.map_err(backend)?;
    let now = rfc3339_ms(now_ms);
    let (last_error, last_class) = (outcome.last_error(), outcome.class().map(str::to_owned));
    let row = match outcome {
        Recorded::Delivered { receipt } => tx
            .query_opt(
                "UPDATE deliveries SET state = 'delivered', receipt = $2, last_error = NULL, last_class = NULL, updated_at = $3, updated_ms = $4
                 WHERE message_id = $1 AND state = 'in_flight' RETURNING submission_id, target, attempts",
                &[&message_id, receipt, &now, &now_ms],
            )
            .await,
        Recorded::RetryAt { at_ms, .. } => tx
            .query_opt(
                "UPDATE deliveries SET state = 'retry_wait', next_attempt_at = $2, last_error = $3, last_class = $5, updated_at = $4
                 WHERE message_id = $1 AND state = 'in_flight' RETURNING submission_id, target, attempts",
                &[&message_id, at_ms, &last_error, &now, &last_class],
            )
            .await,
        Recorded::Parked { .. } => tx
            .query_opt(
                "UPDATE deliveries SET state = 'parked', last_error = $2, last_class = $5, updated_at = $3, updated_ms = $4
                 WHERE message_id = $1 AND state = 'in_flight' RETURNING submission_id, target, attempts",
                &[&message_id, &last_error, &now, &now_ms, &last_class],
            )
            .await,
        Recorded::Offered => tx
            .query_opt(
                "UPDATE deliveries SET offered_ms = $2, updated_at = $3, updated_ms = $2
                 WHERE message_id = $1 AND state = 'in_flight' AND offered_ms IS NULL RETURNING submission_id, target, attempts",
                &[&message_id, &now_ms, &now],
            )
            .await,
        Recorded::Confirmed { receipt } => tx
            .query_opt(
                "UPDATE deliveries SET receipt = $2, updated_at = $3
                 WHERE message_id = $1 AND state = 'delivered' RETURNING submission_id, target, attempts",
                &[&message_id, receipt, &now],
            )
            .await,
    }
    .map_err(backend)?
    .ok_or_else(|| StoreError::Superseded(format!("delivery {message_id} is not in the state this outcome needs")))?;
    let (submission_id, target, attempts): (String, String, i32) =
        (row.get(0), row.get(1), row.get(2));
    if let Recorded::RetryAt { at_ms, .. } = outcome {
        // The next attempt's message, in the same transaction: a crash between
        // this commit and the broker's confirm cannot strand the delivery.
        want_message(&tx, message_id, &target, attempts, *at_ms, now_ms).await?;
    }
    append(
        &tx,
        &now,
        AuditEvent::outcome(
            &submission_id,
            message_id,
            &target,
            attempts as u32,
            outcome,
        ),
    )
    .await?;
    tx.commit().await.map_err(backend)?;
    Ok(())
}

/// Asks the relay for a message that takes `message_id` at attempt count
/// `ticket` from `due_ms` on (replacing one not yet published).
pub async fn want_message(
    tx: &tokio_postgres::Transaction<'_>,
    message_id: &str,
    target: &str,
    ticket: i32,
    due_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO outbox (message_id, target, ticket, due_ms, created_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (message_id) DO UPDATE SET ticket = EXCLUDED.ticket, due_ms = EXCLUDED.due_ms, created_ms = EXCLUDED.created_ms, lease_ms = 0",
        &[&message_id, &target, &ticket, &due_ms, &now_ms],
    )
    .await
    .map_err(backend)?;
    Ok(())
}
