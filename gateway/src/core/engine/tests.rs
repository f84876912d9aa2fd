//! The engine under tokio's paused clock, against the real embedded store and a
//! scripted receiver: the retry schedule as the engine applies it (when a failed
//! delivery is tried again, `Retry-After`, parking when the policy gives up) and
//! the circuit breaker's pause, single probes and doubling.
//!
//! Time moves only when the test waits (paused time jumps from timer to timer),
//! and store calls take no virtual time ([`Timeless`]), so "attempt 2 came at
//! 10 s" is exact: the receiver notes tokio's time of every attempt.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ozg_adapter_sdk::{Adapter, DeliverFuture, Delivery, Failure, Outcome};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{BreakerConfig, Engine, TargetRuntime};
use crate::core::clock::Clock;
use crate::core::metrics::{Metrics, TargetLabel};
use crate::model::audit::AuditRecord;
use crate::model::delivery::DeliveryState;
use crate::model::policy::RetryPolicy;
use crate::model::submission::DeliveryStatus;
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::embedded::EmbeddedStore;
use crate::store::testing::{submission, Timeless};
use crate::store::Store;

const TARGET: &str = "fachverfahren";

/// A remote receiver that answers from a script, then always `otherwise`, and
/// notes when (tokio's time since the start) each attempt came.
struct Receiver {
    script: Mutex<VecDeque<Outcome>>,
    otherwise: Outcome,
    start: Instant,
    attempts: Mutex<Vec<Duration>>,
}

impl Adapter for Receiver {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    fn deliver<'a>(&'a self, _delivery: Delivery<'a>) -> DeliverFuture<'a> {
        self.attempts.lock().unwrap().push(self.start.elapsed());
        let outcome = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.otherwise.clone());
        Box::pin(async move { outcome })
    }
}

fn unavailable() -> Outcome {
    Outcome::retry("http-503", "Service Unavailable")
}

fn unavailable_for(secs: u64) -> Outcome {
    Outcome::Retry {
        failure: Failure::new("http-503", "Service Unavailable"),
        after: Some(Duration::from_secs(secs)),
    }
}

fn delivered() -> Outcome {
    Outcome::Delivered { receipt: None }
}

/// 10 s, 20 s, 40 s, … without jitter, so the schedule is exact.
fn policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_secs(10),
        factor: 2.0,
        cap: Duration::from_secs(3600),
        jitter: 0.0,
        max_attempts: 10,
        max_age: Duration::from_secs(86400),
    }
}

/// A breaker that does not open in these tests unless they mean it to.
fn lenient() -> BreakerConfig {
    BreakerConfig {
        failures: 1000,
        open_for: Duration::from_secs(1),
        max_open_for: Duration::from_secs(1),
    }
}

/// What a test sets up: `submissions` stored submissions `s0`, `s1`, … for one
/// target, and how the target is configured and answers.
struct Plan {
    submissions: usize,
    policy: RetryPolicy,
    breaker: BreakerConfig,
    concurrency: usize,
    script: Vec<Outcome>,
    otherwise: Outcome,
    /// Recording an outcome fails this many times first.
    failing_records: u32,
    /// The operators' paused targets.
    pauses: Arc<super::pauses::Pauses>,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            submissions: 1,
            policy: policy(),
            breaker: lenient(),
            concurrency: 1,
            script: vec![],
            otherwise: delivered(),
            failing_records: 0,
            pauses: Arc::default(),
        }
    }
}

/// A running engine, its store, its receiver.
struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Timeless<EmbeddedStore>>,
    receiver: Arc<Receiver>,
    metrics: Arc<Metrics>,
    /// The clock's wall time when the engine started (ms).
    start_ms: i64,
    stop: watch::Sender<bool>,
    engine: JoinHandle<()>,
}

