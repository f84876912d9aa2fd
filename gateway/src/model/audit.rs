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

use crate::model::delivery::{Action, Actor, DeliveryState, Recorded};
use crate::model::submission::NewSubmission;
use crate::model::time::rfc3339_ms;

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

/// Every kind of event the log records; `as_str` is the record's `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The daemon started (version, config hash, targets).
    Started,
    /// A submission was accepted: parts' ids, sizes and hashes.
    Received,
    /// Its envelopes were sealed and stored: the deliveries and their message ids.
    Sealed,
    /// An attempt failed and will be retried.
    AttemptFailed,
    /// The target has it (with its receipt, if it gave one).
    Delivered,
    /// In the message box of an `xta` target, waiting for its reader.
    Offered,
    /// A delivered delivery's receipt arrived afterwards (xdomea 0202 over XTA).
    Confirmed,
    /// Dead-lettered: waits for an operator.
    Parked,
    /// An operator made a delivery due again.
    Retried,
    /// An operator or retention gave a delivery up.
    Discarded,
    /// Shutdown came before an attempt finished: back to pending.
    HandedBack,
    /// In flight at a crash: back to pending at the next start.
    Recovered,
    /// Retention deleted a delivered submission's envelopes.
    Purged,
    /// The daemon took a changed config while running (SIGHUP, `reload`).
    Reloaded,
    /// An operator changed a setting at run time (paused or resumed a target,
    /// registered or removed a target or route).
    Changed,
    /// A target answered the submission with a reply (on the submission's
    /// record: the reply's id, sender and type).
    Replied,
    /// A target's encryption key in use changed (a listed certificate took
    /// over, or the one in use expired): new envelopes use the new `kid`.
    KeySwitched,
    /// The gateway's seal in use changed (`pki.seals`): manifests, receipts
    /// and checkpoints are signed with the new certificate.
    SealSwitched,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Received => "received",
            EventKind::Sealed => "sealed",
            EventKind::AttemptFailed => "attempt_failed",
            EventKind::Delivered => "delivered",
            EventKind::Offered => "offered",
            EventKind::Confirmed => "confirmed",
            EventKind::Parked => "parked",
            EventKind::Retried => "retried",
            EventKind::Discarded => "discarded",
            EventKind::HandedBack => "handed_back",
            EventKind::Recovered => "recovered",
            EventKind::Purged => "purged",
            EventKind::Reloaded => "reloaded",
            EventKind::Changed => "changed",
            EventKind::Replied => "replied",
            EventKind::KeySwitched => "key_switched",
            EventKind::SealSwitched => "seal_switched",
        }
    }
}

