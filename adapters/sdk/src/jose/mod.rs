//! JWS and JWE (RFC 7515/7516/7518) with the algorithms of FIT-Connect.
//!
//! Only what the envelope needs and nothing more: compact JWS `ES256`/`PS256`/`PS512`
//! with the signer's chain in `x5c`; JWE `RSA-OAEP-256` or `ECDH-ES+A256KW` with
//! `A256GCM`, compact or in the flattened JSON serialization ([`json`]). Every
//! primitive comes from `aws-lc-rs` — except GHASH for AES-GCM over data that
//! arrives in pieces ([`gcm`]); this module only arranges bytes as the RFCs
//! prescribe (base64url, protected headers, the Concat KDF's `OtherInfo`).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::kdf::{get_sskdf_digest_algorithm, sskdf_digest, SskdfDigestAlgorithmId};
use aws_lc_rs::key_wrap::{KeyEncryptionKey, KeyWrap, AES_256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::keys::{
    Certificate, KeyError, PublicKey, RecipientCert, RecipientPrivateKey, SealKey, TrustAnchors,
};

/// Errors of the JOSE layer. Each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("not a compact {0}: expected {1} dot-separated parts")]
    Malformed(&'static str, usize),
    #[error("invalid base64url in the {0}")]
    Base64(&'static str),
    #[error("invalid protected header: {0}")]
    Header(String),
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlg(String),
    #[error("this envelope is for another recipient key: it is encrypted with {alg} and the key given is {have}")]
    KeyMismatch { alg: String, have: &'static str },
    #[error("the JWE is for key {found}, not for this recipient ({expected})")]
    WrongRecipient { expected: String, found: String },
    #[error("the content encryption key could not be recovered (wrong key or tampered)")]
    KeyUnwrap,
    #[error("authenticated decryption failed: ciphertext, IV, tag or header was altered")]
    Decrypt,
    #[error("signature does not verify")]
    BadSignature,
    #[error("signer certificate: {0}")]
    Signer(#[from] KeyError),
    #[error("signed by {0}, which is not one of the pinned seal certificates")]
    NotPinned(String),
    #[error("typ is {found:?}, expected {expected:?}")]
    WrongType { expected: String, found: String },
    #[error("crypto backend failure")]
    Crypto,
    #[error("{0}")]
    Sign(#[from] crate::keys::SignError),
}

use crate::base64url::encode as b64;

pub(crate) fn unb64(s: &str, what: &'static str) -> Result<Vec<u8>, JoseError> {
    crate::base64url::decode(s).ok_or(JoseError::Base64(what))
}

fn crypto<T, E>(r: Result<T, E>) -> Result<T, JoseError> {
    r.map_err(|_| JoseError::Crypto)
}

#[derive(Serialize)]
struct JwsHeaderOut<'a> {
    alg: &'a str,
    typ: &'a str,
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct JwsHeaderIn {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    x5c: Vec<String>,
}

/// Signs `payload` as a compact JWS with the seal key; `typ` says what it is
/// (e.g. `ozg-manifest`), so a receipt can never pass for a manifest.
pub fn sign(key: &SealKey, typ: &str, payload: &[u8]) -> Result<String, JoseError> {
    let header = JwsHeaderOut {
        alg: key.alg(),
        typ,
        x5c: key
            .chain()
            .iter()
            .map(|c| STANDARD.encode(c.as_ref()))
            .collect(),
    };
    let header = serde_json::to_vec(&header).map_err(|e| JoseError::Header(e.to_string()))?;
    let mut out = b64(&header);
    out.push('.');
    out.push_str(&b64(payload));
    let signature = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64(&signature));
    Ok(out)
}

/// A JWS whose signature and signer chain have been verified.
#[derive(Debug)]
pub struct VerifiedJws {
    pub payload: Vec<u8>,
    /// The signer's end-entity certificate.
    pub signer: Certificate,
}

/// Verifies a compact JWS: `typ` as expected, `x5c` chains to a trust anchor at
/// `now`, the leaf may sign, and the signature verifies with the leaf's key.
pub fn verify(
    jws: &str,
    expected_typ: &str,
    trust: &TrustAnchors,
    now: std::time::SystemTime,
) -> Result<VerifiedJws, JoseError> {
    let mut it = jws.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JoseError::Malformed("JWS", 3));
    };
    let header: JwsHeaderIn = serde_json::from_slice(&unb64(h, "JWS header")?)
        .map_err(|e| JoseError::Header(e.to_string()))?;
    let typ = header.typ.unwrap_or_default();
    if typ != expected_typ {
        return Err(JoseError::WrongType {
            expected: expected_typ.into(),
            found: typ,
        });
    }
    let chain = header
        .x5c
        .iter()
        .map(|c| STANDARD.decode(c).map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| JoseError::Base64("x5c"))?;
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(JoseError::Header("x5c is missing".into()));
    };
    let signer = Certificate::from_der(leaf.clone())?;
    trust.verify_signer(leaf, intermediates, now)?;
    let signature = unb64(s, "JWS signature")?;
    let signed = &jws[..h.len() + 1 + p.len()];
    let alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
        match (&header.alg[..], signer.public_key()) {
            ("ES256", PublicKey::EcP256 { .. }) => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            ("PS256", PublicKey::Rsa { .. }) => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
            ("PS512", PublicKey::Rsa { .. }) => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA512,
            (other, _) => return Err(JoseError::UnsupportedAlg(other.into())),
        };
    aws_lc_rs::signature::UnparsedPublicKey::new(alg, signer.public_key().raw())
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| JoseError::BadSignature)?;
    Ok(VerifiedJws {
        payload: unb64(p, "JWS payload")?,
        signer,
    })
}

