//! The writer thread: owns the write connection and applies queued operations in
//! groups, one transaction and one fsync per group (group commit; see the
//! module documentation of `store::embedded`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::anchor;
use super::audit_log::Chain as _;
use super::group::apply_group;
use super::segments::{Location, Segments};
use crate::model::audit::{AuditEvent, Checkpoint, Head};
use crate::model::delivery::{Action, Actor, Claimed, Operated, Recorded};
use crate::model::submission::{Accepted, NewSubmission, SpoolFile};
use crate::store::{Purge, StoreError};

/// Largest group, in bytes of envelopes.
const GROUP_BYTES: usize = 64 << 20;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// One write, executed by the writer thread inside a group transaction.
pub(super) enum Op {
    Accept(Box<NewSubmission>, Reply<Accepted>),
    Claim {
        target: String,
        now_ms: i64,
        limit: usize,
        reply: Reply<Vec<Claimed>>,
    },
    Record {
        message_id: String,
        outcome: Recorded,
        now_ms: i64,
        reply: Reply<()>,
    },
    Release {
        message_ids: Vec<String>,
        reply: Reply<()>,
    },
    Audit(AuditEvent, Reply<()>),
    Checkpoint(Checkpoint, Reply<()>),
    /// A checkpoint's RFC 3161 time-stamp token.
    Stamp {
        seq: u64,
        token: Vec<u8>,
        stamped_at: i64,
        reply: Reply<()>,
    },
    Purge(Purge, Reply<u64>),
    /// Waits of `target` due after `latest_ms` become due at `latest_ms`.
    Rebase {
        target: String,
        latest_ms: i64,
        reply: Reply<u64>,
    },
    Operate {
        message_id: String,
        action: Action,
        by: Actor,
        reply: Reply<Operated>,
    },
    /// An operator's run-time setting, with its audit record.
    Setting {
        kind: String,
        id: String,
        value: Option<String>,
        event: AuditEvent,
        reply: Reply<()>,
    },
    /// The time zone case statistics count future events in.
    Zone(crate::model::cases::StatsZone, Reply<()>),
}

impl Op {
    /// Its reply, with `e`: the op was not applied.
    pub(super) fn refused(self, e: StoreError) -> Done {
        match self {
            Op::Purge(_, r) | Op::Rebase { reply: r, .. } => Done::Count(r, Err(e)),
            Op::Operate { reply, .. } => Done::Operated(reply, Err(e)),
            Op::Accept(_, r) => Done::Accept(r, Err(e)),
            Op::Claim { reply, .. } => Done::Claim(reply, Err(e)),
            Op::Record { reply, .. }
            | Op::Release { reply, .. }
            | Op::Audit(_, reply)
            | Op::Setting { reply, .. }
            | Op::Zone(_, reply)
            | Op::Checkpoint(_, reply)
            | Op::Stamp { reply, .. } => Done::Unit(reply, Err(e)),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Op::Accept(s, _) => s.bytes(),
            _ => 256,
        }
    }
}

/// The result of applying one op, sent after the group committed.
pub(super) enum Done {
    Operated(Reply<Operated>, Result<Operated, StoreError>),
    Count(Reply<u64>, Result<u64, StoreError>),
    Accept(Reply<Accepted>, Result<Accepted, StoreError>),
    Claim(Reply<Vec<Claimed>>, Result<Vec<Claimed>, StoreError>),
    Unit(Reply<()>, Result<(), StoreError>),
}

impl Done {
    fn stored(&self) -> bool {
        matches!(self, Done::Accept(_, Ok(Accepted::Stored)))
    }

    fn error(&self) -> Option<&StoreError> {
        match self {
            Done::Accept(_, r) => r.as_ref().err(),
            Done::Unit(_, r) => r.as_ref().err(),
            Done::Claim(_, r) => r.as_ref().err(),
            Done::Count(_, r) => r.as_ref().err(),
            Done::Operated(_, r) => r.as_ref().err(),
        }
    }

    /// The operation succeeded (and its changes are to be kept).
    pub(super) fn ok(&self) -> bool {
        self.error().is_none()
    }

    /// The disk refused this one (e.g. its envelopes could not be appended).
    fn io_failed(&self) -> bool {
        matches!(self.error(), Some(StoreError::Io(_)))
    }

    fn send(self) {
        match self {
            Done::Operated(r, v) => drop(r.send(v)),
            Done::Count(r, v) => drop(r.send(v)),
            Done::Accept(r, v) => drop(r.send(v)),
            Done::Claim(r, v) => drop(r.send(v)),
            Done::Unit(r, v) => drop(r.send(v)),
        }
    }

