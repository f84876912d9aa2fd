//! Uploads that stop before their end (`loadgen --stall`): every connection
//! sends the profile's submission but its last bytes, then holds it
//! for the run's duration — what a slow or hostile client makes the daemon
//! keep. Run against a daemon to read its memory meanwhile (`bench/large.sh`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::{LoadOptions, Profile};

/// Bytes at the end of each upload that are never sent: the end of its last
/// part and the closing boundary.
const HELD_BACK: usize = 128;

/// What became of the stalled uploads.
#[derive(Debug, Clone, Serialize)]
pub struct Stalled {
    pub profile: String,
    pub connections: usize,
    /// Uploads sent up to their last bytes and held so until the end.
    pub held: u64,
    /// Uploads the gateway answered before their end (`busy`, …), by problem type.
    pub refused: BTreeMap<String, u64>,
    /// Uploads that failed otherwise (connection closed or refused).
    pub errors: u64,
    /// Bytes sent in all.
    pub bytes_sent: u64,
}

/// Sends the profile's body but its last bytes on each of `o.connections`
/// connections and holds them for `hold`.
pub async fn stall(profile: &Profile, o: &LoadOptions, hold: Duration) -> Result<Stalled, String> {
    let (body, content_type) = profile.body();
    let url = o
        .url
        .split(',')
        .map(str::trim)
        .find(|u| !u.is_empty())
        .map(|u| format!("{}/v1/submissions", u.trim_end_matches('/')))
        .ok_or("no gateway URL given")?;
    let held = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let refused: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..o.connections.max(1) {
        let tls =
            crate::listen::tls::client_config(&o.identity.cert, &o.identity.key, &o.identity.ca)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(hold + Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        // The last part's end and the closing boundary stay unsent: a form
        // whose closing boundary arrived is complete, even without its final CRLF.
        let most = body.slice(..body.len().saturating_sub(HELD_BACK));
        let chunks: Vec<Result<Bytes, std::io::Error>> = (0..most.len())
            .step_by(64 << 10)
            .map(|at| Ok(most.slice(at..(at + (64 << 10)).min(most.len()))))
            .collect();
        let (held, sent, errors, refused) =
            (held.clone(), sent.clone(), errors.clone(), refused.clone());
        let (url, content_type, length) = (url.clone(), content_type.clone(), body.len());
        let counted = sent.clone();
        let stream = futures_util::stream::iter(chunks.into_iter().inspect(move |c| {
            if let Ok(b) = c {
                counted.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }));
        // Set once everything but the held-back end is sent.
        let reached = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reached_now = reached.clone();
        let tail = futures_util::stream::once(async move {
            reached_now.store(true, Ordering::Relaxed);
            tokio::time::sleep(hold).await;
            Err::<Bytes, _>(std::io::Error::other("stalled on purpose"))
        });
        use futures_util::StreamExt as _;
        let stream = stream.chain(tail);
        tasks.push(tokio::spawn(async move {
            let answer = client
                .post(&url)
                .header("content-type", content_type)
                .header("content-length", length)
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await;
            match answer {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let bytes = r.bytes().await.unwrap_or_default();
                    if let Ok(mut m) = refused.lock() {
                        *m.entry(super::probe::reason(status, &bytes)).or_default() += 1;
                    }
                }
                // Our own abort after the hold, or the gateway closing it early.
                Err(_) if reached.load(Ordering::Relaxed) => {
                    held.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let refused = refused.lock().map(|r| r.clone()).unwrap_or_default();
    Ok(Stalled {
        profile: profile.name.clone(),
        connections: o.connections,
        held: held.load(Ordering::Relaxed),
        refused,
        errors: errors.load(Ordering::Relaxed),
        bytes_sent: sent.load(Ordering::Relaxed),
    })
}
