//! Audit checkpoints and inclusion proofs: what a receiver (or an auditor) checks
//! to know that the gateway's tamper-evident log holds a record — "submission X
//! was delivered to you at 10:42" — without access to the log itself.
//!
//! Every signed checkpoint covers a contiguous batch of audit records
//! `from..=seq` and carries the RFC 9162 Merkle tree head over them (leaf `i` is
//! the exact stored bytes of record `from + i`, see [`crate::merkle`]). A proof
//! document (`schemas/audit-proof.schema.json`) hands over, per record, the
//! record, its checkpoint (a compact JWS with the seal's `x5c` chain) and the
//! audit path; [`verify`] checks the checkpoint's signature against the trust
//! anchors and the pinned seal certificates ([`SealPins`]), that the path leads
//! from the record to the signed root, and that every record belongs to the
//! submission the document names and was recorded before the checkpoint.

use serde::{Deserialize, Serialize};

use crate::jose;
pub use crate::keys::SealPins;
use crate::keys::TrustAnchors;
use crate::merkle;

/// JWS `typ` of an audit checkpoint.
pub const TYP_CHECKPOINT: &str = "ozg-audit-checkpoint";

/// `type` of an inclusion proof document.
pub const TYPE_PROOF: &str = "ozg-audit-inclusion-proof";

/// The signed payload of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointPayload {
    /// The last record covered.
    pub seq: u64,
    /// Hex SHA-256 of record `seq` (the hash chain's head).
    pub head: String,
    /// When the checkpoint was signed (RFC 3339).
    pub ts: String,
    /// The first record of this checkpoint's batch (absent in checkpoints of
    /// gateways before inclusion proofs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Hex RFC 9162 Merkle tree head over records `from..=seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

/// An inclusion proof document: records of one submission with their proofs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProofDocument {
    pub version: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub submission_id: String,
    pub records: Vec<RecordProof>,
    /// Records of the submission not yet covered by a checkpoint (their `seq`):
    /// ask again after the next one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_yet_covered: Vec<u64>,
    /// Records covered by checkpoints signed before inclusion proofs existed (no
    /// Merkle tree head): they cannot be proven one by one; `audit verify` over
    /// the whole log vouches for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub without_merkle_head: Vec<u64>,
}

/// One record and the proof that a signed checkpoint covers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecordProof {
    pub seq: u64,
    /// The record exactly as stored (one line of JSON): the leaf's bytes.
    pub record: String,
    /// The covering checkpoint, compact JWS.
    pub checkpoint: String,
    /// `seq - from` of the checkpoint.
    pub leaf_index: u64,
    /// `seq - from + 1` of the checkpoint.
    pub tree_size: u64,
    /// Hex hashes, nearest sibling first.
    pub path: Vec<String>,
    /// The checkpoint's RFC 3161 time-stamp token (DER, standard base64), when
    /// the gateway has one (`[audit.timestamp]`); see [`verify_timestamps`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_timestamp: Option<String>,
}

/// Why a checkpoint does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a checkpoint JWS: {0}")]
    Unreadable(String),
    #[error(
        "dated {0}, in the future: the signer's or this machine's clock is wrong, or it was forged"
    )]
    Future(String),
    /// The signature or the signer's certificate (chain, validity, key usage).
    #[error("{0}")]
    Signature(String),
    #[error("signed by {0}, which is not one of the pinned seal certificates")]
    NotASeal(String),
}

/// How far a checkpoint's signing time may lie ahead of the verifier's clock.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(300);

/// A checkpoint whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedCheckpoint {
    pub payload: CheckpointPayload,
    /// Subject of the seal certificate that signed it.
    pub signer: String,
}

