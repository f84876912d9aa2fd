//! The embedded store: SQLite in WAL mode in one data directory.
//!
//! # On-disk layout
//!
//! ```text
//! <data_dir>/LOCK            advisory lock: one daemon per data directory; holds its PID
//! <data_dir>/gateway.db      SQLite database (plus gateway.db-wal, gateway.db-shm)
//!   meta(key, value)         the store id (see `anchor`)
//!   submissions(id, portal, leistung, destination, received_at, response)
//!   deliveries(message_id, submission_id, target, state, attempts, next_attempt_at,
//!              created_at_ms, last_error, last_class, receipt, updated_at,
//!              segment, env_offset, env_len, env_crc32)   where its envelope lies
//!   idempotency(portal, key, request_hash, submission_id)   key: SHA-256 of the portal's key
//!   audit(seq, submission_id, record, hash)      the hash-chained audit log (see `audit`)
//!   audit_checkpoints(seq, head, ts, jws, first_seq, root)  signed checkpoints: chain head, Merkle tree head of the batch
//! <data_dir>/envelopes/*.seg  the sealed envelopes (JSON, encrypted per target),
//!                             appended, fsynced before the commit that refers to them (see `segments`)
//! ```
//!
//! Only envelopes are stored: every part and the manifest (with file names,
//! media types and hashes) are JWE for the target. The `response` column holds
//! the `202` body (ids, sizes, SHA-512 hashes, the signed receipt) and no data.
//!
//! # Crash guarantees
//!
//! `journal_mode=WAL` with `synchronous=FULL`: a transaction is durable once
//! `COMMIT` returned, because the WAL is fsynced before. A submission, its
//! deliveries, envelope locations and idempotency key are written in one
//! transaction — after the envelopes themselves were fsynced to their segment — so
//! after a crash either all of it is there or none of it — and the portal got
//! its `202` only in the first case. A crash before the fsync loses only
//! submissions that were never acknowledged.
//!
//! Deliveries left `in_flight` by a crash are set back to `pending` when the store
//! opens: the engine delivers them again with the same `message_id` (at least once).
//!
//! # Group commit
//!
//! One writer thread owns the write connection; every write — accepting a
//! submission, claiming deliveries, recording an outcome — is an operation queued
//! to it. It takes the first waiting operation, then everything else already
//! queued (up to `group_commit_max` or 64 MiB), applies them in one transaction —
//! each in a savepoint, so one bad row fails alone — and commits once. Under load, many submissions share
//! one fsync; alone, a submission waits for nobody. SQLite's automatic WAL
//! checkpoint (every 1000 pages) keeps the WAL small; it runs on the writer
//! thread. (A background checkpointer was measured: faster only while the WAL
//! grows without bound, slower once bounded — see BENCHMARKS.md.) The queue is bounded, so a
//! slow disk pushes back on the listeners instead of growing memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

pub mod anchor;
pub mod audit_log;
mod cases;
mod deliveries;
mod disk;
mod group;
mod mailbox;
pub mod offline;
mod operator;
mod recipe;
mod schema;
pub mod segments;
pub mod staging;
mod submissions;
mod writer;

#[cfg(test)]
mod integrity_tests;
#[cfg(test)]
mod tests;

use crate::model::audit::{AuditEvent, AuditRecord, Checkpoint, Head};
use crate::model::cases::{CaseCounts, CaseQuery, StatsZone};
use crate::model::delivery::{
    Action, Actor, Boxed, Claimed, DeliveryInfo, DeliveryQuery, DeliveryRow, DeliveryState,
    Operated, QueueDepth, Recorded, TargetHealth,
};
use crate::model::submission::{Accepted, NewSubmission, ReplyInfo, SpoolFile, SubmissionStatus};

use crate::store::{AuditJob, Purge, Store, StoreError, StoreFuture, StoreStats};
use audit_log::Chain as _;
pub use audit_log::{read_audit_texts, read_latest_checkpoint, read_trace};
use deliveries::recover_in_flight;
pub use offline::{counts, open_read_only, Counts};
use schema::{migrate, SCHEMA};
use segments::{Location, Segments};
use submissions::read_submission;
use writer::{writer_loop, Anchoring, Counters, Op, Reply};