    /// The same reply, with `e` instead of the operation's result.
    pub(super) fn failed(self, e: StoreError) -> Done {
        match self {
            Done::Operated(r, _) => Done::Operated(r, Err(e)),
            Done::Count(r, _) => Done::Count(r, Err(e)),
            Done::Accept(r, _) => Done::Accept(r, Err(e)),
            Done::Claim(r, _) => Done::Claim(r, Err(e)),
            Done::Unit(r, _) => Done::Unit(r, Err(e)),
        }
    }

    fn fail(self, msg: &str) {
        self.failed(StoreError::CommitFailed(msg.to_owned())).send()
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) submission_commits: AtomicU64,
    pub(super) submissions: AtomicU64,
    pub(super) largest_group: AtomicU64,
    /// The last commit failed (see `StoreStats::write_failing`).
    pub(super) failing: AtomicBool,
}

/// How often a failing store checks whether the disk takes writes again.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes and fsyncs 64 KiB beside the database, then removes it.
fn probe_write(data_dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = data_dir.join(".write-probe");
    let _ = std::fs::remove_file(&path);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(&[0u8; 64 << 10])?;
            f.sync_all()
        });
    let _ = std::fs::remove_file(&path);
    result
}

/// Where the writer anchors what it committed (see `anchor`).
pub(super) struct Anchoring {
    pub(super) data_dir: PathBuf,
    pub(super) store_id: String,
}

impl Anchoring {
    /// Copies the WAL into the database file (`mode`: PASSIVE while running,
    /// TRUNCATE at shutdown) and anchors `head`. A failure costs the detection of
    /// a later rollback until the next anchor, never data: it is logged.
    fn anchor(&self, conn: &Connection, head: &Head, mode: &str) {
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!(error = %e, mode, "WAL checkpoint failed; retried at the next audit checkpoint");
        }
        if let Err(e) = anchor::write(&self.data_dir, &self.store_id, head) {
            tracing::error!(error = %e, dir = %self.data_dir.display(), "cannot write gateway.anchor; a rollback of the database would go unnoticed until it is written again — check the data directory");
        }
    }
}

