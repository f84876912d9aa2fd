//! The portal side, for trying out and for the benchmark: submit, status, loadgen.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{LoadgenArgs, PortalArgs, StatusArgs, SubmitArgs, XtaReadersArgs};
use crate::tools::client::{self, PortalIdentity, SubmitRequest};

pub(super) fn submit(
    SubmitArgs {
        leistung,
        destination,
        data,
        data_type,
        attachments,
        reference,
        idempotency_key,
        portal,
    }: SubmitArgs,
) -> anyhow::Result<ExitCode> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let mut req = SubmitRequest {
        leistung,
        destination,
        reference,
        data: read(&data)?,
        data_media_type: data_type.unwrap_or_else(|| client::guess_media_type(&data).to_owned()),
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
    eprintln!("HTTP {}", answer.status);
    println!("{}", serde_json::to_string_pretty(&answer.body)?);
    Ok(if answer.status == 202 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn status(StatusArgs { id, portal }: StatusArgs) -> anyhow::Result<ExitCode> {
    let http = portal.client()?;
    let url = &portal.url;
    let runtime = tokio::runtime::Runtime::new()?;
    let answer = runtime.block_on(client::status(
        &http,
        &format!("{}/v1/submissions/{id}", url.trim_end_matches('/')),
    ))?;
    eprintln!("HTTP {}", answer.status);
    println!("{}", serde_json::to_string_pretty(&answer.body)?);
    Ok(if answer.status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn loadgen(
    LoadgenArgs {
        profile,
        leistung,
        destination,
        data_size,
        data,
        attachment_size,
        connections,
        duration,
        count,
        admin,
        portal: PortalArgs { url, cert, key, ca },
        json,
        stall,
    }: LoadgenArgs,
) -> anyhow::Result<ExitCode> {
    let mut p = crate::tools::loadgen::Profile::named(&profile)
        .with_context(|| format!("unknown profile {profile:?}: use small, typical or large"))?;
    let fit = leistung.is_none() && destination.is_none();
    if let Some(l) = leistung {
        p.leistung = l;
    }
    if let Some(d) = destination {
        p.destination = d;
    }
    if let Some(d) = data_size {
        p.data_size = d;
        p.name = format!("{}-custom", p.name);
    }
    if let Some(file) = data {
        p = p.with_data_file(&file).map_err(anyhow::Error::msg)?;
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
        fit,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    if stall {
        let hold = o.duration.unwrap_or(std::time::Duration::from_secs(10));
        let r = runtime
            .block_on(crate::tools::loadgen::stall(&p, &o, hold))
            .map_err(anyhow::Error::msg)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            println!(
                "profile {} · {} uploads stalled before their last byte for {hold:?}: {} held, refused {:?}, errors {}, {:.1} MiB sent",
                r.profile,
                r.connections,
                r.held,
                r.refused,
                r.errors,
                r.bytes_sent as f64 / (1 << 20) as f64
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
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

pub(super) fn xta_readers(a: XtaReadersArgs) -> anyhow::Result<ExitCode> {
    use crate::tools::xta_readers::{run, ReaderIdentity, ReaderOptions};
    let readers = a
        .readers
        .iter()
        .map(|r| {
            let mut it = r.splitn(3, ':');
            match (it.next(), it.next(), it.next()) {
                (Some(cert), Some(key), Some(account)) if !account.is_empty() => {
                    Ok(ReaderIdentity {
                        cert: cert.into(),
                        key: key.into(),
                        account: account.into(),
                    })
                }
                _ => anyhow::bail!("--reader {r:?}: write CERT:KEY:ACCOUNT"),
            }
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let o = ReaderOptions {
        url: a.url,
        ca: a.ca,
        readers,
        workers: a.workers,
        duration: a.duration,
        idle_stop: a.idle_stop,
    };
    let report = tokio::runtime::Runtime::new()?
        .block_on(run(&o))
        .map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} reader(s) x {} connection(s), {:.1} s: {} messages fetched and closed, {:.0}/s, {:.1} MiB/s of envelopes; fetch+close p50 {:.1} ms, p99 {:.1} ms; {} error(s)",
            report.readers,
            report.workers_per_reader,
            report.seconds,
            report.messages,
            report.messages_per_second,
            report.envelope_mib_per_second,
            report.fetch_close_latency_ms.p50,
            report.fetch_close_latency_ms.p99,
            report.errors
        );
    }
    Ok(ExitCode::SUCCESS)
}
