//! Test support for code above the store that runs under tokio's paused clock
//! (`tokio::time::pause`): [`Timeless`], a store whose calls take no virtual
//! time, and [`submission`], a small submission to store.
//!
//! Why: a paused runtime with nothing to do jumps to its next timer. The
//! embedded store commits on a writer thread of its own, so while a task waits
//! for a commit the runtime looks idle and the clock would jump past whatever
//! the test meant to observe. `spawn_blocking` holds the clock still (tokio
//! documents this for paused tests), so [`Timeless`] keeps a blocking task
//! waiting for as long as a store call runs. The store itself is the real one.

use std::future::Future;

use super::{AuditJob, Purge, Store, StoreFuture, StoreStats};
use crate::model::audit::{AuditEvent, AuditRecord, Checkpoint, Head};
use crate::model::delivery::{
    Action, Actor, Boxed, Claimed, DeliveryInfo, DeliveryQuery, DeliveryRow, Operated, QueueDepth,
    Recorded, TargetHealth,
};
use crate::model::submission::{Accepted, NewDelivery, NewSubmission, ReplyInfo, SubmissionStatus};

/// A store whose calls hold tokio's paused clock still until they answered; the
/// second field injects faults.
pub struct Timeless<S>(pub S, pub Faults);

/// Faults to inject into the real store's answers.
#[derive(Debug, Default)]
pub struct Faults {
    /// This many calls of `record` fail (as a failed commit would) before it works.
    pub failing_records: std::sync::atomic::AtomicU32,
}

impl Faults {
    fn take_record_failure(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.failing_records
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Runs `work` while a blocking task keeps tokio from advancing paused time.
async fn held<T>(work: impl Future<Output = T>) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let holder = tokio::task::spawn_blocking(move || {
        let _ = wait.recv();
    });
    let out = work.await;
    drop(done);
    let _ = holder.await;
    out
}

impl<S: Store> Store for Timeless<S> {
    fn accept(&self, submission: NewSubmission) -> StoreFuture<'_, Accepted> {
        Box::pin(held(self.0.accept(submission)))
    }
    fn submission(&self, id: &str) -> StoreFuture<'_, Option<SubmissionStatus>> {
        Box::pin(held(self.0.submission(id)))
    }
    fn replies_to(&self, submission_id: &str) -> StoreFuture<'_, Vec<ReplyInfo>> {
        Box::pin(held(self.0.replies_to(submission_id)))
    }
    fn envelope(&self, message_id: &str) -> StoreFuture<'_, Option<Vec<u8>>> {
        Box::pin(held(self.0.envelope(message_id)))
    }
    fn claim(&self, target: &str, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<Claimed>> {
        Box::pin(held(self.0.claim(target, now_ms, limit)))
    }
    fn record(&self, message_id: &str, outcome: Recorded, now_ms: i64) -> StoreFuture<'_, ()> {
        if self.1.take_record_failure() {
            return Box::pin(async {
                Err(super::StoreError::CommitFailed(
                    "injected: the disk refused the write".into(),
                ))
            });
        }
        Box::pin(held(self.0.record(message_id, outcome, now_ms)))
    }
    fn release(&self, message_ids: Vec<String>) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.release(message_ids)))
    }
    fn next_due(&self, target: &str) -> StoreFuture<'_, Option<i64>> {
        Box::pin(held(self.0.next_due(target)))
    }
    fn queue_depths(&self) -> StoreFuture<'_, Vec<QueueDepth>> {
        Box::pin(held(self.0.queue_depths()))
    }
    fn audit(&self, event: AuditEvent) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.audit(event)))
    }
    fn trace(&self, submission_id: &str) -> StoreFuture<'_, Vec<AuditRecord>> {
        Box::pin(held(self.0.trace(submission_id)))
    }
    fn read_audit(&self, job: AuditJob) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.read_audit(job)))
    }
    fn audit_head(&self) -> StoreFuture<'_, Head> {
        Box::pin(held(self.0.audit_head()))
    }
    fn add_checkpoint(&self, checkpoint: Checkpoint) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.add_checkpoint(checkpoint)))
    }
    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>> {
        Box::pin(held(self.0.latest_checkpoint()))
    }
    fn unstamped(&self, after: u64, limit: usize) -> StoreFuture<'_, (Vec<Checkpoint>, u64)> {
        Box::pin(held(self.0.unstamped(after, limit)))
    }
    fn add_stamp(&self, seq: u64, token: Vec<u8>, stamped_at: i64) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.add_stamp(seq, token, stamped_at)))
    }
    fn audit_texts(&self, from: u64, to: u64) -> StoreFuture<'_, Vec<String>> {
        Box::pin(held(self.0.audit_texts(from, to)))
    }
    fn operate(&self, message_id: &str, action: Action, by: &Actor) -> StoreFuture<'_, Operated> {
        Box::pin(held(self.0.operate(message_id, action, by)))
    }
    fn deliveries(&self, query: DeliveryQuery) -> StoreFuture<'_, Vec<DeliveryRow>> {
        Box::pin(held(self.0.deliveries(query)))
    }
    fn oldest_waiting(&self, targets: Vec<String>) -> StoreFuture<'_, Vec<(String, i64)>> {
        Box::pin(held(self.0.oldest_waiting(targets)))
    }
    fn target_health(&self) -> StoreFuture<'_, Vec<TargetHealth>> {
        Box::pin(held(self.0.target_health()))
    }
    fn settings(&self, kind: &str) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(held(self.0.settings(kind)))
    }
    fn case_counts(
        &self,
        query: crate::model::cases::CaseQuery,
    ) -> StoreFuture<'_, crate::model::cases::CaseCounts> {
        Box::pin(held(self.0.case_counts(query)))
    }
    fn set_case_zone(&self, zone: crate::model::cases::StatsZone) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.set_case_zone(zone)))
    }
    fn set_setting(
        &self,
        kind: &str,
        id: &str,
        value: Option<String>,
        event: AuditEvent,
    ) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.set_setting(kind, id, value, event)))
    }
    fn purge(&self, purge: Purge) -> StoreFuture<'_, u64> {
        Box::pin(held(self.0.purge(purge)))
    }
    fn rebase(&self, target: &str, latest_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(held(self.0.rebase(target, latest_ms)))
    }
    fn mailbox(&self, query: crate::model::delivery::BoxQuery) -> StoreFuture<'_, Vec<Boxed>> {
        Box::pin(held(self.0.mailbox(query)))
    }
    fn delivery(&self, message_id: &str) -> StoreFuture<'_, Option<DeliveryInfo>> {
        Box::pin(held(self.0.delivery(message_id)))
    }
    fn submission_by_key(&self, portal: &str, key_hash: &str) -> StoreFuture<'_, Option<String>> {
        Box::pin(held(self.0.submission_by_key(portal, key_hash)))
    }
    fn overdue(&self, before_ms: i64) -> StoreFuture<'_, Vec<crate::store::Overdue>> {
        Box::pin(held(self.0.overdue(before_ms)))
    }
    fn stats(&self) -> StoreStats {
        self.0.stats()
    }
    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(held(self.0.close()))
    }
}

