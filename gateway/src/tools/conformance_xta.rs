//! The conformance kit for XTA clients (`ozg-gateway conformance xta`): a
//! message box of the gateway's own, run by the kit, preloaded with the
//! series. The vendor's client reads it over the gateway's real XTA listener
//! (`getStatusList`, `getMessage`, `close`) with the certificate of its
//! target, and reports what it made of each message to the kit: an HTTP
//! `POST /results` with JSON `{"message_id": "<the XTA MessageID>", "verdict":
//! "taken" | "duplicate" | "refused" | "failed", "detail": "…"}`. The kit
//! checks both what the client reported and what it closed. The demo
//! receiver's XTA reader is the reference.
//!
//! XTA gives a reader no way to refuse a message: `close` takes it out of the
//! box, and the gateway counts it delivered. So a conformant client closes
//! every message once it has judged it (one left open is offered forever and
//! reported overdue), and raises a refused one in its own operations, where
//! the report says where it went.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use ozg_adapter_sdk::{RecipientCert, SealKey};

use super::conformance::{case_in, Report, Series};
use crate::config::Config;
use crate::daemon::setup::Setup;
use crate::daemon::Gateway;
use crate::model::delivery::DeliveryState;
use crate::model::submission::{envelope_checksum, Accepted, NewDelivery, NewSubmission};
use crate::store::Store;

/// The cases, the verdict a conformant client reports, and why. Every
/// message must also end closed.
pub const XTA_CASES: [(&str, &str, &str); 7] = [
    ("valid", "taken, closed", "a correct envelope must be opened, passed on, and only then closed: the gateway counts a closed message delivered"),
    ("duplicate", "duplicate, closed", "the same envelope can be offered again (an operator resends it, a close was lost on the way); the case worker must see it once, and the client must still close it"),
    ("tampered-ciphertext", "refused, closed", "a part whose AES-GCM tag does not verify was changed on the way: never pass it on; close it (XTA has no refusal) and raise it in the client's own operations"),
    ("forged-seal", "refused, closed", "a manifest sealed by another key than the gateway's seal is not from the gateway"),
    ("wrong-recipient", "refused, closed", "an envelope encrypted for another recipient cannot be opened here"),
    ("hash-mismatch", "refused, closed", "the sealed manifest's SHA-512 of a part must match it"),
    ("large", "taken, closed", "Bauanträge carry scans of tens of MiB; the client must fetch a message of that size whole"),
];

/// The message box the kit runs, and what it fills it with.
pub struct XtaKit {
    /// The `xta` target whose box is filled.
    pub target: String,
    /// Where the client reports (`POST /results`).
    pub results: SocketAddr,
    pub recipient: Arc<RecipientCert>,
    pub seal: Arc<SealKey>,
    pub forger: Option<SealKey>,
    pub large_bytes: usize,
    /// How long the client has for the whole series.
    pub wait: Duration,
}

/// What the kit tells before it waits: where the client connects and reports.
#[derive(Debug, Clone)]
pub struct Ready {
    pub xta_url: String,
    pub account: String,
    pub results_url: String,
}

/// The config of the kit's message box, made from a gateway config: its
/// listener certificate, client CAs, PKI and the target `target` (an `xta`
/// target, with its reader's account and certificate) — nothing else. The
/// box keeps its store in `data_dir`; the XTA listener binds `listen` (or the
/// config's); the other listeners bind free loopback ports.
pub fn box_config(
    mut config: Config,
    target: &str,
    data_dir: &Path,
    listen: Option<SocketAddr>,
) -> Result<Config, String> {
    let file = config.source.display().to_string();
    let t = config
        .targets
        .remove(target)
        .ok_or_else(|| format!("{file}: no target {target:?}"))?;
    if !matches!(t.adapter, crate::config::AdapterConfig::Xta(_)) {
        return Err(format!(
            "target {target:?} is not a message box (adapter type \"xta\")"
        ));
    }
    let Some(xta) = config.xta.as_mut() else {
        return Err(format!(
            "{file} has no [xta] listener: the kit serves the box over it"
        ));
    };
    if let Some(addr) = listen {
        xta.listen = addr;
        xta.public_url = None;
    }
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    config.store = crate::store::backends::StoreConfig::Embedded {
        data_dir: data_dir.to_owned(),
        group_commit_max: 64,
    };
    config.ingest.listen = loopback;
    config.admin.listen = loopback;
    config.fitconnect = None;
    config.fitconnect_subscriptions.clear();
    config.portals.clear();
    config.routes.clear();
    config.leistungen.clear();
    config.reply_types.clear();
    config.targets = [(target.to_owned(), t)].into_iter().collect();
    Ok(config)
}