pub mod gcm;
pub mod json;
pub use json::{FlattenedJwe, RecipientHeader, SharedContent, SharedJsonSeal};

/// The ephemeral public key of `ECDH-ES` (a JWK with the P-256 point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Epk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
}

#[derive(Serialize, Deserialize)]
struct JweHeader {
    alg: String,
    enc: String,
    kid: String,
    cty: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    epk: Option<Epk>,
}

const ALG_RSA: &str = "RSA-OAEP-256";
const ALG_ECDH: &str = "ECDH-ES+A256KW";
const ENC: &str = "A256GCM";

/// Concat KDF of RFC 7518 §4.6.2 for `ECDH-ES+A256KW` with empty `apu`/`apv`:
/// the single-step KDF of NIST SP 800-56A with SHA-256 as aws-lc-rs implements it.
fn concat_kdf(z: &[u8]) -> Result<[u8; 32], JoseError> {
    let alg_id = ALG_ECDH.as_bytes();
    let mut info = Vec::with_capacity(4 + alg_id.len() + 12);
    info.extend_from_slice(&(alg_id.len() as u32).to_be_bytes());
    info.extend_from_slice(alg_id);
    info.extend_from_slice(&0u32.to_be_bytes()); // PartyUInfo: empty
    info.extend_from_slice(&0u32.to_be_bytes()); // PartyVInfo: empty
    info.extend_from_slice(&256u32.to_be_bytes()); // SuppPubInfo: keydatalen in bits
    let alg =
        get_sskdf_digest_algorithm(SskdfDigestAlgorithmId::Sha256).ok_or(JoseError::Crypto)?;
    let mut out = [0u8; 32];
    crypto(sskdf_digest(alg, z, &info, &mut out))?;
    Ok(out)
}

/// Encrypts `plaintext` as a compact JWE for one recipient certificate, with a
/// content key of its own.
pub fn encrypt(
    recipient: &RecipientCert,
    cty: &str,
    plaintext: &[u8],
) -> Result<String, JoseError> {
    ContentKey::new(recipient)?.encrypt(cty, plaintext)
}

/// A content-encryption key for one recipient, established (wrapped with RSA-OAEP
/// or agreed with ECDH-ES) once and then used for several JWEs: all JWEs of one
/// envelope carry the same `encrypted_key` (and `epk`), each with its own random
/// 96-bit IV and its own protected header as AAD. The key-establishment step is
/// the expensive part (an ECDH or RSA operation); the envelope pays it once instead
/// of once per part. Every JWE stays a complete JWE that any library decrypts on
/// its own.
///
/// The same key may be established for further recipients
/// ([`ContentKey::for_recipient`]): then one ciphertext, encrypted once with
/// [`ContentKey::encrypt_shared`], is every recipient's (JWE JSON serialization,
/// see [`FlattenedJwe`]).
pub struct ContentKey {
    cek: [u8; 32],
    aead: LessSafeKey,
    alg: &'static str,
    kid: String,
    epk: Option<Epk>,
    encrypted_key: Vec<u8>,
    rng: SystemRandom,
}

impl ContentKey {
    /// A fresh random key, established for `recipient`.
    pub fn new(recipient: &RecipientCert) -> Result<Self, JoseError> {
        let rng = SystemRandom::new();
        let mut cek = [0u8; 32];
        crypto(rng.fill(&mut cek))?;
        Self::establish(cek, recipient, rng)
    }

    /// This same content key, established for another recipient (its own
    /// `encrypted_key`, and for EC its own ephemeral key).
    pub fn for_recipient(&self, recipient: &RecipientCert) -> Result<Self, JoseError> {
        Self::establish(self.cek, recipient, self.rng.clone())
    }

