//! Starting the FIT-Connect Zustelldienst: its listener (sharing the ingest
//! listener's TLS), the service with its staging directory, and the task
//! that removes submissions never submitted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::DaemonError;
use crate::config::FitConnectConfig;
use crate::core::fitconnect::{Tokens, Zustelldienst};
use crate::daemon::setup::fitconnect::FitSetup;
use crate::listen::fitconnect::FitConnect;
use crate::listen::portal::Ingest;
use crate::store::backends::StoreConfig;
use crate::store::embedded::staging::FileStaging;
use crate::store::Store;

/// How often submissions never submitted, and ones never decided, are looked for.
const EXPIRY_CHECK: Duration = Duration::from_secs(60);

/// What the listener needs from the daemon.
pub(super) struct Parts {
    pub store: Arc<dyn Store>,
    pub store_config: StoreConfig,
    pub ingest: Arc<Ingest>,
    pub seal: Arc<crate::core::intake::rotation::Seals>,
    pub privacy: Arc<crate::core::privacy::PrivacyKey>,
    pub wakers: Arc<crate::core::engine::Wakers>,
    pub tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    pub peer_check: crate::listen::tls::PeerCheck,
    pub portals: Arc<arc_swap::ArcSwap<crate::listen::identity::Portals>>,
}

pub(super) fn start(
    (listener, addr): (TcpListener, SocketAddr),
    config: &FitConnectConfig,
    fit: FitSetup,
    p: Parts,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>, DaemonError> {
    let StoreConfig::Embedded { data_dir, .. } = &p.store_config else {
        return Err(DaemonError::Start(
            "[fitconnect] (the self-hosted Zustelldienst) keeps submissions being put together and its events on the local disk: it runs with the embedded store only, not in cluster mode; remove [fitconnect] from the cluster config or run it on an embedded instance".into(),
        ));
    };
    let staging = Arc::new(FileStaging::open(data_dir)?);
    let events = Arc::new(FileStaging::open_at(&data_dir.join("fitconnect-events"))?);
    let public_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{}", addr.port()))
        .trim_end_matches('/')
        .to_owned();
    let tokens = Tokens::new(public_url, config.token_lifetime).map_err(|e| {
        DaemonError::Store(crate::store::StoreError::Corrupt(format!("token key: {e}")))
    })?;
    let limits = p.ingest.limits.load_full();
    let service = Arc::new(Zustelldienst {
        store: p.store,
        staging,
        seal: p.seal,
        privacy: p.privacy,
        wakers: p.wakers,
        tokens,
        signer: fit.signer,
        events,
        decisions: Arc::default(),
        clients: fit.clients,
        destinations: fit.destinations,
        incomplete_after: config.incomplete_after,
        auto_reject_after: config.auto_reject_after,
        max_part: limits.max_body.0,
        max_parts: limits.max_parts,
    });
    let mut tasks = Vec::new();
    let expiring = service.clone();
    let every = (config.auto_reject_after.min(config.incomplete_after) / 2)
        .clamp(Duration::from_secs(1), EXPIRY_CHECK);
    let mut stop = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            match expiring.expire_incomplete().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(submissions = n, "FIT-Connect submissions never submitted were removed"),
                Err(e) => tracing::warn!(error = %e.detail, "cannot remove expired FIT-Connect submissions"),
            }
            if let Err(e) = expiring.reject_undecided().await {
                tracing::warn!(error = %e.detail, "cannot reject undecided FIT-Connect submissions");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
        }
    }));
    let fit = Arc::new(FitConnect {
        ingest: p.ingest,
        service,
    });
    tasks.push(tokio::spawn(crate::listen::server::serve(
        listener,
        p.tls,
        p.peer_check,
        p.portals,
        fit,
        shutdown,
    )));
    tracing::info!(fitconnect_addr = %addr, "FIT-Connect Zustelldienst serving");
    Ok(tasks)
}
