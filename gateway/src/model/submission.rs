//! A submission as the core hands it to the store, and as portals and operators
//! see it afterwards.

use aws_lc_rs::digest::SHA256;
use serde::Serialize;

use crate::model::delivery::DeliveryState;

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
    /// The `202` body, sealed with the privacy key; answered again on an idempotent replay.
    pub response: String,
    pub idempotency: Option<IdempotencyKey>,
    pub deliveries: Vec<NewDelivery>,
    /// Envelope bytes several deliveries share (a part's ciphertext, encrypted
    /// once for every target): each delivery's envelope splices them in.
    pub shared: Vec<SharedPiece>,
    /// Every part's id, size and keyed hash, for the audit record.
    pub parts: Vec<AuditPart>,
    /// Id of the privacy key the part hashes are keyed with.
    pub privacy_key_id: String,
    /// SHA-256 (hex) of the receipt JWS given to the portal, for the audit record.
    pub receipt_sha256: String,
    /// Set on a reply: what it answers (then `portal` is the portal it goes back to).
    pub reply: Option<ReplyOf>,
    /// The spool its large parts were written to as they arrived (embedded
    /// store only): the store completes it there instead of in the active
    /// segment.
    pub spool: Option<std::sync::Arc<dyn SpoolFile>>,
}

/// What a reply answers and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyOf {
    /// The submission it answers.
    pub submission_id: String,
    /// The target (Fachverfahren) that sent it: one the submission was routed to.
    pub by: String,
    /// The kind of answer (`bescheid`, `nachforderung`, …).
    pub reply_type: String,
}

impl NewSubmission {
    /// Bytes the store has to write for it (envelopes and the answer).
    pub fn bytes(&self) -> usize {
        self.response.len()
            + self.shared.iter().map(|p| p.bytes.len()).sum::<usize>()
            + self
                .deliveries
                .iter()
                .map(|d| d.envelope.len())
                .sum::<usize>()
    }
}

/// A part as the audit record names it: never a plain hash of its content
/// (see `core::privacy`).
#[derive(Debug, Clone, Serialize)]
pub struct AuditPart {
    pub id: String,
    pub size: u64,
    /// HMAC-SHA-256 (hex) with the privacy key.
    pub hmac_sha256: String,
}

/// The portal's `Idempotency-Key` and the hash of what it was first used for.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// SHA-256 (hex) of the portal's key (see [`idempotency_key_hash`]).
    pub key: String,
    /// HMAC-SHA-256 (hex, privacy key) over routing, metadata and part hashes.
    pub request_hash: String,
    /// The plain SHA-256 that releases before the privacy key stored instead
    /// (compared, never stored): a portal retrying across the upgrade gets its
    /// first answer, not a conflict.
    pub legacy_request_hash: String,
}

/// One delivery of a new submission: its target and the sealed envelope (JSON).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub message_id: String,
    pub target: String,
    /// The envelope, or with `splices` its own bytes without the shared pieces.
    pub envelope: Vec<u8>,
    /// CRC-32 of `envelope` (see [`envelope_checksum`]), computed where the
    /// envelope is made so the store's writer does not have to.
    pub envelope_crc32: u32,
    /// Where [`NewSubmission::shared`] pieces go into `envelope` (ascending).
    pub splices: Vec<Splice>,
}

/// Bytes shared by the envelopes of one submission, with their CRC-32.
#[derive(Debug, Clone)]
pub struct SharedPiece {
    /// Empty when `spooled`.
    pub bytes: Vec<u8>,
    pub crc32: u32,
    /// Where the piece lies in the submission's spool (written as the part
    /// arrived, see [`NewSubmission::spool`]) instead of `bytes`.
    pub spooled: Option<Spooled>,
}

/// A file of one submission's own that its large parts' ciphertext is
/// written to while they arrive (the embedded store's spool segment): the
/// store completes it at the accept, and deletes it if the submission is not
/// accepted.
pub trait SpoolFile: Send + Sync + std::fmt::Debug {
    /// Its segment id.
    fn id(&self) -> i64;
    /// Appends `bytes`; returns the offset they begin at.
    fn append(&self, bytes: &[u8]) -> std::io::Result<u64>;
    /// Makes everything appended durable, and the file's name.
    fn sync(&self) -> std::io::Result<()>;
    /// A committed row refers to it now: it outlives its handle.
    fn keep(&self);
}

