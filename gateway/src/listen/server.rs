//! The accept loop shared by the TLS listeners: connection slots, the TLS
//! handshake with its timeout, the client's identity from its certificate, the
//! HTTP/1.1 connection with its header timeout, and the graceful drain.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::listen::guard::{Counted, PerAddress, PerKey, WriteTimeout};
use crate::listen::identity::{Client, Portals};
use crate::listen::portal::Ingest;
use crate::listen::problem::Problem;
use crate::listen::tls::{PeerCert, PeerCheck};

/// How long open requests may run on after shutdown began.
pub const DRAIN: Duration = Duration::from_secs(30);

/// What a connection's identity was decided on: the CRLs' generation and the
/// registered clients (a reload replaces them). Held, the `Arc` cannot be
/// freed and its address reused, so a pointer comparison is exact.
struct Basis(u64, Arc<Portals>);

impl Basis {
    fn now(peer_check: &PeerCheck, portals: &arc_swap::ArcSwap<Portals>) -> Basis {
        Basis(peer_check.generation(), portals.load_full())
    }

    fn same(&self, other: &Basis) -> bool {
        self.0 == other.0 && Arc::ptr_eq(&self.1, &other.1)
    }
}

/// What a TLS listener serves: who its clients are and how it answers them.
/// The accept loop ([`serve`]) is the same for every listener.
pub trait Service: Send + Sync + 'static {
    /// Who is asking, as this listener knows its clients.
    type Client: Clone + Send + Sync + 'static;
    /// The listener's name in metrics (`ingest`, `xta`).
    const NAME: &'static str;
    /// The registered client a (chain-checked) certificate belongs to
    /// (listeners whose clients are [`Service::anonymous`] know none).
    fn identify(_portals: &Portals, _cert: &PeerCert) -> Option<Self::Client> {
        None
    }
    /// The client of every connection when the listener identifies its
    /// clients per request (bearer tokens, HMACs) instead of by certificate.
    fn anonymous() -> Option<Self::Client> {
        None
    }
    /// The key a client's connections are counted under (default: one key
    /// for the whole listener).
    fn client_key(_client: &Self::Client) -> String {
        Self::NAME.to_owned()
    }
    /// The portal API's state every listener shares: its request limits (read
    /// per connection: a reload applies to the next one), metrics, body budget.
    fn ingest(&self) -> &Ingest;
    /// Answers one request of an identified client (or refuses the connection's client).
    fn handle(
        self: Arc<Self>,
        client: Result<Self::Client, Problem>,
        req: Request<Body>,
    ) -> impl std::future::Future<Output = crate::listen::portal::HttpResponse> + Send;
}

impl Service for Ingest {
    type Client = Client;
    const NAME: &'static str = "ingest";

    fn identify(portals: &Portals, cert: &PeerCert) -> Option<Client> {
        portals.identify(cert)
    }

    fn client_key(client: &Client) -> String {
        match client {
            Client::Portal(p) => format!("portal {}", p.id),
            Client::Operator(o) => format!("operator {}", o.id),
            Client::Replier(targets) => format!("replier {}", targets.join(",")),
        }
    }

    fn ingest(&self) -> &Ingest {
        self
    }

    async fn handle(
        self: Arc<Self>,
        client: Result<Client, Problem>,
        req: Request<Body>,
    ) -> crate::listen::portal::HttpResponse {
        Ingest::handle(self, client, req).await
    }
}

/// The client a connection's certificate belongs to, or why it is refused.
fn identify<S: Service>(
    peer_check: &PeerCheck,
    portals: &Portals,
    chain: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    remote: std::net::SocketAddr,
) -> Result<S::Client, Problem> {
    let client = match peer_check.check(chain) {
        Ok(cert) => S::identify(portals, &cert).ok_or_else(|| {
            Problem::new(
                403,
                "unknown-client",
                format!(
                    "no {} client is registered for the client certificate with SHA-256 {}",
                    S::NAME,
                    cert.sha256
                ),
            )
        }),
        Err(problem) => Err(Problem::new(403, problem.slug(), problem.to_string())),
    };
    if let Err(p) = &client {
        tracing::info!(%remote, reason = p.slug, "client refused");
    }
    client
}

