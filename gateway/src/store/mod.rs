//! The durable store behind one interface: submissions, their sealed envelopes,
//! per-target delivery records and idempotency keys.
//!
//! [`Store`] is what the core calls; [`embedded`] is the single-machine default
//! (SQLite). A cluster backend (PostgreSQL) implements the same trait. The store
//! knows nothing of HTTP, TLS or adapters, and only ever sees envelopes that are
//! already encrypted.

pub mod backends;
pub mod cases;
pub mod embedded;
pub mod postgres;
pub mod queue;
pub mod rabbitmq;

#[cfg(test)]
pub(crate) mod testing;

use std::future::Future;
use std::pin::Pin;

use crate::model::audit::{self, Checkpoint, Head};
use crate::model::cases::{CaseCounts, CaseQuery, StatsZone};
use crate::model::delivery::{
    Action, Actor, BoxQuery, Boxed, Claimed, DeliveryInfo, DeliveryQuery, DeliveryRow, Operated,
    QueueDepth, Recorded, TargetHealth,
};
use crate::model::submission::{Accepted, NewSubmission, ReplyInfo, SpoolFile, SubmissionStatus};

/// What retention may delete now.
#[derive(Debug, Clone, Copy)]
pub struct Purge {
    /// Envelopes of submissions delivered to every target before this (ms) go.
    pub delivered_before_ms: i64,
    /// Parked deliveries untouched since before this (ms) are discarded, their envelopes go.
    pub parked_before_ms: i64,
    /// Most submissions / deliveries per run (keeps one commit short).
    pub limit: usize,
}

/// Messages of one target waiting in its box longer than allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overdue {
    pub target: String,
    pub count: u64,
    /// When the oldest of them was put in the box (ms).
    pub oldest_ms: i64,
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    /// Durable commits (each one WAL fsync).
    pub commits: u64,
    /// Commits that stored at least one submission.
    pub submission_commits: u64,
    /// Submissions made durable.
    pub submissions: u64,
    /// Largest number of submissions in one commit so far.
    pub largest_group: u64,
    /// Bytes of sealed envelopes on disk (segment files, including space not yet
    /// freed because a segment still holds a live envelope).
    pub envelope_bytes: u64,
    /// The last commit failed and none succeeded since (disk full, I/O errors):
    /// the store cannot take submissions right now.
    pub write_failing: bool,
    /// The file system under a store that keeps its data on the local disk.
    pub disk: Option<DiskSpace>,
}

/// Bytes available to the daemon on a file system, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub available: u64,
    pub size: u64,
}

/// Store failures. None of them means an accepted submission was lost: a
/// submission is accepted only once `accept` returned `Stored`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is shutting down")]
    Closed,
    #[error("database error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("data directory {dir} is in use by ozg-gateway process {holder}: one daemon per data directory; stop that one first")]
    Locked { dir: String, holder: String },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the write could not be committed ({0}); nothing of it was stored — check disk space and the data directory")]
    CommitFailed(String),
    /// The delivery is no longer in the state the change needs: another
    /// instance changed it first (cluster mode).
    #[error("changed meanwhile: {0}")]
    Superseded(String),
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
    /// The database cannot be reached (down, restarting, network): the
    /// caller waits and tries again; nothing was changed.
    #[error("the database is unreachable: {0}")]
    Unavailable(String),
    /// A stored envelope is gone or does not match its checksum: retrying cannot help.
    #[error("sealed envelope damaged on disk: {0}")]
    Damaged(String),
}

/// What a queue message found when it came to take its delivery (cluster mode).
#[derive(Debug, Clone)]
pub enum Take {
    /// Taken for an attempt (`in_flight`).
    Claimed(Claimed),
    /// Still waiting for it, due at `at_ms`: the message came early (a wait
    /// queue's delay is the longest that does not overshoot).
    NotDue { at_ms: i64 },
    /// Nothing for this message to do: delivered, parked, attempted again
    /// since, or being attempted by a live instance (a duplicate message).
    Stale,
}

/// A delivery the broker relay is to publish a message for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub message_id: String,
    pub target: String,
    /// The delivery's attempt count the message takes it at (see [`Take`]).
    pub ticket: u32,
    /// When it is due (ms): a message due later goes to a wait queue.
    pub due_ms: i64,
}

/// The transactional outbox of a store that works with a broker: every change
/// that needs a queue message commits a row with it; the relay leases rows,
/// publishes them with confirms and removes what the broker confirmed. A
/// lease that runs out (the relay died) makes the rows available again.
pub trait Outbox: Send + Sync {
    /// Leases up to `limit` of the oldest unleased rows for `lease_ms`.
    fn lease(&self, limit: usize, lease_ms: i64) -> StoreFuture<'_, Vec<Wanted>>;
    /// The broker confirmed these: their rows go (unless wanted again since).
    fn published(&self, done: Vec<Wanted>) -> StoreFuture<'_, u64>;
    /// Rows waiting (leased or not).
    fn backlog(&self) -> StoreFuture<'_, u64>;
}

