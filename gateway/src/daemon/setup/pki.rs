//! The PKI: trust anchors, the seal key, earlier seals, the ingest listener's TLS.

use std::sync::Arc;

use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{SealKey, TrustAnchors};

use super::{is_demo_subject, key_file_warning, read, Checks, Watched};
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

/// The seal key and its certificate, chaining to the trust anchors now.
pub(super) fn seal_key(c: &mut Checks, trust: &Option<TrustAnchors>) -> Option<Arc<SealKey>> {
    let config = c.config;
    let now = c.now;
    let errors = &mut c.errors;
    let warnings = &mut c.warnings;
    let watched = &mut c.watched;
    let seal = match (
        read(&config.pki.seal_certificate),
        read(&config.pki.seal_key),
    ) {
        (Ok(cert), Ok(key)) => match SealKey::from_pem(&cert, &key) {
            Ok(seal) => {
                if let Some(trust) = &trust {
                    if let Err(e) = trust.verify_signer(&seal.chain()[0], &seal.chain()[1..], now) {
                        errors.push(config.error("pki.seal_certificate", e.to_string(), "use a seal certificate issued under pki.trust_anchors that is valid now"));
                    }
                }
                watched.push(Watched {
                    label: "seal".into(),
                    cert: seal.certificate().clone(),
                });
                if is_demo_subject(seal.certificate().subject()) {
                    warnings.push(
                        "DEMO ONLY seal key in use: seals made with it prove nothing.".into(),
                    );
                }
                key_file_warning(&config.pki.seal_key, warnings);
                Some(Arc::new(seal))
            }
            Err(e) => {
                errors.push(config.error(
                    "pki.seal_key",
                    e.to_string(),
                    "give the PKCS#8 key that belongs to pki.seal_certificate",
                ));
                None
            }
        },
        (Err(e), _) => {
            errors.push(config.error(
                "pki.seal_certificate",
                e,
                "give the seal certificate chain (PEM, leaf first)",
            ));
            None
        }
        (_, Err(e)) => {
            errors.push(config.error(
                "pki.seal_key",
                e,
                "give the seal's private key (PKCS#8 PEM)",
            ));
            None
        }
    };
    seal
}

/// The ingest listener's TLS: server certificate and key, and the client CA.
pub(super) fn ingest_tls(c: &mut Checks) -> Option<(Arc<rustls::ServerConfig>, PeerCheck)> {
    let config = c.config;
    let errors = &mut c.errors;
    let warnings = &mut c.warnings;
    let watched = &mut c.watched;
    let tls = match tls::server_config(
        &config.ingest.certificate,
        &config.ingest.key,
        &config.ingest.client_ca,
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
