//! Per-portal limits, so one misbehaving portal cannot starve the others: a
//! submission rate (a token bucket per portal: `rate` submissions a second,
//! bursts up to one second's worth) and a number of uploads in progress at
//! once. Beyond either the portal gets `429` with `Retry-After` before its
//! body is read, and nothing is stored. The defaults come from `[ingest.limits]`
//! (`portal_rate`, `portal_uploads`); a portal's own `rate` / `uploads` in
//! `[[portals]]` replaces them for that portal. Read per request, so a reload
//! applies to the next submission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Limits;
use crate::listen::guard::{Counted, PerKey};
use crate::listen::problem::Problem;
use crate::model::portal::Portal;

/// The state of every portal's limits.
#[derive(Default)]
pub struct PortalQuota {
    buckets: Mutex<HashMap<String, Bucket>>,
    uploads: Arc<PerKey<String>>,
}

/// Tokens left and when they were counted.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A portal's upload slot; freed when the submission is answered.
pub type Slot = Counted<String>;

impl PortalQuota {
    /// Takes one submission of `portal` against its rate and an upload slot, or
    /// refuses it (`429`, with the seconds to wait).
    pub fn admit(&self, portal: &Portal, limits: &Limits) -> Result<Slot, Problem> {
        let max_uploads = portal.uploads.unwrap_or(limits.portal_uploads).max(1);
        let slot = PerKey::admit(&self.uploads, portal.id.clone(), max_uploads).ok_or_else(|| {
            Problem::new(
                429,
                "portal-too-many-uploads",
                format!(
                    "portal {} has {max_uploads} submissions in progress already; send the next when one is answered",
                    portal.id
                ),
            )
            .retry_after(1)
        })?;
        if let Some(rate) = portal.rate.or(limits.portal_rate).filter(|r| *r > 0.0) {
            self.take_token(&portal.id, rate, Instant::now())?;
        }
        Ok(slot)
    }

    fn take_token(&self, portal: &str, rate: f64, now: Instant) -> Result<(), Problem> {
        let burst = rate.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(portal.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / rate).ceil() as u64;
        Err(Problem::new(
            429,
            "portal-rate-limited",
            format!("portal {portal} may send {rate} submissions a second; try again in {wait} s"),
        )
        .retry_after(wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn portal(rate: Option<f64>, uploads: Option<usize>) -> Portal {
        Portal {
            id: "p".into(),
            leistungen: crate::model::routing::PatternSet(Vec::new()),
            destinations: crate::model::routing::PatternSet(Vec::new()),
            xta_account: "p".into(),
            rate,
            uploads,
            replies: None,
        }
    }

    #[test]
    fn a_portal_gets_its_rate_in_bursts_of_one_second_and_is_told_how_long_to_wait() {
        let q = PortalQuota::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            q.take_token("p", 4.0, t0).unwrap();
        }
        let refused = q.take_token("p", 4.0, t0).unwrap_err();
        assert_eq!((refused.status, refused.slug), (429, "portal-rate-limited"));
        assert_eq!(refused.retry_after, Some(1));
        // A quarter second later one more token has come.
        q.take_token("p", 4.0, t0 + Duration::from_millis(250))
            .unwrap();
        assert!(q
            .take_token("p", 4.0, t0 + Duration::from_millis(250))
            .is_err());
        // Another portal has its own bucket.
        q.take_token("other", 4.0, t0).unwrap();
        // A slow rate asks for a longer wait.
        for _ in 0..1 {
            q.take_token("slow", 0.1, t0).unwrap();
        }
        assert_eq!(
            q.take_token("slow", 0.1, t0).unwrap_err().retry_after,
            Some(10)
        );
    }

    #[test]
    fn uploads_at_once_are_bounded_per_portal_and_a_slot_frees_when_dropped() {
        let q = PortalQuota::default();
        let limits = Limits::default();
        let p = portal(None, Some(2));
        let a = q.admit(&p, &limits).unwrap();
        let _b = q.admit(&p, &limits).unwrap();
        let refused = q.admit(&p, &limits).err().unwrap();
        assert_eq!(
            (refused.status, refused.slug),
            (429, "portal-too-many-uploads")
        );
        drop(a);
        assert!(q.admit(&p, &limits).is_ok());
        // The config's default applies to a portal without its own.
        let limits = Limits {
            portal_uploads: 1,
            ..Limits::default()
        };
        let other = Portal {
            id: "q".into(),
            ..portal(None, None)
        };
        let _c = q.admit(&other, &limits).unwrap();
        assert!(q.admit(&other, &limits).is_err());
    }
}
