//! The admin listener: health, readiness, Prometheus metrics, the newest
//! signed audit checkpoint, `POST /reload` (what `ozg-gateway reload` calls)
//! and the operator API under `/admin/v1/` (see [`api`]).
//!
//! Two ways to serve it:
//! - plain HTTP on a loopback address (the default): whoever reaches it is on
//!   the gateway's machine and acts as the operator `local` of every tenant
//!   (the name in an `Ozg-Operator` header is recorded with it, not trusted);
//! - HTTPS (`[admin] tls = true`, required on any other address) with the
//!   ingest listener's certificate, client CA and CRLs: `/healthz` and
//!   `/readyz` answer anyone; everything else needs a registered operator's
//!   client certificate, and shows only that operator's tenants.
//!
//! The dashboard (`/dashboard/`, see [`dashboard`]) is served to the same
//! callers. Requests a browser sends on behalf of another site are refused.

pub mod api;
mod dashboard;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::core::observe::Observe;
use crate::core::operator::Operations;
use crate::listen::identity::Portals;
use crate::listen::portal::{problem_response, HttpResponse, Ingest};
use crate::listen::problem::Problem;
use crate::listen::tls::PeerCert;
use crate::model::portal::Operator;

/// Most connections at once on the plain listener (monitoring and a few operators).
const MAX_CONNECTIONS: usize = 64;
/// First and longest wait after a failed accept.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Largest request body read (the operator API's bodies are small JSON).
const MAX_BODY: usize = 64 << 10;

/// Re-reads the config (the daemon's reload): `Ok` says what changed, `Err`
/// why nothing did.
pub type Reload = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, String>>
        + Send
        + Sync,
>;

/// What the admin listener serves.
pub struct Admin {
    pub observe: Arc<Observe>,
    pub reload: Reload,
    pub operations: Arc<Operations>,
    /// Registering targets and routes at run time.
    pub registry: Arc<dyn crate::core::registry::Registry>,
    /// The ingest listener's limits and metrics (the TLS accept loop's).
    pub ingest: Arc<Ingest>,
    /// Plain HTTP on loopback (`false`) or HTTPS with operators' certificates.
    pub tls: bool,
}

