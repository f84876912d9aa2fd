//! The embedded store: SQLite in WAL mode in one data directory.
//!
//! # On-disk layout
//!
//! ```text
//! <data_dir>/LOCK            advisory lock: one daemon per data directory
//! <data_dir>/gateway.db      SQLite database (plus gateway.db-wal, gateway.db-shm)
//!   submissions(id, portal, leistung, destination, received_at, response)
//!   deliveries(message_id, submission_id, target, state, attempts, next_attempt_at,
//!              created_at_ms, last_error, receipt, updated_at,
//!              segment, env_offset, env_len, env_crc32)   where its envelope lies
//!   idempotency(portal, key, request_hash, submission_id)
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

pub mod audit_log;
pub mod segments;

use crate::model::audit::Checkpoint;
use crate::model::audit::{AuditEvent, AuditRecord, Head};
use crate::model::delivery::{
    Action, Claimed, DeliveryRow, DeliveryState, Operated, QueueDepth, Recorded,
};
use crate::model::submission::{Accepted, DeliveryStatus, NewSubmission, SubmissionStatus};
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::{AuditJob, Purge, Store, StoreError, StoreFuture, StoreStats};
use audit_log::Chain as _;
pub use audit_log::{read_audit_texts, read_latest_checkpoint, read_trace};
use segments::{Location, Segments};

const DB_FILE: &str = "gateway.db";
const GROUP_BYTES: usize = 64 << 20;
const QUEUE: usize = 1024;

/// The table of delivery counts per target and state (in `SCHEMA` and created by
/// the 3 → 4 migration, which fills it before the triggers exist).
macro_rules! delivery_counts_table {
    () => {
        "
CREATE TABLE IF NOT EXISTS delivery_counts (
    target  TEXT NOT NULL,
    state   TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (target, state)
) WITHOUT ROWID;
"
    };
}

const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS submissions (
    id           TEXT PRIMARY KEY,
    portal       TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    response     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    message_id      TEXT PRIMARY KEY,
    submission_id   TEXT NOT NULL REFERENCES submissions(id),
    target          TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    last_error      TEXT,
    receipt         TEXT,
    updated_at      TEXT NOT NULL,
    updated_ms      INTEGER NOT NULL DEFAULT 0,
    segment         INTEGER,
    env_offset      INTEGER,
    env_len         INTEGER,
    env_crc32       INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_by_submission ON deliveries(submission_id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(target, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_by_segment ON deliveries(segment) WHERE segment IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_holding ON deliveries(state, updated_ms) WHERE segment IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq           INTEGER PRIMARY KEY,
    submission_id TEXT,
    record        TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_submission ON audit(submission_id);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    head       TEXT NOT NULL,
    ts         TEXT NOT NULL,
    jws        TEXT NOT NULL,
    first_seq  INTEGER,
    root       TEXT
);
",
    delivery_counts_table!(),
    "CREATE TRIGGER IF NOT EXISTS delivery_counts_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
        ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS delivery_counts_update AFTER UPDATE OF state ON deliveries
    WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
    INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
        ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS delivery_counts_delete AFTER DELETE ON deliveries BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
END;
CREATE TABLE IF NOT EXISTS idempotency (
    portal        TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    PRIMARY KEY (portal, key)
) WITHOUT ROWID;
PRAGMA user_version = 4;
"
);

/// Schema version 1 kept `submissions` and `envelopes` as WITHOUT ROWID tables.
/// Their rows (a 202 body of ~1 KiB, an envelope of 12 KiB and more) overflow the
/// b-tree page, and SQLite then reads a row's whole payload for every key
/// comparison while searching such a tree: inserting and reading envelopes cost
/// far more than the bytes. Version 2 keeps them in rowid tables (key lookups go
/// through the small primary-key index). The copy runs in one transaction: a
/// crash during it leaves version 1 as it was.
const MIGRATE_1_TO_2: &str = "
CREATE TABLE submissions_v2 (
    id           TEXT PRIMARY KEY,
    portal       TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    response     TEXT NOT NULL
);
INSERT INTO submissions_v2 SELECT id, portal, leistung, destination, received_at, response FROM submissions;
DROP TABLE submissions;
ALTER TABLE submissions_v2 RENAME TO submissions;
CREATE TABLE envelopes_v2 (
    message_id  TEXT PRIMARY KEY REFERENCES deliveries(message_id),
    body        BLOB NOT NULL
);
INSERT INTO envelopes_v2 SELECT message_id, body FROM envelopes;
DROP TABLE envelopes;
ALTER TABLE envelopes_v2 RENAME TO envelopes;
PRAGMA user_version = 2;
";

/// Version 3 moves the envelope bodies out of the database into segment files
/// (see `segments`); each delivery row keeps where its envelope lies (NULL once
/// retention or an operator removed it).
const MIGRATE_2_TO_3: &str = "
ALTER TABLE deliveries ADD COLUMN segment INTEGER;
ALTER TABLE deliveries ADD COLUMN env_offset INTEGER;
ALTER TABLE deliveries ADD COLUMN env_len INTEGER;
ALTER TABLE deliveries ADD COLUMN env_crc32 INTEGER;
";
/// (The indexes over the new columns come from `SCHEMA`, which runs after.)
const MIGRATE_2_TO_3_END: &str = "
DROP TABLE envelopes;
PRAGMA user_version = 3;
";

/// Version 4 keeps, per checkpoint, the batch of records it covers and the
/// Merkle tree head over them (NULL for checkpoints signed before; stores of the
/// first version 1 had no checkpoint table yet, so it is created here); and the
/// number of deliveries per target and state, kept by triggers (from `SCHEMA`)
/// in the same transaction as every change, so that `/metrics` reads a few rows
/// instead of counting a table that grows with every delivery ever made.
const MIGRATE_3_TO_4: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq   INTEGER PRIMARY KEY,
    head  TEXT NOT NULL,
    ts    TEXT NOT NULL,
    jws   TEXT NOT NULL
);
ALTER TABLE audit_checkpoints ADD COLUMN first_seq INTEGER;
ALTER TABLE audit_checkpoints ADD COLUMN root TEXT;
",
    delivery_counts_table!(),
    "
INSERT INTO delivery_counts (target, state, n)
    SELECT target, state, COUNT(*) FROM deliveries GROUP BY target, state;
PRAGMA user_version = 4;
"
);

/// The schema version this gateway writes.
const SCHEMA_VERSION: i64 = 4;

