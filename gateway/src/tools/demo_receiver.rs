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
    /// The gateway's seal certificates (old and new during a rotation):
    /// envelopes sealed by any other key are refused.
    pub seals: Vec<PathBuf>,
    pub out: PathBuf,
    /// Answer 200 without opening (a sink for benchmarks).
    pub accept_only: bool,
    /// Misbehave on purpose (the conformance kit's tests).
    pub broken: Option<Broken>,
    /// Also consume envelopes from a RabbitMQ queue (as a Fachverfahren's
    /// consumer behind an `amqp` target would).
    pub amqp: Option<AmqpInbox>,
    /// Also read a message box over XTA (as a Fachverfahren behind an `xta`
    /// target would).
    pub xta: Option<XtaInbox>,
}

/// The message box the demo receiver reads over XTA, and where it reports
/// what it made of each message: the same JSON as for AMQP, posted to
/// `results` (the conformance kit's protocol for XTA clients). Every message
/// is closed once judged: XTA has no refusal.
#[derive(Debug, Clone)]
pub struct XtaInbox {
    /// The XTA endpoint, e.g. `https://localhost:8444/xta`.
    pub url: String,
    /// CA of the XTA listener's server certificate.
    pub ca: PathBuf,
    /// The reader's client certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    pub account: String,
    /// `http://…/results`.
    pub results: String,
}

/// The queue the demo receiver consumes, and where it reports what it made of
/// each envelope: a JSON `{"message_id", "verdict": "taken" | "duplicate" |
/// "refused" | "failed", "detail"}` published to the queue `results` (the
/// conformance kit's protocol for AMQP consumers).
#[derive(Debug, Clone)]
pub struct AmqpInbox {
    pub url: String,
    pub queue: String,
    pub results: String,
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
    /// Report on each message of the XTA box but never close it.
    LeaveOpen,
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

/// What the receiver made of one envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Opened and passed on (stored).
    Taken(String),
    /// Passed on before: not again.
    Duplicate(String),
    /// Does not open: refused for good (a 4xx), or as a `status` of 5xx by a
    /// broken receiver.
    Refused { status: u16, detail: String },
    /// Could not be stored now.
    Unavailable(String),
}

impl Receiver {
    /// Opens, checks and stores one envelope.
    fn judge(&self, body: &[u8]) -> Verdict {
        let id_of = |body: &[u8]| {
            serde_json::from_slice::<Envelope>(body)
                .map(|e| e.message_id)
                .unwrap_or_default()
        };
        if self.accept_only {
            return Verdict::Taken(String::new());
        }
        if self.broken == Some(Broken::AcceptTampered) {
            // Taken (once per message id) without opening anything.
            let id = id_of(body);
            let seen = self
                .passed_on
                .lock()
                .map(|mut counts| counts.insert(id.clone(), 1).is_some())
                .unwrap_or(false);
            return if seen {
                Verdict::Duplicate(id)
            } else {
                Verdict::Taken(id)
            };
        }
        let refused = |detail: String| Verdict::Refused {
            status: match self.broken {
                Some(Broken::RetryOnRefusal) => 503,
                _ => 422,
            },
            detail,
        };
        if self.broken == Some(Broken::RejectLarge) && body.len() > 16 << 20 {
            return Verdict::Refused {
                status: 413,
                detail: "too large".into(),
            };
        }
        let env: Envelope = match serde_json::from_slice(body) {
            Ok(e) => e,
            Err(e) => return refused(format!("not an envelope: {e}")),
        };
        let Some(stem) = safe_file_name(&env.message_id).filter(|s| s == &env.message_id) else {
            return refused("message_id is not a plain name".into());
        };
        let dir = self.out.join(&stem);
        if dir.join("manifest.json").exists() && self.broken != Some(Broken::StoreDuplicates) {
            tracing::info!(message_id = %env.message_id, "duplicate delivery: already have it");
            return Verdict::Duplicate(env.message_id);
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
                return refused(e.to_string());
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
                Verdict::Taken(env.message_id)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Verdict::Unavailable(format!("cannot store: {e}"))
            }
        }
    }

    /// The HTTP answer to one envelope.
    fn take(&self, body: &[u8]) -> hyper::Response<Full<Bytes>> {
        let problem = |status: u16, detail: String| {
            let body = serde_json::json!({"type": "/problems/envelope-refused", "title": "Envelope refused", "status": status, "detail": detail});
            answer(status, "application/problem+json", body.to_string())
        };
        match self.judge(body) {
            Verdict::Taken(id) if id.is_empty() => answer(200, "application/json", "{}".into()),
            Verdict::Taken(id) | Verdict::Duplicate(id) => answer(
                200,
                "application/json",
                serde_json::json!({"message_id": id, "status": "accepted"}).to_string(),
            ),
            Verdict::Refused { status: 413, .. } => answer(413, "text/plain", "too large\n".into()),
            Verdict::Refused { status, detail } => problem(status, detail),
            Verdict::Unavailable(detail) => problem(503, detail),
        }
    }
}

