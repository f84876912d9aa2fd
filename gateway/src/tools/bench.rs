//! The machine's limits, measured beside the gateway by `bench/run.sh`:
//!
//! - [`crypto`]: hashing, sealing and encrypting submissions of a profile alone,
//!   in-process on all cores — what the gateway could do if nothing else cost.
//! - [`bare_https`]: an HTTPS endpoint on the same TLS stack and configuration
//!   (client certificates, TLS 1.3) that only reads the body and answers `202`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::core::intake::check::{CheckRules, DataChecks};
use crate::core::intake::pool::ValidationPool;
use crate::core::intake::validate::DataLimits;
use crate::core::intake::{Incoming, Intake, Metadata, Part, Routes, Sender};
use crate::daemon::setup::Setup;
use crate::model::submission::NewSubmission;
use crate::tools::loadgen::Profile;

/// Result of the crypto limit.
#[derive(Debug, Clone, Serialize)]
pub struct CryptoReport {
    pub profile: String,
    pub threads: usize,
    pub targets: usize,
    pub seconds: f64,
    pub submissions: u64,
    pub submissions_per_second: f64,
    pub payload_mib_per_second: f64,
}

/// Result of the seal benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct SealReport {
    /// `file` or the token key's URI.
    pub key: String,
    pub alg: &'static str,
    pub threads: usize,
    pub seconds: f64,
    pub signatures: u64,
    pub signatures_per_second: f64,
    /// One signature (a manifest-sized JWS), milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Seals a manifest-sized payload as a JWS over and over on `threads` threads