/// Brings a store of an earlier schema version to the current one.
fn migrate(conn: &mut Connection, segments: &Segments) -> Result<(), StoreError> {
    let mut version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 1 {
        tracing::info!("migrating the store from schema version 1 to 2");
        // Tables are replaced while other tables refer to them: foreign keys are
        // checked once at the end instead of on every step.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(MIGRATE_1_TO_2)?;
        let violations: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if violations > 0 {
            return Err(StoreError::Corrupt(format!(
                "{violations} foreign key violation(s) after migrating to schema version 2; nothing was changed"
            )));
        }
        tx.commit()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        version = 2;
    }
    if version == 2 {
        tracing::info!(
            "migrating the store from schema version 2 to 3: envelopes into segment files"
        );
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(MIGRATE_2_TO_3)?;
        let mut moved = 0u64;
        {
            let mut read = tx.prepare("SELECT message_id, body FROM envelopes")?;
            let mut insert = tx.prepare(
                "UPDATE deliveries SET segment = ?2, env_offset = ?3, env_len = ?4, env_crc32 = ?5 WHERE message_id = ?1",
            )?;
            let mut rows = read.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let body: Vec<u8> = row.get(1)?;
                let at =
                    segments.append(&body, crate::model::submission::envelope_checksum(&body))?;
                insert.execute(params![id, at.segment, at.offset, at.len, at.crc32])?;
                moved += 1;
            }
        }
        // The bytes are on disk before the database refers to them.
        segments.sync()?;
        tx.execute_batch(MIGRATE_2_TO_3_END)?;
        tx.commit()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        tracing::info!(envelopes = moved, "migration to schema version 3 done");
        version = 3;
    }
    if version == 3 {
        tracing::info!("migrating the store from schema version 3 to 4: Merkle tree heads");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(MIGRATE_3_TO_4)?;
        tx.commit()?;
    } else if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the store has schema version {version}, newer than this gateway ({SCHEMA_VERSION}): run the newer version"
        )));
    }
    Ok(())
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, executed by the writer thread inside a group transaction.
enum Op {
    Accept(NewSubmission, Reply<Accepted>),
    Claim {
        target: String,
        now_ms: i64,
        limit: usize,
        reply: Reply<Vec<Claimed>>,
    },
    Record {
        message_id: String,
        outcome: Recorded,
        now_ms: i64,
        reply: Reply<()>,
    },
    Release {
        message_ids: Vec<String>,
        reply: Reply<()>,
    },
    Audit(AuditEvent, Reply<()>),
    Checkpoint(Checkpoint, Reply<()>),
    Purge(Purge, Reply<u64>),
    Operate {
        message_id: String,
        action: Action,
        operator: String,
        reply: Reply<Operated>,
    },
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Accept(s, _) => s.bytes(),
            _ => 256,
        }
    }
}

/// The result of applying one op, sent after the group committed.
enum Done {
    Operated(Reply<Operated>, Result<Operated, StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Accept(Reply<Accepted>, Result<Accepted, StoreError>),
    Claim(Reply<Vec<Claimed>>, Result<Vec<Claimed>, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
}

impl Done {
    fn stored(&self) -> bool {
        matches!(self, Done::Accept(_, Ok(Accepted::Stored)))
    }

    fn send(self) {
        match self {
            Done::Operated(r, v) => drop(r.send(v)),
            Done::Count(r, v) => drop(r.send(v)),
            Done::Accept(r, v) => drop(r.send(v)),
            Done::Claim(r, v) => drop(r.send(v)),
            Done::Unit(r, v) => drop(r.send(v)),
        }
    }

    fn fail(self, msg: &str) {
        let e = || StoreError::CommitFailed(msg.to_owned());
        match self {
            Done::Operated(r, _) => drop(r.send(Err(e()))),
            Done::Count(r, _) => drop(r.send(Err(e()))),
            Done::Accept(r, _) => drop(r.send(Err(e()))),
            Done::Claim(r, _) => drop(r.send(Err(e()))),
            Done::Unit(r, _) => drop(r.send(Err(e()))),
        }
    }
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    submission_commits: AtomicU64,
    submissions: AtomicU64,
    largest_group: AtomicU64,
}

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct EmbeddedStore {
    tx: Mutex<Option<mpsc::Sender<Op>>>,
    segments: Arc<Segments>,
    writer: Mutex<Option<JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    counters: Arc<Counters>,
    _lock: File,
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
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
        let lock = File::create(data_dir.join("LOCK"))?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(data_dir.display().to_string()))?;
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
        let segments = Arc::new(Segments::open(data_dir)?);
        migrate(&mut writer, &segments)?;
        writer.execute_batch(SCHEMA)?;
        let mut head = Head::load(&writer)?;
        let recovered = recover_in_flight(&mut writer, &mut head)?;
        if recovered > 0 {
            tracing::warn!(deliveries = recovered, "deliveries were in flight at the last stop; they will be delivered again with the same message_id");
        }
        let reader = open_connection(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (tx, rx) = mpsc::channel::<Op>(QUEUE);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let max = group_commit_max.max(1);
        collect_segments(&writer, &segments);
        let thread_segments = segments.clone();
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer_loop(writer, rx, max, &thread_counters, head, &thread_segments)
            })?;
        Ok(EmbeddedStore {
            tx: Mutex::new(Some(tx)),
            segments,
            writer: Mutex::new(Some(handle)),
            reader: Arc::new(Mutex::new(reader)),
            counters,
            _lock: lock,
        })
    }

    /// The database file inside `data_dir`.
    pub fn db_path(data_dir: &Path) -> PathBuf {
        data_dir.join(DB_FILE)
    }
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    max: usize,
    counters: &Counters,
    mut head: Head,
    segments: &Segments,
) {
    // Whether the connection commits without fsync right now (claims only).
    let mut lazy = false;
    while let Some(first) = rx.blocking_recv() {
        let mut bytes = first.bytes();
        let mut batch = vec![first];
        while batch.len() < max && bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op.bytes();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let size = batch.len();
        let purges = batch.iter().any(|op| matches!(op, Op::Purge(..)));
        // A group of nothing but claims commits without fsync: a claim only marks
        // deliveries in flight, and after a crash every in-flight delivery is handed
        // back to pending anyway, so losing one loses nothing. The next durable
        // commit's fsync of the WAL makes the earlier frames durable too, so no
        // later state can survive without the claims before it.
        let claims_only = batch.iter().all(|op| matches!(op, Op::Claim { .. }));
        if claims_only != lazy {
            let mode = if claims_only { "NORMAL" } else { "FULL" };
            if let Err(e) = conn.pragma_update(None, "synchronous", mode) {
                tracing::error!(error = %e, mode, "cannot set the commit mode; the group is refused");
                let msg = format!("cannot set synchronous = {mode}: {e}");
                batch
                    .into_iter()
                    .for_each(|op| refused(op, StoreError::Corrupt(msg.clone())).send());
                continue;
            }
            lazy = claims_only;
        }
        match write_group(&mut conn, batch, &mut head, segments) {
            Ok(done) => {
                let stored = done.iter().filter(|d| d.stored()).count() as u64;
                if !claims_only {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                }
                if stored > 0 {
                    counters.submission_commits.fetch_add(1, Ordering::Relaxed);
                }
                counters.submissions.fetch_add(stored, Ordering::Relaxed);
                counters.largest_group.fetch_max(stored, Ordering::Relaxed);
                if purges {
                    // After the commit (nothing refers to them any more), before the
                    // answer (a purge that returned has freed the space).
                    collect_segments(&conn, segments);
                }
                done.into_iter().for_each(Done::send);
            }
            Err((e, done)) => {
                tracing::error!(error = %e, group = size, "store commit failed; the group is refused");
                // The chain's head in memory ran ahead of what was committed.
                match Head::load(&conn) {
                    Ok(h) => head = h,
                    Err(e) => tracing::error!(error = %e, "cannot reload the audit head"),
                }
                let msg = e.to_string();
                done.into_iter().for_each(|d| d.fail(&msg));
            }
        }
    }
}

