//! Where the operator commands find the operator API and the operator's
//! certificate: flags, environment, an operator settings file, the gateway's
//! config (its `[admin]` listener).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use super::args::{tls_client, OperatorArgs};

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

/// The operator API and a client for it.
pub(super) struct Operator {
    pub(super) url: String,
    pub(super) http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// The admin listener's URL from the gateway's config, if it can be read.
fn url_from_config(config: &Path) -> Option<String> {
    let cfg = crate::config::Config::load(config).ok()?;
    let scheme = if cfg.admin.tls { "https" } else { "http" };
    Some(format!("{scheme}://{}", cfg.admin.listen))
}

impl OperatorArgs {
    /// Flags and environment first, then the settings file, then the
    /// gateway's config; for HTTPS without a certificate, in a checkout (with
    /// a notice), the demo operator.
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
        let url = self
            .url
            .clone()
            .or(file.url)
            .or_else(|| url_from_config(&self.config))
            .unwrap_or_else(|| "http://127.0.0.1:9090".into());
        let runtime = tokio::runtime::Runtime::new()?;
        if !url.starts_with("https://") {
            return Ok(Operator {
                url: url.trim_end_matches('/').to_owned(),
                http: reqwest::Client::builder()
                    .default_headers(login_header())
                    .build()?,
                runtime,
            });
        }
        let cert = self.cert.clone().or(file.certificate);
        let key = self.key.clone().or(file.key);
        let ca = self.ca.clone().or(file.ca);
        let (cert, key, ca) = match (cert, key, ca) {
            (Some(c), Some(k), Some(a)) => (c, k, a),
            (None, None, None) if Path::new(DEMO_DIR).join("operator.pem").is_file() => {
                eprintln!("note: no operator certificate configured; using the DEMO ONLY operator of ./{DEMO_DIR}");
                let demo = |f: &str| Path::new(DEMO_DIR).join(f);
                (demo("operator.pem"), demo("operator.key"), demo("ca.pem"))
            }
            (c, k, a) => {
                let missing: Vec<&str> = [
                    (c.is_none(), "certificate (--cert, OZG_OPERATOR_CERT)"),
                    (k.is_none(), "key (--key, OZG_OPERATOR_KEY)"),
                    (a.is_none(), "ca (--ca, OZG_GATEWAY_CA)"),
                ]
                .into_iter()
                .filter_map(|(m, what)| m.then_some(what))
                .collect();
                anyhow::bail!(
                    "{url} is HTTPS: the operator API needs your client certificate; no {}; give them as flags, environment variables or in an operator settings file (--operator-config, OZG_OPERATOR_CONFIG, ~/.config/ozg-gateway/operator.toml, /etc/ozg-gateway/operator.toml)",
                    missing.join(", no ")
                )
            }
        };
        Ok(Operator {
            url: url.trim_end_matches('/').to_owned(),
            http: tls_client(&cert, &key, &ca)?,
            runtime,
        })
    }
}

/// On the plain loopback listener the login name is recorded with every
/// action (`local:<name>`); it is a hint for the audit log, not a credential.
fn login_header() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    let name = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&name) {
        if !name.is_empty() {
            h.insert("ozg-operator", v);
        }
    }
    h
}

impl Operator {
    /// One request (with a JSON body, if given); the status and the JSON
    /// body (a text body such as CSV as a JSON string), or why the gateway
    /// could not be asked.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.url);
        self.runtime
            .block_on(async {
                let mut r = self.http.request(method, &url);
                if let Some(b) = body {
                    r = r.json(b);
                }
                let r = r.send().await?;
                let status = r.status().as_u16();
                let csv = r
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/csv"));
                let text = r.text().await?;
                let body: Value = if csv {
                    Value::String(text)
                } else {
                    serde_json::from_str(&text).unwrap_or_default()
                };
                Ok::<_, reqwest::Error>((status, body))
            })
            .map_err(|e| format!("cannot reach the operator API at {url}: {e}"))
    }

    pub(super) fn call(&self, method: reqwest::Method, path: &str) -> Result<(u16, Value), String> {
        self.request(method, path, None)
    }

    /// A request with a JSON body.
    pub(super) fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), String> {
        self.request(method, path, Some(body))
    }

    pub(super) fn get(&self, path: &str) -> Result<(u16, Value), String> {
        self.call(reqwest::Method::GET, path)
    }

    pub(super) fn post(&self, path: &str) -> Result<(u16, Value), String> {
        self.call(reqwest::Method::POST, path)
    }
}
