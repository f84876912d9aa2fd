//! From a parsed [`Config`] to everything the daemon runs with: keys, certificates,
//! TLS, schemas, portals and the routing table — checked, with every problem
//! collected and named (this is what `ozg-gateway config check` prints).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{RecipientCert, SealKey, TrustAnchors};

use crate::config::{Config, ConfigError, ConfigErrors};
use crate::core::engine::TargetRuntime;
use crate::listen::identity::{Pin, Portals};
use crate::listen::tls::{self, PeerCheck};
use crate::model::portal::Portal;
use crate::model::routing::{Pattern, PatternSet, Router};

/// The organisation every subject of a demo PKI (`ozg-gateway demo-pki`) carries:
/// how the daemon recognises demo keys and warns about them.
pub const DEMO_MARK: &str = "ozg-gateway DEMO ONLY";

/// Whether a certificate subject belongs to a demo PKI.
pub fn is_demo_subject(subject: &str) -> bool {
    subject.contains(DEMO_MARK)
}

/// Everything loaded and checked.
pub struct Setup {
    pub config: Config,
    pub portals: Portals,
    pub router: Router,
    pub targets: BTreeMap<String, Arc<RecipientCert>>,
    /// Adapters, retry policies and limits of the targets, for the delivery engine.
    pub deliveries: Vec<Arc<TargetRuntime>>,
    pub seal: Arc<SealKey>,
    pub schemas: HashMap<String, Arc<jsonschema::Validator>>,
    /// XML Schemas by Leistung (XML data).
    pub xsds: HashMap<String, Arc<crate::core::intake::xsd::XsdSchema>>,
    pub ingest_tls: Arc<rustls::ServerConfig>,
    pub peer_check: PeerCheck,
    /// Certificates whose expiry is watched (log warnings, metrics).
    pub watched: Vec<Watched>,
    /// Things an operator must know but that do not stop the start (demo keys, expiry).
    pub warnings: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn key_file_warning(path: &Path, warnings: &mut Vec<String>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                warnings.push(format!(
                    "key file {} is readable by users other than its owner (mode {:o}); run `chmod 600` on it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
    }
}

/// A certificate whose expiry the daemon watches (seal, TLS, targets).
#[derive(Debug, Clone)]
pub struct Watched {
    /// e.g. `seal`, `ingest-tls`, `target:dms`.
    pub label: String,
    pub cert: Certificate,
}

/// Warnings for watched certificates that expire within `window` of `now`.
pub fn expiry_warnings(
    watched: &[Watched],
    window: std::time::Duration,
    now: SystemTime,
) -> Vec<String> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    watched
        .iter()
        .filter(|w| w.cert.not_after() - now < window.as_secs() as i64)
        .map(|w| {
            format!(
                "{} certificate {:?} expires on {}; renew it",
                w.label,
                w.cert.subject(),
                w.cert.not_after_rfc3339()
            )
        })
        .collect()
}

/// The pins configured for a portal or operator (`certificate` file, `certificate_sha256`,
/// `subject`); problems go to `errors`, and having none at all is one.
#[allow(clippy::too_many_arguments)]
fn pins(
    config: &Config,
    kind: &str,
    id: &str,
    at: &dyn Fn(&str) -> String,
    certificate: &Option<std::path::PathBuf>,
    sha256: &Option<String>,
    subject: &Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Pin> {
    let mut out = Vec::new();
    if let Some(path) = certificate {
        match read(path).and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string())) {
            Ok(c) => out.push(Pin::Fingerprint(c.sha256_hex())),
            Err(e) => errors.push(config.error(
                at("certificate"),
                e,
                format!("give the {kind}'s client certificate as PEM"),
            )),
        }
    }
    if let Some(fp) = sha256 {
        let fp = fp.replace(':', "").to_ascii_lowercase();
        if fp.len() == 64 && fp.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push(Pin::Fingerprint(fp));
        } else {
            errors.push(config.error(
                at("certificate_sha256"),
                "not a SHA-256 fingerprint",
                "write 64 hex digits, e.g. from `openssl x509 -noout -fingerprint -sha256`",
            ));
        }
    }
    if let Some(subject) = subject {
        out.push(Pin::Subject(subject.clone()));
    }
    if certificate.is_none() && sha256.is_none() && subject.is_none() {
        errors.push(config.error(
            at("certificate"),
            format!("{kind} {id:?} has no certificate, certificate_sha256 or subject"),
            format!("set one of them so the gateway can recognise the {kind}"),
        ));
    }
    out
}

