//! The `filedrop` adapter: writes `<message_id>.json` into a directory a DMS imports from.
//!
//! Atomic and durable: the envelope goes to a hidden temporary file in the same
//! directory, the file is fsynced, renamed to its final name, and the directory is
//! fsynced. An importer that ignores dot-files never sees a half-written file. A file
//! that already has the final name means an earlier attempt got through (the gateway
//! crashed before recording it): delivered, not written twice.
//!
//! Settings: [`FiledropConfig`]; building the adapter from them creates the
//! directory if it is missing.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ozg_adapter_sdk::{
    Adapter, AdapterConfig, AdapterConfigError, DeliverFuture, Delivery, Outcome,
};
use serde::Deserialize;

/// Settings of a `filedrop` target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiledropConfig {
    /// The import directory; created at start-up if missing, and must be
    /// writable by the daemon.
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

fn write_atomically(dir: &Path, stem: &str, body: &[u8]) -> Outcome {
    let final_path = dir.join(format!("{stem}.json"));
    if final_path.exists() {
        return Outcome::Delivered { receipt: None };
    }
    let tmp = dir.join(format!(".{stem}.json.tmp"));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(body)?;
        // Data and size (all a new file needs); the rename is made durable below.
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &final_path)?;
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir)?.sync_all()
    })();
    match result {
        Ok(()) => Outcome::Delivered { receipt: None },
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            io_outcome(&format!("writing into {}", dir.display()), &e)
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
            let body = d.envelope.to_vec();
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

    fn delivery<'a>(id: &'a str, body: &'a [u8]) -> Delivery<'a> {
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
            a.deliver(delivery("m-1", b"{}")).await,
            Outcome::Delivered { receipt: None }
        );
        assert_eq!(std::fs::read(dir.path().join("m-1.json")).unwrap(), b"{}");
        // A redelivery after a crash: the same file counts as delivered, unchanged.
        assert_eq!(
            a.deliver(delivery("m-1", b"{\"x\":1}")).await,
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
            a.deliver(delivery("m-1", b"{}")).await,
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

    #[tokio::test]
    async fn missing_directory_is_retried_and_hostile_ids_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Filedrop::new(&FiledropConfig {
            dir: dir.path().join("absent"),
        });
        assert!(matches!(
            a.deliver(delivery("m-1", b"{}")).await,
            Outcome::Retry { .. }
        ));
        let a = Filedrop::new(&FiledropConfig {
            dir: dir.path().into(),
        });
        assert!(matches!(
            a.deliver(delivery("../../etc/passwd", b"{}")).await,
            Outcome::Permanent { .. }
        ));
    }
}
