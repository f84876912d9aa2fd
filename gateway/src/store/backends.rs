//! The one place that knows every storage backend: its arm of the `[store]`
//! config, its paths, its checks, and how it is opened. A new backend is one
//! more folder under `store/` and one more arm here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::store::embedded::{self, EmbeddedStore};
use crate::store::postgres::{self, PostgresStore};
use crate::store::rabbitmq::{Broker, BrokerConfig};
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
    /// Cluster mode: several instances share PostgreSQL (state, envelopes,
    /// audit log) and RabbitMQ (delivery work in quorum queues).
    Cluster {
        /// libpq connection string or URL, e.g. `host=127.0.0.1 user=ozg
        /// password=${PGPASSWORD} dbname=ozg_gateway`; the database is created
        /// if missing, the schema at start.
        database: String,
        /// Connections per instance.
        #[serde(default = "default_pool_size")]
        pool_size: usize,
        /// The broker (`[store.broker]`).
        broker: BrokerConfig,
    },
}

fn default_group_commit_max() -> usize {
    256
}

fn default_pool_size() -> usize {
    16
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
            StoreConfig::Cluster { broker, .. } => broker.ca.iter_mut().collect(),
        }
    }

    /// The local directories the store keeps its data in (secrets must lie elsewhere).
    pub fn data_dirs(&self) -> Vec<&Path> {
        match self {
            StoreConfig::Embedded { data_dir, .. } => vec![data_dir.as_path()],
            StoreConfig::Cluster { .. } => Vec::new(),
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
            StoreConfig::Cluster {
                database,
                pool_size,
                broker,
            } => {
                if let Err(e) = database.parse::<tokio_postgres::Config>() {
                    problems.push(ConfigProblem {
                        key: "store.database",
                        problem: format!("not a PostgreSQL connection string: {e}"),
                        fix: "e.g. \"host=127.0.0.1 port=5432 user=postgres dbname=ozg_gateway\"",
                    });
                }
                if *pool_size == 0 {
                    problems.push(ConfigProblem {
                        key: "store.pool_size",
                        problem: "must be at least 1".into(),
                        fix: "use e.g. 16",
                    });
                }
                if let Err(e) = Broker::new(broker.clone()) {
                    problems.push(ConfigProblem {
                        key: "store.broker",
                        problem: e,
                        fix: "see config/cluster.toml",
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
            StoreConfig::Cluster { database, .. } => format!(
                "cluster: PostgreSQL database {}",
                database
                    .parse::<tokio_postgres::Config>()
                    .ok()
                    .and_then(|c| c.get_dbname().map(str::to_owned))
                    .unwrap_or_else(|| "?".into())
            ),
        }
    }

    /// Opens the store (and starts what it runs, e.g. the embedded writer thread).
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            StoreConfig::Embedded {
                data_dir,
                group_commit_max,
            } => Ok(Arc::new(EmbeddedStore::open(data_dir, *group_commit_max)?)),
            StoreConfig::Cluster {
                database,
                pool_size,
                ..
            } => Ok(Arc::new(PostgresStore::open(database, *pool_size).await?)),
        }
    }

    /// The broker, in cluster mode (not connected yet: see [`Broker::run`]).
    pub fn broker(&self) -> Option<Result<Arc<Broker>, String>> {
        match self {
            StoreConfig::Embedded { .. } => None,
            StoreConfig::Cluster { broker, .. } => Some(Broker::new(broker.clone())),
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
            StoreConfig::Cluster { database, .. } => {
                if let Some(dir) = data_dir {
                    return Err(StoreError::Corrupt(format!(
                        "--data-dir {} reads an embedded store's copy; this config is cluster mode (PostgreSQL): drop --data-dir",
                        dir.display()
                    )));
                }
                Ok(Box::new(postgres::reads::AuditReader::connect(database)?))
            }
        }
    }
}