/// A shared piece in a spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spooled {
    pub offset: u64,
    pub len: u64,
}

impl SharedPiece {
    /// A piece held in memory.
    pub fn held(bytes: Vec<u8>) -> Self {
        SharedPiece {
            crc32: envelope_checksum(&bytes),
            bytes,
            spooled: None,
        }
    }

    /// The piece's length, wherever it lies.
    pub fn len(&self) -> usize {
        match self.spooled {
            Some(s) => s.len as usize,
            None => self.bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub use ozg_adapter_sdk::envelope::Splice;

impl NewDelivery {
    /// A delivery whose envelope is all its own.
    pub fn whole(message_id: String, target: String, envelope: Vec<u8>) -> Self {
        NewDelivery {
            message_id,
            target,
            envelope_crc32: envelope_checksum(&envelope),
            envelope,
            splices: Vec::new(),
        }
    }

    /// The whole envelope, shared pieces put in, and its CRC-32.
    pub fn assembled(&self, shared: &[SharedPiece]) -> (std::borrow::Cow<'_, [u8]>, u32) {
        if self.splices.is_empty() {
            return (self.envelope.as_slice().into(), self.envelope_crc32);
        }
        let pieces: Vec<&[u8]> = shared.iter().map(|p| p.bytes.as_slice()).collect();
        let whole = ozg_adapter_sdk::envelope::splice(&self.envelope, &self.splices, &pieces);
        let crc = envelope_checksum(&whole);
        (whole.into(), crc)
    }
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Durable now (fsynced).
    Stored,
    /// The idempotency key was used before for the same content: the first
    /// answer, as stored (sealed with the privacy key).
    Replay {
        submission_id: String,
        response: String,
    },
    /// The idempotency key was used before for other content.
    Conflict { submission_id: String },
}

/// One delivery as a portal or operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryStatus {
    pub target: String,
    pub message_id: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The last error as operators see it (class and message; may name hosts
    /// or paths of the gateway's side).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last error's class only (e.g. `http-503`, `io`): what portals see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// The recipient's receipt (Zustellquittung), if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    pub updated_at: String,
    /// When the next attempt is due (RFC 3339) while it waits (`pending`, `retry_wait`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Since when it waits in the message box for its reader (`xta` targets;
    /// kept after the reader closed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered_at: Option<String>,
    #[serde(skip)]
    pub offered_ms: Option<i64>,
    /// Still in the message box longer than `xta.overdue_after`: the reader
    /// has not picked it up in time.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pickup_overdue: bool,
}

impl DeliveryStatus {
    /// Marks it overdue if it has waited in a message box since before `before_ms`.
    pub fn mark_overdue(&mut self, before_ms: i64) {
        self.pickup_overdue =
            self.state == DeliveryState::InFlight && self.offered_ms.is_some_and(|t| t < before_ms);
    }
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
    /// On a reply: the submission it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    pub deliveries: Vec<DeliveryStatus>,
    /// The replies of the targets to it, oldest first (from its audit records).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<ReplyInfo>,
}

/// A reply to a submission as its status lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyInfo {
    pub reply_id: String,
    /// The target that sent it.
    pub by: String,
    pub reply_type: String,
    pub received_at: String,
}

/// CRC-32 of an envelope (hardware-accelerated, ~10 GB/s), computed where the
/// envelope is made (in parallel), not on the store's writer thread.
pub fn envelope_checksum(envelope: &[u8]) -> u32 {
    crc32fast::hash(envelope)
}

/// The stable message id of (submission, target): a UUIDv8 (RFC 9562) whose
/// first 48 bits are the submission's time in milliseconds (from its UUIDv7) and
/// whose other bits are SHA-256 over the submission id and the target. The same
/// pair always gives the same id; ids of new submissions sort after older ones, so
/// the store appends to the end of its index instead of touching a random page
/// of it for every delivery (the difference grows with the backlog).
pub fn message_id(submission_id: &uuid::Uuid, target: &str) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
    ctx.update(submission_id.as_bytes());
    ctx.update(target.as_bytes());
    let hash = ctx.finish();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&submission_id.as_bytes()[..6]);
    bytes[6..].copy_from_slice(&hash.as_ref()[..10]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// How an `Idempotency-Key` is stored: SHA-256 (hex), never in clear (a key may
/// carry a portal's case number).
pub fn idempotency_key_hash(key: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&SHA256, key.as_bytes()))
}
