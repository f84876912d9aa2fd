//! The daemon: binds the listeners, runs until shut down, shuts down gracefully.
//!
//! [`Gateway::start`] is what `ozg-gateway serve` and the tests call (tests bind
//! port 0 and read the bound addresses back). Shutdown order: stop accepting
//! connections, let open requests finish within a bound, then close the store
//! (its writer drains what was queued: nothing acknowledged is lost).
//!
//! [`setup`] loads and checks the config; [`crl`] loads the CRLs and refreshes
//! them while the daemon runs.

mod admin;
pub mod crl;
mod fitconnect;
mod keys;
pub mod registry;
pub mod reload;
pub mod setup;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::clock::Clock;
use arc_swap::ArcSwap;

use crate::core::intake::check::{CheckRules, DataChecks};
use crate::core::intake::pool::ValidationPool;
use crate::core::intake::validate::DataLimits;
use crate::core::intake::{Intake, Routes};
use crate::core::metrics::{CertLabels, Metrics};
use crate::core::observe::Observe;
use crate::core::operator::Operations;
use crate::core::status::Submissions;
use crate::daemon::setup::Setup;
use crate::listen::portal::Ingest;
use crate::store::{Store, StoreError};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "cannot bind {what} listener to {addr}: {source} (is another process using the port?)"
    )]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Start(String),
}

