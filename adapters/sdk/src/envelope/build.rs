//! Building envelopes: the sealed manifest and every part, encrypted for the
//! targets of one submission.
//!
//! All targets that receive the same parts share one content-encryption key,
//! established for each of them (its own `encrypted_key`, its own ephemeral key
//! for EC). Each part is encrypted once; every target's envelope carries the
//! same `protected`, `iv`, `ciphertext` and `tag` for it, in a standard JWE of
//! the flattened JSON serialization with the target's own `header` and
//! `encrypted_key` (see `jose::json` and `schemas/README.md`). The manifest is
//! encrypted per target (compact JWE, fresh IV) with the same key.
//!
//! [`build_envelopes`] gives the envelopes as bytes with the shared ciphertext
//! left out ([`EnvelopeBytes`]), so a store can keep it once for all targets.

use super::{Envelope, EnvelopePart, Manifest, PartJwe, CTY_MANIFEST, CTY_PART, ENVELOPE_VERSION};
use crate::jose::{ContentKey, JoseError};
use crate::keys::RecipientCert;

/// The clear header fields of an envelope, besides the encrypted content.
#[derive(Debug, Clone)]
pub struct EnvelopeHeader {
    pub message_id: String,
    pub target: String,
    pub created_at: String,
}

/// Where a shared piece goes into an envelope's own bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Splice {
    /// Byte offset in [`EnvelopeBytes::own`] (before which the piece goes).
    pub at: usize,
    /// Index into [`SharedEnvelopes::shared`].
    pub shared: usize,
}

/// One target's envelope (JSON) without the shared pieces: `own` with
/// `shared[splice.shared]` put in at every `splice.at` is the whole envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeBytes {
    pub message_id: String,
    pub own: Vec<u8>,
    /// In ascending order of `at`.
    pub splices: Vec<Splice>,
}

impl EnvelopeBytes {
    /// The whole envelope.
    pub fn assemble<B: AsRef<[u8]>>(&self, shared: &[B]) -> Vec<u8> {
        splice(&self.own, &self.splices, shared)
    }
}

