//! RFC 3161 time-stamp tokens over audit checkpoints: the request the
//! gateway sends a time-stamping authority (TSA) for a checkpoint, the token
//! taken from its answer, and the check of a token — the checkpoint's hash in
//! it, the TSA's signature over it, the TSA's certificate (extended key usage
//! `timeStamping`) chaining to a configured anchor as of the stamped time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::signature as sig;
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{Int, ObjectIdentifier, OctetString, Uint};
use der::{Decode, Encode};
use rustls_pki_types::CertificateDer;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::keys::TrustAnchors;

const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// id-kp-timeStamping.
const TIME_STAMPING: &str = "1.3.6.1.5.5.7.3.8";

/// Why a time-stamp token is not good.
#[derive(Debug, thiserror::Error)]
pub enum TimestampError {
    #[error("not DER the way RFC 3161 says: {0}")]
    Malformed(String),
    #[error("the TSA did not grant the time-stamp (status {0})")]
    NotGranted(u8),
    #[error("the token stamps another hash than the checkpoint's")]
    ImprintMismatch,
    #[error("the token's signed message digest does not match its content")]
    DigestMismatch,
    #[error("the TSA's signature does not verify")]
    BadSignature,
    #[error("unsupported algorithm {0}")]
    Unsupported(String),
    #[error("the TSA certificate: {0}")]
    Untrusted(String),
}

fn malformed(e: impl std::fmt::Display) -> TimestampError {
    TimestampError::Malformed(e.to_string())
}

/// A good token: when it says the checkpoint existed, and who says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The stamped time (`genTime`), seconds since the epoch.
    pub time: i64,
    /// The TSA certificate's subject.
    pub tsa: String,
    /// The token's serial number (hex).
    pub serial: String,
    /// The nonce of the request it answers, if it carries one (a requester
    /// compares it with its own: an answer to another request is refused).
    pub nonce: Option<u64>,
}

/// The DER `TimeStampReq` for `message` (SHA-256 imprint, the TSA's
/// certificate asked for, `nonce` against replays).
pub fn request(message: &[u8], nonce: u64) -> Result<Vec<u8>, TimestampError> {
    let hash = digest::digest(&digest::SHA256, message);
    let req = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: cms::cert::x509::spki::AlgorithmIdentifier {
                oid: SHA256,
                parameters: None,
            },
            hashed_message: OctetString::new(hash.as_ref()).map_err(malformed)?,
        },
        req_policy: None,
        // As an unsigned integer: leading zero bytes stripped, a zero byte
        // put in front of a top bit that is set (DER's canonical form).
        nonce: Some(Int::from(
            Uint::new(&nonce.to_be_bytes()).map_err(malformed)?,
        )),
        cert_req: true,
        extensions: None,
    };
    req.to_der().map_err(malformed)
}

/// The token (DER `ContentInfo`) of a TSA's `TimeStampResp`, if granted.
pub fn token_of(response: &[u8]) -> Result<Vec<u8>, TimestampError> {
    let resp = TimeStampResp::from_der(response).map_err(malformed)?;
    let status = resp.status.status as u8;
    if status > 1 {
        return Err(TimestampError::NotGranted(status));
    }
    resp.time_stamp_token
        .ok_or_else(|| malformed("a granted answer without a token"))?
        .to_der()
        .map_err(malformed)
}

fn digest_of(oid: ObjectIdentifier) -> Result<&'static digest::Algorithm, TimestampError> {
    match oid {
        SHA256 => Ok(&digest::SHA256),
        SHA384 => Ok(&digest::SHA384),
        SHA512 => Ok(&digest::SHA512),
        other => Err(TimestampError::Unsupported(format!("digest {other}"))),
    }
}