impl Plan {
    async fn start(self) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Timeless(
            EmbeddedStore::open(dir.path(), 16).unwrap(),
            Default::default(),
        ));
        for i in 0..self.submissions {
            store
                .accept(submission(&format!("s{i}"), TARGET))
                .await
                .unwrap();
        }
        store
            .1
            .failing_records
            .store(self.failing_records, std::sync::atomic::Ordering::SeqCst);
        // After storing, so the new deliveries are due at the clock's start.
        let start_ms = now_ms();
        let clock = Clock::following_tokio(start_ms);
        let receiver = Arc::new(Receiver {
            script: Mutex::new(self.script.into()),
            otherwise: self.otherwise,
            start: Instant::now(),
            attempts: Mutex::default(),
        });
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = watch::channel(false);
        let running = Engine {
            store: store.clone(),
            metrics: metrics.clone(),
            shutdown_grace: Duration::from_secs(5),
            clock,
            breakers: Arc::default(),
            wakers: Arc::default(),
            queue: None,
            pauses: self.pauses.clone(),
            envelope_memory: Arc::new(super::EnvelopeMemory::new(64 << 20)),
        }
        .start(
            vec![Arc::new(TargetRuntime {
                id: TARGET.into(),
                adapter: receiver.clone(),
                policy: self.policy,
                breaker: self.breaker,
                concurrency: self.concurrency,
                attempt_timeout: Duration::from_secs(30),
                payload: Default::default(),
            })],
            stopped,
        );
        let engine = tokio::spawn(async move { running.join().await });
        Rig {
            _dir: dir,
            store,
            receiver,
            metrics,
            start_ms,
            stop,
            engine,
        }
    }
}

impl Rig {
    /// Lets (paused) time pass until `secs` after the start; everything due
    /// meanwhile happens.
    async fn until(&self, secs: f64) {
        tokio::time::sleep_until(self.receiver.start + Duration::from_secs_f64(secs)).await;
    }

    /// When the attempts came, in seconds since the start (to the millisecond).
    fn attempts(&self) -> Vec<f64> {
        self.receiver
            .attempts
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_millis() as f64 / 1000.0)
            .collect()
    }

    /// Submission `s<i>`'s delivery, as the store has it.
    async fn delivery(&self, i: usize) -> DeliveryStatus {
        let s = self.store.submission(&format!("s{i}")).await.unwrap();
        s.unwrap().deliveries.remove(0)
    }

    /// Submission `s<i>`'s audit records.
    async fn audit(&self, i: usize) -> Vec<AuditRecord> {
        self.store.trace(&format!("s{i}")).await.unwrap()
    }

    fn breaker_open(&self) -> i64 {
        self.metrics
            .breaker_open
            .get_or_create(&TargetLabel {
                target: TARGET.into(),
            })
            .get()
    }

    /// Stops the engine; it must finish at once (nothing in flight).
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_millis(1), self.engine)
            .await
            .expect("the engine stops on shutdown")
            .unwrap();
    }
}