/// `own` with `shared[s.shared]` put in at every `s.at` of `splices` (ascending;
/// a splice beyond `own` or naming no piece is left out).
pub fn splice<B: AsRef<[u8]>>(own: &[u8], splices: &[Splice], shared: &[B]) -> Vec<u8> {
    let piece = |s: &Splice| shared.get(s.shared).map_or(&[][..], |b| b.as_ref());
    let size = own.len() + splices.iter().map(|s| piece(s).len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let mut from = 0;
    for s in splices {
        let at = s.at.clamp(from, own.len());
        out.extend_from_slice(&own[from..at]);
        out.extend_from_slice(piece(s));
        from = at;
    }
    out.extend_from_slice(&own[from..]);
    out
}

/// The envelopes of one submission for its targets, the parts' ciphertext once.
#[derive(Debug, Clone)]
pub struct SharedEnvelopes {
    /// Per part (manifest order): the shared end of every target's part JWE.
    pub shared: Vec<Vec<u8>>,
    /// Per target, in the order given.
    pub envelopes: Vec<EnvelopeBytes>,
}

fn json_text(s: &str) -> Result<String, JoseError> {
    serde_json::to_string(s).map_err(|e| JoseError::Header(e.to_string()))
}

/// Encrypts the sealed manifest (per target) and every part (once) for
/// `targets`, which all receive the same parts (same order as the manifest).
pub fn build_envelopes(
    targets: &[(EnvelopeHeader, &RecipientCert)],
    manifest: &Manifest,
    sealed_manifest: &str,
    parts: &[&[u8]],
) -> Result<SharedEnvelopes, JoseError> {
    let certs: Vec<&RecipientCert> = targets.iter().map(|(_, c)| *c).collect();
    let keys = content_keys(&certs)?;
    let headers: Vec<&EnvelopeHeader> = targets.iter().map(|(h, _)| h).collect();
    let bodies: Vec<PartBody> = parts.iter().map(|p| PartBody::Clear(p)).collect();
    let KeyedEnvelopes { shared, envelopes } =
        build_envelopes_keyed(&keys, &headers, manifest, sealed_manifest, &bodies)?;
    Ok(SharedEnvelopes {
        shared: shared.into_iter().map(Option::unwrap_or_default).collect(),
        envelopes,
    })
}

/// One content key, established for each of `certs` (in that order): what
/// [`build_envelopes_keyed`] encrypts with. Empty for no recipients.
pub fn content_keys(certs: &[&RecipientCert]) -> Result<Vec<ContentKey>, JoseError> {
    let Some((first, rest)) = certs.split_first() else {
        return Ok(Vec::new());
    };
    let first = ContentKey::new(first)?;
    let mut keys = Vec::with_capacity(certs.len());
    for cert in rest {
        keys.push(first.for_recipient(cert)?);
    }
    keys.insert(0, first);
    Ok(keys)
}

/// A part's content for [`build_envelopes_keyed`].
#[derive(Debug, Clone, Copy)]
pub enum PartBody<'a> {
    /// In clear: encrypted here.
    Clear(&'a [u8]),
    /// Encrypted already, as it arrived, with the first key's
    /// [`ContentKey::shared_json_seal`]; its shared piece is kept elsewhere.
    Sealed,
}

/// What [`build_envelopes_keyed`] gives.
#[derive(Debug, Clone, Default)]
pub struct KeyedEnvelopes {
    /// Per part its shared piece; `None` for a [`PartBody::Sealed`] part,
    /// whose piece the caller holds.
    pub shared: Vec<Option<Vec<u8>>>,
    /// Per target its envelope's own bytes with the splices.
    pub envelopes: Vec<EnvelopeBytes>,
}

/// As [`build_envelopes`], with the content keys given (`keys[i]` established
/// for the target of `headers[i]`, all one content key, see [`content_keys`])
/// and parts that may be sealed already.
pub fn build_envelopes_keyed(
    keys: &[ContentKey],
    headers: &[&EnvelopeHeader],
    manifest: &Manifest,
    sealed_manifest: &str,
    parts: &[PartBody],
) -> Result<KeyedEnvelopes, JoseError> {
    debug_assert_eq!(parts.len(), manifest.parts.len());
    debug_assert_eq!(keys.len(), headers.len());
    let Some(first) = keys.first() else {
        return Ok(KeyedEnvelopes::default());
    };
    let shared = parts
        .iter()
        .map(|part| match part {
            PartBody::Clear(data) => Ok(Some(
                first.encrypt_shared_json(CTY_PART, data)?.into_bytes(),
            )),
            PartBody::Sealed => Ok(None),
        })
        .collect::<Result<Vec<_>, JoseError>>()?;
    let clear = [
        ("submission_id", json_text(&manifest.submission_id)?),
        ("sender", json_text(&manifest.sender)?),
    ];
    let routing = [
        ("leistung", json_text(&manifest.leistung)?),
        ("destination", json_text(&manifest.destination)?),
    ];
    let part_ids = manifest
        .parts
        .iter()
        .map(|p| json_text(&p.id))
        .collect::<Result<Vec<_>, _>>()?;
    let mut envelopes = Vec::with_capacity(keys.len());
    for (header, key) in headers.iter().zip(keys) {
        // Field order as `Envelope` serializes: the bytes parse back to it.
        let mut own = format!(
            "{{\"version\":{ENVELOPE_VERSION},\"message_id\":{}",
            json_text(&header.message_id)?
        );
        for (name, value) in &clear {
            own.push_str(&format!(",\"{name}\":{value}"));
        }
        own.push_str(&format!(",\"target\":{}", json_text(&header.target)?));
        for (name, value) in &routing {
            own.push_str(&format!(",\"{name}\":{value}"));
        }
        own.push_str(&format!(
            ",\"created_at\":{},\"manifest\":{},\"parts\":[",
            json_text(&header.created_at)?,
            json_text(&key.encrypt(CTY_MANIFEST, sealed_manifest.as_bytes())?)?
        ));
        let head = key.json_head()?;
        let mut splices = Vec::with_capacity(parts.len());
        for (i, id) in part_ids.iter().enumerate() {
            if i > 0 {
                own.push(',');
            }
            own.push_str(&format!("{{\"id\":{id},\"jwe\":{head}"));
            splices.push(Splice {
                at: own.len(),
                shared: i,
            });
            own.push('}');
        }
        own.push_str("]}");
        envelopes.push(EnvelopeBytes {
            message_id: header.message_id.clone(),
            own: own.into_bytes(),
            splices,
        });
    }
    Ok(KeyedEnvelopes { shared, envelopes })
}

/// Encrypts the sealed manifest and every part (same order as the manifest) for
/// one target in envelope format 1: every part a compact JWE under the
/// envelope's key, nothing shared with other targets. For receivers whose
/// JOSE library reads only the compact serialization.
pub fn build_envelope_v1(
    header: EnvelopeHeader,
    manifest: &Manifest,
    sealed_manifest: &str,
    parts: &[&[u8]],
    recipient: &RecipientCert,
) -> Result<Envelope, JoseError> {
    one_envelope(header, manifest, sealed_manifest, parts, recipient, 1)
}

/// Encrypts the sealed manifest and every part (same order as the manifest) for
/// one target: the [`Envelope`] (format 2) as a value.
pub fn build_envelope(
    header: EnvelopeHeader,
    manifest: &Manifest,
    sealed_manifest: &str,
    parts: &[&[u8]],
    recipient: &RecipientCert,
) -> Result<Envelope, JoseError> {
    one_envelope(
        header,
        manifest,
        sealed_manifest,
        parts,
        recipient,
        ENVELOPE_VERSION,
    )
}

fn one_envelope(
    header: EnvelopeHeader,
    manifest: &Manifest,
    sealed_manifest: &str,
    parts: &[&[u8]],
    recipient: &RecipientCert,
    version: u32,
) -> Result<Envelope, JoseError> {
    debug_assert_eq!(parts.len(), manifest.parts.len());
    // One key establishment for the whole envelope (see `jose::ContentKey`).
    let key = ContentKey::new(recipient)?;
    let manifest_jwe = key.encrypt(CTY_MANIFEST, sealed_manifest.as_bytes())?;
    let parts = manifest
        .parts
        .iter()
        .zip(parts)
        .map(|(m, data)| {
            let jwe = if version == 1 {
                PartJwe::Compact(key.encrypt(CTY_PART, data)?)
            } else {
                PartJwe::Json(Box::new(
                    key.flattened(&key.encrypt_shared(CTY_PART, data)?),
                ))
            };
            Ok(EnvelopePart {
                id: m.id.clone(),
                jwe,
            })
        })
        .collect::<Result<Vec<_>, JoseError>>()?;
    Ok(Envelope {
        version,
        message_id: header.message_id,
        submission_id: manifest.submission_id.clone(),
        sender: manifest.sender.clone(),
        target: header.target,
        leistung: manifest.leistung.clone(),
        destination: manifest.destination.clone(),
        created_at: header.created_at,
        manifest: manifest_jwe,
        parts,
    })
}
