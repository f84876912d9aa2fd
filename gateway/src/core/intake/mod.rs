//! The core of accepting a submission: authorise, route, seal, encrypt per
//! target, store — and answer with the receipt only once it is durable.
//!
//! Listeners call [`Intake::authorize`] as soon as the metadata is known (so
//! a portal learns early that it may not submit) and [`Intake::accept`] (after [`check::DataChecks::check`],
//! which runs costly checks on the bounded [`pool`]) with the complete, validated submission. Plaintext lives only in memory here:
//! the store receives envelopes, which are JWE for each target.

pub mod check;
pub mod metadata;
pub mod pool;
pub mod rotation;
pub mod stream;
pub mod validate;
mod whole;
pub mod xsd;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::digest::{digest, SHA256};
use ozg_adapter_sdk::envelope::{seal_manifest, sha512_hex, EnvelopeHeader, Receipt, ReceiptPart};
use ozg_adapter_sdk::{Manifest, ManifestPart, RecipientCert};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::core::privacy::PrivacyKey;
use crate::core::refusal::{Kind, Refusal};
use crate::model::portal::{Portal, ReplyRoute};
use crate::model::routing::{Payload, Router};
use crate::model::submission::{
    idempotency_key_hash, message_id, Accepted, AuditPart, IdempotencyKey, NewSubmission, ReplyOf,
};
use crate::store::Store;
pub use metadata::{Metadata, Part, ReplyMetadata};

/// A complete, validated submission (or reply).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub sender: Sender,
    /// On a reply: the answered submission's Leistung and destination, and
    /// the replier's reference.
    pub metadata: Metadata,
    pub data: Part,
    pub attachments: Vec<Part>,
    pub idempotency_key: Option<String>,
    /// Where large attachments were sealed as they arrived (see [`stream`]).
    pub stream: Option<Arc<stream::Stream>>,
}

/// Who sent what is accepted.
#[derive(Debug, Clone)]
pub enum Sender {
    /// A registered portal (or what submits on behalf of one: an XTA sender,
    /// a FIT-Connect subscription).
    Portal(Arc<Portal>),
    /// A Fachverfahren's reply to a submission, going back to the submission's `portal`.
    Reply { portal: String, of: ReplyOf },
}

impl Sender {
    /// The portal the submission is from, or the reply goes to (the submission's portal).
    pub fn portal(&self) -> &str {
        match self {
            Sender::Portal(p) => &p.id,
            Sender::Reply { portal, .. } => portal,
        }
    }

    /// Who signs for the content in the manifest: the portal, or the replying target.
    fn name(&self) -> &str {
        match self {
            Sender::Portal(p) => &p.id,
            Sender::Reply { of, .. } => &of.by,
        }
    }
}

/// The `202` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AcceptResponse {
    pub submission_id: String,
    pub received_at: String,
    pub status_url: String,
    pub targets: Vec<String>,
    pub parts: Vec<ReceiptPart>,
    /// Compact JWS by the seal key over id, time, sender and part hashes.
    pub receipt: String,
}

/// The answer to an accepted submission.
#[derive(Debug)]
pub struct Answer {
    /// The `202` body (JSON).
    pub body: String,
    pub submission_id: String,
    /// True if this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

/// Checks, seals, encrypts and stores submissions.
pub struct Intake {
    /// The data checks (safe XML/JSON, schemas per Leistung).
    pub checks: check::DataChecks,
    /// The seal in use (and, in a rotation, the next ones).
    pub seal: Arc<rotation::Seals>,
    /// Routes and the targets' encryption certificates; replaced by a reload.
    pub routes: arc_swap::ArcSwap<Routes>,
    pub store: Arc<dyn Store>,
    /// Base URL for status links, without trailing slash.
    pub public_url: String,
    /// Tells the delivery engine that a target has new work.
    pub wakers: Arc<crate::core::engine::Wakers>,
    /// Targets whose certificate was revoked since start: not encrypted for.
    pub revoked: Arc<crate::core::revoked::RevokedTargets>,
    /// Keys what the store keeps about the content (see [`crate::core::privacy`]).
    pub privacy: Arc<PrivacyKey>,
}

/// Where submissions go and whom they are encrypted for: one consistent
/// snapshot per submission.
#[derive(Clone)]
pub struct Routes {
    pub router: Router,
    /// The targets' encryption certificates.
    pub targets: BTreeMap<String, Arc<RecipientCert>>,
    /// What each target receives (absent: [`Payload::Raw`]).
    pub payloads: BTreeMap<String, Payload>,
    /// Targets that receive envelope format 1 (compact JWE parts, encrypted
    /// for them alone); the others share each part's ciphertext (format 2).
    pub format_1: std::collections::BTreeSet<String>,
    /// Where each portal's replies go (portals without replies are absent).
    pub replies: BTreeMap<String, ReplyRoute>,
    /// Targets with several certificates: which is used when (`targets`
    /// holds the one in use; see [`rotation`]).
    pub rotations: BTreeMap<String, Vec<rotation::KeyWindow>>,
}

/// Submissions up to this many bytes (payload × targets) are sealed on the I/O
/// thread that received them (≈ 0.1–0.2 ms of CPU); larger ones on the blocking pool.
const INLINE_SEAL_BYTES: usize = 64 << 10;

impl Intake {
    /// May this portal submit for this Leistung and destination, and where would it go?
    /// Authorisation comes first, so a portal learns nothing about other portals' routes.
    pub fn authorize(&self, portal: &Portal, md: &Metadata) -> Result<Vec<String>, Refusal> {
        self.authorize_with(&self.routes.load(), portal, md)
    }

