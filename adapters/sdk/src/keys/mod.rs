//! Keys and certificates: loading PEM/PKCS#8, inspecting X.509, checking chains
//! ([`TrustAnchors`], in `trust.rs`).
//!
//! The rules the gateway and every receiver apply alike: a chain must reach a
//! configured trust anchor and be valid now; RSA keys have at least 3072 bits;
//! a seal key must match its certificate and may sign; a recipient key may
//! encrypt (RSA `keyEncipherment`) or agree keys (EC `keyAgreement`).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::agreement::{self, ECDH_P256};
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::oid_registry::OID_EC_P256;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as X509PublicKey;

use crate::base64url::encode as b64;

mod trust;
pub use trust::TrustAnchors;

/// Smallest RSA modulus accepted for seals and recipients.
pub const MIN_RSA_BITS: usize = 3072;

/// What went wrong with a key or certificate; messages name the subject.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not valid PEM: {0}")]
    Pem(String),
    #[error("no certificate found in the PEM input")]
    NoCertificate,
    #[error("certificate cannot be parsed: {0}")]
    Parse(String),
    #[error("unsupported key type: {0} (use RSA >= 3072 bit or EC P-256)")]
    UnsupportedKey(String),
    #[error("RSA key of {bits} bit is too small: at least {MIN_RSA_BITS} bit are required")]
    RsaTooSmall { bits: usize },
    #[error("private key cannot be read: {0} (expected unencrypted PKCS#8 PEM)")]
    PrivateKey(String),
    #[error("certificate {subject:?} has expired on {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("certificate {subject:?} is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    #[error("certificate {subject:?} is not issued by a configured trust anchor ({reason})")]
    Untrusted { subject: String, reason: String },
    #[error("certificate {subject:?} has been revoked by its CA (listed in its CRL)")]
    Revoked { subject: String },
    #[error("the revocation status of certificate {subject:?} is unknown: no CRL of the CA that issued it was given")]
    RevocationUnknown { subject: String },
    #[error("certificate {subject:?} lacks key usage {needed}")]
    KeyUsage {
        subject: String,
        needed: &'static str,
    },
    #[error("the private key does not belong to certificate {subject:?}")]
    KeyMismatch { subject: String },
}

/// A public key of a type the gateway supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// PKCS#1 `RSAPublicKey` DER and the modulus length.
    Rsa { pkcs1: Vec<u8>, bits: usize },
    /// Uncompressed SEC1 point (`04 || x || y`).
    EcP256 { point: Vec<u8> },
}

impl PublicKey {
    /// The bytes `aws-lc-rs` verifies and agrees with.
    pub fn raw(&self) -> &[u8] {
        match self {
            PublicKey::Rsa { pkcs1, .. } => pkcs1,
            PublicKey::EcP256 { point } => point,
        }
    }
}

/// An X.509 certificate with the facts the gateway checks, parsed once.
#[derive(Debug, Clone)]
pub struct Certificate {
    der: CertificateDer<'static>,
    spki: Vec<u8>,
    subject: String,
    not_before: i64,
    not_after: i64,
    public_key: PublicKey,
    digital_signature: Option<bool>,
    key_encipherment: Option<bool>,
    key_agreement: Option<bool>,
    sha256: [u8; 32],
}

fn fmt_ts(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ts.to_string())
}

