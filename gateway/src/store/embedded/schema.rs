//! The database schema and the migrations from earlier versions, applied at
//! start in one transaction.

use rusqlite::{params, Connection, TransactionBehavior};

use super::segments::Segments;
use crate::store::StoreError;

/// The table of delivery counts per target and state (in `SCHEMA` and created by
/// the 3 → 4 migration, which fills it before the triggers exist).
macro_rules! delivery_counts_table {
    () => {
        "
CREATE TABLE IF NOT EXISTS delivery_counts (
    target  TEXT NOT NULL,
    state   TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (target, state)
) WITHOUT ROWID;
"
    };
}

pub(super) const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id           TEXT PRIMARY KEY,
    portal       TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    response     TEXT NOT NULL,
    in_reply_to  TEXT,
    reply_by     TEXT,
    reply_type   TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
    message_id      TEXT PRIMARY KEY,
    submission_id   TEXT NOT NULL REFERENCES submissions(id),
    target          TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    last_error      TEXT,
    last_class      TEXT,
    receipt         TEXT,
    updated_at      TEXT NOT NULL,
    updated_ms      INTEGER NOT NULL DEFAULT 0,
    segment         INTEGER,
    env_offset      INTEGER,
    env_len         INTEGER,
    env_crc32       INTEGER,
    offered_ms      INTEGER,
    -- Bytes of the whole envelope when env_len is that of a recipe (see segments).
    env_size        INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_by_submission ON deliveries(submission_id);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(target, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_age ON deliveries(target, state, created_at_ms);
CREATE INDEX IF NOT EXISTS deliveries_by_segment ON deliveries(segment) WHERE segment IS NOT NULL;
CREATE INDEX IF NOT EXISTS submissions_replies ON submissions(in_reply_to) WHERE in_reply_to IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_holding ON deliveries(state, updated_ms) WHERE segment IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_boxed ON deliveries(target, message_id)
    WHERE state = 'in_flight' AND offered_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit (
    seq           INTEGER PRIMARY KEY,
    submission_id TEXT,
    record        TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_submission ON audit(submission_id);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq        INTEGER PRIMARY KEY,
    head       TEXT NOT NULL,
    ts         TEXT NOT NULL,
    jws        TEXT NOT NULL,
    first_seq  INTEGER,
    root       TEXT
);
-- RFC 3161 time-stamp tokens of checkpoints (a table of its own: a store
-- without it is read as one with no tokens yet).
CREATE TABLE IF NOT EXISTS audit_stamps (
    seq         INTEGER PRIMARY KEY,
    token       BLOB NOT NULL,
    stamped_at  INTEGER NOT NULL
);
",
    delivery_counts_table!(),
    "CREATE TRIGGER IF NOT EXISTS delivery_counts_insert AFTER INSERT ON deliveries BEGIN
    INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
        ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS delivery_counts_update AFTER UPDATE OF state ON deliveries
    WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
    INSERT INTO delivery_counts (target, state, n) VALUES (NEW.target, NEW.state, 1)
        ON CONFLICT (target, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS delivery_counts_delete AFTER DELETE ON deliveries BEGIN
    UPDATE delivery_counts SET n = n - 1 WHERE target = OLD.target AND state = OLD.state;
END;
CREATE TABLE IF NOT EXISTS idempotency (
    portal        TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    submission_id TEXT NOT NULL,
    PRIMARY KEY (portal, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
PRAGMA user_version = 10;
"
);

/// Schema version 1 kept `submissions` and `envelopes` as WITHOUT ROWID tables.
/// Their rows (a 202 body of ~1 KiB, an envelope of 12 KiB and more) overflow the
/// b-tree page, and SQLite then reads a row's whole payload for every key
/// comparison while searching such a tree: inserting and reading envelopes cost
/// far more than the bytes. Version 2 keeps them in rowid tables (key lookups go
/// through the small primary-key index). The copy runs in one transaction: a
/// crash during it leaves version 1 as it was.
const MIGRATE_1_TO_2: &str = "
CREATE TABLE submissions_v2 (
    id           TEXT PRIMARY KEY,
    portal       TEXT NOT NULL,
    leistung     TEXT NOT NULL,
    destination  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    response     TEXT NOT NULL
);
INSERT INTO submissions_v2 SELECT id, portal, leistung, destination, received_at, response FROM submissions;
DROP TABLE submissions;
ALTER TABLE submissions_v2 RENAME TO submissions;
CREATE TABLE envelopes_v2 (
    message_id  TEXT PRIMARY KEY REFERENCES deliveries(message_id),
    body        BLOB NOT NULL
);
INSERT INTO envelopes_v2 SELECT message_id, body FROM envelopes;
DROP TABLE envelopes;
ALTER TABLE envelopes_v2 RENAME TO envelopes;
PRAGMA user_version = 2;
";

/// Version 3 moves the envelope bodies out of the database into segment files
/// (see `segments`); each delivery row keeps where its envelope lies (NULL once
/// retention or an operator removed it).
const MIGRATE_2_TO_3: &str = "
ALTER TABLE deliveries ADD COLUMN segment INTEGER;
ALTER TABLE deliveries ADD COLUMN env_offset INTEGER;
ALTER TABLE deliveries ADD COLUMN env_len INTEGER;
ALTER TABLE deliveries ADD COLUMN env_crc32 INTEGER;
";
/// (The indexes over the new columns come from `SCHEMA`, which runs after.)
const MIGRATE_2_TO_3_END: &str = "
DROP TABLE envelopes;
PRAGMA user_version = 3;
";

/// Version 4 keeps, per checkpoint, the batch of records it covers and the
/// Merkle tree head over them (NULL for checkpoints signed before; stores of the
/// first version 1 had no checkpoint table yet, so it is created here); and the
/// number of deliveries per target and state, kept by triggers (from `SCHEMA`)
/// in the same transaction as every change, so that `/metrics` reads a few rows
/// instead of counting a table that grows with every delivery ever made.
const MIGRATE_3_TO_4: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq   INTEGER PRIMARY KEY,
    head  TEXT NOT NULL,
    ts    TEXT NOT NULL,
    jws   TEXT NOT NULL
);
ALTER TABLE audit_checkpoints ADD COLUMN first_seq INTEGER;
ALTER TABLE audit_checkpoints ADD COLUMN root TEXT;
",
    delivery_counts_table!(),
    "
INSERT INTO delivery_counts (target, state, n)
    SELECT target, state, COUNT(*) FROM deliveries GROUP BY target, state;
PRAGMA user_version = 4;
"
);

/// The schema version this gateway writes.
pub(super) const SCHEMA_VERSION: i64 = 10;

/// Version 5: the last error's class in a column of its own (what portals see of
/// an error), and idempotency keys stored as SHA-256, not in clear.
fn migrate_4_to_5(conn: &mut Connection) -> Result<(), StoreError> {
    tracing::info!(
        "migrating the store from schema version 4 to 5: error classes, hashed idempotency keys"
    );
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let has_class: i64 = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('deliveries') WHERE name = 'last_class'",
        [],
        |r| r.get(0),
    )?;
    if has_class == 0 {
        tx.execute_batch("ALTER TABLE deliveries ADD COLUMN last_class TEXT;")?;
    }
    let keys: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT portal, key FROM idempotency")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (portal, key) in &keys {
        tx.execute(
            "UPDATE idempotency SET key = ?3 WHERE portal = ?1 AND key = ?2",
            params![
                portal,
                key,
                crate::model::submission::idempotency_key_hash(key)
            ],
        )?;
    }
    tx.execute_batch("PRAGMA user_version = 5;")?;
    tx.commit()?;
    Ok(())
}

