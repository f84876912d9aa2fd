//! The engine in cluster mode: a target's work comes from its broker queue
//! (see `crate::store::queue`), not from polling the store.
//!
//! Per message: take its delivery in the store (by message id and ticket),
//! attempt it as in the embedded mode, record the outcome — a retry's next
//! message is wanted in the same transaction — and only then acknowledge the
//! message. A message whose delivery is not due yet goes back to a wait
//! queue; a stale one (a duplicate) is acknowledged and dropped. Messages the
//! broker dead-lettered to the target's parked queue (their consumers kept
//! dying mid-attempt) park their deliveries.
//!
//! The queue has a single active consumer across the cluster, with prefetch
//! = the target's concurrency: the instance holding it is the only one
//! attempting the target, so the concurrency limit and the circuit breaker
//! hold for the cluster as they do for one machine.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ozg_adapter_sdk::Failure;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{
    apply_health, attempt, finish, rebase_waits, Admit, Breaker, Engine, Health, TargetRuntime,
};
use crate::model::delivery::Recorded;
use crate::store::queue::{Job, Kind, WorkQueue};
use crate::store::{StoreError, Take, Wanted};

/// Wait after the store failed before taking the message again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);

/// Messages of attempts running on this instance, with further copies of
/// them the broker handed out meanwhile (after a reconnect): those are
/// settled when the attempt ends, never attempted twice here.
type Here = Arc<Mutex<HashMap<String, Vec<Job>>>>;