/// What the client reported, by delivery message id (last report wins).
type Reports = Arc<Mutex<std::collections::HashMap<String, (String, String)>>>;

/// Serves `POST /results` until the returned task is aborted.
async fn results_server(listen: SocketAddr, reports: Reports) -> anyhow::Result<SocketAddr> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the results listener {listen}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let reports = reports.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let reports = reports.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(take_report(req, &reports).await)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

async fn take_report(
    req: hyper::Request<hyper::body::Incoming>,
    reports: &Reports,
) -> hyper::Response<Full<Bytes>> {
    let answer = |status: u16, text: &str| {
        let mut r = hyper::Response::new(Full::new(Bytes::from(format!("{text}\n"))));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
        r
    };
    if req.method() != http::Method::POST || req.uri().path() != "/results" {
        return answer(404, "POST reports to /results");
    }
    let Ok(body) = Limited::new(req.into_body(), 64 << 10).collect().await else {
        return answer(413, "a report is at most 64 KiB");
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) else {
        return answer(
            400,
            "a report is JSON {\"message_id\", \"verdict\", \"detail\"}",
        );
    };
    let (Some(id), Some(verdict)) = (v["message_id"].as_str(), v["verdict"].as_str()) else {
        return answer(400, "a report names \"message_id\" and \"verdict\"");
    };
    let detail = v["detail"].as_str().unwrap_or_default().to_owned();
    let id = crate::listen::xta::reply::message_id(id).to_owned();
    if let Ok(mut r) = reports.lock() {
        r.insert(id, (verdict.to_owned(), detail));
    }
    answer(204, "")
}

/// Puts one envelope into the target's box (the engine offers it).
async fn offer(
    store: &dyn Store,
    target: &str,
    message_id: &str,
    envelope: &Bytes,
) -> anyhow::Result<()> {
    let received_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let accepted = store
        .accept(NewSubmission {
            id: uuid::Uuid::now_v7().to_string(),
            portal: "conformance-kit".into(),
            leistung: "99000000000000".into(),
            destination: "00000000".into(),
            received_at,
            response: String::new(),
            idempotency: None,
            deliveries: vec![NewDelivery {
                message_id: message_id.to_owned(),
                target: target.to_owned(),
                envelope_crc32: envelope_checksum(envelope),
                envelope: envelope.to_vec(),
                splices: Vec::new(),
            }],
            shared: Vec::new(),
            parts: Vec::new(),
            privacy_key_id: String::new(),
            receipt_sha256: String::new(),
            reply: None,
            spool: None,
        })
        .await?;
    anyhow::ensure!(
        matches!(accepted, Accepted::Stored),
        "the kit's box did not store {message_id}"
    );
    Ok(())
}

impl XtaKit {
    /// Starts the box's gateway from `setup` (see [`box_config`]), fills the
    /// box, tells `ready` where the client goes, waits for the client to work
    /// through the series (or `wait`), and reports.
    pub async fn run(self, setup: Setup, ready: impl FnOnce(&Ready)) -> anyhow::Result<Report> {
        let reports: Reports = Arc::default();
        let results = results_server(self.results, reports.clone()).await?;
        let account = match setup.config.targets.get(&self.target).map(|t| &t.adapter) {
            Some(crate::config::AdapterConfig::Xta(x)) => x.account.clone(),
            _ => anyhow::bail!("target {:?} is not a message box", self.target),
        };
        let gateway = Gateway::start(setup).await?;
        let outcome = self
            .series(&gateway, &reports, results, account, ready)
            .await;
        gateway.shutdown().await?;
        outcome
    }

