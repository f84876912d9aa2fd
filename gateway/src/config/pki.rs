//! The `[pki]` section: trust anchors, the seal, and the certificate revocation
//! lists (CRLs) every checked certificate is held against.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Trust anchors, the seal and revocation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiConfig {
    /// CA certificates (PEM) that target encryption certificates and the seal must chain to.
    pub trust_anchors: PathBuf,
    /// The seal certificate chain (PEM, leaf first): EC P-256 or RSA >= 3072.
    /// Give either this and `seal_key`, or `seals`.
    #[serde(default)]
    pub seal_certificate: Option<PathBuf>,
    /// The seal private key: a file (PKCS#8 PEM; keep it readable by the
    /// daemon's user only), or a key in a hardware security module named by a
    /// PKCS#11 URI (RFC 7512), e.g. `pkcs11:token=ozg-seal;object=seal`, with
    /// `[pki.pkcs11]` saying which module and PIN.
    #[serde(default)]
    pub seal_key: Option<PathBuf>,
    /// A seal rotation instead of `seal_certificate` and `seal_key`:
    /// `seals = [{ certificate, key }, { certificate, key, from = "RFC 3339" }]`.
    /// Each seal signs from `from` (default: its notBefore) until its
    /// notAfter or until a later one takes over; the switch happens while
    /// running and is audited (`seal_switched`).
    #[serde(default)]
    pub seals: Vec<SealWindow>,
    /// The PKCS#11 module and PIN for a seal key on a token.
    #[serde(default)]
    pub pkcs11: Option<Pkcs11Config>,
    /// The privacy key (a file of 64 hex digits, `openssl rand -hex 32`): keys
    /// the part hashes of audit records and seals the answers kept for
    /// idempotent replays, so that a copy of the data directory cannot confirm
    /// guesses about Antragsdaten. Must lie outside the data directory; back it
    /// up apart from it.
    pub privacy_key: PathBuf,
    /// Seal certificates used before a rotation (PEM files). `audit verify` accepts
    /// checkpoints signed by these and by the configured seals (`seal_certificate`
    /// or `seals`) only; keep every seal the gateway ever signed with here or
    /// there, expired ones included.
    #[serde(default)]
    pub previous_seal_certificates: Vec<PathBuf>,
    /// Warn this long before a certificate expires.
    #[serde(with = "humantime_serde", default = "default_expiry_warning")]
    pub expiry_warning: Duration,
    /// Certificate revocation lists, held against portal and operator client
    /// certificates (at every connection) and the targets' encryption
    /// certificates (at start and at every refresh): files (PEM, one or more
    /// CRLs, or DER; relative to this file) or `https://` URLs. Empty (the
    /// default): no revocation checking. Otherwise every CA that issues a
    /// certificate the gateway checks needs its CRL here — a certificate whose
    /// CA has none is refused, its revocation status being unknown. A CRL that
    /// cannot be loaded at start is a config error; one past its nextUpdate is
    /// used all the same and warned about loudly.
    #[serde(default)]
    pub crls: Vec<String>,
    /// How often the CRLs are loaded again (files re-read, URLs fetched); one
    /// that fails keeps its last good version. At least one second.
    #[serde(with = "humantime_serde", default = "default_crl_refresh")]
    pub crl_refresh: Duration,
    /// CA certificates (PEM) the certificates of the `https://` CRL servers must
    /// chain to (only these are trusted); required when `crls` holds a URL.
    #[serde(default)]
    pub crl_server_ca: Option<PathBuf>,
}

/// One of a target's encryption certificates (`certificates = [{ file, from }]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateWindow {
    /// The certificate (PEM).
    pub file: PathBuf,
    /// When it takes over (RFC 3339); default: its notBefore. It is used
    /// from then until its notAfter, or until a later one takes over.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<time::OffsetDateTime>,
}

/// One seal of a rotation (`pki.seals = [{ certificate, key, from }]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealWindow {
    /// The seal certificate chain (PEM, leaf first).
    pub certificate: PathBuf,
    /// Its private key: a PKCS#8 PEM file or a `pkcs11:` URI (as `seal_key`).
    pub key: PathBuf,
    /// When it takes over (RFC 3339); default: its notBefore.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub from: Option<time::OffsetDateTime>,
}

/// Whether a seal key (`pki.seal_key`, `pki.seals[i].key`) is a PKCS#11 URI
/// rather than a file.
pub fn is_pkcs11_uri(value: &Path) -> bool {
    value.to_str().is_some_and(|s| s.starts_with("pkcs11:"))
}

/// `[pki.pkcs11]`: how the gateway reaches the token its seal key is on.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The vendor's PKCS#11 module (a shared library), e.g.
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The user PIN; write `"${OZG_HSM_PIN}"` and set it in the daemon's
    /// environment rather than in this file. Without it the gateway does not
    /// log in (tokens with a protected authentication path).
    #[serde(default)]
    pub pin: Option<String>,
    /// Sessions kept open for signing, each used by one signature at a time.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("pin", &self.pin.as_ref().map(|_| "(set)"))
            .field("sessions", &self.sessions)
            .finish()
    }
}

fn default_sessions() -> usize {
    4
}

fn default_expiry_warning() -> Duration {
    Duration::from_secs(30 * 86400)
}

fn default_crl_refresh() -> Duration {
    Duration::from_secs(3600)
}

