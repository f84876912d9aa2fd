//! The envelope: what a target receives for one submission.
//!
//! Two layers, as in OSCI. The clear header (`message_id`, `submission_id`,
//! `sender`, `target`, `leistung`, `destination`, `created_at`) is all a broker,
//! a directory or an operator sees. Everything else — the sealed [`Manifest`]
//! with file names, media types and hashes, and every part — is a JWE for the
//! target's certificate: the manifest compact, each part in the JSON
//! serialization whose ciphertext all targets of the submission share (format
//! 2; compact in format 1). The manifest is a JWS by the gateway's seal.
//! `schemas/envelope.schema.json` describes the JSON; `schemas/README.md` how to
//! open it with any JOSE library.

use std::time::SystemTime;

use aws_lc_rs::digest::{digest, SHA512};
use serde::{Deserialize, Serialize};

use crate::jose::{self, FlattenedJwe, JoseError};
use crate::keys::{RecipientPrivateKey, SealKey, SealPins, TrustAnchors};

mod build;
pub use build::{
    build_envelope, build_envelope_v1, build_envelopes, build_envelopes_keyed, content_keys,
    splice, EnvelopeBytes, EnvelopeHeader, KeyedEnvelopes, PartBody, SharedEnvelopes, Splice,
};

/// Envelope format version the gateway writes: 2, parts in the JWE JSON
/// serialization (one ciphertext for every target of a submission).
pub const ENVELOPE_VERSION: u32 = 2;
/// The first format (every JWE compact, one ciphertext per target): still opened.
pub const ENVELOPE_VERSION_1: u32 = 1;
/// JWS `typ` of a sealed manifest.
pub const TYP_MANIFEST: &str = "ozg-manifest";
/// JWS `typ` of an acceptance receipt (Eingangsquittung).
pub const TYP_RECEIPT: &str = "ozg-receipt";
/// JWE `cty` of the manifest (its plaintext is a compact JWS).
pub const CTY_MANIFEST: &str = "JOSE";
/// JWE `cty` of every part: the real media type is inside the manifest.
pub const CTY_PART: &str = "application/octet-stream";

/// Hex SHA-512 of `data`, as the manifest and receipts carry it.
pub fn sha512_hex(data: &[u8]) -> String {
    hex::encode(digest(&SHA512, data))
}

/// One part as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPart {
    /// `data`, or `attachment-1`, `attachment-2`, … in the order the portal sent them.
    pub id: String,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub size: u64,
    /// SHA-512 of the plaintext, lower-case hex.
    pub sha512: String,
}

/// The signed statement of what was received; sealed once per submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub submission_id: String,
    pub received_at: String,
    /// Portal id; on a reply, the id of the target (Fachverfahren) that sent it.
    pub sender: String,
    pub leistung: String,
    pub destination: String,
    /// The portal's metadata beyond routing (`reference`, `payment`, `reply_channel`).
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub parts: Vec<ManifestPart>,
    /// On a reply (a Bescheid or another answer of the authority on its way
    /// back to the portal): the id of the submission it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// On a reply: what kind of answer it is, as its sender names it (e.g.
    /// `bescheid`, `nachforderung`, `zahlungsaufforderung`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_type: Option<String>,
}

/// One encrypted part in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopePart {
    pub id: String,
    pub jwe: PartJwe,
}

/// A part's JWE: a JSON object (flattened serialization, version 2: the
/// ciphertext is the same for every target of the submission) or a compact
/// string (version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PartJwe {
    Json(Box<FlattenedJwe>),
    Compact(String),
}

