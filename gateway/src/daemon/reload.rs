//! Taking a changed config while running (SIGHUP, `ozg-gateway reload`).
//!
//! The file is loaded and checked exactly as `config check` does; a config with
//! any problem is refused and the one in force stays. What a reload changes:
//! portals and operators (who they are, what they may submit), Leistungen and
//! their schemas, routes, targets (certificates, adapters, retry, breaker,
//! concurrency; new targets start, removed ones stop and their waiting
//! deliveries stay in the store), the request limits, and the ingest listener's
//! certificate and key (renewed: new connections get the new one). What needs a
//! restart — listeners, the ingest listener's client CA, the store, the PKI section (seal,
//! privacy key, CRLs), logging, audit and retention settings, the connection
//! and memory caps — is compared with the running config; a change there is
//! refused with the keys named. A reload that took effect is audited.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::core::engine::Running;
use crate::core::intake::check::CheckRules;
use crate::core::intake::validate::DataLimits;
use crate::core::intake::{Intake, Routes};
use crate::daemon::setup::Setup;
use crate::listen::identity::Portals;
use crate::listen::portal::Ingest;
use crate::model::audit::AuditEvent;
use crate::store::Store;

/// What a reload swaps, and the config in force.
pub struct Reloader {
    pub source: PathBuf,
    pub current: tokio::sync::Mutex<Config>,
    pub intake: Arc<Intake>,
    pub ingest: Arc<Ingest>,
    pub portals: Arc<ArcSwap<Portals>>,
    pub engine: Arc<Running>,
    pub store: Arc<dyn Store>,
    /// The ingest listener's TLS (a renewed certificate is taken).
    pub tls: Arc<ArcSwap<rustls::ServerConfig>>,
    pub metrics: Arc<crate::core::metrics::Metrics>,
    /// The operator API's view of tenants and targets.
    pub operations: Arc<crate::core::operator::Operations>,
    /// The registered targets and routes last applied (their rows' digest):
    /// another instance of a cluster may have changed them.
    pub registered_seen: std::sync::Mutex<Option<String>>,
}

/// The sections and keys that are read at start only: (key, its value as text).
fn start_only(c: &Config) -> Vec<(&'static str, String)> {
    let l = &c.ingest.limits;
    // Debug renderings compare the values (paths, addresses, durations) as
    // they were parsed; the config types carry no equality of their own.
    vec![
        ("store", format!("{:?}", c.store)),
        ("ingest.listen", format!("{:?}", c.ingest.listen)),
        ("ingest.public_url", format!("{:?}", c.ingest.public_url)),
        ("ingest.client_ca", format!("{:?}", c.ingest.client_ca)),
        (
            "ingest.limits.max_connections",
            format!("{:?}", l.max_connections),
        ),
        (
            "ingest.limits.memory_budget",
            format!("{:?}", l.memory_budget),
        ),
        (
            "ingest.limits.validation_concurrency",
            format!("{:?}", l.validation_slots()),
        ),
        (
            "ingest.limits.validation_timeout",
            format!("{:?}", l.validation_timeout),
        ),
        ("admin", format!("{:?}", c.admin)),
        // The XTA listener, its overdue limit and list size (message-box targets
        // and their readers are reloaded like other targets and clients).
        ("xta", format!("{:?}", c.xta)),
        ("pki", format!("{:?}", c.pki)),
        ("log", format!("{:?}", c.log)),
        ("audit", format!("{:?}", c.audit)),
        ("retention", format!("{:?}", c.retention)),
        (
            "delivery.shutdown_grace",
            format!("{:?}", c.delivery.shutdown_grace),
        ),
    ]
}

/// The start-only keys whose value differs between `old` and `new`.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    start_only(old)
        .into_iter()
        .zip(start_only(new))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((key, _), _)| key)
        .collect()
}

/// Ids that are in `new` but not `old`, and in `old` but not `new`.
fn diff<'a>(
    old: impl IntoIterator<Item = &'a str>,
    new: impl IntoIterator<Item = &'a str>,
) -> serde_json::Value {
    let old: std::collections::BTreeSet<&str> = old.into_iter().collect();
    let new: std::collections::BTreeSet<&str> = new.into_iter().collect();
    serde_json::json!({
        "added": new.difference(&old).collect::<Vec<_>>(),
        "removed": old.difference(&new).collect::<Vec<_>>(),
    })
}

