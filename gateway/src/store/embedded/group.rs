//! One group of writes in one transaction: each operation inside a savepoint of
//! its own, so that one that fails takes only its own changes back.

use rusqlite::{Connection, TransactionBehavior};

use super::audit_log::{add_checkpoint, Chain as _};
use super::deliveries::{claim, operate, purge, rebase, record, release};
use super::operator::set_setting;
use super::segments::Location;
use super::submissions::insert_one;
use super::writer::{Done, Op};
use crate::model::audit::Head;
use crate::model::submission::Accepted;
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::StoreError;

/// A savepoint around one operation of a group, so that a failing one takes
/// only its own changes back. Its statements are prepared once and kept
/// (rusqlite's `Savepoint` parses its SQL text at every use, which cost about
/// a tenth of the writer's time: BENCHMARKS.md, sixteenth session).
struct OpSavepoint<'c> {
    conn: &'c Connection,
}

impl<'c> OpSavepoint<'c> {
    fn begin(conn: &'c Connection) -> rusqlite::Result<Self> {
        run(conn, "SAVEPOINT op")?;
        Ok(Self { conn })
    }

    /// Keeps the operation's changes in the group's transaction.
    fn release(&self) -> rusqlite::Result<()> {
        run(self.conn, "RELEASE op")
    }

    /// Takes the operation's changes back.
    fn undo(self) -> rusqlite::Result<()> {
        run(self.conn, "ROLLBACK TO op")?;
        run(self.conn, "RELEASE op")
    }
}

impl std::ops::Deref for OpSavepoint<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// Runs a statement that returns no rows, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// The rows of a group, in one transaction; `synced` waits for the group's
/// envelopes to be durable and is called before COMMIT.
pub(super) fn apply_group(
    conn: &mut Connection,
    batch: Vec<Op>,
    placed: Vec<Option<Result<Vec<Location>, StoreError>>>,
    head: &mut Head,
    synced: impl FnOnce() -> std::io::Result<()>,
) -> Result<Vec<Done>, (StoreError, Vec<Done>)> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let done = batch
                .into_iter()
                .map(|op| op.refused(StoreError::Corrupt(e.to_string())))
                .collect();
            return Err((e.into(), done));
        }
    };
    let mut done = Vec::with_capacity(batch.len());
    let mut ops = batch.into_iter().zip(placed);
    while let Some((op, placed)) = ops.next() {
        let before = head.clone();
        let sp = match OpSavepoint::begin(&tx) {
            Ok(sp) => sp,
            Err(e) => {
                done.push(op.refused(StoreError::Corrupt(e.to_string())));
                continue;
            }
        };
        let result = match op {
            Op::Accept(sub, reply) => {
                let r = match placed {
                    Some(Ok(at)) => insert_one(&sp, &sub, head, &at),
                    Some(Err(e)) => Err(e),
                    None => Err(StoreError::Corrupt("envelope not placed".into())),
                };
                if let (Ok(Accepted::Stored), Some(spool)) = (&r, &sub.spool) {
                    // Rows refer to it now. Should the group's commit still fail,
                    // the file is collected at the next purge like any segment
                    // nothing refers to.
                    spool.keep();
                }
                Done::Accept(reply, r)
            }
            Op::Claim {
                target,
                now_ms,
                limit,
                reply,
            } => Done::Claim(reply, claim(&sp, &target, now_ms, limit)),
            Op::Record {
                message_id,
                outcome,
                now_ms,
                reply,
            } => Done::Unit(reply, record(&sp, &message_id, &outcome, now_ms, head)),
            Op::Release { message_ids, reply } => {
                Done::Unit(reply, release(&sp, &message_ids, head))
            }
            Op::Audit(event, reply) => {
                Done::Unit(reply, head.append(&sp, &rfc3339_ms(now_ms()), event))
            }
            Op::Zone(zone, reply) => Done::Unit(reply, super::cases::set_zone(&sp, zone)),
            Op::Checkpoint(c, reply) => Done::Unit(reply, add_checkpoint(&sp, &c)),
            Op::Stamp {
                seq,
                token,
                stamped_at,
                reply,
            } => Done::Unit(
                reply,
                super::audit_log::add_stamp(&sp, seq, &token, stamped_at),
            ),
            Op::Setting {
                kind,
                id,
                value,
                event,
                reply,
            } => Done::Unit(
                reply,
                set_setting(&sp, &kind, &id, value.as_deref(), event, head),
            ),
            Op::Operate {
                message_id,
                action,
                by,
                reply,
            } => Done::Operated(reply, operate(&sp, &message_id, action, &by, head)),
            Op::Purge(p, reply) => Done::Count(reply, purge(&sp, &p, head)),
            Op::Rebase {
                target,
                latest_ms,
                reply,
            } => Done::Count(reply, rebase(&sp, &target, latest_ms)),
        };
        let ok = result.ok();
        // Kept, or taken back. What cannot be taken back fails the whole group:
        // its changes might otherwise be committed with the rest.
        let kept = if ok { sp.release().err() } else { None };
        if !ok || kept.is_some() {
            *head = before;
            if let Err(e) = sp.undo() {
                done.push(result);
                let msg = e.to_string();
                done.extend(ops.map(|(op, _)| op.refused(StoreError::CommitFailed(msg.clone()))));
                return Err((e.into(), done));
            }
        }
        done.push(match kept {
            Some(e) => result.failed(e.into()),
            None => result,
        });
    }
    // Envelopes appended by this group are on disk before the commit refers to them.
    if let Err(e) = synced() {
        drop(tx);
        return Err((e.into(), done));
    }
    match tx.commit() {
        Ok(()) => Ok(done),
        Err(e) => Err((e.into(), done)),
    }
}