pub(super) fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    max: usize,
    counters: &Counters,
    mut head: Head,
    segments: &Segments,
    anchoring: &Anchoring,
) {
    // Whether the connection commits without fsync right now (claims only).
    let mut lazy = false;
    let mut last_probe = std::time::Instant::now();
    while let Some(first) = rx.blocking_recv() {
        // While writes fail, check now and then whether the disk takes data again
        // (space freed): readiness must not wait for a submission that a load
        // balancer no longer sends.
        if counters.failing.load(Ordering::Relaxed) && last_probe.elapsed() >= PROBE_EVERY {
            last_probe = std::time::Instant::now();
            if probe_write(&anchoring.data_dir).is_ok() {
                counters.failing.store(false, Ordering::Relaxed);
                tracing::info!("the data directory takes writes again");
            }
        }
        let mut bytes = first.bytes();
        let mut batch = vec![first];
        while batch.len() < max && bytes < GROUP_BYTES {
            match rx.try_recv() {
                Ok(op) => {
                    bytes += op.bytes();
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        let size = batch.len();
        let purges = batch.iter().any(|op| matches!(op, Op::Purge(..)));
        let checkpoints = batch.iter().any(|op| matches!(op, Op::Checkpoint(..)));
        // A group of nothing but claims commits without fsync: a claim only marks
        // deliveries in flight, and after a crash every in-flight delivery is handed
        // back to pending anyway, so losing one loses nothing. The next durable
        // commit's fsync of the WAL makes the earlier frames durable too, so no
        // later state can survive without the claims before it.
        let claims_only = batch.iter().all(|op| matches!(op, Op::Claim { .. }));
        if claims_only != lazy {
            let mode = if claims_only { "NORMAL" } else { "FULL" };
            if let Err(e) = conn.pragma_update(None, "synchronous", mode) {
                tracing::error!(error = %e, mode, "cannot set the commit mode; the group is refused");
                let msg = format!("cannot set synchronous = {mode}: {e}");
                batch
                    .into_iter()
                    .for_each(|op| op.refused(StoreError::Corrupt(msg.clone())).send());
                continue;
            }
            lazy = claims_only;
        }
        match write_group(&mut conn, batch, &mut head, segments) {
            Ok(done) => {
                let stored = done.iter().filter(|d| d.stored()).count() as u64;
                if done.iter().any(Done::io_failed) {
                    counters.failing.store(true, Ordering::Relaxed);
                } else if stored > 0 {
                    counters.failing.store(false, Ordering::Relaxed);
                }
                if !claims_only {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                }
                if stored > 0 {
                    counters.submission_commits.fetch_add(1, Ordering::Relaxed);
                }
                counters.submissions.fetch_add(stored, Ordering::Relaxed);
                counters.largest_group.fetch_max(stored, Ordering::Relaxed);
                if purges {
                    // After the commit (nothing refers to them any more), before the
                    // answer (a purge that returned has freed the space).
                    collect_segments(&conn, segments);
                }
                if checkpoints {
                    // Once a minute at most: a stored checkpoint returns anchored.
                    anchoring.anchor(&conn, &head, "PASSIVE");
                }
                done.into_iter().for_each(Done::send);
            }
            Err((e, done)) => {
                counters.failing.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, group = size, "store commit failed; the group is refused");
                // The chain's head in memory ran ahead of what was committed.
                match Head::load(&conn) {
                    Ok(h) => head = h,
                    Err(e) => tracing::error!(error = %e, "cannot reload the audit head"),
                }
                let msg = e.to_string();
                done.into_iter().for_each(|d| d.fail(&msg));
            }
        }
    }
    // Shutdown: everything into the database file, so that `gateway.db` alone is a
    // complete copy, and the head anchored.
    anchoring.anchor(&conn, &head, "TRUNCATE");
}

/// Whether a portal's idempotency key is stored already.
fn idempotency_known(conn: &Connection, portal: &str, key: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM idempotency WHERE portal = ?1 AND key = ?2")?
        .query_row(rusqlite::params![portal, key], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Applies a group in one transaction: one fsync for all. On a failed commit the
/// replies are handed back so every caller learns of it.
fn write_group(
    conn: &mut Connection,
    batch: Vec<Op>,
    head: &mut Head,
    segments: &Segments,
) -> Result<Vec<Done>, (StoreError, Vec<Done>)> {
    // The group's envelopes go to their segment first; their fsync then runs on a
    // helper thread while the rows are written, and is waited for before COMMIT.
    // A submission whose idempotency key is known already (stored, or earlier in
    // this group) is answered from the stored answer: its envelopes are not
    // written at all, so a retrying portal cannot fill the disk.
    let mut keys_in_group = std::collections::HashSet::new();
    let placed: Vec<Option<Result<Vec<Location>, StoreError>>> = batch
        .iter()
        .map(|op| match op {
            Op::Accept(sub, _) => {
                if let Some(idem) = &sub.idempotency {
                    let first_in_group = keys_in_group.insert((&sub.portal, &idem.key));
                    match idempotency_known(conn, &sub.portal, &idem.key) {
                        Ok(false) if first_in_group => {}
                        Ok(_) => return Some(Ok(Vec::new())),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Some(
                    match &sub.spool {
                        // Its large parts are in a spool already: the rest goes there too.
                        Some(spool) => {
                            segments.append_spooled(spool.as_ref(), &sub.shared, &sub.deliveries)
                        }
                        None => segments.append_submission(&sub.shared, &sub.deliveries),
                    }
                    .map_err(StoreError::from),
                )
            }
            _ => None,
        })
        .collect();
    let appended = placed
        .iter()
        .any(|p| matches!(p, Some(Ok(l)) if !l.is_empty()));
    let spools: Vec<std::sync::Arc<dyn SpoolFile>> = batch
        .iter()
        .zip(&placed)
        .filter_map(|(op, p)| match (op, p) {
            (Op::Accept(sub, _), Some(Ok(l))) if !l.is_empty() => sub.spool.clone(),
            _ => None,
        })
        .collect();
    std::thread::scope(|scope| {
        let sync = appended.then(|| {
            scope.spawn(|| {
                segments.sync()?;
                spools.iter().try_for_each(|s| s.sync())
            })
        });
        let synced = move || match sync {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("segment fsync thread panicked"))),
            None => Ok(()),
        };
        apply_group(conn, batch, placed, head, synced)
    })
}

/// Deletes the segment files the committed database no longer refers to. A
/// failure is logged and retried at the next purge: it costs disk space, never data.
pub(super) fn collect_segments(conn: &Connection, segments: &Segments) {
    let live = conn
        .prepare_cached("SELECT DISTINCT segment FROM deliveries WHERE segment IS NOT NULL")
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<std::collections::BTreeSet<i64>, _>>()
        });
    match live
        .map_err(StoreError::from)
        .and_then(|live| Ok(segments.collect(&live)?))
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            segments = n,
            "envelope segment files deleted (nothing refers to them any more)"
        ),
        Err(e) => {
            tracing::warn!(error = %e, dir = %segments.dir().display(), "cannot delete unreferenced envelope segments; retried at the next purge")
        }
    }
}
