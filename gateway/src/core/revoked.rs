//! Targets whose encryption certificate a CRL refreshed at run time lists as
//! revoked. Intake refuses submissions routed to them (`503`, nothing stored):
//! nothing is encrypted for a key that may be in the wrong hands. Deliveries
//! already queued for such a target stay as they are, for an operator to decide.
//! At start a revoked target certificate is a config error instead.

use std::collections::BTreeSet;
use std::sync::RwLock;

/// The set of targets with a revoked certificate, replaced at every CRL refresh.
#[derive(Debug, Default)]
pub struct RevokedTargets(RwLock<BTreeSet<String>>);

impl RevokedTargets {
    /// Replaces the set.
    pub fn set(&self, targets: BTreeSet<String>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    /// The first of `targets` that is revoked, if any.
    pub fn first_of(&self, targets: &[String]) -> Option<String> {
        let revoked = self.0.read().unwrap_or_else(|e| e.into_inner());
        targets.iter().find(|t| revoked.contains(*t)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_replaced_not_merged() {
        let r = RevokedTargets::default();
        let route = ["dms".to_owned(), "fv".to_owned()];
        assert_eq!(r.first_of(&route), None);
        r.set(["fv".to_owned()].into());
        assert_eq!(r.first_of(&route).as_deref(), Some("fv"));
        r.set(BTreeSet::new());
        assert_eq!(r.first_of(&route), None);
    }
}
