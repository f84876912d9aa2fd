//! The `ozg-gateway` command line: parses arguments and calls the library.
//! `main.rs` only calls [`main`], so test harnesses can run the very same CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, LogFormat};
use crate::tools::client::{self, PortalIdentity, SubmitRequest};
use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ozg-gateway",
    version,
    about = "Seals, encrypts and reliably delivers OZG submissions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Config file.
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// The audit log: verify the chain and checkpoints, show a submission's Laufzettel.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Drive a running gateway with many portal connections and report rates and latencies.
    Loadgen {
        /// `small` (8 KiB XML) or `typical` (16 KiB XML + 256 KiB attachment).
        #[arg(long, default_value = "small")]
        profile: String,
        /// Leistung to submit for (default: the profile's, as in bench/gateway-bench.toml).
        #[arg(long)]
        leistung: Option<String>,
        /// Data size in bytes (overrides the profile).
        #[arg(long)]
        data_size: Option<usize>,
        /// Attachment size in bytes (overrides the profile; 0 = none).
        #[arg(long)]
        attachment_size: Option<usize>,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// How long, e.g. `30s` (default 10s unless --count is given).
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// How many submissions in all.
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value = "https://localhost:8443")]
        url: String,
        /// Admin listener for delivery figures; `none` to skip.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        admin: String,
        #[arg(long, default_value = "certs-example/portal.pem")]
        cert: PathBuf,
        #[arg(long, default_value = "certs-example/portal.key")]
        key: PathBuf,
        #[arg(long, default_value = "certs-example/ca.pem")]
        ca: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure the machine's limits for the benchmark (see bench/run.sh).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Generate a DEMO ONLY PKI (CA, TLS, portal, operator, seal and recipient certificates).
    DemoPki {
        /// Output directory.
        #[arg(long, default_value = "certs-example")]
        out: PathBuf,
    },
    /// Run an example HTTPS inbox that opens, verifies and stores envelopes (for trying out).
    DemoReceiver {
        #[arg(long, default_value = "127.0.0.1:9443")]
        listen: std::net::SocketAddr,
        /// Recipient private key.
        #[arg(long, default_value = "certs-example/recipient-ec.key")]
        key: PathBuf,
        /// Recipient certificate (checks the envelope is addressed to it).
        #[arg(long, default_value = "certs-example/recipient-ec.pem")]
        cert: PathBuf,
        /// CA the seal must chain to.
        #[arg(long, default_value = "certs-example/ca.pem")]
        trust: PathBuf,
        /// The gateway's seal certificate: only envelopes it sealed are accepted.
        #[arg(long, default_value = "certs-example/seal.pem")]
        seal: PathBuf,
        /// TLS certificate of the receiver.
        #[arg(long, default_value = "certs-example/server.pem")]
        tls_cert: PathBuf,
        /// TLS key of the receiver.
        #[arg(long, default_value = "certs-example/server.key")]
        tls_key: PathBuf,
        /// Where opened submissions are written (one directory per message id).
        #[arg(long, default_value = "var/inbox")]
        out: PathBuf,
        /// Answer 200 without opening anything (a fast sink for benchmarks).
        #[arg(long)]
        accept_only: bool,
    },
    /// Send a submission as a portal would and print the gateway's JSON answer.
    Submit {
        /// FIM-Leistungsschlüssel.
        #[arg(long)]
        leistung: String,
        /// Destination (zuständige Stelle), e.g. an AGS.
        #[arg(long)]
        destination: String,
        /// The Antragsdaten (XML or JSON file).
        #[arg(long)]
        data: PathBuf,
        /// Media type of the data (default: by file extension).
        #[arg(long)]
        data_type: Option<String>,
        /// An attachment (repeatable); media type by file extension.
        #[arg(long = "attach")]
        attachments: Vec<PathBuf>,
        /// The portal's own reference.
        #[arg(long)]
        reference: Option<String>,
        /// Idempotency-Key header: resending with the same key is safe.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        portal: PortalArgs,
    },
    /// Open an envelope as a recipient: decrypt, verify the seal and every hash, write the parts.
    Open {
        /// The envelope (JSON file).
        envelope: PathBuf,
        /// The recipient's private key (PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// CA certificate(s) the seal must chain to (PEM).
        #[arg(long)]
        trust: PathBuf,
        /// The gateway's seal certificate (PEM), as its operator publishes it; repeat
        /// for seals used before a rotation. Other signers are refused.
        #[arg(long = "seal", required = true)]
        seals: Vec<PathBuf>,
        /// The recipient's certificate (PEM): also checks that the envelope is addressed to it.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Write the parts (with their original file names) and manifest.json here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List deliveries by state, as an operator (default: parked).
    Deliveries {
        #[arg(long, default_value = "parked")]
        state: String,
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Retry parked or waiting deliveries now, as an operator (audited with your id).
    Retry {
        message_ids: Vec<String>,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Discard parked or waiting deliveries, as an operator (audited; the sealed envelope is deleted).
    Discard {
        message_ids: Vec<String>,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Show a submission's status (as the submitting portal).
    Status {
        /// Submission id.
        id: String,
        #[command(flatten)]
        portal: PortalArgs,
    },
}

/// How a portal reaches the gateway (defaults: the local daemon and the demo portal).
#[derive(clap::Args)]
struct PortalArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "https://localhost:8443")]
    url: String,
    /// Portal client certificate.
    #[arg(long, default_value = "certs-example/portal.pem")]
    cert: PathBuf,
    /// Portal client key.
    #[arg(long, default_value = "certs-example/portal.key")]
    key: PathBuf,
    /// CA of the gateway's server certificate.
    #[arg(long, default_value = "certs-example/ca.pem")]
    ca: PathBuf,
}

