//! The admin listener: health, readiness, Prometheus metrics, the newest
//! signed audit checkpoint, and `POST /reload` (what `ozg-gateway reload`
//! calls). Plain HTTP, loopback only.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::core::observe::Observe;
use crate::listen::portal::problem_response;
use crate::listen::problem::Problem;

/// Most connections at once (monitoring needs a handful).
const MAX_CONNECTIONS: usize = 64;
/// First and longest wait after a failed accept.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Re-reads the config (the daemon's reload): `Ok` says what changed, `Err`
/// why nothing did.
pub type Reload = Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, String>>
        + Send
        + Sync,
>;

/// Serves `/healthz`, `/readyz`, `/metrics`, `/audit/checkpoint` and
/// `POST /reload` (plain HTTP; loopback only).
pub async fn serve(
    listener: TcpListener,
    observe: Arc<Observe>,
    reload: Reload,
    mut shutdown: watch::Receiver<bool>,
) {
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
        let observe = observe.clone();
        let reload = reload.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Body>| {
                let observe = observe.clone();
                let reload = reload.clone();
                async move {
                    let answer =
                        if req.method() == http::Method::POST && req.uri().path() == "/reload" {
                            reloaded(&observe, reload().await)
                        } else {
                            admin(&observe, req).await
                        };
                    Ok::<_, std::convert::Infallible>(answer)
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

/// The answer to `POST /reload`: what changed (200), or why nothing did (409).
fn reloaded(
    observe: &Observe,
    outcome: Result<serde_json::Value, String>,
) -> Response<Full<Bytes>> {
    let mut r = match outcome {
        Ok(changes) => {
            let mut r = Response::new(Full::new(Bytes::from(changes.to_string())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(why) => problem_response(
            &observe.metrics,
            "admin",
            &Problem::new(409, "reload-refused", why),
        ),
    };
    // The request's body (there should be none) is not read.
    r.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

async fn admin(observe: &Observe, req: Request<Body>) -> Response<Full<Bytes>> {
    let metrics = &observe.metrics;
    let text = |status: StatusCode, ctype: &'static str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(ctype),
        );
        r
    };
    if req.method() != http::Method::GET {
        let mut refused = problem_response(
            metrics,
            "admin",
            &Problem::new(
                405,
                "method-not-allowed",
                "the admin endpoints are GET only, except POST /reload",
            ),
        );
        // The request's body is not read, so the connection cannot carry another
        // request; say so, or a client would reuse it and see it closed under it.
        refused.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return refused;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match observe.ready() {
            Ok(()) => text(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(r) => problem_response(metrics, "admin", &r.into()),
        },
        "/audit/checkpoint" => match observe.latest_checkpoint().await {
            Ok(c) => text(
                StatusCode::OK,
                "application/json",
                serde_json::to_string(&c).unwrap_or_default(),
            ),
            Err(r) => problem_response(metrics, "admin", &r.into()),
        },
        // OpenMetrics for scrapers that ask for it (Prometheus does), the
        // Prometheus text format for everyone else.
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(http::header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let body = observe.metrics_text().await;
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
        other => problem_response(
            metrics,
            "admin",
            &Problem::new(404, "not-found", format!("no admin resource at {other}")),
        ),
    }
}
