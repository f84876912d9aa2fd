//! Reading a data directory without a running store: read-only, also while a
//! daemon runs (verification, traces, counts for operators and tests).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{open_connection, EmbeddedStore};
use crate::store::StoreError;

/// Opens a data directory's database read-only (verification, traces, counts),
/// also while a daemon runs.
pub fn open_read_only(data_dir: &Path) -> Result<Connection, StoreError> {
    open_connection(
        &EmbeddedStore::db_path(data_dir),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
}

/// Row counts, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub submissions: u64,
    pub deliveries: u64,
    pub envelopes: u64,
    pub idempotency_keys: u64,
}

/// Counts the rows of a data directory (read-only; works while the daemon runs).
pub fn counts(data_dir: &Path) -> Result<Counts, StoreError> {
    let conn = open_connection(
        &EmbeddedStore::db_path(data_dir),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let count = |table: &str| -> Result<u64, StoreError> {
        Ok(conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    };
    Ok(Counts {
        submissions: count("submissions")?,
        deliveries: count("deliveries")?,
        envelopes: count("deliveries WHERE segment IS NOT NULL")?,
        idempotency_keys: count("idempotency")?,
    })
}
