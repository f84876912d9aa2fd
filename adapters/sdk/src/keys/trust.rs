//! Trust anchors and chain checks: a certificate must reach a configured anchor,
//! be valid at the given time and, where CRLs are given, not be revoked.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

use crate::keys::{chain_from_pem, Certificate, KeyError, RecipientCert};

/// The configured trust anchors (CA certificates) for seals, recipients or clients.
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    certs: Vec<CertificateDer<'static>>,
}

/// Accepts any extended key usage: seal and recipient certificates of the
/// administration PKI carry various EKUs (or none); key usage bits are checked instead.
struct AnyEku;
impl webpki::ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, _iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

static SIG_ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

impl TrustAnchors {
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let certs = chain_from_pem(pem)?;
        for c in &certs {
            webpki::anchor_from_trusted_cert(c).map_err(|e| KeyError::Parse(format!("{e:?}")))?;
        }
        Ok(TrustAnchors { certs })
    }

    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// Checks that `leaf` chains to an anchor at `now` and, with `crls`, that no
    /// certificate of the chain is revoked (see [`Self::verify_recipient_with_crls`]).
    fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: SystemTime,
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<Certificate, KeyError> {
        let cert = Certificate::from_der(leaf.clone().into_owned())?;
        cert.check_validity(now)?;
        let anchors = self
            .certs
            .iter()
            .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
            .collect::<Vec<_>>();
        let ee =
            webpki::EndEntityCert::try_from(leaf).map_err(|e| KeyError::Parse(format!("{e:?}")))?;
        let time =
            UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO));
        let parsed = crls
            .iter()
            .map(|der| {
                webpki::BorrowedCertRevocationList::from_der(der.as_ref())
                    .map(webpki::CertRevocationList::from)
                    .map_err(|e| KeyError::Parse(format!("CRL: {e:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let refs = parsed.iter().collect::<Vec<_>>();
        // Every certificate of the chain below the anchor is checked; one whose
        // CA has no CRL here is refused; a CRL past its nextUpdate is still used
        // (the caller decides how loudly to warn).
        let revocation = webpki::RevocationOptionsBuilder::new(&refs).ok().map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                .build()
        });
        let subject = || cert.subject.clone();
        ee.verify_for_usage(
            SIG_ALGS,
            &anchors,
            intermediates,
            time,
            AnyEku,
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertRevoked => KeyError::Revoked { subject: subject() },
            webpki::Error::UnknownRevocationStatus => {
                KeyError::RevocationUnknown { subject: subject() }
            }
            e => KeyError::Untrusted {
                subject: subject(),
                reason: format!("{e:?}"),
            },
        })?;
        Ok(cert)
    }

    /// Verifies a seal (signer) certificate chain.
    pub fn verify_signer(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<Certificate, KeyError> {
        let cert = self.verify(leaf, intermediates, now, &[])?;
        cert.check_rsa_size()?;
        cert.require(cert.digital_signature, "digitalSignature")?;
        Ok(cert)
    }

    /// Verifies a certificate chain to the anchors at `at`, whatever the
    /// certificate is for (the caller checks its usage; e.g. a TSA's).
    pub fn verify_any(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        at: SystemTime,
    ) -> Result<Certificate, KeyError> {
        self.verify(leaf, intermediates, at, &[])
    }

    /// Verifies a recipient (encryption) certificate chain.
    pub fn verify_recipient(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<RecipientCert, KeyError> {
        let cert = self.verify(leaf, intermediates, now, &[])?;
        RecipientCert::new(cert)
    }

    /// Verifies a recipient certificate chain like [`Self::verify_recipient`] and
    /// checks it against `crls` (DER CRLs of the CAs concerned): a certificate
    /// of the chain that a CRL lists is [`KeyError::Revoked`]; one whose CA has
    /// no CRL among them is [`KeyError::RevocationUnknown`]. A CRL past its
    /// nextUpdate is still used. With no CRLs this is `verify_recipient`.
    pub fn verify_recipient_with_crls(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: SystemTime,
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<RecipientCert, KeyError> {
        let cert = self.verify(leaf, intermediates, now, crls)?;
        RecipientCert::new(cert)
    }
}
