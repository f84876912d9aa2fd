//! [`PostgresStore`]: the [`Store`] trait on PostgreSQL, for cluster mode.
//!
//! Every instance of a cluster opens one on the same database. The database
//! is created if it does not exist yet, and migrated under a lock (see
//! [`super::migrate`]). A probe asks the database every second whether it
//! answers: while it does not, `/readyz` says so and portals get `503`.
//! A chainer places committed audit records in the chain (see [`super::audit`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_postgres::NoTls;

use super::{audit, backend, deliveries, ops, outbox, reads, submissions};
use crate::model::audit::{AuditEvent, AuditRecord, Checkpoint, Head};
use crate::model::cases::{CaseCounts, CaseQuery, StatsZone};
use crate::model::delivery::{
    Action, Actor, BoxQuery, Boxed, Claimed, DeliveryInfo, DeliveryQuery, DeliveryRow, Operated,
    QueueDepth, Recorded, TargetHealth,
};
use crate::model::submission::{Accepted, NewSubmission, ReplyInfo, SubmissionStatus};
use crate::store::{
    AuditJob, Outbox, Overdue, Purge, Store, StoreError, StoreFuture, StoreStats, Take, Wanted,
};

/// How often the probe asks the database whether it answers.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often the chainer looks for pending audit records without being woken
/// (records another instance left when it died).
const CHAIN_EVERY: Duration = Duration::from_millis(500);

/// The cluster store.
pub struct PostgresStore {
    pool: Pool,
    url: String,
    counters: Arc<Counters>,
    probe: tokio::task::JoinHandle<()>,
    chainer: tokio::task::JoinHandle<()>,
    /// Wakes the chainer after a commit.
    chain: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    submissions: AtomicU64,
    unreachable: AtomicBool,
}

impl PostgresStore {
    /// Connects (creating the database if it is missing), migrates, starts the probe.
    pub async fn open(url: &str, pool_size: usize) -> Result<PostgresStore, StoreError> {
        create_database_if_missing(url).await?;
        let pool = super::pool(url, pool_size)?;
        let before = super::migrate(&pool).await?;
        if before == 0 {
            tracing::info!("PostgreSQL store created");
        }
        let counters = Arc::new(Counters::default());
        let probe = tokio::spawn(probe(pool.clone(), counters.clone()));
        let chain = Arc::new(tokio::sync::Notify::new());
        let chainer = tokio::spawn(chainer(pool.clone(), chain.clone()));
        Ok(PostgresStore {
            pool,
            url: url.to_owned(),
            counters,
            probe,
            chainer,
            chain,
        })
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn committed(&self) {
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        self.chain.notify_one();
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.probe.abort();
        self.chainer.abort();
    }
}

/// Places pending audit records in the chain after commits (and every
/// [`CHAIN_EVERY`]) while the store is open.
async fn chainer(pool: Pool, wake: Arc<tokio::sync::Notify>) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(CHAIN_EVERY) => {}
        }
        loop {
            match audit::chain_round(&pool).await {
                Ok(true) => continue,
                Ok(false) => {
                    if failing {
                        tracing::info!("audit records are placed in the chain again");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "placing audit records in the chain failed; they stay committed and pending until it works");
                    }
                    failing = true;
                }
            }
            break;
        }
    }
}