/// Checks `token` (DER) over `message` and returns what it says. The TSA's
/// certificate must chain to `trust` as of the stamped time and carry the
/// extended key usage `timeStamping`.
pub fn verify(token: &[u8], message: &[u8], trust: &TrustAnchors) -> Result<Stamp, TimestampError> {
    let info = ContentInfo::from_der(token).map_err(malformed)?;
    if info.content_type != SIGNED_DATA {
        return Err(malformed("the token is not CMS SignedData"));
    }
    let signed: SignedData = info.content.decode_as().map_err(malformed)?;
    let encap = &signed.encap_content_info;
    if encap.econtent_type != TST_INFO {
        return Err(malformed("the signed content is not a TSTInfo"));
    }
    let econtent = encap
        .econtent
        .as_ref()
        .ok_or_else(|| malformed("no TSTInfo in the token"))?;
    let tst_der = OctetString::from_der(&econtent.to_der().map_err(malformed)?)
        .map_err(malformed)?
        .into_bytes();
    let tst = TstInfo::from_der(&tst_der).map_err(malformed)?;

    // The checkpoint's hash is what was stamped.
    let imprint_alg = digest_of(tst.message_imprint.hash_algorithm.oid)?;
    if digest::digest(imprint_alg, message).as_ref()
        != tst.message_imprint.hashed_message.as_bytes()
    {
        return Err(TimestampError::ImprintMismatch);
    }

    // One signer, whose signed attributes bind the TSTInfo.
    let signer = match signed.signer_infos.0.as_slice() {
        [one] => one,
        other => return Err(malformed(format!("{} signers, not one", other.len()))),
    };
    let attrs = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| malformed("no signed attributes"))?;
    let attr = |oid: ObjectIdentifier| {
        attrs
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.get(0))
            .ok_or_else(|| malformed(format!("signed attribute {oid} missing")))
    };
    let content_type: ObjectIdentifier = attr(CONTENT_TYPE)?.decode_as().map_err(malformed)?;
    if content_type != TST_INFO {
        return Err(malformed("signed content-type is not TSTInfo"));
    }
    let signed_digest: OctetString = attr(MESSAGE_DIGEST)?.decode_as().map_err(malformed)?;
    let content_alg = digest_of(signer.digest_alg.oid)?;
    if digest::digest(content_alg, &tst_der).as_ref() != signed_digest.as_bytes() {
        return Err(TimestampError::DigestMismatch);
    }

    // The signer's certificate, named by issuer and serial or by key id.
    let certs: Vec<&cms::cert::x509::Certificate> = signed
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    CertificateChoices::Certificate(c) => Some(c),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let signer_cert = certs
        .iter()
        .find(|c| match &signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                c.tbs_certificate.issuer == ias.issuer
                    && c.tbs_certificate.serial_number == ias.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                subject_key_id(c).is_some_and(|id| id == ski.0.as_bytes())
            }
        })
        .ok_or_else(|| {
            TimestampError::Untrusted(
                "the token does not carry the TSA's certificate (ask with certReq)".into(),
            )
        })?;
    let spki = signer_cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let algorithm: &dyn sig::VerificationAlgorithm =
        match (signer.signature_algorithm.oid, signer.digest_alg.oid) {
            (RSA | RSA_SHA256, SHA256) => &sig::RSA_PKCS1_2048_8192_SHA256,
            (RSA | RSA_SHA384, SHA384) => &sig::RSA_PKCS1_2048_8192_SHA384,
            (RSA | RSA_SHA512, SHA512) => &sig::RSA_PKCS1_2048_8192_SHA512,
            (ECDSA_SHA256, SHA256) => &sig::ECDSA_P256_SHA256_ASN1,
            (ECDSA_SHA384, SHA384) => &sig::ECDSA_P384_SHA384_ASN1,
            (s, d) => {
                return Err(TimestampError::Unsupported(format!(
                    "signature {s} with digest {d}"
                )))
            }
        };
    // The signature is over the signed attributes as a DER SET OF.
    let signed_attrs = attrs.to_der().map_err(malformed)?;
    sig::UnparsedPublicKey::new(algorithm, spki)
        .verify(&signed_attrs, signer.signature.as_bytes())
        .map_err(|_| TimestampError::BadSignature)?;

    // The TSA's certificate chains to an anchor as of the stamped time.
    let time = tst.gen_time.to_unix_duration().as_secs() as i64;
    let at = UNIX_EPOCH + Duration::from_secs(time.max(0) as u64);
    let leaf = CertificateDer::from(signer_cert.to_der().map_err(malformed)?);
    let others: Vec<CertificateDer<'static>> = certs
        .iter()
        .filter(|c| !std::ptr::eq(**c, *signer_cert))
        .filter_map(|c| c.to_der().ok().map(CertificateDer::from))
        .collect();
    let cert = trust
        .verify_any(&leaf, &others, at)
        .map_err(|e| TimestampError::Untrusted(e.to_string()))?;
    if !has_time_stamping(leaf.as_ref()) {
        return Err(TimestampError::Untrusted(format!(
            "{} lacks the extended key usage timeStamping",
            cert.subject()
        )));
    }
    Ok(Stamp {
        time,
        tsa: cert.subject().to_owned(),
        serial: hex::encode(tst.serial_number.as_bytes()),
        nonce: tst.nonce.as_ref().and_then(|n| nonce_value(n.as_bytes())),
    })
}

/// A DER INTEGER's content as a `u64`: big-endian two's complement, so a
/// set top bit is a negative number (none of ours), and a leading zero byte
/// only pads a positive one.
fn nonce_value(bytes: &[u8]) -> Option<u64> {
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    let bytes = bytes.strip_prefix(&[0]).unwrap_or(bytes);
    (bytes.len() <= 8).then(|| bytes.iter().fold(0u64, |v, b| v << 8 | u64::from(*b)))
}

/// The certificate's subject key identifier, if it has one.
fn subject_key_id(c: &cms::cert::x509::Certificate) -> Option<Vec<u8>> {
    let der = c.to_der().ok()?;
    let (_, x) = x509_parser::parse_x509_certificate(&der).ok()?;
    x.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

fn has_time_stamping(der: &[u8]) -> bool {
    let Ok((_, x)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    matches!(x.extended_key_usage(), Ok(Some(eku)) if eku.value.time_stamping
        || eku.value.other.iter().any(|o| o.to_id_string() == TIME_STAMPING))
}

/// `SystemTime` of a stamp.
pub fn stamped_at(stamp: &Stamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(stamp.time.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_go_out_in_canonical_der_and_read_back() {
        // A leading zero byte (1 in 128 of the gateway's nonces), a top bit
        // set after it, and the largest the gateway sends.
        for nonce in [
            0x0012_3456_789a_bcde_u64,
            0x0080_0000_0000_0001,
            1,
            u64::MAX >> 1,
        ] {
            let req = TimeStampReq::from_der(&request(b"checkpoint", nonce).unwrap())
                .expect("canonical DER");
            let n = req.nonce.unwrap();
            assert_eq!(nonce_value(n.as_bytes()), Some(nonce), "{nonce:#x}");
        }
        // Negative INTEGERs are no nonce of ours.
        assert_eq!(nonce_value(&[0xff]), None);
        assert_eq!(nonce_value(&[]), None);
        assert_eq!(nonce_value(&[0, 0xff]), Some(0xff));
    }
}