/// Where a CRL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlSource {
    File(PathBuf),
    Https(String),
}

impl std::fmt::Display for CrlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrlSource::File(p) => write!(f, "{}", p.display()),
            CrlSource::Https(url) => f.write_str(url),
        }
    }
}

impl CrlSource {
    /// An entry of `pki.crls`: an `https://` URL or a file; other URLs are refused.
    pub fn parse(entry: &str) -> Result<CrlSource, String> {
        if entry.starts_with("https://") {
            Ok(CrlSource::Https(entry.to_owned()))
        } else if entry.contains("://") {
            Err(format!(
                "{entry:?} is neither a file nor an https:// URL (TLS everywhere a network is crossed)"
            ))
        } else if entry.trim().is_empty() {
            Err("an empty entry".into())
        } else {
            Ok(CrlSource::File(entry.into()))
        }
    }
}

impl PkiConfig {
    /// The seals as configured: `seal_certificate` + `seal_key` as one seal
    /// without a `from`, or the `seals` rotation; else the key at fault and
    /// what is wrong (both forms, neither, or half of one).
    pub fn seal_windows(&self) -> Result<Vec<SealWindow>, (&'static str, &'static str)> {
        let rotation = !self.seals.is_empty();
        match (&self.seal_certificate, &self.seal_key, rotation) {
            (Some(certificate), Some(key), false) => Ok(vec![SealWindow {
                certificate: certificate.clone(),
                key: key.clone(),
                from: None,
            }]),
            (None, None, true) => Ok(self.seals.clone()),
            (None, None, false) => Err((
                "pki.seal_certificate",
                "no seal: give seal_certificate and seal_key, or seals",
            )),
            (_, _, true) => Err((
                "pki.seals",
                "both seal_certificate/seal_key and seals are given",
            )),
            (Some(_), None, false) => Err(("pki.seal_key", "seal_certificate needs its seal_key")),
            (None, Some(_), false) => Err((
                "pki.seal_certificate",
                "seal_key needs its seal_certificate",
            )),
        }
    }

    /// Every seal certificate the gateway may have signed with: those in use
    /// or scheduled, and `previous_seal_certificates`.
    pub fn all_seal_certificates(&self) -> Vec<&Path> {
        let listed = self.seal_certificate.iter().map(PathBuf::as_path);
        let rotation = self.seals.iter().map(|s| s.certificate.as_path());
        let previous = self.previous_seal_certificates.iter().map(PathBuf::as_path);
        listed.chain(rotation).chain(previous).collect()
    }

    /// Makes relative file paths relative to `base` (the config file's directory).
    pub(super) fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.trust_anchors);
        self.seal_certificate.iter_mut().for_each(fix);
        if let Some(key) = self.seal_key.as_mut().filter(|k| !is_pkcs11_uri(k)) {
            fix(key);
        }
        for s in &mut self.seals {
            fix(&mut s.certificate);
            if !is_pkcs11_uri(&s.key) {
                fix(&mut s.key);
            }
        }
        if let Some(p) = &mut self.pkcs11 {
            fix(&mut p.module);
        }
        fix(&mut self.privacy_key);
        self.previous_seal_certificates.iter_mut().for_each(fix);
        if let Some(p) = &mut self.crl_server_ca {
            fix(p);
        }
        for entry in &mut self.crls {
            if let Ok(CrlSource::File(p)) = CrlSource::parse(entry) {
                if p.is_relative() {
                    *entry = base.join(p).display().to_string();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_entries_are_files_or_https_urls() {
        assert_eq!(
            CrlSource::parse("https://pki.example/ca.crl"),
            Ok(CrlSource::Https("https://pki.example/ca.crl".into()))
        );
        assert_eq!(
            CrlSource::parse("certs/ca.crl"),
            Ok(CrlSource::File("certs/ca.crl".into()))
        );
        assert!(CrlSource::parse("http://pki.example/ca.crl")
            .unwrap_err()
            .contains("https://"));
        assert!(CrlSource::parse(" ").is_err());
    }

    #[test]
    fn a_seal_is_given_one_way_or_the_other_and_whole() {
        let pki = |seal: &str| {
            toml::from_str::<PkiConfig>(&format!(
                "trust_anchors = \"ca.pem\"\nprivacy_key = \"p.key\"\n{seal}"
            ))
            .unwrap()
        };
        let one = pki("seal_certificate = \"s.pem\"\nseal_key = \"s.key\"");
        let w = one.seal_windows().unwrap();
        assert_eq!((w.len(), w[0].from), (1, None));
        let two = pki("seals = [{ certificate = \"a.pem\", key = \"a.key\" }, { certificate = \"b.pem\", key = \"b.key\", from = \"2027-01-15T06:00:00Z\" }]");
        assert_eq!(two.seal_windows().unwrap().len(), 2);
        assert_eq!(two.all_seal_certificates().len(), 2);
        let fault = |seal: &str| pki(seal).seal_windows().unwrap_err().0;
        assert_eq!(fault(""), "pki.seal_certificate");
        assert_eq!(fault("seal_certificate = \"s.pem\""), "pki.seal_key");
        assert_eq!(fault("seal_key = \"s.key\""), "pki.seal_certificate");
        assert_eq!(
            fault("seal_key = \"s.key\"\nseals = [{ certificate = \"a.pem\", key = \"a.key\" }]"),
            "pki.seals"
        );
    }
}
