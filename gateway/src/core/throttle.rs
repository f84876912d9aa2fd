//! Repeated identical errors are logged once, then at most once per interval
//! with how many were left out, so a failure that repeats every half second does
//! not bury the log (and the operator) in identical lines.

use std::time::Duration;

use tokio::time::Instant;

/// Decides which occurrences of one repeating error are logged.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Another occurrence: `Some(n)` if it is to be logged, `n` being how many
    /// were left out since the last one logged; `None` to leave it out.
    pub fn occurred(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(at) if now.duration_since(at) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }

    /// The error stopped: the next occurrence is logged at once.
    pub fn recovered(&mut self) {
        self.last = None;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn logs_the_first_then_once_per_interval_with_the_count_left_out() {
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.occurred(), Some(0));
        for _ in 0..119 {
            tokio::time::advance(Duration::from_millis(500)).await;
            assert_eq!(t.occurred(), None);
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(t.occurred(), Some(119), "60 s later, with the count");
        t.recovered();
        assert_eq!(t.occurred(), Some(0), "after recovery, at once again");
    }
}
