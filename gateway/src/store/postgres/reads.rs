//! Reading the cluster store: a submission with its deliveries, the operator
//! lists, the message boxes, queue depths; and the audit log for `audit
//! verify` and proofs through [`AuditLogRead`], which is synchronous: it runs
//! on its own connection and a small runtime of its own, off the daemon's
//! async threads (or in the CLI, which has none).

use deadpool_postgres::Pool;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::backend;
use crate::model::audit::{AuditRecord, Checkpoint};
use crate::model::delivery::{
    BoxQuery, Boxed, DeliveryInfo, DeliveryQuery, DeliveryRow, DeliveryState, QueueDepth,
    TargetHealth,
};
use crate::model::submission::{DeliveryStatus, ReplyInfo, SubmissionStatus};
use crate::model::time::rfc3339_ms;
use crate::store::{AuditLogRead, Overdue, StoreError};

fn state_of(message_id: &str, state: &str) -> Result<DeliveryState, StoreError> {
    DeliveryState::parse(state).ok_or_else(|| {
        StoreError::Corrupt(format!("delivery {message_id} has unknown state {state:?}"))
    })
}

pub async fn submission(pool: &Pool, id: &str) -> Result<Option<SubmissionStatus>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let Some(head) = conn
        .query_opt(
            "SELECT portal, leistung, destination, received_at, in_reply_to FROM submissions WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(backend)?
    else {
        return Ok(None);
    };
    let rows = conn
        .query(
            "SELECT target, message_id, state, attempts, last_error, updated_at, receipt, last_class, next_attempt_at, offered_ms
             FROM deliveries WHERE submission_id = $1 ORDER BY target",
            &[&id],
        )
        .await
        .map_err(backend)?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for r in rows {
        let message_id: String = r.get(1);
        let state = state_of(&message_id, r.get(2))?;
        let offered_ms: Option<i64> = r.get(9);
        deliveries.push(DeliveryStatus {
            target: r.get(0),
            state,
            attempts: r.get::<_, i32>(3) as u32,
            last_error: r.get(4),
            updated_at: r.get(5),
            receipt: r.get(6),
            error_class: r.get(7),
            next_attempt_at: state.waits().then(|| rfc3339_ms(r.get(8))),
            offered_at: offered_ms.map(rfc3339_ms),
            offered_ms,
            pickup_overdue: false,
            message_id,
        });
    }
    Ok(Some(SubmissionStatus {
        submission_id: id.to_owned(),
        portal: head.get(0),
        leistung: head.get(1),
        destination: head.get(2),
        received_at: head.get(3),
        in_reply_to: head.get(4),
        deliveries,
        replies: Vec::new(),
    }))
}

/// The replies to submission `id`, oldest first.
pub async fn replies_to(pool: &Pool, id: &str) -> Result<Vec<ReplyInfo>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let rows = conn
        .query(
            "SELECT id, reply_by, reply_type, received_at FROM submissions WHERE in_reply_to = $1 ORDER BY id",
            &[&id],
        )
        .await
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| ReplyInfo {
            reply_id: r.get(0),
            by: r.get::<_, Option<String>>(1).unwrap_or_default(),
            reply_type: r.get::<_, Option<String>>(2).unwrap_or_default(),
            received_at: r.get(3),
        })
        .collect())
}

pub async fn queue_depths(pool: &Pool) -> Result<Vec<QueueDepth>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let rows = conn
        .query(
            "SELECT target, state, count(*) FROM deliveries
             WHERE state IN ('pending', 'in_flight', 'retry_wait', 'parked')
             GROUP BY target, state ORDER BY target, state",
            &[],
        )
        .await
        .map_err(backend)?;
    let mut out = Vec::new();
    for r in rows {
        if let Some(state) = DeliveryState::parse(r.get(1)) {
            out.push(QueueDepth {
                target: r.get(0),
                state,
                count: r.get::<_, i64>(2).max(0) as u64,
            });
        }
    }
    Ok(out)
}