/// By the JSON type, without buffering the value first as `untagged` would (a
/// part's ciphertext may be tens of MiB).
impl<'de> Deserialize<'de> for PartJwe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = PartJwe;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JWE: an object (JSON serialization) or a string (compact)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PartJwe, E> {
                Ok(PartJwe::Compact(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<PartJwe, E> {
                Ok(PartJwe::Compact(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<PartJwe, A::Error> {
                FlattenedJwe::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|j| PartJwe::Json(Box::new(j)))
            }
        }
        d.deserialize_any(Either)
    }
}

/// The envelope for one (submission, target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub version: u32,
    /// Stable per (submission, target): receivers deduplicate by it.
    pub message_id: String,
    pub submission_id: String,
    pub sender: String,
    pub target: String,
    pub leistung: String,
    pub destination: String,
    pub created_at: String,
    /// JWE of the sealed manifest (a compact JWS).
    pub manifest: String,
    pub parts: Vec<EnvelopePart>,
}

impl Envelope {
    /// The envelope as JSON — byte for byte what `serde_json::to_vec` writes — but
    /// copies the large JWE strings in one piece instead of character by character
    /// (a compact JWE is base64url and dots: nothing to escape; checked, and a
    /// string that needs escaping goes through serde).
    pub fn to_json(&self) -> Vec<u8> {
        // serde_json escapes only '"', '\\' and control characters; a string
        // without them is written as it is. (Branch-free, so it vectorises.)
        fn is_compact(s: &str) -> bool {
            !s.bytes().fold(false, |hit, b| {
                hit | (b == b'"') | (b == b'\\') | (b < 0x20)
            })
        }
        let compact: Option<Vec<&str>> = self
            .parts
            .iter()
            .map(|p| match &p.jwe {
                PartJwe::Compact(s) if is_compact(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        let (Some(jwes), true) = (compact, is_compact(&self.manifest)) else {
            return serde_json::to_vec(self).unwrap_or_default();
        };
        let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let size = self.manifest.len() + jwes.iter().map(|j| j.len() + 64).sum::<usize>();
        let mut out = String::with_capacity(size + 512);
        out.push_str(&format!(
            "{{\"version\":{},\"message_id\":{},\"submission_id\":{},\"sender\":{},\"target\":{},\"leistung\":{},\"destination\":{},\"created_at\":{},\"manifest\":\"",
            self.version,
            text(&self.message_id),
            text(&self.submission_id),
            text(&self.sender),
            text(&self.target),
            text(&self.leistung),
            text(&self.destination),
            text(&self.created_at),
        ));
        out.push_str(&self.manifest);
        out.push_str("\",\"parts\":[");
        for (i, (p, jwe)) in self.parts.iter().zip(jwes).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"id\":");
            out.push_str(&text(&p.id));
            out.push_str(",\"jwe\":\"");
            out.push_str(jwe);
            out.push_str("\"}");
        }
        out.push_str("]}");
        out.into_bytes()
    }
}

/// Receipt part entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptPart {
    pub id: String,
    pub size: u64,
    pub sha512: String,
}

/// Eingangsquittung: the gateway's signed proof of hand-over, given to the portal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub submission_id: String,
    pub received_at: String,
    pub sender: String,
    pub parts: Vec<ReceiptPart>,
}

impl Receipt {
    pub fn for_manifest(m: &Manifest) -> Self {
        Receipt {
            submission_id: m.submission_id.clone(),
            received_at: m.received_at.clone(),
            sender: m.sender.clone(),
            parts: m
                .parts
                .iter()
                .map(|p| ReceiptPart {
                    id: p.id.clone(),
                    size: p.size,
                    sha512: p.sha512.clone(),
                })
                .collect(),
        }
    }

    /// The compact JWS the portal keeps.
    pub fn sign(&self, seal: &SealKey) -> Result<String, JoseError> {
        let payload = serde_json::to_vec(self).map_err(|e| JoseError::Header(e.to_string()))?;
        jose::sign(seal, TYP_RECEIPT, &payload)
    }

    /// Verifies a receipt JWS against the trust anchors and the gateway's seals.
    pub fn verify(
        jws: &str,
        trust: &TrustAnchors,
        seals: &SealPins,
        now: SystemTime,
    ) -> Result<Self, JoseError> {
        let v = jose::verify(jws, TYP_RECEIPT, trust, now)?;
        if !seals.accepts(&v.signer) {
            return Err(JoseError::NotPinned(v.signer.subject().to_owned()));
        }
        serde_json::from_slice(&v.payload).map_err(|e| JoseError::Header(e.to_string()))
    }
}

/// Signs the manifest with the seal key: done once per submission.
pub fn seal_manifest(manifest: &Manifest, seal: &SealKey) -> Result<String, JoseError> {
    let payload = serde_json::to_vec(manifest).map_err(|e| JoseError::Header(e.to_string()))?;
    jose::sign(seal, TYP_MANIFEST, &payload)
}

/// Why an envelope could not be opened. Each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported envelope version {0}")]
    Version(u32),
    #[error("manifest: cannot decrypt: {0}")]
    ManifestDecrypt(JoseError),
    #[error("manifest: seal does not verify: {0}")]
    Seal(JoseError),
    #[error("manifest: sealed by {0}, which is not one of the gateway's seal certificates given")]
    NotTheGatewaysSeal(String),
    #[error("manifest: not valid JSON: {0}")]
    ManifestJson(String),
    #[error(
        "envelope header field {field} is {envelope:?} but the sealed manifest says {manifest:?}"
    )]
    HeaderMismatch {
        field: &'static str,
        envelope: String,
        manifest: String,
    },
    #[error("part {0}: listed in the manifest but missing from the envelope")]
    PartMissing(String),
    #[error("part {0}: in the envelope but not in the sealed manifest")]
    PartUnexpected(String),
    #[error("part {id}: cannot decrypt: {source}")]
    PartDecrypt { id: String, source: JoseError },
    #[error("part {id}: size is {actual} bytes, the manifest says {expected}")]
    PartSize {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("part {id}: SHA-512 does not match the sealed manifest")]
    PartHash { id: String },
}

/// A decrypted, verified part.
#[derive(Debug)]
pub struct OpenedPart {
    pub meta: ManifestPart,
    pub data: Vec<u8>,
}

/// An opened envelope: the verified manifest, the seal's signer and the parts.
#[derive(Debug)]
pub struct Opened {
    pub manifest: Manifest,
    pub sealed_by: String,
    pub parts: Vec<OpenedPart>,
}