    fn establish(
        cek: [u8; 32],
        recipient: &RecipientCert,
        rng: SystemRandom,
    ) -> Result<Self, JoseError> {
        let (alg, epk, encrypted_key) = match recipient.public_key() {
            PublicKey::Rsa { .. } => {
                let key = recipient.oaep_key().ok_or(JoseError::Crypto)?;
                let mut out = vec![0u8; key.ciphertext_size()];
                let ct = crypto(key.encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut out, None))?;
                let len = ct.len();
                out.truncate(len);
                (ALG_RSA, None, out)
            }
            PublicKey::EcP256 { point } => {
                let eph = crypto(EphemeralPrivateKey::generate(&ECDH_P256, &rng))?;
                let eph_pub = crypto(eph.compute_public_key())?;
                let eph_point = eph_pub.as_ref();
                let epk = Epk {
                    kty: "EC".into(),
                    crv: "P-256".into(),
                    x: b64(&eph_point[1..33]),
                    y: b64(&eph_point[33..65]),
                };
                let kek = agreement::agree_ephemeral(
                    eph,
                    UnparsedPublicKey::new(&ECDH_P256, point),
                    JoseError::Crypto,
                    concat_kdf,
                )?;
                let kek = crypto(KeyEncryptionKey::new(&AES_256, &kek))?;
                let mut out = [0u8; 40];
                let wrapped = crypto(kek.wrap(&cek, &mut out))?.to_vec();
                (ALG_ECDH, Some(epk), wrapped)
            }
        };
        Ok(ContentKey {
            cek,
            aead: LessSafeKey::new(crypto(UnboundKey::new(&AES_256_GCM, &cek))?),
            alg,
            kid: recipient.kid().to_owned(),
            epk,
            encrypted_key,
            rng,
        })
    }

    /// Encrypts `plaintext` as one compact JWE under this key (fresh random IV).
    pub fn encrypt(&self, cty: &str, plaintext: &[u8]) -> Result<String, JoseError> {
        let header = JweHeader {
            alg: self.alg.into(),
            enc: ENC.into(),
            kid: self.kid.clone(),
            cty: cty.into(),
            epk: self.epk.clone(),
        };
        let header_b64 =
            b64(&serde_json::to_vec(&header).map_err(|e| JoseError::Header(e.to_string()))?);
        let (iv, buf, tag) = self.seal(&header_b64, plaintext)?;
        // Encode straight into the output: one allocation for the whole compact form.
        let mut out = String::with_capacity(
            header_b64.len() + (buf.len() + self.encrypted_key.len() + 64) * 4 / 3 + 8,
        );
        out.push_str(&header_b64);
        for piece in [&self.encrypted_key[..], &iv[..], &buf[..], tag.as_ref()] {
            out.push('.');
            URL_SAFE_NO_PAD.encode_string(piece, &mut out);
        }
        Ok(out)
    }

    /// AES-256-GCM of `plaintext` under this key with a fresh random IV and
    /// `aad` (the base64url protected header): IV, ciphertext, tag.
    fn seal(
        &self,
        aad: &str,
        plaintext: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>, aws_lc_rs::aead::Tag), JoseError> {
        let mut iv = [0u8; NONCE_LEN];
        crypto(self.rng.fill(&mut iv))?;
        let mut buf = plaintext.to_vec();
        let tag = crypto(self.aead.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad.as_bytes()),
            &mut buf,
        ))?;
        Ok((iv, buf, tag))
    }
}

/// A decrypted JWE: its content type and plaintext.
pub struct Decrypted {
    pub cty: String,
    pub plaintext: Vec<u8>,
}

/// Decrypts a compact JWE with the recipient's private key.
pub fn decrypt(jwe: &str, key: &RecipientPrivateKey) -> Result<Decrypted, JoseError> {
    Decryptor::new(key).decrypt(jwe)
}

/// Decrypts several JWEs with one private key and remembers the last content key
/// it unwrapped: the JWEs of one envelope share their key establishment (see
/// [`ContentKey`]), so the private-key operation runs once per envelope.
pub struct Decryptor<'k> {
    key: &'k RecipientPrivateKey,
    /// (alg, epk, encrypted key as sent) → content key.
    last: Option<(String, Option<Epk>, String, Vec<u8>)>,
}

impl<'k> Decryptor<'k> {
    pub fn new(key: &'k RecipientPrivateKey) -> Self {
        Decryptor { key, last: None }
    }

