//! XTA readers for the benchmark: several Fachverfahren, each with its own
//! account and certificate, emptying their message boxes over the XTA
//! listener as fast as it lets them — `getStatusList` (100 at a time), then
//! per message `getMessage` and `close` on `workers` connections. Counts
//! messages fetched and closed, the envelope bytes fetched and the latency
//! of one fetch + close.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::listen::xta::tree;
use crate::tools::loadgen::{percentile, Latency};

/// One reader: its client certificate, key and XTA account.
#[derive(Debug, Clone)]
pub struct ReaderIdentity {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub account: String,
}

#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// The XTA endpoint, e.g. `https://localhost:8444/xta`.
    pub url: String,
    /// CA of the gateway's server certificate.
    pub ca: std::path::PathBuf,
    pub readers: Vec<ReaderIdentity>,
    /// Connections per reader fetching and closing at once.
    pub workers: usize,
    pub duration: Duration,
    /// Stop early once every box has been empty for this long.
    pub idle_stop: Option<Duration>,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ReaderReport {
    pub readers: usize,
    pub workers_per_reader: usize,
    pub seconds: f64,
    /// Messages fetched and closed.
    pub messages: u64,
    pub messages_per_second: f64,
    /// Sealed envelope bytes fetched, MiB/s.
    pub envelope_mib_per_second: f64,
    /// One getMessage + close, milliseconds.
    pub fetch_close_latency_ms: Latency,
    pub errors: u64,
}

pub(crate) const LIST: &str =
    "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxStatusListRequest";
const FETCH: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxFetchRequest";
const CLOSE: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxCloseRequest";

pub(crate) fn envelope(action: &str, account: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:m="http://www.osci.eu/ws/2014/10/transport" xmlns:o="http://www.osci.eu/ws/2008/05/transport"><s:Header><m:Author><m:Identifier type="xoev">{account}</m:Identifier></m:Author><wsa:Action>{action}</wsa:Action><wsa:MessageID>urn:uuid:{}</wsa:MessageID></s:Header><s:Body>{body}</s:Body></s:Envelope>"#,
        uuid::Uuid::new_v4()
    )
}

pub(crate) async fn call(
    client: &reqwest::Client,
    url: &str,
    xml: String,
) -> Result<bytes::Bytes, String> {
    let resp = client
        .post(url)
        .header("content-type", "application/soap+xml; charset=utf-8")
        .body(xml)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(body)
}

/// `getMessage` of message `id`.
pub(crate) fn fetch_request(account: &str, id: &str) -> String {
    let id = quick_xml::escape::escape(id);
    envelope(
        FETCH,
        account,
        &format!("<o:MsgBoxFetchRequest><o:MsgSelector><wsa:MessageID>{id}</wsa:MessageID></o:MsgSelector></o:MsgBoxFetchRequest>"),
    )
}

/// `close` of message `id`.
pub(crate) fn close_request(account: &str, id: &str) -> String {
    let id = quick_xml::escape::escape(id);
    envelope(
        CLOSE,
        account,
        &format!("<o:MsgBoxCloseRequest MsgBoxRequestID=\"urn:ozg-gateway:reader\"><o:LastMsgReceived>{id}</o:LastMsgReceived></o:MsgBoxCloseRequest>"),
    )
}

/// The message ids a getStatusList answer lists.
pub(crate) fn listed(answer: &[u8]) -> Result<Vec<String>, String> {
    let doc = tree::parse(answer)?;
    let list = doc
        .at(&["Body", "MsgStatusList"])
        .ok_or("no MsgStatusList in the answer")?;
    Ok(list
        .all("MessageMetaData")
        .filter_map(|m| m.at(&["MsgIdentification", "MessageID"]))
        .map(|n| n.value().to_owned())
        .collect())
}

/// The base64 text of the `Message` a getMessage answer carries, without white space.
fn message_text(answer: &[u8]) -> Result<String, String> {
    let doc = tree::parse(answer)?;
    let message = doc
        .at(&[
            "Body",
            "GenericContentContainer",
            "ContentContainer",
            "Message",
        ])
        .ok_or("no Message in the answer")?;
    Ok(message.text.split_whitespace().collect())
}

