//! `ozg-gateway audit …`: verify the log, print a Laufzettel, write and check
//! inclusion proofs — on the configured data directory or a copy of it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{AuditCommand, StoreArgs};
use crate::config::{Config, StoreConfig};
use crate::model::audit::AuditRecord;
use crate::store::AuditLogRead;

/// What `audit` commands read of a config, without loading everything else.
struct AuditSources {
    store: StoreConfig,
    /// A copy of the data directory to read instead of the configured one.
    data_dir: Option<PathBuf>,
    pki: crate::config::PkiConfig,
    /// The TSA of the checkpoints' time-stamps, if configured.
    timestamp: Option<crate::config::TimestampConfig>,
}

impl AuditSources {
    fn load(args: StoreArgs) -> anyhow::Result<Self> {
        let StoreArgs { config, data_dir } = args;
        let cfg = Config::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(AuditSources {
            store: cfg.store,
            data_dir,
            pki: cfg.pki,
            timestamp: cfg.audit.timestamp,
        })
    }

    fn open(&self) -> anyhow::Result<Box<dyn AuditLogRead>> {
        let shown = match &self.data_dir {
            Some(d) => d.display().to_string(),
            None => self.store.describe(),
        };
        self.store
            .audit_log(self.data_dir.as_deref())
            .with_context(|| format!("opening the store in {shown}"))
    }

    fn trust(&self) -> anyhow::Result<ozg_adapter_sdk::TrustAnchors> {
        let path = &self.pki.trust_anchors;
        Ok(ozg_adapter_sdk::TrustAnchors::from_pem(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )?)
    }

    /// The configured seal and the previous ones.
    fn seals(&self) -> anyhow::Result<ozg_adapter_sdk::audit_proof::SealPins> {
        seal_pins(self.pki.all_seal_certificates())
    }
}

