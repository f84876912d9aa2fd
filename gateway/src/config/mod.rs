//! The typed configuration (`config/gateway.toml`).
//!
//! One file, parsed with `deny_unknown_fields` so a typo is an error, not a
//! silent default. `${NAME}` is replaced by the environment variable `NAME`
//! before parsing (for secrets). Relative paths are relative to the directory
//! of the config file. Every error names the file, the key and the fix.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ozg_adapter_amqp::AmqpConfig;
use ozg_adapter_filedrop::FiledropConfig;
use ozg_adapter_http::HttpConfig;
use serde::Deserialize;

mod access;
mod audit;
mod fitconnect;
mod limits;
mod pki;
pub mod registered;
mod size;
mod text;
mod xta;
pub use crate::store::backends::StoreConfig;
pub use access::{AdminConfig, ClientPins, OperatorConfig, PortalConfig, RepliesConfig};
pub use audit::{AuditConfig, TimestampConfig};
pub use fitconnect::{
    FitClientConfig, FitConnectConfig, FitDestinationConfig, FitRole, FitSubscriptionConfig,
};
pub use limits::Limits;
pub use pki::{is_pkcs11_uri, CertificateWindow, CrlSource, Pkcs11Config, PkiConfig, SealWindow};
pub use size::ByteSize;
use text::{interpolate, location, syntax_errors};
pub use xta::{message_box, MessageBoxConfig, XtaConfig};

use crate::model::policy::BreakerConfig;
use crate::model::policy::{RetryOverride, RetryPolicy};

/// A configuration problem: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key path, e.g. `ingest.limits.max_body`.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: `{}`: {}\n    fix: {}",
            self.file.display(),
            self.key,
            self.problem,
            self.fix
        )
    }
}

/// All problems found in one config file.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "configuration refused ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where submissions, deliveries and idempotency keys are kept.
    pub store: StoreConfig,
    /// The portal-facing HTTPS listener.
    pub ingest: IngestConfig,
    /// The admin listener: health, metrics, the operator API.
    pub admin: AdminConfig,
    /// The XTA 2 listener (message boxes, sending, management), if wanted.
    #[serde(default)]
    pub xta: Option<XtaConfig>,
    /// The FIT-Connect Zustelldienst (Submission and Subscriber API v1), if wanted.
    #[serde(default)]
    pub fitconnect: Option<FitConnectConfig>,
    /// Destinations at FIT-Connect Zustelldienste this gateway subscribes to.
    #[serde(default)]
    pub fitconnect_subscriptions: Vec<FitSubscriptionConfig>,
    /// Trust anchors and the gateway's seal.
    pub pki: PkiConfig,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
    /// Registered portals (clients of the ingest listener).
    pub portals: Vec<PortalConfig>,
    /// Operators of the operator API on the admin listener, and their tenants.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
    /// Known Leistungen (FIM-Leistungsschlüssel), with their optional data schema.
    #[serde(default)]
    pub leistungen: BTreeMap<String, LeistungConfig>,
    /// Kinds of replies the targets send back (`bescheid`, …), each with an
    /// optional schema for the reply's data part. When any is listed, a reply
    /// of another type is refused.
    #[serde(default)]
    pub reply_types: BTreeMap<String, LeistungConfig>,
    /// Retries, concurrency and pausing of deliveries.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// How long sealed envelopes are kept (Datenschutz); audit records stay.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Signed checkpoints of the audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Delivery targets by id.
    pub targets: BTreeMap<String, TargetConfig>,
    /// Routing table: (leistung, destination) → targets; most specific match wins.
    pub routes: Vec<RouteConfig>,
    /// The file this was read from (set by [`Config::load`]).
    #[serde(skip)]
    pub source: PathBuf,
}

