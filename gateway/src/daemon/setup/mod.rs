//! From a parsed [`Config`] to everything the daemon runs with: keys, certificates,
//! CRLs, TLS, schemas, portals and the routing table — checked, with every problem
//! collected and named (this is what `ozg-gateway config check` prints).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::RecipientCert;

use crate::config::{Config, ConfigError, ConfigErrors};
use crate::core::engine::TargetRuntime;
use crate::core::privacy::PrivacyKey;
use crate::daemon::crl::Revocation;
use crate::listen::identity::Portals;
use crate::listen::tls::PeerCheck;
use crate::model::routing::Router;

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
    /// Targets with several certificates and when each is used.
    pub rotations: BTreeMap<String, Vec<crate::core::intake::rotation::KeyWindow>>,
    /// Adapters, retry policies and limits of the targets, for the delivery engine.
    pub deliveries: Vec<Arc<TargetRuntime>>,
    /// The seal in use, and in a rotation the next ones.
    pub seal: Arc<crate::core::intake::rotation::Seals>,
    /// Keys what the store keeps about content (see [`crate::core::privacy`]).
    pub privacy: Arc<PrivacyKey>,
    pub schemas: HashMap<String, Arc<jsonschema::Validator>>,
    /// XML Schemas by Leistung (XML data).
    pub xsds: HashMap<String, Arc<crate::core::intake::xsd::XsdSchema>>,
    pub ingest_tls: Arc<rustls::ServerConfig>,
    pub peer_check: PeerCheck,
    /// The CRLs in force and how to refresh them.
    pub revocation: Revocation,
    /// Certificates whose expiry is watched (log warnings, metrics).
    pub watched: Vec<Watched>,
    /// Things an operator must know but that do not stop the start (demo keys, expiry).
    pub warnings: Vec<String>,
    /// The FIT-Connect Zustelldienst's clients and destinations, when configured.
    pub fitconnect: Option<fitconnect::FitSetup>,
    /// Which tenant each target and portal belongs to, for the operator API.
    pub directory: crate::core::operator::Directory,
    /// The time-stamping authority of the checkpoints (`[audit.timestamp]`).
    pub tsa: Option<Arc<crate::core::audit::stamp::Tsa>>,
}

impl Setup {
    /// What each target receives in its envelope.
    /// Where each portal's replies go (portals without replies left out).
    pub fn reply_routes(&self) -> BTreeMap<String, crate::model::portal::ReplyRoute> {
        self.config
            .portals
            .iter()
            .filter_map(|p| Some((p.id.clone(), p.reply_route()?)))
            .collect()
    }

    /// The targets that receive envelope format 1 (`envelope_version = 1`).
    pub fn format_1_targets(&self) -> std::collections::BTreeSet<String> {
        self.config
            .targets
            .iter()
            .filter(|(_, t)| t.envelope_version == 1)
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn payloads(&self) -> BTreeMap<String, crate::model::routing::Payload> {
        self.config
            .targets
            .iter()
            .map(|(id, t)| (id.clone(), t.payload))
            .collect()
    }
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "file not found: {} (relative paths are relative to the config file's directory)",
            path.display()
        ),
        _ => format!("cannot read {}: {e}", path.display()),
    })
}

pub(super) fn key_file_warning(path: &Path, warnings: &mut Vec<String>) {
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

mod clients;
pub mod fitconnect;
mod pki;
mod targets;

use clients::{clients, routes, unrouted_leistungen};
use pki::{
    ingest_tls, previous_seals, privacy_key, revocation, seals, time_stamper, trust_anchors,
};
use targets::{delivery_runtimes, leistung_schemas, target_certificates};

/// What the checks collect: every problem (to print them all at once), the
/// warnings, and the certificates whose expiry is watched.
pub(super) struct Checks<'a> {
    pub(super) config: &'a Config,
    pub(super) now: SystemTime,
    pub(super) errors: Vec<ConfigError>,
    pub(super) warnings: Vec<String>,
    pub(super) watched: Vec<Watched>,
}