impl PortalArgs {
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        tls_client(&self.cert, &self.key, &self.ca)
    }
}

/// An HTTPS client presenting `cert`/`key` and trusting `ca`.
fn tls_client(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
) -> anyhow::Result<reqwest::Client> {
    client::http_client(&PortalIdentity {
        cert: cert.into(),
        key: key.into(),
        ca: ca.into(),
    })
    .map_err(anyhow::Error::msg)
}

/// How an operator reaches the gateway.
#[derive(clap::Args)]
struct OperatorArgs {
    #[arg(long, default_value = "https://localhost:8443")]
    url: String,
    /// Operator client certificate.
    #[arg(long, default_value = "certs-example/operator.pem")]
    cert: PathBuf,
    #[arg(long, default_value = "certs-example/operator.key")]
    key: PathBuf,
    #[arg(long, default_value = "certs-example/ca.pem")]
    ca: PathBuf,
}

impl OperatorArgs {
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        tls_client(&self.cert, &self.key, &self.ca)
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Seal + encrypt submissions of a profile in-process on all cores.
    Crypto {
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value = "small")]
        profile: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        json: bool,
    },
    /// An HTTPS endpoint on the ingest TLS configuration that only reads and answers 202.
    BareHttps {
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8444")]
        listen: std::net::SocketAddr,
    },
}