    fn authorize_with(
        &self,
        routes: &Routes,
        portal: &Portal,
        md: &Metadata,
    ) -> Result<Vec<String>, Refusal> {
        if !portal.leistungen.matches(&md.leistung) || !portal.destinations.matches(&md.destination)
        {
            return Err(Refusal::new(
                Kind::Forbidden,
                "leistung-not-allowed",
                format!(
                    "portal {} is not registered for Leistung {} at destination {}",
                    portal.id, md.leistung, md.destination
                ),
            ));
        }
        match routes.router.route(&md.leistung, &md.destination) {
            Some(targets) => match self.revoked.first_of(targets) {
                None => Ok(targets.to_vec()),
                Some(t) => Err(Refusal::unavailable(format!(
                    "the encryption certificate of target {t} has been revoked; nothing is encrypted for it until an operator gives it a new one. The submission was not accepted, retry later"
                ))),
            },
            None => Err(Refusal::new(
                Kind::Unprocessable,
                "no-route",
                format!(
                    "no route for Leistung {} and destination {}",
                    md.leistung, md.destination
                ),
            )),
        }
    }

    /// The target a reply to `portal` goes to.
    fn reply_target(&self, routes: &Routes, portal: &str) -> Result<Vec<String>, Refusal> {
        let route = routes.replies.get(portal).ok_or_else(|| {
            Refusal::new(
                Kind::Unprocessable,
                "no-reply-route",
                format!("portal {portal} receives no replies: the gateway's operator has to give it `replies` in its configuration"),
            )
        })?;
        let targets = vec![route.target.clone()];
        match self.revoked.first_of(&targets) {
            None => Ok(targets),
            Some(t) => Err(Refusal::unavailable(format!(
                "the encryption certificate of {t}, which replies to portal {portal} are encrypted for, has been revoked; nothing is encrypted for it until an operator gives it a new one. The reply was not accepted, retry later"
            ))),
        }
    }