/// Serves plain HTTP on a loopback address: every caller is [`Operator::local`].
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => {
                    backoff = ACCEPT_BACKOFF_FIRST;
                    c
                }
                // Out of file descriptors, say: wait instead of spinning, longer
                // each time, and say so (once per wait, not per retry of a loop).
                Err(e) => {
                    tracing::warn!(error = %e, wait = ?backoff, "admin listener cannot accept; waiting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let admin = admin.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Body>| {
                let admin = admin.clone();
                async move {
                    let name = req
                        .headers()
                        .get("ozg-operator")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let local = Arc::new(Operator::local(name.as_deref()));
                    Ok::<_, std::convert::Infallible>(admin.handle(Ok(local), req).await)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let _ = watcher
                .watch(builder.serve_connection(TokioIo::new(tcp), service))
                .await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

/// HTTPS: served by the TLS listeners' accept loop, operators identified by
/// their client certificates.
impl crate::listen::server::Service for Admin {
    type Client = Arc<Operator>;
    const NAME: &'static str = "admin";

    fn identify(portals: &Portals, cert: &PeerCert) -> Option<Arc<Operator>> {
        portals.operator(cert)
    }

    fn client_key(client: &Arc<Operator>) -> String {
        format!("operator {}", client.id)
    }

    fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    async fn handle(
        self: Arc<Self>,
        client: Result<Arc<Operator>, Problem>,
        req: Request<Body>,
    ) -> HttpResponse {
        Admin::handle(&self, client, req).await
    }
}

pub(crate) fn text(status: StatusCode, ctype: &'static str, body: String) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}

impl Admin {
    /// Answers one request of `caller` (or of a connection whose certificate
    /// was refused: then only health and readiness).
    pub async fn handle(
        &self,
        caller: Result<Arc<Operator>, Problem>,
        req: Request<Body>,
    ) -> HttpResponse {
        let (head, body) = req.into_parts();
        let metrics = &self.observe.metrics;
        let path = head.uri.path().to_owned();
        if head.method == http::Method::GET {
            match path.as_str() {
                "/healthz" => return text(StatusCode::OK, "text/plain", "ok\n".into()),
                "/readyz" => {
                    return match self.observe.ready() {
                        Ok(()) => text(StatusCode::OK, "text/plain", "ok\n".into()),
                        Err(r) => problem_response(metrics, "admin", &r.into()),
                    }
                }
                _ => {}
            }
        }
        let close = |mut r: HttpResponse| {
            // The body is not read, so the connection cannot carry another
            // request; say so, or a client would reuse it and see it closed.
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            r
        };
        let get_only = ["/healthz", "/readyz", "/metrics", "/audit/checkpoint"];
        if head.method != http::Method::GET && get_only.contains(&path.as_str()) {
            return close(problem_response(
                metrics,
                "admin",
                &Problem::new(
                    405,
                    "method-not-allowed",
                    format!("{path} answers GET only"),
                ),
            ));
        }
        if let Some(why) = dashboard::foreign(&head, !self.tls) {
            return close(problem_response(
                metrics,
                "admin",
                &Problem::new(403, "cross-site-refused", why),
            ));
        }
        let op = match caller {
            Ok(op) => op,
            Err(p) => return close(problem_response(metrics, "admin", &p)),
        };
        if head.method == http::Method::GET {
            if path == "/" {
                return dashboard::redirect("/dashboard/");
            }
            if let Some(page) = dashboard::asset(&path) {
                return page;
            }
        }
        // Bodies are small; one that is too big or breaks off is refused.
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return close(problem_response(
                    metrics,
                    "admin",
                    &Problem::new(
                        413,
                        "body-too-large",
                        format!(
                            "request bodies of the admin listener hold at most {MAX_BODY} bytes"
                        ),
                    ),
                ))
            }
        };
        let answer = match (&head.method, path.as_str()) {
            (&http::Method::POST, "/reload") => self.reloaded(&op).await,
            (&http::Method::GET, "/audit/checkpoint") => {
                match self.observe.latest_checkpoint().await {
                    Ok(c) => Ok(text(
                        StatusCode::OK,
                        "application/json",
                        serde_json::to_string(&c).unwrap_or_default(),
                    )),
                    Err(r) => Err(r.into()),
                }
            }
            (&http::Method::GET, "/metrics") => Ok(self.metrics(&op, &head).await),
            (_, p) if p.starts_with("/admin/v1/") => api::route(self, &op, &head, &body).await,
            (m, p) => Err(Problem::new(
                404,
                "not-found",
                format!("no admin resource {m} {p}"),
            )),
        };
        answer.unwrap_or_else(|p| problem_response(metrics, "admin", &p))
    }

    /// `POST /reload`: what changed (200), or why nothing did (409). Only an
    /// operator of every tenant may.
    async fn reloaded(&self, op: &Operator) -> Result<HttpResponse, Problem> {
        if !op.sees_all() {
            return Err(Problem::new(
                403,
                "not-allowed",
                format!("{} is an operator of some tenants; only an operator of all may reload the config", op.id),
            ));
        }
        match (self.reload)().await {
            Ok(changes) => Ok(text(
                StatusCode::OK,
                "application/json",
                changes.to_string(),
            )),
            Err(why) => Err(Problem::new(409, "reload-refused", why)),
        }
    }

    /// OpenMetrics for scrapers that ask for it (Prometheus does), the
    /// Prometheus text format for everyone else; an operator of some tenants
    /// gets only the series of their targets and portals and the gateway's own.
    async fn metrics(&self, op: &Operator, head: &http::request::Parts) -> HttpResponse {
        let openmetrics = head
            .headers
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        let mut body = self.observe.metrics_text().await;
        if !op.sees_all() {
            let dir = self.operations.directory.load_full();
            let target = |id: &str| dir.sees(op, id);
            let portal = |id: &str| dir.sees_portal(op, id);
            body = api::scoped_metrics(&body, |label, value| match label {
                "target" => target(value),
                "portal" => portal(value),
                // `target:<id>`, `portal:<id>`, or one of the gateway's own.
                _ => match value.split_once(':') {
                    Some(("target", id)) => target(id),
                    Some(("portal", id)) => portal(id),
                    _ => true,
                },
            });
        }
        if openmetrics {
            text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            )
        } else {
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                crate::core::metrics::prometheus_text(&body),
            )
        }
    }
}
