//! The transactional outbox: every delivery committed with its submission
//! has an outbox row until the broker confirmed its message. The relay reads
//! the oldest rows, publishes with confirms, and deletes what was confirmed;
//! after a crash it finds the unconfirmed rows again and republishes them
//! (consumers take a delivery once, so a second message is harmless).

use deadpool_postgres::Pool;

use super::backend;
use crate::store::StoreError;

/// One delivery to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub message_id: String,
    pub target: String,
}

/// The oldest unconfirmed deliveries, at most `limit`.
pub async fn pending(pool: &Pool, limit: i64) -> Result<Vec<Pending>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let rows = conn
        .query(
            "SELECT message_id, target FROM outbox ORDER BY created_ms, message_id LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| Pending {
            message_id: r.get(0),
            target: r.get(1),
        })
        .collect())
}

/// The broker confirmed these: their rows go.
pub async fn confirmed(pool: &Pool, message_ids: &[String]) -> Result<u64, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    conn.execute(
        "DELETE FROM outbox WHERE message_id = ANY($1)",
        &[&message_ids],
    )
    .await
    .map_err(backend)
}
