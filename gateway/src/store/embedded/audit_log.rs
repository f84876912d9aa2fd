//! The audit chain's head as the writer thread keeps it, and appending a record
//! inside the caller's transaction (see `crate::model::audit` for the format).

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::audit::{record_hash, AuditEvent, AuditRecord, Head, GENESIS};
use crate::store::StoreError;

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
        let record = AuditRecord {
            seq: self.seq + 1,
            ts: ts.to_owned(),
            event: e.event.to_owned(),
            submission_id: e.submission_id,
            message_id: e.message_id,
            target: e.target,
            detail: e.detail,
            prev: self.hash.clone(),
        };
        let text =
            serde_json::to_string(&record).map_err(|err| StoreError::Corrupt(err.to_string()))?;
        let hash = record_hash(&text);
        conn.prepare_cached(
            "INSERT INTO audit (seq, submission_id, record, hash) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![record.seq, record.submission_id, text, hash])?;
        self.seq = record.seq;
        self.hash = hash;
        Ok(())
    }
}