impl Certificate {
    pub fn from_der(der: CertificateDer<'static>) -> Result<Self, KeyError> {
        let (_, x) =
            X509Certificate::from_der(der.as_ref()).map_err(|e| KeyError::Parse(e.to_string()))?;
        let spki = x.public_key();
        let public_key = match spki.parsed().map_err(|e| KeyError::Parse(e.to_string()))? {
            X509PublicKey::RSA(rsa) => PublicKey::Rsa {
                pkcs1: spki.subject_public_key.data.to_vec(),
                bits: rsa.key_size(),
            },
            X509PublicKey::EC(point) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok());
                if curve.as_ref() != Some(&OID_EC_P256) {
                    return Err(KeyError::UnsupportedKey(
                        "EC on a curve other than P-256".into(),
                    ));
                }
                PublicKey::EcP256 {
                    point: point.data().to_vec(),
                }
            }
            other => {
                return Err(KeyError::UnsupportedKey(
                    format!("{other:?}").chars().take(40).collect(),
                ))
            }
        };
        let ku = x
            .key_usage()
            .map_err(|e| KeyError::Parse(e.to_string()))?
            .map(|k| *k.value);
        let hash = digest(&SHA256, der.as_ref());
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(hash.as_ref());
        Ok(Certificate {
            spki: spki.raw.to_vec(),
            subject: x.subject().to_string(),
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
            public_key,
            digital_signature: ku.map(|k| k.digital_signature()),
            key_encipherment: ku.map(|k| k.key_encipherment()),
            key_agreement: ku.map(|k| k.key_agreement()),
            sha256,
            der,
        })
    }

    /// The first certificate of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let chain = chain_from_pem(pem)?;
        Self::from_der(chain.into_iter().next().ok_or(KeyError::NoCertificate)?)
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }
    pub fn subject(&self) -> &str {
        &self.subject
    }
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }
    /// Seconds since the epoch before which the certificate is not yet valid.
    pub fn not_before(&self) -> i64 {
        self.not_before
    }
    /// Seconds since the epoch after which the certificate is no longer valid.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
    pub fn not_after_rfc3339(&self) -> String {
        fmt_ts(self.not_after)
    }
    /// SHA-256 over the DER, hex (how the config names portal certificates).
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
    /// SHA-256 over the DER, base64url (JOSE `x5t#S256`; the JWE `kid`).
    pub fn thumbprint(&self) -> String {
        b64(&self.sha256)
    }

    /// Checks that the certificate is valid at `now`.
    pub fn check_validity(&self, now: SystemTime) -> Result<(), KeyError> {
        let now = unix(now);
        if now > self.not_after {
            return Err(KeyError::Expired {
                subject: self.subject.clone(),
                not_after: fmt_ts(self.not_after),
            });
        }
        if now < self.not_before {
            return Err(KeyError::NotYetValid {
                subject: self.subject.clone(),
                not_before: fmt_ts(self.not_before),
            });
        }
        Ok(())
    }

    fn check_rsa_size(&self) -> Result<(), KeyError> {
        match self.public_key {
            PublicKey::Rsa { bits, .. } if bits < MIN_RSA_BITS => {
                Err(KeyError::RsaTooSmall { bits })
            }
            _ => Ok(()),
        }
    }

    fn require(&self, bit: Option<bool>, needed: &'static str) -> Result<(), KeyError> {
        // A certificate without a KeyUsage extension is not restricted (RFC 5280 §4.2.1.3).
        if bit == Some(false) {
            return Err(KeyError::KeyUsage {
                subject: self.subject.clone(),
                needed,
            });
        }
        Ok(())
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Every certificate of a PEM text, in order.
pub fn chain_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| KeyError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(KeyError::NoCertificate);
    }
    Ok(chain)
}

fn pkcs8_from_pem(pem: &[u8]) -> Result<Vec<u8>, KeyError> {
    match PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::PrivateKey(e.to_string()))? {
        PrivateKeyDer::Pkcs8(k) => Ok(k.secret_pkcs8_der().to_vec()),
        PrivateKeyDer::Sec1(_) => Err(KeyError::PrivateKey(
            "SEC1 EC key; convert with `openssl pkcs8 -topk8 -nocrypt`".into(),
        )),
        PrivateKeyDer::Pkcs1(_) => Err(KeyError::PrivateKey(
            "PKCS#1 RSA key; convert with `openssl pkcs8 -topk8 -nocrypt`".into(),
        )),
        _ => Err(KeyError::PrivateKey("unknown key format".into())),
    }
}

enum SealKind {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    /// Held elsewhere (a hardware security module): only asked to sign.
    External(Box<dyn SealSigner>),
}

/// A seal key the gateway cannot read, only ask to sign: a key in a hardware
/// security module, reached over PKCS#11. It signs as the seal certificate's
/// algorithm says:
/// - EC P-256 (`ES256`): ECDSA over SHA-256 of `msg`, the 64 bytes `r ‖ s`;
/// - RSA (`PS256`): RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
pub trait SealSigner: Send + Sync {
    /// The signature over `msg`, or why the key could not sign now (the
    /// token is gone, the session closed, …); the text names no content.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String>;
    /// Where the key is, for logs (e.g. its PKCS#11 URI without the PIN).
    fn describe(&self) -> String;
}

/// Why the seal could not sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("the seal key could not sign (crypto backend)")]
    Crypto,
    #[error("the seal key ({at}) could not sign: {why}")]
    External { at: String, why: String },
}

