//! `ozg-gateway demo-receiver`: an HTTPS endpoint that does what a Fachverfahren's
//! inbox does with an envelope — open it (decrypt, verify the seal and every
//! hash), store the parts, answer `200` — so the quick start delivers end to end
//! and vendors see the receiving side working. Not a production receiver.
//!
//! Answers: `200 {"message_id", "status": "accepted"}` once the parts are on
//! disk (again for a message id it already has: duplicates are expected);
//! `422` problem+json when the envelope does not open (the gateway parks it).
//! `GET /count?message_id=…` says how often a message was passed on (stored):
//! what the conformance kit's duplicate case asks. It is the kit's reference;
//! `--broken` makes it misbehave in one way each, for the kit's own tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ozg_adapter_sdk::envelope::{output_file_name, safe_file_name};
use ozg_adapter_sdk::{Envelope, RecipientPrivateKey, SealPins, TrustAnchors};

/// Settings of the demo receiver.
pub struct ReceiverOptions {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub key: PathBuf,
    pub cert: Option<PathBuf>,
    pub trust: PathBuf,
    /// The gateway's seal certificate: envelopes sealed by any other key are refused.
    pub seal: PathBuf,
    pub out: PathBuf,
    /// Answer 200 without opening (a sink for benchmarks).
    pub accept_only: bool,
    /// Misbehave on purpose (the conformance kit's tests).
    pub broken: Option<Broken>,
}

/// Ways to get a receiver wrong, each one a case of the conformance kit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Broken {
    /// Answer 200 without opening the envelope.
    AcceptTampered,
    /// Answer 200 before reading the body.
    #[value(name = "early-200")]
    Early200,
    /// Answer 503 (retry) instead of 422 (park) to an envelope that does not open.
    RetryOnRefusal,
    /// Pass a message on again every time it arrives.
    StoreDuplicates,
    /// Refuse bodies over 16 MiB.
    RejectLarge,
}

struct Receiver {
    accept_only: bool,
    broken: Option<Broken>,
    /// How often each message was passed on (stored).
    passed_on: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    key: RecipientPrivateKey,
    trust: TrustAnchors,
    seals: SealPins,
    out: PathBuf,
}

fn answer(status: u16, ctype: &'static str, body: String) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}

impl Receiver {
    fn take(&self, body: &[u8]) -> hyper::Response<Full<Bytes>> {
        if self.accept_only {
            return answer(200, "application/json", "{}".into());
        }
        if self.broken == Some(Broken::AcceptTampered) {
            // Taken (once per message id) without opening anything.
            if let Ok(env) = serde_json::from_slice::<Envelope>(body) {
                if let Ok(mut counts) = self.passed_on.lock() {
                    counts.entry(env.message_id).or_insert(1);
                }
            }
            return answer(200, "application/json", "{}".into());
        }
        if self.broken == Some(Broken::RejectLarge) && body.len() > 16 << 20 {
            return answer(413, "text/plain", "too large\n".into());
        }
        let refused = match self.broken {
            Some(Broken::RetryOnRefusal) => 503,
            _ => 422,
        };
        let problem = |status: u16, detail: String| {
            let body = serde_json::json!({"type": "/problems/envelope-refused", "title": "Envelope refused", "status": status, "detail": detail});
            answer(status, "application/problem+json", body.to_string())
        };
        let env: Envelope = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) => return problem(refused, format!("not an envelope: {e}")),
        };
        let Some(stem) = safe_file_name(&env.message_id).filter(|s| s == &env.message_id) else {
            return problem(refused, "message_id is not a plain name".into());
        };
        let dir = self.out.join(&stem);
        let ok = || {
            answer(
                200,
                "application/json",
                serde_json::json!({"message_id": env.message_id, "status": "accepted"}).to_string(),
            )
        };
        if dir.join("manifest.json").exists() && self.broken != Some(Broken::StoreDuplicates) {
            tracing::info!(message_id = %env.message_id, "duplicate delivery: already have it");
            return ok();
        }
        let opened = match ozg_adapter_sdk::open(
            &env,
            &self.key,
            &self.trust,
            &self.seals,
            std::time::SystemTime::now(),
        ) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(message_id = %env.message_id, error = %e, "envelope refused");
                return problem(refused, e.to_string());
            }
        };
        let tmp = self.out.join(format!(".{stem}.tmp"));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&tmp)?;
            let mut used = std::collections::HashSet::from(["manifest.json".to_owned()]);
            for p in &opened.parts {
                let mut name = output_file_name(&p.meta);
                if !used.insert(name.clone()) {
                    name = format!("{}-{name}", p.meta.id);
                }
                std::fs::write(tmp.join(name), &p.data)?;
            }
            std::fs::write(
                tmp.join("manifest.json"),
                serde_json::to_vec_pretty(&opened.manifest).unwrap_or_default(),
            )?;
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::rename(&tmp, &dir)
        };
        match write() {
            Ok(()) => {
                tracing::info!(message_id = %env.message_id, submission_id = %opened.manifest.submission_id, parts = opened.parts.len(), "envelope opened and stored");
                if let Ok(mut counts) = self.passed_on.lock() {
                    *counts.entry(env.message_id.clone()).or_default() += 1;
                }
                ok()
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                problem(503, format!("cannot store: {e}"))
            }
        }
    }
}

