//! Delivery policies as data: the retry schedule (exponential backoff with jitter,
//! a cap, limits on attempts and age) and the circuit breaker's settings.
//!
//! [`RetryPolicy::next_delay`] is pure; the engine supplies
//! the random number and the receiver's `Retry-After`.

use std::time::Duration;

use serde::Deserialize;

/// When to try a failed delivery again, and when to give up (park it).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Each further failure multiplies the delay by this (>= 1).
    pub factor: f64,
    /// Longest delay between two attempts (a receiver's `Retry-After` may ask for more).
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
    /// Random spread in [0, 1): 0.2 means ±20 %, so that many deliveries do not retry in step.
    pub jitter: f64,
    /// Most attempts in all; then the delivery is parked.
    pub max_attempts: u32,
    /// Oldest a delivery may get (since acceptance) before it is parked.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(5),
            factor: 2.0,
            cap: Duration::from_secs(3600),
            jitter: 0.2,
            max_attempts: 100,
            max_age: Duration::from_secs(7 * 86400),
        }
    }
}

/// Per-target changes to the global policy: every key is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryOverride {
    #[serde(default, with = "humantime_serde")]
    pub initial: Option<Duration>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub cap: Option<Duration>,
    #[serde(default)]
    pub jitter: Option<f64>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
}

impl RetryPolicy {
    /// The global policy with a target's overrides applied.
    pub fn with(self, o: &RetryOverride) -> Self {
        RetryPolicy {
            initial: o.initial.unwrap_or(self.initial),
            factor: o.factor.unwrap_or(self.factor),
            cap: o.cap.unwrap_or(self.cap),
            jitter: o.jitter.unwrap_or(self.jitter),
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            max_age: o.max_age.unwrap_or(self.max_age),
        }
    }

    /// What is wrong with the values, if anything (for `config check`).
    pub fn problem(&self) -> Option<String> {
        if self.initial.is_zero() {
            return Some("initial must be longer than 0s".into());
        }
        if !(self.factor >= 1.0 && self.factor <= 100.0) {
            return Some(format!("factor {} must be between 1 and 100", self.factor));
        }
        if self.cap < self.initial {
            return Some("cap must not be shorter than initial".into());
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Some(format!(
                "jitter {} must be at least 0 and below 1",
                self.jitter
            ));
        }
        if self.max_attempts == 0 {
            return Some("max_attempts must be at least 1".into());
        }
        None
    }

    /// The delay before the next attempt after `attempts` failed attempts (>= 1) of a
    /// delivery that is `age` old, or `None` to give up and park it.
    /// `unit_random` is uniform in [0, 1); `retry_after` is the receiver's wish and
    /// wins over a shorter computed delay.
    pub fn next_delay(
        &self,
        attempts: u32,
        age: Duration,
        retry_after: Option<Duration>,
        unit_random: f64,
    ) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exp = self
            .factor
            .powi(attempts.saturating_sub(1).min(1000) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.cap.as_secs_f64());
        let spread = 1.0 - self.jitter + 2.0 * self.jitter * unit_random.clamp(0.0, 1.0);
        let jittered = Duration::from_secs_f64((base * spread).min(self.cap.as_secs_f64()));
        let delay = match retry_after {
            Some(ra) if ra > jittered => ra,
            _ => jittered,
        };
        if age + delay > self.max_age {
            return None;
        }
        Some(delay)
    }
}

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive retryable failures that open the breaker.
    pub failures: u32,
    /// First pause.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Longest pause.
    #[serde(with = "humantime_serde")]
    pub max_open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(10),
            factor: 2.0,
            cap: Duration::from_secs(300),
            jitter: 0.0,
            max_attempts: 10,
            max_age: Duration::from_secs(86400),
        }
    }

    const MID: f64 = 0.5;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let p = policy();
        let delays: Vec<u64> = (1..=7)
            .map(|a| {
                p.next_delay(a, Duration::ZERO, None, MID)
                    .unwrap()
                    .as_secs()
            })
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let p = RetryPolicy {
            jitter: 0.2,
            ..policy()
        };
        assert_eq!(
            p.next_delay(1, Duration::ZERO, None, 0.0).unwrap(),
            Duration::from_secs(8)
        );
        assert_eq!(
            p.next_delay(1, Duration::ZERO, None, 0.5).unwrap(),
            Duration::from_secs(10)
        );
        let hi = p.next_delay(1, Duration::ZERO, None, 0.999_999).unwrap();
        assert!(
            hi > Duration::from_millis(11_990) && hi < Duration::from_secs(12),
            "{hi:?}"
        );
        // Never above the cap, even with jitter.
        assert_eq!(
            p.next_delay(9, Duration::ZERO, None, 0.999).unwrap(),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_age() {
        let p = policy();
        assert!(p.next_delay(9, Duration::ZERO, None, MID).is_some());
        assert_eq!(p.next_delay(10, Duration::ZERO, None, MID), None);
        assert!(p
            .next_delay(1, Duration::from_secs(86_380), None, MID)
            .is_some());
        assert_eq!(
            p.next_delay(1, Duration::from_secs(86_395), None, MID),
            None
        );
    }

    #[test]
    fn retry_after_is_honoured_when_longer() {
        let p = policy();
        assert_eq!(
            p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(120)), MID),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(1)), MID),
            Some(Duration::from_secs(10))
        );
        // Beyond the cap too, but not beyond max_age.
        assert_eq!(
            p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(3600)), MID),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            p.next_delay(
                1,
                Duration::from_secs(86_000),
                Some(Duration::from_secs(3600)),
                MID
            ),
            None
        );
    }

    #[test]
    fn overrides_and_validation() {
        let p = policy().with(&RetryOverride {
            max_attempts: Some(3),
            ..Default::default()
        });
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.initial, Duration::from_secs(10));
        assert!(RetryPolicy {
            factor: 0.5,
            ..policy()
        }
        .problem()
        .is_some());
        assert!(RetryPolicy {
            jitter: 1.0,
            ..policy()
        }
        .problem()
        .is_some());
        assert!(policy().problem().is_none());
    }
}
