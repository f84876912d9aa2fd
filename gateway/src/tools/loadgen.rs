//! `ozg-gateway loadgen`: drives a running gateway like many portals at once and
//! reports what it accepted, how fast, and — from the admin listener's metrics —
//! how fast it delivered.
//!
//! Each connection is one task with its own keep-alive HTTPS connection and the
//! demo portal's certificate; the multipart body is built once per profile and
//! sent as is, so the load generator spends its CPU on TLS, not on encoding.

mod probe;
mod stall;

pub use stall::{stall, Stalled};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::tools::client::PortalIdentity;

/// What to send.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub leistung: String,
    pub destination: String,
    pub data_size: usize,
    pub attachment_size: usize,
    /// A data part to send instead of the generated XML: (bytes, media type,
    /// where it came from).
    pub data: Option<(Bytes, String, String)>,
}

impl Profile {
    /// `small`: 8 KiB XML, no attachment. `typical`: 16 KiB XML + 256 KiB
    /// PDF-like attachment. `large`: 16 KiB XML + one 32 MiB attachment (a
    /// Bauantrag's scans).
    pub fn named(name: &str) -> Option<Profile> {
        let (leistung, data_size, attachment_size) = match name {
            "small" => ("99000000000001", 8 << 10, 0),
            "typical" => ("99000000000002", 16 << 10, 256 << 10),
            "large" => ("99000000000003", 16 << 10, 32 << 20),
            _ => return None,
        };
        Some(Profile {
            name: name.into(),
            leistung: leistung.into(),
            destination: "05315000".into(),
            data_size,
            attachment_size,
            data: None,
        })
    }

    /// The data part from `path` (`.json`: JSON, else XML).
    pub fn with_data_file(mut self, path: &std::path::Path) -> Result<Profile, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let json = path.extension().is_some_and(|e| e == "json");
        let media_type = if json {
            "application/json"
        } else {
            "application/xml"
        };
        self.data_size = bytes.len();
        self.data = Some((bytes.into(), media_type.into(), path.display().to_string()));
        Ok(self)
    }

    /// Bytes of payload (data + attachment) per submission.
    pub fn payload(&self) -> usize {
        self.data_size + self.attachment_size
    }

    /// The multipart body and its content type.
    pub fn body(&self) -> (Bytes, String) {
        let boundary = "ozg-loadgen-7MA4YWxkTrZu0gW";
        let (data, media_type) = match &self.data {
            Some((bytes, media_type, _)) => (bytes.to_vec(), media_type.as_str()),
            None => {
                let mut xml =
                    String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><antrag><feld>");
                while xml.len() + 30 < self.data_size {
                    xml.push_str("Lorem ipsum dolor sit amet. ");
                }
                xml.push_str("</feld></antrag>");
                (xml.into_bytes(), "application/xml")
            }
        };
        let mut body = Vec::with_capacity(self.payload() + 1024);
        let mut part = |headers: &str, content: &[u8]| {
            body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        };
        part(
            "Content-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json",
            format!(
                r#"{{"leistung":"{}","destination":"{}"}}"#,
                self.leistung, self.destination
            )
            .as_bytes(),
        );
        part(
            &format!("Content-Disposition: form-data; name=\"data\"\r\nContent-Type: {media_type}"),
            &data,
        );
        if self.attachment_size > 0 {
            let mut pdf = b"%PDF-1.7\n".to_vec();
            let mut x: u32 = 0x9e37_79b9;
            while pdf.len() < self.attachment_size {
                // Incompressible filler, like a scanned document.
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                pdf.extend_from_slice(&x.to_le_bytes());
            }
            pdf.truncate(self.attachment_size);
            part(
                "Content-Disposition: form-data; name=\"attachment\"; filename=\"Nachweis.pdf\"\r\nContent-Type: application/pdf",
                &pdf,
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (
            Bytes::from(body),
            format!("multipart/form-data; boundary={boundary}"),
        )
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The gateway's portal URL; several, comma-separated, for the instances
    /// of a cluster (the connections are spread over them in turn).
    pub url: String,
    /// Admin listener for delivery figures (`http://127.0.0.1:9090`), if any;
    /// several, comma-separated, for a cluster's instances (deliveries are
    /// summed; the backlog is the store's, the same from any instance).
    pub admin: Option<String>,
    pub connections: usize,
    pub duration: Option<Duration>,
    pub count: Option<u64>,
    pub identity: PortalIdentity,
    pub progress: bool,
    /// When the gateway refuses the profile's Leistung, use a routed one it
    /// accepts (the user named none).
    pub fit: bool,
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub profile: String,
    pub connections: usize,
    pub seconds: f64,
    pub accepted: u64,
    pub refused: u64,
    /// The refusals by problem type (`no-route`, `portal-rate-limited`, …).
    pub refusals: BTreeMap<String, u64>,
    pub errors: u64,
    pub accepted_per_second: f64,
    pub payload_mib_per_second: f64,
    pub accept_latency_ms: Latency,
    /// From the admin metrics: deliveries completed during the run, per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_per_second: Option<f64>,
    /// Deliveries waiting (pending, retry_wait, in_flight) at the start and the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backlog_end: Option<f64>,
    /// Median time from acceptance to delivery (from the histogram; bucket resolution).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_latency_p50_ms: Option<f64>,
    /// The Leistung and destination sent (the profile's, or what the probe chose).
    pub leistung: String,
    pub destination: String,
    /// Why they differ from the profile's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

/// Delivered count, backlog and the delivery latency histogram from `/metrics`.
struct Scrape {
    delivered: f64,
    backlog: f64,
    buckets: Vec<(f64, f64)>,
}

async fn scrape(client: &reqwest::Client, admin: &str) -> Option<Scrape> {
    let text = client
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut s = Scrape {
        delivered: 0.0,
        backlog: 0.0,
        buckets: Vec::new(),
    };
    let value = |line: &str| {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    for line in text.lines() {
        if line.starts_with("ozg_delivery_attempts_total{")
            && line.contains("outcome=\"delivered\"")
        {
            s.delivered += value(line);
        } else if line.starts_with("ozg_deliveries{")
            && ["pending", "retry_wait", "in_flight"]
                .iter()
                .any(|st| line.contains(&format!("state=\"{st}\"")))
        {
            s.backlog += value(line);
        } else if let Some(rest) = line.strip_prefix("ozg_delivery_latency_seconds_bucket{") {
            if let Some(le) = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next()) {
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                };
                match s.buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, c)) => *c += value(line),
                    None => s.buckets.push((le, value(line))),
                }
            }
        }
    }
    s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(s)
}

