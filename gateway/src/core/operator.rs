//! Operators' view of the delivery queues and their actions on them: targets
//! with their queues, breaker, pause, oldest waiting delivery and last error;
//! deliveries by filter and page; one submission with its Laufzettel;
//! retry / park / discard one delivery or all parked ones of a target; pause
//! and resume a target.
//!
//! Every call takes the [`Operator`] who asks and shows or touches only what
//! belongs to their tenants (and, for a vendor's certificate, their targets).
//! What they may not see answers exactly as what does not exist (`404`).
//! Every action is audited by the store with the operator's id and the
//! tenant of what was acted on, in the same commit as the change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::Config;
use crate::core::engine::pauses::{self, Paused, Pauses};
use crate::core::engine::{BreakerBoard, BreakerView, Wakers};
use crate::core::refusal::{Kind, Refusal};
use crate::model::audit::{AuditEvent, AuditRecord};
use crate::model::delivery::{
    Action, Actor, DeliveryQuery, DeliveryRow, DeliveryState, Operated, TargetHealth,
};
use crate::model::portal::Operator;
use crate::model::submission::SubmissionStatus;
use crate::model::time::{now_ms, rfc3339_ms};
use crate::store::{Store, StoreError};

/// Most deliveries one page holds.
pub const PAGE_MAX: usize = 1000;

/// What the operator API knows of a target besides its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetEntry {
    pub tenant: Option<String>,
    /// The adapter's type (`http`, `amqp`, `filedrop`, `xta`).
    pub adapter: &'static str,
    pub description: Option<String>,
    /// Registered over the operator API (else: from the config file).
    pub registered: bool,
}

/// A route as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    pub leistung: String,
    pub destination: String,
    pub targets: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `config` (the file) or `api` (registered at run time).
    pub origin: &'static str,
}

/// Which tenant each target and portal belongs to (from the config; a reload
/// replaces it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    pub targets: BTreeMap<String, TargetEntry>,
    pub portals: BTreeMap<String, Option<String>>,
    pub routes: Vec<RouteEntry>,
}

impl Directory {
    pub fn of(config: &Config) -> Directory {
        Directory {
            targets: config
                .targets
                .iter()
                .map(|(id, t)| {
                    let entry = TargetEntry {
                        tenant: t.tenant.clone(),
                        adapter: t.adapter.kind(),
                        description: t.description.clone(),
                        registered: t.registered,
                    };
                    (id.clone(), entry)
                })
                .collect(),
            portals: config
                .portals
                .iter()
                .map(|p| (p.id.clone(), p.tenant.clone()))
                .collect(),
            routes: config
                .routes
                .iter()
                .map(|r| RouteEntry {
                    leistung: r.leistung.clone(),
                    destination: r.destination.clone(),
                    targets: r.targets.clone(),
                    tenant: r.tenant.clone(),
                    origin: if r.registered { "api" } else { "config" },
                })
                .collect(),
        }
    }

    /// The routes `op` sees: their tenant's, or ones that name a target of theirs.
    pub fn routes_for(&self, op: &Operator) -> Vec<RouteEntry> {
        self.routes
            .iter()
            .filter(|r| {
                op.sees_all()
                    || (op.targets.is_none()
                        && r.tenant.is_some()
                        && op.sees_tenant(r.tenant.as_deref()))
                    || r.targets.iter().any(|t| self.sees(op, t))
            })
            .cloned()
            .collect()
    }

    pub fn tenant_of(&self, target: &str) -> Option<&str> {
        self.targets.get(target).and_then(|t| t.tenant.as_deref())
    }

    /// Whether `op` sees what portal `id` sent (a vendor sees only its targets').
    pub fn sees_portal(&self, op: &Operator, id: &str) -> bool {
        op.targets.is_none() && op.sees_tenant(self.portals.get(id).and_then(|t| t.as_deref()))
    }

    /// Whether `op` sees target `id`. A target no longer configured (its
    /// deliveries stay in the store) belongs to no tenant.
    pub fn sees(&self, op: &Operator, id: &str) -> bool {
        op.sees_target(id, self.tenant_of(id))
    }
}