    /// Seals, encrypts for every target and stores; returns once durable.
    pub async fn accept(self: &Arc<Self>, incoming: Incoming) -> Result<Answer, Refusal> {
        let routes = self.routes.load_full();
        let targets = match &incoming.sender {
            Sender::Portal(p) => self.authorize_with(&routes, p, &incoming.metadata)?,
            Sender::Reply { portal, .. } => self.reply_target(&routes, portal)?,
        };
        let this = self.clone();
        // Hashing, signing and encrypting are CPU work. A small submission costs
        // about as much as handing it to the blocking pool and back (two thread
        // wake-ups), so it is sealed right here; a large one goes to the pool so
        // it does not hold up the I/O threads.
        let payload = incoming.data.data.len()
            + incoming
                .attachments
                .iter()
                .map(|a| a.data.len())
                .sum::<usize>();
        let (prepared, answer) = if payload * targets.len() <= INLINE_SEAL_BYTES {
            this.prepare(&routes, incoming, targets)?
        } else {
            tokio::task::spawn_blocking(move || this.prepare(&routes, incoming, targets))
                .await
                .map_err(|_| Refusal::new(Kind::Internal, "internal", "sealing task failed"))??
        };
        let submission_id = prepared.id.clone();
        let targets: Vec<String> = prepared
            .deliveries
            .iter()
            .map(|d| d.target.clone())
            .collect();
        match self.store.accept(prepared).await {
            Ok(Accepted::Stored) => {
                targets.iter().for_each(|t| self.wakers.wake(t));
                Ok(Answer {
                    body: answer,
                    submission_id,
                    replayed: false,
                })
            }
            Ok(Accepted::Replay {
                submission_id,
                response,
            }) => {
                let body = self
                    .privacy
                    .open_answer(&submission_id, &response)
                    .map_err(|e| {
                        tracing::error!(%submission_id, error = %e, "idempotent replay cannot be answered");
                        Refusal {
                            submission_id: Some(submission_id.clone()),
                            ..Refusal::new(
                                Kind::Internal,
                                "internal",
                                format!("submission {submission_id} was accepted with this Idempotency-Key, but its stored answer cannot be read; ask the operator"),
                            )
                        }
                    })?;
                Ok(Answer {
                    body,
                    submission_id,
                    replayed: true,
                })
            }
            Ok(Accepted::Conflict { submission_id }) => Err(Refusal {
                submission_id: Some(submission_id.clone()),
                ..Refusal::new(
                    Kind::Conflict,
                    "idempotency-conflict",
                    format!("this Idempotency-Key was used for submission {submission_id} with other content"),
                )
            }),
            Err(e) => {
                tracing::error!(error = %e, "store refused a submission");
                Err(not_stored())
            }
        }
    }

    /// Hashes, seals and encrypts for every target: the CPU part of accepting (no
    /// I/O). Returns the submission for the store and the `202` body in clear.
    pub fn prepare(
        &self,
        routes: &Routes,
        incoming: Incoming,
        targets: Vec<String>,
    ) -> Result<(NewSubmission, String), Refusal> {
        let id = uuid::Uuid::now_v7();
        let received_at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .map_err(|e| internal("clock", &e))?;
        let md = &incoming.metadata;
        let reply = match &incoming.sender {
            Sender::Reply { of, .. } => Some(of),
            Sender::Portal(_) => None,
        };
        let mut parts = vec![("data".to_owned(), &incoming.data)];
        for (i, a) in incoming.attachments.iter().enumerate() {
            parts.push((format!("attachment-{}", i + 1), a));
        }
        let manifest = Manifest {
            submission_id: id.to_string(),
            received_at: received_at.clone(),
            sender: incoming.sender.name().to_owned(),
            leistung: md.leistung.clone(),
            destination: md.destination.clone(),
            metadata: md.extra(),
            parts: parts
                .iter()
                .map(|(pid, p)| ManifestPart {
                    id: pid.clone(),
                    media_type: p.media_type.clone(),
                    filename: p.filename.clone(),
                    size: p.size(),
                    sha512: match &p.sealed {
                        Some(s) => s.sha512.clone(),
                        None => sha512_hex(&p.data),
                    },
                })
                .collect(),
            in_reply_to: reply.map(|r| r.submission_id.clone()),
            reply_type: reply.map(|r| r.reply_type.clone()),
        };
        let seal = self.seal.current();
        let sealed =
            seal_manifest(&manifest, &seal).map_err(|e| seal_failed("sealing failed", &e))?;
        let receipt_body = Receipt::for_manifest(&manifest);
        let receipt = receipt_body
            .sign(&seal)
            .map_err(|e| seal_failed("signing the receipt failed", &e))?;
        let (deliveries, shared) = match &incoming.stream {
            Some(stream) => {
                let headers: Vec<EnvelopeHeader> = targets
                    .iter()
                    .map(|target| EnvelopeHeader {
                        message_id: message_id(&id, target),
                        target: target.clone(),
                        created_at: received_at.clone(),
                    })
                    .collect();
                let parts: Vec<&Part> = parts.iter().map(|(_, p)| *p).collect();
                stream::deliveries(
                    stream, routes, &targets, &headers, &manifest, &sealed, &parts,
                )?
            }
            None => self.encrypt_whole(
                routes,
                &incoming,
                &targets,
                &id,
                &received_at,
                &manifest,
                &sealed,
                &seal,
            )?,
        };
        let receipt_sha256 = hex::encode(digest(&SHA256, receipt.as_bytes()));
        let parts_for_audit = parts
            .iter()
            .zip(&manifest.parts)
            .map(|((_, p), m)| AuditPart {
                id: m.id.clone(),
                size: m.size,
                hmac_sha256: match &p.sealed {
                    Some(s) => s.hmac_sha256.clone(),
                    None => self.privacy.part_mac(&p.data),
                },
            })
            .collect();
        let status_url = match reply {
            Some(r) => format!(
                "{}/v1/submissions/{}/replies/{id}",
                self.public_url, r.submission_id
            ),
            None => format!("{}/v1/submissions/{id}", self.public_url),
        };
        let response = AcceptResponse {
            submission_id: id.to_string(),
            received_at: received_at.clone(),
            status_url,
            targets,
            parts: receipt_body.parts,
            receipt,
        };
        let canonical = request_canonical(&manifest);
        let idempotency = incoming.idempotency_key.as_ref().map(|key| IdempotencyKey {
            // Stored hashed: a key may carry a portal's case number. A
            // replier's keys are its own, apart from the portal's: the spaces
            // make a text no portal key (visible characters only) can be.
            key: match reply {
                Some(r) => idempotency_key_hash(&format!("reply {} {key}", r.by)),
                None => idempotency_key_hash(key),
            },
            request_hash: self.privacy.request_mac(&canonical),
            legacy_request_hash: hex::encode(digest(&SHA256, &canonical)),
        });
        let answer = serde_json::to_string(&response)
            .map_err(|e| internal("response encoding failed", &e))?;
        let submission = NewSubmission {
            id: id.to_string(),
            portal: incoming.sender.portal().to_owned(),
            leistung: md.leistung.clone(),
            destination: md.destination.clone(),
            received_at,
            response: self.privacy.seal_answer(&id.to_string(), &answer),
            idempotency,
            deliveries,
            shared,
            parts: parts_for_audit,
            privacy_key_id: self.privacy.id().to_owned(),
            receipt_sha256,
            reply: reply.cloned(),
            spool: incoming.stream.as_ref().map(|s| s.spool.clone()),
        };
        Ok((submission, answer))
    }
}

/// The store (or a spool) could not take the submission: nothing was accepted.
fn not_stored() -> Refusal {
    Refusal::unavailable("the submission could not be stored; it was not accepted, retry later")
}

/// A fault of the gateway while sealing (logged with its cause): nothing was accepted.
/// The seal could not sign: a key on a token that is unreachable now is
/// `503` (the portal tries again later), anything else an internal fault.
fn seal_failed(what: &str, e: &ozg_adapter_sdk::jose::JoseError) -> Refusal {
    match e {
        ozg_adapter_sdk::jose::JoseError::Sign(ozg_adapter_sdk::SignError::External { .. }) => {
            tracing::error!(error = %e, "{what}");
            Refusal::new(
                Kind::Unavailable,
                "unavailable",
                "the gateway's seal (its hardware security module) cannot sign right now; the submission was not accepted, try again later",
            )
        }
        _ => internal(what, e),
    }
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "{what}");
    Refusal::new(
        Kind::Internal,
        "internal",
        format!("{what}; the submission was not accepted"),
    )
}