/// Applies a group in one transaction: one fsync for all. On a failed commit the
/// replies are handed back so every caller learns of it.
fn write_group(
    conn: &mut Connection,
    batch: Vec<Op>,
    head: &mut Head,
    segments: &Segments,
) -> Result<Vec<Done>, (StoreError, Vec<Done>)> {
    // The group's envelopes go to their segment first; their fsync then runs on a
    // helper thread while the rows are written, and is waited for before COMMIT.
    let placed: Vec<Option<Result<Vec<Location>, StoreError>>> = batch
        .iter()
        .map(|op| match op {
            Op::Accept(sub, _) => Some(
                sub.deliveries
                    .iter()
                    .map(|d| segments.append(&d.envelope, d.envelope_crc32))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::from),
            ),
            _ => None,
        })
        .collect();
    let appended = placed
        .iter()
        .any(|p| matches!(p, Some(Ok(l)) if !l.is_empty()));
    std::thread::scope(|scope| {
        let sync = appended.then(|| scope.spawn(|| segments.sync()));
        let synced = move || match sync {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("segment fsync thread panicked"))),
            None => Ok(()),
        };
        apply_group(conn, batch, placed, head, synced)
    })
}

/// The rows of a group, in one transaction; `synced` waits for the group's
/// envelopes to be durable and is called before COMMIT.
fn apply_group(
    conn: &mut Connection,
    batch: Vec<Op>,
    placed: Vec<Option<Result<Vec<Location>, StoreError>>>,
    head: &mut Head,
    synced: impl FnOnce() -> std::io::Result<()>,
) -> Result<Vec<Done>, (StoreError, Vec<Done>)> {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let done = batch
                .into_iter()
                .map(|op| refused(op, StoreError::Corrupt(e.to_string())))
                .collect();
            return Err((e.into(), done));
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    for (op, placed) in batch.into_iter().zip(placed) {
        let before = head.clone();
        let sp = match tx.savepoint() {
            Ok(sp) => sp,
            Err(e) => {
                done.push(refused(op, StoreError::Corrupt(e.to_string())));
                continue;
            }
        };
        let (result, ok) = match op {
            Op::Accept(sub, reply) => {
                let r = match placed {
                    Some(Ok(at)) => insert_one(&sp, &sub, head, &at),
                    Some(Err(e)) => Err(e),
                    None => Err(StoreError::Corrupt("envelope not placed".into())),
                };
                let ok = r.is_ok();
                (Done::Accept(reply, r), ok)
            }
            Op::Claim {
                target,
                now_ms,
                limit,
                reply,
            } => {
                let r = claim(&sp, &target, now_ms, limit);
                let ok = r.is_ok();
                (Done::Claim(reply, r), ok)
            }
            Op::Record {
                message_id,
                outcome,
                now_ms,
                reply,
            } => {
                let r = record(&sp, &message_id, &outcome, now_ms, head);
                let ok = r.is_ok();
                (Done::Unit(reply, r), ok)
            }
            Op::Release { message_ids, reply } => {
                let r = release(&sp, &message_ids, head);
                let ok = r.is_ok();
                (Done::Unit(reply, r), ok)
            }
            Op::Audit(event, reply) => {
                let r = head.append(&sp, &rfc3339_ms(now_ms()), event);
                let ok = r.is_ok();
                (Done::Unit(reply, r), ok)
            }
            Op::Checkpoint(c, reply) => {
                let r = add_checkpoint(&sp, &c);
                let ok = r.is_ok();
                (Done::Unit(reply, r), ok)
            }
            Op::Operate {
                message_id,
                action,
                operator,
                reply,
            } => {
                let r = operate(&sp, &message_id, action, &operator, head);
                let ok = r.is_ok();
                (Done::Operated(reply, r), ok)
            }
            Op::Purge(p, reply) => {
                let r = purge(&sp, &p, head);
                let ok = r.is_ok();
                (Done::Count(reply, r), ok)
            }
        };
        if !ok {
            *head = before.clone();
        }
        if ok {
            if let Err(e) = sp.commit() {
                *head = before;
                done.push(match result {
                    Done::Operated(r, _) => Done::Operated(r, Err(e.into())),
                    Done::Count(r, _) => Done::Count(r, Err(e.into())),
                    Done::Accept(r, _) => Done::Accept(r, Err(e.into())),
                    Done::Claim(r, _) => Done::Claim(r, Err(e.into())),
                    Done::Unit(r, _) => Done::Unit(r, Err(e.into())),
                });
                continue;
            }
        }
        // A failed op's savepoint is dropped here, which rolls back that op only.
        done.push(result);
    }
    // Envelopes appended by this group are on disk before the commit refers to them.
    if let Err(e) = synced() {
        drop(tx);
        return Err((e.into(), done));
    }
    match tx.commit() {
        Ok(()) => Ok(done),
        Err(e) => Err((e.into(), done)),
    }
}

