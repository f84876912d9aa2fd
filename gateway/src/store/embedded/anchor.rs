//! The anchor: what the data directory held when the store last vouched for it,
//! kept beside the database so that a database that went missing, came back
//! empty or fell behind is *detected* at start instead of silently becoming a
//! fresh store (and the envelopes of the lost one garbage).
//!
//! # On-disk format
//!
//! `<data_dir>/gateway.anchor`, one line of JSON, replaced atomically (temp file,
//! fsync, rename, fsync of the directory):
//!
//! ```json
//! {"store_id":"<uuid>","seq":4711,"hash":"<hex SHA-256 of audit record 4711>","ts":"…"}
//! ```
//!
//! `store_id` is created with the database (table `meta`); `seq`/`hash` are the
//! audit chain's head. The anchor is written after the store opened, after every
//! commit that stored an audit checkpoint (at least once a minute while records
//! are added, see `audit.checkpoint_interval`) and at a clean shutdown — always
//! after the commit it describes, so the database is never behind its anchor
//! unless something outside the gateway rolled it back.
//!
//! # What the check refuses
//!
//! - a database without tables (missing, truncated, or whose WAL was deleted before
//!   it was ever checkpointed) while an anchor or non-empty envelope segments exist;
//! - a database of another store (`store_id` differs);
//! - a database whose audit log ends before the anchored record, or whose record
//!   at the anchored position differs (rolled back or rewritten).
//!
//! An operator who deliberately restores an older backup moves `gateway.anchor`
//! away; the store then anchors the restored state at the next start.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::model::audit::Head;
use crate::model::time::rfc3339_now;
use crate::store::StoreError;

/// The anchor file's name in the data directory.
pub const ANCHOR_FILE: &str = "gateway.anchor";

/// What the data directory held when the store last vouched for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub store_id: String,
    pub seq: u64,
    pub hash: String,
    pub ts: String,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(ANCHOR_FILE)
}

/// Reads the anchor, if the data directory has one.
pub fn read(data_dir: &Path) -> Result<Option<Anchor>, StoreError> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            StoreError::Corrupt(format!(
                "{} cannot be read ({e}); restore it from the backup of this data directory, or move it away if the database is the one you mean to run on",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes the anchor for `head` atomically and durably.
pub fn write(data_dir: &Path, store_id: &str, head: &Head) -> std::io::Result<()> {
    let anchor = Anchor {
        store_id: store_id.to_owned(),
        seq: head.seq,
        hash: head.hash.clone(),
        ts: rfc3339_now(),
    };
    let tmp = data_dir.join(format!(".{ANCHOR_FILE}.tmp"));
    // A leftover temp file (a crash mid-write) is replaced, never followed.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(&anchor).map_err(std::io::Error::other)?)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path(data_dir))?;
    File::open(data_dir)?.sync_all()
}

/// The store's id, created with its database.
pub fn store_id(conn: &Connection) -> Result<String, StoreError> {
    let id: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match id {
        Some(id) => Ok(id),
        None => {
            let id = uuid::Uuid::new_v4().to_string();
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('store_id', ?1)",
                params![id],
            )?;
            Ok(id)
        }
    }
}

/// Whether the database has no tables yet (new, truncated, or its WAL lost
/// before the first checkpoint).
pub fn is_empty_database(conn: &Connection) -> Result<bool, StoreError> {
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'submissions'",
        [],
        |r| r.get(0),
    )?;
    Ok(tables == 0)
}

/// Refuses a database without tables beside the traces of a store that was
/// there: an anchor, or envelope segments with content.
pub fn check_fresh(data_dir: &Path, anchor: Option<&Anchor>) -> Result<(), StoreError> {
    let db = data_dir.join(super::DB_FILE);
    if let Some(a) = anchor {
        return Err(StoreError::Corrupt(format!(
            "{} holds no store, but this data directory held store {} up to audit record {} ({}): the database is missing, truncated or lost its -wal file. Nothing was changed. Restore gateway.db (with gateway.db-wal, if the backup has one) from a backup; envelopes/ is untouched",
            db.display(),
            a.store_id,
            a.seq,
            a.ts
        )));
    }
    let segments = super::segments::non_empty(data_dir)?;
    if !segments.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "{} holds no store, but envelopes/ holds {} segment file(s) with sealed envelopes (e.g. {}): the database that refers to them is missing. Nothing was changed and no segment was deleted. Restore gateway.db from a backup",
            db.display(),
            segments.len(),
            segments[0].display()
        )));
    }
    Ok(())
}

/// Refuses a database that is not the anchored one or is behind it.
pub fn check(conn: &Connection, store_id: &str, anchor: &Anchor) -> Result<(), StoreError> {
    if anchor.store_id != store_id {
        return Err(StoreError::Corrupt(format!(
            "gateway.db is store {store_id}, but this data directory's anchor names store {}: a database of another installation was copied in. Nothing was changed. Put the right gateway.db back, or move gateway.anchor away if this database is the one you mean to run on",
            anchor.store_id
        )));
    }
    let hash: Option<String> = conn
        .query_row(
            "SELECT hash FROM audit WHERE seq = ?1",
            params![anchor.seq],
            |r| r.get(0),
        )
        .optional()?;
    let head: u64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| r.get(0))?;
    match hash {
        _ if anchor.seq == 0 => Ok(()),
        None => Err(StoreError::Corrupt(format!(
            "gateway.db ends at audit record {head}, but the store had reached record {} ({}): the database was rolled back (a lost or damaged -wal file, or an older copy put in its place) and acknowledged submissions may be missing. Nothing was changed. Restore the newest backup (gateway.db and gateway.db-wal together); if you restored an older backup on purpose, move gateway.anchor away to run on it",
            anchor.seq, anchor.ts
        ))),
        Some(h) if h != anchor.hash => Err(StoreError::Corrupt(format!(
            "audit record {} of gateway.db is not the one the store anchored at {}: the log was rewritten. Nothing was changed. Restore gateway.db from a backup and run `ozg-gateway audit verify`",
            anchor.seq, anchor.ts
        ))),
        Some(_) => Ok(()),
    }
}
