//! A circuit breaker per target: after `failures` consecutive retryable failures
//! the target is paused (open) for `open_for`; then one probe is let through
//! (half-open). A successful probe closes the breaker; a failed one opens it again
//! for twice as long, up to `max_open_for`. Pure: the caller passes the time.

use std::time::Duration;

use tokio::time::Instant;

pub use crate::model::policy::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, pause: Duration },
    HalfOpen { pause: Duration, probing: bool },
}

/// What the engine may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Deliver at full concurrency.
    All,
    /// Send exactly one probe.
    Probe,
    /// Nothing until then.
    WaitUntil(Instant),
    /// A probe is out; wait for its result.
    WaitForProbe,
}

/// The breaker of one target.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: State,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        match self.state {
            State::Closed { .. } => Admit::All,
            State::Open { until, pause } if now >= until => {
                self.state = State::HalfOpen {
                    pause,
                    probing: true,
                };
                Admit::Probe
            }
            State::Open { until, .. } => Admit::WaitUntil(until),
            State::HalfOpen { probing: true, .. } => Admit::WaitForProbe,
            State::HalfOpen {
                pause,
                probing: false,
            } => {
                self.state = State::HalfOpen {
                    pause,
                    probing: true,
                };
                Admit::Probe
            }
        }
    }

    /// New settings (a reload); the state stays: an open breaker stays open.
    pub fn reconfigure(&mut self, config: BreakerConfig) {
        self.config = config;
    }

    /// A probe was admitted but there was nothing to send: let the next one through.
    pub fn probe_unused(&mut self) {
        if let State::HalfOpen {
            pause,
            probing: true,
        } = self.state
        {
            self.state = State::HalfOpen {
                pause,
                probing: false,
            };
        }
    }

    /// The target answered (delivered, or refused for good: it is up).
    pub fn success(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    /// A retryable failure.
    pub fn failure(&mut self, now: Instant) {
        self.state = match self.state {
            State::Closed { failures } if failures + 1 >= self.config.failures => State::Open {
                until: now + self.config.open_for,
                pause: self.config.open_for,
            },
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::HalfOpen { pause, .. } => {
                let pause = (pause * 2).min(self.config.max_open_for);
                State::Open {
                    until: now + pause,
                    pause,
                }
            }
            open @ State::Open { .. } => open,
        };
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// What operators see of it; `now` and `wall_now` are the same moment.
    pub fn view(&self, now: Instant, wall_now: std::time::SystemTime) -> BreakerView {
        let (state, failures, paused_until) = match self.state {
            State::Closed { failures } => ("closed", failures, None),
            State::Open { until, .. } => (
                "open",
                self.config.failures,
                Some(wall_now + until.saturating_duration_since(now)),
            ),
            State::HalfOpen { .. } => ("half-open", self.config.failures, None),
        };
        BreakerView {
            state,
            failures_in_a_row: failures,
            paused_until: paused_until.map(|t| {
                time::OffsetDateTime::from(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            }),
        }
    }
}

/// A target's breaker as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakerView {
    /// `closed` (delivering), `open` (paused) or `half-open` (one probe decides).
    pub state: &'static str,
    /// Retryable failures in a row (at least the threshold while not closed).
    pub failures_in_a_row: u32,
    /// While open: when the next probe is let through (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<String>,
}

impl Default for BreakerView {
    fn default() -> Self {
        BreakerView {
            state: "closed",
            failures_in_a_row: 0,
            paused_until: None,
        }
    }
}

/// Every target's breaker, as the engine last published it: for the operator API.
/// Targets join when their task starts and leave when it stops (a reload).
#[derive(Debug, Default)]
pub struct BreakerBoard(std::sync::RwLock<std::collections::BTreeMap<String, BreakerView>>);

impl BreakerBoard {
    fn map(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<String, BreakerView>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the write lock only when the view changed: after a delivery on a
    /// healthy target it has not, and the delivery loop pays nothing.
    pub(super) fn publish(&self, target: &str, view: BreakerView) {
        if self.map().get(target) == Some(&view) {
            return;
        }
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.insert(target.to_owned(), view);
    }

    pub(super) fn remove(&self, target: &str) {
        let mut map = self.0.write().unwrap_or_else(|e| e.into_inner());
        map.remove(target);
    }

    /// The targets' breakers, by target id.
    pub fn views(&self) -> Vec<(String, BreakerView)> {
        self.map()
            .iter()
            .map(|(t, v)| (t.clone(), v.clone()))
            .collect()
    }

    /// One target's breaker (None for a target without a running task).
    pub fn view(&self, target: &str) -> Option<BreakerView> {
        self.map().get(target).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(25),
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_later() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.admit(t0), Admit::All);
        let epoch = std::time::SystemTime::UNIX_EPOCH;
        assert_eq!(
            b.view(t0, epoch),
            BreakerView {
                state: "closed",
                failures_in_a_row: 2,
                paused_until: None
            }
        );
        b.failure(t0);
        assert_eq!(b.admit(t0), Admit::WaitUntil(t0 + Duration::from_secs(10)));
        let open = b.view(t0, epoch);
        assert_eq!((open.state, open.failures_in_a_row), ("open", 3));
        assert_eq!(open.paused_until.as_deref(), Some("1970-01-01T00:00:10Z"));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(t1), Admit::Probe);
        assert_eq!(b.admit(t1), Admit::WaitForProbe);
        assert_eq!(
            b.view(t1, std::time::SystemTime::UNIX_EPOCH).state,
            "half-open"
        );
        b.success();
        assert_eq!(b.admit(t1), Admit::All);
        assert!(!b.is_open());
    }

    #[test]
    fn failed_probes_double_the_pause_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        (0..3).for_each(|_| b.failure(t0));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(t1), Admit::Probe);
        b.failure(t1);
        assert_eq!(b.admit(t1), Admit::WaitUntil(t1 + Duration::from_secs(20)));
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(b.admit(t2), Admit::Probe);
        b.failure(t2);
        assert_eq!(b.admit(t2), Admit::WaitUntil(t2 + Duration::from_secs(25)));
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        b.failure(t0);
        b.failure(t0);
        b.success();
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.admit(t0), Admit::All);
    }

    #[test]
    fn failures_reported_while_open_do_not_extend_the_pause() {
        // Attempts that were already out when the breaker opened report late.
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        (0..3).for_each(|_| b.failure(t0));
        b.failure(t0 + Duration::from_secs(5));
        assert_eq!(b.admit(t0), Admit::WaitUntil(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn an_unused_probe_lets_the_next_one_through_with_the_same_pause() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        (0..3).for_each(|_| b.failure(t0));
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(b.admit(t1), Admit::Probe);
        b.probe_unused();
        assert_eq!(b.admit(t1), Admit::Probe);
        assert_eq!(b.admit(t1), Admit::WaitForProbe);
        b.failure(t1);
        // Doubled once (one probe failed), not twice.
        assert_eq!(b.admit(t1), Admit::WaitUntil(t1 + Duration::from_secs(20)));
    }
}
