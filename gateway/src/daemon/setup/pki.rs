//! The PKI: trust anchors, the seal key, earlier seals, the CRLs, the ingest
//! listener's TLS.

use std::sync::Arc;

use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{SealKey, TrustAnchors};
use rustls::pki_types::CertificateRevocationListDer;

use super::targets::{use_of, Use};
use super::{is_demo_subject, key_file_warning, read, Checks, Watched};
use crate::config::{CrlSource, SealWindow};
use crate::core::intake::rotation::{KeyWindow, Seals};
use crate::core::privacy::PrivacyKey;
use crate::daemon::crl::{Loader, Revocation};
use crate::listen::tls::{self, PeerCheck};

/// The trust anchors of the PKI (and a loud warning if it is the demo PKI).
pub(super) fn trust_anchors(c: &mut Checks) -> Option<TrustAnchors> {
    let config = c.config;
    let errors = &mut c.errors;
    let warnings = &mut c.warnings;
    let trust = read(&config.pki.trust_anchors)
        .and_then(|pem| TrustAnchors::from_pem(&pem).map_err(|e| e.to_string()))
        .map_err(|e| {
            errors.push(config.error(
                "pki.trust_anchors",
                e,
                "give a PEM file with the CA certificate(s) of your PKI",
            ))
        })
        .ok();
    if let Some(trust) = &trust {
        for der in trust.certs() {
            if let Ok(c) = Certificate::from_der(der.clone()) {
                if is_demo_subject(c.subject()) {
                    warnings.push(format!(
                        "DEMO ONLY PKI in use ({}): anyone with this repository can forge seals and read envelopes. Never use it in production.",
                        config.pki.trust_anchors.display()
                    ));
                }
            }
        }
    }
    trust
}

/// The seal certificates used before a rotation must at least parse.
pub(super) fn previous_seals(c: &mut Checks) {
    let config = c.config;
    let errors = &mut c.errors;
    for (i, path) in config.pki.previous_seal_certificates.iter().enumerate() {
        let parsed = read(path).and_then(|pem| {
            ozg_adapter_sdk::audit_proof::SealPins::from_pem(&pem).map_err(|e| e.to_string())
        });
        if let Err(e) = parsed {
            errors.push(config.error(
                format!("pki.previous_seal_certificates[{i}]"),
                e,
                "give the PEM certificate of a seal this gateway signed with before (expired ones are fine)",
            ));
        }
    }
}

/// The privacy key: readable, well-formed, and not inside a data directory
/// (a copy of the data must not carry the key that makes it safe to copy).
pub(super) fn privacy_key(c: &mut Checks) -> Option<Arc<PrivacyKey>> {
    let config = c.config;
    let path = &config.pki.privacy_key;
    let fix = "create one outside the data directory: `openssl rand -hex 32 > /etc/ozg-gateway/privacy.key && chmod 600 /etc/ozg-gateway/privacy.key` (README: \"The privacy key\")";
    let key =
        read(path).and_then(|text| PrivacyKey::from_file_text(&text).map_err(|e| e.to_string()));
    let key = match key {
        Ok(key) => key,
        Err(e) => {
            c.errors.push(config.error("pki.privacy_key", e, fix));
            return None;
        }
    };
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    if let Some(file) = canonical(path) {
        for dir in config.store.data_dirs() {
            if canonical(dir).is_some_and(|dir| file.starts_with(dir)) {
                c.errors.push(config.error(
                    "pki.privacy_key",
                    format!("{} lies inside the data directory {}: a copy of the data would carry the key that keeps it from confirming guesses", path.display(), dir.display()),
                    fix,
                ));
                return None;
            }
        }
    }
    key_file_warning(path, &mut c.warnings);
    if key.is_demo() {
        c.warnings.push(format!(
            "DEMO ONLY privacy key in use ({}): anyone with this repository can confirm guesses about what the audit log and stored answers refer to. Never use it in production.",
            path.display()
        ));
    }
    Some(Arc::new(key))
}

