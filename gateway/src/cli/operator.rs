//! The operator's commands over the operator API: `deliveries`, `show`,
//! `retry`, `discard` — and where they find the gateway and the operator's
//! certificate (flags, environment, an operator settings file).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use super::args::{tls_client, DeliveriesArgs, OperatorArgs, ShowArgs};
use crate::tools::client;

/// An operator settings file (`--operator-config`, `OZG_OPERATOR_CONFIG`,
/// `~/.config/ozg-gateway/operator.toml` or `/etc/ozg-gateway/operator.toml`).
/// Relative paths are relative to the file's directory.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    url: Option<String>,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
}

/// The demo operator of a checkout, used only when nothing else is configured.
const DEMO_DIR: &str = "certs-example";

/// Where the operator settings file is looked for when none is named.
fn default_settings_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        files.push(Path::new(&home).join(".config/ozg-gateway/operator.toml"));
    }
    files.push("/etc/ozg-gateway/operator.toml".into());
    files
}

fn read_settings(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading operator settings {}", path.display()))?;
    let mut s: Settings =
        toml::from_str(&text).with_context(|| format!("operator settings {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [&mut s.certificate, &mut s.key, &mut s.ca]
        .into_iter()
        .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(s)
}

/// The gateway's operator API and a client with the operator's certificate.
pub(super) struct Operator {
    pub(super) url: String,
    pub(super) http: reqwest::Client,
}

impl OperatorArgs {
    /// Flags and environment first, then the settings file, then (in a
    /// checkout, with a notice) the demo operator.
    pub(super) fn resolve(&self) -> anyhow::Result<Operator> {
        let file = match &self.operator_config {
            Some(p) => Some(read_settings(p)?),
            None => default_settings_files()
                .into_iter()
                .find(|p| p.is_file())
                .map(|p| read_settings(&p))
                .transpose()?,
        };
        let file = file.unwrap_or_default();
        let url = self.url.clone().or(file.url);
        let cert = self.cert.clone().or(file.certificate);
        let key = self.key.clone().or(file.key);
        let ca = self.ca.clone().or(file.ca);
        let (url, cert, key, ca) = match (url, cert, key, ca) {
            (Some(u), Some(c), Some(k), Some(a)) => (u, c, k, a),
            (u, None, None, None) if Path::new(DEMO_DIR).join("operator.pem").is_file() => {
                eprintln!("note: no operator certificate configured; using the DEMO ONLY operator of ./{DEMO_DIR}");
                let demo = |f: &str| Path::new(DEMO_DIR).join(f);
                (
                    u.unwrap_or_else(|| "https://localhost:8443".into()),
                    demo("operator.pem"),
                    demo("operator.key"),
                    demo("ca.pem"),
                )
            }
            (u, c, k, a) => {
                let missing: Vec<&str> = [
                    (u.is_none(), "url (--url, OZG_GATEWAY_URL)"),
                    (c.is_none(), "certificate (--cert, OZG_OPERATOR_CERT)"),
                    (k.is_none(), "key (--key, OZG_OPERATOR_KEY)"),
                    (a.is_none(), "ca (--ca, OZG_GATEWAY_CA)"),
                ]
                .into_iter()
                .filter_map(|(m, what)| m.then_some(what))
                .collect();
                anyhow::bail!(
                    "operator settings incomplete: no {}; give them as flags, environment variables or in an operator settings file (--operator-config, OZG_OPERATOR_CONFIG, ~/.config/ozg-gateway/operator.toml, /etc/ozg-gateway/operator.toml)",
                    missing.join(", no ")
                )
            }
        };
        Ok(Operator {
            url: url.trim_end_matches('/').to_owned(),
            http: tls_client(&cert, &key, &ca)?,
        })
    }
}

impl Operator {
    fn get(&self, runtime: &tokio::runtime::Runtime, path: &str) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.url);
        let answer = runtime
            .block_on(client::status(&self.http, &url))
            .with_context(|| format!("cannot reach {url}"))?;
        Ok((answer.status, answer.body))
    }
}

/// The server's explanation of a refusal: its problem detail, else the status.
fn refusal(status: u16, body: &Value) -> String {
    match body["detail"].as_str() {
        Some(d) => format!("{status} {d}"),
        None => format!("HTTP {status}"),
    }
}