/// The gateway's seal: private key plus certificate chain (leaf first).
pub struct SealKey {
    kind: SealKind,
    chain: Vec<CertificateDer<'static>>,
    cert: Certificate,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("subject", &self.cert.subject)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// Loads the seal from PEM texts; refuses a key that does not match its certificate.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, KeyError> {
        let chain = chain_from_pem(chain_pem)?;
        let cert = Certificate::from_der(chain[0].clone())?;
        cert.check_rsa_size()?;
        cert.require(cert.digital_signature, "digitalSignature")?;
        let pkcs8 = pkcs8_from_pem(key_pem)?;
        let mismatch = || KeyError::KeyMismatch {
            subject: cert.subject.clone(),
        };
        let kind = match cert.public_key() {
            PublicKey::EcP256 { point } => {
                let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
                if kp.public_key().as_ref() != point.as_slice() {
                    return Err(mismatch());
                }
                SealKind::Ec(kp)
            }
            PublicKey::Rsa { pkcs1, .. } => {
                let kp = RsaKeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
                if kp.public_key().as_ref() != pkcs1.as_slice() {
                    return Err(mismatch());
                }
                SealKind::Rsa(kp)
            }
        };
        Ok(SealKey { kind, chain, cert })
    }

    /// The seal with its key held elsewhere (see [`SealSigner`]). The signer
    /// is asked once to sign a probe, which must verify with the
    /// certificate's public key: a token key that does not belong to the
    /// certificate is refused here, not at the first submission.
    pub fn external(chain_pem: &[u8], signer: Box<dyn SealSigner>) -> Result<Self, KeyError> {
        let chain = chain_from_pem(chain_pem)?;
        let cert = Certificate::from_der(chain[0].clone())?;
        cert.check_rsa_size()?;
        cert.require(cert.digital_signature, "digitalSignature")?;
        let seal = SealKey {
            kind: SealKind::External(signer),
            chain,
            cert,
        };
        let probe = b"ozg-gateway: does this key belong to the seal certificate?";
        let sig = seal
            .sign(probe)
            .map_err(|e| KeyError::PrivateKey(e.to_string()))?;
        let alg: &dyn aws_lc_rs::signature::VerificationAlgorithm = match seal.cert.public_key() {
            PublicKey::EcP256 { .. } => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            PublicKey::Rsa { .. } => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        };
        let spki = X509Certificate::from_der(seal.chain[0].as_ref())
            .map_err(|e| KeyError::Parse(e.to_string()))?
            .1
            .public_key()
            .subject_public_key
            .data
            .to_vec();
        aws_lc_rs::signature::UnparsedPublicKey::new(alg, spki)
            .verify(probe, &sig)
            .map_err(|_| KeyError::KeyMismatch {
                subject: seal.cert.subject.clone(),
            })?;
        Ok(seal)
    }

    /// JWS `alg`: ES256 for P-256, PS256 for RSA.
    pub fn alg(&self) -> &'static str {
        match self.cert.public_key() {
            PublicKey::EcP256 { .. } => "ES256",
            PublicKey::Rsa { .. } => "PS256",
        }
    }

    /// Where the key is: `None` for a key read from a file, else the
    /// external signer's description.
    pub fn held_by(&self) -> Option<String> {
        match &self.kind {
            SealKind::External(s) => Some(s.describe()),
            _ => None,
        }
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.kind {
            SealKind::Ec(kp) => Ok(kp
                .sign(&rng, msg)
                .map_err(|_| SignError::Crypto)?
                .as_ref()
                .to_vec()),
            SealKind::Rsa(kp) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(&aws_lc_rs::signature::RSA_PSS_SHA256, &rng, msg, &mut sig)
                    .map_err(|_| SignError::Crypto)?;
                Ok(sig)
            }
            SealKind::External(signer) => signer.sign(msg).map_err(|why| SignError::External {
                at: signer.describe(),
                why,
            }),
        }
    }
}

/// A target's encryption certificate, checked and ready to encrypt for.
pub struct RecipientCert {
    cert: Certificate,
    kid: String,
    oaep: Option<OaepPublicEncryptingKey>,
}

impl std::fmt::Debug for RecipientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecipientCert")
            .field("subject", &self.cert.subject)
            .field("kid", &self.kid)
            .finish()
    }
}

