//! `conformance http` and `conformance amqp`: the vendors' kit (see
//! `tools::conformance`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{RecipientCert, SealKey};

use crate::tools::conformance::Report;

/// What the conformance kit runs against.
#[derive(clap::Subcommand)]
pub(super) enum ConformanceCommand {
    /// An HTTPS receiver (a target's `http` adapter): either a target of the
    /// gateway's config (`--target`), or named (`--url`, `--server-ca`,
    /// `--recipient-cert`, `--seal-cert`, `--seal-key`).
    Http(ConformanceHttpArgs),
    /// A consumer behind an `amqp` target: the series is published as the
    /// gateway publishes, and the consumer reports what it made of each
    /// envelope to the queue `--results` (JSON `{"message_id", "verdict":
    /// "taken" | "duplicate" | "refused" | "failed", "detail"}`).
    Amqp(ConformanceAmqpArgs),
    /// An XTA client: the kit runs a message box of the target's (an `xta`
    /// target of the config) preloaded with the series; the client reads it
    /// with the target's certificate and reports what it made of each message
    /// (HTTP `POST /results`, JSON `{"message_id", "verdict", "detail"}`).
    Xta(ConformanceXtaArgs),
}

/// What both kits take: where the target comes from, how to seal and encrypt.
#[derive(clap::Args)]
pub(super) struct KitArgs {
    /// Take the receiver, its certificate and the seal from this target of
    /// the config.
    #[arg(long, conflicts_with = "url")]
    pub(super) target: Option<String>,
    #[arg(long, short, default_value = "config/gateway.toml")]
    pub(super) config: PathBuf,
    /// The target's encryption certificate (PEM) envelopes are encrypted for.
    #[arg(long)]
    pub(super) recipient_cert: Option<PathBuf>,
    /// The gateway's seal certificate chain and key (what the receiver pins).
    #[arg(long)]
    pub(super) seal_cert: Option<PathBuf>,
    #[arg(long)]
    pub(super) seal_key: Option<PathBuf>,
    #[command(flatten)]
    pub(super) series: SeriesArgs,
}