/// [`scrape`] of every comma-separated admin URL, delivered counts and
/// histograms summed, the backlog (one store's) taken once.
async fn scrape_all(client: &reqwest::Client, admins: &str) -> Option<Scrape> {
    let mut total: Option<Scrape> = None;
    for admin in admins.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let s = scrape(client, admin).await?;
        total = Some(match total {
            None => s,
            Some(mut t) => {
                t.delivered += s.delivered;
                t.backlog = t.backlog.max(s.backlog);
                for (le, c) in s.buckets {
                    match t.buckets.iter_mut().find(|(b, _)| *b == le) {
                        Some((_, tc)) => *tc += c,
                        None => t.buckets.push((le, c)),
                    }
                }
                t.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                t
            }
        });
    }
    total
}

/// The upper bound of the bucket holding the median of the deliveries between two scrapes.
fn median_from_buckets(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, c)| {
            (
                *le,
                c - before
                    .iter()
                    .find(|(b, _)| b == le)
                    .map(|(_, c)| *c)
                    .unwrap_or(0.0),
            )
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, c)| *c >= total / 2.0)
        .map(|(le, _)| le * 1000.0)
}

/// Prints accepted/s, refusals and errors once a second (if `show`) until `stop`.
fn progress_task(
    stop: Arc<AtomicBool>,
    [accepted, refused, errors]: [Arc<AtomicU64>; 3],
    show: bool,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = 0;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = accepted.load(Ordering::Relaxed);
            if show {
                eprint!(
                    "\r{:>5.0}s  accepted {now:>9} ({:>7}/s)  refused {:>6}  errors {:>6}   ",
                    started.elapsed().as_secs_f64(),
                    now - last,
                    refused.load(Ordering::Relaxed),
                    errors.load(Ordering::Relaxed)
                );
            }
            last = now;
        }
    })
}