/// The ingest listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Address to bind, e.g. `127.0.0.1:8443` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Base URL portals reach this listener at; status URLs are built from it.
    /// Default: `https://localhost:<port>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Server certificate chain (PEM, leaf first).
    pub certificate: PathBuf,
    /// Server private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// CA certificates (PEM) that issue portal client certificates.
    pub client_ca: PathBuf,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `ozg_gateway=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A Leistung known to the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeistungConfig {
    /// Human-readable name (for operators).
    pub name: String,
    /// Schema the data part must match: a JSON Schema (`.json`, for JSON data) or an
    /// XML Schema (`.xsd`, for XML data; includes are resolved relative to the file).
    #[serde(default)]
    pub schema: Option<PathBuf>,
}

/// A delivery target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The target's encryption certificate (PEM): RSA >= 3072 or EC P-256, chaining to `pki.trust_anchors`.
    #[serde(default)]
    pub certificate: PathBuf,
    /// Instead of `certificate`: several, each with the time it takes over
    /// (a key rotation). New envelopes are encrypted for the one that took
    /// over last among those valid now.
    #[serde(default)]
    pub certificates: Vec<CertificateWindow>,
    /// A registered target's certificate itself (instead of a file).
    #[serde(skip)]
    pub certificate_pem: Option<String>,
    /// Registered over the operator API (not in the config file).
    #[serde(skip)]
    pub registered: bool,
    /// How envelopes travel to the target.
    pub adapter: AdapterConfig,
    /// What the envelope holds: `raw` (the parts as sent; the default) or
    /// `xdomea` (one xdomea 3.0.0 Geschaeftsgang.0201 package, for a DMS).
    #[serde(default)]
    pub payload: crate::model::routing::Payload,
    /// The envelope format this target receives: 2 (the default; parts in the
    /// JWE JSON serialization, their ciphertext shared with the submission's
    /// other targets) or 1 (every part a compact JWE encrypted for this target
    /// alone, for receivers whose JOSE library reads only the compact form).
    #[serde(
        default = "envelope_version_default",
        deserialize_with = "envelope_version"
    )]
    pub envelope_version: u32,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
    /// The tenant (e.g. a municipality) it belongs to; see `[[operators]] tenants`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Most attempts at once for this target (default: `delivery.concurrency`).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Changes to `delivery.retry` for this target; missing keys keep the global value.
    #[serde(default)]
    pub retry: RetryOverride,
    /// The client certificate its Fachverfahren sends replies with
    /// (`POST /v1/submissions/{id}/replies` on the ingest listener). A
    /// message-box target's reader may reply without it.
    #[serde(default)]
    pub reply_client: Option<ClientPins>,
    /// Set on the reply box the gateway keeps for a portal that fetches its
    /// replies (`[[portals]] replies = { certificate = … }`): the portal's id.
    #[serde(skip)]
    pub replies_of: Option<String>,
}

/// The envelope format the gateway writes unless a target asks for another.
pub const ENVELOPE_VERSION: u32 = ozg_adapter_sdk::envelope::ENVELOPE_VERSION;

fn envelope_version_default() -> u32 {
    ENVELOPE_VERSION
}

fn envelope_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        v @ (1 | 2) => Ok(v),
        other => Err(serde::de::Error::custom(format!(
            "envelope_version {other}: use 2 (the default) or 1 (compact JWE parts, not shared)"
        ))),
    }
}

/// The id of the reply box of portal `portal`.
pub fn reply_box(portal: &str) -> String {
    format!("{portal}.replies")
}

/// Adapter settings by type; each adapter's own crate documents its keys, and
/// resolves, checks and builds them through [`ozg_adapter_sdk::AdapterConfig`].
/// Adding an adapter: its crate, one variant here and its arm in the two
/// methods below.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum AdapterConfig {
    /// Write `<message_id>.json` atomically into a directory a DMS imports from.
    Filedrop(FiledropConfig),
    /// POST the envelope to an HTTPS endpoint with a client certificate.
    Http(HttpConfig),
    /// Publish the envelope to a RabbitMQ exchange with publisher confirms.
    Amqp(AmqpConfig),
    /// Keep the envelope in the gateway's message box until the target's
    /// reader fetches and closes it over XTA.
    Xta(MessageBoxConfig),
}

impl AdapterConfig {
    /// The chosen adapter's settings.
    pub fn settings(&self) -> &dyn ozg_adapter_sdk::AdapterConfig {
        match self {
            AdapterConfig::Filedrop(c) => c,
            AdapterConfig::Http(c) => c,
            AdapterConfig::Amqp(c) => c,
            AdapterConfig::Xta(c) => c,
        }
    }

    /// The adapter's type, as written in `type = …`.
    pub fn kind(&self) -> &'static str {
        match self {
            AdapterConfig::Filedrop(_) => "filedrop",
            AdapterConfig::Http(_) => "http",
            AdapterConfig::Amqp(_) => "amqp",
            AdapterConfig::Xta(_) => "xta",
        }
    }

    /// The chosen adapter's settings, to resolve their paths.
    pub fn settings_mut(&mut self) -> &mut dyn ozg_adapter_sdk::AdapterConfig {
        match self {
            AdapterConfig::Filedrop(c) => c,
            AdapterConfig::Http(c) => c,
            AdapterConfig::Amqp(c) => c,
            AdapterConfig::Xta(c) => c,
        }
    }
}

/// Retention of sealed envelopes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Envelopes of a submission delivered to every target are deleted this long after the last delivery.
    #[serde(with = "humantime_serde")]
    pub delivered: Duration,
    /// A parked delivery nobody acted on is discarded (envelope deleted) this long after it was parked.
    #[serde(with = "humantime_serde")]
    pub parked: Duration,
    /// How often retention runs.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            delivered: Duration::from_secs(30 * 86400),
            parked: Duration::from_secs(180 * 86400),
            check_interval: Duration::from_secs(3600),
        }
    }
}

/// How deliveries are made (all targets).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Most attempts at once per target.
    pub concurrency: usize,
    /// Longest single attempt.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// On shutdown, how long running attempts may finish before they are handed back.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// When to retry and when to park.
    pub retry: RetryPolicy,
    /// When to pause a failing target.
    pub breaker: BreakerConfig,
    /// Envelopes being delivered hold at most this much memory, all targets
    /// together; a larger envelope goes out alone.
    pub envelope_memory: ByteSize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            concurrency: 8,
            attempt_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(20),
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            envelope_memory: ByteSize(128 << 20),
        }
    }
}

/// One routing rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Leistung pattern: exact, a prefix ending in `*`, or `*`.
    pub leistung: String,
    /// Destination pattern (e.g. an AGS or its prefix), default `*`.
    #[serde(default = "star")]
    pub destination: String,
    /// Target ids to deliver to.
    pub targets: Vec<String>,
    /// The tenant it belongs to (operators of that tenant see it).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Registered over the operator API (not in the config file).
    #[serde(skip)]
    pub registered: bool,
}

fn star() -> String {
    "*".into()
}

impl Config {
    /// Reads and parses a config file; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.into(),
                key: "(file)".into(),
                problem: format!("cannot read the config file: {e}"),
                fix: "pass an existing file with --config, e.g. config/gateway.toml".into(),
            }])
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text that was read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let one = |e: ConfigError| ConfigErrors(vec![e]);
        let text = interpolate(text, path).map_err(one)?;
        let de = toml::Deserializer::parse(&text).map_err(|_| {
            ConfigErrors(
                syntax_errors(&text)
                    .into_iter()
                    .map(|(key, problem)| ConfigError {
                        file: path.into(),
                        key,
                        problem,
                        fix: "correct the TOML syntax at that place".into(),
                    })
                    .collect(),
            )
        })?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let problem = inner.message().trim().to_owned();
            let fix = if problem.contains("unknown field") {
                "remove or rename the key; the message lists the keys allowed here".to_owned()
            } else if problem.contains("missing field") {
                "add the missing key; config/gateway.toml shows an example of every section"
                    .to_owned()
            } else {
                "give a value of the type described; config/gateway.toml shows an example"
                    .to_owned()
            };
            one(ConfigError {
                file: path.into(),
                key: format!("{key} ({})", location(&text, inner.span())),
                problem,
                fix,
            })
        })?;
        config.source = path.to_owned();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&base);
        config.add_reply_boxes().map_err(one)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.store.paths_mut().into_iter().for_each(fix);
        fix(&mut self.ingest.certificate);
        fix(&mut self.ingest.key);
        fix(&mut self.ingest.client_ca);
        self.pki.resolve_paths(base);
        for p in &mut self.portals {
            if let Some(c) = &mut p.certificate {
                fix(c);
            }
            if let Some(c) = p.replies.as_mut().and_then(|r| r.certificate.as_mut()) {
                fix(c);
            }
        }
        for o in &mut self.operators {
            if let Some(c) = &mut o.certificate {
                fix(c);
            }
        }
        for l in self
            .leistungen
            .values_mut()
            .chain(self.reply_types.values_mut())
        {
            if let Some(s) = &mut l.schema {
                fix(s);
            }
        }
        for t in self.targets.values_mut() {
            if !t.certificate.as_os_str().is_empty() {
                fix(&mut t.certificate);
            }
            for w in &mut t.certificates {
                fix(&mut w.file);
            }
            if let Some(c) = t.reply_client.as_mut().and_then(|r| r.certificate.as_mut()) {
                fix(c);
            }
            t.adapter.settings_mut().resolve_paths(base);
        }
        for sub in &mut self.fitconnect_subscriptions {
            fix(&mut sub.destination_key);
            fix(&mut sub.signing_key);
            fix(&mut sub.server_ca);
        }
        if let Some(t) = &mut self.audit.timestamp {
            fix(&mut t.anchors);
            if let Some(ca) = &mut t.server_ca {
                fix(ca);
            }
        }
        if let Some(f) = &mut self.fitconnect {
            fix(&mut f.signing_key);
            fix(&mut f.signing_certificate);
            for c in &mut f.clients {
                if let Some(p) = &mut c.signing_certificate {
                    fix(p);
                }
            }
            for d in f.destinations.values_mut() {
                if !d.certificate.as_os_str().is_empty() {
                    fix(&mut d.certificate);
                }
                for w in &mut d.certificates {
                    fix(&mut w.file);
                }
                if let Some(ca) = &mut d.callback_ca {
                    fix(ca);
                }
            }
        }
    }

    /// An error about `key` in this file.
    pub fn error(
        &self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.source.clone(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64MiB").unwrap().0, 64 << 20);
        assert_eq!(ByteSize::parse("10 KB").unwrap().0, 10_000);
        assert!(ByteSize::parse("12 parsecs").unwrap_err().contains("unit"));
    }

    #[test]
    fn unknown_key_names_file_key_and_line() {
        let text = include_str!("../../../config/gateway.toml").replace("max_parts", "max_partz");
        let err = Config::parse(&text, Path::new("config/gateway.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("config/gateway.toml"), "{msg}");
        assert!(msg.contains("ingest.limits"), "{msg}");
        assert!(msg.contains("max_partz"), "{msg}");
        assert!(msg.contains("line "), "{msg}");
        assert!(msg.contains("fix:"), "{msg}");
    }

    #[test]
    fn the_production_template_parses() {
        let c = Config::parse(
            include_str!("../../../config/production.toml"),
            Path::new("/etc/ozg-gateway/gateway.toml"),
        )
        .unwrap();
        assert_eq!(c.pki.privacy_key, Path::new("/etc/ozg-gateway/privacy.key"));
        assert_eq!(c.store.data_dirs(), [Path::new("/var/lib/ozg-gateway")]);
        assert_eq!(
            (c.portals.len(), c.targets.len(), c.routes.len()),
            (1, 1, 1)
        );
    }

    #[test]
    fn every_syntax_error_is_named_in_one_run() {
        let text = include_str!("../../../config/gateway.toml")
            .replace("max_parts = 32", "max_parts = = 32")
            .replace("level = \"info\"", "level = \"info")
            .replace("[delivery]", "[delivery");
        let err = Config::parse(&text, Path::new("config/gateway.toml")).unwrap_err();
        let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
        let lines: Vec<String> = err.0.iter().map(|e| e.key.clone()).collect();
        assert_eq!(err.0.len(), 3, "{err}");
        for needle in ["max_parts", "level", "[delivery"] {
            let want = format!("line {},", line_of(needle));
            assert!(lines.iter().any(|l| l.starts_with(&want)), "{want}: {err}");
        }
        assert!(err.0.iter().all(|e| e.fix.contains("TOML syntax")));
    }

    #[test]
    fn envelope_version_is_2_unless_a_target_asks_for_1() {
        let text = include_str!("../../../config/gateway.toml");
        let config = Config::parse(text, Path::new("config/gateway.toml")).unwrap();
        assert!(config.targets.values().all(|t| t.envelope_version == 2));
        let one = text.replace("# envelope_version = 1 ", "envelope_version = 1 ");
        let config = Config::parse(&one, Path::new("config/gateway.toml")).unwrap();
        assert_eq!(config.targets["dms-demo"].envelope_version, 1);
        // A portal's reply box takes it too; a portal whose replies go to a
        // target is told to set it there.
        let boxed = text.replace(
            "replies = { certificate = \"../certs-example/recipient-rsa.pem\" }",
            "replies = { certificate = \"../certs-example/recipient-rsa.pem\", envelope_version = 1 }",
        );
        let config = Config::parse(&boxed, Path::new("config/gateway.toml")).unwrap();
        assert_eq!(config.targets["portal-demo.replies"].envelope_version, 1);
        let pushed = text.replace(
            "replies = { certificate = \"../certs-example/recipient-rsa.pem\" }",
            "replies = { target = \"dms-demo\", envelope_version = 1 }",
        );
        let err = Config::parse(&pushed, Path::new("config/gateway.toml")).unwrap_err();
        assert!(err.to_string().contains("on that target instead"), "{err}");
        let three = text.replace("# envelope_version = 1 ", "envelope_version = 3 ");
        let err = Config::parse(&three, Path::new("config/gateway.toml")).unwrap_err();
        assert!(
            err.to_string().contains("envelope_version 3: use 2"),
            "{err}"
        );
    }

    #[test]
    fn missing_env_var_is_named() {
        let err =
            interpolate("url = \"${OZG_SURELY_UNSET_VAR}\"", Path::new("x.toml")).unwrap_err();
        assert!(err.problem.contains("OZG_SURELY_UNSET_VAR"));
    }

    #[test]
    fn an_env_var_default_applies_when_the_variable_is_unset_or_empty() {
        let path = Path::new("x.toml");
        assert_eq!(
            interpolate("listen = \"127.0.0.1:${OZG_SURELY_UNSET_VAR:-8443}\"", path).unwrap(),
            "listen = \"127.0.0.1:8443\""
        );
        // PATH is set in every test run: the variable wins over the default.
        let path_var = std::env::var("PATH").unwrap();
        assert_eq!(interpolate("${PATH:-x}", path).unwrap(), path_var);
        assert_eq!(interpolate("${OZG_SURELY_UNSET_VAR:-}", path).unwrap(), "");
        // A commented-out setting does not need its variable.
        let commented = "  # pin = \"${OZG_SURELY_UNSET_VAR}\"\nx = 1\n";
        assert_eq!(interpolate(commented, path).unwrap(), commented);
    }

    #[test]
    fn shipped_cluster_config_parses() {
        let c = Config::parse(
            include_str!("../../../config/cluster.toml"),
            Path::new("/etc/ozg/cluster.toml"),
        )
        .unwrap();
        assert!(c.store.broker().is_some());
        assert!(
            c.fitconnect.is_none(),
            "the Zustelldienst runs embedded only"
        );
    }

    #[test]
    fn shipped_config_parses_and_resolves_paths() {
        let c = Config::parse(
            include_str!("../../../config/gateway.toml"),
            Path::new("/etc/ozg/gateway.toml"),
        )
        .unwrap();
        assert!(c.pki.seal_key.as_ref().unwrap().starts_with("/etc/ozg"));
        assert!(c.routes.len() >= 2);
    }
}