/// How often (at most) the message boxes are looked through for overdue messages.
const OVERDUE_CHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// A running gateway.
pub struct Gateway {
    pub ingest_addr: SocketAddr,
    /// The XTA listener's address, when `[xta]` is configured.
    pub xta_addr: Option<SocketAddr>,
    /// The FIT-Connect listener's address, when `[fitconnect]` is configured.
    pub fitconnect_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn Store>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The admin listener, stopped after the rest (readiness says draining).
    admin: (watch::Sender<bool>, JoinHandle<()>),
    observe: Arc<Observe>,
    /// Cluster mode: the broker connection's task, stopped last.
    broker: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Gateway {
    /// Opens the store, binds the listeners and starts serving.
    pub async fn start(setup: Setup) -> Result<Gateway, DaemonError> {
        // Before anything binds a port: a SIGHUP must never hit the default
        // action (terminate) of a daemon that is up.
        let hangup = reload::hangup_signal();
        for w in &setup.warnings {
            tracing::warn!("{w}");
        }
        let cluster = matches!(
            setup.config.store,
            crate::store::backends::StoreConfig::Cluster { .. }
        );
        let metrics = Arc::new(if cluster {
            Metrics::for_cluster()
        } else {
            Metrics::new()
        });
        for w in &setup.watched {
            metrics
                .cert_not_after
                .get_or_create(&CertLabels {
                    certificate: w.label.clone(),
                })
                .set(w.cert.not_after());
        }

        let store = setup.config.store.open().await?;
        // Targets and routes registered over the operator API join the file's.
        let (setup, registered_seen) = registry::with_registered(setup, store.as_ref()).await?;
        let broker = match setup.config.store.broker() {
            Some(b) => Some(b.map_err(DaemonError::Start)?),
            None => None,
        };
        let queue = broker
            .clone()
            .map(|b| b as Arc<dyn crate::store::queue::WorkQueue>);

        let cfg = &setup.config;
        let (ingest_listener, ingest_addr) = bind("ingest", cfg.ingest.listen).await?;
        let (admin_listener, admin_addr) = bind("admin", cfg.admin.listen).await?;
        let xta_listener = match &cfg.xta {
            Some(x) => Some(bind("xta", x.listen).await?),
            None => None,
        };
        let fit_listener = match &cfg.fitconnect {
            Some(f) => Some(bind("fitconnect", f.listen).await?),
            None => None,
        };
        let public_url = cfg
            .ingest
            .public_url
            .clone()
            .unwrap_or_else(|| format!("https://localhost:{}", ingest_addr.port()))
            .trim_end_matches('/')
            .to_owned();

        let config_sha256 = config_sha256(&cfg.source);
        store
            .audit(crate::model::audit::AuditEvent::started(
                env!("CARGO_PKG_VERSION"),
                &config_sha256,
                &setup
                    .deliveries
                    .iter()
                    .map(|t| t.id.clone())
                    .collect::<Vec<_>>(),
                Some(&setup.seal.current().certificate().thumbprint()),
            ))
            .await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        // The broker's connection outlives the engine at shutdown: running
        // attempts acknowledge their messages before it closes.
        let (broker_stop, broker_stop_rx) = watch::channel(false);
        let broker_task = broker.clone().map(|b| tokio::spawn(b.run(broker_stop_rx)));
        let retention_task = tokio::spawn(crate::core::retention::run(
            store.clone(),
            cfg.retention,
            Clock::system(),
            shutdown_rx.clone(),
        ));
        let audit_task = tokio::spawn(crate::core::audit::checkpoint_task(
            store.clone(),
            setup.seal.clone(),
            cfg.audit.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        ));
        let stamp_task = setup.tsa.clone().map(|tsa| {
            tokio::spawn(crate::core::audit::stamp::stamp_task(
                store.clone(),
                tsa,
                metrics.clone(),
                shutdown_rx.clone(),
            ))
        });
        let breakers = Arc::new(crate::core::engine::BreakerBoard::default());
        let pauses = admin::load_state(store.as_ref(), cfg.admin.statistics_time_zone).await?;
        let wakers = Arc::new(crate::core::engine::Wakers::default());
        let wakers_for_fit = wakers.clone();
        let engine = crate::core::engine::Engine {
            store: store.clone(),
            metrics: metrics.clone(),
            shutdown_grace: cfg.delivery.shutdown_grace,
            clock: Clock::system(),
            breakers: breakers.clone(),
            wakers: wakers.clone(),
            queue: queue.clone(),
            pauses: pauses.clone(),
            envelope_memory: Arc::new(crate::core::engine::EnvelopeMemory::new(
                cfg.delivery.envelope_memory.0,
            )),
        }
        .start(setup.deliveries.clone(), shutdown_rx.clone());
        let relay_task = queue.clone().map(|b| {
            tokio::spawn(crate::core::relay::run(
                store.clone(),
                b,
                wakers.any(),
                shutdown_rx.clone(),
            ))
        });
        let engine_task = tokio::spawn({
            let engine = engine.clone();
            async move { engine.join().await }
        });
        let revoked = Arc::new(crate::core::revoked::RevokedTargets::default());
        let replies = setup.reply_routes();
        let intake = Arc::new(Intake {
            checks: DataChecks {
                rules: ArcSwap::from_pointee(CheckRules {
                    limits: DataLimits::of(&cfg.ingest.limits),
                    schemas: setup.schemas.clone(),
                    xsds: setup.xsds.clone(),
                    reply_types: cfg.reply_types.keys().cloned().collect(),
                }),
                pool: ValidationPool::new(
                    cfg.ingest.limits.validation_slots(),
                    cfg.ingest.limits.validation_timeout,
                ),
            },
            wakers: wakers.clone(),
            seal: setup.seal.clone(),
            routes: ArcSwap::from_pointee(Routes {
                router: setup.router.clone(),
                targets: setup.targets.clone(),
                rotations: setup.rotations.clone(),
                payloads: setup.payloads(),
                format_1: setup.format_1_targets(),
                replies: replies.clone(),
            }),
            store: store.clone(),
            public_url,
            revoked: revoked.clone(),
            privacy: setup.privacy.clone(),
        });
        let crl_task = tokio::spawn(crate::daemon::crl::refresh_task(
            setup.revocation.clone(),
            setup.peer_check.clone(),
            intake.clone(),
            revoked,
            metrics.clone(),
            shutdown_rx.clone(),
        ));
        let keys_task = tokio::spawn(keys::rotate_task(
            intake.clone(),
            store.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        ));
        let overdue_after = cfg
            .xta
            .as_ref()
            .map(|x| x.overdue_after)
            .unwrap_or_else(crate::config::XtaConfig::default_overdue);
        let intake_for_fit = intake.clone();
        let operations = Arc::new(Operations {
            directory: ArcSwap::from_pointee(setup.directory.clone()),
            zone: cfg.admin.statistics_time_zone,
            ..Operations::new(store.clone(), wakers, breakers, pauses, overdue_after)
        });
        let boxes = Arc::new(crate::core::mailbox::MessageBoxes {
            store: store.clone(),
            metrics: metrics.clone(),
            clock: crate::core::clock::Clock::system(),
            overdue_after,
            max_list_items: cfg.xta.as_ref().map_or(1000, |x| x.max_list_items.max(1)),
        });
        let ingest = Arc::new(Ingest {
            replies: Arc::new(crate::core::replies::Replies {
                intake: intake.clone(),
                boxes: boxes.clone(),
            }),
            intake: intake.clone(),
            submissions: Submissions {
                store: store.clone(),
                overdue_after,
            },
            limits: ArcSwap::from_pointee(cfg.ingest.limits.clone()),
            metrics: metrics.clone(),
            body_budget: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(cfg.ingest.limits.memory_budget.0)
                    .unwrap_or(usize::MAX)
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            quota: Default::default(),
        });
        let portals = Arc::new(ArcSwap::from_pointee(setup.portals));
        let tls = Arc::new(ArcSwap::new(setup.ingest_tls.clone()));
        let reloader = Arc::new(reload::Reloader {
            tls: tls.clone(),
            metrics: metrics.clone(),
            source: cfg.source.clone(),
            current: tokio::sync::Mutex::new(setup.config.clone()),
            intake,
            ingest: ingest.clone(),
            portals: portals.clone(),
            engine,
            store: store.clone(),
            operations: operations.clone(),
            registered_seen: std::sync::Mutex::new(Some(registered_seen)),
        });
        let mut xta_tasks = Vec::new();
        let xta_addr = xta_listener.as_ref().map(|(_, a)| *a);
        // Message boxes exist with XTA readers, FIT-Connect destinations and
        // portals' reply boxes, and a reload may add any of them: messages
        // nobody picks up are always watched for (one indexed query a minute).
        let every = (overdue_after / 2).clamp(std::time::Duration::from_secs(1), OVERDUE_CHECK);
        xta_tasks.push(tokio::spawn(
            boxes.clone().watch_overdue(every, shutdown_rx.clone()),
        ));
        if let (Some((listener, addr)), Some(x)) = (xta_listener, &cfg.xta) {
            let xta = Arc::new(crate::listen::xta::Xta {
                ingest: ingest.clone(),
                boxes: boxes.clone(),
                identity: x
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("https://localhost:{}/xta", addr.port())),
            });
            xta_tasks.push(tokio::spawn(crate::listen::server::serve(
                listener,
                tls.clone(),
                setup.peer_check.clone(),
                portals.clone(),
                xta,
                shutdown_rx.clone(),
            )));
            tracing::info!(xta_addr = %addr, "XTA listener serving");
        }
        let fitconnect_addr = fit_listener.as_ref().map(|(_, a)| *a);
        if let (Some(bound), Some(f), Some(fit)) = (fit_listener, &cfg.fitconnect, setup.fitconnect)
        {
            xta_tasks.extend(fitconnect::start(
                bound,
                f,
                fit,
                fitconnect::Parts {
                    store: store.clone(),
                    store_config: cfg.store.clone(),
                    ingest: ingest.clone(),
                    seal: setup.seal.clone(),
                    privacy: setup.privacy.clone(),
                    wakers: wakers_for_fit.clone(),
                    tls: tls.clone(),
                    peer_check: setup.peer_check.clone(),
                    portals: portals.clone(),
                },
                shutdown_rx.clone(),
            )?);
        }
        for sub in &cfg.fitconnect_subscriptions {
            let max_part = cfg.ingest.limits.max_part.0;
            let s = crate::listen::fitconnect_subscriber::Subscription::new(
                sub.clone(),
                intake_for_fit.clone(),
                max_part,
            )
            .map_err(|e| {
                DaemonError::Start(format!(
                    "fitconnect_subscriptions (destination {}): {e}",
                    sub.destination
                ))
            })?;
            if let (Some(addr), Some(secret)) = (sub.callback_listen, &sub.callback_secret) {
                let bound = bind("fitconnect-callback", addr).await?;
                let listener = Arc::new(crate::listen::fitconnect_callback::CallbackListener {
                    ingest: ingest.clone(),
                    secret: secret.clone(),
                    wake: s.wake.clone(),
                });
                xta_tasks.push(tokio::spawn(crate::listen::server::serve(
                    bound.0,
                    tls.clone(),
                    setup.peer_check.clone(),
                    portals.clone(),
                    listener,
                    shutdown_rx.clone(),
                )));
                tracing::info!(callback_addr = %bound.1, destination = %sub.destination, "taking FIT-Connect callbacks");
            }
            xta_tasks.push(tokio::spawn(Arc::new(s).run(shutdown_rx.clone())));
            tracing::info!(destination = %sub.destination, zustelldienst = %sub.api_url, "subscribed to a FIT-Connect destination");
        }
        let admin_tls = cfg.admin.tls.then(|| admin::Tls {
            config: tls.clone(),
            peer_check: setup.peer_check.clone(),
            portals: portals.clone(),
        });
        let ingest_task = tokio::spawn(crate::listen::server::serve(
            ingest_listener,
            tls,
            setup.peer_check.clone(),
            portals,
            ingest.clone(),
            shutdown_rx.clone(),
        ));
        let admin = admin::start(
            admin_listener,
            admin::Parts {
                reloader: reloader.clone(),
                operations,
                ingest,
                tls: admin_tls,
                broker: queue.clone(),
            },
            shutdown_rx.clone(),
        );
        let hangup_task = tokio::spawn(reload::reload_on_hangup(
            hangup,
            reloader,
            shutdown_rx.clone(),
        ));
        let expiry_task = tokio::spawn(keys::watch_expiry(
            setup.watched.clone(),
            intake_for_fit.clone(),
            cfg.pki.expiry_warning,
            shutdown_rx,
        ));
        tracing::info!(%ingest_addr, %admin_addr, store = %cfg.store.describe(), "ozg-gateway serving");
        let mut tasks = vec![
            ingest_task,
            admin.pauses,
            expiry_task,
            crl_task,
            keys_task,
            engine_task,
            hangup_task,
            audit_task,
            retention_task,
        ];
        tasks.extend(xta_tasks);
        tasks.extend(stamp_task);
        tasks.extend(relay_task);
        Ok(Gateway {
            ingest_addr,
            xta_addr,
            fitconnect_addr,
            admin_addr,
            metrics,
            store,
            shutdown,
            tasks,
            admin: (admin.stop, admin.task),
            observe: admin.observe,
            broker: broker_task.map(|t| (broker_stop, t)),
        })
    }