/// Version 6: the message box (`xta` targets): since when a delivery waits
/// for its reader.
fn migrate_5_to_6(conn: &mut Connection) -> Result<(), StoreError> {
    tracing::info!("migrating the store from schema version 5 to 6: message boxes");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let has_column: i64 = tx.query_row(
        "SELECT count(*) FROM pragma_table_info('deliveries') WHERE name = 'offered_ms'",
        [],
        |r| r.get(0),
    )?;
    if has_column == 0 {
        tx.execute_batch("ALTER TABLE deliveries ADD COLUMN offered_ms INTEGER;")?;
    }
    tx.execute_batch("PRAGMA user_version = 6;")?;
    tx.commit()?;
    Ok(())
}

/// Version 8: case statistics (see `cases`), counted from what the store
/// holds; the triggers that keep them from now on come with `SCHEMA`.
fn migrate_7_to_8(conn: &mut Connection) -> Result<(), StoreError> {
    tracing::info!("migrating the store from schema version 7 to 8: case statistics");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    tx.execute_batch(&super::cases::tables())?;
    super::cases::backfill(&tx)?;
    tx.execute_batch("PRAGMA user_version = 8;")?;
    tx.commit()?;
    Ok(())
}

/// Version 9: replies (a submission's `in_reply_to`, the target that sent it
/// and its type); the case statistics' triggers are made again to count them
/// as `replied`, not `accepted`, and to leave their deliveries out.
fn migrate_8_to_9(conn: &mut Connection) -> Result<(), StoreError> {
    tracing::info!("migrating the store from schema version 8 to 9: replies");
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    tx.execute_batch(
        "ALTER TABLE submissions ADD COLUMN in_reply_to TEXT;
         ALTER TABLE submissions ADD COLUMN reply_by TEXT;
         ALTER TABLE submissions ADD COLUMN reply_type TEXT;
         DROP TRIGGER IF EXISTS case_accepted;
         DROP TRIGGER IF EXISTS case_delivered;
         DROP TRIGGER IF EXISTS case_parked;
         DROP TRIGGER IF EXISTS case_discarded;
         PRAGMA user_version = 9;",
    )?;
    tx.commit()?;
    Ok(())
}

