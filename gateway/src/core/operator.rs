//! Operators' actions on the delivery queues: list deliveries by state, retry
//! or discard one. Every action is audited with the operator's id by the store,
//! in the same commit as the change.

use std::sync::Arc;

use crate::core::engine::{BreakerBoard, BreakerView, Wakers};
use crate::core::refusal::{Kind, Refusal};
use crate::model::delivery::{Action, DeliveryRow, DeliveryState, Operated};
use crate::model::submission::SubmissionStatus;
use crate::store::{Store, StoreError};

/// Most deliveries one listing returns.
pub const LIST_LIMIT: usize = 1000;

/// The operator's queue tools.
pub struct Operations {
    pub store: Arc<dyn Store>,
    /// A retried delivery is due now: its target's task is woken.
    pub wakers: Arc<Wakers>,
    /// The targets' circuit breakers, as the engine publishes them.
    pub breakers: Arc<BreakerBoard>,
    /// A message waiting in a box longer than this is marked `pickup_overdue`.
    pub overdue_after: std::time::Duration,
}

fn unavailable(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "operator action failed");
    Refusal::unavailable("the store cannot be reached right now; retry later")
}

/// What an action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub target: String,
    /// The delivery's state now.
    pub state: DeliveryState,
}

impl Operations {
    /// Deliveries in `state` (optionally of one target), oldest change first.
    pub async fn deliveries(
        &self,
        state: DeliveryState,
        target: Option<&str>,
    ) -> Result<Vec<DeliveryRow>, Refusal> {
        self.store
            .deliveries(state, target, LIST_LIMIT)
            .await
            .map_err(unavailable)
    }

    /// Every target's circuit breaker.
    pub fn breakers(&self) -> Vec<(String, BreakerView)> {
        self.breakers.views()
    }

    /// One submission with its deliveries (last errors included) and the
    /// breakers of its targets, whichever portal sent it.
    pub async fn submission(
        &self,
        id: &str,
    ) -> Result<(SubmissionStatus, Vec<(String, BreakerView)>), Refusal> {
        let found = if id.len() > crate::core::status::MAX_ID {
            None
        } else {
            self.store.submission(id).await.map_err(unavailable)?
        };
        let mut s = found.ok_or_else(|| Refusal::not_found(format!("no submission {id}")))?;
        crate::core::status::mark_overdue(&mut s, self.overdue_after);
        let breakers = s
            .deliveries
            .iter()
            .filter_map(|d| Some((d.target.clone(), self.breakers.view(&d.target)?)))
            .collect();
        Ok((s, breakers))
    }

    /// Retries (due now) or discards a parked or waiting delivery.
    pub async fn act(
        &self,
        message_id: &str,
        action: Action,
        operator: &str,
    ) -> Result<Done, Refusal> {
        match self
            .store
            .operate(message_id, action, operator)
            .await
            .map_err(unavailable)?
        {
            Operated::Done { target, state } => {
                if action == Action::Retry {
                    self.wakers.wake(&target);
                }
                tracing::info!(message_id, operator, action = ?action, "operator action");
                Ok(Done { target, state })
            }
            Operated::NotFound => Err(Refusal::not_found(format!("no delivery {message_id}"))),
            Operated::WrongState(s) => Err(Refusal::new(
                Kind::Conflict,
                "wrong-state",
                format!(
                    "delivery {message_id} is {}; only parked or waiting deliveries can be retried or discarded",
                    s.as_str()
                ),
            )),
        }
    }
}