/// Which store an `audit` command reads.
#[derive(clap::Args)]
struct StoreArgs {
    #[arg(long, short, default_value = "config/gateway.toml")]
    config: PathBuf,
    /// Read this data directory (e.g. a copy) instead of the configured one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain, check every checkpoint's signature; name the first bad record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every event of one submission, in order (the Laufzettel).
    Trace {
        submission_id: String,
        #[command(flatten)]
        store: StoreArgs,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inclusion proofs of one submission's records against the signed checkpoints
    /// (JSON, `schemas/audit-proof.schema.json`): hand it to a receiver or an auditor.
    Prove {
        submission_id: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Write the proof here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an inclusion proof with the trust anchor and the gateway's seal
    /// certificate(s): the checkpoints' signatures and every record's path to its
    /// signed Merkle tree head.
    VerifyProof {
        proof: PathBuf,
        /// PEM trust anchor(s) the gateway's seal chains to.
        #[arg(long)]
        trust: PathBuf,
        /// The gateway's seal certificate (PEM), as its operator publishes it; repeat
        /// for seals used before a rotation. Checkpoints signed by any other
        /// certificate of the PKI are refused.
        #[arg(long = "seal", required = true)]
        seals: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a config file (keys, certificates, routes, schemas) without starting.
    Check {
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(config: &std::path::Path) -> Result<crate::daemon::setup::Setup, ExitCode> {
    let loaded = Config::load(config).and_then(crate::daemon::setup::setup);
    loaded.map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(2)
    })
}

/// Parses the process arguments and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One crypto provider for every TLS user in the process (aws-lc-rs).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => {
            let setup = match load(&config) {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            init_logging(setup.config.log.format, &setup.config.log.level);
            crate::daemon::tune_allocator();
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let signal = crate::daemon::termination_signal();
                crate::daemon::run(setup, signal).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => match load(&config) {
            Ok(setup) => {
                for w in &setup.warnings {
                    println!("warning: {w}");
                }
                println!(
                    "{}: OK ({} portal(s), {} target(s), {} route(s))",
                    config.display(),
                    setup.config.portals.len(),
                    setup.targets.len(),
                    setup.config.routes.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        Command::Audit { command } => audit(command),
        Command::Deliveries { state, target, op } => {
            let http = op.client()?;
            let mut url = format!(
                "{}/v1/admin/deliveries?state={state}",
                op.url.trim_end_matches('/')
            );
            if let Some(t) = target {
                url.push_str(&format!("&target={t}"));
            }
            let runtime = tokio::runtime::Runtime::new()?;
            let answer = runtime.block_on(client::status(&http, &url))?;
            if answer.status != 200 {
                eprintln!("{}", serde_json::to_string_pretty(&answer.body)?);
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{:<38} {:<22} {:<10} {:>8}  {:<26} last error",
                "message_id", "target", "state", "attempts", "since"
            );
            for d in answer.body["deliveries"].as_array().into_iter().flatten() {
                println!(
                    "{:<38} {:<22} {:<10} {:>8}  {:<26} {}",
                    d["message_id"].as_str().unwrap_or_default(),
                    d["target"].as_str().unwrap_or_default(),
                    d["state"].as_str().unwrap_or_default(),
                    d["attempts"],
                    d["updated_at"].as_str().unwrap_or_default(),
                    d["last_error"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Retry { message_ids, op } => operator_action("retry", &message_ids, &op),
        Command::Discard { message_ids, op } => operator_action("discard", &message_ids, &op),
        Command::Loadgen {
            profile,
            leistung,
            data_size,
            attachment_size,
            connections,
            duration,
            count,
            url,
            admin,
            cert,
            key,
            ca,
            json,
        } => {
            let mut p = crate::tools::loadgen::Profile::named(&profile)
                .with_context(|| format!("unknown profile {profile:?}: use small or typical"))?;
            if let Some(l) = leistung {
                p.leistung = l;
            }
            if let Some(d) = data_size {
                p.data_size = d;
                p.name = format!("{}-custom", p.name);
            }
            if let Some(a) = attachment_size {
                p.attachment_size = a;
                p.name = format!("{}-custom", p.name);
            }
            let o = crate::tools::loadgen::LoadOptions {
                url,
                admin: (admin != "none").then_some(admin),
                connections,
                duration: duration.or(count
                    .is_none()
                    .then_some(std::time::Duration::from_secs(10))),
                count,
                identity: PortalIdentity { cert, key, ca },
                progress: !json,
            };
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime
                .block_on(crate::tools::loadgen::run(&p, &o))
                .map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { command } => match command {
            BenchCommand::Crypto {
                config,
                profile,
                seconds,
                json,
            } => {
                let setup = match load(&config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                let p = crate::tools::loadgen::Profile::named(&profile)
                    .with_context(|| format!("unknown profile {profile:?}"))?;
                let r =
                    crate::tools::bench::crypto(&setup, &p, seconds).map_err(anyhow::Error::msg)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    println!(
                        "seal+encrypt limit, profile {} ({} target(s)), {} threads: {:.0} submissions/s, {:.1} MiB/s payload",
                        r.profile, r.targets, r.threads, r.submissions_per_second, r.payload_mib_per_second
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::BareHttps { config, listen } => {
                let setup = match load(&config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                let runtime = tokio::runtime::Runtime::new()?;
                runtime
                    .block_on(async {
                        let signal = crate::daemon::termination_signal();
                        crate::tools::bench::bare_https(&setup, listen, signal).await
                    })
                    .map_err(anyhow::Error::msg)?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::DemoPki { out } => {
            crate::tools::demo_pki::write_demo_pki(&out)?;
            println!(
                "DEMO ONLY PKI written to {} — never use these keys in production",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit {
            leistung,
            destination,
            data,
            data_type,
            attachments,
            reference,
            idempotency_key,
            portal,
        } => {
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let mut req = SubmitRequest {
                leistung,
                destination,
                reference,
                data: read(&data)?,
                data_media_type: data_type
                    .unwrap_or_else(|| client::guess_media_type(&data).to_owned()),
                idempotency_key,
                ..Default::default()
            };
            for a in &attachments {
                let name = a
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("attachment path has no file name")?
                    .to_owned();
                req.attachments
                    .push((name, client::guess_media_type(a).to_owned(), read(a)?));
            }
            let http = portal.client()?;
            let url = &portal.url;
            let runtime = tokio::runtime::Runtime::new()?;
            let answer = runtime
                .block_on(client::submit(&http, url, &req))
                .with_context(|| format!("sending to {url} (is the daemon running?)"))?;
            println!("{}", serde_json::to_string_pretty(&answer.body)?);
            Ok(if answer.status == 202 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::DemoReceiver {
            listen,
            key,
            cert,
            trust,
            seal,
            tls_cert,
            tls_key,
            out,
            accept_only,
        } => {
            init_logging(
                crate::config::LogFormat::Text,
                if accept_only { "warn" } else { "info" },
            );
            let runtime = tokio::runtime::Runtime::new()?;
            let options = crate::tools::demo_receiver::ReceiverOptions {
                listen,
                tls_cert,
                tls_key,
                key,
                cert: Some(cert),
                trust,
                seal,
                out,
                accept_only,
            };
            runtime.block_on(async {
                let signal = crate::daemon::termination_signal();
                crate::tools::demo_receiver::run(options, signal).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Open {
            envelope,
            key,
            trust,
            seals,
            cert,
            out,
        } => open_envelope(
            &envelope,
            &key,
            &trust,
            &seals,
            cert.as_deref(),
            out.as_deref(),
        ),
        Command::Status { id, portal } => {
            let http = portal.client()?;
            let url = &portal.url;
            let runtime = tokio::runtime::Runtime::new()?;
            let answer = runtime.block_on(client::status(
                &http,
                &format!("{}/v1/submissions/{id}", url.trim_end_matches('/')),
            ))?;
            println!("{}", serde_json::to_string_pretty(&answer.body)?);
            Ok(if answer.status == 200 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn open_envelope(
    envelope: &std::path::Path,
    key: &std::path::Path,
    trust: &std::path::Path,
    seals: &[PathBuf],
    cert: Option<&std::path::Path>,
    out: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use ozg_adapter_sdk::envelope::output_file_name;
    use ozg_adapter_sdk::{Envelope, RecipientPrivateKey, TrustAnchors};
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let env: Envelope = serde_json::from_slice(&read(envelope)?)
        .with_context(|| format!("{} is not an ozg-gateway envelope", envelope.display()))?;
    let cert_pem = cert.map(read).transpose()?;
    let key = RecipientPrivateKey::from_pem(&read(key)?, cert_pem.as_deref())
        .with_context(|| format!("recipient key {}", key.display()))?;
    let trust = TrustAnchors::from_pem(&read(trust)?)
        .with_context(|| format!("trust anchors {}", trust.display()))?;
    let seals = seal_pins(seals)?;
    let opened =
        match ozg_adapter_sdk::open(&env, &key, &trust, &seals, std::time::SystemTime::now()) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("REFUSED {}: {e}", envelope.display());
                return Ok(ExitCode::from(3));
            }
        };
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut used = std::collections::HashSet::new();
        used.insert("manifest.json".to_owned());
        for part in &opened.parts {
            let mut name = output_file_name(&part.meta);
            if !used.insert(name.clone()) {
                name = format!("{}-{name}", part.meta.id);
                used.insert(name.clone());
            }
            let path = dir.join(&name);
            std::fs::write(&path, &part.data)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let manifest = serde_json::to_vec_pretty(&opened.manifest)?;
        std::fs::write(dir.join("manifest.json"), manifest)?;
    }
    println!(
        "OK {}: submission {} from {} ({} part(s)), sealed by {:?}",
        env.message_id,
        opened.manifest.submission_id,
        opened.manifest.sender,
        opened.parts.len(),
        opened.sealed_by
    );
    for p in &opened.parts {
        println!(
            "  {:<14} {:>10} bytes  {}",
            p.meta.id, p.meta.size, p.meta.media_type
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `audit` commands read of a config, without loading everything else.
struct AuditSources {
    data_dir: PathBuf,
    pki: crate::config::PkiConfig,
}

impl AuditSources {
    fn load(args: StoreArgs) -> anyhow::Result<Self> {
        let StoreArgs { config, data_dir } = args;
        let cfg = Config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        let crate::config::StoreConfig::Embedded {
            data_dir: configured,
            ..
        } = cfg.store;
        Ok(AuditSources {
            data_dir: data_dir.unwrap_or(configured),
            pki: cfg.pki,
        })
    }

    fn open(&self) -> anyhow::Result<rusqlite::Connection> {
        crate::store::embedded::open_read_only(&self.data_dir)
            .with_context(|| format!("opening the store in {}", self.data_dir.display()))
    }

    fn trust(&self) -> anyhow::Result<ozg_adapter_sdk::TrustAnchors> {
        let path = &self.pki.trust_anchors;
        Ok(ozg_adapter_sdk::TrustAnchors::from_pem(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )?)
    }

    /// The configured seal and the previous ones.
    fn seals(&self) -> anyhow::Result<ozg_adapter_sdk::audit_proof::SealPins> {
        seal_pins(
            std::iter::once(&self.pki.seal_certificate).chain(&self.pki.previous_seal_certificates),
        )
    }
}

fn seal_pins<'a>(
    files: impl IntoIterator<Item = &'a PathBuf>,
) -> anyhow::Result<ozg_adapter_sdk::audit_proof::SealPins> {
    let mut pins = ozg_adapter_sdk::audit_proof::SealPins::default();
    for path in files {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        pins.add_pem(&pem)
            .with_context(|| format!("seal certificate {}", path.display()))?;
    }
    Ok(pins)
}

fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { store } => {
            let sources = AuditSources::load(store)?;
            let conn = sources.open()?;
            let (trust, seals) = (sources.trust()?, sources.seals()?);
            match crate::core::audit::verify(&conn, &trust, &seals, std::time::SystemTime::now())? {
                Ok(r) => {
                    println!(
                        "OK: {} records, chain intact, head seq {} hash {}; {} signed checkpoint(s), newest at seq {}",
                        r.records, r.head_seq, r.head_hash, r.checkpoints, r.checkpoint_seq
                    );
                    if r.head_seq > r.checkpoint_seq {
                        println!(
                            "note: records {}..={} are not covered by a checkpoint yet (the daemon signs one within a minute)",
                            r.checkpoint_seq + 1,
                            r.head_seq
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(broken) => {
                    eprintln!(
                        "BROKEN: first bad record: seq {}: {}",
                        broken.seq, broken.reason
                    );
                    Ok(ExitCode::from(4))
                }
            }
        }
        AuditCommand::Trace {
            submission_id,
            store,
            json,
        } => {
            let conn = AuditSources::load(store)?.open()?;
            let records = crate::store::embedded::read_trace(&conn, &submission_id)?;
            if records.is_empty() {
                eprintln!("no audit records for submission {submission_id}");
                return Ok(ExitCode::FAILURE);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else {
                println!(
                    "{:<8} {:<26} {:<15} {:<20} detail",
                    "seq", "time", "event", "target"
                );
                for r in &records {
                    let detail = if r.detail.is_null() {
                        String::new()
                    } else {
                        r.detail.to_string()
                    };
                    let detail: String = detail.chars().take(100).collect();
                    println!(
                        "{:<8} {:<26} {:<15} {:<20} {}",
                        r.seq,
                        r.ts,
                        r.event,
                        r.target.as_deref().unwrap_or("-"),
                        detail
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove {
            submission_id,
            store,
            out,
        } => audit_prove(&submission_id, store, out),
        AuditCommand::VerifyProof {
            proof,
            trust,
            seals,
        } => audit_verify_proof(&proof, &trust, &seals),
    }
}

fn audit_prove(
    submission_id: &str,
    store: StoreArgs,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let conn = AuditSources::load(store)?.open()?;
    let doc = match crate::core::audit::prove(&conn, submission_id) {
        Ok(d) => d,
        Err(crate::core::audit::ProveError::Unknown(id)) => {
            eprintln!("no audit records for submission {id}");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    let text = serde_json::to_string_pretty(&doc)? + "\n";
    match &out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    if !doc.not_yet_covered.is_empty() {
        eprintln!(
            "note: record(s) {:?} are not covered by a signed checkpoint yet (the daemon signs one within its checkpoint_interval); run this again then",
            doc.not_yet_covered
        );
    }
    if !doc.without_merkle_head.is_empty() {
        eprintln!(
            "note: record(s) {:?} are covered only by checkpoints signed before inclusion proofs; they cannot be proven one by one (`audit verify` checks them with the whole log)",
            doc.without_merkle_head
        );
    }
    if doc.records.is_empty() {
        return Ok(ExitCode::FAILURE);
    }
    if let Some(path) = out {
        eprintln!(
            "{} record(s) of submission {submission_id} proven: {}",
            doc.records.len(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn audit_verify_proof(
    proof: &std::path::Path,
    trust: &std::path::Path,
    seals: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    use ozg_adapter_sdk::audit_proof;
    let trust = ozg_adapter_sdk::TrustAnchors::from_pem(
        &std::fs::read(trust).with_context(|| format!("reading {}", trust.display()))?,
    )?;
    let seals = seal_pins(seals)?;
    let text = std::fs::read(proof).with_context(|| format!("reading {}", proof.display()))?;
    let doc: audit_proof::ProofDocument = match serde_json::from_slice(&text) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "INVALID: {} is not an inclusion proof document: {e}",
                proof.display()
            );
            return Ok(ExitCode::from(4));
        }
    };
    match audit_proof::verify(&doc, &trust, &seals, std::time::SystemTime::now()) {
        Ok(proven) => {
            println!(
                "OK: {} record(s) of submission {} are in the gateway's signed audit log",
                proven.len(),
                doc.submission_id
            );
            for r in &proven {
                println!(
                    "  seq {:<8} {:<26} {:<15} {:<20} checkpoint {} signed {} by {}",
                    r.seq,
                    r.ts,
                    r.event,
                    r.target.as_deref().unwrap_or("-"),
                    r.checkpoint_seq,
                    r.checkpoint_ts,
                    r.signer
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("INVALID: {e}");
            Ok(ExitCode::from(4))
        }
    }
}

fn operator_action(action: &str, ids: &[String], op: &OperatorArgs) -> anyhow::Result<ExitCode> {
    let http = op.client()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = false;
    for id in ids {
        let url = format!(
            "{}/v1/admin/deliveries/{id}/{action}",
            op.url.trim_end_matches('/')
        );
        let resp = runtime.block_on(async {
            http.post(&url)
                .send()
                .await?
                .error_for_status_ref()
                .map(|_| ())
        });
        match resp {
            Ok(()) => println!("{id}: {action} done"),
            Err(e) => {
                failed = true;
                eprintln!("{id}: {action} refused ({e})");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