/// Runs the load and reports.
pub async fn run(profile: &Profile, o: &LoadOptions) -> Result<LoadReport, String> {
    let urls: Vec<String> = o
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| format!("{}/v1/submissions", u.trim_end_matches('/')))
        .collect();
    if urls.is_empty() {
        return Err("no gateway URL given".into());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let latencies: Arc<Mutex<Vec<u32>>> = Arc::default();
    let reasons: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let admin_client = reqwest::Client::builder()
        .use_preconfigured_tls(crate::listen::tls::client_config(
            &o.identity.cert,
            &o.identity.key,
            &o.identity.ca,
        )?)
        .build()
        .map_err(|e| e.to_string())?;
    // One submission first: a refusal is explained once, or a Leistung the
    // gateway takes is chosen.
    let mut profile = profile.clone();
    let note = probe::fit(&mut profile, o, &admin_client, &urls[0]).await?;
    if let (Some(n), true) = (&note, o.progress) {
        eprintln!("loadgen: {n}");
    }
    let profile = &profile;
    let (body, content_type) = profile.body();
    let before = match &o.admin {
        Some(a) => scrape_all(&admin_client, a).await,
        None => None,
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..o.connections.max(1) {
        let url = &urls[i % urls.len()];
        let tls =
            crate::listen::tls::client_config(&o.identity.cert, &o.identity.key, &o.identity.ca)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let (url, body, ct) = (url.clone(), body.clone(), content_type.clone());
        let (stop, accepted, refused, errors, issued, latencies, reasons) = (
            stop.clone(),
            accepted.clone(),
            refused.clone(),
            errors.clone(),
            issued.clone(),
            latencies.clone(),
            reasons.clone(),
        );
        let count = o.count;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(4096);
            let mut why: BTreeMap<String, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(n) = count {
                    if issued.fetch_add(1, Ordering::Relaxed) >= n {
                        break;
                    }
                }
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", &ct)
                    .body(body.clone())
                    .send()
                    .await;
                match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let answer = r.bytes().await.unwrap_or_default();
                        if status == 202 {
                            mine.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                            accepted.fetch_add(1, Ordering::Relaxed);
                        } else {
                            refused.fetch_add(1, Ordering::Relaxed);
                            *why.entry(probe::reason(status, &answer)).or_default() += 1;
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            latencies
                .lock()
                .map(|mut l| l.extend_from_slice(&mine))
                .ok();
            if let Ok(mut all) = reasons.lock() {
                for (k, n) in why {
                    *all.entry(k).or_default() += n;
                }
            }
        }));
    }
    let progress = progress_task(
        stop.clone(),
        [accepted.clone(), refused.clone(), errors.clone()],
        o.progress,
        started,
    );
    if let Some(d) = o.duration {
        tokio::time::sleep(d).await;
        stop.store(true, Ordering::Relaxed);
    }
    for t in tasks {
        let _ = t.await;
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let _ = progress.await;
    if o.progress {
        eprintln!();
    }
    let after = match &o.admin {
        Some(a) => scrape_all(&admin_client, a).await,
        None => None,
    };
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_unstable();
    let accepted = accepted.load(Ordering::Relaxed);
    Ok(LoadReport {
        profile: profile.name.clone(),
        connections: o.connections,
        seconds,
        accepted,
        refused: refused.load(Ordering::Relaxed),
        refusals: reasons.lock().map(|r| r.clone()).unwrap_or_default(),
        errors: errors.load(Ordering::Relaxed),
        accepted_per_second: accepted as f64 / seconds,
        payload_mib_per_second: accepted as f64 * profile.payload() as f64
            / seconds
            / (1 << 20) as f64,
        accept_latency_ms: Latency {
            p50: percentile(&lat, 0.50),
            p90: percentile(&lat, 0.90),
            p99: percentile(&lat, 0.99),
            max: percentile(&lat, 1.0),
        },
        delivered_per_second: match (&before, &after) {
            (Some(b), Some(a)) => Some((a.delivered - b.delivered) / seconds),
            _ => None,
        },
        backlog_start: before.as_ref().map(|b| b.backlog),
        backlog_end: after.as_ref().map(|a| a.backlog),
        delivery_latency_p50_ms: match (&before, &after) {
            (Some(b), Some(a)) => median_from_buckets(&b.buckets, &a.buckets),
            _ => None,
        },
        leistung: profile.leistung.clone(),
        destination: profile.destination.clone(),
        note,
    })
}

impl LoadReport {
    /// The human-readable summary.
    pub fn text(&self) -> String {
        let mut s = format!(
            "profile {} · {} connections · {:.1} s\n  accepted   {} ({:.0}/s, {:.1} MiB/s payload)\n  refused    {}   errors {}\n  202 latency p50 {:.1} ms · p90 {:.1} ms · p99 {:.1} ms · max {:.1} ms\n",
            self.profile,
            self.connections,
            self.seconds,
            self.accepted,
            self.accepted_per_second,
            self.payload_mib_per_second,
            self.refused,
            self.errors,
            self.accept_latency_ms.p50,
            self.accept_latency_ms.p90,
            self.accept_latency_ms.p99,
            self.accept_latency_ms.max
        );
        if !self.refusals.is_empty() {
            let why: Vec<String> = self
                .refusals
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            s.push_str(&format!("  refusals   {}\n", why.join(" · ")));
        }
        if let Some(n) = &self.note {
            s.push_str(&format!("  note       {n}\n"));
        }
        if let Some(d) = self.delivered_per_second {
            s.push_str(&format!(
                "  delivered  {d:.0}/s · backlog {:.0} → {:.0} · delivery latency p50 ≤ {}\n",
                self.backlog_start.unwrap_or(0.0),
                self.backlog_end.unwrap_or(0.0),
                self.delivery_latency_p50_ms
                    .map(|v| format!("{v:.0} ms"))
                    .unwrap_or_else(|| "n/a".into())
            ));
        }
        s
    }
}