/// What every kit takes: how the series is made and reported.
#[derive(clap::Args)]
pub(super) struct SeriesArgs {
    /// Another certificate and key of the receiver's PKI (not the gateway's
    /// seal) for the forged-seal case; without them a CA of the kit's own signs.
    #[arg(long, requires = "forger_key")]
    pub(super) forger_cert: Option<PathBuf>,
    #[arg(long)]
    pub(super) forger_key: Option<PathBuf>,
    /// Size of the large case's attachment, MiB.
    #[arg(long, default_value_t = 30)]
    pub(super) large_mib: usize,
    /// The report as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

impl SeriesArgs {
    /// The forged-seal case's key, if given.
    fn forger(&self) -> anyhow::Result<Option<SealKey>> {
        Ok(match (&self.forger_cert, &self.forger_key) {
            (Some(c), Some(k)) => Some(
                SealKey::from_pem(&read(c)?, &read(k)?)
                    .with_context(|| format!("forger key {}", k.display()))?,
            ),
            _ => None,
        })
    }
}

#[derive(clap::Args)]
pub(super) struct ConformanceHttpArgs {
    #[command(flatten)]
    pub(super) kit: KitArgs,
    /// The receiver's URL (https://).
    #[arg(long, requires_all = ["server_ca", "recipient_cert", "seal_cert", "seal_key"])]
    pub(super) url: Option<String>,
    /// CA certificates (PEM) the receiver's server certificate chains to.
    #[arg(long)]
    pub(super) server_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the receiver, with --client-key.
    #[arg(long, requires = "client_key")]
    pub(super) client_cert: Option<PathBuf>,
    #[arg(long)]
    pub(super) client_key: Option<PathBuf>,
    /// `GET URL?message_id=…` answers `{"count": n}`: how often the receiver
    /// passed that message on (checks the duplicate case completely).
    #[arg(long)]
    pub(super) count_url: Option<String>,
    /// Seconds the slow-read case holds back the end of its body.
    #[arg(long, default_value_t = 3)]
    pub(super) hold_secs: u64,
    /// Time for one request (named receiver; a target uses its adapter's).
    #[arg(long, default_value_t = 120)]
    pub(super) timeout_secs: u64,
}

#[derive(clap::Args)]
pub(super) struct ConformanceAmqpArgs {
    #[command(flatten)]
    pub(super) kit: KitArgs,
    /// The broker (amqp://user:password@host:5672/vhost).
    #[arg(long, requires_all = ["exchange", "routing_key", "recipient_cert", "seal_cert", "seal_key"])]
    pub(super) url: Option<String>,
    #[arg(long)]
    pub(super) exchange: Option<String>,
    #[arg(long)]
    pub(super) routing_key: Option<String>,
    /// The queue the consumer reports to (declared by the kit, purged at start).
    #[arg(long)]
    pub(super) results: String,
    /// Seconds to wait for the consumer's report on each case.
    #[arg(long, default_value_t = 30)]
    pub(super) wait_secs: u64,
}

#[derive(clap::Args)]
pub(super) struct ConformanceXtaArgs {
    /// The `xta` target whose reader is tested: its account, its reader's
    /// certificate and its encryption certificate are used.
    #[arg(long)]
    pub(super) target: String,
    /// The config the box is made from: its `[xta]` listener certificate and
    /// client CAs, its PKI and the target. Nothing of its store is touched.
    #[arg(long, short, default_value = "config/gateway.toml")]
    pub(super) config: PathBuf,
    /// Where the box's XTA listener binds (default: the config's `[xta] listen`).
    #[arg(long)]
    pub(super) listen: Option<std::net::SocketAddr>,
    /// Where the client reports (`POST http://ADDR/results`).
    #[arg(long, default_value = "127.0.0.1:8446")]
    pub(super) results_listen: std::net::SocketAddr,
    /// Seconds the client has for the whole series.
    #[arg(long, default_value_t = 600)]
    pub(super) wait_secs: u64,
    #[command(flatten)]
    pub(super) series: SeriesArgs,
}

/// The parts of the kit every transport needs.
struct Common {
    recipient: std::sync::Arc<RecipientCert>,
    seal: std::sync::Arc<SealKey>,
    forger: Option<SealKey>,
}

impl KitArgs {
    /// A target of the config: its adapter settings (`pick` says whether they
    /// are of the right kind) with the certificate and the seal; or, with no
    /// `--target`, the named certificate and seal.
    fn resolve<A>(
        &self,
        pick: impl Fn(&crate::config::AdapterConfig) -> Option<A>,
        kind: &str,
    ) -> anyhow::Result<Result<(Option<A>, Common), ExitCode>> {
        let forger = self.series.forger()?;
        let Some(target) = &self.target else {
            let (recipient, seal) = named(&self.recipient_cert, &self.seal_cert, &self.seal_key)?;
            return Ok(Ok((
                None,
                Common {
                    recipient,
                    seal,
                    forger,
                },
            )));
        };
        let Ok(setup) = super::load(&self.config) else {
            return Ok(Err(ExitCode::from(2)));
        };
        let t = setup
            .config
            .targets
            .get(target)
            .with_context(|| format!("{}: no target {target:?}", self.config.display()))?;
        let adapter = pick(&t.adapter)
            .with_context(|| format!("target {target:?} is not delivered over {kind}"))?;
        let recipient = setup
            .targets
            .get(target)
            .with_context(|| format!("target {target:?} has no certificate"))?;
        Ok(Ok((
            Some(adapter),
            Common {
                recipient: recipient.clone(),
                seal: setup.seal.current(),
                forger,
            },
        )))
    }
}

fn read(p: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// The named certificate and seal (without a gateway config).
fn named(
    recipient: &Option<PathBuf>,
    seal_cert: &Option<PathBuf>,
    seal_key: &Option<PathBuf>,
) -> anyhow::Result<(std::sync::Arc<RecipientCert>, std::sync::Arc<SealKey>)> {
    let path = |p: &Option<PathBuf>| p.clone().unwrap_or_default();
    let cert =
        Certificate::from_pem(&read(&path(recipient))?).context("the recipient certificate")?;
    let seal = SealKey::from_pem(&read(&path(seal_cert))?, &read(&path(seal_key))?)
        .context("the seal certificate and key")?;
    Ok((
        std::sync::Arc::new(RecipientCert::new(cert)?),
        std::sync::Arc::new(seal),
    ))
}

/// Prints the report; exit 0 only when every case passed.
fn print_report(report: &Report, json: bool) -> anyhow::Result<ExitCode> {
    let text = if json {
        serde_json::to_string_pretty(report)? + "\n"
    } else {
        report.text()
    };
    // SIGPIPE stays ignored for the kit (see `main`): a closed stdout is no error here.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `conformance http`: the series against a receiver; exit 0 only when every case passed.
pub(super) fn http(a: ConformanceHttpArgs) -> anyhow::Result<ExitCode> {
    use crate::tools::conformance::HttpKit;
    let pick = |c: &crate::config::AdapterConfig| match c {
        crate::config::AdapterConfig::Http(h) => Some(h.clone()),
        _ => None,
    };
    let (configured, common) = match a.kit.resolve(pick, "http")? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let http = match (configured, &a.url) {
        (Some(http), _) => http,
        (None, Some(url)) => ozg_adapter_http::HttpConfig {
            url: url.clone(),
            server_ca: a.server_ca.clone().unwrap_or_default(),
            client_certificate: a.client_cert.clone(),
            client_key: a.client_key.clone(),
            timeout: std::time::Duration::from_secs(a.timeout_secs),
            connect_timeout: std::time::Duration::from_secs(10),
        },
        (None, None) => {
            eprintln!("name the receiver: --target ID (with --config), or --url with --server-ca, --recipient-cert, --seal-cert and --seal-key");
            return Ok(ExitCode::from(2));
        }
    };
    let kit = HttpKit {
        http: ozg_adapter_http::Http::new(&http).map_err(anyhow::Error::msg)?,
        url: http.url.clone(),
        recipient: common.recipient,
        seal: common.seal,
        forger: common.forger,
        count_url: a.count_url,
        large_bytes: a.kit.series.large_mib << 20,
        hold: std::time::Duration::from_secs(a.hold_secs),
    };
    let report = tokio::runtime::Runtime::new()?.block_on(kit.run())?;
    print_report(&report, a.kit.series.json)
}

/// `conformance amqp`: the series published to a consumer's queue, its
/// reports read from the result queue; exit 0 only when every case passed.
pub(super) fn amqp(a: ConformanceAmqpArgs) -> anyhow::Result<ExitCode> {
    use crate::tools::conformance_amqp::AmqpKit;
    let pick = |c: &crate::config::AdapterConfig| match c {
        crate::config::AdapterConfig::Amqp(q) => Some(q.clone()),
        _ => None,
    };
    let (configured, common) = match a.kit.resolve(pick, "amqp")? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let config = match (configured, &a.url) {
        (Some(config), _) => config,
        (None, Some(url)) => ozg_adapter_amqp::AmqpConfig {
            url: url.clone(),
            exchange: a.exchange.clone().unwrap_or_default(),
            routing_key: a.routing_key.clone().unwrap_or_default(),
            ca: None,
            client_certificate: None,
            client_key: None,
            confirm_timeout: std::time::Duration::from_secs(30),
        },
        (None, None) => {
            eprintln!("name the consumer's broker: --target ID (with --config), or --url with --exchange, --routing-key, --recipient-cert, --seal-cert and --seal-key");
            return Ok(ExitCode::from(2));
        }
    };
    let kit = AmqpKit {
        amqp: ozg_adapter_amqp::Amqp::new(&config).map_err(anyhow::Error::msg)?,
        broker: config.url.clone(),
        destination: format!(
            "exchange {:?}, routing key {:?}",
            config.exchange, config.routing_key
        ),
        results: a.results,
        recipient: common.recipient,
        seal: common.seal,
        forger: common.forger,
        large_bytes: a.kit.series.large_mib << 20,
        wait: std::time::Duration::from_secs(a.wait_secs),
    };
    let report = tokio::runtime::Runtime::new()?.block_on(kit.run())?;
    print_report(&report, a.kit.series.json)
}

/// `conformance xta`: the series in a message box of the kit's; exit 0 only
/// when the client reported and closed every message as a conformant one does.
pub(super) fn xta(a: ConformanceXtaArgs) -> anyhow::Result<ExitCode> {
    use crate::tools::conformance_xta::{box_config, XtaKit};
    let forger = a.series.forger()?;
    let data = tempfile::tempdir().context("a temporary directory for the box")?;
    let made = crate::config::Config::load(&a.config).and_then(|c| {
        box_config(c, &a.target, data.path(), a.listen).map_err(|problem| {
            crate::config::ConfigErrors(vec![crate::config::ConfigError {
                file: a.config.clone(),
                key: "targets".into(),
                problem,
                fix: "name an xta target (adapter type \"xta\") of a config with an [xta] listener"
                    .into(),
            }])
        })
    });
    let setup = match made.and_then(crate::daemon::setup::setup) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    let recipient = setup
        .targets
        .get(&a.target)
        .with_context(|| format!("target {:?} has no certificate", a.target))?
        .clone();
    let kit = XtaKit {
        seal: setup.seal.current(),
        target: a.target.clone(),
        results: a.results_listen,
        recipient,
        forger,
        large_bytes: a.series.large_mib << 20,
        wait: std::time::Duration::from_secs(a.wait_secs),
    };
    let wait = a.wait_secs;
    let report = tokio::runtime::Runtime::new()?.block_on(kit.run(setup, |r| {
        eprintln!(
            "conformance kit: message box ready at {} for account {:?}; report to {}; waiting up to {wait} s",
            r.xta_url, r.account, r.results_url
        );
    }))?;
    print_report(&report, a.series.json)
}
