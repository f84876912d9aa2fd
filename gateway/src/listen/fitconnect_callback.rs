//! Where a subscription takes its Zustelldienst's callbacks
//! (`callback_listen`): HTTPS with the ingest listener's certificate, any
//! path, `POST` only. A callback whose HMAC-SHA-512 and timestamp check out
//! makes the subscription poll at once (`200`); any other is ignored (`401`),
//! as FIT-Connect requires. The body is never trusted beyond that: what to
//! fetch comes from the Zustelldienst's own list.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;
use tokio::sync::Notify;

use crate::core::fitconnect::callback;
use crate::listen::portal::body::SharedBody;
use crate::listen::portal::budget::read_all;
use crate::listen::portal::{HttpResponse, Ingest};
use crate::listen::problem::Problem;
use crate::listen::server::Service;

/// Most bytes of a callback read.
const MAX_CALLBACK: u64 = 64 << 10;

pub struct CallbackListener {
    pub ingest: Arc<Ingest>,
    pub secret: String,
    /// Wakes the subscription's poll.
    pub wake: Arc<Notify>,
}

fn status(code: StatusCode) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

impl Service for CallbackListener {
    type Client = ();
    const NAME: &'static str = "fitconnect-callback";

    fn anonymous() -> Option<()> {
        Some(())
    }

    fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    async fn handle(
        self: Arc<Self>,
        _client: Result<(), Problem>,
        req: Request<Body>,
    ) -> HttpResponse {
        let (head, body) = req.into_parts();
        if head.method != Method::POST {
            return status(StatusCode::METHOD_NOT_ALLOWED);
        }
        let get = |name: &str| {
            head.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (ts, auth) = (get("callback-timestamp"), get("callback-authentication"));
        let body = SharedBody::new(body);
        let Ok((bytes, _held)) =
            read_all(body.stream(), self.ingest.body_budget.clone(), MAX_CALLBACK).await
        else {
            return status(StatusCode::PAYLOAD_TOO_LARGE);
        };
        let now = crate::model::time::now_ms() / 1000;
        if callback::verify(&self.secret, &ts, &auth, &bytes, now) {
            self.wake.notify_one();
            let mut r = status(StatusCode::OK);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            *r.body_mut() = Full::new(Bytes::from_static(b"{}"));
            r
        } else {
            self.ingest
                .metrics
                .refuse("fitconnect-callback", "callback-not-authentic");
            tracing::warn!("FIT-Connect callback ignored: HMAC or timestamp does not check out");
            status(StatusCode::UNAUTHORIZED)
        }
    }
}
