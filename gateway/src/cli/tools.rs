//! The operators' and recipients' tools: open an envelope as a recipient would,
//! and the queue actions (retry, discard) over the operator API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{DeliveriesArgs, DemoReceiverArgs, OperatorArgs};
use super::audit::seal_pins;
use super::init_logging;
use crate::tools::client;

pub(super) fn open_envelope(
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

pub(super) fn operator_action(
    action: &str,
    ids: &[String],
    op: &OperatorArgs,
) -> anyhow::Result<ExitCode> {
    let http = op.client()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = false;
    for id in ids {
        let url = format!(
            "{}/v1/admin/deliveries/{id}/{action}",
            op.url.trim_end_matches('/')
        );
        let answer = runtime.block_on(async {
            let r = http.post(&url).send().await?;
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
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
                // The server's own explanation, not just the status line.
                let detail = body["detail"].as_str().unwrap_or("(no detail)");
                eprintln!("{id}: {action} refused: {} {detail}", status.as_u16());
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

pub(super) fn deliveries(
    DeliveriesArgs { state, target, op }: DeliveriesArgs,
) -> anyhow::Result<ExitCode> {
    let http = op.client()?;
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
    for s in states {
        let mut url = format!(
            "{}/v1/admin/deliveries?state={s}",
            op.url.trim_end_matches('/')
        );
        if let Some(t) = &target {
            url.push_str(&format!("&target={t}"));
        }
        let answer = runtime.block_on(client::status(&http, &url))?;
        if answer.status != 200 {
            eprintln!("{}", serde_json::to_string_pretty(&answer.body)?);
            return Ok(ExitCode::FAILURE);
        }
        rows.extend(
            answer.body["deliveries"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    let answer = serde_json::json!({ "deliveries": rows });
    println!(
        "{:<38} {:<22} {:<10} {:>8}  {:<26} last error",
        "message_id", "target", "state", "attempts", "since"
    );
    for d in answer["deliveries"].as_array().into_iter().flatten() {
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

pub(super) fn demo_receiver(
    DemoReceiverArgs {
        listen,
        key,
        cert,
        trust,
        seal,
        tls_cert,
        tls_key,
        out,
        accept_only,
    }: DemoReceiverArgs,
) -> anyhow::Result<ExitCode> {
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