impl Reloader {
    /// Loads, checks and applies the config file (with the targets and routes
    /// registered over the operator API); `Ok` says what changed.
    pub async fn reload(&self) -> Result<serde_json::Value, String> {
        // One reload at a time: the lock on the config in force.
        let mut current = self.current.lock().await;
        let (targets, routes) = crate::daemon::registry::registered(self.store.as_ref())
            .await
            .map_err(|e| {
                format!("the config in force stays: the registered targets and routes cannot be read: {e}")
            })?;
        let source = self.source.clone();
        let checked = tokio::task::spawn_blocking(move || {
            let mut config = Config::load(&source).map_err(|e| e.to_string())?;
            let set_aside = crate::config::registered::merge(&mut config, &targets, &routes);
            crate::daemon::setup::setup(config)
                .map(|s| (s, set_aside))
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| "the config check failed to run".to_owned())?;
        let (setup, set_aside) = match checked {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("reload refused; the config in force stays: {e}");
                return Err(format!("the config in force stays: {e}"));
            }
        };
        let restart = needs_restart(&current, &setup.config);
        if !restart.is_empty() {
            let why = format!(
                "the config in force stays: these keys are read at start only and changed: {}; restart the daemon for them",
                restart.join(", ")
            );
            tracing::error!("reload refused: {why}");
            return Err(why);
        }
        for w in setup.warnings.iter().chain(&set_aside) {
            tracing::warn!("{w}");
        }
        let changes = self.apply(&mut current, setup);
        let config_sha256 = crate::daemon::config_sha256(&self.source);
        if let Err(e) = self
            .store
            .audit(AuditEvent::reloaded(&config_sha256, changes.clone()))
            .await
        {
            tracing::error!(error = %e, "the reload took effect but could not be audited");
        }
        tracing::info!(%changes, "config reloaded");
        Ok(changes)
    }

    /// Puts a checked setup in force (portals, operators, schemas, routes,
    /// targets, limits, the ingest certificate); says what changed.
    pub(super) fn apply(&self, current: &mut Config, setup: Setup) -> serde_json::Value {
        let new = &setup.config;
        let changes = serde_json::json!({
            "portals": diff(current.portals.iter().map(|p| p.id.as_str()), new.portals.iter().map(|p| p.id.as_str())),
            "operators": diff(current.operators.iter().map(|o| o.id.as_str()), new.operators.iter().map(|o| o.id.as_str())),
            "routes": new.routes.len(),
        });
        let limits = &new.ingest.limits;
        let payloads = setup.payloads();
        let format_1 = setup.format_1_targets();
        let replies = setup.reply_routes();
        self.portals.store(Arc::new(setup.portals));
        self.intake.checks.rules.store(Arc::new(CheckRules {
            limits: DataLimits::of(limits),
            schemas: setup.schemas,
            xsds: setup.xsds,
            reply_types: new.reply_types.keys().cloned().collect(),
        }));
        self.intake.routes.store(Arc::new(Routes {
            payloads,
            format_1,
            replies,
            router: setup.router,
            targets: setup.targets,
            rotations: setup.rotations,
        }));
        self.ingest.limits.store(Arc::new(limits.clone()));
        self.operations
            .directory
            .store(Arc::new(setup.directory.clone()));
        self.tls.store(setup.ingest_tls.clone());
        for w in &setup.watched {
            self.metrics
                .cert_not_after
                .get_or_create(&crate::core::metrics::CertLabels {
                    certificate: w.label.clone(),
                })
                .set(w.cert.not_after());
        }
        let engine = self.engine.reconcile(setup.deliveries);
        let mut changes = changes;
        changes["targets"] = serde_json::json!({
            "started": engine.started, "updated": engine.updated, "stopped": engine.stopped,
        });
        if !engine.stopped.is_empty() {
            tracing::warn!(targets = ?engine.stopped, "targets removed: their waiting deliveries stay in the store until the target is configured again or an operator discards them");
        }
        *current = setup.config;
        changes
    }
}

/// The SIGHUP stream (None where there are no Unix signals or it cannot be had).
#[cfg(unix)]
pub(super) type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(super) type Hangup = Option<()>;

pub(super) fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; use `ozg-gateway reload`");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// Every SIGHUP reloads the config; the outcome is logged (and audited when it
/// took effect).
pub(super) async fn reload_on_hangup(
    hangup: Hangup,
    reloader: Arc<Reloader>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    #[cfg(unix)]
    if let Some(mut hangup) = hangup {
        loop {
            tokio::select! {
                got = hangup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the config");
                    // The outcome is logged by the reload itself.
                    let _ = reloader.reload().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
    let _ = (&hangup, &reloader);
    let _ = shutdown.changed().await;
}