/// for `seconds`: what one signature of the configured seal key costs.
pub fn seal(setup: &Setup, seconds: f64, threads: usize) -> Result<SealReport, String> {
    let payload = vec![b'm'; 1200];
    let stop = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut times: Vec<u32> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let (seal, payload) = (setup.seal.current(), &payload);
                s.spawn(move || {
                    let mut times = Vec::new();
                    while Instant::now() < stop {
                        let t = Instant::now();
                        ozg_adapter_sdk::jose::sign(&seal, "ozg-bench", payload)
                            .map_err(|e| e.to_string())?;
                        times.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Ok::<_, String>(times)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(
                w.join()
                    .map_err(|_| "a signer thread panicked".to_owned())??,
            );
        }
        Ok::<_, String>(all)
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    times.sort_unstable();
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Ok(SealReport {
        key: setup
            .seal
            .current()
            .held_by()
            .unwrap_or_else(|| "file".into()),
        alg: setup.seal.current().alg(),
        threads: threads.max(1),
        seconds: elapsed,
        signatures: times.len() as u64,
        signatures_per_second: times.len() as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

/// The intake pipeline of `setup` over a scratch embedded store (removed on drop),
/// the targets `profile` routes to, and a function making one incoming submission.
struct Rig {
    pipeline: Arc<Intake>,
    targets: Vec<String>,
    scratch: std::path::PathBuf,
    incoming: Arc<dyn Fn() -> Incoming + Send + Sync>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Rig {
    fn new(setup: &Setup, profile: &Profile) -> Result<Rig, String> {
        let targets = setup
            .router
            .route(&profile.leistung, &profile.destination)
            .ok_or_else(|| format!("no route for Leistung {} in this config", profile.leistung))?
            .to_vec();
        let portal = setup
            .portals
            .any()
            .ok_or_else(|| "the config has no portal".to_string())?;
        let scratch = std::env::temp_dir().join(format!(
            "ozg-bench-crypto-{}-{}",
            std::process::id(),
            profile.name
        ));
        let store: Arc<dyn crate::store::Store> = Arc::new(
            crate::store::embedded::EmbeddedStore::open(&scratch, 1).map_err(|e| e.to_string())?,
        );
        let pipeline = Arc::new(Intake {
            checks: DataChecks {
                rules: arc_swap::ArcSwap::from_pointee(CheckRules {
                    limits: DataLimits::of(&Default::default()),
                    schemas: Default::default(),
                    xsds: Default::default(),
                    reply_types: Vec::new(),
                }),
                pool: ValidationPool::new(1, Duration::from_secs(1)),
            },
            seal: setup.seal.clone(),
            routes: arc_swap::ArcSwap::from_pointee(Routes {
                router: setup.router.clone(),
                targets: setup.targets.clone(),
                rotations: setup.rotations.clone(),
                payloads: setup.payloads(),
                format_1: setup.format_1_targets(),
                replies: setup.reply_routes(),
            }),
            store,
            public_url: "https://localhost".into(),
            wakers: Arc::default(),
            revoked: Arc::default(),
            privacy: setup.privacy.clone(),
        });
        let (body, _) = profile.body();
        let data = Bytes::from(vec![b'x'; profile.data_size]);
        let attachment = (profile.attachment_size > 0).then(|| {
            Bytes::from(
                body.slice(0..profile.attachment_size.min(body.len()))
                    .to_vec(),
            )
        });
        let (leistung, destination) = (profile.leistung.clone(), profile.destination.clone());
        let incoming = Arc::new(move || Incoming {
            sender: Sender::Portal(portal.clone()),
            metadata: Metadata {
                leistung: leistung.clone(),
                destination: destination.clone(),
                reference: None,
                payment: None,
                reply_channel: None,
            },
            data: Part {
                media_type: "application/xml".into(),
                filename: None,
                data: data.clone(),
                sealed: None,
            },
            attachments: attachment
                .iter()
                .map(|a| Part {
                    media_type: "application/pdf".into(),
                    filename: Some("Nachweis.pdf".into()),
                    data: a.clone(),
                    sealed: None,
                })
                .collect(),
            idempotency_key: None,
            stream: None,
        });
        Ok(Rig {
            pipeline,
            targets,
            scratch,
            incoming,
        })
    }

    fn prepare(&self) -> Result<NewSubmission, String> {
        let routes = self.pipeline.routes.load();
        self.pipeline
            .prepare(&routes, (self.incoming)(), self.targets.clone())
            .map(|(s, _)| s)
            .map_err(|r| format!("{}: {}", r.slug, r.detail))
    }
}

/// `n` submissions of `profile` as the gateway seals them (for the raw
/// PostgreSQL limit: rows of the same sizes).
pub fn samples(setup: &Setup, profile: &Profile, n: usize) -> Result<Vec<NewSubmission>, String> {
    let rig = Rig::new(setup, profile)?;
    (0..n).map(|_| rig.prepare()).collect()
}

/// Seals and encrypts submissions of `profile` for the targets its Leistung routes
/// to, on every core, for `seconds`.
pub fn crypto(setup: &Setup, profile: &Profile, seconds: f64) -> Result<CryptoReport, String> {
    let rig = Arc::new(Rig::new(setup, profile)?);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (rig, done, stop) = (rig.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if rig.prepare().is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    Ok(CryptoReport {
        profile: profile.name.clone(),
        threads,
        targets: rig.targets.len(),
        seconds: elapsed,
        submissions: n,
        submissions_per_second: n as f64 / elapsed,
        payload_mib_per_second: n as f64 * profile.payload() as f64 / elapsed / (1 << 20) as f64,
    })
}

/// Serves `POST` with `202 {}` after reading the body, on the ingest listener's TLS
/// configuration (client certificate checked), until `shutdown`.
pub async fn bare_https(
    setup: &Setup,
    listen: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("binding {listen}: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(setup.ingest_tls.clone());
    let peer_check = setup.peer_check.clone();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, peer_check) = (acceptor.clone(), peer_check.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            if peer_check
                .check(tls.get_ref().1.peer_certificates())
                .is_err()
            {
                return;
            }
            let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                let _ = req.into_body().collect().await;
                let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                *r.status_mut() = hyper::StatusCode::ACCEPTED;
                Ok::<_, std::convert::Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
