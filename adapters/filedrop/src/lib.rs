//! The `filedrop` adapter: writes `<message_id>.json` into a directory a DMS imports from.
//!
//! Atomic and durable: the envelope goes to a new hidden temporary file
//! (`.<message_id>.json.<unique>.tmp`) in the same directory, the file is fsynced,
//! renamed to its final name, and the directory is fsynced. An importer that
//! ignores dot-files never sees a half-written file.
//!
//! Safe in a directory others write to: an importer may create and delete files
//! there, so no symlink is followed — not the directory itself, not a temporary
//! file, not the final name (see `dropdir.rs`). A temporary file is always created
//! new under a name of its own, so nothing planted in advance is ever opened or
//! written through, and a leftover from a crash never blocks a later attempt
//! (leftovers older than an hour are removed when the adapter is built).
//!
//! Already there: a *regular file* with the final name means an earlier attempt
//! got through (the gateway crashed before recording it) — delivered, not written
//! twice. The adapter only ever creates that name by renaming a complete, fsynced
//! file onto it. Anything else with that name — a symlink (dangling or not), a
//! FIFO, a device — is not a delivery: the rename replaces that entry (never what
//! it points to); a directory there makes the attempt fail and retry. Someone who
//! may create files in the directory could plant a regular file to make an
//! attempt count as delivered, but that is no more than the importer can do
//! anyway (delete the delivered file); what they can no longer do is make the
//! daemon write anywhere else.
//!
//! Settings: [`FiledropConfig`]; building the adapter from them creates the
//! directory if it is missing and refuses one that is a symlink.

mod dropdir;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dropdir::{DropDir, Kind};

use ozg_adapter_sdk::{
    Adapter, AdapterConfig, AdapterConfigError, DeliverFuture, Delivery, Outcome,
};
use serde::Deserialize;

/// Settings of a `filedrop` target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiledropConfig {
    /// The import directory; created at start-up if missing, and must be
    /// writable by the daemon. Its last component must be a real directory, not
    /// a symlink (symlinks in the path above it are followed).
    pub dir: PathBuf,
}

impl AdapterConfig for FiledropConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.dir]
    }

    fn build(&self) -> Result<Arc<dyn Adapter>, AdapterConfigError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            AdapterConfigError::new(format!(
                "cannot create the directory {}: {e}",
                self.dir.display()
            ))
            .with_fix("create it and let the daemon's user write to it, or point `dir` elsewhere")
        })?;
        match DropDir::open(&self.dir) {
            Ok(_) => {}
            Err(e) if dropdir::is_symlink_error(&e) => {
                return Err(AdapterConfigError::new(format!(
                    "the directory {} is a symlink, and the drop directory is never reached through one",
                    self.dir.display()
                ))
                .with_fix("point `dir` at the real directory"));
            }
            Err(e) => {
                return Err(AdapterConfigError::new(format!(
                    "cannot open the directory {}: {e}",
                    self.dir.display()
                ))
                .with_fix("let the daemon's user read and write it, or point `dir` elsewhere"));
            }
        }
        // Best effort: a leftover only takes space, it never blocks a delivery.
        if let Some(cutoff) = SystemTime::now().checked_sub(LEFTOVER_AGE) {
            let _ = sweep_leftovers(&self.dir, cutoff);
        }
        Ok(Arc::new(Filedrop::new(self)))
    }
}

/// The adapter.
#[derive(Debug, Clone)]
pub struct Filedrop {
    dir: PathBuf,
}

impl Filedrop {
    pub fn new(config: &FiledropConfig) -> Self {
        Filedrop {
            dir: config.dir.clone(),
        }
    }
}

/// Message ids become file names: only a conservative character set passes.
fn file_stem(message_id: &str) -> Option<&str> {
    let ok = !message_id.is_empty()
        && message_id.len() <= 128
        && message_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(message_id)
}

fn io_outcome(what: &str, e: &std::io::Error) -> Outcome {
    // Full disk, permissions, a missing directory: an operator can fix all of them,
    // so retry (and park when the policy gives up).
    Outcome::retry(
        &format!("io-{}", format!("{:?}", e.kind()).to_lowercase()),
        format!("{what}: {e}"),
    )
}

/// A temporary file older than this is a crash's leftover (writing one takes
/// moments), removed when the adapter is built.
const LEFTOVER_AGE: Duration = Duration::from_secs(3600);