/// [`open`] for a receiver that holds several keys (during a key rotation
/// the old and the new one): the key whose `kid` the manifest's JWE names is
/// used; keys loaded without their certificate (no `kid`) are tried in turn.
pub fn open_with_keys(
    env: &Envelope,
    keys: &[RecipientPrivateKey],
    trust: &TrustAnchors,
    seals: &SealPins,
    now: SystemTime,
) -> Result<Opened, OpenError> {
    let named = env
        .manifest
        .split('.')
        .next()
        .and_then(crate::base64url::decode)
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| h["kid"].as_str().map(str::to_owned));
    if let Some(k) = keys
        .iter()
        .find(|k| named.is_some() && k.kid() == named.as_deref())
    {
        return open(env, k, trust, seals, now);
    }
    let mut first_error = None;
    for k in keys.iter().filter(|k| k.kid().is_none()) {
        match open(env, k, trust, seals, now) {
            Ok(o) => return Ok(o),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match (first_error, keys.first()) {
        (Some(e), _) => Err(e),
        (None, Some(k)) => open(env, k, trust, seals, now),
        (None, None) => Err(OpenError::ManifestJson("no recipient key given".into())),
    }
}

/// What a recipient does: decrypt everything, verify the seal against `trust`
/// and require it to be one of the gateway's `seals`, check the clear header
/// against the sealed manifest and every part's size and SHA-512. Any mismatch is
/// an error naming what failed; nothing is returned half-checked.
pub fn open(
    env: &Envelope,
    key: &RecipientPrivateKey,
    trust: &TrustAnchors,
    seals: &SealPins,
    now: SystemTime,
) -> Result<Opened, OpenError> {
    if env.version != ENVELOPE_VERSION && env.version != ENVELOPE_VERSION_1 {
        return Err(OpenError::Version(env.version));
    }
    let mut decryptor = jose::Decryptor::new(key);
    let jws = decryptor
        .decrypt(&env.manifest)
        .map_err(OpenError::ManifestDecrypt)?;
    let jws = String::from_utf8(jws.plaintext)
        .map_err(|_| OpenError::ManifestJson("sealed manifest is not UTF-8".into()))?;
    let verified = jose::verify(&jws, TYP_MANIFEST, trust, now).map_err(OpenError::Seal)?;
    if !seals.accepts(&verified.signer) {
        return Err(OpenError::NotTheGatewaysSeal(
            verified.signer.subject().to_owned(),
        ));
    }
    let manifest: Manifest = serde_json::from_slice(&verified.payload)
        .map_err(|e| OpenError::ManifestJson(e.to_string()))?;
    for (field, envelope, sealed) in [
        ("submission_id", &env.submission_id, &manifest.submission_id),
        ("sender", &env.sender, &manifest.sender),
        ("leistung", &env.leistung, &manifest.leistung),
        ("destination", &env.destination, &manifest.destination),
    ] {
        if envelope != sealed {
            return Err(OpenError::HeaderMismatch {
                field,
                envelope: envelope.clone(),
                manifest: sealed.clone(),
            });
        }
    }
    if let Some(extra) = env
        .parts
        .iter()
        .find(|p| !manifest.parts.iter().any(|m| m.id == p.id))
    {
        return Err(OpenError::PartUnexpected(extra.id.clone()));
    }
    let mut parts = Vec::with_capacity(manifest.parts.len());
    for meta in &manifest.parts {
        let mut found = env.parts.iter().filter(|p| p.id == meta.id);
        let (Some(p), None) = (found.next(), found.next()) else {
            return Err(OpenError::PartMissing(meta.id.clone()));
        };
        let data = match &p.jwe {
            PartJwe::Json(jwe) => decryptor.decrypt_json(jwe),
            PartJwe::Compact(jwe) => decryptor.decrypt(jwe),
        }
        .map_err(|source| OpenError::PartDecrypt {
            id: meta.id.clone(),
            source,
        })?
        .plaintext;
        if data.len() as u64 != meta.size {
            return Err(OpenError::PartSize {
                id: meta.id.clone(),
                expected: meta.size,
                actual: data.len() as u64,
            });
        }
        if sha512_hex(&data) != meta.sha512 {
            return Err(OpenError::PartHash {
                id: meta.id.clone(),
            });
        }
        parts.push(OpenedPart {
            meta: meta.clone(),
            data,
        });
    }
    Ok(Opened {
        manifest,
        sealed_by: verified.signer.subject().to_owned(),
        parts,
    })
}

/// A file name safe to create inside an output directory: the last path
/// component only, no control characters, never `.`/`..`; `None` if nothing is left.
pub fn safe_file_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() || cleaned.len() > 255 {
        None
    } else {
        Some(cleaned)
    }
}

/// The file name to write a part under: the attachment's own name made safe, or
/// `data.xml` / `data.json` / `<id>.bin` by media type.
pub fn output_file_name(part: &ManifestPart) -> String {
    if let Some(name) = part.filename.as_deref().and_then(safe_file_name) {
        return name;
    }
    let ext = match part.media_type.as_str() {
        "application/xml" | "text/xml" => "xml",
        "application/json" => "json",
        "application/pdf" => "pdf",
        _ => "bin",
    };
    format!("{}.{ext}", part.id)
}
