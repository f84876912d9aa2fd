//! The delivery engine: takes due deliveries from the store, hands each to its
//! target's adapter, and records the outcome.
//!
//! One task per target, so a slow or dead target never holds up another. Per
//! target: at most `concurrency` attempts at once; a [`breaker::Breaker`] pauses a
//! target that keeps failing and probes it with single attempts; a
//! [`retry::RetryPolicy`] decides when to try again and when to park.
//!
//! Invariants: a delivery is `in_flight` in the store while an attempt runs, and
//! its outcome is recorded durably before it counts. A crash mid-attempt leaves it
//! `in_flight`; the store hands it back as `pending` at the next start and the
//! engine delivers it again with the same `message_id` (at least once, never
//! lost). The backlog stays in the store: the engine holds at most `concurrency`
//! envelopes per target in memory.

pub mod breaker;
pub mod pauses;
mod queued;
mod running;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ozg_adapter_sdk::{Adapter, Delivery, Failure, Outcome};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::core::clock::Clock;
use crate::core::metrics::Metrics;
use crate::model::delivery::{Claimed, Recorded};
use crate::model::policy::RetryPolicy;
use crate::store::{Store, StoreError};
use breaker::{Admit, Breaker, BreakerConfig};
pub use breaker::{BreakerBoard, BreakerView};
pub use running::{Reconciled, Running};

/// Longest idle wait before the engine looks at the store again on its own.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// First wait before recording an outcome again after the store refused it.
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two tries to record an outcome.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(30);
/// Wait after a store error before trying again.
const STORE_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait of a paused target's task before it looks again.
const PAUSE_POLL: Duration = Duration::from_secs(1);

/// Everything the engine needs about one target.
pub struct TargetRuntime {
    pub id: String,
    pub adapter: Arc<dyn Adapter>,
    pub policy: RetryPolicy,
    pub breaker: BreakerConfig,
    pub concurrency: usize,
    /// Longest single attempt (the adapter's own timeouts should be shorter).
    pub attempt_timeout: Duration,
    /// What the target receives (an xdomea target's receipt is checked).
    pub payload: crate::model::routing::Payload,
}

/// Wakes a target's task when new work for it was stored (and, in cluster
/// mode, the outbox relay: [`Wakers::any`]).
#[derive(Default)]
pub struct Wakers(std::sync::RwLock<HashMap<String, Arc<Notify>>>, Arc<Notify>);

impl Wakers {
    pub fn wake(&self, target: &str) {
        self.1.notify_one();
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get(target) {
            n.notify_one();
        }
    }

    /// Notified on every wake, whatever the target.
    pub fn any(&self) -> Arc<Notify> {
        self.1.clone()
    }

    /// The target's waker, made on first use.
    fn of(&self, target: &str) -> Arc<Notify> {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.entry(target.to_owned()).or_default().clone()
    }
}