/// Whether `name` is a temporary file of this adapter: `.<stem>.json.<hex>.tmp`,
/// or `.<stem>.json.tmp` as earlier versions named them.
fn is_temporary(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let Some((stem, unique)) = rest.split_once(".json") else {
        return false;
    };
    let unique_ok = unique.is_empty()
        || unique
            .strip_prefix('.')
            .is_some_and(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_hexdigit()));
    file_stem(stem).is_some() && unique_ok
}

/// Removes this adapter's temporary files last modified before `cutoff`, without
/// following any of them. In-flight files are younger; removing one anyway would
/// only make that attempt fail and retry.
fn sweep_leftovers(path: &Path, cutoff: SystemTime) -> std::io::Result<()> {
    let dir = DropDir::open(path)?;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !is_temporary(&name) {
            continue;
        }
        if let Ok(Some(e)) = dir.entry(&name) {
            if e.modified < cutoff {
                let _ = dir.remove(&name);
            }
        }
    }
    dir.sync()
}

/// A temporary name no other attempt uses (this process, or an earlier one with
/// the same pid: creation is exclusive, so a clash only means another name).
fn temporary_name(stem: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(".{stem}.json.{:x}{nanos:08x}{n:x}.tmp", std::process::id())
}

/// Creates a new temporary file for `stem`: a few names are tried if one is
/// taken (planted in advance, or a leftover).
fn create_temporary(dir: &DropDir, stem: &str) -> std::io::Result<(String, std::fs::File)> {
    let mut last = None;
    for _ in 0..4 {
        let name = temporary_name(stem);
        match dir.create_new(&name) {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temporary name")))
}

fn write_atomically(path: &Path, stem: &str, body: &[u8]) -> Outcome {
    let dir = match DropDir::open(path) {
        Ok(dir) => dir,
        Err(e) if dropdir::is_symlink_error(&e) => {
            return Outcome::retry(
                "io-symlink",
                format!(
                    "the drop directory {} is a symlink; it is not followed",
                    path.display()
                ),
            )
        }
        Err(e) => return io_outcome(&format!("opening {}", path.display()), &e),
    };
    let final_name = format!("{stem}.json");
    match dir.entry(&final_name) {
        // Only this adapter makes a regular file of this name, by renaming a
        // complete one onto it: an earlier attempt got through.
        Ok(Some(e)) if e.kind == Kind::File => return Outcome::Delivered { receipt: None },
        // Absent, or a symlink or other non-file: not a delivery; the rename below
        // replaces the entry itself.
        Ok(_) => {}
        Err(e) => return io_outcome(&format!("looking into {}", path.display()), &e),
    }
    let (tmp, mut f) = match create_temporary(&dir, stem) {
        Ok(created) => created,
        Err(e) => return io_outcome(&format!("writing into {}", path.display()), &e),
    };
    let result = (|| -> std::io::Result<()> {
        f.write_all(body)?;
        // Data and size (all a new file needs); the rename is made durable below.
        f.sync_data()?;
        dir.rename(&tmp, &final_name)?;
        // The rename is durable only once the directory entry is.
        dir.sync()
    })();
    drop(f);
    match result {
        Ok(()) => Outcome::Delivered { receipt: None },
        Err(e) => {
            // Our own new file (or, if renamed already, a name nobody else uses).
            let _ = dir.remove(&tmp);
            io_outcome(&format!("writing into {}", path.display()), &e)
        }
    }
}

impl Adapter for Filedrop {
    fn kind(&self) -> &'static str {
        "filedrop"
    }

    fn deliver<'a>(&'a self, d: Delivery<'a>) -> DeliverFuture<'a> {
        Box::pin(async move {
            let Some(stem) = file_stem(d.message_id) else {
                return Outcome::permanent(
                    "bad-message-id",
                    "message id is not usable as a file name",
                );
            };
            let dir = self.dir.clone();
            let stem = stem.to_owned();
            let body = d.envelope.clone();
            match tokio::task::spawn_blocking(move || write_atomically(&dir, &stem, &body)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::retry("internal", "file writer task failed"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery<'a>(id: &'a str, body: &'a bytes::Bytes) -> Delivery<'a> {
        Delivery {
            message_id: id,
            submission_id: "s",
            target: "t",
            attempt: 1,
            envelope: body,
        }
    }

    #[tokio::test]
    async fn writes_once_and_recognises_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = Filedrop::new(&FiledropConfig {
            dir: dir.path().into(),
        });
        assert_eq!(
            a.deliver(delivery("m-1", &bytes::Bytes::from_static(b"{}")))
                .await,
            Outcome::Delivered { receipt: None }
        );
        assert_eq!(std::fs::read(dir.path().join("m-1.json")).unwrap(), b"{}");
        // A redelivery after a crash: the same file counts as delivered, unchanged.
        assert_eq!(
            a.deliver(delivery("m-1", &bytes::Bytes::from_static(b"{\"x\":1}")))
                .await,
            Outcome::Delivered { receipt: None }
        );
        assert_eq!(std::fs::read(dir.path().join("m-1.json")).unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[tokio::test]
    async fn built_from_relative_settings_it_creates_and_fills_its_directory() {
        let base = tempfile::tempdir().unwrap();
        let mut config = FiledropConfig {
            dir: "import/dms".into(),
        };
        config.resolve_paths(base.path());
        assert_eq!(config.dir, base.path().join("import/dms"));
        let a = config.build().unwrap();
        assert_eq!(a.kind(), "filedrop");
        assert_eq!(
            a.deliver(delivery("m-1", &bytes::Bytes::from_static(b"{}")))
                .await,
            Outcome::Delivered { receipt: None }
        );
        assert!(base.path().join("import/dms/m-1.json").is_file());
    }

    #[test]
    fn a_directory_that_cannot_be_created_is_a_clear_refusal() {
        let base = tempfile::tempdir().unwrap();
        // A file where a parent directory should be: refused even for root.
        std::fs::write(base.path().join("occupied"), b"").unwrap();
        let dir = base.path().join("occupied/in");
        let err = FiledropConfig { dir: dir.clone() }.build().err().unwrap();
        assert!(
            err.problem
                .starts_with(&format!("cannot create the directory {}: ", dir.display())),
            "{err}"
        );
        assert!(err.fix.contains("`dir`"), "{}", err.fix);
    }

    fn filedrop(dir: &Path) -> Filedrop {
        Filedrop::new(&FiledropConfig { dir: dir.into() })
    }

    fn is_regular_file(path: &Path) -> bool {
        std::fs::symlink_metadata(path)
            .map(|m| m.file_type().is_file())
            .unwrap_or(false)
    }

    /// The outside attack: whoever may delete and create files in the drop
    /// directory (a DMS importer must) plants symlinks where the adapter writes.
    #[tokio::test]
    async fn a_symlink_planted_as_the_temporary_file_is_never_followed() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        let victim = base.path().join("gateway.db");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join(".m-1.json.tmp")).unwrap();

        let a = filedrop(&dir);
        assert_eq!(
            a.deliver(delivery("m-1", &bytes::Bytes::from_static(b"{}")))
                .await,
            Outcome::Delivered { receipt: None }
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(
            is_regular_file(&dir.join("m-1.json")),
            "delivered as a file of its own"
        );
        assert_eq!(std::fs::read(dir.join("m-1.json")).unwrap(), b"{}");
    }

    #[tokio::test]
    async fn a_symlink_planted_at_the_final_name_is_neither_followed_nor_delivered() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        let victim = base.path().join("gateway.db");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("m-1.json")).unwrap();
        std::os::unix::fs::symlink(base.path().join("nowhere"), dir.join("m-2.json")).unwrap();

        let a = filedrop(&dir);
        for id in ["m-1", "m-2"] {
            assert_eq!(
                a.deliver(delivery(id, &bytes::Bytes::from_static(b"{}")))
                    .await,
                Outcome::Delivered { receipt: None }
            );
            let path = dir.join(format!("{id}.json"));
            assert!(
                is_regular_file(&path),
                "{id}: the symlink was replaced, not followed"
            );
            assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!base.path().join("nowhere").exists());
    }

    #[tokio::test]
    async fn a_leftover_temporary_file_does_not_block_delivery_and_is_swept_at_start() {
        let dir = tempfile::tempdir().unwrap();
        // What a crash between create and rename leaves behind (old and new names).
        std::fs::write(dir.path().join(".m-1.json.tmp"), b"{\"half").unwrap();
        std::fs::write(dir.path().join(".m-1.json.0123abcd.tmp"), b"{\"half").unwrap();
        std::fs::write(dir.path().join(".not-ours.tmp"), b"x").unwrap();
        let victim = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(victim.path(), b"precious").unwrap();
        std::os::unix::fs::symlink(victim.path(), dir.path().join(".m-2.json.tmp")).unwrap();
        let a = filedrop(dir.path());
        assert_eq!(
            a.deliver(delivery("m-1", &bytes::Bytes::from_static(b"{}")))
                .await,
            Outcome::Delivered { receipt: None }
        );
        assert_eq!(std::fs::read(dir.path().join("m-1.json")).unwrap(), b"{}");

        // At start-up, leftovers of this adapter older than the cut-off go; other
        // files stay.
        let future = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        sweep_leftovers(dir.path(), future).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".not-ours.tmp", "m-1.json"]);
        assert_eq!(std::fs::read(victim.path()).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn a_symlinked_drop_directory_is_refused_not_followed() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("elsewhere");
        std::fs::create_dir(&real).unwrap();
        let dir = base.path().join("in");
        std::os::unix::fs::symlink(&real, &dir).unwrap();

        let err = FiledropConfig { dir: dir.clone() }.build().err().unwrap();
        assert!(err.problem.contains("symlink"), "{err}");
        assert!(err.fix.contains("`dir`"), "{}", err.fix);
        // Swapped in after start: the attempt fails (and is retried), nothing written.
        assert!(matches!(
            filedrop(&dir)
                .deliver(delivery("m-1", &bytes::Bytes::from_static(b"{}")))
                .await,
            Outcome::Retry { .. }
        ));
        assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn missing_directory_is_retried_and_hostile_ids_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Filedrop::new(&FiledropConfig {
            dir: dir.path().join("absent"),
        });
        assert!(matches!(
            a.deliver(delivery("m-1", &bytes::Bytes::from_static(b"{}")))
                .await,
            Outcome::Retry { .. }
        ));
        let a = Filedrop::new(&FiledropConfig {
            dir: dir.path().into(),
        });
        assert!(matches!(
            a.deliver(delivery(
                "../../etc/passwd",
                &bytes::Bytes::from_static(b"{}")
            ))
            .await,
            Outcome::Permanent { .. }
        ));
    }

    /// The gateway's contract, checked by the SDK's harness: a directory that
    /// takes files, one that is missing (unreachable), one that is a symlink
    /// (not written through: retried until an operator fixes it). A filedrop
    /// never refuses for good and never hangs: those rules are skipped.
    struct DirRig {
        root: tempfile::TempDir,
    }

    impl ozg_adapter_sdk::conformance::Rig for DirRig {
        fn adapter(
            &mut self,
            remote: ozg_adapter_sdk::conformance::Remote,
        ) -> ozg_adapter_sdk::conformance::RigFuture<'_, Option<std::sync::Arc<dyn Adapter>>>
        {
            use ozg_adapter_sdk::conformance::Remote;
            let dir = match remote {
                Remote::Takes => Some(self.root.path().join("inbox")),
                Remote::Unreachable => Some(self.root.path().join("missing").join("inbox")),
                Remote::Busy => {
                    let link = self.root.path().join("link");
                    if !link.exists() {
                        std::os::unix::fs::symlink(self.root.path().join("inbox"), &link).unwrap();
                    }
                    Some(link)
                }
                Remote::Refuses | Remote::Hangs => None,
            };
            if remote == ozg_adapter_sdk::conformance::Remote::Takes {
                std::fs::create_dir_all(self.root.path().join("inbox")).unwrap();
            }
            Box::pin(async move {
                dir.map(|dir| {
                    std::sync::Arc::new(Filedrop::new(&FiledropConfig { dir }))
                        as std::sync::Arc<dyn Adapter>
                })
            })
        }

        fn taken(&mut self) -> ozg_adapter_sdk::conformance::RigFuture<'_, Vec<String>> {
            let inbox = self.root.path().join("inbox");
            Box::pin(async move {
                let mut ids: Vec<String> = std::fs::read_dir(inbox)
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter_map(|e| {
                                e.file_name()
                                    .to_string_lossy()
                                    .strip_suffix(".json")
                                    .map(str::to_owned)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ids.sort();
                ids
            })
        }

        fn attempt_timeout(&self) -> std::time::Duration {
            std::time::Duration::from_secs(5)
        }
    }

    #[tokio::test]
    async fn keeps_the_gateways_adapter_contract() {
        let mut rig = DirRig {
            root: tempfile::tempdir().unwrap(),
        };
        let checks = ozg_adapter_sdk::conformance::run(&mut rig).await;
        ozg_adapter_sdk::conformance::assert_conformant(&checks);
        let ran: Vec<_> = checks
            .iter()
            .filter(|c| c.passed.is_some())
            .map(|c| c.rule)
            .collect();
        assert_eq!(
            ran,
            [
                "delivers",
                "same-message-id",
                "unreachable-retries",
                "busy-retries",
                "no-content-in-failures",
                "no-panic"
            ]
        );
    }
}
