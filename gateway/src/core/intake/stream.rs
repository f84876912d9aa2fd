//! Large parts sealed while they arrive, so an upload holds a bounded buffer
//! instead of its attachments.
//!
//! The metadata part comes first and routes the submission, so its targets
//! are known before any attachment arrives. When an attachment grows past
//! [`STREAM_ABOVE`], the listener asks for a [`Stream`]: one content key,
//! established for every target (as `build_envelopes` would), and a spool in
//! the store (see `store::embedded::segments`). From then on each piece of the
//! attachment is hashed (SHA-512 for the manifest, the privacy key's HMAC for
//! the audit record), encrypted (AES-256-GCM, the shared JWE of format 2) and
//! written to the spool as base64url: ciphertext only, never plaintext. At the
//! accept the manifest is sealed with the hashes and every target's envelope
//! splices the spooled piece in, exactly as if the part had been encrypted
//! whole.
//!
//! Only where every target receives the parts as sent in format 2 (an xdomea
//! package or a format-1 envelope needs the plaintext at the end) and the
//! store keeps envelopes in segments (the embedded store); elsewhere parts are
//! held in memory as before, within the body budget.

use std::sync::Arc;

use aws_lc_rs::digest;
use ozg_adapter_sdk::envelope::CTY_PART;
use ozg_adapter_sdk::jose::{ContentKey, SharedJsonSeal};

use crate::core::privacy::PrivacyKey;
use crate::core::refusal::{Kind, Refusal};
use crate::model::submission::{SharedPiece, SpoolFile, Spooled};

/// An attachment larger than this is sealed as it arrives; smaller ones are
/// held (sealing them at the accept costs less than a spool's fsync).
pub const STREAM_ABOVE: usize = 1 << 20;

/// Plaintext gathered before it is sealed and written: the bound, per upload,
/// of what a large part holds in memory (plus its base64url, 4/3 of it).
pub const SEAL_PIECE: usize = 256 << 10;

/// One submission's sealing as its large parts arrive.
pub struct Stream {
    /// The targets, in the route's order, and their certificates' key ids when
    /// the stream began: the accept checks the route still says the same.
    pub(super) targets: Vec<(String, String)>,
    /// `keys[i]` is the content key established for `targets[i]`.
    pub(super) keys: Vec<ContentKey>,
    pub(super) spool: Arc<dyn SpoolFile>,
    privacy: Arc<PrivacyKey>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("targets", &self.targets)
            .field("spool", &self.spool)
            .finish()
    }
}

/// A part sealed as it arrived: what the manifest, the audit record and the
/// envelopes need of it.
#[derive(Debug, Clone)]
pub struct SealedPart {
    pub size: u64,
    /// SHA-512 (hex) of the plaintext.
    pub sha512: String,
    /// The privacy key's HMAC-SHA-256 (hex) of the plaintext.
    pub hmac_sha256: String,
    /// Its shared JWE members, in the spool.
    pub piece: SharedPiece,
}

impl Stream {
    pub(super) fn new(
        targets: Vec<(String, String)>,
        keys: Vec<ContentKey>,
        spool: Arc<dyn SpoolFile>,
        privacy: Arc<PrivacyKey>,
    ) -> Self {
        Stream {
            targets,
            keys,
            spool,
            privacy,
        }
    }

    /// Begins sealing the next part.
    pub fn part(self: &Arc<Self>) -> Result<PartSeal, Refusal> {
        let json = self
            .keys
            .first()
            .ok_or_else(|| super::internal("a stream without targets", &"no content key"))?
            .shared_json_seal(CTY_PART)
            .map_err(|e| super::internal("cannot begin sealing a part", &e))?;
        Ok(PartSeal {
            stream: self.clone(),
            json: Some(json),
            sha512: digest::Context::new(&digest::SHA512),
            mac: self.privacy.part_mac_context(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            offset: None,
            len: 0,
            out: String::new(),
        })
    }

    /// Makes what was spooled durable (before the accept, off the store's writer).
    pub async fn sync(self: &Arc<Self>) -> Result<(), Refusal> {
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.sync())
            .await
            .map_err(|e| super::internal("the spool's fsync task failed", &e))?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot make a spooled part durable");
                super::not_stored()
            })
    }
}

/// One part being sealed into the spool.
pub struct PartSeal {
    stream: Arc<Stream>,
    /// Taken by [`PartSeal::finish`].
    json: Option<SharedJsonSeal>,
    sha512: digest::Context,
    mac: aws_lc_rs::hmac::Context,
    crc: crc32fast::Hasher,
    size: u64,
    /// Where the part's piece begins in the spool (once written).
    offset: Option<u64>,
    /// Bytes of the piece written so far.
    len: u64,
    /// base64url not yet written.
    out: String,
}

impl PartSeal {
    /// Hashes, encrypts and writes the next piece of plaintext. Blocking (CPU
    /// and a write to the page cache): callers on the async runtime hand
    /// pieces of about [`SEAL_PIECE`] to the blocking pool.
    pub fn update(&mut self, plaintext: &[u8]) -> Result<(), Refusal> {
        self.size += plaintext.len() as u64;
        self.sha512.update(plaintext);
        self.mac.update(plaintext);
        self.json
            .as_mut()
            .ok_or_else(|| super::internal("a part sealed after its end", &"no sealer"))?
            .update(plaintext, &mut self.out)
            .map_err(|e| Refusal::new(Kind::TooLarge, "part-too-large", e.to_string()))?;
        self.write()
    }

