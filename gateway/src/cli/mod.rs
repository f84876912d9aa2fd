//! The `ozg-gateway` command line: parses arguments and calls the library.
//! `main.rs` only calls [`main`], so test harnesses can run the very same CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, LogFormat};
use crate::tools::client::{self, PortalIdentity, SubmitRequest};
use anyhow::Context as _;
use clap::Parser;

mod args;
mod audit;
mod tools;

use args::{BenchCommand, Cli, Command, ConfigCommand};
use audit::audit;
use tools::{open_envelope, operator_action};

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