/// Verifies a checkpoint JWS: `typ`, the seal's `x5c` chain to a trust anchor,
/// the signature, and that the signer is one of the pinned `seals`.
///
/// The chain is checked at the checkpoint's own signing time (`ts`), not at `now`:
/// an audit log outlives seal certificates, and a checkpoint signed while its seal
/// was valid stays valid after the seal expired or was replaced (which is why the
/// signer must be pinned: only known seals may vouch for the past). A `ts` later
/// than `now` (beyond five minutes of clock skew) is refused.
pub fn verify_checkpoint(
    jws: &str,
    trust: &TrustAnchors,
    seals: &SealPins,
    now: std::time::SystemTime,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let claimed: CheckpointPayload = jws
        .split('.')
        .nth(1)
        .and_then(|p| jose::unb64(p, "JWS payload").ok())
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or_else(|| CheckpointError::Unreadable("no checkpoint payload".into()))?;
    let signed_at = parse_ts(&claimed.ts).ok_or_else(|| {
        CheckpointError::Unreadable(format!("ts {:?} is not RFC 3339", claimed.ts))
    })?;
    if signed_at > now + CLOCK_SKEW {
        return Err(CheckpointError::Future(claimed.ts));
    }
    let v = jose::verify(jws, TYP_CHECKPOINT, trust, signed_at)
        .map_err(|e| CheckpointError::Signature(e.to_string()))?;
    if !seals.accepts(&v.signer) {
        return Err(CheckpointError::NotASeal(v.signer.subject().to_owned()));
    }
    let payload: CheckpointPayload = serde_json::from_slice(&v.payload)
        .map_err(|e| CheckpointError::Unreadable(e.to_string()))?;
    Ok(VerifiedCheckpoint {
        payload,
        signer: v.signer.subject().to_owned(),
    })
}

/// An RFC 3339 time (the audit log's timestamps).
pub fn parse_ts(ts: &str) -> Option<std::time::SystemTime> {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(std::time::SystemTime::from)
}

/// What a verified record says, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenRecord {
    pub seq: u64,
    pub event: String,
    pub ts: String,
    pub target: Option<String>,
    pub checkpoint_seq: u64,
    pub checkpoint_ts: String,
    /// Subject of the seal certificate that signed the checkpoint.
    pub signer: String,
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("not an inclusion proof document: {0}")]
    Document(String),
    #[error("record {seq}: checkpoint signature: {error}")]
    Checkpoint { seq: u64, error: String },
    #[error("record {seq}: {reason}")]
    Record { seq: u64, reason: String },
    #[error("record {seq}: the audit path does not lead to the signed root of checkpoint {checkpoint}: the record or the path was altered")]
    Mismatch { seq: u64, checkpoint: u64 },
}

