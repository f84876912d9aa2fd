//! The `ozg-gateway` command line: parses arguments and calls the library.
//! `main.rs` only calls [`main`], so test harnesses can run the very same CLI.

use std::process::ExitCode;

use crate::config::{Config, LogFormat};
use crate::store::backends::StoreConfig;
use anyhow::Context as _;
use clap::Parser;

mod args;
mod audit;
mod conformance;
mod install;
mod operator;
mod operator_args;
mod operator_client;
mod portal;
mod registry;
mod tools;

use args::{BenchCommand, Cli, Command, ConfigCommand, OpenArgs};
use audit::audit;
use conformance::ConformanceCommand;
use tools::open_envelope;

pub(super) fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour only for a person at a terminal: a file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
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
    // A one-shot command whose output goes into `| head` ends quietly when the
    // reader is gone, as Unix tools do, instead of panicking on the broken pipe.
    // The long-running commands keep SIGPIPE ignored: a closed log pipe must not
    // kill a daemon. So do those whose peers close connections while they still
    // write (a receiver answering early, a gateway refusing a large upload):
    // with the default disposition the write would kill them without a word.
    #[cfg(unix)]
    if !matches!(
        cli.command,
        Command::Serve { .. }
            | Command::DemoReceiver(_)
            | Command::Bench { .. }
            | Command::Conformance { .. }
            | Command::Loadgen(_)
    ) {
        // SAFETY: `signal` with a valid signal number and SIG_DFL only resets a
        // disposition; it is called before any thread or runtime exists, so no
        // other code observes the change half-made.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
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
                for line in scheduled_switches(&setup) {
                    println!("{line}");
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
        Command::Queue { command } => operator::queue(command),
        Command::Target { command } => operator::target(command),
        Command::Route { command } => registry::route(command),
        Command::Status { json, op } => operator::status(json, op),
        Command::Stats(a) => operator::stats(a),
        Command::Reload { config } => operator::reload(&config),
        Command::Completions { shell } => install::completions(shell),
        Command::Man { out } => install::man_pages(&out),
        Command::PrivacyKey { out } => install::privacy_key(&out),
        Command::FitconnectClient {
            id,
            role,
            destinations,
        } => install::fitconnect_client(&id, &role, &destinations),
        Command::Receipt {
            command:
                args::ReceiptCommand::Verify {
                    receipt,
                    trust,
                    seals,
                    data,
                    attachments,
                    json,
                },
        } => tools::verify_receipt(
            &receipt,
            &trust,
            &seals,
            data.as_deref(),
            &attachments,
            json,
        ),
        Command::Loadgen(args) => portal::loadgen(args),
        Command::XtaReaders(args) => portal::xta_readers(args),
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
            BenchCommand::Seal {
                config,
                seconds,
                threads,
                json,
            } => {
                let setup = match load(&config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                let r = crate::tools::bench::seal(&setup, seconds, threads)
                    .map_err(anyhow::Error::msg)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    println!(
                        "seal {} ({}), {} threads: {:.0} signatures/s, one takes p50 {:.3} ms, p99 {:.3} ms",
                        r.alg, r.key, r.threads, r.signatures_per_second, r.p50_ms, r.p99_ms
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
            BenchCommand::RawAmqp {
                config,
                seconds,
                size,
                channels,
                batch,
                json,
            } => {
                let setup = match load(&config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                let StoreConfig::Cluster { broker, .. } = &setup.config.store else {
                    anyhow::bail!("{} is not a cluster-mode config", config.display());
                };
                let runtime = tokio::runtime::Runtime::new()?;
                let r = runtime
                    .block_on(crate::tools::engines::amqp(
                        &broker.url,
                        &broker.prefix,
                        size,
                        channels,
                        batch,
                        seconds,
                    ))
                    .map_err(anyhow::Error::msg)?;
                print_raw(&r, json)?;
                Ok(ExitCode::SUCCESS)
            }
            BenchCommand::RawPostgres {
                config,
                profile,
                seconds,
                connections,
                json,
            } => {
                let setup = match load(&config) {
                    Ok(s) => s,
                    Err(code) => return Ok(code),
                };
                let StoreConfig::Cluster {
                    database,
                    pool_size,
                    ..
                } = &setup.config.store
                else {
                    anyhow::bail!("{} is not a cluster-mode config", config.display());
                };
                let p = crate::tools::loadgen::Profile::named(&profile)
                    .with_context(|| format!("unknown profile {profile:?}"))?;
                let samples =
                    crate::tools::bench::samples(&setup, &p, 64).map_err(anyhow::Error::msg)?;
                let runtime = tokio::runtime::Runtime::new()?;
                let r = runtime
                    .block_on(crate::tools::engines::postgres(
                        database,
                        samples,
                        connections.unwrap_or(*pool_size),
                        seconds,
                    ))
                    .map_err(anyhow::Error::msg)?;
                print_raw(&r, json)?;
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::DemoPki { out, force } => {
            if out.join("ca.pem").exists() && !force {
                eprintln!(
                    "{} holds a PKI already (ca.pem); nothing was written. Choose another --out, or add --force to replace it (its keys are lost)",
                    out.display()
                );
                return Ok(ExitCode::from(2));
            }
            crate::tools::demo_pki::write_demo_pki(&out)?;
            println!(
                "DEMO ONLY PKI written to {} — never use these keys in production",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Submit(args) => portal::submit(args),
        Command::DemoReceiver(args) => tools::demo_receiver(args),
        Command::Conformance {
            command: ConformanceCommand::Http(args),
        } => conformance::http(args),
        Command::Conformance {
            command: ConformanceCommand::Amqp(args),
        } => conformance::amqp(args),
        Command::Conformance {
            command: ConformanceCommand::Xta(args),
        } => conformance::xta(args),
        Command::Open(OpenArgs {
            envelope,
            keys,
            trust,
            seals,
            certs,
            out,
        }) => open_envelope(&envelope, &keys, &trust, &seals, &certs, out.as_deref()),
        Command::Submission(args) => portal::status(args),
    }
}

/// One raw engine limit, as JSON or a line.
fn print_raw(r: &crate::tools::engines::RawReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!(
            "{} raw limit, {} workers, {:.1} s: {:.0} {}/s",
            r.engine, r.workers, r.seconds, r.per_second, r.unit
        );
    }
    Ok(())
}

/// The key switches still to come, as `config check` lists them: the seal's
/// and each target's, with the subject and the time.
fn scheduled_switches(setup: &crate::daemon::setup::Setup) -> Vec<String> {
    let now = crate::model::time::now_s();
    let at = |t: i64| crate::model::time::rfc3339_ms(t * 1000);
    let mut lines: Vec<String> = setup
        .seal
        .windows()
        .iter()
        .filter(|w| w.start > now)
        .map(|w| {
            let c = w.cert.certificate();
            format!(
                "scheduled: the seal switches to {:?} (kid {}) at {}",
                c.subject(),
                c.thumbprint(),
                at(w.start)
            )
        })
        .collect();
    for (target, windows) in &setup.rotations {
        for w in windows.iter().filter(|w| w.start > now) {
            lines.push(format!(
                "scheduled: target {target} switches to {:?} (kid {}) at {}",
                w.cert.certificate().subject(),
                w.cert.kid(),
                at(w.start)
            ));
        }
    }
    lines
}
