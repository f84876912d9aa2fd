//! TLS for the listeners: rustls server configs and client identification.
//!
//! Portals authenticate with client certificates. The handshake demands proof of
//! possession of the certificate's key (the CertificateVerify signature is checked
//! by rustls' WebPKI verifier), but the *chain* is checked right after the
//! handshake by [`PeerCheck::check`], with a WebPKI verifier over the same client
//! CAs that also holds the CRLs. That order lets
//! the gateway answer a missing, expired, revoked or foreign certificate with a
//! precise `403 problem+json` instead of an opaque handshake alert — and no
//! request of such a connection ever reaches a handler: the connection task
//! refuses every request before reading its body.
//!
//! What [`PeerCheck::check`] requires of a portal's or operator's certificate:
//! - a chain to `ingest.client_ca`, valid now (rustls' WebPKI verifier);
//! - with CRLs configured (`pki.crls`), no certificate of the chain revoked, and
//!   the CA of each one covered by a CRL: an unknown revocation status is a
//!   refusal. A CRL past its nextUpdate is still used (see the README);
//! - an extended key usage extension that names clientAuth: a certificate
//!   without one is refused, although RFC 5280 would read its absence as "any
//!   purpose" — the CAs a gateway trusts also issue encryption and signature
//!   certificates, and none of those may pass as a client;
//! - if it has a key usage extension, `digitalSignature` in it (what signing
//!   the TLS handshake needs).
//!
//! The CRLs can be replaced at run time ([`PeerCheck::set_crls`]); each
//! replacement bumps a generation, and connections opened before it are checked
//! again at their next request.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;

use crate::listen::dn::Dn;

/// Why a client certificate is not accepted (a `403` problem slug and detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerProblem {
    Missing,
    Expired,
    NotYetValid,
    Untrusted,
    Revoked,
    Invalid(String),
}