    /// Decrypts one compact JWE.
    pub fn decrypt(&mut self, jwe: &str) -> Result<Decrypted, JoseError> {
        let key = self.key;
        let parts: Vec<&str> = jwe.split('.').collect();
        let [h, ek, iv, ct, tag] = parts[..] else {
            return Err(JoseError::Malformed("JWE", 5));
        };
        let header: JweHeader = serde_json::from_slice(&unb64(h, "JWE header")?)
            .map_err(|e| JoseError::Header(e.to_string()))?;
        if header.enc != ENC {
            return Err(JoseError::UnsupportedAlg(header.enc));
        }
        if let Some(kid) = key.kid() {
            if header.kid != kid {
                return Err(JoseError::WrongRecipient {
                    expected: kid.to_owned(),
                    found: header.kid,
                });
            }
        }
        let cek = self.content_key(&header, ek)?;
        open_content(h, iv, ct, tag, &cek, header.cty)
    }

    /// The content key of a JWE: the one unwrapped last if `alg`, `epk` and the
    /// encrypted key are the same, else unwrapped with the private key.
    fn content_key(&mut self, header: &JweHeader, ek: &str) -> Result<Vec<u8>, JoseError> {
        if let Some((alg, epk, last_ek, cek)) = &self.last {
            if *alg == header.alg && *epk == header.epk && last_ek == ek {
                return Ok(cek.clone());
            }
        }
        let cek = unwrap_cek(header, ek, self.key)?;
        self.last = Some((
            header.alg.clone(),
            header.epk.clone(),
            ek.to_owned(),
            cek.clone(),
        ));
        Ok(cek)
    }
}

/// Recovers the content-encryption key of a JWE with the private key.
fn unwrap_cek(
    header: &JweHeader,
    ek: &str,
    key: &RecipientPrivateKey,
) -> Result<Vec<u8>, JoseError> {
    let ek = unb64(ek, "JWE encrypted key")?;
    let mut cek = vec![0u8; 512];
    let cek: Vec<u8> = match (&header.alg[..], key) {
        (ALG_RSA, RecipientPrivateKey::Rsa { key, .. }) => key
            .decrypt(&OAEP_SHA256_MGF1SHA256, &ek, &mut cek, None)
            .map_err(|_| JoseError::KeyUnwrap)?
            .to_vec(),
        (ALG_ECDH, RecipientPrivateKey::Ec { key, .. }) => {
            let epk = header
                .epk
                .as_ref()
                .ok_or_else(|| JoseError::Header("epk missing".into()))?;
            if epk.kty != "EC" || epk.crv != "P-256" {
                return Err(JoseError::Header("epk is not a P-256 key".into()));
            }
            let (x, y) = (unb64(&epk.x, "epk.x")?, unb64(&epk.y, "epk.y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(JoseError::Header("epk coordinates must be 32 bytes".into()));
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let kek = agreement::agree(
                key,
                UnparsedPublicKey::new(&ECDH_P256, &point),
                JoseError::KeyUnwrap,
                concat_kdf,
            )?;
            let kek = crypto(KeyEncryptionKey::new(&AES_256, &kek))?;
            kek.unwrap(&ek, &mut cek)
                .map_err(|_| JoseError::KeyUnwrap)?
                .to_vec()
        }
        // A known algorithm for the other kind of key: the envelope was
        // encrypted for another recipient key, not with something unknown.
        (alg @ (ALG_RSA | ALG_ECDH), key) => {
            return Err(JoseError::KeyMismatch {
                alg: alg.into(),
                have: match key {
                    RecipientPrivateKey::Rsa { .. } => "an RSA key",
                    RecipientPrivateKey::Ec { .. } => "an EC P-256 key",
                },
            })
        }
        (alg, _) => return Err(JoseError::UnsupportedAlg(alg.into())),
    };
    if cek.len() != 32 {
        return Err(JoseError::KeyUnwrap);
    }
    Ok(cek)
}

/// Authenticated decryption of a JWE's content with its content key.
fn open_content(
    h: &str,
    iv: &str,
    ct: &str,
    tag: &str,
    cek: &[u8],
    cty: String,
) -> Result<Decrypted, JoseError> {
    let iv: [u8; NONCE_LEN] = unb64(iv, "JWE IV")?
        .try_into()
        .map_err(|_| JoseError::Header("IV must be 96 bits".into()))?;
    let mut buf = unb64(ct, "JWE ciphertext")?;
    buf.extend_from_slice(&unb64(tag, "JWE tag")?);
    let aead = LessSafeKey::new(crypto(UnboundKey::new(&AES_256_GCM, cek))?);
    let plain = aead
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(h.as_bytes()),
            &mut buf,
        )
        .map_err(|_| JoseError::Decrypt)?;
    let len = plain.len();
    buf.truncate(len);
    Ok(Decrypted {
        cty,
        plaintext: buf,
    })
}
