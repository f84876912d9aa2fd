//! The one place that knows every storage backend: its arm of the `[store]`
//! config, its paths, its checks, and how it is opened. A new backend is one
//! more folder under `store/` and one more arm here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::store::embedded::{self, EmbeddedStore};
use crate::store::{AuditLogRead, Store, StoreError};

/// The store backend (`[store] type = "…"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// SQLite in WAL mode in one data directory: the single-machine default.
    Embedded {
        /// Data directory (created if missing); keep it on a local, fsync-honouring disk.
        data_dir: PathBuf,
        /// Most submissions committed together in one fsync (group commit).
        #[serde(default = "default_group_commit_max")]
        group_commit_max: usize,
    },
}

fn default_group_commit_max() -> usize {
    256
}

/// A problem with the store's config: the key under `[store]`, what is wrong, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

impl StoreConfig {
    /// The paths in it, to be made relative to the config file's directory.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            StoreConfig::Embedded { data_dir, .. } => vec![data_dir],
        }
    }

    /// The local directories the store keeps its data in (secrets must lie elsewhere).
    pub fn data_dirs(&self) -> Vec<&Path> {
        match self {
            StoreConfig::Embedded { data_dir, .. } => vec![data_dir.as_path()],
        }
    }

    /// Checks what can be checked before opening (and creates the data directory).
    pub fn check(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        match self {
            StoreConfig::Embedded {
                data_dir,
                group_commit_max,
            } => {
                if *group_commit_max == 0 {
                    problems.push(ConfigProblem {
                        key: "store.group_commit_max",
                        problem: "must be at least 1".into(),
                        fix: "use e.g. 256",
                    });
                }
                if let Err(e) = std::fs::create_dir_all(data_dir) {
                    problems.push(ConfigProblem {
                        key: "store.data_dir",
                        problem: format!("cannot create {}: {e}", data_dir.display()),
                        fix: "point it to a directory the daemon's user may write",
                    });
                }
            }
        }
        problems
    }

    /// Where the data lives, for operators' messages.
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Embedded { data_dir, .. } => data_dir.display().to_string(),
        }
    }

    /// Opens the store (and starts what it runs, e.g. the embedded writer thread).
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            StoreConfig::Embedded {
                data_dir,
                group_commit_max,
            } => Ok(Arc::new(EmbeddedStore::open(data_dir, *group_commit_max)?)),
        }
    }

    /// A read-only view of the audit log, also while a daemon runs; `data_dir`
    /// reads a copy of an embedded store's data directory instead.
    pub fn audit_log(&self, data_dir: Option<&Path>) -> Result<Box<dyn AuditLogRead>, StoreError> {
        match self {
            StoreConfig::Embedded {
                data_dir: configured,
                ..
            } => Ok(Box::new(embedded::open_read_only(
                data_dir.unwrap_or(configured),
            )?)),
        }
    }
}
