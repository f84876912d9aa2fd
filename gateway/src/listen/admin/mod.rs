//! The admin listener: health, readiness, Prometheus metrics and the newest
//! signed audit checkpoint. Plain HTTP, loopback only by default; GET only.

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
use tokio::sync::watch;

use crate::core::observe::Observe;
use crate::listen::portal::problem_response;
use crate::listen::problem::Problem;

/// Serves `/healthz`, `/readyz`, `/metrics` and `/audit/checkpoint` (plain
/// HTTP; loopback only by default).
pub async fn serve(
    listener: TcpListener,
    observe: Arc<Observe>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = shutdown.changed() => break,
        };
        let observe = observe.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Body>| {
                let observe = observe.clone();
                async move { Ok::<_, std::convert::Infallible>(admin(&observe, req).await) }
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
                "the admin endpoints are GET only",
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
        "/healthz" | "/readyz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/audit/checkpoint" => match observe.latest_checkpoint().await {
            Ok(c) => text(
                StatusCode::OK,
                "application/json",
                serde_json::to_string(&c).unwrap_or_default(),
            ),
            Err(r) => problem_response(metrics, "admin", &r.into()),
        },
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            observe.metrics_text().await,
        ),
        other => problem_response(
            metrics,
            "admin",
            &Problem::new(404, "not-found", format!("no admin resource at {other}")),
        ),
    }
}
