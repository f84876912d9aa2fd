//! JWE in the flattened JSON serialization (RFC 7516 §7.2.2), for content that
//! several recipients share.
//!
//! The compact form puts everything in the protected header, which is the AAD
//! of AES-GCM: a recipient's `kid`, `alg` and `epk` are then part of what the tag
//! authenticates, and one ciphertext cannot serve two recipients. In the JSON
//! form the protected header holds only what every recipient shares (`enc`,
//! `cty`); `alg`, `kid` and `epk` are the recipient's unprotected `header`, next
//! to its `encrypted_key`. So the `protected`, `iv`, `ciphertext` and `tag` of a
//! part are computed once and are the same bytes in every recipient's JWE, and
//! each recipient still receives a complete, standard JWE.
//!
//! Why the unprotected recipient header is safe here: changing `alg`, `epk` or
//! `encrypted_key` changes the key a recipient unwraps (AES key wrap and OAEP
//! check their own integrity) and then the tag fails; changing `kid` only
//! misdirects key selection. What the content is, is fixed by the protected
//! header and the tag, and above that by the sealed manifest's SHA-512 per part.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::base64url::Encoder;

use aws_lc_rs::aead::NONCE_LEN;
use aws_lc_rs::rand::SecureRandom as _;

use super::gcm::GcmSeal;
use super::{
    b64, open_content, unb64, ContentKey, Decrypted, Decryptor, Epk, JoseError, JweHeader, ENC,
};

/// A recipient's unprotected header in the JSON serialization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientHeader {
    pub alg: String,
    /// Base64url of the SHA-256 over the recipient certificate's DER.
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epk: Option<Epk>,
}

/// One recipient's JWE in the flattened JSON serialization. The members are in
/// the order the gateway writes them: the recipient's own first, then the
/// shared ones (see [`ContentKey::encrypt_shared_json`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenedJwe {
    pub header: RecipientHeader,
    pub encrypted_key: String,
    /// Base64url of `{"enc":"A256GCM","cty":…}`: the AAD.
    pub protected: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

/// The shared members of a JWE in the JSON serialization, encrypted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedContent {
    pub protected: String,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

/// The shared end of a part's JWE (as [`ContentKey::encrypt_shared_json`]
/// writes it), made while the plaintext arrives. Holds no more than the last
/// piece's ciphertext.
pub struct SharedJsonSeal {
    start: Option<String>,
    gcm: GcmSeal,
    b64: Encoder,
    /// Scratch for one piece's ciphertext.
    ct: Vec<u8>,
}

impl SharedJsonSeal {
    /// The text before the ciphertext (`"protected":"…","iv":"…","ciphertext":"`),
    /// once; then nothing.
    pub fn start(&mut self) -> String {
        self.start.take().unwrap_or_default()
    }

    /// Encrypts the next piece of plaintext, appending its base64url to `out`
    /// (after what [`SharedJsonSeal::start`] gave, if not taken yet).
    pub fn update(&mut self, plaintext: &[u8], out: &mut String) -> Result<(), JoseError> {
        if let Some(start) = self.start.take() {
            out.push_str(&start);
        }
        self.ct.clear();
        self.gcm.update(plaintext, &mut self.ct)?;
        self.b64.update(&self.ct, out);
        Ok(())
    }

    /// Appends the rest: the last ciphertext characters and `","tag":"…"}`.
    pub fn finish(mut self, out: &mut String) {
        if let Some(start) = self.start.take() {
            out.push_str(&start);
        }
        self.b64.finish(out);
        out.push_str("\",\"tag\":\"");
        URL_SAFE_NO_PAD.encode_string(self.gcm.finish(), out);
        out.push_str("\"}");
    }
}

/// base64url of the protected header of shared content.
fn shared_protected(cty: &str) -> Result<String, JoseError> {
    let header = serde_json::to_vec(&SharedProtected {
        enc: ENC.into(),
        cty: cty.into(),
    })
    .map_err(|e| JoseError::Header(e.to_string()))?;
    Ok(b64(&header))
}

/// The protected header of shared content: nothing that differs per recipient.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedProtected {
    enc: String,
    cty: String,
}

impl ContentKey {
    /// Encrypts `plaintext` once for every recipient this key is established
    /// for (fresh random IV; the AAD is the shared protected header only).
    pub fn encrypt_shared(&self, cty: &str, plaintext: &[u8]) -> Result<SharedContent, JoseError> {
        let protected = shared_protected(cty)?;
        let (iv, buf, tag) = self.seal(&protected, plaintext)?;
        Ok(SharedContent {
            protected,
            iv: b64(&iv),
            ciphertext: b64(&buf),
            tag: b64(tag.as_ref()),
        })
    }

