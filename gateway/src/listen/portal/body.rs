//! A request body that the multipart parser streams from and that can still be
//! drained after the parser gave up on it, so a refusal reaches the client
//! instead of being lost to a TCP reset ("lingering close").

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use http_body_util::BodyExt;
use hyper::body::Incoming as Body;
use tokio::sync::Mutex;

/// How long a refused request's remaining body is read (at most 4 × `max_body`)
/// before the connection closes — as a web server's "lingering close" does.
pub(super) const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// A pause in the client's sending that ends the lingering drain.
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_millis(250);

pub(crate) type BodyStream = BoxStream<'static, Result<Bytes, hyper::Error>>;

/// A request body that the parser streams from and that can still be drained
/// after the parser gave up on it.
#[derive(Clone)]
pub(crate) struct SharedBody(Arc<Mutex<Body>>);

impl SharedBody {
    pub(crate) fn new(body: Body) -> Self {
        SharedBody(Arc::new(Mutex::new(body)))
    }

    pub(crate) fn stream(&self) -> BodyStream {
        Box::pin(futures_util::stream::unfold(
            self.0.clone(),
            |body| async move {
                loop {
                    let frame = body.lock().await.frame().await;
                    match frame {
                        None => return None,
                        Some(Err(e)) => return Some((Err(e), body)),
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                return Some((Ok(data), body));
                            }
                            // Trailers carry no data: read on.
                        }
                    }
                }
            },
        ))
    }

    /// Reads and discards up to `max` bytes for at most `time`.
    pub(super) async fn drain(&self, max: u64, time: std::time::Duration) {
        let mut body = self.0.lock().await;
        let mut seen = 0u64;
        let _ = tokio::time::timeout(time, async {
            while seen < max {
                // A client that stopped sending is waiting for the answer: give it.
                match tokio::time::timeout(LINGER_IDLE, body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        seen += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0)
                    }
                    _ => break,
                }
            }
        })
        .await;
    }
}
