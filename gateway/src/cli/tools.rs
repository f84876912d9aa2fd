//! The recipients' tools: open an envelope as a recipient would, run the demo inbox.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::DemoReceiverArgs;
use super::audit::seal_pins;
use super::init_logging;

pub(super) fn open_envelope(
    envelope: &std::path::Path,
    keys: &[PathBuf],
    trust: &std::path::Path,
    seals: &[PathBuf],
    certs: &[PathBuf],
    out: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use ozg_adapter_sdk::envelope::output_file_name;
    use ozg_adapter_sdk::{Envelope, RecipientPrivateKey, TrustAnchors};
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let env: Envelope = serde_json::from_slice(&read(envelope)?)
        .with_context(|| format!("{} is not an ozg-gateway envelope", envelope.display()))?;
    if !certs.is_empty() && certs.len() != keys.len() {
        anyhow::bail!(
            "{} --key but {} --cert: give one certificate per key, in the same order, or none",
            keys.len(),
            certs.len()
        );
    }
    let keys = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let cert_pem = certs.get(i).map(|c| read(c)).transpose()?;
            RecipientPrivateKey::from_pem(&read(key)?, cert_pem.as_deref())
                .with_context(|| format!("recipient key {}", key.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let trust = TrustAnchors::from_pem(&read(trust)?)
        .with_context(|| format!("trust anchors {}", trust.display()))?;
    let seals = seal_pins(seals)?;
    let opened = match ozg_adapter_sdk::envelope::open_with_keys(
        &env,
        &keys,
        &trust,
        &seals,
        std::time::SystemTime::now(),
    ) {
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

/// `receipt verify`: the seal, then each given document against the part it
/// stands for (`data`, `attachment-1`, …).
pub(super) fn verify_receipt(
    receipt: &std::path::Path,
    trust: &std::path::Path,
    seals: &[PathBuf],
    data: Option<&std::path::Path>,
    attachments: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
    use ozg_adapter_sdk::envelope::sha512_hex;
    use ozg_adapter_sdk::{Receipt, TrustAnchors};
    let read =
        |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let text = String::from_utf8(read(receipt)?)
        .with_context(|| format!("{} is not text", receipt.display()))?;
    let text = text.trim();
    // The whole 202 answer, or the JWS alone.
    let jws = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(answer) => answer["receipt"]
            .as_str()
            .with_context(|| format!("{} is JSON without a \"receipt\"", receipt.display()))?
            .to_owned(),
        Err(_) => text.to_owned(),
    };
    let trust = TrustAnchors::from_pem(&read(trust)?)
        .with_context(|| format!("trust anchors {}", trust.display()))?;
    let pins = seal_pins(seals)?;
    let verified = match Receipt::verify(&jws, &trust, &pins, std::time::SystemTime::now()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("INVALID: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    let mut given: Vec<(String, &std::path::Path)> = Vec::new();
    if let Some(d) = data {
        given.push(("data".into(), d));
    }
    for (i, a) in attachments.iter().enumerate() {
        given.push((format!("attachment-{}", i + 1), a));
    }
    let mut mismatches = Vec::new();
    // The parts a given document is: shown beside them below.
    let mut confirmed: Vec<(&str, &std::path::Path)> = Vec::new();
    for (id, path) in &given {
        let doc = read(path)?;
        match verified.parts.iter().find(|p| &p.id == id) {
            None => mismatches.push(format!("{}: the receipt has no part {id}", path.display())),
            Some(p) if p.size != doc.len() as u64 || p.sha512 != sha512_hex(&doc) => mismatches
                .push(format!(
                    "{}: is not part {id} ({} bytes, the receipt says {})",
                    path.display(),
                    doc.len(),
                    p.size
                )),
            Some(_) => confirmed.push((id, path)),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&verified)?);
    } else {
        println!(
            "receipt for submission {} from {}, received {}; sealed by the gateway",
            verified.submission_id, verified.sender, verified.received_at
        );
        for p in &verified.parts {
            let note = confirmed
                .iter()
                .find(|(id, _)| *id == p.id)
                .map(|(_, path)| format!("  = {}", path.display()))
                .unwrap_or_default();
            println!(
                "  {:<14} {:>10} bytes  sha512 {}…{note}",
                p.id,
                p.size,
                &p.sha512[..16]
            );
        }
    }
    for m in &mismatches {
        eprintln!("MISMATCH: {m}");
    }
    Ok(if mismatches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

pub(super) fn demo_receiver(
    DemoReceiverArgs {
        listen,
        key,
        cert,
        trust,
        seals,
        tls_cert,
        tls_key,
        out,
        accept_only,
        broken,
        amqp_url,
        amqp_queue,
        amqp_results,
        xta_url,
        xta_account,
        xta_cert,
        xta_key,
        xta_ca,
        xta_results,
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
        seals,
        out,
        accept_only,
        broken,
        amqp: match (amqp_url, amqp_queue, amqp_results) {
            (Some(url), Some(queue), Some(results)) => {
                Some(crate::tools::demo_receiver::AmqpInbox {
                    url,
                    queue,
                    results,
                })
            }
            _ => None,
        },
        xta: match (xta_url, xta_account, xta_cert, xta_key, xta_ca, xta_results) {
            (Some(url), Some(account), Some(cert), Some(key), Some(ca), Some(results)) => {
                Some(crate::tools::demo_receiver::XtaInbox {
                    url,
                    ca,
                    cert,
                    key,
                    account,
                    results,
                })
            }
            _ => None,
        },
    };
    runtime.block_on(async {
        let signal = crate::daemon::termination_signal();
        crate::tools::demo_receiver::run(options, signal).await
    })?;
    Ok(ExitCode::SUCCESS)
}
