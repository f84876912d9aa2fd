//! Key rotation. A target may list several encryption certificates, and
//! the gateway several seals, each used from the time it takes over until
//! its notAfter. New envelopes are encrypted for the one that took over last
//! among those valid now; its thumbprint is the JWE `kid`, so a receiver
//! holding both keys during the overlap knows which one opens an envelope.
//! Likewise the seal in use signs manifests, receipts and checkpoints; its
//! certificate travels in every signature (`x5c`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ozg_adapter_sdk::{RecipientCert, SealKey};

/// One certificate (a target's, or a seal with its key) and when it is used.
#[derive(Debug)]
pub struct KeyWindow<K = RecipientCert> {
    pub cert: Arc<K>,
    /// Takes over at (seconds since the epoch): the later of its notBefore
    /// and the configured `from`.
    pub start: i64,
    /// Usable until (its notAfter).
    pub end: i64,
}

impl<K> Clone for KeyWindow<K> {
    fn clone(&self) -> Self {
        KeyWindow {
            cert: self.cert.clone(),
            start: self.start,
            end: self.end,
        }
    }
}

/// The window in use at `now`: among those that have started and not
/// ended, the one that started last (the later-listed one on a tie).
pub fn current<K>(windows: &[KeyWindow<K>], now: i64) -> Option<&KeyWindow<K>> {
    windows
        .iter()
        .filter(|w| w.start <= now && now < w.end)
        .max_by_key(|w| w.start)
}

/// The next time after `now` at which a key in use of `windows` may change.
pub fn next_change<'a, K: 'a>(
    windows: impl IntoIterator<Item = &'a KeyWindow<K>>,
    now: i64,
) -> Option<i64> {
    windows
        .into_iter()
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

/// The gateway's seal over time: the one in use now, and, in a rotation
/// (`pki.seals`), when each takes over. Everything that signs asks for
/// [`Seals::current`] at the time it signs.
pub struct Seals {
    windows: Vec<KeyWindow<SealKey>>,
    now: ArcSwap<SealKey>,
}

/// A switch of the seal: the certificates' thumbprints before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSwitch {
    pub from_kid: String,
    pub to_kid: String,
    /// The new seal certificate's notAfter (seconds since the epoch).
    pub not_after: i64,
}

impl Seals {
    /// One seal, never switched.
    pub fn single(seal: Arc<SealKey>) -> Self {
        Seals {
            windows: Vec::new(),
            now: ArcSwap::new(seal),
        }
    }

    /// A rotation, with the seal in use at `now`; `None` when none is.
    pub fn rotating(windows: Vec<KeyWindow<SealKey>>, now: i64) -> Option<Self> {
        let first = current(&windows, now)?.cert.clone();
        Some(Seals {
            windows,
            now: ArcSwap::new(first),
        })
    }

    /// The seal to sign with now.
    pub fn current(&self) -> Arc<SealKey> {
        self.now.load_full()
    }

    /// The seals of a rotation and when each is used (empty for one seal).
    pub fn windows(&self) -> &[KeyWindow<SealKey>] {
        &self.windows
    }

    /// The next time after `now` at which the seal in use may change.
    pub fn next_change(&self, now: i64) -> Option<i64> {
        next_change(&self.windows, now)
    }

    /// Takes the seal `pki.seals` says is in use at `now`, if it is not
    /// the one in use already. With none in use (the last one expired),
    /// the one in use stays: its expiry has been alerted on for weeks.
    pub fn update(&self, now: i64) -> Option<SealSwitch> {
        let w = current(&self.windows, now)?;
        let before = self.current();
        let kid = |s: &SealKey| s.certificate().thumbprint();
        let (from_kid, to_kid) = (kid(&before), kid(&w.cert));
        if from_kid == to_kid {
            return None;
        }
        self.now.store(w.cert.clone());
        Some(SealSwitch {
            from_kid,
            to_kid,
            not_after: w.end,
        })
    }
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

    /// `a` in use over [0, 300), `b` taking over at 100 until 1000.
    fn two_windows<K>(a: &Arc<K>, b: &Arc<K>) -> Vec<KeyWindow<K>> {
        vec![
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
        ]
    }

    #[test]
    fn the_latest_started_valid_window_is_used_and_switches_are_reported_once() {
        let (a, b) = (cert("recipient-ec.pem"), cert("recipient-rsa.pem"));
        let windows = two_windows(&a, &b);
        assert_eq!(current(&windows, 50).unwrap().cert.kid(), a.kid());
        assert_eq!(current(&windows, 100).unwrap().cert.kid(), b.kid());
        assert!(current(&windows, 1000).is_none());
        let rotations: BTreeMap<_, _> = [("t".to_owned(), windows)].into_iter().collect();
        assert_eq!(next_change(rotations.values().flatten(), 50), Some(100));
        assert_eq!(next_change(rotations.values().flatten(), 100), Some(300));
        assert_eq!(next_change(rotations.values().flatten(), 1000), None);

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

    fn seal(name: &str) -> Arc<SealKey> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-example");
        let read = |ext: &str| std::fs::read(dir.join(format!("{name}.{ext}"))).unwrap();
        Arc::new(SealKey::from_pem(&read("pem"), &read("key")).unwrap())
    }

    #[test]
    fn the_seal_switches_once_at_its_time_and_stays_when_none_is_in_use() {
        let (a, b) = (seal("seal"), seal("fitconnect-signing"));
        let kid = |s: &SealKey| s.certificate().thumbprint();
        let windows = two_windows(&a, &b);
        assert!(Seals::rotating(windows.clone(), 1000).is_none());
        let seals = Seals::rotating(windows, 50).unwrap();
        assert_eq!(kid(&seals.current()), kid(&a));
        assert_eq!(seals.windows().len(), 2);
        assert_eq!(seals.next_change(50), Some(100));
        assert_eq!(seals.update(99), None);
        assert_eq!(
            seals.update(100),
            Some(SealSwitch {
                from_kid: kid(&a),
                to_kid: kid(&b),
                not_after: 1000,
            })
        );
        assert_eq!(kid(&seals.current()), kid(&b));
        assert_eq!(seals.update(500), None);
        // Past every window: the last seal stays in use.
        assert_eq!(seals.update(2000), None);
        assert_eq!(kid(&seals.current()), kid(&b));

        let single = Seals::single(a.clone());
        assert_eq!((single.next_change(0), single.update(5)), (None, None));
        assert_eq!(kid(&single.current()), kid(&a));
        assert!(single.windows().is_empty());
    }
}