    fn write(&mut self) -> Result<(), Refusal> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.crc.update(self.out.as_bytes());
        let at = self.stream.spool.append(self.out.as_bytes()).map_err(|e| {
            tracing::error!(error = %e, "cannot write to a spool");
            super::not_stored()
        })?;
        self.offset.get_or_insert(at);
        self.len += self.out.len() as u64;
        self.out.clear();
        Ok(())
    }

    /// The part is complete: its tag written, its hashes final.
    pub fn finish(mut self) -> Result<SealedPart, Refusal> {
        let json = self
            .json
            .take()
            .ok_or_else(|| super::internal("a part sealed after its end", &"no sealer"))?;
        json.finish(&mut self.out);
        self.write()?;
        Ok(SealedPart {
            size: self.size,
            sha512: hex::encode(self.sha512.finish()),
            hmac_sha256: hex::encode(self.mac.sign()),
            piece: SharedPiece {
                bytes: Vec::new(),
                crc32: self.crc.finalize(),
                spooled: Some(Spooled {
                    offset: self.offset.unwrap_or(0),
                    len: self.len,
                }),
            },
        })
    }
}

impl super::Intake {
    /// A stream for the submission `md` describes, if its large parts can be
    /// sealed as they arrive (see the module's notes); `None` to hold them.
    /// Refuses as [`super::Intake::authorize`] does.
    pub fn begin_stream(
        &self,
        portal: &crate::model::portal::Portal,
        md: &super::Metadata,
    ) -> Result<Option<Arc<Stream>>, Refusal> {
        let routes = self.routes.load();
        let targets = self.authorize_with(&routes, portal, md)?;
        let mut certs = Vec::with_capacity(targets.len());
        for t in &targets {
            match routes.targets.get(t) {
                Some(cert) if streams_to(&routes, t) => certs.push(cert.clone()),
                _ => return Ok(None),
            }
        }
        let spool = match self.store.spool() {
            None => return Ok(None),
            Some(Ok(spool)) => spool,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot begin a spool; the upload is held in memory");
                return Ok(None);
            }
        };
        let refs: Vec<&ozg_adapter_sdk::RecipientCert> = certs.iter().map(|c| &**c).collect();
        let keys = ozg_adapter_sdk::envelope::content_keys(&refs)
            .map_err(|e| super::internal("cannot establish the content key", &e))?;
        let named = targets
            .into_iter()
            .zip(certs.iter().map(|c| c.kid().to_owned()))
            .collect();
        Ok(Some(Arc::new(Stream::new(
            named,
            keys,
            spool,
            self.privacy.clone(),
        ))))
    }
}

/// Whether target `t` receives the parts as sent, in format 2.
fn streams_to(routes: &super::Routes, t: &str) -> bool {
    !routes.format_1.contains(t)
        && matches!(
            routes.payloads.get(t).copied().unwrap_or_default(),
            crate::model::routing::Payload::Raw
        )
}

/// Every target's delivery of a submission whose large parts were sealed as
/// they arrived: the other parts are encrypted now under the same key, and
/// each envelope is a recipe over the shared pieces (the spooled ones in the
/// spool). Refused when the route changed since the stream began (a reload
/// gave other targets or certificates): the portal sends again.
pub(super) fn deliveries(
    stream: &Stream,
    routes: &super::Routes,
    targets: &[String],
    headers: &[ozg_adapter_sdk::envelope::EnvelopeHeader],
    manifest: &ozg_adapter_sdk::Manifest,
    sealed_manifest: &str,
    parts: &[&super::Part],
) -> Result<(Vec<crate::model::submission::NewDelivery>, Vec<SharedPiece>), Refusal> {
    use crate::model::submission::{envelope_checksum, NewDelivery};
    use ozg_adapter_sdk::envelope::{build_envelopes_keyed, PartBody};
    let same = targets.len() == stream.targets.len()
        && targets.iter().zip(&stream.targets).all(|(t, (st, kid))| {
            t == st
                && streams_to(routes, t)
                && routes.targets.get(t).is_some_and(|c| c.kid() == kid)
        });
    if !same {
        return Err(Refusal::unavailable(
            "the gateway's routes or certificates changed while this submission was uploaded; it was not accepted, send it again",
        ));
    }
    let bodies: Vec<PartBody> = parts
        .iter()
        .map(|p| match p.sealed {
            Some(_) => PartBody::Sealed,
            None => PartBody::Clear(&p.data),
        })
        .collect();
    let heads: Vec<&ozg_adapter_sdk::envelope::EnvelopeHeader> = headers.iter().collect();
    let ozg_adapter_sdk::envelope::KeyedEnvelopes {
        shared: pieces,
        envelopes,
    } = build_envelopes_keyed(&stream.keys, &heads, manifest, sealed_manifest, &bodies)
        .map_err(|e| super::internal("encryption failed", &e))?;
    let shared = pieces
        .into_iter()
        .zip(parts)
        .map(|(piece, part)| match (piece, &part.sealed) {
            (Some(bytes), _) => Ok(SharedPiece::held(bytes)),
            (None, Some(sealed)) => Ok(sealed.piece.clone()),
            (None, None) => Err(super::internal(
                "a part neither sealed nor encrypted",
                &"no piece",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let deliveries = envelopes
        .into_iter()
        .zip(targets)
        .map(|(e, target)| NewDelivery {
            message_id: e.message_id,
            target: target.clone(),
            envelope_crc32: envelope_checksum(&e.own),
            envelope: e.own,
            splices: e.splices,
        })
        .collect();
    Ok((deliveries, shared))
}