/// The time-stamps of the checkpoints, with `[audit.timestamp]`: each token
/// must verify (a forged one breaks the log, exit 4); checkpoints without one
/// are listed.
fn stamps(sources: &AuditSources, log: &dyn AuditLogRead) -> anyhow::Result<ExitCode> {
    let Some(t) = &sources.timestamp else {
        return Ok(ExitCode::SUCCESS);
    };
    let anchors = ozg_adapter_sdk::TrustAnchors::from_pem(
        &std::fs::read(&t.anchors).with_context(|| format!("reading {}", t.anchors.display()))?,
    )?;
    match crate::core::audit::stamp::verify_stamps(log, &anchors)? {
        Ok(r) => {
            match &r.newest {
                Some((seq, time, tsa)) => println!(
                    "time-stamps: {} checkpoint(s) stamped by a TSA under audit.timestamp.anchors; newest at seq {seq}, stamped {} by {tsa}",
                    r.stamped,
                    crate::model::time::rfc3339_ms(*time * 1000)
                ),
                None => println!("time-stamps: no checkpoint is stamped yet"),
            }
            if !r.missing.is_empty() {
                let shown: Vec<String> = r.missing.iter().take(10).map(u64::to_string).collect();
                println!(
                    "warning: {} checkpoint(s) without a time-stamp token (seq {}{}): the TSA was not reached yet, or the token was removed",
                    r.missing.len(),
                    shown.join(", "),
                    if r.missing.len() > 10 { ", …" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            eprintln!("BROKEN: checkpoint seq {}: {}", broken.seq, broken.reason);
            Ok(ExitCode::from(4))
        }
    }
}

pub(super) fn seal_pins<P: AsRef<std::path::Path>>(
    files: impl IntoIterator<Item = P>,
) -> anyhow::Result<ozg_adapter_sdk::audit_proof::SealPins> {
    let mut pins = ozg_adapter_sdk::audit_proof::SealPins::default();
    for path in files {
        let path = path.as_ref();
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        pins.add_pem(&pem)
            .with_context(|| format!("seal certificate {}", path.display()))?;
    }
    Ok(pins)
}

pub(super) fn audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { store } => {
            let sources = AuditSources::load(store)?;
            let conn = sources.open()?;
            let (trust, seals) = (sources.trust()?, sources.seals()?);
            match crate::core::audit::verify(
                conn.as_ref(),
                &trust,
                &seals,
                std::time::SystemTime::now(),
            )? {
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
                    for w in &r.warnings {
                        println!("warning: {w}");
                    }
                    stamps(&sources, conn.as_ref())
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
            let records = conn
                .submission_records(&submission_id)?
                .into_iter()
                .map(|(_, text)| serde_json::from_str::<AuditRecord>(&text))
                .collect::<Result<Vec<_>, _>>()
                .context("a stored audit record does not parse")?;
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
            tsa_anchors,
        } => audit_verify_proof(&proof, &trust, &seals, tsa_anchors.as_deref()),
        AuditCommand::MatchParts {
            submission_id,
            files,
            store,
        } => match_parts(&submission_id, &files, store),
    }
}

/// Compares documents with the keyed part hashes of a submission's `received` record.
fn match_parts(
    submission_id: &str,
    files: &[PathBuf],
    store: StoreArgs,
) -> anyhow::Result<ExitCode> {
    let sources = AuditSources::load(store)?;
    let path = &sources.pki.privacy_key;
    let key = crate::core::privacy::PrivacyKey::from_file_text(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("privacy key {}", path.display()))?;
    let received = sources
        .open()?
        .submission_records(submission_id)?
        .into_iter()
        .map(|(_, text)| serde_json::from_str::<AuditRecord>(&text))
        .collect::<Result<Vec<_>, _>>()
        .context("a stored audit record does not parse")?
        .into_iter()
        .find(|r| r.event == "received")
        .with_context(|| format!("no `received` record for submission {submission_id}"))?;
    let keyed_with = received.detail["privacy_key"].as_str().unwrap_or("");
    anyhow::ensure!(
        keyed_with == key.id(),
        "the record's part hashes are keyed with privacy key {keyed_with:?}; the configured key is {:?} (use the config with the key of that time)",
        key.id()
    );
    let parts = received.detail["parts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut all = true;
    for file in files {
        let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let mac = key.part_mac(&data);
        match parts.iter().find(|p| p["hmac_sha256"] == mac.as_str()) {
            Some(p) => println!(
                "{}: matches part {} ({} bytes)",
                file.display(),
                p["id"].as_str().unwrap_or("?"),
                data.len()
            ),
            None => {
                all = false;
                println!("{}: matches no part of {submission_id}", file.display());
            }
        }
    }
    Ok(if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn audit_prove(
    submission_id: &str,
    store: StoreArgs,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let conn = AuditSources::load(store)?.open()?;
    let doc = match crate::core::audit::prove(conn.as_ref(), submission_id) {
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
    tsa_anchors: Option<&std::path::Path>,
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
            let Some(anchors) = tsa_anchors else {
                return Ok(ExitCode::SUCCESS);
            };
            let tsa = ozg_adapter_sdk::TrustAnchors::from_pem(
                &std::fs::read(anchors)
                    .with_context(|| format!("reading {}", anchors.display()))?,
            )?;
            match audit_proof::verify_timestamps(&doc, &tsa) {
                Ok(stamps) => {
                    for (seq, stamp) in stamps {
                        match stamp {
                            Some(s) => println!(
                                "  seq {seq:<8} checkpoint time-stamped {} by {}",
                                crate::model::time::rfc3339_ms(s.time * 1000),
                                s.tsa
                            ),
                            None => println!("  seq {seq:<8} checkpoint not time-stamped"),
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("INVALID: {e}");
                    Ok(ExitCode::from(4))
                }
            }
        }
        Err(e) => {
            eprintln!("INVALID: {e}");
            Ok(ExitCode::from(4))
        }
    }
}