/// Deletes the segment files the committed database no longer refers to. A
/// failure is logged and retried at the next purge: it costs disk space, never data.
fn collect_segments(conn: &Connection, segments: &Segments) {
    let live = conn
        .prepare_cached("SELECT DISTINCT segment FROM deliveries WHERE segment IS NOT NULL")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<std::collections::BTreeSet<i64>, _>>()
        });
    match live
        .map_err(StoreError::from)
        .and_then(|live| Ok(segments.collect(&live)?))
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            segments = n,
            "envelope segment files deleted (nothing refers to them any more)"
        ),
        Err(e) => {
            tracing::warn!(error = %e, dir = %segments.dir().display(), "cannot delete unreferenced envelope segments; retried at the next purge")
        }
    }
}

fn refused(op: Op, e: StoreError) -> Done {
    match op {
        Op::Purge(_, r) => Done::Count(r, Err(e)),
        Op::Operate { reply, .. } => Done::Operated(reply, Err(e)),
        Op::Accept(_, r) => Done::Accept(r, Err(e)),
        Op::Claim { reply, .. } => Done::Claim(reply, Err(e)),
        Op::Record { reply, .. }
        | Op::Release { reply, .. }
        | Op::Audit(_, reply)
        | Op::Checkpoint(_, reply) => Done::Unit(reply, Err(e)),
    }
}

