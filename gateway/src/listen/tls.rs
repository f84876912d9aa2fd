//! TLS for the listeners: rustls server configs and client identification.
//!
//! Portals authenticate with client certificates. The handshake demands proof of
//! possession of the certificate's key (the CertificateVerify signature is checked
//! by rustls' WebPKI verifier), but the *chain* is checked right after the
//! handshake by [`PeerCheck::check`], with the very same verifier. That order lets
//! the gateway answer a missing, expired or foreign certificate with a precise
//! `403 problem+json` instead of an opaque handshake alert — and no request of
//! such a connection ever reaches a handler: the connection task refuses every
//! request before reading its body.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;

/// Why a client certificate is not accepted (a `403` problem slug and detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerProblem {
    Missing,
    Expired,
    NotYetValid,
    Untrusted,
    Invalid(String),
}

impl PeerProblem {
    pub fn slug(&self) -> &'static str {
        match self {
            PeerProblem::Missing => "client-certificate-required",
            PeerProblem::Expired => "client-certificate-expired",
            PeerProblem::NotYetValid => "client-certificate-not-yet-valid",
            PeerProblem::Untrusted => "client-certificate-untrusted",
            PeerProblem::Invalid(_) => "client-certificate-invalid",
        }
    }
}

impl fmt::Display for PeerProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerProblem::Missing => write!(
                f,
                "this listener requires a TLS client certificate; none was presented"
            ),
            PeerProblem::Expired => write!(f, "the client certificate has expired"),
            PeerProblem::NotYetValid => write!(f, "the client certificate is not valid yet"),
            PeerProblem::Untrusted => write!(
                f,
                "the client certificate is not issued by a CA this gateway trusts for clients"
            ),
            PeerProblem::Invalid(why) => {
                write!(f, "the client certificate is not acceptable: {why}")
            }
        }
    }
}

/// Offers client authentication and verifies handshake signatures, but leaves the
/// chain to [`PeerCheck::check`] right after the handshake (see the module docs).
#[derive(Debug)]
struct DeferredChainVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredChainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Deferred: PeerCheck::check runs `inner.verify_client_cert` on the same
        // certificates before any request of this connection is handled.
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks a connection's client certificate chain after the handshake.
#[derive(Debug, Clone)]
pub struct PeerCheck {
    verifier: Arc<dyn ClientCertVerifier>,
}

/// A client certificate that chains to the client CA.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
    pub subject: String,
}

impl PeerCheck {
    pub fn check(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerCert, PeerProblem> {
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return Err(PeerProblem::Missing);
        };
        self.verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(CertificateError::Expired)
                | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
                    PeerProblem::Expired
                }
                rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
                | rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext {
                    ..
                }) => PeerProblem::NotYetValid,
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                    PeerProblem::Untrusted
                }
                other => PeerProblem::Invalid(other.to_string()),
            })?;
        let cert = ozg_adapter_sdk::keys::Certificate::from_der(leaf.clone())
            .map_err(|e| PeerProblem::Invalid(e.to_string()))?;
        Ok(PeerCert {
            sha256: cert.sha256_hex(),
            subject: cert.subject().to_owned(),
        })
    }
}

/// Reads a PEM certificate chain.
pub fn load_chain(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{} contains no certificate", path.display()));
    }
    Ok(chain)
}

/// Builds the ingest listener's TLS config (TLS 1.2+, client certificates offered
/// and checked by the returned [`PeerCheck`]).
pub fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: &std::path::Path,
) -> Result<(Arc<rustls::ServerConfig>, PeerCheck), String> {
    let chain = load_chain(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in load_chain(client_ca)? {
        roots
            .add(ca)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", client_ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("client CA {}: {e}", client_ca.display()))?;
    let verifier = Arc::new(DeferredChainVerifier {
        inner: inner.clone(),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), PeerCheck { verifier: inner }))
}

/// A TLS client config presenting a client certificate and trusting `ca` (for
/// `ozg-gateway submit`, the load generator and tests).
pub fn client_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for c in load_chain(ca)? {
        roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let chain = load_chain(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| format!("client certificate and key do not fit together: {e}"))
}