/// Counts a connection of a registered client against
/// `max_connections_per_client`, or refuses it (`429`).
fn count_client<S: Service>(
    table: &Arc<PerKey<String>>,
    client: &S::Client,
    limits: &crate::config::Limits,
) -> Result<Counted<String>, Problem> {
    let key = S::client_key(client);
    let max = limits.max_connections_per_client.max(1);
    PerKey::admit(table, key.clone(), max).ok_or_else(|| {
        Problem::new(
            429,
            "too-many-connections",
            format!(
                "{key} has {max} connections open already; reuse them (keep-alive) or close some"
            ),
        )
    })
}

/// Serves a TLS listener: accepts connections while a slot is free, completes
/// the TLS handshake within `handshake_timeout`, identifies the client by its
/// certificate, and hands each request with that identity to [`Service::handle`].
/// At shutdown it stops accepting and lets open requests finish within [`DRAIN`].
pub async fn serve<S: Service>(
    listener: TcpListener,
    tls: Arc<arc_swap::ArcSwap<rustls::ServerConfig>>,
    peer_check: PeerCheck,
    portals: Arc<arc_swap::ArcSwap<Portals>>,
    service: Arc<S>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The number of slots is fixed at start; every other limit is read per
    // connection, so a reload applies to the next one.
    let slots = Arc::new(Semaphore::new(
        service.ingest().limits.load_full().max_connections.max(1),
    ));
    let per_address = Arc::new(PerAddress::default());
    let per_client: Arc<PerKey<String>> = Arc::default();
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let limits = service.ingest().limits.load_full();
        // One address cannot take the slots of all: beyond its share, closed at once.
        let Some(counted) = PerAddress::admit(
            &per_address,
            remote.ip(),
            limits.max_connections_per_address.max(1),
        ) else {
            service
                .ingest()
                .metrics
                .refuse(S::NAME, "too-many-connections-from-address");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // Read per connection: a reload may have renewed the certificate.
        let acceptor = TlsAcceptor::from(tls.load_full());
        let peer_check = peer_check.clone();
        let portals = portals.clone();
        let service = service.clone();
        let per_client = per_client.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let _counted = counted;
            let tls =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        service.ingest().metrics.refuse(S::NAME, "tls-handshake");
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        service
                            .ingest()
                            .metrics
                            .refuse(S::NAME, "tls-handshake-timeout");
                        return;
                    }
                };
            // Who the client is, checked at the handshake and again at the next
            // request after the CRLs changed (a connection may outlive a revocation).
            let chain = tls.get_ref().1.peer_certificates().map(<[_]>::to_vec);
            let mut first = match S::anonymous() {
                Some(anyone) => Ok(anyone),
                None => identify::<S>(&peer_check, &portals.load(), chain.as_deref(), remote),
            };
            // One portal or operator cannot hold all connections either; a
            // connection over its client's cap stays refused.
            let (_client_counted, over_cap) = match &first {
                Ok(client) => match count_client::<S>(&per_client, client, &limits) {
                    Ok(counted) => (Some(counted), false),
                    Err(refused) => {
                        first = Err(refused);
                        (None, true)
                    }
                },
                Err(_) => (None, false),
            };
            let identity = std::sync::Mutex::new((Basis::now(&peer_check, &portals), first));
            let http = service_fn(move |req: Request<Body>| {
                let service = service.clone();
                let client = {
                    let mut known = identity.lock().unwrap_or_else(|e| e.into_inner());
                    let now = Basis::now(&peer_check, &portals);
                    // A connection over its client's cap stays refused.
                    if !known.0.same(&now) && !over_cap && S::anonymous().is_none() {
                        let client = identify::<S>(&peer_check, &now.1, chain.as_deref(), remote);
                        *known = (now, client);
                    }
                    known.1.clone()
                };
                async move { Ok::<_, std::convert::Infallible>(S::handle(service, client, req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size((limits.max_header.0 as usize).max(8192))
                .keep_alive(true);
            let io = WriteTimeout::new(tls, limits.write_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), http);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open requests did not finish within {DRAIN:?}; closing them (unacknowledged submissions were not accepted)");
    }
}