/// The seals: `seal_certificate` + `seal_key`, or the `seals` rotation.
/// Each key is read from its file, or found on its token (`pkcs11:` URI) and
/// asked for one signature that must verify with the certificate. A single
/// seal must chain to the trust anchors now; in a rotation, one that takes
/// over later is checked as of then, and an old one past its notAfter may
/// stay listed (never used again).
pub(super) fn seals(c: &mut Checks, trust: &Option<TrustAnchors>) -> Option<Arc<Seals>> {
    let config = c.config;
    let windows = match config.pki.seal_windows() {
        Ok(w) => w,
        Err((key, e)) => {
            c.errors.push(config.error(
                key,
                e,
                "give seal_certificate and seal_key, or seals = [{ certificate = \"FILE\", key = \"KEY\" }, { certificate = \"NEXT\", key = \"NEXT-KEY\", from = \"2027-01-15T00:00:00Z\" }]",
            ));
            return None;
        }
    };
    let rotating = !config.pki.seals.is_empty();
    let now_s = super::targets::epoch_s(c.now);
    let mut loaded = Vec::new();
    let mut complete = true;
    for (i, w) in windows.iter().enumerate() {
        let (cert_at, key_at) = if rotating {
            (
                format!("pki.seals[{i}].certificate"),
                format!("pki.seals[{i}].key"),
            )
        } else {
            ("pki.seal_certificate".to_owned(), "pki.seal_key".to_owned())
        };
        // When it signs, from its certificate alone: an old seal of a
        // rotation past its notAfter is listed for the record and never used
        // again, so its key (perhaps destroyed) is not asked for.
        let from = w.from.as_ref().map(super::targets::takeover);
        let used = read(&w.certificate)
            .ok()
            .and_then(|pem| Certificate::from_pem(&pem).ok())
            .map(|cert| use_of(&cert, from, rotating, c.now));
        if let Some(Ok(None)) = used {
            continue;
        }
        let Some(seal) = seal_key(c, w, &cert_at, &key_at) else {
            complete = false;
            continue;
        };
        let Use {
            start,
            end,
            check_at,
        } = match used {
            Some(Ok(Some(u))) => u,
            Some(Err(e)) => {
                let fix = "give a `from` before the certificate's notAfter";
                c.errors.push(config.error(cert_at, e, fix));
                complete = false;
                continue;
            }
            // The certificate could not be read: `seal_key` said so.
            _ => continue,
        };
        if let Some(trust) = &trust {
            match trust.verify_signer(&seal.chain()[0], &seal.chain()[1..], check_at) {
                Ok(_) => {}
                // An old seal of a rotation: listed for the record only.
                Err(ozg_adapter_sdk::KeyError::Expired { .. }) if rotating => continue,
                Err(e) => {
                    c.errors.push(config.error(
                        cert_at,
                        e.to_string(),
                        "use a seal certificate issued under pki.trust_anchors that is valid now (or, in pki.seals, when it takes over)",
                    ));
                    complete = false;
                    continue;
                }
            }
        }
        loaded.push(KeyWindow {
            cert: Arc::new(seal),
            start,
            end,
        });
    }
    if !complete || trust.is_none() {
        return None;
    }
    gaps_between(c, &loaded);
    let seals = if rotating {
        let Some(seals) = Seals::rotating(loaded, now_s) else {
            c.errors.push(config.error(
                "pki.seals",
                "none of the seals is in use now (each signs from its `from` or notBefore until its notAfter)",
                "list a seal that is valid now",
            ));
            return None;
        };
        seals
    } else {
        Seals::single(loaded.pop()?.cert)
    };
    c.watched.push(Watched {
        label: "seal".into(),
        cert: seals.current().certificate().clone(),
    });
    Some(Arc::new(seals))
}

/// Warns where a seal of a rotation expires before the next one takes over:
/// in between, the expired one goes on signing (nothing else is there), and
/// receivers that check validity refuse what it sealed.
fn gaps_between(c: &mut Checks, windows: &[KeyWindow<SealKey>]) {
    let mut by_start: Vec<_> = windows.iter().collect();
    by_start.sort_by_key(|w| w.start);
    for pair in by_start.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        if earlier.end < later.start {
            let at = |t: i64| crate::model::time::rfc3339_ms(t * 1000);
            c.warnings.push(format!(
                "pki.seals: the seal {:?} expires at {}, before {:?} takes over at {}: in between the expired seal signs and receivers that check validity refuse it; move the next seal's `from` earlier",
                earlier.cert.certificate().subject(),
                at(earlier.end),
                later.cert.certificate().subject(),
                at(later.start)
            ));
        }
    }
}