async fn probe(pool: Pool, counters: Arc<Counters>) {
    let mut was_down = false;
    loop {
        let ok = match tokio::time::timeout(PROBE_EVERY * 3, pool.get()).await {
            Ok(Ok(conn)) => conn.simple_query("SELECT 1").await.is_ok(),
            _ => false,
        };
        counters.unreachable.store(!ok, Ordering::Relaxed);
        if ok == was_down {
            if ok {
                tracing::info!("PostgreSQL answers again");
            } else {
                tracing::error!(
                    "PostgreSQL does not answer: not ready, portals get 503 until it does"
                );
            }
            was_down = !ok;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Creates the database `url` names if it does not exist (a fresh machine:
/// `serve --config config/cluster.toml` needs no other step).
async fn create_database_if_missing(url: &str) -> Result<(), StoreError> {
    let config: tokio_postgres::Config = url.parse().map_err(backend)?;
    match config.connect(NoTls).await {
        Ok(_) => return Ok(()),
        Err(e)
            if e.as_db_error().map(|d| d.code())
                == Some(&tokio_postgres::error::SqlState::UNDEFINED_DATABASE) => {}
        Err(e) => return Err(backend(e)),
    }
    let Some(name) = config.get_dbname().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect(NoTls).await.map_err(backend)?;
    let task = tokio::spawn(connection);
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match client
        .batch_execute(&format!("CREATE DATABASE {quoted}"))
        .await
    {
        Ok(()) => tracing::info!(database = %name, "PostgreSQL database created"),
        // Another instance created it meanwhile.
        Err(e)
            if e.as_db_error().map(|d| d.code())
                == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
        Err(e) => {
            task.abort();
            return Err(backend(e));
        }
    }
    drop(client);
    let _ = task.await;
    Ok(())
}

impl Store for PostgresStore {
    fn accept(&self, submission: NewSubmission) -> StoreFuture<'_, Accepted> {
        Box::pin(async move {
            if submission.spool.is_some() {
                // `spool()` gives none here; the pieces would not be in memory.
                return Err(StoreError::Corrupt(
                    "a submission spooled for the embedded store reached the PostgreSQL store"
                        .into(),
                ));
            }
            let r = submissions::accept(&self.pool, &submission).await?;
            self.committed();
            if r == Accepted::Stored {
                self.counters.submissions.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r)
        })
    }

    fn submission(&self, id: &str) -> StoreFuture<'_, Option<SubmissionStatus>> {
        let id = id.to_owned();
        Box::pin(async move { reads::submission(&self.pool, &id).await })
    }

    fn replies_to(&self, submission_id: &str) -> StoreFuture<'_, Vec<ReplyInfo>> {
        let id = submission_id.to_owned();
        Box::pin(async move { reads::replies_to(&self.pool, &id).await })
    }

    fn envelope(&self, message_id: &str) -> StoreFuture<'_, Option<Vec<u8>>> {
        let id = message_id.to_owned();
        Box::pin(async move { deliveries::envelope(&self.pool, &id).await })
    }

    fn claim(&self, _target: &str, _now_ms: i64, _limit: usize) -> StoreFuture<'_, Vec<Claimed>> {
        // Cluster mode takes deliveries by queue message (`take`), never by polling.
        Box::pin(async {
            Err(StoreError::Unsupported(
                "claiming by polling in cluster mode",
            ))
        })
    }

    fn take(
        &self,
        message_id: &str,
        ticket: u32,
        redelivered: bool,
        now_ms: i64,
    ) -> StoreFuture<'_, Take> {
        let id = message_id.to_owned();
        Box::pin(async move {
            let t = deliveries::take(&self.pool, &id, ticket, redelivered, now_ms).await?;
            if matches!(t, Take::Claimed(_)) {
                self.committed();
            }
            Ok(t)
        })
    }

    fn record(&self, message_id: &str, outcome: Recorded, now_ms: i64) -> StoreFuture<'_, ()> {
        let id = message_id.to_owned();
        Box::pin(async move {
            deliveries::record(&self.pool, &id, &outcome, now_ms).await?;
            self.committed();
            Ok(())
        })
    }

    fn release(&self, message_ids: Vec<String>) -> StoreFuture<'_, ()> {
        Box::pin(async move { ops::release(&self.pool, &message_ids).await })
    }

    fn next_due(&self, target: &str) -> StoreFuture<'_, Option<i64>> {
        let target = target.to_owned();
        Box::pin(async move { reads::next_due(&self.pool, &target).await })
    }

    fn queue_depths(&self) -> StoreFuture<'_, Vec<QueueDepth>> {
        Box::pin(reads::queue_depths(&self.pool))
    }

    fn audit(&self, event: AuditEvent) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            ops::audit(&self.pool, event).await?;
            self.committed();
            Ok(())
        })
    }

    fn trace(&self, submission_id: &str) -> StoreFuture<'_, Vec<AuditRecord>> {
        let id = submission_id.to_owned();
        Box::pin(async move {
            audit::chain_all_in(&self.pool).await?;
            reads::trace(&self.pool, &id).await
        })
    }

    fn read_audit(&self, job: AuditJob) -> StoreFuture<'_, ()> {
        let url = self.url.clone();
        Box::pin(async move {
            audit::chain_all_in(&self.pool).await?;
            tokio::task::spawn_blocking(move || {
                let reader = reads::AuditReader::connect(&url)?;
                job(&reader);
                Ok(())
            })
            .await
            .map_err(|_| StoreError::Closed)?
        })
    }

    fn audit_head(&self) -> StoreFuture<'_, Head> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            let r = conn
                .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
                .await
                .map_err(backend)?;
            Ok(Head {
                seq: r.get::<_, i64>(0) as u64,
                hash: r.get(1),
            })
        })
    }

    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()> {
        Box::pin(async move { ops::add_checkpoint(&self.pool, &checkpoint).await })
    }

    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            reads::latest_checkpoint(&conn).await
        })
    }

    fn audit_texts(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            reads::audit_texts(&conn, from, to).await
        })
    }

    fn unstamped(&self, after: u64, limit: usize) -> StoreFuture<'_, (Vec<Checkpoint>, u64)> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            reads::unstamped(&conn, after, limit).await
        })
    }

    fn add_stamp(&self, seq: u64, token: Vec<u8>, stamped_at: i64) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let conn = self.pool.get().await.map_err(backend)?;
            conn.execute(
                "INSERT INTO audit_stamps (seq, token, stamped_at) VALUES ($1, $2, $3) ON CONFLICT (seq) DO NOTHING",
                &[&(seq as i64), &token, &stamped_at],
            )
            .await
            .map_err(backend)?;
            Ok(())
        })
    }

    fn operate(&self, message_id: &str, action: Action, by: &Actor) -> StoreFuture<'_, Operated> {
        let (id, by) = (message_id.to_owned(), by.clone());
        Box::pin(async move { ops::operate(&self.pool, &id, action, &by).await })
    }

    fn deliveries(&self, query: DeliveryQuery) -> StoreFuture<'_, Vec<DeliveryRow>> {
        Box::pin(async move { reads::deliveries(&self.pool, &query).await })
    }

    fn oldest_waiting(&self, targets: Vec<String>) -> StoreFuture<'_, Vec<(String, i64)>> {
        Box::pin(async move { reads::oldest_waiting(&self.pool, &targets).await })
    }

    fn target_health(&self) -> StoreFuture<'_, Vec<TargetHealth>> {
        Box::pin(reads::target_health(&self.pool))
    }

    fn settings(&self, kind: &str) -> StoreFuture<'_, Vec<(String, String)>> {
        let kind = kind.to_owned();
        Box::pin(async move { reads::settings(&self.pool, &kind).await })
    }

    fn set_setting(
        &self,
        kind: &str,
        id: &str,
        value: Option<String>,
        event: AuditEvent,
    ) -> StoreFuture<'_, ()> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        Box::pin(
            async move { ops::set_setting(&self.pool, &kind, &id, value.as_deref(), event).await },
        )
    }

    fn case_counts(&self, query: CaseQuery) -> StoreFuture<'_, CaseCounts> {
        Box::pin(async move { super::cases::counts(&self.pool, &query).await })
    }

    fn set_case_zone(&self, zone: StatsZone) -> StoreFuture<'_, ()> {
        Box::pin(async move { super::cases::set_zone(&self.pool, zone).await })
    }

    fn tidy(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { super::cases::fold(&self.pool, false).await.map(|_| ()) })
    }

    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64> {
        Box::pin(ops::purge(&self.pool, purge))
    }

    fn rebase(&self, target: &str, latest_ms: i64) -> StoreFuture<'_, u64> {
        let target = target.to_owned();
        Box::pin(async move { ops::rebase(&self.pool, &target, latest_ms).await })
    }

    fn mailbox(&self, query: BoxQuery) -> StoreFuture<'_, Vec<Boxed>> {
        Box::pin(async move { reads::mailbox(&self.pool, &query).await })
    }

    fn delivery(&self, message_id: &str) -> StoreFuture<'_, Option<DeliveryInfo>> {
        let id = message_id.to_owned();
        Box::pin(async move { reads::delivery(&self.pool, &id).await })
    }

    fn submission_by_key(&self, portal: &str, key_hash: &str) -> StoreFuture<'_, Option<String>> {
        let (portal, key) = (portal.to_owned(), key_hash.to_owned());
        Box::pin(async move { reads::submission_by_key(&self.pool, &portal, &key).await })
    }

    fn overdue(&self, before_ms: i64) -> StoreFuture<'_, Vec<Overdue>> {
        Box::pin(reads::overdue(&self.pool, before_ms))
    }

    fn outbox(&self) -> Option<&dyn Outbox> {
        Some(self)
    }

    fn audit_unplaced(&self) -> StoreFuture<'_, u64> {
        Box::pin(audit::pending(&self.pool))
    }

    fn stats(&self) -> StoreStats {
        let submissions = self.counters.submissions.load(Ordering::Relaxed);
        StoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            submission_commits: submissions,
            submissions,
            largest_group: 1,
            envelope_bytes: 0,
            write_failing: self.counters.unreachable.load(Ordering::Relaxed),
            disk: None,
        }
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.probe.abort();
            self.chainer.abort();
            // Leave nothing of ours pending (another instance would place it, or the next start).
            if let Err(e) = audit::chain_all_in(&self.pool).await {
                tracing::warn!(error = %e, "audit records left pending at shutdown; the next instance to run places them");
            }
            self.pool.close();
            Ok(())
        })
    }
}

impl Outbox for PostgresStore {
    fn lease(&self, limit: usize, lease_ms: i64) -> StoreFuture<'_, Vec<Wanted>> {
        Box::pin(outbox::lease(&self.pool, limit, lease_ms))
    }

    fn published(&self, done: Vec<Wanted>) -> StoreFuture<'_, u64> {
        Box::pin(async move { outbox::published(&self.pool, &done).await })
    }

    fn backlog(&self) -> StoreFuture<'_, u64> {
        Box::pin(outbox::backlog(&self.pool))
    }
}