/// Loads and checks everything; returns all problems at once.
pub fn setup(config: Config) -> Result<Setup, ConfigErrors> {
    let mut c = Checks {
        config: &config,
        now: SystemTime::now(),
        errors: Vec::new(),
        warnings: Vec::new(),
        watched: Vec::new(),
    };
    listeners_and_store(&mut c);
    let trust = trust_anchors(&mut c);
    previous_seals(&mut c);
    let seal = seals(&mut c, &trust);
    let privacy = privacy_key(&mut c);
    let tsa = time_stamper(&mut c);
    let revocation = revocation(&mut c, &trust);
    let crls = revocation.ders();
    let tls = ingest_tls(&mut c, &crls);
    let (targets, rotations) = target_certificates(&mut c, &trust, &crls);
    let mut deliveries = delivery_runtimes(&mut c);
    let fitconnect = fitconnect::fitconnect(&mut c, &trust, &crls);
    fitconnect::subscriptions(&mut c);
    deliveries.extend(fitconnect::destination_runtimes(&c, fitconnect.as_ref()));
    let router = routes(&mut c);
    let portals = clients(&mut c);
    unrouted_leistungen(&mut c, &router);
    let (schemas, xsds) = leistung_schemas(&mut c);
    let Checks {
        now,
        errors,
        mut warnings,
        watched,
        ..
    } = c;
    match (errors.is_empty(), seal, privacy, tls) {
        (true, Some(seal), Some(privacy), Some((ingest_tls, peer_check))) => {
            warnings.extend(expiry_warnings(&watched, config.pki.expiry_warning, now));
            warnings.dedup();
            Ok(Setup {
                portals,
                router,
                targets,
                rotations,
                deliveries,
                seal,
                privacy,
                schemas,
                xsds,
                ingest_tls,
                peer_check,
                revocation,
                watched,
                warnings,
                fitconnect,
                directory: crate::core::operator::Directory::of(&config),
                tsa,
                config,
            })
        }
        _ => Err(ConfigErrors(errors)),
    }
}

/// The store, the admin listener's address, the public URL and the validation pool.
fn listeners_and_store(c: &mut Checks) {
    let config = c.config;
    let errors = &mut c.errors;
    for p in config.store.check() {
        errors.push(config.error(p.key, p.problem, p.fix));
    }
    let limits = &config.ingest.limits;
    if limits.memory_budget < limits.max_body {
        errors.push(config.error(
            "ingest.limits.memory_budget",
            format!(
                "{} bytes is less than max_body ({} bytes): no request of the largest allowed size could be read",
                limits.memory_budget.0, limits.max_body.0
            ),
            "make it a multiple of max_body (the default is 256MiB)",
        ));
    }
    if limits
        .portal_rate
        .is_some_and(|r| !(r.is_finite() && r > 0.0))
    {
        errors.push(config.error(
            "ingest.limits.portal_rate",
            "must be a number of submissions a second above 0",
            "e.g. portal_rate = 50, or leave it out for no rate limit",
        ));
    }
    if limits.portal_uploads == 0 {
        errors.push(config.error(
            "ingest.limits.portal_uploads",
            "must be at least 1",
            "the default is 128",
        ));
    }
    if !config.admin.listen.ip().is_loopback() && !config.admin.tls {
        errors.push(config.error(
            "admin.listen",
            format!(
                "{} is not a loopback address, and the admin listener would answer in plain HTTP to anyone who reaches it",
                config.admin.listen
            ),
            "set tls = true in [admin] (HTTPS; operators need their client certificates), or bind it to 127.0.0.1 or ::1",
        ));
    }
    let limits = &config.ingest.limits;
    if limits.validation_concurrency == Some(0) {
        errors.push(config.error(
            "ingest.limits.validation_concurrency",
            "must be at least 1",
            "remove it to run one data check per CPU core at once",
        ));
    }
    if limits.validation_timeout.is_zero() {
        errors.push(config.error(
            "ingest.limits.validation_timeout",
            format!(
                "0 refuses every data part over {} bytes",
                crate::core::intake::check::INLINE_CHECK_BYTES
            ),
            "use e.g. \"30s\"",
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
}