/// Hands deliveries left `in_flight` by a crash back to `pending`, with an audit record each.
fn recover_in_flight(conn: &mut Connection, head: &mut Head) -> Result<usize, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let rows: Vec<(String, String, String)> = {
        let mut stmt = tx.prepare(
            "SELECT message_id, submission_id, target FROM deliveries WHERE state = 'in_flight'",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let ts = rfc3339_ms(now_ms());
    let before = head.clone();
    for (message_id, submission_id, target) in &rows {
        tx.execute(
            "UPDATE deliveries SET state = 'pending' WHERE message_id = ?1",
            params![message_id],
        )?;
        if let Err(e) = head.append(
            &tx,
            &ts,
            AuditEvent {
                event: "recovered",
                submission_id: Some(submission_id.clone()),
                message_id: Some(message_id.clone()),
                target: Some(target.clone()),
                detail: serde_json::json!({"reason": "in flight at the last stop; delivered again with the same message_id"}),
            },
        ) {
            *head = before;
            return Err(e);
        }
    }
    if let Err(e) = tx.commit() {
        *head = before;
        return Err(e.into());
    }
    Ok(rows.len())
}

fn operate(
    conn: &Connection,
    message_id: &str,
    action: Action,
    operator: &str,
    head: &mut Head,
) -> Result<Operated, StoreError> {
    let row: Option<(String, String, String)> = conn
        .prepare_cached(
            "SELECT submission_id, target, state FROM deliveries WHERE message_id = ?1",
        )?
        .query_row(params![message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((submission_id, target, state)) = row else {
        return Ok(Operated::NotFound);
    };
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown state {state}")))?;
    let eligible = matches!(state, DeliveryState::Parked | DeliveryState::RetryWait)
        || (action == Action::Discard && state == DeliveryState::Pending);
    if !eligible {
        return Ok(Operated::WrongState(state));
    }
    let now = now_ms();
    let ts = rfc3339_ms(now);
    let (event, new_state) = match action {
        Action::Retry => {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 'pending', next_attempt_at = ?2, updated_at = ?3, updated_ms = ?2 WHERE message_id = ?1",
            )?
            .execute(params![message_id, now, ts])?;
            ("retried", DeliveryState::Pending)
        }
        Action::Discard => {
            // The envelope's bytes go with their segment file once nothing refers to it.
            conn.prepare_cached(&format!("UPDATE deliveries SET state = 'discarded', updated_at = ?2, updated_ms = ?3, {FORGET_ENVELOPE} WHERE message_id = ?1"))?
                .execute(params![message_id, ts, now])?;
            ("discarded", DeliveryState::Discarded)
        }
    };
    head.append(
        conn,
        &ts,
        AuditEvent {
            event,
            submission_id: Some(submission_id),
            message_id: Some(message_id.to_owned()),
            target: Some(target.clone()),
            detail: serde_json::json!({"by": operator, "from": state.as_str()}),
        },
    )?;
    Ok(Operated::Done {
        target,
        state: new_state,
    })
}

/// Removes a delivery's reference to its envelope; the bytes go with their
/// segment file once no delivery refers to it (see `collect_segments`).
const FORGET_ENVELOPE: &str = "segment = NULL, env_offset = NULL, env_len = NULL, env_crc32 = NULL";

/// Deletes sealed envelopes whose time is up (Datenschutz); the audit records stay.
fn purge(conn: &Connection, p: &Purge, head: &mut Head) -> Result<u64, StoreError> {
    let ts = rfc3339_ms(now_ms());
    let mut purged = 0u64;
    // Submissions whose deliveries are all finished, the last before the cut-off, with envelopes left.
    let done: Vec<String> = conn
        .prepare_cached(
            "SELECT d.submission_id FROM deliveries d
             WHERE d.submission_id IN (SELECT d2.submission_id FROM deliveries d2
                                       WHERE d2.segment IS NOT NULL AND d2.state = 'delivered' AND d2.updated_ms < ?1)
             GROUP BY d.submission_id
             HAVING SUM(d.state NOT IN ('delivered', 'discarded')) = 0 AND MAX(d.updated_ms) < ?1
             LIMIT ?2",
        )?
        .query_map(params![p.delivered_before_ms, p.limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in done {
        let n = conn
            .prepare_cached(&format!("UPDATE deliveries SET {FORGET_ENVELOPE} WHERE submission_id = ?1 AND segment IS NOT NULL"))?
            .execute(params![id])?;
        conn.prepare_cached("DELETE FROM idempotency WHERE submission_id = ?1")?
            .execute(params![id])?;
        head.append(
            conn,
            &ts,
            AuditEvent {
                event: "purged",
                submission_id: Some(id),
                detail: serde_json::json!({"reason": "retention after delivery", "envelopes": n}),
                ..Default::default()
            },
        )?;
        purged += n as u64;
    }
    let parked: Vec<(String, String, String)> = conn
        .prepare_cached(
            "SELECT message_id, submission_id, target FROM deliveries
             WHERE state = 'parked' AND updated_ms < ?1 AND segment IS NOT NULL LIMIT ?2",
        )?
        .query_map(params![p.parked_before_ms, p.limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (message_id, submission_id, target) in parked {
        conn.prepare_cached(&format!("UPDATE deliveries SET state = 'discarded', updated_at = ?2, updated_ms = ?3, {FORGET_ENVELOPE} WHERE message_id = ?1"))?
            .execute(params![message_id, ts, now_ms()])?;
        head.append(
            conn,
            &ts,
            AuditEvent {
                event: "discarded",
                submission_id: Some(submission_id),
                message_id: Some(message_id),
                target: Some(target),
                detail: serde_json::json!({"reason": "retention of parked deliveries", "by": "retention"}),
            },
        )?;
        purged += 1;
    }
    Ok(purged)
}

fn add_checkpoint(conn: &Connection, c: &Checkpoint) -> Result<(), StoreError> {
    let hash: Option<String> = conn
        .prepare_cached("SELECT hash FROM audit WHERE seq = ?1")?
        .query_row(params![c.seq], |r| r.get(0))
        .optional()?;
    if hash.as_deref() != Some(c.head.as_str()) {
        return Err(StoreError::Corrupt(format!(
            "checkpoint for seq {} does not match the log",
            c.seq
        )));
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO audit_checkpoints (seq, head, ts, jws, first_seq, root) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![c.seq, c.head, c.ts, c.jws, c.from, c.root])?;
    Ok(())
}

fn claim(
    conn: &Connection,
    target: &str,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    // One index range per state, each already in next_attempt_at order: no sort over
    // the backlog, however long it is. Due retries go first, then the oldest new ones.
    let mut claimed = Vec::new();
    for state in ["retry_wait", "pending"] {
        if claimed.len() >= limit {
            break;
        }
        let mut stmt = conn.prepare_cached(
            "SELECT message_id, submission_id, attempts, created_at_ms FROM deliveries
             WHERE target = ?1 AND state = ?2 AND next_attempt_at <= ?3
             ORDER BY next_attempt_at LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![target, state, now_ms, (limit - claimed.len()) as i64],
            |r| {
                Ok(Claimed {
                    message_id: r.get(0)?,
                    submission_id: r.get(1)?,
                    target: target.to_owned(),
                    attempts: r.get::<_, u32>(2)? + 1,
                    created_at_ms: r.get(3)?,
                })
            },
        )?;
        for row in rows {
            claimed.push(row?);
        }
    }
    let now = rfc3339_ms(now_ms);
    for c in &claimed {
        conn.prepare_cached(
            "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, updated_at = ?2 WHERE message_id = ?1",
        )?
        .execute(params![c.message_id, now])?;
    }
    Ok(claimed)
}

fn record(
    conn: &Connection,
    message_id: &str,
    outcome: &Recorded,
    now_ms: i64,
    head: &mut Head,
) -> Result<(), StoreError> {
    let now = rfc3339_ms(now_ms);
    let (submission_id, target, attempt): (String, String, u32) = conn
        .prepare_cached(
            "SELECT submission_id, target, attempts FROM deliveries WHERE message_id = ?1",
        )?
        .query_row(params![message_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("no delivery {message_id}")))?;
    let changed = match outcome {
        Recorded::Delivered { receipt } => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'delivered', receipt = ?2, last_error = NULL, updated_at = ?3, updated_ms = ?4
                 WHERE message_id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![message_id, receipt, now, now_ms])?,
        Recorded::RetryAt { at_ms, error } => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'retry_wait', next_attempt_at = ?2, last_error = ?3, updated_at = ?4
                 WHERE message_id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![message_id, at_ms, error, now])?,
        Recorded::Parked { error } => conn
            .prepare_cached(
                "UPDATE deliveries SET state = 'parked', last_error = ?2, updated_at = ?3, updated_ms = ?4
                 WHERE message_id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![message_id, error, now, now_ms])?,
    };
    if changed != 1 {
        return Err(StoreError::Corrupt(format!(
            "delivery {message_id} is not in flight"
        )));
    }
    // The error's class only: messages may name hosts or paths, classes name what failed.
    let class = |error: &str| {
        error
            .split(':')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let (event, detail) = match outcome {
        Recorded::Delivered { receipt } => (
            "delivered",
            serde_json::json!({"attempt": attempt, "receipt": receipt}),
        ),
        Recorded::RetryAt { at_ms, error } => (
            "attempt_failed",
            serde_json::json!({"attempt": attempt, "class": class(error), "retry_at": rfc3339_ms(*at_ms)}),
        ),
        Recorded::Parked { error } => (
            "parked",
            serde_json::json!({"attempt": attempt, "class": class(error)}),
        ),
    };
    head.append(
        conn,
        &now,
        AuditEvent {
            event,
            submission_id: Some(submission_id),
            message_id: Some(message_id.to_owned()),
            target: Some(target),
            detail,
        },
    )
}

fn release(conn: &Connection, message_ids: &[String], head: &mut Head) -> Result<(), StoreError> {
    let ts = rfc3339_ms(now_ms());
    for id in message_ids {
        let changed = conn
            .prepare_cached("UPDATE deliveries SET state = 'pending' WHERE message_id = ?1 AND state = 'in_flight'")?
            .execute(params![id])?;
        if changed == 1 {
            let (submission_id, target): (String, String) = conn
                .prepare_cached(
                    "SELECT submission_id, target FROM deliveries WHERE message_id = ?1",
                )?
                .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            head.append(
                conn,
                &ts,
                AuditEvent {
                    event: "handed_back",
                    submission_id: Some(submission_id),
                    message_id: Some(id.clone()),
                    target: Some(target),
                    detail: serde_json::json!({"reason": "shutdown before the attempt finished"}),
                },
            )?;
        }
    }
    Ok(())
}

fn insert_one(
    conn: &Connection,
    s: &NewSubmission,
    head: &mut Head,
    placed: &[Location],
) -> Result<Accepted, StoreError> {
    if let Some(idem) = &s.idempotency {
        let prior: Option<(String, String)> = conn
            .prepare_cached("SELECT request_hash, submission_id FROM idempotency WHERE portal = ?1 AND key = ?2")?
            .query_row(params![s.portal, idem.key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((hash, submission_id)) = prior {
            if hash != idem.request_hash {
                return Ok(Accepted::Conflict { submission_id });
            }
            let response: String = conn
                .prepare_cached("SELECT response FROM submissions WHERE id = ?1")?
                .query_row(params![submission_id], |r| r.get(0))?;
            return Ok(Accepted::Replay { response });
        }
    }
    conn.prepare_cached(
        "INSERT INTO submissions (id, portal, leistung, destination, received_at, response) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![s.id, s.portal, s.leistung, s.destination, s.received_at, s.response])?;
    if let Some(idem) = &s.idempotency {
        conn.prepare_cached("INSERT INTO idempotency (portal, key, request_hash, submission_id) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![s.portal, idem.key, idem.request_hash, s.id])?;
    }
    let now_ms = now_ms();
    for (d, at) in s.deliveries.iter().zip(placed) {
        conn.prepare_cached(
            "INSERT INTO deliveries (message_id, submission_id, target, state, attempts, next_attempt_at, created_at_ms, updated_at,
                                     segment, env_offset, env_len, env_crc32)
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![d.message_id, s.id, d.target, now_ms, s.received_at, at.segment, at.offset, at.len, at.crc32])?;
    }
    let ts = rfc3339_ms(now_ms);
    let sub = || Some(s.id.clone());
    head.append(
        conn,
        &ts,
        AuditEvent {
            event: "received",
            submission_id: sub(),
            detail: serde_json::json!({
                "sender": s.portal, "leistung": s.leistung, "destination": s.destination,
                "received_at": s.received_at, "parts": s.parts,
            }),
            ..Default::default()
        },
    )?;
    head.append(
        conn,
        &ts,
        AuditEvent {
            event: "sealed",
            submission_id: sub(),
            detail: serde_json::json!({
                "receipt_sha256": s.receipt_sha256,
                "deliveries": s.deliveries.iter().map(|d| serde_json::json!({"target": d.target, "message_id": d.message_id})).collect::<Vec<_>>(),
            }),
            ..Default::default()
        },
    )?;
    Ok(Accepted::Stored)
}

fn read_submission(conn: &Connection, id: &str) -> Result<Option<SubmissionStatus>, StoreError> {
    let head = conn
        .prepare_cached(
            "SELECT portal, leistung, destination, received_at FROM submissions WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })
        .optional()?;
    let Some((portal, leistung, destination, received_at)) = head else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT target, message_id, state, attempts, last_error, updated_at, receipt FROM deliveries
         WHERE submission_id = ?1 ORDER BY target",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, u32>(3)?,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, Option<String>>(6)?,
        ))
    })?;
    let mut deliveries = Vec::new();
    for row in rows {
        let (target, message_id, state, attempts, last_error, updated_at, receipt) = row?;
        let state = DeliveryState::parse(&state).ok_or_else(|| {
            StoreError::Corrupt(format!("delivery {message_id} has unknown state {state:?}"))
        })?;
        deliveries.push(DeliveryStatus {
            target,
            message_id,
            state,
            attempts,
            last_error,
            receipt,
            updated_at,
        });
    }
    Ok(Some(SubmissionStatus {
        submission_id: id.to_owned(),
        portal,
        leistung,
        destination,
        received_at,
        deliveries,
    }))
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

impl Store for EmbeddedStore {
    fn accept(&self, submission: NewSubmission) -> StoreFuture<'_, Accepted> {
        Box::pin(self.request(move |reply| Op::Accept(submission, reply)))
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
                    })
                })
                .optional()?;
            match at {
                Some(at) => match segments.read(&at) {
                    Ok(body) => Ok(Some(body)),
                    // Missing or not matching its CRC: no retry brings it back.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound
                                | std::io::ErrorKind::InvalidData
                                | std::io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        Err(StoreError::Damaged(format!(
                            "segment {} at offset {}, {} bytes: {e}",
                            at.segment, at.offset, at.len
                        )))
                    }
                    Err(e) => Err(e.into()),
                },
                None => Ok(None),
            }
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

    fn audit_texts(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<String>> {
        self.read(move |conn| read_audit_texts(conn, from, to))
    }

    fn operate(
        &self,
        message_id: &str,
        action: Action,
        operator: &str,
    ) -> StoreFuture<'_, Operated> {
        let (message_id, operator) = (message_id.to_owned(), operator.to_owned());
        Box::pin(self.request(move |reply| Op::Operate {
            message_id,
            action,
            operator,
            reply,
        }))
    }

    fn deliveries(
        &self,
        state: DeliveryState,
        target: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRow>> {
        let target = target.map(str::to_owned);
        self.read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT message_id, submission_id, target, attempts, last_error, updated_at FROM deliveries
                     WHERE state = ?1 AND (?2 IS NULL OR target = ?2) ORDER BY updated_ms LIMIT ?3",
                )?;
                let rows = stmt.query_map(params![state.as_str(), target, limit as i64], |r| {
                    Ok(DeliveryRow {
                        message_id: r.get(0)?,
                        submission_id: r.get(1)?,
                        target: r.get(2)?,
                        state,
                        attempts: r.get(3)?,
                        last_error: r.get(4)?,
                        updated_at: r.get(5)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64> {
        Box::pin(self.request(move |reply| Op::Purge(purge, reply)))
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            submission_commits: self.counters.submission_commits.load(Ordering::Relaxed),
            submissions: self.counters.submissions.load(Ordering::Relaxed),
            largest_group: self.counters.largest_group.load(Ordering::Relaxed),
            envelope_bytes: self.segments.disk_bytes(),
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

/// Opens a data directory's database read-only (verification, traces, counts),
/// also while a daemon runs.
pub fn open_read_only(data_dir: &Path) -> Result<Connection, StoreError> {
    open_connection(
        &EmbeddedStore::db_path(data_dir),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
}

/// Row counts, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub submissions: u64,
    pub deliveries: u64,
    pub envelopes: u64,
    pub idempotency_keys: u64,
}

/// Counts the rows of a data directory (read-only; works while the daemon runs).
pub fn counts(data_dir: &Path) -> Result<Counts, StoreError> {
    let conn = open_connection(
        &EmbeddedStore::db_path(data_dir),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let count = |table: &str| -> Result<u64, StoreError> {
        Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok(Counts {
        submissions: count("submissions")?,
        deliveries: count("deliveries")?,
        envelopes: count("deliveries WHERE segment IS NOT NULL")?,
        idempotency_keys: count("idempotency")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::submission::{IdempotencyKey, NewDelivery};
    use audit_log::{read_checkpoints, read_covering_checkpoint};

    fn sub(id: &str, key: Option<(&str, &str)>) -> NewSubmission {
        NewSubmission {
            id: id.into(),
            portal: "p".into(),
            leistung: "l".into(),
            destination: "d".into(),
            received_at: "2026-11-24T00:00:00Z".into(),
            response: format!("{{\"submission_id\":\"{id}\"}}"),
            idempotency: key.map(|(k, h)| IdempotencyKey {
                key: k.into(),
                request_hash: h.into(),
            }),
            deliveries: vec![NewDelivery {
                message_id: format!("{id}-m"),
                target: "t".into(),
                envelope: b"{}".to_vec(),
                envelope_crc32: crate::model::submission::envelope_checksum(b"{}"),
            }],
            parts: vec![],
            receipt_sha256: String::new(),
        }
    }

    #[tokio::test]
    async fn stores_and_reads_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        assert_eq!(
            store.accept(sub("a", None)).await.unwrap(),
            Accepted::Stored
        );
        store.close().await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        let s = store.submission("a").await.unwrap().unwrap();
        assert_eq!(s.deliveries.len(), 1);
        assert_eq!(s.deliveries[0].state, DeliveryState::Pending);
        assert!(store.submission("b").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn idempotency_replay_and_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        assert_eq!(
            store.accept(sub("a", Some(("k", "h1")))).await.unwrap(),
            Accepted::Stored
        );
        assert_eq!(
            store.accept(sub("b", Some(("k", "h1")))).await.unwrap(),
            Accepted::Replay {
                response: "{\"submission_id\":\"a\"}".into()
            }
        );
        assert_eq!(
            store.accept(sub("c", Some(("k", "h2")))).await.unwrap(),
            Accepted::Conflict {
                submission_id: "a".into()
            }
        );
        let c = counts(dir.path()).unwrap();
        assert_eq!((c.submissions, c.deliveries, c.idempotency_keys), (1, 1, 1));
    }

    #[tokio::test]
    async fn a_bad_row_fails_alone_in_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path(), 64).unwrap());
        store.accept(sub("dup", None)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..32 {
            let store = store.clone();
            let id = if i == 7 {
                "dup".to_owned()
            } else {
                format!("s{i}")
            };
            tasks.push(tokio::spawn(
                async move { store.accept(sub(&id, None)).await },
            ));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 1);
        assert_eq!(counts(dir.path()).unwrap().submissions, 32);
    }

    #[tokio::test]
    async fn claim_record_and_crash_recovery_keep_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        store.accept(sub("a", None)).await.unwrap();
        store.accept(sub("b", None)).await.unwrap();
        let claimed = store.claim("t", now_ms() + 1, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert_eq!(claimed[0].attempts, 1);
        assert!(
            store.claim("t", now_ms() + 1, 10).await.unwrap().is_empty(),
            "in flight is not claimed twice"
        );
        store
            .record(
                "a-m",
                Recorded::RetryAt {
                    at_ms: now_ms() + 60_000,
                    error: "http-503: busy".into(),
                },
                now_ms(),
            )
            .await
            .unwrap();
        assert!(
            store
                .record("a-m", Recorded::Delivered { receipt: None }, now_ms())
                .await
                .is_err(),
            "only in-flight deliveries are recorded"
        );
        assert_eq!(
            store.next_due("t").await.unwrap().map(|d| d > now_ms()),
            Some(true)
        );
        // b stays in flight: a crash. The next open hands it back.
        store.close().await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        let b = store.submission("b").await.unwrap().unwrap();
        assert_eq!(b.deliveries[0].state, DeliveryState::Pending);
        let events: Vec<String> = store
            .trace("b")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        assert_eq!(events, ["received", "sealed", "recovered"]);
        let events: Vec<String> = store
            .trace("a")
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        assert_eq!(events, ["received", "sealed", "attempt_failed"]);
        let head = store.audit_head().await.unwrap();
        assert_eq!(
            head.seq, 6,
            "2 x (received, sealed), attempt_failed, recovered"
        );
    }

    #[tokio::test]
    async fn a_version_1_store_is_migrated_without_loss() {
        migrates_version_1(true).await;
    }

    #[tokio::test]
    async fn a_version_1_store_from_before_the_audit_checkpoints_is_migrated() {
        migrates_version_1(false).await;
    }

    async fn migrates_version_1(with_checkpoint_table: bool) {
        // Version 1 kept envelope bodies in WITHOUT ROWID tables; version 3 keeps
        // them in segment files. The migration goes through every step.
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        store.accept(sub("a", None)).await.unwrap();
        store.close().await.unwrap();
        drop(store);
        // Turn it back into what version 1 wrote: WITHOUT ROWID tables.
        let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
        let checkpoints = if with_checkpoint_table {
            "ALTER TABLE audit_checkpoints DROP COLUMN first_seq;
             ALTER TABLE audit_checkpoints DROP COLUMN root;"
        } else {
            "DROP TABLE audit_checkpoints;"
        };
        conn.execute_batch(&format!(
            "PRAGMA foreign_keys = OFF;
             BEGIN;
             CREATE TABLE s1 (id TEXT PRIMARY KEY, portal TEXT NOT NULL, leistung TEXT NOT NULL,
                 destination TEXT NOT NULL, received_at TEXT NOT NULL, response TEXT NOT NULL) WITHOUT ROWID;
             INSERT INTO s1 SELECT * FROM submissions; DROP TABLE submissions;
             ALTER TABLE s1 RENAME TO submissions;
             CREATE TABLE envelopes (message_id TEXT PRIMARY KEY REFERENCES deliveries(message_id),
                 body BLOB NOT NULL) WITHOUT ROWID;
             INSERT INTO envelopes SELECT message_id, CAST('{{}}' AS BLOB) FROM deliveries;
             DROP INDEX deliveries_by_segment;
             DROP INDEX deliveries_holding;
             ALTER TABLE deliveries DROP COLUMN segment;
             ALTER TABLE deliveries DROP COLUMN env_offset;
             ALTER TABLE deliveries DROP COLUMN env_len;
             ALTER TABLE deliveries DROP COLUMN env_crc32;
             {checkpoints}
             DROP TRIGGER delivery_counts_insert;
             DROP TRIGGER delivery_counts_update;
             DROP TRIGGER delivery_counts_delete;
             DROP TABLE delivery_counts;
             PRAGMA user_version = 1;
             COMMIT;"
        ))
        .unwrap();
        drop(conn);
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        let a = store.submission("a").await.unwrap().unwrap();
        assert_eq!(a.deliveries.len(), 1);
        assert_eq!(store.envelope("a-m").await.unwrap().unwrap(), b"{}");
        store.accept(sub("b", None)).await.unwrap();
        store.close().await.unwrap();
        drop(store);
        let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
        let (version, without_rowid): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version),
                        (SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%WITHOUT ROWID%')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (version, without_rowid),
            (SCHEMA_VERSION, 2),
            "only idempotency and delivery_counts are WITHOUT ROWID"
        );
        assert_counts_are_exact(&conn);
        let bodies: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'envelopes'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bodies, 0, "envelope bodies live in segment files now");
        assert_eq!(
            files_in(&dir.path().join("envelopes")),
            ["0000000002.seg"],
            "segment 1 of the first run went: nothing refers to it after the migration"
        );
        let c = counts(dir.path()).unwrap();
        assert_eq!((c.submissions, c.envelopes), (2, 2));
    }

    #[tokio::test]
    async fn purged_envelopes_free_their_segment_files() {
        let dir = tempfile::tempdir().unwrap();
        let seg_files = || files_in(&dir.path().join("envelopes"));
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        store.accept(sub("a", None)).await.unwrap();
        store.accept(sub("b", None)).await.unwrap();
        for c in store.claim("t", now_ms() + 1, 10).await.unwrap() {
            let delivered = Recorded::Delivered { receipt: None };
            store
                .record(&c.message_id, delivered, now_ms())
                .await
                .unwrap();
        }
        store.close().await.unwrap();
        drop(store);
        // A restart begins segment 2; segment 1 still holds both envelopes.
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        assert_eq!(seg_files(), ["0000000001.seg", "0000000002.seg"]);
        assert_eq!(store.envelope("a-m").await.unwrap().unwrap(), b"{}");
        let purge = Purge {
            delivered_before_ms: now_ms() + 60_000,
            parked_before_ms: 0,
            limit: 100,
        };
        assert_eq!(store.purge(purge).await.unwrap(), 2);
        assert!(store.envelope("a-m").await.unwrap().is_none());
        assert_eq!(
            seg_files(),
            ["0000000002.seg"],
            "segment 1 went with its last envelope"
        );
    }

    #[tokio::test]
    async fn a_damaged_or_missing_envelope_is_reported_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("envelopes").join("0000000001.seg");
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        store.accept(sub("a", None)).await.unwrap();
        // One flipped byte in the envelope ("{}" at offset 0).
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"[", 0).unwrap();
        let err = store.envelope("a-m").await.unwrap_err();
        assert!(matches!(err, StoreError::Damaged(_)), "{err}");
        assert!(err.to_string().contains("CRC-32"), "{err}");
        store.close().await.unwrap();
        drop(store);
        // The segment file gone altogether.
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        std::fs::remove_file(&segment).unwrap();
        let err = store.envelope("a-m").await.unwrap_err();
        assert!(matches!(err, StoreError::Damaged(_)), "{err}");
    }

    #[tokio::test]
    async fn a_version_3_copy_is_read_without_migrating_it() {
        // `audit verify` on a backup that no daemon of this version has opened.
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        store.accept(sub("a", None)).await.unwrap();
        let head = store.audit_head().await.unwrap();
        store.close().await.unwrap();
        drop(store);
        let conn = Connection::open(EmbeddedStore::db_path(dir.path())).unwrap();
        conn.execute_batch(&format!(
            "INSERT INTO audit_checkpoints (seq, head, ts, jws) VALUES ({}, '{}', 'ts', 'jws');
             ALTER TABLE audit_checkpoints DROP COLUMN first_seq;
             ALTER TABLE audit_checkpoints DROP COLUMN root;
             PRAGMA user_version = 3;",
            head.seq, head.hash
        ))
        .unwrap();
        drop(conn);
        let conn = open_read_only(dir.path()).unwrap();
        let checkpoints = read_checkpoints(&conn).unwrap();
        assert_eq!(checkpoints.len(), 1);
        assert_eq!(
            (checkpoints[0].from, checkpoints[0].root.as_deref()),
            (None, None)
        );
        let covering = read_covering_checkpoint(&conn, 1).unwrap().unwrap();
        assert_eq!(covering.seq, head.seq);
    }

    /// The counts the triggers keep equal a count of the table.
    fn assert_counts_are_exact(conn: &Connection) {
        let read = |sql: &str| -> Vec<(String, String, i64)> {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let kept = read("SELECT target, state, n FROM delivery_counts WHERE n <> 0 ORDER BY 1, 2");
        let counted = read(
            "SELECT target, state, COUNT(*) FROM deliveries GROUP BY target, state ORDER BY 1, 2",
        );
        assert_eq!(kept, counted);
    }

    #[tokio::test]
    async fn delivery_counts_follow_every_change_of_state() {
        let dir = tempfile::tempdir().unwrap();
        let counts = || {
            let conn = open_read_only(dir.path()).unwrap();
            assert_counts_are_exact(&conn);
        };
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        for id in ["a", "b", "c", "d", "e"] {
            store.accept(sub(id, None)).await.unwrap();
        }
        counts();
        let claimed = store.claim("t", now_ms() + 1, 10).await.unwrap();
        assert_eq!(claimed.len(), 5);
        counts();
        let outcomes = [
            Recorded::Delivered { receipt: None },
            Recorded::Delivered { receipt: None },
            Recorded::RetryAt {
                at_ms: now_ms() + 60_000,
                error: "http-503".into(),
            },
            Recorded::Parked {
                error: "http-400".into(),
            },
        ];
        for (c, outcome) in claimed.iter().zip(outcomes) {
            store
                .record(&c.message_id, outcome, now_ms())
                .await
                .unwrap();
        }
        counts();
        // An operator retries the parked one and discards the waiting one.
        let parked = &claimed[3].message_id;
        let waiting = &claimed[2].message_id;
        store.operate(parked, Action::Retry, "op").await.unwrap();
        store.operate(waiting, Action::Discard, "op").await.unwrap();
        counts();
        // A crash with one in flight: recovery hands it back to pending.
        store.claim("t", now_ms() + 1, 1).await.unwrap();
        store.close().await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(dir.path(), 16).unwrap();
        counts();
        let purge = Purge {
            delivered_before_ms: now_ms() + 60_000,
            parked_before_ms: now_ms() + 60_000,
            limit: 100,
        };
        store.purge(purge).await.unwrap();
        counts();
        let depths = store.queue_depths().await.unwrap();
        let total: u64 = depths.iter().map(|d| d.count).sum();
        assert_eq!(total, 5, "{depths:?}");
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn second_daemon_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _a = EmbeddedStore::open(dir.path(), 1).unwrap();
        assert!(matches!(
            EmbeddedStore::open(dir.path(), 1),
            Err(StoreError::Locked(_))
        ));
    }
}