/// The content (the sealed envelope) a getMessage answer carries.
pub(crate) fn content(answer: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(message_text(answer)?)
        .map_err(|e| format!("the Message is not base64: {e}"))
}

/// The size of the content a getMessage answer carries.
fn content_size(answer: &[u8]) -> Result<u64, String> {
    Ok(message_text(answer)?.len() as u64 / 4 * 3)
}

struct Counters {
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    /// When any box last had something (ms since the start).
    last_busy_ms: AtomicU64,
}

/// Runs every reader until `duration` is over (or the boxes stayed empty).
pub async fn run(o: &ReaderOptions) -> Result<ReaderReport, String> {
    let counters = Arc::new(Counters {
        messages: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latencies: Mutex::default(),
        last_busy_ms: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for r in &o.readers {
        let mut clients = Vec::new();
        for _ in 0..o.workers.max(1) {
            let tls = crate::listen::tls::client_config(&r.cert, &r.key, &o.ca)?;
            clients.push(
                reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        let (url, account) = (o.url.clone(), r.account.clone());
        let (counters, stop) = (counters.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            reader(url, account, clients, counters, stop, started).await
        }));
    }
    let deadline = started + o.duration;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let idle = o.idle_stop.is_some_and(|idle| {
            let busy = Duration::from_millis(counters.last_busy_ms.load(Ordering::Relaxed));
            now.duration_since(started) > busy + idle
        });
        if now >= deadline || idle || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let seconds = Duration::from_millis(counters.last_busy_ms.load(Ordering::Relaxed))
        .max(Duration::from_millis(1))
        .as_secs_f64();
    let seconds = if o.idle_stop.is_some() {
        seconds
    } else {
        started.elapsed().as_secs_f64()
    };
    let messages = counters.messages.load(Ordering::Relaxed);
    let mut lat = counters
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    Ok(ReaderReport {
        readers: o.readers.len(),
        workers_per_reader: o.workers.max(1),
        seconds,
        messages,
        messages_per_second: messages as f64 / seconds,
        envelope_mib_per_second: counters.bytes.load(Ordering::Relaxed) as f64
            / seconds
            / (1 << 20) as f64,
        fetch_close_latency_ms: Latency {
            p50: percentile(&lat, 0.50),
            p90: percentile(&lat, 0.90),
            p99: percentile(&lat, 0.99),
            max: percentile(&lat, 1.0),
        },
        errors: counters.errors.load(Ordering::Relaxed),
    })
}

/// One reader: lists its box, fetches and closes what is listed on its
/// workers' connections, and lists again.
async fn reader(
    url: String,
    account: String,
    clients: Vec<reqwest::Client>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    started: Instant,
) -> Result<(), String> {
    let list = envelope(
        LIST,
        &account,
        r#"<o:MsgBoxStatusListRequest maxListItems="100"/>"#,
    );
    while !stop.load(Ordering::Relaxed) {
        let ids = listed(&call(&clients[0], &url, list.clone()).await?)?;
        if ids.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let shares: Vec<Vec<String>> = (0..clients.len())
            .map(|w| ids.iter().skip(w).step_by(clients.len()).cloned().collect())
            .collect();
        let mut work = Vec::new();
        for (client, share) in clients.iter().cloned().zip(shares) {
            let (url, account, counters) = (url.clone(), account.clone(), counters.clone());
            work.push(tokio::spawn(async move {
                for id in share {
                    let t = Instant::now();
                    let fetch = fetch_request(&account, &id);
                    let close = close_request(&account, &id);
                    let done = async {
                        let got = call(&client, &url, fetch).await?;
                        let size = content_size(&got)?;
                        call(&client, &url, close).await?;
                        Ok::<u64, String>(size)
                    }
                    .await;
                    match done {
                        Ok(size) => {
                            counters.messages.fetch_add(1, Ordering::Relaxed);
                            counters.bytes.fetch_add(size, Ordering::Relaxed);
                            if let Ok(mut l) = counters.latencies.lock() {
                                l.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            }
                            counters
                                .last_busy_ms
                                .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if counters.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("xta reader: {e}");
                            }
                        }
                    }
                }
            }));
        }
        for w in work {
            w.await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