/// A target as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// `None` for a target no longer configured whose deliveries remain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `config` (the file), `api` (registered at run time), or `none` (no
    /// longer configured; its deliveries remain).
    pub origin: &'static str,
    /// Deliveries per state (states without any are left out).
    pub queue: BTreeMap<&'static str, u64>,
    pub breaker: BreakerView,
    /// Set while an operator has paused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<Paused>,
    /// When the submission of its oldest waiting delivery was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_waiting_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_waiting_seconds: Option<u64>,
    /// The newest error of a delivery waiting for a retry or parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

/// One page of deliveries; `next` is the `after` of the next page.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub deliveries: Vec<DeliveryRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A submission as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct SubmissionView {
    #[serde(flatten)]
    pub status: SubmissionStatus,
    pub portal: String,
    pub breakers: BTreeMap<String, BreakerView>,
    /// Its audit records, in order.
    pub laufzettel: Vec<AuditRecord>,
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub target: String,
    /// The delivery's state now.
    pub state: DeliveryState,
}

/// The operator's queue tools.
pub struct Operations {
    pub store: Arc<dyn Store>,
    /// A retried delivery is due now: its target's task is woken.
    pub wakers: Arc<Wakers>,
    /// The targets' circuit breakers, as the engine publishes them.
    pub breakers: Arc<BreakerBoard>,
    /// Targets paused by an operator.
    pub pauses: Arc<Pauses>,
    /// Targets' and portals' tenants (a reload replaces it).
    pub directory: ArcSwap<Directory>,
    /// A message waiting in a box longer than this is marked `pickup_overdue`.
    pub overdue_after: std::time::Duration,
    /// The time zone of the case statistics' days.
    pub zone: crate::model::cases::StatsZone,
}

fn unavailable(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "operator request failed");
    Refusal::unavailable("the store cannot be reached right now; retry later")
}

fn no_target(id: &str) -> Refusal {
    Refusal::not_found(format!("no target {id}"))
}

impl Operations {
    /// With an empty directory (no tenants, no targets known yet).
    pub fn new(
        store: Arc<dyn Store>,
        wakers: Arc<Wakers>,
        breakers: Arc<BreakerBoard>,
        pauses: Arc<Pauses>,
        overdue_after: std::time::Duration,
    ) -> Operations {
        Operations {
            store,
            wakers,
            breakers,
            pauses,
            directory: ArcSwap::from_pointee(Directory::default()),
            overdue_after,
            zone: Default::default(),
        }
    }

    /// The targets `op` sees, configured or with deliveries left in the store.
    pub async fn targets(&self, op: &Operator) -> Result<Vec<TargetView>, Refusal> {
        let dir = self.directory.load_full();
        let depths = self.store.queue_depths().await.map_err(unavailable)?;
        let health = self.store.target_health().await.map_err(unavailable)?;
        let oldest: BTreeMap<String, i64> = self
            .store
            .oldest_waiting(crate::model::delivery::waiting_targets(&depths))
            .await
            .map_err(unavailable)?
            .into_iter()
            .collect();
        let mut ids: BTreeSet<String> = dir.targets.keys().cloned().collect();
        ids.extend(depths.iter().map(|d| d.target.clone()));
        let health: BTreeMap<&str, &TargetHealth> =
            health.iter().map(|h| (h.target.as_str(), h)).collect();
        let breakers: BTreeMap<String, BreakerView> = self.breakers.views().into_iter().collect();
        let now = now_ms();
        Ok(ids
            .into_iter()
            .filter(|id| dir.sees(op, id))
            .map(|id| {
                let entry = dir.targets.get(&id);
                let mut queue = BTreeMap::new();
                for d in depths.iter().filter(|d| d.target == id && d.count > 0) {
                    queue.insert(d.state.as_str(), d.count);
                }
                let h = health.get(id.as_str());
                let oldest = oldest.get(&id).copied();
                TargetView {
                    tenant: entry.and_then(|e| e.tenant.clone()),
                    adapter: entry.map(|e| e.adapter),
                    description: entry.and_then(|e| e.description.clone()),
                    origin: match entry {
                        Some(e) if e.registered => "api",
                        Some(_) => "config",
                        None => "none",
                    },
                    queue,
                    breaker: breakers.get(&id).cloned().unwrap_or_default(),
                    paused: self.pauses.get(&id),
                    oldest_waiting_at: oldest.map(rfc3339_ms),
                    oldest_waiting_seconds: oldest.map(|ms| ((now - ms).max(0) / 1000) as u64),
                    last_error: h.and_then(|h| h.last_error.clone()),
                    last_error_at: h.and_then(|h| h.last_error_ms).map(rfc3339_ms),
                    id,
                }
            })
            .collect())
    }

