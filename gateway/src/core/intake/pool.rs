//! The validation pool: the CPU-bound checks of a submission's data (the XML
//! safety pass, XSD validation with libxml2, JSON parsing and JSON Schema) run
//! on blocking threads, at most `validation_concurrency` at once, so the async
//! workers — which serve every other request and the admin listener — never
//! wait for them. Further checks wait for a free slot (first come, first served),
//! within their request's `request_timeout`.
//!
//! Each check gets a [`Budget`]: `validation_timeout` from when it starts, and
//! spent at once when nobody waits for its answer any more — the request ran
//! into `request_timeout` and was answered `408`, or the client went away. The
//! checks look at their budget between XML nodes and stop; what they cannot
//! interrupt (one libxml2 call on one node, parsing JSON, a JSON Schema) is
//! bounded by the data limits. The slot is free again when the work has ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::core::refusal::{Kind, Refusal};

/// How long a check may still run, and whether anyone still waits for it.
#[derive(Debug, Clone)]
pub struct Budget {
    deadline: Option<Instant>,
    limit: Duration,
    abandoned: Arc<AtomicBool>,
}

impl Budget {
    /// No time bound and no one to give up (checks of small data, tests, fuzzing).
    pub fn unlimited() -> Budget {
        Budget {
            deadline: None,
            limit: Duration::MAX,
            abandoned: Arc::default(),
        }
    }

    /// `limit` from now.
    pub fn starting_now(limit: Duration, abandoned: Arc<AtomicBool>) -> Budget {
        Budget {
            deadline: Instant::now().checked_add(limit),
            limit,
            abandoned,
        }
    }

    /// True once the time is up or the answer is no longer awaited.
    pub fn spent(&self) -> bool {
        self.abandoned.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The time the check had.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

/// Marks a check abandoned when the future waiting for it is dropped.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Blocking threads for data checks, at most `concurrency` at once.
#[derive(Debug)]
pub struct ValidationPool {
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl ValidationPool {
    /// A pool of `concurrency` slots (at least one); each check gets `timeout`.
    pub fn new(concurrency: usize, timeout: Duration) -> ValidationPool {
        ValidationPool {
            slots: Arc::new(Semaphore::new(concurrency.max(1))),
            timeout,
        }
    }

    /// Runs `work` on a blocking thread once a slot is free. Dropping the returned
    /// future (at the request's deadline) spends the work's budget; the slot is
    /// given back when `work` returns.
    pub async fn run<T, F>(&self, work: F) -> Result<T, Refusal>
    where
        F: FnOnce(&Budget) -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = self.slots.clone().acquire_owned().await.map_err(|_| {
            Refusal::unavailable("the data checks are closed; the submission was not accepted")
        })?;
        let abandoned = Arc::new(AtomicBool::new(false));
        let _abandon = AbandonOnDrop(abandoned.clone());
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work(&Budget::starting_now(timeout, abandoned))
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a data check failed");
            Refusal::new(
                Kind::Internal,
                "internal",
                "checking the data failed; the submission was not accepted",
            )
        })
    }

    /// Slots free right now.
    pub fn free(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Waits (really, on the blocking threads' clock) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("not within 5 s: {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_concurrency_checks_run_and_the_rest_wait_their_turn() {
        let pool = Arc::new(ValidationPool::new(1, Duration::from_secs(60)));
        let (release, held) = mpsc::channel::<()>();
        let first = tokio::spawn({
            let pool = pool.clone();
            async move { pool.run(move |_| held.recv().is_ok()).await }
        });
        until("the first check holds the slot", || pool.free() == 0).await;
        let second_ran = Arc::new(AtomicBool::new(false));
        let second = tokio::spawn({
            let (pool, ran) = (pool.clone(), second_ran.clone());
            async move { pool.run(move |_| ran.store(true, Ordering::SeqCst)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!second_ran.load(Ordering::SeqCst), "ran beside the first");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(true));
        second.await.unwrap().unwrap();
        assert!(second_ran.load(Ordering::SeqCst));
        assert_eq!(pool.free(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_check_is_told_to_stop_and_frees_its_slot_when_it_does() {
        let pool = Arc::new(ValidationPool::new(1, Duration::from_secs(3600)));
        let (stopped_tx, stopped) = mpsc::channel();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move |budget| {
                    let _ = started_tx.send(());
                    while !budget.spent() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    stopped_tx.send(()).unwrap();
                })
                .await
            }
        });
        started.await.unwrap();
        assert_eq!(pool.free(), 0);
        // The request's deadline: its future is dropped.
        waiting.abort();
        let _ = waiting.await;
        tokio::task::spawn_blocking(move || stopped.recv_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
            .expect("the check saw its budget spent");
        until("the slot is free again", || pool.free() == 1).await;
        assert_eq!(pool.run(|_| 7).await, Ok(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_check_is_bounded_by_the_validation_timeout() {
        let pool = ValidationPool::new(2, Duration::from_millis(20));
        let started = Instant::now();
        let limit = pool
            .run(|budget| {
                while !budget.spent() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                budget.limit()
            })
            .await
            .unwrap();
        assert_eq!(limit, Duration::from_millis(20));
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(!Budget::unlimited().spent());
    }
}