fn events(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.event.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_waits_in_retry_wait_until_its_time_has_come() {
    let rig = Plan {
        script: vec![unavailable(), unavailable()],
        ..Plan::default()
    }
    .start()
    .await;
    rig.until(1.0).await;
    assert_eq!(rig.attempts(), [0.0]);
    let d = rig.delivery(0).await;
    assert_eq!((d.state, d.attempts), (DeliveryState::RetryWait, 1));
    assert!(d.last_error.unwrap().contains("http-503"));
    let failed = rig.audit(0).await.pop().unwrap();
    assert_eq!(failed.event, "attempt_failed");
    assert_eq!(
        failed.detail["retry_at"],
        rfc3339_ms(rig.start_ms + 10_000).as_str()
    );

    // Due at 10 s (initial), not a moment before.
    rig.until(9.9).await;
    assert_eq!(rig.attempts(), [0.0]);
    assert_eq!(rig.delivery(0).await.state, DeliveryState::RetryWait);
    rig.until(10.1).await;
    assert_eq!(rig.attempts(), [0.0, 10.0]);

    // Then 20 s later (factor 2), and delivered.
    rig.until(29.9).await;
    assert_eq!(rig.attempts(), [0.0, 10.0]);
    rig.until(30.1).await;
    assert_eq!(rig.attempts(), [0.0, 10.0, 30.0]);
    let d = rig.delivery(0).await;
    assert_eq!((d.state, d.attempts), (DeliveryState::Delivered, 3));
    assert_eq!(
        events(&rig.audit(0).await),
        [
            "received",
            "sealed",
            "attempt_failed",
            "attempt_failed",
            "delivered"
        ]
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_receivers_retry_after_wins_when_longer_than_the_schedule() {
    let rig = Plan {
        // 90 s is longer than the 10 s the policy says; 1 s is shorter than its 20 s.
        script: vec![unavailable_for(90), unavailable_for(1)],
        ..Plan::default()
    }
    .start()
    .await;
    rig.until(89.9).await;
    assert_eq!(rig.attempts(), [0.0]);
    let failed = rig.audit(0).await.pop().unwrap();
    assert_eq!(
        failed.detail["retry_at"],
        rfc3339_ms(rig.start_ms + 90_000).as_str()
    );
    rig.until(90.1).await;
    assert_eq!(rig.attempts(), [0.0, 90.0]);
    rig.until(109.9).await;
    assert_eq!(rig.attempts(), [0.0, 90.0]);
    rig.until(110.1).await;
    assert_eq!(rig.attempts(), [0.0, 90.0, 110.0]);
    assert_eq!(rig.delivery(0).await.state, DeliveryState::Delivered);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_delivery_is_parked_when_its_attempts_run_out() {
    let rig = Plan {
        policy: RetryPolicy {
            max_attempts: 3,
            ..policy()
        },
        otherwise: unavailable(),
        ..Plan::default()
    }
    .start()
    .await;
    rig.until(120.0).await;
    assert_eq!(rig.attempts(), [0.0, 10.0, 30.0]);
    let d = rig.delivery(0).await;
    assert_eq!((d.state, d.attempts), (DeliveryState::Parked, 3));
    assert_eq!(
        d.last_error.as_deref(),
        Some("gave up after 3 attempt(s): http-503: Service Unavailable")
    );
    let parked = rig.audit(0).await.pop().unwrap();
    assert_eq!(parked.event, "parked");
    assert_eq!(parked.detail["class"], "http-503");
    assert_eq!(parked.detail["attempt"], 3);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_delivery_is_parked_when_the_next_attempt_would_be_past_max_age() {
    let rig = Plan {
        // After the attempt at 10 s the next would come at 30 s: older than 25 s.
        policy: RetryPolicy {
            max_age: Duration::from_secs(25),
            ..policy()
        },
        otherwise: unavailable(),
        ..Plan::default()
    }
    .start()
    .await;
    rig.until(60.0).await;
    assert_eq!(rig.attempts(), [0.0, 10.0]);
    let d = rig.delivery(0).await;
    assert_eq!((d.state, d.attempts), (DeliveryState::Parked, 2));
    assert_eq!(rig.audit(0).await.pop().unwrap().event, "parked");
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_target_is_paused_then_probed_with_one_attempt_at_a_time() {
    let rig = Plan {
        submissions: 3,
        // Retries would be due after 1 s: only the breaker holds them back.
        policy: RetryPolicy {
            initial: Duration::from_secs(1),
            factor: 1.0,
            max_attempts: 100,
            ..policy()
        },
        breaker: BreakerConfig {
            failures: 2,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(25),
        },
        concurrency: 4,
        // The three first attempts and two probes fail; the third probe succeeds.
        script: vec![unavailable(); 5],
        otherwise: delivered(),
        failing_records: 0,
        pauses: Arc::default(),
    }
    .start()
    .await;
    rig.until(9.9).await;
    assert_eq!(rig.attempts(), [0.0, 0.0, 0.0], "paused for 10 s");
    assert_eq!(rig.breaker_open(), 1);
    // Half-open at 10 s: one probe although three deliveries are due; it fails,
    // the pause doubles to 20 s.
    rig.until(10.1).await;
    assert_eq!(rig.attempts(), [0.0, 0.0, 0.0, 10.0]);
    rig.until(29.9).await;
    assert_eq!(rig.attempts(), [0.0, 0.0, 0.0, 10.0]);
    // Probe at 30 s fails: 40 s, capped at 25 s.
    rig.until(54.9).await;
    assert_eq!(rig.attempts(), [0.0, 0.0, 0.0, 10.0, 30.0]);
    assert_eq!(rig.breaker_open(), 1);
    // Probe at 55 s succeeds: closed, the other two go at once.
    rig.until(55.1).await;
    assert_eq!(
        rig.attempts(),
        [0.0, 0.0, 0.0, 10.0, 30.0, 55.0, 55.0, 55.0]
    );
    assert_eq!(rig.breaker_open(), 0);
    for i in 0..3 {
        assert_eq!(rig.delivery(i).await.state, DeliveryState::Delivered);
    }
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_finds_nothing_due_lets_the_next_one_through() {
    let rig = Plan {
        // Open for 5 s after one failure; the retry is only due at 10 s, so the
        // probes from 5 s on find nothing to send until then.
        breaker: BreakerConfig {
            failures: 1,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
        },
        script: vec![unavailable()],
        ..Plan::default()
    }
    .start()
    .await;
    rig.until(9.9).await;
    assert_eq!(rig.attempts(), [0.0]);
    assert_eq!(rig.breaker_open(), 1);
    rig.until(10.1).await;
    assert_eq!(rig.attempts(), [0.0, 10.0]);
    assert_eq!(rig.delivery(0).await.state, DeliveryState::Delivered);
    assert_eq!(rig.breaker_open(), 0);
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_outcome_the_store_refuses_is_recorded_again_until_it_sticks() {
    // The target took it, but the store refused the first four writes of that
    // (a full disk, say): the delivery must not stay in flight while the daemon
    // runs, and must not go to the target again.
    let rig = Plan {
        failing_records: 4,
        ..Plan::default()
    }
    .start()
    .await;
    rig.until(1.0).await;
    assert_eq!(rig.attempts(), [0.0], "delivered once");
    assert_eq!(rig.delivery(0).await.state, DeliveryState::InFlight);
    // Retried after 0.5 s, 1 s, 2 s and 4 s: recorded at 7.5 s.
    rig.until(7.0).await;
    assert_eq!(rig.delivery(0).await.state, DeliveryState::InFlight);
    rig.until(8.0).await;
    assert_eq!(rig.delivery(0).await.state, DeliveryState::Delivered);
    assert_eq!(rig.attempts(), [0.0], "not sent again");
    assert_eq!(
        events(&rig.audit(0).await),
        ["received", "sealed", "delivered"]
    );
    rig.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_target_gets_no_attempt_until_it_is_resumed() {
    let pauses: Arc<super::pauses::Pauses> = Arc::default();
    let paused = super::pauses::Paused {
        by: "op".into(),
        since: "2026-01-01T00:00:00.000Z".into(),
        reason: None,
    };
    pauses.set(TARGET, Some(paused));
    let rig = Plan {
        pauses: pauses.clone(),
        ..Plan::default()
    }
    .start()
    .await;
    rig.until(30.0).await;
    assert!(rig.attempts().is_empty(), "paused: nothing attempted");
    assert_eq!(rig.delivery(0).await.state, DeliveryState::Pending);
    pauses.set(TARGET, None);
    rig.until(31.5).await;
    assert_eq!(rig.attempts().len(), 1, "resumed: attempted at once");
    assert_eq!(rig.delivery(0).await.state, DeliveryState::Delivered);
    rig.stop().await;
}

#[tokio::test]
async fn envelopes_being_delivered_stay_within_their_memory_and_a_larger_one_goes_alone() {
    let memory = super::EnvelopeMemory::new(128 << 20);
    let first = memory.hold(100 << 20).await.expect("fits");
    // A second 100 MiB envelope waits until the first is answered.
    let waiting = tokio::time::timeout(Duration::from_millis(50), memory.hold(100 << 20)).await;
    assert!(waiting.is_err(), "two 100 MiB envelopes at once");
    // Small ones still pass beside it.
    let small = memory.hold(16 << 10).await.expect("fits");
    drop((first, small));
    let second = memory.hold(100 << 20).await.expect("fits now");
    drop(second);
    // One larger than the whole bound holds all of it, alone, and is not refused.
    let huge = tokio::time::timeout(Duration::from_millis(50), memory.hold(1 << 30))
        .await
        .expect("a larger envelope still goes")
        .expect("held");
    let beside = tokio::time::timeout(Duration::from_millis(50), memory.hold(1)).await;
    assert!(beside.is_err(), "nothing beside the largest");
    drop(huge);
    assert!(
        memory.hold(0).await.is_some(),
        "unknown size: counted small"
    );
}