impl Verdict {
    /// The verdict as the kit's protocols report it, its detail, and whether
    /// the message is kept (taken or a duplicate of one taken).
    fn report(&self) -> (&'static str, String, bool) {
        match self {
            Verdict::Taken(_) => ("taken", String::new(), true),
            Verdict::Duplicate(_) => ("duplicate", String::new(), true),
            Verdict::Refused { status, detail } if *status < 500 => {
                ("refused", detail.clone(), false)
            }
            Verdict::Refused { detail, .. } | Verdict::Unavailable(detail) => {
                ("failed", detail.clone(), false)
            }
        }
    }
}

/// Reads the XTA box until the process ends: lists it, and per message
/// fetches, judges, reports to `inbox.results` and closes it. A failed round
/// is logged and tried again a second later (the box may not be up yet).
async fn read_box(receiver: Arc<Receiver>, inbox: XtaInbox) -> anyhow::Result<()> {
    let tls = crate::listen::tls::client_config(&inbox.cert, &inbox.key, &inbox.ca)
        .map_err(anyhow::Error::msg)?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(std::time::Duration::from_secs(300))
        .build()?;
    tracing::warn!(url = %inbox.url, account = %inbox.account, "demo receiver reading its XTA message box");
    loop {
        match read_round(&receiver, &inbox, &client).await {
            Ok(0) => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the XTA message box failed; again in 1 s");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// One round of [`read_box`]: how many messages it took out of the box.
async fn read_round(
    receiver: &Arc<Receiver>,
    inbox: &XtaInbox,
    client: &reqwest::Client,
) -> anyhow::Result<usize> {
    use crate::tools::xta_readers::{
        call, close_request, content, envelope, fetch_request, listed, LIST,
    };
    let list = envelope(
        LIST,
        &inbox.account,
        r#"<o:MsgBoxStatusListRequest maxListItems="100"/>"#,
    );
    let answer = call(client, &inbox.url, list)
        .await
        .map_err(anyhow::Error::msg)?;
    let ids = listed(&answer).map_err(anyhow::Error::msg)?;
    for id in &ids {
        let got = call(client, &inbox.url, fetch_request(&inbox.account, id))
            .await
            .map_err(anyhow::Error::msg)?;
        let verdict = match content(&got) {
            Ok(body) => {
                let r = receiver.clone();
                tokio::task::spawn_blocking(move || r.judge(&body)).await?
            }
            Err(detail) => Verdict::Refused {
                status: 422,
                detail,
            },
        };
        let (word, detail, _) = verdict.report();
        let report = serde_json::json!({"message_id": id, "verdict": word, "detail": detail});
        client
            .post(&inbox.results)
            .json(&report)
            .send()
            .await?
            .error_for_status()?;
        if receiver.broken == Some(Broken::LeaveOpen) {
            continue;
        }
        // Closed once the verdict is reported: XTA has no refusal.
        call(client, &inbox.url, close_request(&inbox.account, id))
            .await
            .map_err(anyhow::Error::msg)?;
    }
    Ok(ids.len())
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

/// Consumes `inbox.queue` until the connection ends: each envelope is judged
/// as over HTTPS, reported to `inbox.results`, then acknowledged (taken,
/// duplicate) or rejected without requeueing (refused, failed: the broker's
/// dead-letter exchange, if the queue has one, keeps it).
async fn consume(receiver: Arc<Receiver>, inbox: AmqpInbox) -> anyhow::Result<()> {
    use futures_util::StreamExt as _;
    use lapin::options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
        BasicQosOptions,
    };
    use lapin::types::FieldTable;
    let props = lapin::ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
        .with_connection_name("ozg-gateway demo-receiver".into());
    let conn = lapin::Connection::connect(&inbox.url, props).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(1, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            &inbox.queue,
            "ozg-demo-receiver",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::warn!(queue = %inbox.queue, results = %inbox.results, "demo receiver consuming over AMQP");
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let (r, body) = (receiver.clone(), delivery.data.clone());
        let verdict = tokio::task::spawn_blocking(move || r.judge(&body)).await?;
        let (word, detail, keep) = verdict.report();
        let report =
            serde_json::json!({"message_id": message_id, "verdict": word, "detail": detail});
        ch.basic_publish(
            "",
            &inbox.results,
            BasicPublishOptions::default(),
            report.to_string().as_bytes(),
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await?;
        if keep {
            delivery.ack(BasicAckOptions::default()).await?;
        } else {
            delivery
                .nack(BasicNackOptions {
                    requeue: false,
                    ..Default::default()
                })
                .await?;
        }
    }
    Ok(())
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
        seals: {
            let mut pins = SealPins::default();
            for path in &o.seals {
                pins.add_pem(&read(path)?)?;
            }
            pins
        },
        out: o.out.clone(),
    });
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    if let Some(inbox) = o.xta.clone() {
        let receiver = receiver.clone();
        tokio::spawn(async move {
            if let Err(e) = read_box(receiver, inbox).await {
                tracing::error!(error = %e, "the demo receiver's XTA reader stopped");
            }
        });
    }
    if let Some(inbox) = o.amqp.clone() {
        let receiver = receiver.clone();
        tokio::spawn(async move {
            if let Err(e) = consume(receiver, inbox).await {
                tracing::error!(error = %e, "the demo receiver's AMQP consumer stopped");
            }
        });
    }
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