/// Submission `id` with one delivery to `target`, message id `<id>-<target>`,
/// and a small (not really sealed) envelope.
pub fn submission(id: &str, target: &str) -> NewSubmission {
    let envelope = format!("{{\"sealed-for\":\"{target}\"}}").into_bytes();
    NewSubmission {
        id: id.into(),
        portal: "portal".into(),
        leistung: "leistung".into(),
        destination: "destination".into(),
        received_at: "2026-11-24T00:00:00Z".into(),
        response: format!("{{\"submission_id\":\"{id}\"}}"),
        idempotency: None,
        deliveries: vec![NewDelivery::whole(
            format!("{id}-{target}"),
            target.into(),
            envelope,
        )],
        shared: Vec::new(),
        parts: vec![],
        privacy_key_id: String::new(),
        receipt_sha256: String::new(),
        reply: None,
        spool: None,
    }
}

/// Submission `id` for `targets` (message ids `<id>-<target>`) whose envelopes
/// `{"for":"<target>","c":"SHARED-CIPHERTEXT"}` share their last value as one
/// piece, as envelopes of format 2 share a part's ciphertext.
pub fn shared_submission(id: &str, targets: &[&str]) -> NewSubmission {
    use crate::model::submission::{SharedPiece, Splice};
    let mut s = submission(id, targets.first().copied().unwrap_or("t"));
    let piece = b"\"SHARED-CIPHERTEXT\"".to_vec();
    s.shared = vec![SharedPiece::held(piece)];
    s.deliveries = targets
        .iter()
        .map(|t| {
            let own = format!("{{\"for\":\"{t}\",\"c\":}}");
            NewDelivery {
                splices: vec![Splice {
                    at: own.len() - 1,
                    shared: 0,
                }],
                ..NewDelivery::whole(format!("{id}-{t}"), (*t).into(), own.into_bytes())
            }
        })
        .collect();
    s
}