/// A submission being put together, as staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub meta: Vec<u8>,
    /// (part name, bytes), in no particular order.
    pub parts: Vec<(String, Vec<u8>)>,
}

/// Submissions still being put together (FIT-Connect's incomplete state):
/// durable per write, removed once the submission is stored or expired.
pub trait Staging: Send + Sync {
    /// Starts one, with its description.
    fn create(&self, id: &str, meta: Vec<u8>) -> StoreFuture<'_, ()>;
    /// Adds a part; `false` if a part of that name is there already (kept).
    fn put(&self, id: &str, part: &str, bytes: Vec<u8>) -> StoreFuture<'_, bool>;
    fn load(&self, id: &str) -> StoreFuture<'_, Option<Staged>>;
    fn remove(&self, id: &str) -> StoreFuture<'_, ()>;
    /// Removes those started longer ago than `older_than`; returns how many.
    fn expire(&self, older_than: std::time::Duration) -> StoreFuture<'_, u64>;
}

/// Read access to the audit log, for verification and inclusion proofs.
/// Synchronous: the daemon runs it through [`Store::read_audit`], the CLI on a
/// read-only copy of the data directory.
pub trait AuditLogRead {
    /// All checkpoints, oldest first.
    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;
    /// Every record in order as (seq, stored text, stored hash), until `visit`
    /// returns false. Memory holds one record at a time, not the log.
    fn each_record(
        &self,
        visit: &mut dyn FnMut(u64, String, String) -> bool,
    ) -> Result<(), StoreError>;
    /// The (seq, stored text) of one submission's records, in order.
    fn submission_records(&self, submission_id: &str) -> Result<Vec<(u64, String)>, StoreError>;
    /// The oldest checkpoint at or after record `seq` (the one whose batch holds it).
    fn covering_checkpoint(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError>;
    /// The stored text of records `from..=to`, in order.
    fn texts(&self, from: u64, to: u64) -> Result<Vec<String>, StoreError>;
    /// The RFC 3161 time-stamp tokens of checkpoints, by checkpoint `seq`.
    fn stamps(&self) -> Result<std::collections::BTreeMap<u64, Vec<u8>>, StoreError>;
    /// The time-stamp token of checkpoint `seq`, if it has one.
    fn stamp(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Work on the audit log handed to [`Store::read_audit`].
pub type AuditJob = Box<dyn FnOnce(&dyn AuditLogRead) + Send>;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store interface the core uses.
pub trait Store: Send + Sync {
    /// Makes a submission durable (or answers for its idempotency key). Returns
    /// only after the data is on disk; concurrent calls share one fsync.
    fn accept(&self, submission: NewSubmission) -> StoreFuture<'_, Accepted>;
    /// Begins a spool for one submission's large parts, written as they arrive
    /// and completed by [`Store::accept`] (see `embedded::segments`). `None`
    /// where envelopes are kept elsewhere (PostgreSQL): parts are then held
    /// in memory until the accept.
    fn spool(&self) -> Option<std::io::Result<std::sync::Arc<dyn SpoolFile>>> {
        None
    }
    /// A submission and its deliveries.
    fn submission(&self, id: &str) -> StoreFuture<'_, Option<SubmissionStatus>>;
    /// The replies to a submission, oldest first.
    fn replies_to(&self, submission_id: &str) -> StoreFuture<'_, Vec<ReplyInfo>>;
    /// The sealed envelope (JSON) of one delivery.
    fn envelope(&self, message_id: &str) -> StoreFuture<'_, Option<Vec<u8>>>;
    /// The sealed envelope of a claimed delivery: where the claim says where it
    /// lies, read from there without asking the database again.
    fn claimed_envelope<'a>(&'a self, c: &'a Claimed) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.envelope(&c.message_id)
    }
    /// Takes up to `limit` due deliveries of `target` (pending, or retry_wait whose
    /// time has come), oldest first, and marks them `in_flight`.
    fn claim(&self, target: &str, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<Claimed>>;
    /// Records the outcome of an attempt of an `in_flight` delivery.
    fn record(&self, message_id: &str, outcome: Recorded, now_ms: i64) -> StoreFuture<'_, ()>;
    /// Hands `in_flight` deliveries back to `pending` (graceful shutdown).
    fn release(&self, message_ids: Vec<String>) -> StoreFuture<'_, ()>;
    /// When the next delivery of `target` is due (ms), if any waits.
    fn next_due(&self, target: &str) -> StoreFuture<'_, Option<i64>>;
    /// Deliveries per target and state.
    fn queue_depths(&self) -> StoreFuture<'_, Vec<QueueDepth>>;
    /// Appends an audit record that goes with no other change (start-up, operator actions).
    fn audit(&self, event: audit::AuditEvent) -> StoreFuture<'_, ()>;
    /// The audit records of one submission, in order.
    fn trace(&self, submission_id: &str) -> StoreFuture<'_, Vec<audit::AuditRecord>>;
    /// Runs `job` on a read view of the audit log, off the async threads
    /// (verification and inclusion proofs, see `crate::core::audit`).
    fn read_audit(&self, job: AuditJob) -> StoreFuture<'_, ()>;
    /// The head of the audit chain.
    fn audit_head(&self) -> StoreFuture<'_, Head>;
    /// Stores a signed checkpoint over (seq, head hash); refused if it does not match the log.
    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()>;
    /// The newest checkpoint, if any.
    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>>;
    /// Up to `limit` checkpoints with `seq` above `after` without a
    /// time-stamp token, oldest first, and how many there are in all above
    /// `after` (the caller knows everything up to `after` is stamped; 0: all).
    fn unstamped(&self, after: u64, limit: usize) -> StoreFuture<'_, (Vec<Checkpoint>, u64)>;
    /// Keeps checkpoint `seq`'s RFC 3161 time-stamp token.
    fn add_stamp(&self, seq: u64, token: Vec<u8>, stamped_at: i64) -> StoreFuture<'_, ()>;
    /// The stored text of audit records `from..=to` (a checkpoint's batch).
    fn audit_texts(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<String>>;
    /// An operator's action on one delivery, audited with the operator's id
    /// and tenant.
    fn operate(&self, message_id: &str, action: Action, by: &Actor) -> StoreFuture<'_, Operated>;
    /// Deliveries as an operator lists them, in message id order (pages).
    fn deliveries(&self, query: DeliveryQuery) -> StoreFuture<'_, Vec<DeliveryRow>>;
    /// For each of `targets`: when the submission of its oldest waiting
    /// (`pending`, `retry_wait`) delivery was accepted (ms); targets with none
    /// are left out. An index lookup per target and state, for every scrape.
    fn oldest_waiting(&self, targets: Vec<String>) -> StoreFuture<'_, Vec<(String, i64)>>;
    /// Per target with failed deliveries: the newest error of one waiting
    /// for a retry or parked.
    fn target_health(&self) -> StoreFuture<'_, Vec<TargetHealth>>;
    /// The settings operators made at run time of one kind (`pause`,
    /// `target`, `route`): (id, value), by id.
    fn settings(&self, kind: &str) -> StoreFuture<'_, Vec<(String, String)>>;
    /// Sets (`Some`) or removes (`None`) a setting; its audit record is
    /// committed with it.
    fn set_setting(
        &self,
        kind: &str,
        id: &str,
        value: Option<String>,
        event: audit::AuditEvent,
    ) -> StoreFuture<'_, ()>;
    /// The case statistics' counters a query asks for, summed (see `model::cases`).
    fn case_counts(&self, query: CaseQuery) -> StoreFuture<'_, CaseCounts>;
    /// The time zone the case statistics count future events in.
    fn set_case_zone(&self, zone: StatsZone) -> StoreFuture<'_, ()>;
    /// Deletes envelopes whose retention ended; returns how many.
    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64>;
    /// Waiting deliveries of `target` due after `latest_ms` become due then
    /// (the engine's start: nothing waits longer than its retry policy allows,
    /// whatever the clock did); returns how many moved.
    fn rebase(&self, target: &str, latest_ms: i64) -> StoreFuture<'_, u64>;
    /// Messages waiting in the message boxes of `query.targets`, oldest first.
    fn mailbox(&self, query: BoxQuery) -> StoreFuture<'_, Vec<Boxed>>;
    /// One delivery by its message id.
    fn delivery(&self, message_id: &str) -> StoreFuture<'_, Option<DeliveryInfo>>;
    /// The submission a portal made with this idempotency key (its hash).
    fn submission_by_key(&self, portal: &str, key_hash: &str) -> StoreFuture<'_, Option<String>>;
    /// Per target: the messages waiting in its box since before `before_ms`.
    fn overdue(&self, before_ms: i64) -> StoreFuture<'_, Vec<Overdue>>;
    /// Takes the delivery a queue message names (cluster mode; see [`Take`]).
    fn take(
        &self,
        message_id: &str,
        ticket: u32,
        redelivered: bool,
        now_ms: i64,
    ) -> StoreFuture<'_, Take> {
        let _ = (message_id, ticket, redelivered, now_ms);
        Box::pin(async {
            Err(StoreError::Unsupported(
                "taking deliveries by queue message",
            ))
        })
    }
    /// The outbox, for a store that works with a broker.
    fn outbox(&self) -> Option<&dyn Outbox> {
        None
    }
    /// Audit records committed but not yet placed in the chain (a store that
    /// chains them later, in batches); 0 for one that chains as it writes.
    fn audit_unplaced(&self) -> StoreFuture<'_, u64> {
        Box::pin(async { Ok(0) })
    }
    /// Work a store does now and then, called every few seconds (the cluster
    /// store adds case events into their counters).
    fn tidy(&self) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    /// Counters.
    fn stats(&self) -> StoreStats;
    /// Finishes pending writes and closes.
    fn close(&self) -> StoreFuture<'_, ()>;
}
