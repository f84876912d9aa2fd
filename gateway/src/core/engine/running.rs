//! The engine's running target tasks, and changing them while it runs (a
//! reload): a new target gets a task, a changed one gets its new settings, a
//! removed one stops like at shutdown — its running attempts finish within the
//! grace period, and whatever waits for it stays in the store, untouched, until
//! the target is configured again or an operator discards it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{run_target, Engine, TargetRuntime};

/// One target's task: its settings and its own stop signal.
struct Task {
    settings: watch::Sender<Arc<TargetRuntime>>,
    stop: Arc<watch::Sender<bool>>,
}

/// What [`Running::reconcile`] did, by target id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub started: Vec<String>,
    pub updated: Vec<String>,
    pub stopped: Vec<String>,
}

/// The running engine.
pub struct Running {
    engine: Arc<Engine>,
    shutdown: watch::Receiver<bool>,
    tasks: Mutex<BTreeMap<String, Task>>,
    /// Every task spawned and not yet awaited by [`Running::join`].
    handles: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Running {
    pub(super) fn new(engine: Arc<Engine>, shutdown: watch::Receiver<bool>) -> Self {
        Running {
            engine,
            shutdown,
            tasks: Mutex::default(),
            handles: Mutex::default(),
        }
    }

    /// Makes the running tasks match `targets`: start new ones, hand changed
    /// settings to the others (every listed target counts as updated), stop the
    /// ones no longer listed.
    pub fn reconcile(&self, targets: Vec<Arc<TargetRuntime>>) -> Reconciled {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = Reconciled::default();
        let wanted: BTreeMap<String, Arc<TargetRuntime>> =
            targets.into_iter().map(|t| (t.id.clone(), t)).collect();
        let gone: Vec<String> = tasks
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(task) = tasks.remove(&id) {
                let _ = task.stop.send(true);
                self.engine.breakers.remove(&id);
                done.stopped.push(id);
            }
        }
        for (id, runtime) in wanted {
            if let Some(task) = tasks.get(&id) {
                let _ = task.settings.send(runtime);
                done.updated.push(id);
                continue;
            }
            let (settings, settings_rx) = watch::channel(runtime);
            let (stop, stop_rx) = watch::channel(false);
            let stop = Arc::new(stop);
            // The daemon's shutdown stops every task; a reload stops one.
            let mut shutdown = self.shutdown.clone();
            let forward = stop.clone();
            let notify = self.engine.wakers.of(&id);
            let engine = self.engine.clone();
            let handle = tokio::spawn(async move {
                tokio::select! {
                    _ = run_target(settings_rx, engine, notify, stop_rx) => {}
                    _ = async {
                        let _ = shutdown.wait_for(|s| *s).await;
                        let _ = forward.send(true);
                        std::future::pending::<()>().await
                    } => {}
                }
            });
            self.handles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
            tasks.insert(id.clone(), Task { settings, stop });
            done.started.push(id);
        }
        done
    }

    /// A running target's current settings and adapter.
    pub fn runtime(&self, id: &str) -> Option<Arc<TargetRuntime>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.get(id).map(|t| t.settings.borrow().clone())
    }

    /// Waits until every task has stopped (after the daemon's shutdown began).
    pub async fn join(&self) {
        loop {
            let handles: Vec<_> =
                std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
            if handles.is_empty() {
                return;
            }
            for h in handles {
                let _ = h.await;
            }
        }
    }
}
