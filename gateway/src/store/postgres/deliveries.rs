//! A delivery's life in PostgreSQL as the broker's consumers drive it: `take`
//! one (by its message id, as a queue message names it) for an attempt,
//! read its envelope, and `record` the outcome with its audit record — each
//! in one transaction. A message id whose delivery is not waiting (already
//! delivered, parked, or being attempted by another instance) is not taken:
//! a redelivered broker message is then acknowledged without delivering again.

use deadpool_postgres::Pool;

use super::audit::append;
use super::backend;
use crate::model::audit::AuditEvent;
use crate::model::delivery::{Claimed, Recorded};
use crate::model::time::rfc3339_ms;
use crate::store::StoreError;

/// Marks a waiting delivery `in_flight` for an attempt; `None` if it is not waiting.
pub async fn take(
    pool: &Pool,
    message_id: &str,
    now_ms: i64,
) -> Result<Option<Claimed>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let row = conn
        .query_opt(
            "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, updated_at = $2
             WHERE message_id = $1 AND state IN ('pending', 'retry_wait')
             RETURNING submission_id, target, attempts, created_at_ms",
            &[&message_id, &rfc3339_ms(now_ms)],
        )
        .await
        .map_err(backend)?;
    Ok(row.map(|r| Claimed {
        message_id: message_id.to_owned(),
        submission_id: r.get(0),
        target: r.get(1),
        attempts: r.get::<_, i32>(2) as u32,
        created_at_ms: r.get(3),
    }))
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
    .ok_or_else(|| StoreError::Corrupt(format!("delivery {message_id} is not in the state this outcome needs")))?;
    let (submission_id, target, attempts): (String, String, i32) =
        (row.get(0), row.get(1), row.get(2));
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