pub(super) async fn run_target(
    mut runtime: watch::Receiver<Arc<TargetRuntime>>,
    engine: Arc<Engine>,
    queue: Arc<dyn WorkQueue>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (board, metrics) = (&engine.breakers, &engine.metrics);
    let mut t = runtime.borrow_and_update().clone();
    let id = t.id.clone();
    rebase_waits(&t, engine.store.as_ref(), engine.clock).await;
    let mut slots = Arc::new(Semaphore::new(t.concurrency.max(1)));
    let mut breaker = Breaker::new(t.breaker);
    board.publish(
        &id,
        breaker.view(Instant::now(), std::time::SystemTime::now()),
    );
    let prefetch = |t: &TargetRuntime| u16::try_from(t.concurrency.max(1)).unwrap_or(u16::MAX);
    let mut jobs = queue.clone().jobs(&id, Kind::Deliver, prefetch(&t));
    let mut parked = queue.clone().jobs(&id, Kind::Parked, 4);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Health>();
    let here: Here = Arc::default();
    let mut attempts = JoinSet::new();
    let apply = |h: Health, breaker: &mut Breaker| apply_health(&id, h, breaker, board, metrics);
    loop {
        if runtime.has_changed().unwrap_or(false) {
            let before = t.concurrency.max(1);
            t = runtime.borrow_and_update().clone();
            breaker.reconfigure(t.breaker);
            if t.concurrency.max(1) != before {
                slots = Arc::new(Semaphore::new(t.concurrency.max(1)));
                // The prefetch is the consumer's: subscribe again with the new one.
                jobs = queue.clone().jobs(&id, Kind::Deliver, prefetch(&t));
            }
            tracing::info!(target_id = %id, "target settings reloaded");
        }
        while let Ok(h) = done_rx.try_recv() {
            apply(h, &mut breaker);
        }
        while attempts.try_join_next().is_some() {}
        if *shutdown.borrow() {
            break;
        }
        // Paused: the messages stay in the queue (or unacknowledged with this
        // consumer) until the target is resumed.
        if engine.pauses.is_paused(&id) {
            tokio::select! {
                _ = engine.pauses.changed() => {}
                _ = tokio::time::sleep(super::PAUSE_POLL) => {}
                Some(h) = done_rx.recv() => apply(h, &mut breaker),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        if slots.available_permits() == 0 {
            tokio::select! {
                Some(h) = done_rx.recv() => apply(h, &mut breaker),
                Ok(free) = slots.clone().acquire_owned() => drop(free),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let probe = match breaker.admit(Instant::now()) {
            Admit::All => false,
            Admit::Probe => {
                board.publish(
                    &id,
                    breaker.view(Instant::now(), std::time::SystemTime::now()),
                );
                true
            }
            Admit::WaitUntil(until) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            Admit::WaitForProbe => {
                tokio::select! {
                    Some(h) = done_rx.recv() => apply(h, &mut breaker),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        let unused = |breaker: &mut Breaker| {
            if probe {
                breaker.probe_unused();
            }
        };
        tokio::select! {
            job = jobs.recv() => {
                let Some(job) = job else { unused(&mut breaker); continue };
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let work = Work {
                    t: t.clone(),
                    engine: engine.clone(),
                    queue: queue.clone(),
                    here: here.clone(),
                    done: done_tx.clone(),
                };
                attempts.spawn(work.run(job, permit));
            }
            job = parked.recv() => {
                unused(&mut breaker);
                if let Some(job) = job {
                    let work = Work {
                        t: t.clone(),
                        engine: engine.clone(),
                        queue: queue.clone(),
                        here: here.clone(),
                        done: done_tx.clone(),
                    };
                    attempts.spawn(work.park(job));
                }
            }
            Some(h) = done_rx.recv() => {
                unused(&mut breaker);
                apply(h, &mut breaker);
            }
            _ = shutdown.changed() => unused(&mut breaker),
        }
    }
    // Graceful stop: running attempts finish within the grace period; the
    // rest stay unacknowledged and go back to the queue when the consumer
    // closes (another instance, or this one after its restart, takes them
    // over as redelivered messages).
    let finished = tokio::time::timeout(engine.shutdown_grace, async {
        while attempts.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(target_id = %id, "attempts did not finish in time; their queue messages go back to the queue");
        attempts.abort_all();
        while attempts.join_next().await.is_some() {}
    }
    drop(jobs);
    drop(parked);
}

/// What handling one message needs.
struct Work {
    t: Arc<TargetRuntime>,
    engine: Arc<Engine>,
    queue: Arc<dyn WorkQueue>,
    here: Here,
    done: mpsc::UnboundedSender<Health>,
}

impl Work {
    /// Takes the message's delivery, retrying while the store cannot answer.
    async fn take(&self, job: &Job, redelivered: bool) -> Option<Take> {
        let store = &self.engine.store;
        let mut failures = 0u32;
        loop {
            match store
                .take(
                    &job.message_id,
                    job.ticket,
                    redelivered,
                    self.engine.clock.now_ms(),
                )
                .await
            {
                Ok(t) => return Some(t),
                Err(StoreError::Unavailable(e)) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        tracing::error!(message_id = %job.message_id, error = %e, "cannot take the delivery: the database is unreachable; the message waits");
                    }
                    tokio::time::sleep(STORE_BACKOFF).await;
                }
                Err(e) => {
                    // Not a passing outage: back to the queue (after the
                    // broker's delivery limit it is parked).
                    tracing::error!(message_id = %job.message_id, error = %e, "cannot take the delivery; the message goes back to the queue");
                    tokio::time::sleep(STORE_BACKOFF).await;
                    let _ = job.requeue().await;
                    return None;
                }
            }
        }
    }

    /// A message from the target's queue.
    async fn run(self, job: Job, permit: OwnedSemaphorePermit) {
        {
            let mut here = self.here.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(copies) = here.get_mut(&job.message_id) {
                copies.push(job);
                let _ = self.done.send(Health::Unused);
                return;
            }
        }
        let Some(taken) = self.take(&job, job.redelivered).await else {
            let _ = self.done.send(Health::Unused);
            return;
        };
        match taken {
            Take::Claimed(c) => {
                self.here
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(job.message_id.clone(), Vec::new());
                let e = &self.engine;
                let (health, recorded) = attempt(
                    &self.t,
                    e.store.as_ref(),
                    &e.metrics,
                    e.clock,
                    &e.envelope_memory,
                    c,
                    permit,
                )
                .await;
                let copies = self
                    .here
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&job.message_id)
                    .unwrap_or_default();
                if recorded {
                    // A retry wanted its next message: the relay publishes it.
                    e.wakers.any().notify_one();
                    for j in std::iter::once(&job).chain(copies.iter()) {
                        // A copy of a closed channel cannot be acknowledged; the
                        // broker gives it again and it is dropped as stale.
                        let _ = j.ack().await;
                    }
                }
                let _ = self.done.send(health);
            }
            Take::NotDue { at_ms } => {
                drop(permit);
                self.wait_again(&job, at_ms).await;
                let _ = self.done.send(Health::Unused);
            }
            Take::Stale => {
                drop(permit);
                let _ = job.ack().await;
                let _ = self.done.send(Health::Unused);
            }
        }
    }

    /// Back to the wait queue for the time left; acknowledged once the broker
    /// confirmed the new message.
    async fn wait_again(&self, job: &Job, at_ms: i64) {
        let wanted = Wanted {
            message_id: job.message_id.clone(),
            target: self.t.id.clone(),
            ticket: job.ticket,
            due_ms: at_ms,
        };
        match self
            .queue
            .publish(vec![wanted], self.engine.clock.now_ms())
            .await
        {
            Ok(confirmed) if !confirmed.is_empty() => {
                let _ = job.ack().await;
            }
            _ => {
                tokio::time::sleep(STORE_BACKOFF).await;
                let _ = job.requeue().await;
            }
        }
    }

    /// A message the broker dead-lettered to the parked queue.
    async fn park(self, job: Job) {
        let Some(taken) = self.take(&job, true).await else {
            return;
        };
        match taken {
            Take::Claimed(c) => {
                tracing::error!(message_id = %c.message_id, target_id = %self.t.id, "the broker gave up on this delivery's message (its consumers kept stopping mid-attempt): parked");
                let rec = Recorded::Parked {
                    failure: Failure::new(
                        "redelivery-limit",
                        "attempts kept ending without an outcome (the instance stopped mid-attempt each time)",
                    ),
                    gave_up_after: Some(c.attempts),
                };
                let e = &self.engine;
                if finish(&self.t, e.store.as_ref(), &e.metrics, e.clock, &c, rec).await {
                    let _ = job.ack().await;
                }
            }
            Take::NotDue { at_ms } => self.wait_again(&job, at_ms).await,
            Take::Stale => {
                let _ = job.ack().await;
            }
        }
    }
}
