//! The audit log: a hash chain of records in the store's database.
//!
//! Every state change is appended as one record, inside the same transaction
//! as the change itself, so the log and the state cannot disagree after a
//! crash. A record is one line of JSON (see `schemas/audit-record.schema.json`):
//!
//! ```json
//! {"seq":42,"ts":"2026-11-24T10:42:00.123Z","event":"delivered","submission_id":"…",
//!  "message_id":"…","target":"dms","detail":{"attempt":1},"prev":"<hex SHA-256 of record 41>"}
//! ```
//!
//! The record's hash is SHA-256 over exactly the stored bytes; `prev` of record 1
//! is 64 zeros. Records carry ids, Leistung, destination, sizes, hashes, error
//! classes and operator ids — never content, file names or personal data.

use aws_lc_rs::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One record as stored and hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: u64,
    pub ts: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
    pub prev: String,
}

/// What happened, before it gets its place in the chain.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    pub event: &'static str,
    pub submission_id: Option<String>,
    pub message_id: Option<String>,
    pub target: Option<String>,
    pub detail: serde_json::Value,
}

/// Hex SHA-256 of a stored record.
pub fn record_hash(record: &str) -> String {
    hex::encode(digest(&SHA256, record.as_bytes()))
}

/// The head of the chain: the newest record's sequence number and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
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
