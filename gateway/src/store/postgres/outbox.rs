//! The transactional outbox: every change that needs a queue message (a new
//! delivery, a retry, an operator's retry, a hand-back) commits an outbox row
//! with it. The relay leases the oldest rows, publishes with confirms, and
//! deletes what was confirmed; a relay that dies leaves its lease to run out
//! and another (or the same, restarted) publishes the rows again. Consumers
//! take a delivery once per ticket, so a second message is harmless.

use deadpool_postgres::Pool;

use super::backend;
use crate::model::time::now_ms;
use crate::store::{StoreError, Wanted};

/// Leases up to `limit` of the oldest rows no live lease holds.
pub async fn lease(pool: &Pool, limit: usize, lease_ms: i64) -> Result<Vec<Wanted>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let now = now_ms();
    let rows = conn
        .query(
            "UPDATE outbox SET lease_ms = $2 + $3
             WHERE message_id IN (SELECT message_id FROM outbox WHERE lease_ms < $2
                                  ORDER BY created_ms LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING message_id, target, ticket, due_ms",
            &[&(limit.min(i64::MAX as usize) as i64), &now, &lease_ms],
        )
        .await
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| Wanted {
            message_id: r.get(0),
            target: r.get(1),
            ticket: r.get::<_, i32>(2).max(0) as u32,
            due_ms: r.get(3),
        })
        .collect())
}

/// The broker confirmed these: their rows go, unless a newer message was
/// wanted for the same delivery meanwhile (another ticket or due time).
pub async fn published(pool: &Pool, done: &[Wanted]) -> Result<u64, StoreError> {
    if done.is_empty() {
        return Ok(0);
    }
    let conn = pool.get().await.map_err(backend)?;
    let ids: Vec<&str> = done.iter().map(|w| w.message_id.as_str()).collect();
    let tickets: Vec<i32> = done.iter().map(|w| w.ticket as i32).collect();
    let dues: Vec<i64> = done.iter().map(|w| w.due_ms).collect();
    conn.execute(
        "DELETE FROM outbox o USING unnest($1::TEXT[], $2::INTEGER[], $3::BIGINT[]) AS p(message_id, ticket, due_ms)
         WHERE o.message_id = p.message_id AND o.ticket = p.ticket AND o.due_ms = p.due_ms",
        &[&ids, &tickets, &dues],
    )
    .await
    .map_err(backend)
}

pub async fn backlog(pool: &Pool) -> Result<u64, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let n: i64 = conn
        .query_one("SELECT count(*) FROM outbox", &[])
        .await
        .map_err(backend)?
        .get(0);
    Ok(n.max(0) as u64)
}