/// What makes two requests "the same content" for an idempotency key: routing,
/// metadata and every part's media type, file name and hash (keyed before it is
/// stored); for a reply also what it answers and its type (the same Bescheid
/// template sent to two submissions under one key is a conflict, not a replay).
fn request_canonical(m: &Manifest) -> Vec<u8> {
    let parts: Vec<_> = m
        .parts
        .iter()
        .map(|p| (&p.media_type, &p.filename, &p.sha512))
        .collect();
    match &m.in_reply_to {
        None => serde_json::to_vec(&(&m.leistung, &m.destination, &m.metadata, parts)),
        Some(answered) => serde_json::to_vec(&(
            &m.leistung,
            &m.destination,
            &m.metadata,
            parts,
            answered,
            &m.reply_type,
        )),
    }
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn message_ids_are_stable_distinct_and_time_ordered() {
        let early = uuid::Uuid::parse_str("019ab6d2-0000-7000-8000-000000000001").unwrap();
        let late = uuid::Uuid::parse_str("019ab6d2-0001-7000-8000-000000000001").unwrap();
        let a = message_id(&early, "dms");
        assert_eq!(a, message_id(&early, "dms"), "stable");
        assert_ne!(a, message_id(&early, "fachverfahren"), "one per target");
        assert!(
            message_id(&late, "aaa") > message_id(&early, "zzz"),
            "later sorts after"
        );
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert!(a.starts_with("019ab6d2-0000-8"));
    }
}