pub(super) fn action(action: &str, ids: &[String], op: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let op = op.resolve()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = false;
    for id in ids {
        let url = format!("{}/v1/admin/deliveries/{id}/{action}", op.url);
        let answer = runtime.block_on(async {
            let r = op.http.post(&url).send().await?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, body))
        });
        match answer {
            Ok((status, body)) if status.is_success() => match action {
                // Retry makes it due now; delivered is what the engine does next.
                "retry" => println!(
                    "{id}: scheduled for delivery now (target {}); `ozg-gateway deliveries --state pending` shows it until it is delivered",
                    body["target"].as_str().unwrap_or("?")
                ),
                _ => println!(
                    "{id}: discarded (target {}); its sealed envelope is deleted",
                    body["target"].as_str().unwrap_or("?")
                ),
            },
            Ok((status, body)) => {
                failed = true;
                eprintln!("{id}: {action} refused: {}", refusal(status.as_u16(), &body));
            }
            Err(e) => {
                failed = true;
                eprintln!("{id}: {action} failed: cannot reach {url}: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line per target whose breaker is not closed.
fn breaker_lines(breakers: &Value) -> Vec<String> {
    let Some(map) = breakers.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, b)| b["state"] != "closed")
        .map(|(t, b)| match b["state"].as_str() {
            Some("open") => format!(
                "target {t}: PAUSED (circuit breaker open after {} failures in a row) until {}; then one probe",
                b["failures_in_a_row"],
                b["paused_until"].as_str().unwrap_or("?")
            ),
            _ => format!("target {t}: probing (circuit breaker half-open): one attempt decides"),
        })
        .collect()
}

pub(super) fn deliveries(
    DeliveriesArgs { state, target, op }: DeliveriesArgs,
) -> anyhow::Result<ExitCode> {
    let op = op.resolve()?;
    let one = [state.as_str()];
    let states: &[&str] = match state.as_str() {
        "queue" => &["pending", "in_flight", "retry_wait", "parked"],
        "waiting" => &["pending", "retry_wait"],
        "all" => &[
            "pending",
            "in_flight",
            "retry_wait",
            "parked",
            "delivered",
            "discarded",
        ],
        _ => &one,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    let mut breakers = Value::Null;
    for s in states {
        let mut path = format!("/v1/admin/deliveries?state={s}");
        if let Some(t) = &target {
            path.push_str(&format!("&target={t}"));
        }
        let (status, body) = op.get(&runtime, &path)?;
        if status != 200 {
            eprintln!("listing refused: {}", refusal(status, &body));
            return Ok(ExitCode::FAILURE);
        }
        rows.extend(body["deliveries"].as_array().cloned().unwrap_or_default());
        breakers = body["breakers"].clone();
    }
    for line in breaker_lines(&breakers) {
        println!("{line}");
    }
    println!(
        "{:<38} {:<22} {:<10} {:>8}  {:<26} {:<26} last error",
        "message_id", "target", "state", "attempts", "since", "next attempt"
    );
    for d in &rows {
        println!(
            "{:<38} {:<22} {:<10} {:>8}  {:<26} {:<26} {}",
            d["message_id"].as_str().unwrap_or_default(),
            d["target"].as_str().unwrap_or_default(),
            d["state"].as_str().unwrap_or_default(),
            d["attempts"],
            d["updated_at"].as_str().unwrap_or_default(),
            d["next_attempt_at"].as_str().unwrap_or("-"),
            d["last_error"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn show(
    ShowArgs {
        submission_id,
        json,
        op,
    }: ShowArgs,
) -> anyhow::Result<ExitCode> {
    let op = op.resolve()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let (status, body) = op.get(&runtime, &format!("/v1/admin/submissions/{submission_id}"))?;
    if status != 200 {
        eprintln!("{submission_id}: {}", refusal(status, &body));
        return Ok(ExitCode::FAILURE);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    let field = |k: &str| body[k].as_str().unwrap_or("?").to_owned();
    println!("submission   {}", field("submission_id"));
    println!("portal       {}", field("portal"));
    println!("leistung     {}", field("leistung"));
    println!("destination  {}", field("destination"));
    println!("received at  {}", field("received_at"));
    for line in breaker_lines(&body["breakers"]) {
        println!("{line}");
    }
    println!(
        "{:<22} {:<10} {:>8}  {:<26} {:<38} last error",
        "target", "state", "attempts", "next attempt", "message_id"
    );
    for d in body["deliveries"].as_array().into_iter().flatten() {
        println!(
            "{:<22} {:<10} {:>8}  {:<26} {:<38} {}",
            d["target"].as_str().unwrap_or_default(),
            d["state"].as_str().unwrap_or_default(),
            d["attempts"],
            d["next_attempt_at"].as_str().unwrap_or("-"),
            d["message_id"].as_str().unwrap_or_default(),
            d["last_error"].as_str().unwrap_or("")
        );
    }
    println!("Laufzettel: ozg-gateway audit trace {submission_id}");
    Ok(ExitCode::SUCCESS)
}

/// `reload`: asks the admin listener of the daemon that runs with `config`.
pub(super) fn reload(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match crate::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "reload refused, nothing was sent to the daemon; the config in force stays: {e}"
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let url = format!("http://{}/reload", cfg.admin.listen);
    let runtime = tokio::runtime::Runtime::new()?;
    let (status, body) = runtime
        .block_on(async {
            let r = reqwest::Client::new().post(&url).send().await?;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or_default();
            Ok::<_, reqwest::Error>((status, body))
        })
        .with_context(|| {
            format!(
                "cannot reach the daemon's admin listener at {url}; is it running with {}?",
                config.display()
            )
        })?;
    if status == 200 {
        println!("reloaded: {}", serde_json::to_string_pretty(&body)?);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "reload refused: {}",
            body["detail"].as_str().unwrap_or("(no detail)")
        );
        Ok(ExitCode::FAILURE)
    }
}