pub(super) const DB_FILE: &str = "gateway.db";
const QUEUE: usize = 1024;

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct EmbeddedStore {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    segments: Arc<Segments>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    counters: Arc<Counters>,
    _lock: File,
    dir: std::path::PathBuf,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

pub(super) fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 32 MiB of page cache per connection (SQLite's default is 2 MiB): the
    // b-tree interior pages of a large backlog stay in memory.
    conn.pragma_update(None, "cache_size", -32768)?;
    Ok(conn)
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path, group_commit_max: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        // Not truncated before it is ours: it names the process that holds it.
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(data_dir.join("LOCK"))?;
        if lock.try_lock().is_err() {
            let mut holder = String::new();
            let _ = std::io::Read::read_to_string(&mut lock, &mut holder);
            let holder = holder.trim();
            return Err(StoreError::Locked {
                dir: data_dir.display().to_string(),
                holder: if holder.is_empty() { "?" } else { holder }.to_owned(),
            });
        }
        lock.set_len(0)?;
        std::io::Write::write_all(&mut lock, format!("{}\n", std::process::id()).as_bytes())?;
        let path = data_dir.join(DB_FILE);
        let mut writer = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "cannot switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        // Savepoints (one per operation in a group) journal into memory, not a temp file.
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        // Checkpoint every 16 MiB of WAL instead of SQLite's 4 MiB: hot pages (the
        // ends of the B-trees, the queue index) are copied to the database file
        // once per checkpoint, not once per 4 MiB, and the database file is fsynced
        // a quarter as often.
        writer.pragma_update(None, "wal_autocheckpoint", 4096)?;
        // Before anything is created or deleted: is this the store the data
        // directory held? (See `anchor`.)
        let anchored = anchor::read(data_dir)?;
        if anchor::is_empty_database(&writer)? {
            anchor::check_fresh(data_dir, anchored.as_ref())?;
        }
        let segments = Arc::new(Segments::open(data_dir)?);
        migrate(&mut writer, &segments)?;
        writer.execute_batch(SCHEMA)?;
        writer.execute_batch(&cases::tables())?;
        writer.execute_batch(&cases::triggers())?;
        cases::init(&writer)?;
        let store_id = anchor::store_id(&writer)?;
        if let Some(a) = &anchored {
            anchor::check(&writer, &store_id, a)?;
        }
        let mut head = Head::load(&writer)?;
        let recovered = recover_in_flight(&mut writer, &mut head)?;
        if recovered > 0 {
            tracing::warn!(deliveries = recovered, "deliveries were in flight at the last stop; they will be delivered again with the same message_id");
        }
        anchor::write(data_dir, &store_id, &head)?;
        warn_missing_segments(&writer, &segments);
        let reader = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (tx, rx) = mpsc::channel::<Op>(QUEUE);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let max = group_commit_max.max(1);
        // Segments nothing refers to are collected after purges, never at start:
        // a database that lost rows must not cost the envelopes too.
        let thread_segments = segments.clone();
        let anchoring = Anchoring {
            data_dir: data_dir.to_path_buf(),
            store_id,
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer_loop(
                    writer,
                    rx,
                    max,
                    &thread_counters,
                    head,
                    &thread_segments,
                    &anchoring,
                )
            })?;
        Ok(EmbeddedStore {
            tx: Mutex::new(Some(tx)),
            segments,
            writer: Mutex::new(Some(handle)),
            reader: Arc::new(Mutex::new(reader)),
            counters,
            _lock: lock,
            dir: data_dir.to_path_buf(),
        })
    }

    /// The database file inside `data_dir`.
    pub fn db_path(data_dir: &Path) -> PathBuf {
        data_dir.join(DB_FILE)
    }
}

/// Logs loudly when deliveries refer to segment files that are not there (a
/// partial restore): their deliveries will park as `envelope-damaged`.
fn warn_missing_segments(conn: &Connection, segments: &Segments) {
    let referenced = conn
        .prepare("SELECT DISTINCT segment FROM deliveries WHERE segment IS NOT NULL")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<i64>, _>>()
        });
    let Ok(referenced) = referenced else { return };
    let missing: Vec<i64> = referenced
        .into_iter()
        .filter(|id| !segments.exists(*id))
        .collect();
    if !missing.is_empty() {
        tracing::error!(
            segments = ?missing,
            dir = %segments.dir().display(),
            "sealed envelopes refer to segment files that are missing: restore envelopes/ from the backup, or their deliveries park as envelope-damaged"
        );
    }
}

impl EmbeddedStore {
    /// Queues an operation for the writer and waits for its durable result.
    async fn request<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(op(reply)).await?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a query on the read connection, off the async threads.
    fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let reader = self.reader.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = reader.lock().map_err(|_| StoreError::Closed)?;
                query(&conn)
            })
            .await
            .map_err(|_| StoreError::Closed)?
        })
    }

    async fn send(&self, op: Op) -> Result<(), StoreError> {
        let tx = self
            .tx
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        tx.send(op).await.map_err(|_| StoreError::Closed)
    }
}

