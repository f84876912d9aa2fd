//! Starting the admin listener with the operator API, and keeping the
//! operators' pauses in step with the store (another instance of a cluster
//! may have changed them).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::core::engine::pauses::Pauses;
use crate::core::observe::Observe;
use crate::core::operator::Operations;
use crate::daemon::reload::Reloader;
use crate::daemon::DaemonError;
use crate::listen::admin::Admin;
use crate::listen::identity::Portals;
use crate::listen::tls::PeerCheck;
use crate::store::Store;

/// How often the pauses and registrations are read from the store.
const REFRESH: Duration = Duration::from_secs(3);

/// What serving the admin listener over HTTPS takes from the ingest listener.
pub(super) struct Tls {
    pub config: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    pub peer_check: PeerCheck,
    pub portals: Arc<arc_swap::ArcSwap<Portals>>,
}

/// What the admin listener serves.
pub(super) struct Parts {
    pub reloader: Arc<Reloader>,
    pub operations: Arc<Operations>,
    pub ingest: Arc<crate::listen::portal::Ingest>,
    /// HTTPS (`[admin] tls = true`), else plain HTTP on loopback.
    pub tls: Option<Tls>,
    /// Cluster mode's broker (its connection counts for readiness).
    pub broker: Option<Arc<dyn crate::store::queue::WorkQueue>>,
}

/// The running admin listener.
pub(super) struct Started {
    /// Stops it: the daemon does so last, so `/readyz` answers "draining"
    /// while the rest finishes.
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
    /// Readiness and metrics (the daemon sets `draining`).
    pub observe: Arc<Observe>,
    /// Keeps the pauses in step with the store until `shutdown`.
    pub pauses: JoinHandle<()>,
}

/// Serves the admin listener and keeps the operators' pauses in step.
pub(super) fn start(listener: TcpListener, p: Parts, shutdown: watch::Receiver<bool>) -> Started {
    let (stop, stopped) = watch::channel(false);
    let registry: Arc<dyn crate::core::registry::Registry> = p.reloader.clone();
    let reload: crate::listen::admin::Reload = {
        let reloader = p.reloader.clone();
        Arc::new(move || {
            let reloader = reloader.clone();
            Box::pin(async move { reloader.reload().await })
        })
    };
    let ingest = &p.ingest;
    let observe = Arc::new(Observe {
        store: p.operations.store.clone(),
        metrics: ingest.metrics.clone(),
        broker: p.broker,
        draining: Default::default(),
        pauses: p.operations.pauses.clone(),
    });
    let pauses = refresh(p.operations.clone(), p.reloader.clone(), shutdown);
    let admin = Arc::new(Admin {
        observe: observe.clone(),
        reload,
        operations: p.operations,
        registry,
        ingest: p.ingest,
        tls: p.tls.is_some(),
    });
    let task = match p.tls {
        Some(tls) => tokio::spawn(crate::listen::server::serve(
            listener,
            tls.config,
            tls.peer_check,
            tls.portals,
            admin,
            stopped,
        )),
        None => tokio::spawn(crate::listen::admin::serve(listener, admin, stopped)),
    };
    Started {
        stop,
        task,
        observe,
        pauses,
    }
}

/// Sets the case statistics' time zone in the store, and reads the targets
/// operators paused (they stay paused across a restart).
pub(super) async fn load_state(
    store: &dyn Store,
    zone: crate::model::cases::StatsZone,
) -> Result<Arc<Pauses>, DaemonError> {
    store
        .set_case_zone(zone)
        .await
        .map_err(|e| DaemonError::Start(format!("setting the statistics' time zone: {e}")))?;
    let pauses = Arc::new(Pauses::default());
    let rows = store
        .settings(crate::core::engine::pauses::KIND)
        .await
        .map_err(|e| DaemonError::Start(format!("reading the paused targets: {e}")))?;
    pauses.replace(Pauses::parse(rows));
    Ok(pauses)
}

/// Reads the pauses and the registered targets and routes from the store now
/// and then until `shutdown` (another instance of a cluster may change them).
fn refresh(
    operations: Arc<Operations>,
    reloader: Arc<Reloader>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                _ = shutdown.changed() => return,
            }
            if let Err(e) = operations.store.tidy().await {
                tracing::debug!(error = %e, "store housekeeping failed; tried again");
            }
            let read = match operations.refresh_pauses().await {
                Ok(()) => reloader.sync_registered().await,
                Err(e) => Err(e),
            };
            match read {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the paused targets and registrations from the store; the ones known stay in force");
                }
                Err(_) => {}
            }
        }
    })
}