impl RecipientCert {
    /// Checks key type, size and usage (not the chain: see [`TrustAnchors::verify_recipient`]).
    pub fn new(cert: Certificate) -> Result<Self, KeyError> {
        cert.check_rsa_size()?;
        let oaep = match cert.public_key() {
            PublicKey::Rsa { .. } => {
                cert.require(cert.key_encipherment, "keyEncipherment")?;
                let key = PublicEncryptingKey::from_der(&cert.spki)
                    .map_err(|e| KeyError::UnsupportedKey(e.to_string()))?;
                Some(
                    OaepPublicEncryptingKey::new(key)
                        .map_err(|_| KeyError::UnsupportedKey("RSA".into()))?,
                )
            }
            PublicKey::EcP256 { .. } => {
                cert.require(cert.key_agreement, "keyAgreement")?;
                None
            }
        };
        Ok(RecipientCert {
            kid: cert.thumbprint(),
            cert,
            oaep,
        })
    }

    pub fn certificate(&self) -> &Certificate {
        &self.cert
    }
    pub fn public_key(&self) -> &PublicKey {
        self.cert.public_key()
    }
    /// The JWE `kid`: the certificate's SHA-256 thumbprint, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    pub(crate) fn oaep_key(&self) -> Option<&OaepPublicEncryptingKey> {
        self.oaep.as_ref()
    }
}

/// A recipient's private key, for opening envelopes.
pub enum RecipientPrivateKey {
    Rsa {
        key: OaepPrivateDecryptingKey,
        kid: Option<String>,
    },
    Ec {
        key: agreement::PrivateKey,
        kid: Option<String>,
    },
}

impl RecipientPrivateKey {
    /// Loads a PKCS#8 PEM key (RSA or P-256). With the certificate, the JWE `kid`
    /// is checked too, so a message for another recipient is named as such.
    pub fn from_pem(key_pem: &[u8], cert_pem: Option<&[u8]>) -> Result<Self, KeyError> {
        let pkcs8 = pkcs8_from_pem(key_pem)?;
        let kid = cert_pem
            .map(Certificate::from_pem)
            .transpose()?
            .map(|c| c.thumbprint());
        if let Ok(k) = PrivateDecryptingKey::from_pkcs8(&pkcs8) {
            if k.key_size_bits() < MIN_RSA_BITS {
                return Err(KeyError::RsaTooSmall {
                    bits: k.key_size_bits(),
                });
            }
            let key = OaepPrivateDecryptingKey::new(k)
                .map_err(|_| KeyError::UnsupportedKey("RSA".into()))?;
            return Ok(RecipientPrivateKey::Rsa { key, kid });
        }
        let key = agreement::PrivateKey::from_private_key_der(&ECDH_P256, &pkcs8)
            .map_err(|_| KeyError::UnsupportedKey("neither RSA nor EC P-256".into()))?;
        Ok(RecipientPrivateKey::Ec { key, kid })
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        match self {
            RecipientPrivateKey::Rsa { kid, .. } | RecipientPrivateKey::Ec { kid, .. } => {
                kid.as_deref()
            }
        }
    }
}

/// The seal certificates whose signatures a verifier accepts (sealed manifests,
/// audit checkpoints): the gateway's current seal and the ones it used before a
/// rotation, as its operator publishes them.
///
/// A trust anchor alone is not enough: the administration PKI that issues the
/// seal also issues portals' and operators' client certificates, which can sign
/// too — a seal must come from the gateway, not from any key of the PKI.
#[derive(Debug, Clone, Default)]
pub struct SealPins(std::collections::BTreeSet<String>);

impl SealPins {
    /// Every certificate in a PEM file (one or more seal certificates; chains are
    /// fine, but pin only seal files: every certificate in it is accepted).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let mut pins = SealPins::default();
        pins.add_pem(pem)?;
        Ok(pins)
    }

    /// Adds the leaf (first certificate) of a PEM chain.
    pub fn add_pem(&mut self, pem: &[u8]) -> Result<(), KeyError> {
        let chain = chain_from_pem(pem)?;
        let leaf = chain
            .into_iter()
            .next()
            .ok_or_else(|| KeyError::Parse("no certificate in the PEM".into()))?;
        self.0.insert(Certificate::from_der(leaf)?.sha256_hex());
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn accepts(&self, cert: &Certificate) -> bool {
        self.0.contains(&cert.sha256_hex())
    }
}