    async fn series(
        &self,
        gateway: &Gateway,
        reports: &Reports,
        results: SocketAddr,
        account: String,
        ready: impl FnOnce(&Ready),
    ) -> anyhow::Result<Report> {
        let store = gateway.store.as_ref();
        let series = Series::new(
            &self.seal,
            &self.recipient,
            self.forger.as_ref(),
            self.large_bytes,
            21,
        )?;
        let (valid_id, valid) = series.valid.clone();
        let mut ids: Vec<(&'static str, String)> = vec![("valid", valid_id.clone())];
        offer(store, &self.target, &valid_id, &valid).await?;
        for (name, built) in series.rest {
            let (id, env) = built?;
            offer(store, &self.target, &id, &env).await?;
            ids.push((name, id));
        }
        let xta = gateway
            .xta_addr
            .ok_or_else(|| anyhow::anyhow!("the box has no XTA listener"))?;
        ready(&Ready {
            xta_url: format!("https://localhost:{}/xta", xta.port()),
            account,
            results_url: format!("http://{results}/results"),
        });
        // The duplicate (the valid envelope once more, under a message id of
        // its own) is offered once the valid one is closed, as it would be.
        let duplicate_id = uuid::Uuid::new_v4().to_string();
        let mut duplicate_offered = false;
        let deadline = Instant::now() + self.wait;
        let closed = |id: String| async move {
            Ok::<bool, anyhow::Error>(matches!(
                store.delivery(&id).await?,
                Some(d) if d.state == DeliveryState::Delivered
            ))
        };
        loop {
            if !duplicate_offered && closed(valid_id.clone()).await? {
                offer(store, &self.target, &duplicate_id, &valid).await?;
                ids.insert(1, ("duplicate", duplicate_id.clone()));
                duplicate_offered = true;
            }
            let mut done = duplicate_offered;
            for (_, id) in &ids {
                let reported = reports.lock().map(|r| r.contains_key(id)).unwrap_or(false);
                done &= reported && closed(id.clone()).await?;
            }
            if done || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if !duplicate_offered {
            ids.insert(1, ("duplicate", String::new()));
        }
        let mut cases = Vec::new();
        for (name, id) in ids {
            let expected = XTA_CASES
                .iter()
                .find(|(n, _, _)| *n == name)
                .map_or("", |(_, e, _)| *e);
            let want = expected.split(',').next().unwrap_or_default();
            let (passed, got) = if id.is_empty() {
                (
                    false,
                    "not offered: the valid message was never closed".to_owned(),
                )
            } else {
                let report = reports.lock().ok().and_then(|r| r.get(&id).cloned());
                let shut = closed(id.clone()).await?;
                let right = report.as_ref().is_some_and(|(v, _)| v == want);
                (right && shut, describe(report, shut))
            };
            cases.push(case_in(&XTA_CASES, name, passed, got));
        }
        let passed = cases.iter().filter(|c| c.passed).count();
        Ok(Report {
            url: format!("message box {:?} of the kit", self.target),
            recipient: self.recipient.certificate().subject().to_owned(),
            passed,
            failed: cases.len() - passed,
            cases,
        })
    }
}

/// What the client did with a message, for the report: `verdict[: detail], closed`.
fn describe(report: Option<(String, String)>, closed: bool) -> String {
    let said = match report {
        Some((verdict, detail)) if detail.is_empty() => verdict,
        Some((verdict, detail)) => format!("{verdict}: {detail}"),
        None => "(no report)".into(),
    };
    let state = if closed {
        "closed"
    } else {
        "left in the box (offered again and again, then reported overdue)"
    };
    format!("{said}, {state}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_as_the_report_checks_it() {
        assert_eq!(
            describe(Some(("taken".into(), String::new())), true),
            "taken, closed"
        );
        assert_eq!(
            describe(Some(("refused".into(), "seal".into())), false),
            "refused: seal, left in the box (offered again and again, then reported overdue)"
        );
        assert_eq!(describe(None, true), "(no report), closed");
    }
}
