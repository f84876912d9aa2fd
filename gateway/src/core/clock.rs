//! Wall-clock time as the core reads it: milliseconds since the Unix epoch, for
//! the times the store records (when a retry is due, when a delivery finished,
//! what retention may delete).
//!
//! The daemon uses [`Clock::system`]. [`Clock::following_tokio`] starts at a
//! given wall time and then moves with tokio's clock, so that a test under
//! `tokio::time::pause()` moves the engine's and retention's notion of "now"
//! together with its timers. (Durations the core only waits for — breaker
//! pauses, check intervals — are tokio timers and need no clock.)

use tokio::time::Instant;

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock(Source);

#[derive(Debug, Clone, Copy, Default)]
enum Source {
    #[default]
    System,
    Tokio {
        start_ms: i64,
        start: Instant,
    },
}

impl Clock {
    /// The system clock ([`crate::model::time::now_ms`]).
    pub fn system() -> Self {
        Clock(Source::System)
    }

    /// `start_ms` now, then moving as tokio's `Instant` moves (paused or not).
    pub fn following_tokio(start_ms: i64) -> Self {
        Clock(Source::Tokio {
            start_ms,
            start: Instant::now(),
        })
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self.0 {
            Source::System => crate::model::time::now_ms(),
            Source::Tokio { start_ms, start } => start_ms + start.elapsed().as_millis() as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_only() {
        let clock = Clock::following_tokio(1_000_000);
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now_ms(), 1_001_500);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(clock.now_ms(), 1_000_000 + 1_500 + 3_600_000);
    }

    #[test]
    fn the_system_clock_is_the_default() {
        let before = crate::model::time::now_ms();
        let now = Clock::default().now_ms();
        assert!(now >= before && now < before + 60_000, "{now} vs {before}");
    }
}