/// A claimed envelope up to this size is read right where the delivery is
/// made: a `pread` of a few pages, from the page cache as a rule (it was
/// written moments ago), costs less than the hand-off to the blocking pool
/// and back. Larger ones are read there.
const INLINE_READ_BYTES: u64 = 64 << 10;

impl Store for EmbeddedStore {
    fn accept(&self, submission: NewSubmission) -> StoreFuture<'_, Accepted> {
        Box::pin(self.request(move |reply| Op::Accept(Box::new(submission), reply)))
    }

    fn spool(&self) -> Option<std::io::Result<Arc<dyn SpoolFile>>> {
        Some(
            self.segments
                .spool()
                .map(|s| Arc::new(s) as Arc<dyn SpoolFile>),
        )
    }

    fn claim(&self, target: &str, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<Claimed>> {
        let target = target.to_owned();
        Box::pin(self.request(move |reply| Op::Claim {
            target,
            now_ms,
            limit,
            reply,
        }))
    }

    fn record(&self, message_id: &str, outcome: Recorded, now_ms: i64) -> StoreFuture<'_, ()> {
        let message_id = message_id.to_owned();
        Box::pin(self.request(move |reply| Op::Record {
            message_id,
            outcome,
            now_ms,
            reply,
        }))
    }

    fn release(&self, message_ids: Vec<String>) -> StoreFuture<'_, ()> {
        Box::pin(self.request(move |reply| Op::Release { message_ids, reply }))
    }

    fn next_due(&self, target: &str) -> StoreFuture<'_, Option<i64>> {
        let target = target.to_owned();
        self.read(move |conn| {
                let mut due: Option<i64> = None;
                for state in ["retry_wait", "pending"] {
                    let d: Option<i64> = conn
                        .prepare_cached("SELECT MIN(next_attempt_at) FROM deliveries WHERE target = ?1 AND state = ?2")?
                        .query_row(params![target, state], |r| r.get(0))?;
                    due = match (due, d) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Ok(due)
        })
    }

    fn queue_depths(&self) -> StoreFuture<'_, Vec<QueueDepth>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT target, state, n FROM delivery_counts WHERE n > 0 ORDER BY target, state",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (target, state, count) = row?;
                if let Some(state) = DeliveryState::parse(&state) {
                    out.push(QueueDepth {
                        target,
                        state,
                        count,
                    });
                }
            }
            Ok(out)
        })
    }

    fn submission(&self, id: &str) -> StoreFuture<'_, Option<SubmissionStatus>> {
        let id = id.to_owned();
        self.read(move |conn| read_submission(conn, &id))
    }

    fn replies_to(&self, submission_id: &str) -> StoreFuture<'_, Vec<ReplyInfo>> {
        let id = submission_id.to_owned();
        self.read(move |conn| submissions::read_replies(conn, &id))
    }

    fn envelope(&self, message_id: &str) -> StoreFuture<'_, Option<Vec<u8>>> {
        let id = message_id.to_owned();
        let segments = self.segments.clone();
        self.read(move |conn| {
            let at = conn
                .prepare_cached(
                    "SELECT segment, env_offset, env_len, env_crc32 FROM deliveries WHERE message_id = ?1 AND segment IS NOT NULL",
                )?
                .query_row(params![id], |r| {
                    Ok(Location {
                        segment: r.get(0)?,
                        offset: r.get(1)?,
                        len: r.get(2)?,
                        crc32: r.get(3)?,
                        size: 0,
                    })
                })
                .optional()?;
            at.map(|at| segments.read_stored(&at)).transpose()
        })
    }

    fn claimed_envelope<'a>(&'a self, c: &'a Claimed) -> StoreFuture<'a, Option<Vec<u8>>> {
        let Some(s) = &c.stored_at else {
            return self.envelope(&c.message_id);
        };
        let at = Location::from(s);
        if (1..=INLINE_READ_BYTES).contains(&c.size) {
            return Box::pin(std::future::ready(self.segments.read_stored(&at).map(Some)));
        }
        let segments = self.segments.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || segments.read_stored(&at).map(Some))
                .await
                .map_err(|_| StoreError::Closed)?
        })
    }

    fn audit(&self, event: AuditEvent) -> StoreFuture<'_, ()> {
        Box::pin(self.request(move |reply| Op::Audit(event, reply)))
    }

    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()> {
        Box::pin(self.request(move |reply| Op::Checkpoint(checkpoint, reply)))
    }

    fn trace(&self, submission_id: &str) -> StoreFuture<'_, Vec<AuditRecord>> {
        let id = submission_id.to_owned();
        self.read(move |conn| read_trace(conn, &id))
    }

    fn read_audit(&self, job: AuditJob) -> StoreFuture<'_, ()> {
        self.read(move |conn| {
            job(conn);
            Ok(())
        })
    }

    fn audit_head(&self) -> StoreFuture<'_, Head> {
        self.read(Head::load)
    }

    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>> {
        self.read(read_latest_checkpoint)
    }

    fn unstamped(&self, after: u64, limit: usize) -> StoreFuture<'_, (Vec<Checkpoint>, u64)> {
        self.read(move |conn| audit_log::read_unstamped(conn, after, limit))
    }

    fn add_stamp(&self, seq: u64, token: Vec<u8>, stamped_at: i64) -> StoreFuture<'_, ()> {
        Box::pin(self.request(move |reply| Op::Stamp {
            seq,
            token,
            stamped_at,
            reply,
        }))
    }

    fn audit_texts(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<String>> {
        self.read(move |conn| read_audit_texts(conn, from, to))
    }

    fn mailbox(&self, query: crate::model::delivery::BoxQuery) -> StoreFuture<'_, Vec<Boxed>> {
        self.read(move |conn| mailbox::mailbox(conn, &query))
    }

    fn delivery(&self, message_id: &str) -> StoreFuture<'_, Option<DeliveryInfo>> {
        let id = message_id.to_owned();
        self.read(move |conn| mailbox::delivery(conn, &id))
    }

    fn submission_by_key(&self, portal: &str, key_hash: &str) -> StoreFuture<'_, Option<String>> {
        let (portal, key) = (portal.to_owned(), key_hash.to_owned());
        self.read(move |conn| mailbox::submission_by_key(conn, &portal, &key))
    }

    fn overdue(&self, before_ms: i64) -> StoreFuture<'_, Vec<crate::store::Overdue>> {
        self.read(move |conn| mailbox::overdue(conn, before_ms))
    }

    fn operate(&self, message_id: &str, action: Action, by: &Actor) -> StoreFuture<'_, Operated> {
        let (message_id, by) = (message_id.to_owned(), by.clone());
        Box::pin(self.request(move |reply| Op::Operate {
            message_id,
            action,
            by,
            reply,
        }))
    }

    fn deliveries(&self, query: DeliveryQuery) -> StoreFuture<'_, Vec<DeliveryRow>> {
        self.read(move |conn| operator::deliveries(conn, &query))
    }

    fn oldest_waiting(&self, targets: Vec<String>) -> StoreFuture<'_, Vec<(String, i64)>> {
        self.read(move |conn| operator::oldest_waiting(conn, &targets))
    }

    fn target_health(&self) -> StoreFuture<'_, Vec<TargetHealth>> {
        self.read(operator::target_health)
    }

    fn settings(&self, kind: &str) -> StoreFuture<'_, Vec<(String, String)>> {
        let kind = kind.to_owned();
        self.read(move |conn| operator::settings(conn, &kind))
    }

    fn set_setting(
        &self,
        kind: &str,
        id: &str,
        value: Option<String>,
        event: AuditEvent,
    ) -> StoreFuture<'_, ()> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        Box::pin(self.request(move |reply| Op::Setting {
            kind,
            id,
            value,
            event,
            reply,
        }))
    }

    fn case_counts(&self, query: CaseQuery) -> StoreFuture<'_, CaseCounts> {
        self.read(move |conn| cases::counts(conn, &query))
    }

    fn set_case_zone(&self, zone: StatsZone) -> StoreFuture<'_, ()> {
        Box::pin(self.request(move |reply| Op::Zone(zone, reply)))
    }

    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64> {
        Box::pin(self.request(move |reply| Op::Purge(purge, reply)))
    }

    fn rebase(&self, target: &str, latest_ms: i64) -> StoreFuture<'_, u64> {
        let target = target.to_owned();
        Box::pin(self.request(move |reply| Op::Rebase {
            target,
            latest_ms,
            reply,
        }))
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            submission_commits: self.counters.submission_commits.load(Ordering::Relaxed),
            submissions: self.counters.submissions.load(Ordering::Relaxed),
            largest_group: self.counters.largest_group.load(Ordering::Relaxed),
            envelope_bytes: self.segments.disk_bytes(),
            write_failing: self.counters.failing.load(Ordering::Relaxed),
            disk: disk::space(&self.dir),
        }
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Dropping the sender ends the writer loop once the queue is drained.
            self.tx.lock().map_err(|_| StoreError::Closed)?.take();
            let handle = self.writer.lock().map_err(|_| StoreError::Closed)?.take();
            if let Some(handle) = handle {
                tokio::task::spawn_blocking(move || handle.join())
                    .await
                    .map_err(|_| StoreError::Closed)?
                    .map_err(|_| StoreError::Corrupt("store writer thread panicked".into()))?;
            }
            Ok(())
        })
    }
}
