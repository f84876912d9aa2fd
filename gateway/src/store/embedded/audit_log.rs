//! The audit chain's head as the writer thread keeps it, and appending a record
//! inside the caller's transaction (see `crate::model::audit` for the format);
//! reading the log and its checkpoints for verification, proofs and traces.

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::audit::{chained, AuditEvent, AuditRecord, Checkpoint, Head, GENESIS};
use crate::store::{AuditLogRead, StoreError};

/// Reading and extending the chain in the embedded database.
pub trait Chain: Sized {
    /// Reads the head from the database.
    fn load(conn: &Connection) -> Result<Self, StoreError>;
    /// Appends a record after the head, in the caller's transaction.
    fn append(&mut self, conn: &Connection, ts: &str, e: AuditEvent) -> Result<(), StoreError>;
}

impl Chain for Head {
    fn load(conn: &Connection) -> Result<Head, StoreError> {
        let last: Option<(u64, String)> = conn
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match last {
            Some((seq, hash)) => Head { seq, hash },
            None => Head {
                seq: 0,
                hash: GENESIS.into(),
            },
        })
    }

    fn append(&mut self, conn: &Connection, ts: &str, e: AuditEvent) -> Result<(), StoreError> {
        let (record, text, hash) =
            chained(self, ts, e).map_err(|err| StoreError::Corrupt(err.to_string()))?;
        conn.prepare_cached(
            "INSERT INTO audit (seq, submission_id, record, hash) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![record.seq, record.submission_id, text, hash])?;
        self.seq = record.seq;
        self.hash = hash;
        Ok(())
    }
}

/// The audit records of one submission, in order.
pub fn read_trace(conn: &Connection, submission_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT record FROM audit WHERE submission_id = ?1 ORDER BY seq")?;
    let rows = stmt.query_map(params![submission_id], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(
            serde_json::from_str(&row?)
                .map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))?,
        );
    }
    Ok(out)
}

/// The checkpoint columns; a store of schema version 3 that no daemon of this
/// version has opened yet (a backup being verified) has no Merkle columns.
fn checkpoint_columns(conn: &Connection) -> Result<&'static str, StoreError> {
    let merkle: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM pragma_table_info('audit_checkpoints') WHERE name = 'first_seq'",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(if merkle > 0 {
        "seq, head, ts, jws, first_seq, root"
    } else {
        "seq, head, ts, jws, NULL, NULL"
    })
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        seq: r.get(0)?,
        head: r.get(1)?,
        ts: r.get(2)?,
        jws: r.get(3)?,
        from: r.get(4)?,
        root: r.get(5)?,
    })
}

/// All checkpoints, oldest first.
pub fn read_checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>, StoreError> {
    let columns = checkpoint_columns(conn)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {columns} FROM audit_checkpoints ORDER BY seq"
    ))?;
    let rows = stmt.query_map([], checkpoint_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest checkpoint.
pub fn read_latest_checkpoint(conn: &Connection) -> Result<Option<Checkpoint>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT seq, head, ts, jws, first_seq, root FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
        )?
        .query_row([], checkpoint_row)
        .optional()?)
}

/// The oldest checkpoint at or after record `seq` (the one whose batch holds it).
pub fn read_covering_checkpoint(
    conn: &Connection,
    seq: u64,
) -> Result<Option<Checkpoint>, StoreError> {
    let columns = checkpoint_columns(conn)?;
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {columns} FROM audit_checkpoints WHERE seq >= ?1 ORDER BY seq LIMIT 1"
        ))?
        .query_row(params![seq], checkpoint_row)
        .optional()?)
}

/// The stored text of audit records `from..=to`, in order.
pub fn read_audit_texts(conn: &Connection, from: u64, to: u64) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT record FROM audit WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq")?;
    let rows = stmt.query_map(params![from, to], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Up to `limit` checkpoints after `after` without a time-stamp token,
/// oldest first, and how many there are after `after` in all.
pub fn read_unstamped(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<(Vec<Checkpoint>, u64), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, head, ts, jws, first_seq, root FROM audit_checkpoints c WHERE c.seq > ?1 AND NOT EXISTS (SELECT 1 FROM audit_stamps s WHERE s.seq = c.seq) ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after as i64, limit as i64], checkpoint_row)?;
    let list = rows.collect::<Result<Vec<_>, _>>()?;
    let total: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM audit_checkpoints c WHERE c.seq > ?1 AND NOT EXISTS (SELECT 1 FROM audit_stamps s WHERE s.seq = c.seq)",
        )?
        .query_row(params![after as i64], |r| r.get(0))?;
    Ok((list, total as u64))
}

/// Keeps a checkpoint's time-stamp token (a second one for it changes nothing).
pub(super) fn add_stamp(
    conn: &Connection,
    seq: u64,
    token: &[u8],
    stamped_at: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO audit_stamps (seq, token, stamped_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![seq, token, stamped_at])?;
    Ok(())
}

impl AuditLogRead for Connection {
    fn stamp(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let exists: i64 = self
            .prepare_cached("SELECT count(*) FROM sqlite_master WHERE name = 'audit_stamps'")?
            .query_row([], |r| r.get(0))?;
        if exists == 0 {
            return Ok(None);
        }
        Ok(self
            .prepare_cached("SELECT token FROM audit_stamps WHERE seq = ?1")?
            .query_row(params![seq], |r| r.get(0))
            .optional()?)
    }

    fn stamps(&self) -> Result<std::collections::BTreeMap<u64, Vec<u8>>, StoreError> {
        // A store no daemon of this version has opened (a backup) has no table yet.
        let exists: i64 = self
            .prepare_cached("SELECT count(*) FROM sqlite_master WHERE name = 'audit_stamps'")?
            .query_row([], |r| r.get(0))?;
        if exists == 0 {
            return Ok(Default::default());
        }
        let mut stmt = self.prepare_cached("SELECT seq, token FROM audit_stamps ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        read_checkpoints(self)
    }

    fn each_record(
        &self,
        visit: &mut dyn FnMut(u64, String, String) -> bool,
    ) -> Result<(), StoreError> {
        let mut stmt = self.prepare("SELECT seq, record, hash FROM audit ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            if !visit(row.get(0)?, row.get(1)?, row.get(2)?) {
                break;
            }
        }
        Ok(())
    }

    fn submission_records(&self, submission_id: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let mut stmt = self.prepare_cached(
            "SELECT seq, record FROM audit WHERE submission_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![submission_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn covering_checkpoint(&self, seq: u64) -> Result<Option<Checkpoint>, StoreError> {
        read_covering_checkpoint(self, seq)
    }

    fn texts(&self, from: u64, to: u64) -> Result<Vec<String>, StoreError> {
        read_audit_texts(self, from, to)
    }
}

pub(super) fn add_checkpoint(conn: &Connection, c: &Checkpoint) -> Result<(), StoreError> {
    let hash: Option<String> = conn
        .prepare_cached("SELECT hash FROM audit WHERE seq = ?1")?
        .query_row(params![c.seq], |r| r.get(0))
        .optional()?;
    if hash.as_deref() != Some(c.head.as_str()) {
        return Err(StoreError::Corrupt(format!(
            "checkpoint for seq {} does not match the log",
            c.seq
        )));
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO audit_checkpoints (seq, head, ts, jws, first_seq, root) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![c.seq, c.head, c.ts, c.jws, c.from, c.root])?;
    Ok(())
}