    /// Graceful shutdown: stop accepting, finish open requests and running delivery
    /// attempts (bounded; the rest is handed back to `pending`), close the store.
    pub async fn shutdown(self) -> Result<(), DaemonError> {
        self.observe
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.admin.0.send(true);
        let _ = self.admin.1.await;
        if let Some((stop, task)) = self.broker {
            let _ = stop.send(true);
            let _ = task.await;
        }
        self.store.close().await?;
        tracing::info!("ozg-gateway stopped");
        Ok(())
    }
}

/// SHA-256 (hex) of the config file as it is on disk now, for the audit
/// records `started` and `reloaded` (empty if it cannot be read).
pub(crate) fn config_sha256(path: &std::path::Path) -> String {
    std::fs::read(path)
        .map(|b| hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &b)))
        .unwrap_or_default()
}

/// Binds a listener and reads back its address (port 0 picks a free one).
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), DaemonError> {
    let err = |source| DaemonError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    Ok((listener, bound))
}

/// Runs the gateway until `shutdown` resolves, then shuts it down gracefully.
pub async fn run(
    setup: Setup,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let gateway = Gateway::start(setup).await?;
    shutdown.await;
    tracing::info!("shutdown requested: no new connections; finishing open requests");
    gateway.shutdown().await
}

/// Tunes glibc's allocator for the daemon. Call it while the process has one
/// thread (before the runtime starts).
///
/// By default glibc gives the memory of freed large buffers (envelopes and parts
/// of hundreds of KiB) back to the system and takes fresh pages for the next one;
/// under the `typical` benchmark that page churn cost more CPU than SHA-512. Here
/// buffers up to 8 MiB come from the heap and up to 64 MiB of free heap is kept per
/// arena. Measured (BENCHMARKS.md): `typical` 342/s against 302/s on average, peak
/// RSS about 210 MiB instead of 140 MiB; `small` unchanged. An operator who sets
/// `MALLOC_MMAP_THRESHOLD_` or `MALLOC_TRIM_THRESHOLD_` keeps their own values.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
        {
            return;
        }
        // SAFETY: mallopt has no pointer arguments and only sets glibc's allocator
        // parameters. It is called from `serve` before the async runtime exists,
        // while the process has a single thread, so no allocation runs concurrently.
        // The values are in the documented ranges (M_MMAP_THRESHOLD at most 32 MiB
        // on 64-bit); a refused value leaves the default in place (return 0).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        }
    }
}

/// Registers for SIGTERM and SIGINT *now* and returns a future that resolves
/// on the first of them. Registering before anything binds a port closes the
/// window in which a signal sent to a freshly started daemon would kill it
/// with the default action instead of shutting it down. Must be called inside
/// a Tokio runtime.
pub fn termination_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let registered = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match registered {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