fn unit_random() -> f64 {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// What an attempt means for the target's breaker.
#[derive(Debug, Clone, Copy)]
enum Health {
    Up,
    Down,
    /// A probe the breaker admitted found nothing to attempt.
    Unused,
}

/// The engine: one task per target.
pub struct Engine {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// How long in-flight attempts may finish after shutdown began.
    pub shutdown_grace: Duration,
    /// Wall time for the store's records (when a retry is due, when it was delivered).
    pub clock: Clock,
    /// Where each target's breaker state is published for operators.
    pub breakers: Arc<BreakerBoard>,
    /// Wakes a target's task when new work for it was stored.
    pub wakers: Arc<Wakers>,
    /// Cluster mode: work comes from the broker's queues, not from polling the store.
    pub queue: Option<Arc<dyn crate::store::queue::WorkQueue>>,
    /// Targets an operator paused: none of their deliveries is attempted.
    pub pauses: Arc<pauses::Pauses>,
    /// What envelopes being delivered may hold in memory, all targets together.
    pub envelope_memory: Arc<EnvelopeMemory>,
}

/// A bound on the memory of envelopes being delivered, all targets together:
/// an attempt holds its envelope's size of it from before the envelope is read
/// until the target answered. An envelope larger than the whole bound waits
/// until it can hold all of it, then goes out alone; small ones pass as before.
pub struct EnvelopeMemory {
    kib: Arc<Semaphore>,
    total_kib: u32,
}

impl EnvelopeMemory {
    pub fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from((bytes >> 10).max(1)).unwrap_or(u32::MAX >> 3);
        EnvelopeMemory {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Waits until an envelope of `size` bytes (0: unknown, counted as 1 KiB) fits.
    async fn hold(&self, size: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let kib = u32::try_from(size.div_ceil(1024).max(1))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        self.kib.clone().acquire_many_owned(kib).await.ok()
    }
}

impl Engine {
    /// Starts one task per target; see [`Running`] for changing the set later.
    pub fn start(
        self,
        targets: Vec<Arc<TargetRuntime>>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Running> {
        let running = Arc::new(Running::new(Arc::new(self), shutdown));
        running.reconcile(targets);
        running
    }
}

/// A DMS's xdomea receipt (0202) must name the process of the package it got;
/// one that names another is kept (it is what the target said) and reported.
fn check_confirmation(t: &TargetRuntime, c: &Claimed, receipt: Option<&str>) {
    if t.payload != crate::model::routing::Payload::Xdomea {
        return;
    }
    let Some(confirmed) = receipt.and_then(|r| ozg_adapter_sdk::xdomea::confirmation(r.as_bytes()))
    else {
        return;
    };
    let expected = crate::core::xdomea::process_id(&c.submission_id, &t.id);
    if confirmed.process_id != expected {
        tracing::warn!(
            target_id = %t.id,
            message_id = %c.message_id,
            expected = %expected,
            confirmed = %confirmed.process_id,
            "the target's xdomea receipt (0202) confirms another ProzessID than the package it was given"
        );
    }
}

/// Whatever the clock did while the daemon was down (set back, say), no delivery
/// of `t` waits longer than its retry policy's cap from now on.
async fn rebase_waits(t: &TargetRuntime, store: &dyn Store, clock: Clock) {
    let latest = clock.now_ms() + t.policy.cap.as_millis() as i64;
    match store.rebase(&t.id, latest).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::warn!(target_id = %t.id, deliveries = n, cap = ?t.policy.cap, "waiting deliveries were due later than the retry cap allows from now (clock set back, or a long Retry-After): due within the cap")
        }
        Err(e) => {
            tracing::error!(target_id = %t.id, error = %e, "cannot re-base waiting deliveries; they keep their times")
        }
    }
}

/// Feeds an attempt's health to the target's breaker, publishes its state
/// for operators, and says when it opens or closes.
fn apply_health(
    id: &str,
    h: Health,
    breaker: &mut Breaker,
    board: &BreakerBoard,
    metrics: &Metrics,
) {
    let was_open = breaker.is_open();
    match h {
        Health::Up => breaker.success(),
        Health::Down => breaker.failure(Instant::now()),
        Health::Unused => breaker.probe_unused(),
    }
    board.publish(
        id,
        breaker.view(Instant::now(), std::time::SystemTime::now()),
    );
    if breaker.is_open() != was_open {
        metrics
            .breaker_open
            .get_or_create(&crate::core::metrics::TargetLabel {
                target: id.to_owned(),
            })
            .set(i64::from(breaker.is_open()));
        if breaker.is_open() {
            tracing::warn!(target_id = %id, "target keeps failing: paused (circuit breaker open), probing later");
        } else {
            tracing::info!(target_id = %id, "target answers again: circuit breaker closed");
        }
    }
}

/// One target's task. `runtime` brings new settings (a reload): they apply from
/// the next round on; the breaker keeps its state.
async fn run_target(
    mut runtime: watch::Receiver<Arc<TargetRuntime>>,
    engine: Arc<Engine>,
    notify: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Some(queue) = engine.queue.clone() {
        return queued::run_target(runtime, engine, queue, shutdown).await;
    }
    let (store, metrics, board) = (&engine.store, &engine.metrics, &engine.breakers);
    let (grace, clock) = (engine.shutdown_grace, engine.clock);
    let mut t = runtime.borrow_and_update().clone();
    let id = t.id.clone();
    rebase_waits(&t, store.as_ref(), clock).await;
    let mut slots = Arc::new(Semaphore::new(t.concurrency.max(1)));
    let mut breaker = Breaker::new(t.breaker);
    // Operators see every running target, a closed breaker included.
    board.publish(
        &id,
        breaker.view(Instant::now(), std::time::SystemTime::now()),
    );
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Health>();
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut attempts = JoinSet::new();
    let apply = |h: Health, breaker: &mut Breaker| apply_health(&id, h, breaker, board, metrics);
    loop {
        if runtime.has_changed().unwrap_or(false) {
            let before = t.concurrency.max(1);
            t = runtime.borrow_and_update().clone();
            breaker.reconfigure(t.breaker);
            if t.concurrency.max(1) != before {
                // Running attempts keep their slots of the old limit; new ones
                // count against the new one.
                slots = Arc::new(Semaphore::new(t.concurrency.max(1)));
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
        if engine.pauses.is_paused(&id) {
            tokio::select! {
                _ = engine.pauses.changed() => {}
                _ = tokio::time::sleep(PAUSE_POLL) => {}
                Some(h) = done_rx.recv() => apply(h, &mut breaker),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        if slots.available_permits() == 0 {
            tokio::select! {
                Some(h) = done_rx.recv() => apply(h, &mut breaker),
                // A slot comes free when the target has answered, before the outcome is recorded.
                Ok(free) = slots.clone().acquire_owned() => drop(free),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let (limit, probe) = match breaker.admit(Instant::now()) {
            Admit::All => (slots.available_permits(), false),
            Admit::Probe => {
                board.publish(
                    &t.id,
                    breaker.view(Instant::now(), std::time::SystemTime::now()),
                );
                (1, true)
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
        let claimed = match store.claim(&t.id, clock.now_ms(), limit).await {
            Ok(c) => c,
            Err(e) => {
                if probe {
                    breaker.probe_unused();
                }
                tracing::error!(target_id = %t.id, error = %e, "cannot take deliveries from the store");
                tokio::select! {
                    _ = tokio::time::sleep(STORE_BACKOFF) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            if probe {
                breaker.probe_unused();
            }
            let wait = match store.next_due(&t.id).await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - clock.now_ms()).max(0) as u64).min(IDLE_POLL)
                }
                _ => IDLE_POLL,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = notify.notified() => {}
                Some(h) = done_rx.recv() => apply(h, &mut breaker),
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for c in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            if let Ok(mut set) = in_flight.lock() {
                set.insert(c.message_id.clone());
            }
            let (t, store, metrics, done_tx, in_flight, memory) = (
                t.clone(),
                store.clone(),
                metrics.clone(),
                done_tx.clone(),
                in_flight.clone(),
                engine.envelope_memory.clone(),
            );
            attempts.spawn(async move {
                let id = c.message_id.clone();
                let (health, _) =
                    attempt(&t, store.as_ref(), &metrics, clock, &memory, c, permit).await;
                if let Ok(mut set) = in_flight.lock() {
                    set.remove(&id);
                }
                let _ = done_tx.send(health);
            });
        }
    }
    // Graceful stop: let running attempts finish within the grace period, hand back the rest.
    let finished = tokio::time::timeout(grace, async {
        while attempts.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        attempts.abort_all();
        while attempts.join_next().await.is_some() {}
        let left: Vec<String> = in_flight
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        if !left.is_empty() {
            tracing::warn!(target_id = %t.id, deliveries = left.len(), "attempts did not finish in time; handed back to pending");
            if let Err(e) = store.release(left).await {
                tracing::error!(target_id = %t.id, error = %e, "handing back failed; the next start does it");
            }
        }
    }
}

/// One attempt: deliver, decide, record. Returns what it says about the
/// target's health, and whether the outcome was recorded.
/// `slot` is the target's concurrency permit: it is given back as soon as the
/// target has answered, so waiting for the durable record does not keep the
/// next delivery from going out (the concurrency limit counts requests to the
/// target, not commits).
async fn attempt(
    t: &TargetRuntime,
    store: &dyn Store,
    metrics: &Metrics,
    clock: Clock,
    memory: &EnvelopeMemory,
    c: Claimed,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> (Health, bool) {
    let held = memory.hold(c.size).await;
    let envelope = match store.claimed_envelope(&c).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            let rec = Recorded::Parked {
                failure: Failure::new("envelope-missing", "the envelope is missing from the store"),
                gave_up_after: None,
            };
            return (Health::Up, finish(t, store, metrics, clock, &c, rec).await);
        }
        Err(StoreError::Damaged(what)) => {
            tracing::error!(message_id = %c.message_id, what = %what, "sealed envelope damaged on disk: parked; restore the data directory's envelopes/ from a backup, then retry it");
            let rec = Recorded::Parked {
                failure: Failure::new(
                    "envelope-damaged",
                    format!("the sealed envelope is damaged on disk ({what})"),
                ),
                gave_up_after: None,
            };
            return (Health::Up, finish(t, store, metrics, clock, &c, rec).await);
        }
        Err(e) => {
            tracing::error!(message_id = %c.message_id, error = %e, "cannot read the envelope");
            let rec = Recorded::RetryAt {
                at_ms: clock.now_ms() + STORE_BACKOFF.as_millis() as i64,
                failure: Failure::new("store", "the envelope could not be read"),
            };
            return (Health::Up, finish(t, store, metrics, clock, &c, rec).await);
        }
    };
    // Handed to the adapter without a copy (an HTTP body takes it as it is).
    let envelope = bytes::Bytes::from(envelope);
    let delivery = Delivery {
        message_id: &c.message_id,
        submission_id: &c.submission_id,
        target: &t.id,
        attempt: c.attempts,
        envelope: &envelope,
    };
    let outcome = match tokio::time::timeout(t.attempt_timeout, t.adapter.deliver(delivery)).await {
        Ok(o) => o,
        Err(_) => Outcome::retry(
            "timeout",
            format!("the attempt took longer than {:?}", t.attempt_timeout),
        ),
    };
    drop(envelope);
    drop(held);
    drop(slot);
    let now = clock.now_ms();
    let age = Duration::from_millis((now - c.created_at_ms).max(0) as u64);
    let (rec, health) = match outcome {
        Outcome::Delivered { receipt } => {
            check_confirmation(t, &c, receipt.as_deref());
            (Recorded::Delivered { receipt }, Health::Up)
        }
        Outcome::Offered => (Recorded::Offered, Health::Up),
        Outcome::Retry { failure, after } => {
            match t.policy.next_delay(c.attempts, age, after, unit_random()) {
                Some(delay) => (
                    Recorded::RetryAt {
                        at_ms: now + delay.as_millis() as i64,
                        failure,
                    },
                    Health::Down,
                ),
                // The policy ran out: parked with the last real failure's class.
                None => (
                    Recorded::Parked {
                        failure,
                        gave_up_after: Some(c.attempts),
                    },
                    Health::Down,
                ),
            }
        }
        // The target answered: it is up, it just will not take this one.
        Outcome::Permanent { failure } => (
            Recorded::Parked {
                failure,
                gave_up_after: None,
            },
            Health::Up,
        ),
    };
    if matches!(rec, Recorded::Delivered { .. }) {
        metrics
            .delivery_seconds
            .get_or_create(&crate::core::metrics::TargetLabel {
                target: t.id.clone(),
            })
            .observe(age.as_secs_f64());
    }
    (health, finish(t, store, metrics, clock, &c, rec).await)
}

/// Records the outcome; `false` if the store closed first (the delivery is
/// attempted again after the next start).
async fn finish(
    t: &TargetRuntime,
    store: &dyn Store,
    metrics: &Metrics,
    clock: Clock,
    c: &Claimed,
    rec: Recorded,
) -> bool {
    let kind = match rec {
        Recorded::Delivered { .. } => "delivered",
        Recorded::Offered => "offered",
        Recorded::Confirmed { .. } => "confirmed",
        Recorded::RetryAt { .. } => "retry",
        Recorded::Parked { .. } => "parked",
    };
    let class = rec.class().unwrap_or_default().to_owned();
    let error = rec.loggable_error();
    // The outcome counts only once it is recorded: a failed write is retried
    // until it succeeds, so no delivery stays in flight behind a running daemon.
    // (At shutdown the engine's grace period ends the wait; the next start hands
    // the delivery back and it is delivered again with the same message_id.)
    let mut wait = RECORD_RETRY_FIRST;
    let mut failures = 0u32;
    loop {
        match store
            .record(&c.message_id, rec.clone(), clock.now_ms())
            .await
        {
            Ok(()) => break,
            Err(StoreError::Closed) => {
                tracing::warn!(message_id = %c.message_id, "store closed before the outcome was recorded; the next start delivers it again");
                return false;
            }
            // Cluster mode: an instance that took this attempt over (this one's
            // broker connection had gone) recorded it first.
            Err(StoreError::Superseded(why)) => {
                tracing::warn!(message_id = %c.message_id, why = %why, "outcome not recorded: another instance recorded this attempt first (the target may have got it twice, with the same message_id)");
                return true;
            }
            Err(e) => {
                failures += 1;
                // The first failure and then every tenth: the log stays readable.
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::error!(message_id = %c.message_id, error = %e, failures, "cannot record the outcome; retrying");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECORD_RETRY_MAX);
            }
        }
    }
    if failures > 0 {
        tracing::info!(message_id = %c.message_id, failures, "outcome recorded after retrying");
    }
    metrics.attempt(&t.id, kind, &class);
    match kind {
        "delivered" => {
            tracing::info!(message_id = %c.message_id, submission_id = %c.submission_id, target_id = %t.id, attempt = c.attempts, "delivered")
        }
        "offered" => {
            tracing::info!(message_id = %c.message_id, submission_id = %c.submission_id, target_id = %t.id, "in the message box, waiting for its reader")
        }
        "parked" => {
            tracing::warn!(message_id = %c.message_id, submission_id = %c.submission_id, target_id = %t.id, attempt = c.attempts, error = error.as_deref().unwrap_or(""), "parked: needs an operator")
        }
        _ => {
            tracing::info!(message_id = %c.message_id, target_id = %t.id, attempt = c.attempts, error = error.as_deref().unwrap_or(""), "attempt failed; will retry")
        }
    }
    true
}

#[cfg(test)]
mod tests;