impl Receiver {
    /// `GET /count?message_id=…`: how often that message was passed on.
    fn count(&self, query: Option<&str>) -> hyper::Response<Full<Bytes>> {
        let id = query
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("message_id="))
            .unwrap_or_default()
            .to_owned();
        let n = self
            .passed_on
            .lock()
            .map(|c| c.get(&id).copied().unwrap_or(0))
            .unwrap_or(0);
        answer(
            200,
            "application/json",
            serde_json::json!({"message_id": id, "count": n}).to_string(),
        )
    }
}

/// Runs until `shutdown` resolves.
pub async fn run(
    o: ReceiverOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let cert_pem = o.cert.as_ref().map(read).transpose()?;
    let receiver = Arc::new(Receiver {
        accept_only: o.accept_only,
        broken: o.broken,
        passed_on: Default::default(),
        key: RecipientPrivateKey::from_pem(&read(&o.key)?, cert_pem.as_deref())?,
        trust: TrustAnchors::from_pem(&read(&o.trust)?)?,
        seals: SealPins::from_pem(&read(&o.seal)?)?,
        out: o.out.clone(),
    });
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let chain = crate::listen::tls::load_chain(&o.tls_cert).map_err(anyhow::Error::msg)?;
    let key = {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::PrivateKeyDer::from_pem_file(&o.tls_key)
            .with_context(|| format!("reading {}", o.tls_key.display()))?
    };
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind(o.listen)
        .await
        .with_context(|| format!("binding {}", o.listen))?;
    tracing::warn!(listen = %o.listen, out = %o.out.display(), "demo receiver running: for trying out the gateway, not for production");
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            _ = &mut shutdown => return Ok(()),
        };
        let (acceptor, receiver) = (acceptor.clone(), receiver.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let receiver = receiver.clone();
                async move {
                    if req.method() == http::Method::GET && req.uri().path() == "/count" {
                        return Ok::<_, std::convert::Infallible>(
                            receiver.count(req.uri().query()),
                        );
                    }
                    if receiver.broken == Some(Broken::Early200) {
                        return Ok(answer(200, "application/json", "{}".into()));
                    }
                    if req.method() != http::Method::POST {
                        return Ok::<_, std::convert::Infallible>(answer(
                            405,
                            "text/plain",
                            "POST envelopes here\n".into(),
                        ));
                    }
                    let body = match Limited::new(req.into_body(), 512 << 20).collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => {
                            return Ok(answer(
                                413,
                                "text/plain",
                                "too large or incomplete\n".into(),
                            ))
                        }
                    };
                    let receiver = receiver.clone();
                    Ok(tokio::task::spawn_blocking(move || receiver.take(&body))
                        .await
                        .unwrap_or_else(|_| answer(500, "text/plain", "internal error\n".into())))
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        });
    }
}