impl PeerProblem {
    pub fn slug(&self) -> &'static str {
        match self {
            PeerProblem::Missing => "client-certificate-required",
            PeerProblem::Expired => "client-certificate-expired",
            PeerProblem::NotYetValid => "client-certificate-not-yet-valid",
            PeerProblem::Untrusted => "client-certificate-untrusted",
            PeerProblem::Revoked => "client-certificate-revoked",
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
            PeerProblem::Revoked => write!(
                f,
                "the client certificate (or a CA certificate in its chain) has been revoked: a CRL the gateway holds lists it"
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

/// Checks a connection's client certificate after the handshake (see the
/// module docs); cheap to clone, and every clone sees [`PeerCheck::set_crls`].
#[derive(Debug, Clone)]
pub struct PeerCheck {
    inner: Arc<PeerCheckInner>,
}

#[derive(Debug)]
struct PeerCheckInner {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    verifier: RwLock<Arc<dyn ClientCertVerifier>>,
    generation: AtomicU64,
}

/// A client certificate that passed [`PeerCheck::check`].
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
    /// The subject as displayed (for logs).
    pub subject: String,
    /// The subject attribute by attribute; `None` if a value is no readable
    /// string (then no configured subject matches it).
    pub subject_dn: Option<Dn>,
}

/// The chain verifier: WebPKI, client-auth EKU if present (the leaf's presence
/// is checked separately), and the CRLs if there are any.
fn chain_verifier(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, String> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls.iter().cloned())
        .build()
        .map_err(|e| e.to_string())
}

/// Key usage bits by name, in the order of RFC 5280.
fn key_usages(ku: &x509_parser::extensions::KeyUsage) -> Vec<&'static str> {
    [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

/// What a portal's or operator's certificate must be made for (see the module
/// docs); the error is the `detail` of the refusal.
fn check_client_usage(x: &x509_parser::certificate::X509Certificate<'_>) -> Result<(), String> {
    let eku = x
        .extended_key_usage()
        .map_err(|e| format!("its extended key usage cannot be read: {e}"))?;
    match eku {
        None => {
            return Err("it has no extended key usage extension; a portal or operator certificate must name clientAuth (1.3.6.1.5.5.7.3.2)".into())
        }
        Some(e) if !e.value.client_auth => {
            return Err("its extended key usage does not include clientAuth (1.3.6.1.5.5.7.3.2)".into())
        }
        Some(_) => {}
    }
    let ku = x
        .key_usage()
        .map_err(|e| format!("its key usage cannot be read: {e}"))?;
    if let Some(ku) = ku {
        if !ku.value.digital_signature() {
            return Err(format!(
                "its key usage ({}) lacks digitalSignature, which TLS client authentication needs",
                key_usages(ku.value).join(", ")
            ));
        }
    }
    Ok(())
}

impl PeerCheck {
    fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        crls: &[CertificateRevocationListDer<'static>],
    ) -> Result<PeerCheck, String> {
        let verifier = chain_verifier(&roots, &provider, crls)?;
        Ok(PeerCheck {
            inner: Arc::new(PeerCheckInner {
                roots,
                provider,
                verifier: RwLock::new(verifier),
                generation: AtomicU64::new(0),
            }),
        })
    }

    /// Replaces the CRLs (an empty list: no revocation checking); connections
    /// already open are checked again at their next request.
    pub fn set_crls(&self, crls: &[CertificateRevocationListDer<'static>]) -> Result<(), String> {
        let verifier = chain_verifier(&self.inner.roots, &self.inner.provider, crls)?;
        *self
            .inner
            .verifier
            .write()
            .unwrap_or_else(|e| e.into_inner()) = verifier;
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Changes with every [`Self::set_crls`]: a check made under another
    /// generation is out of date.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    pub fn check(
        &self,
        chain: Option<&[CertificateDer<'static>]>,
    ) -> Result<PeerCert, PeerProblem> {
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return Err(PeerProblem::Missing);
        };
        let verifier = self
            .inner
            .verifier
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        verifier
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
                rustls::Error::InvalidCertificate(CertificateError::Revoked) => {
                    PeerProblem::Revoked
                }
                rustls::Error::InvalidCertificate(CertificateError::UnknownRevocationStatus) => {
                    PeerProblem::Invalid(
                        "its revocation status is unknown: pki.crls holds no CRL of a CA in its chain"
                            .into(),
                    )
                }
                rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
                | rustls::Error::InvalidCertificate(CertificateError::InvalidPurposeContext {
                    ..
                }) => PeerProblem::Invalid(
                    "its extended key usage (or that of a CA certificate in its chain) does not include clientAuth (1.3.6.1.5.5.7.3.2)".into(),
                ),
                rustls::Error::InvalidCertRevocationList(e) => {
                    PeerProblem::Invalid(format!("the CRL of a CA in its chain cannot be used: {e:?}"))
                }
                other => PeerProblem::Invalid(other.to_string()),
            })?;
        let (_, x) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map_err(|e| PeerProblem::Invalid(e.to_string()))?;
        check_client_usage(&x).map_err(PeerProblem::Invalid)?;
        let cert = ozg_adapter_sdk::keys::Certificate::from_der(leaf.clone())
            .map_err(|e| PeerProblem::Invalid(e.to_string()))?;
        Ok(PeerCert {
            sha256: cert.sha256_hex(),
            subject: cert.subject().to_owned(),
            subject_dn: Dn::from_x509(x.subject()),
        })
    }
}

/// Reads a PEM certificate chain.
pub fn load_chain(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    if !path.exists() {
        return Err(format!("file not found: {}", path.display()));
    }
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
/// and checked by the returned [`PeerCheck`], against `crls` if there are any).
pub fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: &std::path::Path,
    crls: &[CertificateRevocationListDer<'static>],
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
    let roots = Arc::new(roots);
    // The handshake's verifier needs no CRLs: it only checks signatures.
    let inner = chain_verifier(&roots, &provider, &[])
        .map_err(|e| format!("client CA {}: {e}", client_ca.display()))?;
    let peer_check = PeerCheck::new(roots, provider.clone(), crls)
        .map_err(|e| format!("client CA {} with pki.crls: {e}", client_ca.display()))?;
    let verifier = Arc::new(DeferredChainVerifier { inner });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), peer_check))
}

/// A TLS client config trusting only the CA certificates in `ca`, presenting
/// no client certificate (CRL downloads, a FIT-Connect Zustelldienst).
pub fn server_only_client_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    for c in load_chain(ca)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
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
