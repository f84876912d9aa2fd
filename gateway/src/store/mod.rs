//! The durable store behind one interface: submissions, their sealed envelopes,
//! per-target delivery records and idempotency keys.
//!
//! [`Store`] is what the core calls; [`embedded`] is the single-machine default
//! (SQLite). A cluster backend (PostgreSQL) implements the same trait. The store
//! knows nothing of HTTP, TLS or adapters, and only ever sees envelopes that are
//! already encrypted.

pub mod embedded;

use crate::model::audit;
use crate::model::audit::Head;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

/// A submission ready to be made durable, with one envelope per target.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    pub id: String,
    /// Portal id (the sender).
    pub portal: String,
    pub leistung: String,
    pub destination: String,
    /// RFC 3339, UTC.
    pub received_at: String,
    /// The `202` body; answered again on an idempotent replay.
    pub response: String,
    pub idempotency: Option<IdempotencyKey>,
    pub deliveries: Vec<NewDelivery>,
    /// Every part's id, size and SHA-512, for the audit record.
    pub parts: Vec<ozg_adapter_sdk::envelope::ReceiptPart>,
    /// SHA-256 (hex) of the receipt JWS given to the portal, for the audit record.
    pub receipt_sha256: String,
}

impl NewSubmission {
    fn bytes(&self) -> usize {
        self.response.len()
            + self
                .deliveries
                .iter()
                .map(|d| d.envelope.len())
                .sum::<usize>()
    }
}

/// The portal's `Idempotency-Key` and the hash of what it was first used for.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    /// SHA-256 (hex) over metadata and part hashes.
    pub request_hash: String,
}

/// One delivery of a new submission: its target and the sealed envelope (JSON).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub message_id: String,
    pub target: String,
    pub envelope: Vec<u8>,
    /// CRC-32 of `envelope` (see [`segments::checksum`]), computed where the
    /// envelope is made so the store's writer does not have to.
    pub envelope_crc32: u32,
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Durable now (fsynced).
    Stored,
    /// The idempotency key was used before for the same content: the first answer.
    Replay { response: String },
    /// The idempotency key was used before for other content.
    Conflict { submission_id: String },
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    InFlight,
    Delivered,
    RetryWait,
    Parked,
    Discarded,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Delivered => "delivered",
            DeliveryState::RetryWait => "retry_wait",
            DeliveryState::Parked => "parked",
            DeliveryState::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "in_flight" => DeliveryState::InFlight,
            "delivered" => DeliveryState::Delivered,
            "retry_wait" => DeliveryState::RetryWait,
            "parked" => DeliveryState::Parked,
            "discarded" => DeliveryState::Discarded,
            _ => return None,
        })
    }
}

/// One delivery as a portal or operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryStatus {
    pub target: String,
    pub message_id: String,
    pub state: DeliveryState,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The recipient's receipt (Zustellquittung), if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    pub updated_at: String,
}

/// A stored submission and its deliveries.
#[derive(Debug, Clone, Serialize)]
pub struct SubmissionStatus {
    pub submission_id: String,
    #[serde(skip)]
    pub portal: String,
    pub leistung: String,
    pub destination: String,
    pub received_at: String,
    pub deliveries: Vec<DeliveryStatus>,
}

/// A delivery taken by the engine for one attempt (state `in_flight`).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub message_id: String,
    pub submission_id: String,
    pub target: String,
    /// Attempts including this one.
    pub attempts: u32,
    /// When the submission was accepted (ms since the epoch).
    pub created_at_ms: i64,
}

/// The result of an attempt, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Delivered {
        receipt: Option<String>,
    },
    /// Wait until `at_ms`, then try again.
    RetryAt {
        at_ms: i64,
        error: String,
    },
    /// Dead-lettered: waits for an operator.
    Parked {
        error: String,
    },
}

/// A signed statement of the audit log's head (see `gateway::audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub seq: u64,
    /// Hex SHA-256 of record `seq`.
    pub head: String,
    pub ts: String,
    /// Compact JWS (typ `ozg-audit-checkpoint`) over `{"seq","head","ts","from","root"}`
    /// by the seal key.
    pub jws: String,
    /// The first record of the batch this checkpoint covers (`from..=seq`); `None`
    /// for checkpoints signed before schema version 4.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Hex RFC 9162 Merkle tree head over the batch's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// What an operator does with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Parked or waiting → pending, due now.
    Retry,
    /// Parked or waiting → discarded; the sealed envelope is deleted.
    Discard,
}

/// The result of an operator action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operated {
    Done {
        target: String,
        state: DeliveryState,
    },
    NotFound,
    /// The delivery is in a state the action does not apply to.
    WrongState(DeliveryState),
}

/// One delivery as an operator lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryRow {
    pub message_id: String,
    pub submission_id: String,
    pub target: String,
    pub state: DeliveryState,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at: String,
}

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

/// Number of deliveries per target and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub target: String,
    pub state: DeliveryState,
    pub count: u64,
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
}

/// Store failures. None of them means an accepted submission was lost: a
/// submission is accepted only once `accept` returned `Stored`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is shutting down")]
    Closed,
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("data directory {0} is in use by another ozg-gateway process")]
    Locked(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the write could not be committed ({0}); nothing of it was stored — check disk space and the data directory")]
    CommitFailed(String),
    /// A stored envelope is gone or does not match its checksum: retrying cannot help.
    #[error("sealed envelope damaged on disk: {0}")]
    Damaged(String),
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store interface the core uses.
pub trait Store: Send + Sync {
    /// Makes a submission durable (or answers for its idempotency key). Returns
    /// only after the data is on disk; concurrent calls share one fsync.
    fn accept(&self, submission: NewSubmission) -> StoreFuture<'_, Accepted>;
    /// A submission and its deliveries.
    fn submission(&self, id: &str) -> StoreFuture<'_, Option<SubmissionStatus>>;
    /// The sealed envelope (JSON) of one delivery.
    fn envelope(&self, message_id: &str) -> StoreFuture<'_, Option<Vec<u8>>>;
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
    /// The inclusion proofs of one submission's records (see `crate::core::audit::prove`);
    /// no records at all gives an empty document.
    fn prove(
        &self,
        submission_id: &str,
    ) -> StoreFuture<'_, ozg_adapter_sdk::audit_proof::ProofDocument>;
    /// The head of the audit chain.
    fn audit_head(&self) -> StoreFuture<'_, Head>;
    /// Stores a signed checkpoint over (seq, head hash); refused if it does not match the log.
    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()>;
    /// The newest checkpoint, if any.
    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>>;
    /// The stored text of audit records `from..=to` (a checkpoint's batch).
    fn audit_texts(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<String>>;
    /// An operator's action on one delivery, audited with the operator's id.
    fn operate(
        &self,
        message_id: &str,
        action: Action,
        operator: &str,
    ) -> StoreFuture<'_, Operated>;
    /// Deliveries in a state (optionally of one target), oldest change first.
    fn deliveries(
        &self,
        state: DeliveryState,
        target: Option<&str>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<DeliveryRow>>;
    /// Deletes envelopes whose retention ended; returns how many.
    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64>;
    /// Counters.
    fn stats(&self) -> StoreStats;
    /// Finishes pending writes and closes.
    fn close(&self) -> StoreFuture<'_, ()>;
}