pub async fn deliveries(pool: &Pool, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>, StoreError> {
    if q.targets.as_ref().is_some_and(Vec::is_empty) || q.limit == 0 {
        return Ok(Vec::new());
    }
    let conn = pool.get().await.map_err(backend)?;
    let rows = conn
        .query(
            "SELECT d.message_id, d.submission_id, d.target, d.state, d.attempts, d.last_error, d.updated_at,
                    d.next_attempt_at, d.offered_ms, s.leistung, d.created_at_ms
             FROM deliveries d JOIN submissions s ON s.id = d.submission_id
             WHERE ($1::TEXT IS NULL OR d.state = $1)
               AND ($2::TEXT[] IS NULL OR d.target = ANY($2))
               AND ($3::TEXT IS NULL OR s.leistung = $3)
               AND ($4::BIGINT IS NULL OR d.created_at_ms < $4)
               AND ($5::TEXT IS NULL OR d.message_id > $5)
             ORDER BY d.message_id LIMIT $6",
            &[
                &q.state.map(DeliveryState::as_str),
                &q.targets,
                &q.leistung,
                &q.created_before_ms,
                &q.after,
                &(q.limit.min(i64::MAX as usize) as i64),
            ],
        )
        .await
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| {
            let state = DeliveryState::parse(r.get(3)).unwrap_or(DeliveryState::Pending);
            DeliveryRow {
                message_id: r.get(0),
                submission_id: r.get(1),
                target: r.get(2),
                state,
                attempts: r.get::<_, i32>(4) as u32,
                last_error: r.get(5),
                updated_at: r.get(6),
                next_attempt_at: state.waits().then(|| rfc3339_ms(r.get(7))),
                offered_at: r.get::<_, Option<i64>>(8).map(rfc3339_ms),
                leistung: r.get(9),
                created_at: rfc3339_ms(r.get(10)),
            }
        })
        .collect())
}

/// For each target: its oldest waiting delivery's acceptance (ms), by index.
pub async fn oldest_waiting(
    pool: &Pool,
    targets: &[String],
) -> Result<Vec<(String, i64)>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let stmt = conn
        .prepare_cached(
            "SELECT LEAST(
                (SELECT MIN(created_at_ms) FROM deliveries WHERE target = $1 AND state = 'pending'),
                (SELECT MIN(created_at_ms) FROM deliveries WHERE target = $1 AND state = 'retry_wait'))",
        )
        .await
        .map_err(backend)?;
    let mut out = Vec::new();
    for t in targets {
        let row = conn.query_one(&stmt, &[t]).await.map_err(backend)?;
        if let Some(ms) = row.get::<_, Option<i64>>(0) {
            out.push((t.clone(), ms));
        }
    }
    Ok(out)
}

/// Per target: the newest error of a delivery waiting for a retry or parked.
pub async fn target_health(pool: &Pool) -> Result<Vec<TargetHealth>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let mut by_target = std::collections::BTreeMap::<String, TargetHealth>::new();
    for r in conn
        .query(
            "SELECT DISTINCT ON (target) target, last_error, updated_ms FROM deliveries
             WHERE state IN ('retry_wait', 'parked') AND last_error IS NOT NULL
             ORDER BY target, updated_ms DESC",
            &[],
        )
        .await
        .map_err(backend)?
    {
        let target: String = r.get(0);
        let h = by_target
            .entry(target.clone())
            .or_insert_with(|| TargetHealth {
                target,
                ..Default::default()
            });
        h.last_error = r.get(1);
        h.last_error_ms = r.get(2);
    }
    Ok(by_target.into_values().collect())
}

/// The settings of one kind, by id.
pub async fn settings(pool: &Pool, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let rows = conn
        .query(
            "SELECT id, value FROM settings WHERE kind = $1 ORDER BY id",
            &[&kind],
        )
        .await
        .map_err(backend)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn next_due(pool: &Pool, target: &str) -> Result<Option<i64>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let row = conn
        .query_one(
            "SELECT MIN(next_attempt_at) FROM deliveries WHERE target = $1 AND state IN ('pending', 'retry_wait')",
            &[&target],
        )
        .await
        .map_err(backend)?;
    Ok(row.get(0))
}

