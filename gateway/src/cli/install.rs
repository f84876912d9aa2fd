//! What installing the gateway needs besides the binary: shell completions, man
//! pages and a fresh privacy key (the `.deb` and a hand installation use them).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::args::Cli;

pub(super) fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "ozg-gateway", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// `ozg-gateway.1` and `ozg-gateway-<command>.1` for every command (nested
/// ones as `ozg-gateway-audit-verify.1`).
pub(super) fn man_pages(out: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    let mut written = 0;
    write_page(&cmd, "ozg-gateway", "ozg-gateway", out, &mut written)?;
    println!("{written} man pages written to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// `name` is the page's (`ozg-gateway-audit-verify`), `invocation` what the
/// synopsis shows (`ozg-gateway audit verify`).
fn write_page(
    cmd: &clap::Command,
    name: &str,
    invocation: &str,
    out: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let cmd = cmd
        .clone()
        .name(name.to_owned())
        .bin_name(invocation.to_owned());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let path = out.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = sub.get_name();
        write_page(
            sub,
            &format!("{name}-{sub_name}"),
            &format!("{invocation} {sub_name}"),
            out,
            written,
        )?;
    }
    Ok(())
}

pub(super) fn privacy_key(out: &Path) -> anyhow::Result<ExitCode> {
    let text = crate::core::privacy::PrivacyKey::new_file_text(&[
        "ozg-gateway privacy key (pki.privacy_key); keep it outside the data directory and back it up apart from it",
    ])?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(out) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "{} exists already; nothing was written (a privacy key is never replaced: audit records and stored answers depend on it)",
                out.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", out.display())),
    };
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    println!("privacy key written to {} (mode 600)", out.display());
    Ok(ExitCode::SUCCESS)
}

/// A new FIT-Connect client: its secret (shown once) and its config entry.
pub(super) fn fitconnect_client(
    id: &str,
    role: &str,
    destinations: &[String],
) -> anyhow::Result<ExitCode> {
    use aws_lc_rs::rand::SecureRandom as _;
    if !matches!(role, "sender" | "subscriber") {
        anyhow::bail!("--role must be sender or subscriber");
    }
    if let Some(d) = destinations
        .iter()
        .find(|d| uuid::Uuid::parse_str(d).is_err())
    {
        anyhow::bail!("--destination {d:?} is not a UUID");
    }
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    let secret = ozg_adapter_sdk::base64url::encode(&raw);
    let hash = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        secret.as_bytes(),
    ));
    let list = destinations
        .iter()
        .map(|d| format!("\"{d}\""))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("client_secret for {id} (give it to the client now; it is not stored):");
    eprintln!("{secret}");
    println!("[[fitconnect.clients]]\nid = \"{id}\"\nrole = \"{role}\"\nsecret_sha256 = \"{hash}\"\ndestinations = [{list}]");
    Ok(ExitCode::SUCCESS)
}