/// One seal with its key (a file or a token's); errors are recorded under
/// `cert_at` and `key_at`.
fn seal_key(c: &mut Checks, w: &SealWindow, cert_at: &str, key_at: &str) -> Option<SealKey> {
    let config = c.config;
    let cert = match read(&w.certificate) {
        Ok(cert) => cert,
        Err(e) => {
            c.errors.push(config.error(
                cert_at,
                e,
                "give the seal certificate chain (PEM, leaf first)",
            ));
            return None;
        }
    };
    let on_token = crate::config::is_pkcs11_uri(&w.key);
    let loaded = if on_token {
        token_seal(c, &cert, &w.key, key_at)?
    } else {
        let key = match read(&w.key) {
            Ok(key) => key,
            Err(e) => {
                c.errors.push(config.error(
                    key_at,
                    e,
                    "give the seal's private key (PKCS#8 PEM), or a pkcs11: URI of a key on a token",
                ));
                return None;
            }
        };
        SealKey::from_pem(&cert, &key).map_err(|e| e.to_string())
    };
    let seal = match loaded {
        Ok(seal) => seal,
        Err(e) => {
            c.errors.push(config.error(
                key_at,
                e,
                if on_token {
                    format!("name the token key that belongs to {cert_at}")
                } else {
                    format!("give the PKCS#8 key that belongs to {cert_at}")
                },
            ));
            return None;
        }
    };
    if is_demo_subject(seal.certificate().subject()) {
        c.warnings
            .push("DEMO ONLY seal key in use: seals made with it prove nothing.".into());
    }
    if !on_token {
        key_file_warning(&w.key, &mut c.warnings);
    }
    Some(seal)
}

/// The seal whose key is on a token (`[pki.pkcs11]`); `None` when the
/// settings themselves are missing (an error is recorded).
fn token_seal(
    c: &mut Checks,
    cert: &[u8],
    key: &std::path::Path,
    key_at: &str,
) -> Option<Result<SealKey, String>> {
    let config = c.config;
    let Some(p11) = &config.pki.pkcs11 else {
        c.errors.push(config.error(
            "pki.pkcs11",
            format!("{key_at} names a key on a token, but [pki.pkcs11] is missing"),
            "add [pki.pkcs11] with module = \"/path/to/the/vendor's/pkcs11.so\" and pin = \"${OZG_HSM_PIN}\"",
        ));
        return None;
    };
    if p11.sessions == 0 || p11.sessions > 64 {
        c.errors.push(config.error(
            "pki.pkcs11.sessions",
            "must be between 1 and 64",
            "use e.g. 4",
        ));
        return None;
    }
    let ec = match Certificate::from_pem(cert) {
        Ok(crt) => matches!(
            crt.public_key(),
            ozg_adapter_sdk::keys::PublicKey::EcP256 { .. }
        ),
        Err(e) => return Some(Err(e.to_string())),
    };
    let uri = key.to_string_lossy();
    let signer = crate::core::hsm::TokenSigner::open(
        &uri,
        crate::core::hsm::TokenSettings {
            module: Some(&p11.module),
            pin: p11.pin.as_deref(),
            sessions: p11.sessions,
        },
        ec,
    );
    Some(signer.and_then(|s| SealKey::external(cert, Box::new(s)).map_err(|e| e.to_string())))
}

/// The CRLs (`pki.crls`), loaded now: every entry that cannot be loaded is an
/// error; stale ones and CAs without a CRL are warnings.
pub(super) fn revocation(c: &mut Checks, trust: &Option<TrustAnchors>) -> Revocation {
    let config = c.config;
    let pki = &config.pki;
    if !pki.crls.is_empty() && pki.crl_refresh < std::time::Duration::from_secs(1) {
        c.errors.push(config.error(
            "pki.crl_refresh",
            "must be at least one second",
            "use e.g. \"1h\"",
        ));
    }
    let ca_fix = "give the PEM CA certificate(s) the CRL server's certificate chains to";
    let loader = Loader::new(pki.crl_server_ca.as_deref())
        .map_err(|e| c.errors.push(config.error("pki.crl_server_ca", e, ca_fix)))
        .unwrap_or_default();
    // The entries that can be loaded now.
    let mut loadable = Vec::new();
    for (i, entry) in pki.crls.iter().enumerate() {
        match CrlSource::parse(entry) {
            Ok(CrlSource::Https(url)) if pki.crl_server_ca.is_none() => {
                c.errors.push(config.error(
                    "pki.crl_server_ca",
                    format!("{url} is fetched over TLS, but no CA is given to check the server's certificate against"),
                    ca_fix,
                ));
            }
            Ok(source) => loadable.push((i, source)),
            Err(e) => c.errors.push(config.error(
                format!("pki.crls[{i}]"),
                e,
                "give a CRL file (PEM or DER) or an https:// URL",
            )),
        }
    }
    let to_load: Vec<CrlSource> = loadable.iter().map(|(_, s)| s.clone()).collect();
    let loaded = loader.load_all_blocking(&to_load);
    // What loaded is in force (and checks the targets, so that every problem is
    // reported at once); if anything did not, the errors stop the start anyway.
    let mut revocation = Revocation {
        sources: Vec::new(),
        current: Vec::new(),
        loader,
        refresh: pki.crl_refresh,
        trust: trust.clone(),
    };
    for ((i, source), result) in loadable.into_iter().zip(loaded) {
        match result {
            Ok(crls) => {
                revocation.sources.push(source);
                revocation.current.push(crls);
            }
            Err(e) => c.errors.push(config.error(
                format!("pki.crls[{i}]"),
                e,
                "make the CRL readable (a version 2 CRL, PEM or DER) or reachable, or remove the entry",
            )),
        }
    }
    c.warnings.extend(revocation.stale_warnings(c.now));
    if !revocation.sources.is_empty() {
        uncovered_cas(c, &revocation);
    }
    revocation
}