/// The fields of a record a verifier reads (the rest is hashed, not interpreted).
#[derive(Deserialize)]
struct RecordView {
    seq: u64,
    ts: String,
    event: String,
    #[serde(default)]
    submission_id: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

/// Verifies every record proof of a document at `now`, accepting checkpoints
/// signed by one of `seals` only.
pub fn verify(
    doc: &ProofDocument,
    trust: &TrustAnchors,
    seals: &SealPins,
    now: std::time::SystemTime,
) -> Result<Vec<ProvenRecord>, ProofError> {
    if doc.version != 1 || doc.kind != TYPE_PROOF {
        return Err(ProofError::Document(format!(
            "version {} type {:?}; expected version 1 type {TYPE_PROOF:?}",
            doc.version, doc.kind
        )));
    }
    if doc.records.is_empty() {
        return Err(ProofError::Document(
            "it proves no record (a submission's records are proven once a checkpoint covers them)"
                .into(),
        ));
    }
    doc.records
        .iter()
        .map(|p| verify_record(&doc.submission_id, p, trust, seals, now))
        .collect()
}

fn verify_record(
    submission_id: &str,
    p: &RecordProof,
    trust: &TrustAnchors,
    seals: &SealPins,
    now: std::time::SystemTime,
) -> Result<ProvenRecord, ProofError> {
    let seq = p.seq;
    let record_error = |reason: String| ProofError::Record { seq, reason };
    let signed = verify_checkpoint(&p.checkpoint, trust, seals, now).map_err(|e| {
        ProofError::Checkpoint {
            seq,
            error: e.to_string(),
        }
    })?;
    let cp = signed.payload;
    let (Some(from), Some(root)) = (cp.from, cp.root.as_deref()) else {
        return Err(record_error(format!(
            "checkpoint {} carries no Merkle tree head (signed by a gateway before inclusion proofs)",
            cp.seq
        )));
    };
    if !(from..=cp.seq).contains(&seq) {
        return Err(record_error(format!(
            "checkpoint {} covers records {from}..={}, not this one",
            cp.seq, cp.seq
        )));
    }
    if p.leaf_index != seq - from || p.tree_size != cp.seq - from + 1 {
        return Err(record_error(format!(
            "leaf {} of {} does not fit checkpoint {from}..={}",
            p.leaf_index, p.tree_size, cp.seq
        )));
    }
    let view: RecordView = serde_json::from_str(&p.record)
        .map_err(|e| record_error(format!("not an audit record: {e}")))?;
    match (parse_ts(&view.ts), parse_ts(&cp.ts)) {
        (Some(recorded), Some(signed)) if recorded <= signed => {}
        _ => {
            return Err(record_error(format!(
                "recorded at {} but checkpoint {} was signed at {}: a checkpoint cannot cover a later record",
                view.ts, cp.seq, cp.ts
            )))
        }
    }
    if view.seq != seq {
        return Err(record_error(format!(
            "the record says it is record {}",
            view.seq
        )));
    }
    if view.submission_id.as_deref() != Some(submission_id) {
        return Err(record_error(format!(
            "the record belongs to submission {:?}, not {submission_id}",
            view.submission_id.unwrap_or_default()
        )));
    }
    let mut path = Vec::with_capacity(p.path.len());
    for h in &p.path {
        path.push(
            parse_hash(h).ok_or_else(|| record_error(format!("{h:?} is not a hex SHA-256")))?,
        );
    }
    let want = parse_hash(root)
        .ok_or_else(|| record_error("the signed root is not a hex SHA-256".into()))?;
    let leaf = merkle::leaf_hash(p.record.as_bytes());
    if merkle::root_from_path(&leaf, p.leaf_index, p.tree_size, &path) != Some(want) {
        return Err(ProofError::Mismatch {
            seq,
            checkpoint: cp.seq,
        });
    }
    Ok(ProvenRecord {
        seq,
        event: view.event,
        ts: view.ts,
        target: view.target,
        checkpoint_seq: cp.seq,
        checkpoint_ts: cp.ts,
        signer: signed.signer,
    })
}

fn parse_hash(h: &str) -> Option<merkle::Hash> {
    let bytes = hex::decode(h).ok()?;
    bytes.try_into().ok()
}

/// What the time-stamp tokens of a proof's checkpoints say, record by record:
/// `Some(stamp)` for a record whose checkpoint carries a token that verifies
/// (the checkpoint's hash, a TSA under `tsa_trust`), `None` for one without.
/// A token that does not verify is an error naming the record.
pub fn verify_timestamps(
    doc: &ProofDocument,
    tsa_trust: &TrustAnchors,
) -> Result<Vec<(u64, Option<crate::timestamp::Stamp>)>, ProofError> {
    use base64::Engine as _;
    doc.records
        .iter()
        .map(|p| {
            let Some(b64) = &p.checkpoint_timestamp else {
                return Ok((p.seq, None));
            };
            let token = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| {
                    ProofError::Document(format!(
                        "record {}: the time-stamp token is not base64: {e}",
                        p.seq
                    ))
                })?;
            crate::timestamp::verify(&token, p.checkpoint.as_bytes(), tsa_trust)
                .map(|s| (p.seq, Some(s)))
                .map_err(|e| {
                    ProofError::Document(format!(
                        "record {}: the checkpoint's time-stamp token does not verify: {e}",
                        p.seq
                    ))
                })
        })
        .collect()
}