pub async fn mailbox(pool: &Pool, q: &BoxQuery) -> Result<Vec<Boxed>, StoreError> {
    if q.targets.is_empty() || q.limit == 0 {
        return Ok(Vec::new());
    }
    let conn = pool.get().await.map_err(backend)?;
    let limit = q.limit.min(i64::MAX as usize) as i64;
    let ids: Option<&Vec<String>> = (!q.ids.is_empty()).then_some(&q.ids);
    let params: [&(dyn ToSql + Sync); 6] =
        [&q.targets, &q.after, &ids, &q.from_ms, &q.to_ms, &limit];
    let rows = conn
        .query(
            "SELECT d.message_id, d.submission_id, d.target, d.offered_ms, COALESCE(length(d.envelope), 0), s.leistung, s.portal, s.received_at, s.in_reply_to
             FROM deliveries d JOIN submissions s ON s.id = d.submission_id
             WHERE d.state = 'in_flight' AND d.offered_ms IS NOT NULL AND d.target = ANY($1)
               AND ($2::TEXT IS NULL OR d.message_id > $2)
               AND ($3::TEXT[] IS NULL OR d.message_id = ANY($3))
               AND ($4::BIGINT IS NULL OR d.offered_ms >= $4)
               AND ($5::BIGINT IS NULL OR d.offered_ms < $5)
             ORDER BY d.message_id LIMIT $6",
            &params,
        )
        .await
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| Boxed {
            message_id: r.get(0),
            submission_id: r.get(1),
            target: r.get(2),
            offered_ms: r.get(3),
            size: r.get::<_, i32>(4).max(0) as u64,
            leistung: r.get(5),
            portal: r.get(6),
            received_at: r.get(7),
            in_reply_to: r.get(8),
        })
        .collect())
}

pub async fn delivery(pool: &Pool, message_id: &str) -> Result<Option<DeliveryInfo>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let Some(r) = conn
        .query_opt(
            "SELECT submission_id, target, state, offered_ms FROM deliveries WHERE message_id = $1",
            &[&message_id],
        )
        .await
        .map_err(backend)?
    else {
        return Ok(None);
    };
    Ok(Some(DeliveryInfo {
        message_id: message_id.to_owned(),
        submission_id: r.get(0),
        target: r.get(1),
        state: state_of(message_id, r.get(2))?,
        offered_ms: r.get(3),
    }))
}

pub async fn overdue(pool: &Pool, before_ms: i64) -> Result<Vec<Overdue>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let rows = conn
        .query(
            "SELECT target, count(*), MIN(offered_ms) FROM deliveries
             WHERE state = 'in_flight' AND offered_ms IS NOT NULL AND offered_ms < $1
             GROUP BY target ORDER BY target",
            &[&before_ms],
        )
        .await
        .map_err(backend)?;
    Ok(rows
        .iter()
        .map(|r| Overdue {
            target: r.get(0),
            count: r.get::<_, i64>(1).max(0) as u64,
            oldest_ms: r.get(2),
        })
        .collect())
}

pub async fn submission_by_key(
    pool: &Pool,
    portal: &str,
    key_hash: &str,
) -> Result<Option<String>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    Ok(conn
        .query_opt(
            "SELECT submission_id FROM idempotency WHERE portal = $1 AND key = $2",
            &[&portal, &key_hash],
        )
        .await
        .map_err(backend)?
        .map(|r| r.get(0)))
}

pub async fn trace(pool: &Pool, submission_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
    let conn = pool.get().await.map_err(backend)?;
    let rows = conn
        .query(
            "SELECT record FROM audit WHERE submission_id = $1 ORDER BY seq",
            &[&submission_id],
        )
        .await
        .map_err(backend)?;
    rows.iter()
        .map(|r| {
            serde_json::from_str(r.get(0))
                .map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))
        })
        .collect()
}

const CHECKPOINT_COLUMNS: &str = "seq, head, ts, jws, first_seq, root";

fn checkpoint(r: &tokio_postgres::Row) -> Checkpoint {
    Checkpoint {
        seq: r.get::<_, i64>(0) as u64,
        head: r.get(1),
        ts: r.get(2),
        jws: r.get(3),
        from: r.get::<_, Option<i64>>(4).map(|v| v as u64),
        root: r.get(5),
    }
}

pub async fn latest_checkpoint(client: &Client) -> Result<Option<Checkpoint>, StoreError> {
    Ok(client
        .query_opt(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
            ),
            &[],
        )
        .await
        .map_err(backend)?
        .as_ref()
        .map(checkpoint))
}