/// Version 10: envelopes of one submission share their parts' ciphertext in
/// the segment (a delivery's location may hold a recipe, see `segments`), and
/// a delivery keeps its envelope's whole size. An older gateway must not read
/// such a store: it would hand out recipes as envelopes.
fn migrate_9_to_10(conn: &mut Connection) -> Result<(), StoreError> {
    tracing::info!("migrating the store from schema version 9 to 10: shared ciphertext");
    conn.execute_batch(
        "BEGIN EXCLUSIVE;
         ALTER TABLE deliveries ADD COLUMN env_size INTEGER;
         PRAGMA user_version = 10;
         COMMIT;",
    )?;
    Ok(())
}

/// Brings a store of an earlier schema version to the current one.
pub(super) fn migrate(conn: &mut Connection, segments: &Segments) -> Result<(), StoreError> {
    let mut version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 1 {
        tracing::info!("migrating the store from schema version 1 to 2");
        // Tables are replaced while other tables refer to them: foreign keys are
        // checked once at the end instead of on every step.
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(MIGRATE_1_TO_2)?;
        let violations: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if violations > 0 {
            return Err(StoreError::Corrupt(format!(
                "{violations} foreign key violation(s) after migrating to schema version 2; nothing was changed"
            )));
        }
        tx.commit()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        version = 2;
    }
    if version == 2 {
        tracing::info!(
            "migrating the store from schema version 2 to 3: envelopes into segment files"
        );
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(MIGRATE_2_TO_3)?;
        let mut moved = 0u64;
        {
            let mut read = tx.prepare("SELECT message_id, body FROM envelopes")?;
            let mut insert = tx.prepare(
                "UPDATE deliveries SET segment = ?2, env_offset = ?3, env_len = ?4, env_crc32 = ?5 WHERE message_id = ?1",
            )?;
            let mut rows = read.query([])?;
            while let Some(row) = rows.next()? {
                let id: String = row.get(0)?;
                let body: Vec<u8> = row.get(1)?;
                let at = segments.append_one(&body)?;
                insert.execute(params![id, at.segment, at.offset, at.len, at.crc32])?;
                moved += 1;
            }
        }
        // The bytes are on disk before the database refers to them.
        segments.sync()?;
        tx.execute_batch(MIGRATE_2_TO_3_END)?;
        tx.commit()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        tracing::info!(envelopes = moved, "migration to schema version 3 done");
        version = 3;
    }
    if version == 3 {
        tracing::info!("migrating the store from schema version 3 to 4: Merkle tree heads");
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(MIGRATE_3_TO_4)?;
        tx.commit()?;
        version = 4;
    }
    if version == 4 {
        migrate_4_to_5(conn)?;
        version = 5;
    }
    if version == 5 {
        migrate_5_to_6(conn)?;
        version = 6;
    }
    if version == 6 {
        // Version 7 adds the `settings` table (operators' run-time settings),
        // which `SCHEMA` creates right after the migrations.
        tracing::info!("migrating the store from schema version 6 to 7: run-time settings");
        conn.execute_batch("PRAGMA user_version = 7;")?;
        version = 7;
    }
    if version == 7 {
        migrate_7_to_8(conn)?;
        version = 8;
    }
    if version == 8 {
        migrate_8_to_9(conn)?;
        version = 9;
    }
    if version == 9 {
        migrate_9_to_10(conn)?;
    } else if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the store has schema version {version}, newer than this gateway ({SCHEMA_VERSION}): run the newer version"
        )));
    }
    Ok(())
}
