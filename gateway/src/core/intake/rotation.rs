//! Recipient key rotation: a target may list several encryption
//! certificates, each used from the time it takes over until its notAfter.
//! New envelopes are encrypted for the one that took over last among those
//! valid now; its thumbprint is the JWE `kid`, so a receiver holding both
//! keys during the overlap knows which one opens an envelope.

use std::collections::BTreeMap;
use std::sync::Arc;

use ozg_adapter_sdk::RecipientCert;

/// One certificate of a target and when it is used.
#[derive(Debug, Clone)]
pub struct KeyWindow {
    pub cert: Arc<RecipientCert>,
    /// Takes over at (seconds since the epoch): the later of its notBefore
    /// and the configured `from`.
    pub start: i64,
    /// Usable until (its notAfter).
    pub end: i64,
}

/// The window in use at `now`: among those that have started and not
/// ended, the one that started last (the later-listed one on a tie).
pub fn current(windows: &[KeyWindow], now: i64) -> Option<&KeyWindow> {
    windows
        .iter()
        .filter(|w| w.start <= now && now < w.end)
        .max_by_key(|w| w.start)
}

/// The next time after `now` at which any target's key in use may change.
pub fn next_change(rotations: &BTreeMap<String, Vec<KeyWindow>>, now: i64) -> Option<i64> {
    rotations
        .values()
        .flatten()
        .flat_map(|w| [w.start, w.end])
        .filter(|t| *t > now)
        .min()
}

/// A switch of a target's key: the target, the kid used until now and the one used from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    pub target: String,
    pub from_kid: Option<String>,
    pub to_kid: String,
    /// The new certificate's notAfter (seconds since the epoch).
    pub not_after: i64,
}

/// Which targets' keys in `targets` differ from those `rotations` say are
/// in use at `now`; applies them to `targets`.
pub fn apply(
    targets: &mut BTreeMap<String, Arc<RecipientCert>>,
    rotations: &BTreeMap<String, Vec<KeyWindow>>,
    now: i64,
) -> Vec<Switch> {
    let mut switches = Vec::new();
    for (target, windows) in rotations {
        let Some(w) = current(windows, now) else {
            continue;
        };
        let before = targets.get(target).map(|c| c.kid().to_owned());
        if before.as_deref() != Some(w.cert.kid()) {
            switches.push(Switch {
                target: target.clone(),
                from_kid: before,
                to_kid: w.cert.kid().to_owned(),
                not_after: w.end,
            });
            targets.insert(target.clone(), w.cert.clone());
        }
    }
    switches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Arc<RecipientCert> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../certs-example")
            .join(name);
        let c =
            ozg_adapter_sdk::keys::Certificate::from_pem(&std::fs::read(path).unwrap()).unwrap();
        Arc::new(RecipientCert::new(c).unwrap())
    }

    #[test]
    fn the_latest_started_valid_window_is_used_and_switches_are_reported_once() {
        let (a, b) = (cert("recipient-ec.pem"), cert("recipient-rsa.pem"));
        let windows = vec![
            KeyWindow {
                cert: a.clone(),
                start: 0,
                end: 300,
            },
            KeyWindow {
                cert: b.clone(),
                start: 100,
                end: 1000,
            },
        ];
        assert_eq!(current(&windows, 50).unwrap().cert.kid(), a.kid());
        assert_eq!(current(&windows, 100).unwrap().cert.kid(), b.kid());
        assert!(current(&windows, 1000).is_none());
        let rotations: BTreeMap<_, _> = [("t".to_owned(), windows)].into_iter().collect();
        assert_eq!(next_change(&rotations, 50), Some(100));
        assert_eq!(next_change(&rotations, 100), Some(300));
        assert_eq!(next_change(&rotations, 1000), None);

        let mut targets: BTreeMap<_, _> = [("t".to_owned(), a.clone())].into_iter().collect();
        assert!(apply(&mut targets, &rotations, 50).is_empty());
        let switched = apply(&mut targets, &rotations, 150);
        assert_eq!(
            switched,
            [Switch {
                target: "t".into(),
                from_kid: Some(a.kid().to_owned()),
                to_kid: b.kid().to_owned(),
                not_after: 1000,
            }]
        );
        assert_eq!(targets["t"].kid(), b.kid());
        assert!(apply(&mut targets, &rotations, 200).is_empty());
    }
}