    /// One target `op` sees.
    pub async fn target(&self, op: &Operator, id: &str) -> Result<TargetView, Refusal> {
        self.targets(op)
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| no_target(id))
    }

    /// Pauses (`Some(reason)`, the reason may be empty) or resumes (`None`) a
    /// configured target; kept in the store, audited.
    pub async fn pause(
        &self,
        op: &Operator,
        id: &str,
        pause: Option<Option<String>>,
    ) -> Result<TargetView, Refusal> {
        let dir = self.directory.load_full();
        if !dir.targets.contains_key(id) || !dir.sees(op, id) {
            return Err(no_target(id));
        }
        let by = Actor::new(op.id.clone(), dir.tenant_of(id));
        let paused = pause.map(|reason| Paused {
            by: op.id.clone(),
            since: rfc3339_ms(now_ms()),
            reason: reason.filter(|r| !r.is_empty()),
        });
        let value = paused
            .as_ref()
            .map(|p| serde_json::to_string(p).unwrap_or_default());
        let change = if paused.is_some() {
            "paused"
        } else {
            "resumed"
        };
        let event = AuditEvent::changed("target", id, change, None, &by);
        self.store
            .set_setting(pauses::KIND, id, value, event)
            .await
            .map_err(unavailable)?;
        self.pauses.set(id, paused);
        self.wakers.wake(id);
        tracing::info!(target_id = id, operator = %op.id, change, "operator action");
        self.target(op, id).await
    }

    /// A page of the deliveries `op` sees that match `q`.
    pub async fn deliveries(&self, op: &Operator, mut q: DeliveryQuery) -> Result<Page, Refusal> {
        let dir = self.directory.load_full();
        q.limit = q.limit.clamp(1, PAGE_MAX);
        if !op.sees_all() {
            // The targets they see: configured ones, and ones with deliveries
            // left whose tenant (none) they see.
            let mut visible: BTreeSet<String> = dir
                .targets
                .keys()
                .filter(|t| dir.sees(op, t))
                .cloned()
                .collect();
            if op.tenants.is_none() {
                if let Some(mine) = &op.targets {
                    visible.extend(mine.iter().cloned());
                }
            }
            let wanted = match q.targets.take() {
                Some(asked) => asked.into_iter().filter(|t| visible.contains(t)).collect(),
                None => visible.into_iter().collect(),
            };
            q.targets = Some(wanted);
        }
        let limit = q.limit;
        let deliveries = self.store.deliveries(q).await.map_err(unavailable)?;
        let next = (deliveries.len() == limit)
            .then(|| deliveries.last().map(|d| d.message_id.clone()))
            .flatten();
        Ok(Page { deliveries, next })
    }

    /// One submission with the deliveries `op` sees, their targets' breakers
    /// and its Laufzettel (without records about targets `op` does not see).
    /// Seen when its portal or one of its targets is `op`'s; else `404`.
    pub async fn submission(&self, op: &Operator, id: &str) -> Result<SubmissionView, Refusal> {
        let missing = || Refusal::not_found(format!("no submission {id}"));
        if id.len() > crate::core::status::MAX_ID {
            return Err(missing());
        }
        let mut s = self
            .store
            .submission(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(missing)?;
        let dir = self.directory.load_full();
        let portal_seen = dir.sees_portal(op, &s.portal);
        // Deliveries to targets of other tenants are not shown, even of a
        // submission their own portal sent.
        s.deliveries.retain(|d| dir.sees(op, &d.target));
        if !portal_seen && s.deliveries.is_empty() {
            return Err(missing());
        }
        crate::core::status::mark_overdue(&mut s, self.overdue_after);
        let mut laufzettel = self.store.trace(id).await.map_err(unavailable)?;
        if !op.sees_all() {
            laufzettel.retain(|r| r.target.as_deref().is_none_or(|t| dir.sees(op, t)));
        }
        s.replies = crate::core::status::replies_in(&laufzettel);
        let breakers = s
            .deliveries
            .iter()
            .filter_map(|d| Some((d.target.clone(), self.breakers.view(&d.target)?)))
            .collect();
        Ok(SubmissionView {
            portal: s.portal.clone(),
            status: s,
            breakers,
            laufzettel,
        })
    }

    /// Retries (due now), parks or discards one delivery `op` sees.
    pub async fn act(
        &self,
        op: &Operator,
        message_id: &str,
        action: Action,
    ) -> Result<Done, Refusal> {
        let missing = || Refusal::not_found(format!("no delivery {message_id}"));
        let dir = self.directory.load_full();
        let found = self
            .store
            .delivery(message_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(missing)?;
        if !dir.sees(op, &found.target) {
            return Err(missing());
        }
        let by = Actor::new(op.id.clone(), dir.tenant_of(&found.target));
        match self
            .store
            .operate(message_id, action, &by)
            .await
            .map_err(unavailable)?
        {
            Operated::Done { target, state } => {
                if action == Action::Retry {
                    self.wakers.wake(&target);
                }
                tracing::info!(message_id, operator = %op.id, action = action.as_str(), "operator action");
                Ok(Done { target, state })
            }
            Operated::NotFound => Err(missing()),
            Operated::WrongState(s) => Err(Refusal::new(
                Kind::Conflict,
                "wrong-state",
                format!(
                    "delivery {message_id} is {}; {}",
                    s.as_str(),
                    match action {
                        Action::Park => "only pending or waiting deliveries can be parked",
                        Action::Retry => "only parked or waiting deliveries can be retried",
                        Action::Discard =>
                            "delivered, discarded and running deliveries cannot be discarded",
                    }
                ),
            )),
        }
    }

    /// Retries or discards every parked delivery of a target `op` sees;
    /// returns how many it touched (one changed meanwhile is left out).
    pub async fn act_on_parked(
        &self,
        op: &Operator,
        target: &str,
        action: Action,
    ) -> Result<u64, Refusal> {
        let dir = self.directory.load_full();
        if !dir.sees(op, target) {
            return Err(no_target(target));
        }
        let mut touched = 0u64;
        // Each action moves the delivery out of `parked`, so the first page
        // is new every time; `after` guards against one that stays.
        let mut after = None;
        loop {
            let page = self
                .store
                .deliveries(DeliveryQuery {
                    state: Some(DeliveryState::Parked),
                    targets: Some(vec![target.to_owned()]),
                    after: after.clone(),
                    limit: PAGE_MAX,
                    ..Default::default()
                })
                .await
                .map_err(unavailable)?;
            let Some(last) = page.last() else { break };
            after = Some(last.message_id.clone());
            for d in &page {
                match self.act(op, &d.message_id, action).await {
                    Ok(_) => touched += 1,
                    Err(r) if r.kind == Kind::Conflict || r.kind == Kind::NotFound => {}
                    Err(r) => return Err(r),
                }
            }
        }
        Ok(touched)
    }

    /// Loads the pauses kept in the store (at start, and now and then: in a
    /// cluster another instance may have changed them).
    pub async fn refresh_pauses(&self) -> Result<(), StoreError> {
        let rows = self.store.settings(pauses::KIND).await?;
        self.pauses.replace(Pauses::parse(rows));
        Ok(())
    }
}