pub async fn audit_texts(client: &Client, from: u64, to: u64) -> Result<Vec<String>, StoreError> {
    let rows = client
        .query(
            "SELECT record FROM audit WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
            &[&(from as i64), &(to as i64)],
        )
        .await
        .map_err(backend)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The audit log read over one connection of its own, synchronously.
pub struct AuditReader {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

/// Records read per round trip while verifying.
const PAGE: i64 = 5_000;

impl AuditReader {
    /// Connects to `url`. Must not be called on an async thread.
    pub fn connect(url: &str) -> Result<AuditReader, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = runtime.block_on(async {
            let (mut client, connection) =
                tokio_postgres::connect(url, NoTls).await.map_err(backend)?;
            tokio::spawn(connection);
            // Records committed but not placed yet (see `super::audit`) belong to the log read here.
            super::audit::chain_all(&mut client).await?;
            Ok::<_, StoreError>(client)
        })?;
        Ok(AuditReader { runtime, client })
    }
}

/// Up to `limit` checkpoints after `after` without a time-stamp token,
/// oldest first, and how many there are after `after` in all.
pub async fn unstamped(
    client: &Client,
    after: u64,
    limit: usize,
) -> Result<(Vec<Checkpoint>, u64), StoreError> {
    let after = after as i64;
    let rows = client
        .query(
            &format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints c WHERE c.seq > $1 AND NOT EXISTS (SELECT 1 FROM audit_stamps s WHERE s.seq = c.seq) ORDER BY seq LIMIT $2"
            ),
            &[&after, &(limit as i64)],
        )
        .await
        .map_err(backend)?;
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_checkpoints c WHERE c.seq > $1 AND NOT EXISTS (SELECT 1 FROM audit_stamps s WHERE s.seq = c.seq)",
            &[&after],
        )
        .await
        .map_err(backend)?
        .get(0);
    Ok((rows.iter().map(checkpoint).collect(), total as u64))
}

impl AuditLogRead for AuditReader {
    fn stamp(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.runtime.block_on(async {
            let row = self
                .client
                .query_opt(
                    "SELECT token FROM audit_stamps WHERE seq = $1",
                    &[&(seq as i64)],
                )
                .await
                .map_err(backend)?;
            Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn stamps(&self) -> Result<std::collections::BTreeMap<u64, Vec<u8>>, StoreError> {
        self.runtime.block_on(async {
            let rows = self
                .client
                .query("SELECT seq, token FROM audit_stamps ORDER BY seq", &[])
                .await
                .map_err(backend)?;
            Ok(rows
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
                .collect())
        })
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        self.runtime.block_on(async {
            let rows = self
                .client
                .query(
                    &format!("SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq"),
                    &[],
                )
                .await
                .map_err(backend)?;
            Ok(rows.iter().map(checkpoint).collect())
        })
    }

    fn each_record(
        &self,
        visit: &mut dyn FnMut(u64, String, String) -> bool,
    ) -> Result<(), StoreError> {
        let mut after = 0i64;
        loop {
            let rows = self.runtime.block_on(self.client.query(
                "SELECT seq, record, hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &PAGE],
            ));
            let rows = rows.map_err(backend)?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.get(0);
            let full = rows.len() as i64 == PAGE;
            for r in rows {
                if !visit(r.get::<_, i64>(0) as u64, r.get(1), r.get(2)) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    fn submission_records(&self, submission_id: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = self
            .runtime
            .block_on(self.client.query(
                "SELECT seq, record FROM audit WHERE submission_id = $1 ORDER BY seq",
                &[&submission_id],
            ))
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
            .collect())
    }

    fn covering_checkpoint(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError> {
        let row = self
            .runtime
            .block_on(self.client.query_opt(
                &format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE seq >= $1 ORDER BY seq LIMIT 1"
                ),
                &[&(seq as i64)],
            ))
            .map_err(backend)?;
        Ok(row.as_ref().map(checkpoint))
    }

    fn texts(&self, from: u64, to: u64) -> Result<Vec<String>, StoreError> {
        self.runtime.block_on(audit_texts(&self.client, from, to))
    }
}