    /// As [`ContentKey::encrypt_shared`], written as the shared end of every
    /// recipient's [`FlattenedJwe`] in JSON —
    /// `"protected":"…","iv":"…","ciphertext":"…","tag":"…"}`, byte for byte
    /// what serde writes (base64url needs no escaping) — with the ciphertext
    /// encoded straight into it.
    pub fn encrypt_shared_json(&self, cty: &str, plaintext: &[u8]) -> Result<String, JoseError> {
        let protected = shared_protected(cty)?;
        let (iv, buf, tag) = self.seal(&protected, plaintext)?;
        let mut out = String::with_capacity(protected.len() + buf.len() * 4 / 3 + 96);
        out.push_str("\"protected\":\"");
        out.push_str(&protected);
        for (name, bytes) in [
            ("iv", &iv[..]),
            ("ciphertext", &buf[..]),
            ("tag", tag.as_ref()),
        ] {
            out.push_str("\",\"");
            out.push_str(name);
            out.push_str("\":\"");
            URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
        }
        out.push_str("\"}");
        Ok(out)
    }

    /// As [`ContentKey::encrypt_shared_json`] for plaintext that arrives in
    /// pieces: the same bytes, written as the plaintext comes, so a part of any
    /// size is sealed with a bounded buffer. [`SharedJsonSeal::start`] gives
    /// the text before the ciphertext, [`SharedJsonSeal::update`] the
    /// ciphertext's base64url piece by piece, [`SharedJsonSeal::finish`] the end.
    pub fn shared_json_seal(&self, cty: &str) -> Result<SharedJsonSeal, JoseError> {
        let protected = shared_protected(cty)?;
        let mut iv = [0u8; NONCE_LEN];
        self.rng.fill(&mut iv).map_err(|_| JoseError::Crypto)?;
        let gcm = GcmSeal::new(&self.cek, &iv, protected.as_bytes())?;
        let mut start = String::with_capacity(protected.len() + 64);
        start.push_str("\"protected\":\"");
        start.push_str(&protected);
        start.push_str("\",\"iv\":\"");
        URL_SAFE_NO_PAD.encode_string(iv, &mut start);
        start.push_str("\",\"ciphertext\":\"");
        Ok(SharedJsonSeal {
            start: Some(start),
            gcm,
            b64: Encoder::default(),
            ct: Vec::new(),
        })
    }

    /// This recipient's unprotected header.
    pub fn recipient_header(&self) -> RecipientHeader {
        RecipientHeader {
            alg: self.alg.into(),
            kid: self.kid.clone(),
            epk: self.epk.clone(),
        }
    }

    /// `{"header":{…},"encrypted_key":"…",`: this recipient's start of a
    /// [`FlattenedJwe`] as JSON; [`ContentKey::encrypt_shared_json`] completes it.
    pub fn json_head(&self) -> Result<String, JoseError> {
        let header = serde_json::to_string(&self.recipient_header())
            .map_err(|e| JoseError::Header(e.to_string()))?;
        Ok(format!(
            "{{\"header\":{header},\"encrypted_key\":\"{}\",",
            b64(&self.encrypted_key)
        ))
    }

    /// This recipient's complete JWE of `shared`.
    pub fn flattened(&self, shared: &SharedContent) -> FlattenedJwe {
        FlattenedJwe {
            header: self.recipient_header(),
            encrypted_key: b64(&self.encrypted_key),
            protected: shared.protected.clone(),
            iv: shared.iv.clone(),
            ciphertext: shared.ciphertext.clone(),
            tag: shared.tag.clone(),
        }
    }
}

impl Decryptor<'_> {
    /// Decrypts one JWE in the flattened JSON serialization.
    pub fn decrypt_json(&mut self, jwe: &FlattenedJwe) -> Result<Decrypted, JoseError> {
        let protected: SharedProtected =
            serde_json::from_slice(&unb64(&jwe.protected, "JWE protected header")?)
                .map_err(|e| JoseError::Header(e.to_string()))?;
        if protected.enc != ENC {
            return Err(JoseError::UnsupportedAlg(protected.enc));
        }
        if let Some(kid) = self.key.kid() {
            if jwe.header.kid != kid {
                return Err(JoseError::WrongRecipient {
                    expected: kid.to_owned(),
                    found: jwe.header.kid.clone(),
                });
            }
        }
        let header = JweHeader {
            alg: jwe.header.alg.clone(),
            enc: protected.enc,
            kid: jwe.header.kid.clone(),
            cty: protected.cty,
            epk: jwe.header.epk.clone(),
        };
        let cek = self.content_key(&header, &jwe.encrypted_key)?;
        open_content(
            &jwe.protected,
            &jwe.iv,
            &jwe.ciphertext,
            &jwe.tag,
            &cek,
            header.cty,
        )
    }
}