/// Loads and checks everything; returns all problems at once.
pub fn setup(config: Config) -> Result<Setup, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut warnings = Vec::new();
    let now = SystemTime::now();
    let window = config.pki.expiry_warning;
    let mut watched = Vec::new();

    for p in config.store.check() {
        errors.push(config.error(p.key, p.problem, p.fix));
    }
    if !config.admin.listen.ip().is_loopback() {
        errors.push(config.error(
            "admin.listen",
            format!(
                "{} is not a loopback address; the admin listener has no TLS",
                config.admin.listen
            ),
            "bind it to 127.0.0.1 or ::1 and reach it through a TLS-terminating proxy",
        ));
    }
    if let Some(url) = &config.ingest.public_url {
        if !url.starts_with("https://") {
            errors.push(config.error(
                "ingest.public_url",
                format!("{url:?} is not an https:// URL"),
                "write e.g. \"https://gateway.example:8443\"",
            ));
        }
    }

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
                key_file_warning(&config.pki.seal_key, &mut warnings);
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

    let tls = match tls::server_config(
        &config.ingest.certificate,
        &config.ingest.key,
        &config.ingest.client_ca,
    ) {
        Ok(t) => {
            key_file_warning(&config.ingest.key, &mut warnings);
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

    let mut targets = BTreeMap::new();
    for (id, t) in &config.targets {
        let key = format!("targets.{id}.certificate");
        let cert = read(&t.certificate)
            .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()));
        match (cert, &trust) {
            (Ok(cert), Some(trust)) => match trust.verify_recipient(cert.der(), &[], now) {
                Ok(r) => {
                    watched.push(Watched {
                        label: format!("target:{id}"),
                        cert: r.certificate().clone(),
                    });
                    targets.insert(id.clone(), Arc::new(r));
                }
                Err(e) => errors.push(config.error(key, e.to_string(), "use the target's encryption certificate (RSA >= 3072 or P-256) issued under pki.trust_anchors")),
            },
            (Err(e), _) => errors.push(config.error(key, e, "give the target's encryption certificate as PEM")),
            (Ok(_), None) => {}
        }
    }

    let d = &config.delivery;
    if let Some(p) = d.retry.problem() {
        errors.push(config.error(
            "delivery.retry",
            p,
            "see the defaults in config/gateway.toml",
        ));
    }
    if d.concurrency == 0 {
        errors.push(config.error("delivery.concurrency", "must be at least 1", "use e.g. 8"));
    }
    if d.breaker.failures == 0
        || d.breaker.open_for.is_zero()
        || d.breaker.max_open_for < d.breaker.open_for
    {
        errors.push(config.error(
            "delivery.breaker",
            "failures must be at least 1, open_for longer than 0s and max_open_for at least open_for",
            "use e.g. failures = 5, open_for = \"30s\", max_open_for = \"10m\"",
        ));
    }
    let mut deliveries = Vec::new();
    for (id, t) in &config.targets {
        let policy = d.retry.with(&t.retry);
        if let Some(p) = policy.problem() {
            errors.push(config.error(
                format!("targets.{id}.retry"),
                p,
                "correct the override or remove it",
            ));
        }
        if t.concurrency == Some(0) {
            errors.push(config.error(
                format!("targets.{id}.concurrency"),
                "must be at least 1",
                "remove it to use delivery.concurrency",
            ));
        }
        match t.adapter.settings().build() {
            Ok(adapter) => deliveries.push(Arc::new(TargetRuntime {
                id: id.clone(),
                adapter,
                policy,
                breaker: d.breaker,
                concurrency: t.concurrency.unwrap_or(d.concurrency).max(1),
                attempt_timeout: d.attempt_timeout,
            })),
            Err(e) => errors.push(config.error(format!("targets.{id}.adapter"), e.problem, e.fix)),
        }
    }

    let mut router = Router::default();
    for (i, r) in config.routes.iter().enumerate() {
        let at = |k: &str| format!("routes[{i}].{k}");
        let l = Pattern::parse(&r.leistung).map_err(|e| {
            errors.push(config.error(
                at("leistung"),
                e,
                "write a Leistungsschlüssel, a prefix ending in `*`, or `*`",
            ))
        });
        let d = Pattern::parse(&r.destination).map_err(|e| {
            errors.push(config.error(
                at("destination"),
                e,
                "write a destination, a prefix ending in `*`, or `*`",
            ))
        });
        if r.targets.is_empty() {
            errors.push(config.error(
                at("targets"),
                "no targets",
                "name at least one target from [targets]",
            ));
        }
        for t in &r.targets {
            if !config.targets.contains_key(t) {
                errors.push(config.error(
                    at("targets"),
                    format!("unknown target {t:?}"),
                    format!(
                            "define [targets.{t}] or use one of: {}",
                            config
                                .targets
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                ));
            }
        }
        if let (Ok(l), Ok(d)) = (l, d) {
            router.add(l, d, r.targets.clone());
        }
    }

    let mut portals = Portals::default();
    let mut seen = std::collections::HashSet::new();
    for (i, p) in config.portals.iter().enumerate() {
        let at = |k: &str| format!("portals[{i}].{k}");
        if !seen.insert(p.id.clone()) {
            errors.push(config.error(
                at("id"),
                format!("portal id {:?} is used twice", p.id),
                "give every portal its own id",
            ));
        }
        let patterns = |list: &[String], key: &str, errors: &mut Vec<ConfigError>| {
            PatternSet(
                list.iter()
                    .filter_map(|s| {
                        Pattern::parse(s)
                            .map_err(|e| {
                                errors.push(config.error(
                                    at(key),
                                    e,
                                    "write a value, a prefix ending in `*`, or `*`",
                                ))
                            })
                            .ok()
                    })
                    .collect(),
            )
        };
        let portal = Arc::new(Portal {
            id: p.id.clone(),
            leistungen: patterns(&p.leistungen, "leistungen", &mut errors),
            destinations: patterns(&p.destinations, "destinations", &mut errors),
        });
        for pin in pins(
            &config,
            "portal",
            &p.id,
            &at,
            &p.certificate,
            &p.certificate_sha256,
            &p.subject,
            &mut errors,
        ) {
            portals.add_portal(pin, portal.clone());
        }
    }

    for (i, o) in config.operators.iter().enumerate() {
        let at = |k: &str| format!("operators[{i}].{k}");
        let id: Arc<str> = Arc::from(o.id.as_str());
        for pin in pins(
            &config,
            "operator",
            &o.id,
            &at,
            &o.certificate,
            &o.certificate_sha256,
            &o.subject,
            &mut errors,
        ) {
            portals.add_operator(pin, id.clone());
        }
    }

    let mut schemas = HashMap::new();
    let mut xsds = HashMap::new();
    for (leistung, l) in &config.leistungen {
        let Some(path) = &l.schema else { continue };
        let key = format!("leistungen.{leistung}.schema");
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xsd"))
        {
            match crate::core::intake::xsd::XsdSchema::load(path) {
                Ok(x) => {
                    xsds.insert(leistung.clone(), Arc::new(x));
                }
                Err(e) => errors.push(config.error(
                    key,
                    e,
                    "give an XML Schema (.xsd) that libxml2 can compile",
                )),
            }
            continue;
        }
        let schema = read(path).and_then(|b| {
            serde_json::from_slice::<serde_json::Value>(&b)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))
        });
        match schema {
            Ok(schema) => match jsonschema::validator_for(&schema) {
                Ok(v) => {
                    schemas.insert(leistung.clone(), Arc::new(v));
                }
                Err(e) => errors.push(config.error(
                    key,
                    format!("not a valid JSON Schema: {}", e.masked()),
                    "fix the schema file",
                )),
            },
            Err(e) => errors.push(config.error(
                key,
                e,
                "give a JSON Schema (.json) or an XML Schema (.xsd) file",
            )),
        }
    }

    match (errors.is_empty(), seal, tls) {
        (true, Some(seal), Some((ingest_tls, peer_check))) => {
            warnings.extend(expiry_warnings(&watched, window, now));
            warnings.dedup();
            Ok(Setup {
                config,
                portals,
                router,
                targets,
                deliveries,
                seal,
                schemas,
                xsds,
                ingest_tls,
                peer_check,
                watched,
                warnings,
            })
        }
        _ => Err(ConfigErrors(errors)),
    }
}