/// Warns about each CA of `ingest.client_ca` and `pki.trust_anchors` that no
/// CRL in force was issued by: the certificates it issues will be refused.
fn uncovered_cas(c: &mut Checks, revocation: &Revocation) {
    let config = c.config;
    for (key, path) in [
        ("ingest.client_ca", &config.ingest.client_ca),
        ("pki.trust_anchors", &config.pki.trust_anchors),
    ] {
        let Ok(chain) = tls::load_chain(path) else {
            continue;
        };
        for der in chain {
            let Ok((_, x)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
                continue;
            };
            let raw = x.subject().as_raw();
            if !revocation
                .current
                .iter()
                .flatten()
                .any(|crl| crl.issuer_der == raw)
            {
                c.warnings.push(format!(
                    "pki.crls holds no CRL of the CA {:?} ({key}): certificates it issues are refused as long as their revocation status is unknown; add its CRL",
                    x.subject().to_string()
                ));
            }
        }
    }
    c.warnings.dedup();
}

/// The ingest listener's TLS: server certificate and key, and the client CA.
pub(super) fn ingest_tls(
    c: &mut Checks,
    crls: &[CertificateRevocationListDer<'static>],
) -> Option<(Arc<rustls::ServerConfig>, PeerCheck)> {
    let config = c.config;
    let errors = &mut c.errors;
    let warnings = &mut c.warnings;
    let watched = &mut c.watched;
    let tls = match tls::server_config(
        &config.ingest.certificate,
        &config.ingest.key,
        &config.ingest.client_ca,
        crls,
    ) {
        Ok(t) => {
            key_file_warning(&config.ingest.key, warnings);
            if let Ok(pem) = read(&config.ingest.certificate) {
                if let Ok(c) = Certificate::from_pem(&pem) {
                    if is_demo_subject(c.subject()) {
                        warnings.push("DEMO ONLY TLS certificate on the ingest listener.".into());
                    }
                    watched.push(Watched {
                        label: "ingest-tls".into(),
                        cert: c,
                    });
                }
            }
            Some(t)
        }
        Err(e) => {
            errors.push(config.error(
                "ingest.certificate",
                e,
                "give the server certificate chain, its PKCS#8 key and the client CA as PEM files",
            ));
            None
        }
    };
    tls
}

/// The time-stamping authority of `[audit.timestamp]`, if configured.
pub(super) fn time_stamper(c: &mut Checks) -> Option<Arc<crate::core::audit::stamp::Tsa>> {
    let config = c.config;
    let t = config.audit.timestamp.as_ref()?;
    if !(t.url.starts_with("https://") || t.url.starts_with("http://")) {
        c.errors.push(config.error(
            "audit.timestamp.url",
            format!("{:?} is not an http:// or https:// URL", t.url),
            "give the TSA's URL, e.g. \"https://tsa.example/tsr\"",
        ));
        return None;
    }
    let trust = match read(&t.anchors)
        .and_then(|pem| TrustAnchors::from_pem(&pem).map_err(|e| e.to_string()))
    {
        Ok(trust) => trust,
        Err(e) => {
            c.errors.push(config.error(
                "audit.timestamp.anchors",
                e,
                "give the CA certificate(s) (PEM) the TSA's certificate chains to",
            ));
            return None;
        }
    };
    let ca = t.server_ca.as_ref().unwrap_or(&t.anchors);
    let client = tls::server_only_client_config(ca).and_then(|tls| {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(t.timeout)
            .build()
            .map_err(|e| e.to_string())
    });
    match client {
        Ok(client) => Some(Arc::new(crate::core::audit::stamp::Tsa {
            url: t.url.clone(),
            client,
            trust,
            retry: t.retry.max(std::time::Duration::from_secs(1)),
        })),
        Err(e) => {
            c.errors.push(config.error(
                "audit.timestamp.server_ca",
                e,
                "give the CA (PEM) of the TSA's HTTPS server certificate",
            ));
            None
        }
    }
}
