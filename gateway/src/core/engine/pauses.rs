//! Targets an operator paused: the engine attempts none of their deliveries
//! until they are resumed. Deliveries keep arriving and wait in the store.
//! The pauses are kept in the store (setting kind [`KIND`]) so they outlast a
//! restart, and every instance of a cluster reads them from there.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The store's setting kind for paused targets.
pub const KIND: &str = "pause";

/// Who paused a target, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paused {
    pub by: String,
    /// RFC 3339.
    pub since: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The paused targets, as the engine and the operator API see them.
#[derive(Debug, Default)]
pub struct Pauses {
    map: RwLock<BTreeMap<String, Paused>>,
    /// Woken on every change: paused targets' tasks look again.
    changed: Notify,
}

impl Pauses {
    pub fn get(&self, target: &str) -> Option<Paused> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .cloned()
    }

    pub fn is_paused(&self, target: &str) -> bool {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(target)
    }

    pub fn all(&self) -> BTreeMap<String, Paused> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces them all (as read from the store); wakes the targets' tasks
    /// when anything changed.
    pub fn replace(&self, now: BTreeMap<String, Paused>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if *map != now {
            *map = now;
            drop(map);
            self.changed.notify_waiters();
        }
    }

    /// Sets or clears one.
    pub fn set(&self, target: &str, paused: Option<Paused>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        match paused {
            Some(p) => map.insert(target.to_owned(), p),
            None => map.remove(target),
        };
        drop(map);
        self.changed.notify_waiters();
    }

    /// Resolves at the next change.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// The pauses kept in the store, as (target, JSON).
    pub fn parse(rows: Vec<(String, String)>) -> BTreeMap<String, Paused> {
        rows.into_iter()
            .map(|(t, v)| match serde_json::from_str(&v) {
                Ok(p) => (t, p),
                Err(e) => {
                    tracing::error!(target_id = %t, error = %e, "a stored pause cannot be read; the target counts as paused by an unknown operator");
                    (
                        t,
                        Paused {
                            by: "unknown".into(),
                            since: String::new(),
                            reason: None,
                        },
                    )
                }
            })
            .collect()
    }
}