/// What happened, before it gets its place in the chain. Built by the
/// constructors below, which decide what each kind of record says (ids,
/// hashes, sizes, error classes — never content or personal data); a backend
/// only appends them.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub kind: EventKind,
    pub submission_id: Option<String>,
    pub message_id: Option<String>,
    pub target: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditEvent {
    fn new(kind: EventKind, detail: serde_json::Value) -> Self {
        AuditEvent {
            kind,
            submission_id: None,
            message_id: None,
            target: None,
            detail,
        }
    }

    /// About one delivery of a submission.
    fn delivery(
        kind: EventKind,
        submission_id: &str,
        message_id: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Self {
        AuditEvent {
            submission_id: Some(submission_id.to_owned()),
            message_id: Some(message_id.to_owned()),
            target: Some(target.to_owned()),
            ..Self::new(kind, detail)
        }
    }

    /// The daemon started with this config (its SHA-256) and these targets.
    /// The daemon started: its version, config, targets and the seal in use
    /// (its certificate's thumbprint: a seal that took over while the daemon
    /// was down shows here, not as `seal_switched`).
    pub fn started(
        version: &str,
        config_sha256: &str,
        targets: &[String],
        seal_kid: Option<&str>,
    ) -> Self {
        Self::new(
            EventKind::Started,
            serde_json::json!({"version": version, "config_sha256": config_sha256, "targets": targets, "seal_kid": seal_kid}),
        )
    }

    /// Target `target` is encrypted for another certificate from now on.
    pub fn key_switched(
        target: &str,
        from_kid: Option<&str>,
        to_kid: &str,
        not_after: &str,
    ) -> Self {
        Self::new(
            EventKind::KeySwitched,
            serde_json::json!({"target": target, "from_kid": from_kid, "to_kid": to_kid, "not_after": not_after}),
        )
    }

    /// The seal in use changed: both certificates' thumbprints, and when the new one expires.
    pub fn seal_switched(from_kid: &str, to_kid: &str, not_after: &str) -> Self {
        Self::new(
            EventKind::SealSwitched,
            serde_json::json!({"from_kid": from_kid, "to_kid": to_kid, "not_after": not_after}),
        )
    }

    /// A changed config is in force: its hash and what changed (ids only).
    pub fn reloaded(config_sha256: &str, changes: serde_json::Value) -> Self {
        Self::new(
            EventKind::Reloaded,
            serde_json::json!({"config_sha256": config_sha256, "changes": changes}),
        )
    }

    /// A submission was accepted. A reply names its sender (the target), the
    /// portal it goes to, what it answers and its type.
    pub fn received(s: &NewSubmission) -> Self {
        let mut detail = serde_json::json!({
            "sender": s.portal, "leistung": s.leistung, "destination": s.destination,
            "received_at": s.received_at, "parts": s.parts, "privacy_key": s.privacy_key_id,
        });
        if let Some(r) = &s.reply {
            detail["sender"] = r.by.as_str().into();
            detail["portal"] = s.portal.as_str().into();
            detail["in_reply_to"] = r.submission_id.as_str().into();
            detail["reply_type"] = r.reply_type.as_str().into();
        }
        AuditEvent {
            submission_id: Some(s.id.clone()),
            ..Self::new(EventKind::Received, detail)
        }
    }

    /// On the answered submission's record: the reply `s` was accepted.
    pub fn replied(s: &NewSubmission) -> Option<Self> {
        let r = s.reply.as_ref()?;
        Some(AuditEvent {
            submission_id: Some(r.submission_id.clone()),
            target: Some(r.by.clone()),
            ..Self::new(
                EventKind::Replied,
                serde_json::json!({
                    "reply_id": s.id, "by": r.by, "reply_type": r.reply_type,
                    "received_at": s.received_at,
                }),
            )
        })
    }

    /// Its envelopes were sealed and stored, one delivery per target.
    pub fn sealed(s: &NewSubmission) -> Self {
        let deliveries: Vec<_> = s
            .deliveries
            .iter()
            .map(|d| serde_json::json!({"target": d.target, "message_id": d.message_id}))
            .collect();
        AuditEvent {
            submission_id: Some(s.id.clone()),
            ..Self::new(
                EventKind::Sealed,
                serde_json::json!({"receipt_sha256": s.receipt_sha256, "deliveries": deliveries}),
            )
        }
    }

    /// The outcome of attempt number `attempt`. Only the error's class is
    /// recorded: messages may name hosts or paths, classes name what failed.
    pub fn outcome(
        submission_id: &str,
        message_id: &str,
        target: &str,
        attempt: u32,
        outcome: &Recorded,
    ) -> Self {
        let (kind, detail) = match outcome {
            Recorded::Delivered { receipt } => (
                EventKind::Delivered,
                serde_json::json!({"attempt": attempt, "receipt": receipt}),
            ),
            Recorded::Offered => (EventKind::Offered, serde_json::json!({"attempt": attempt})),
            Recorded::Confirmed { receipt } => (
                EventKind::Confirmed,
                serde_json::json!({"receipt": receipt}),
            ),
            Recorded::RetryAt { at_ms, failure } => (
                EventKind::AttemptFailed,
                serde_json::json!({"attempt": attempt, "class": failure.class, "retry_at": rfc3339_ms(*at_ms)}),
            ),
            Recorded::Parked { failure, .. } => (
                EventKind::Parked,
                serde_json::json!({"attempt": attempt, "class": failure.class}),
            ),
        };
        Self::delivery(kind, submission_id, message_id, target, detail)
    }

    /// An operator's action on a delivery that was in state `from`.
    pub fn operated(
        submission_id: &str,
        message_id: &str,
        target: &str,
        action: Action,
        by: &Actor,
        from: DeliveryState,
    ) -> Self {
        let kind = match action {
            Action::Retry => EventKind::Retried,
            Action::Discard => EventKind::Discarded,
            Action::Park => EventKind::Parked,
        };
        let mut detail = serde_json::json!({"by": by.id, "from": from.as_str()});
        if let Some(t) = &by.tenant {
            detail["tenant"] = t.as_str().into();
        }
        Self::delivery(kind, submission_id, message_id, target, detail)
    }

    /// An operator changed a run-time setting: `what` (e.g. `target`),
    /// `id`, `change` (e.g. `paused`), and the SHA-256 of the new value when
    /// there is one (the value itself may name hosts; its hash proves which).
    pub fn changed(what: &str, id: &str, change: &str, value: Option<&str>, by: &Actor) -> Self {
        let mut detail =
            serde_json::json!({"by": by.id, "setting": what, "id": id, "change": change});
        if let Some(t) = &by.tenant {
            detail["tenant"] = t.as_str().into();
        }
        if let Some(v) = value {
            detail["value_sha256"] = hex::encode(digest(&SHA256, v.as_bytes())).into();
        }
        let mut e = Self::new(EventKind::Changed, detail);
        if what == "target" {
            e.target = Some(id.to_owned());
        }
        e
    }

    /// A parked delivery nobody acted on, discarded by retention.
    pub fn discarded_by_retention(submission_id: &str, message_id: &str, target: &str) -> Self {
        let detail =
            serde_json::json!({"reason": "retention of parked deliveries", "by": "retention"});
        Self::delivery(
            EventKind::Discarded,
            submission_id,
            message_id,
            target,
            detail,
        )
    }

    /// A delivered submission's `envelopes` sealed envelopes, deleted by retention.
    pub fn purged(submission_id: &str, envelopes: usize) -> Self {
        AuditEvent {
            submission_id: Some(submission_id.to_owned()),
            ..Self::new(
                EventKind::Purged,
                serde_json::json!({"reason": "retention after delivery", "envelopes": envelopes}),
            )
        }
    }

    /// Shutdown came before the attempt finished.
    pub fn handed_back(submission_id: &str, message_id: &str, target: &str) -> Self {
        let detail = serde_json::json!({"reason": "shutdown before the attempt finished"});
        Self::delivery(
            EventKind::HandedBack,
            submission_id,
            message_id,
            target,
            detail,
        )
    }

    /// In flight at the last stop; delivered again with the same message id.
    pub fn recovered(submission_id: &str, message_id: &str, target: &str) -> Self {
        let detail = serde_json::json!({"reason": "in flight at the last stop; delivered again with the same message_id"});
        Self::delivery(
            EventKind::Recovered,
            submission_id,
            message_id,
            target,
            detail,
        )
    }
}

/// The record that follows `head` with event `e` at `ts`: the record, its
/// stored text and its hash — what every backend appends, so all chains are
/// verified alike.
pub fn chained(
    head: &Head,
    ts: &str,
    e: AuditEvent,
) -> Result<(AuditRecord, String, String), serde_json::Error> {
    placed(head, unplaced(ts, e))
}

/// `e` as a record that has no place in the chain yet (`seq` 0, no `prev`):
/// what a writer that does not hold the chain's head stores until it is
/// [`placed`] (the cluster store's deferred chaining).
pub fn unplaced(ts: &str, e: AuditEvent) -> AuditRecord {
    AuditRecord {
        seq: 0,
        ts: ts.to_owned(),
        event: e.kind.as_str().to_owned(),
        submission_id: e.submission_id,
        message_id: e.message_id,
        target: e.target,
        detail: e.detail,
        prev: String::new(),
    }
}

/// `record` placed after `head`: its sequence number and `prev` set; with its
/// stored text and hash.
pub fn placed(
    head: &Head,
    mut record: AuditRecord,
) -> Result<(AuditRecord, String, String), serde_json::Error> {
    record.seq = head.seq + 1;
    record.prev = head.hash.clone();
    let text = serde_json::to_string(&record)?;
    let hash = record_hash(&text);
    Ok((record, text, hash))
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
