//! The message boxes of `xta` targets: what a reader may list, fetch and
//! close, what a sender may ask about its messages, and the watch on messages
//! nobody picks up.
//!
//! A message is in the box while its delivery is `in_flight` with an
//! `offered` time (the engine put it there). A reader sees only the boxes of
//! its own targets. `close` records the delivery as `delivered` with its audit
//! record; closing again is harmless. Everything here returns a
//! [`BoxError`]; the listener maps it to the protocol's faults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::clock::Clock;
use crate::core::metrics::{Metrics, TargetLabel};
use crate::model::audit::AuditRecord;
use crate::model::delivery::BoxQuery;
use crate::model::delivery::{Action, Boxed, DeliveryInfo, DeliveryState, Operated, Recorded};
use crate::model::portal::{Portal, Reader};
use crate::model::submission::{idempotency_key_hash, SubmissionStatus};
use crate::store::{Store, StoreError};

/// Why a message-box request is refused.
#[derive(Debug, thiserror::Error)]
pub enum BoxError {
    #[error("no message {0}")]
    Unknown(String),
    #[error("message {0} is not in a box of this account")]
    NotYours(String),
    #[error("message {0} has been closed already")]
    Closed(String),
    #[error("message {id} cannot be cancelled: {why}")]
    NotCancellable { id: String, why: String },
    #[error("the message store cannot be read or written right now")]
    Store(#[from] StoreError),
}

/// The outcome of a `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Now delivered (and audited).
    Now,
    /// It was delivered before: nothing changed.
    Already,
}

/// A message taken from the box, with its sealed envelope.
#[derive(Debug)]
pub struct Fetched {
    pub entry: Boxed,
    pub envelope: Vec<u8>,
}

/// A page of a box's list.
#[derive(Debug)]
pub struct Page {
    pub entries: Vec<Boxed>,
    /// More messages match than this page holds.
    pub more: bool,
}

/// What a transport report tells about one message.
#[derive(Debug)]
pub struct Report {
    /// The XTA message id asked about.
    pub message_id: String,
    pub submission: SubmissionStatus,
    pub trace: Vec<AuditRecord>,
}

/// The message boxes.
pub struct MessageBoxes {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// Longest a message may wait for its reader before it is overdue.
    pub overdue_after: Duration,
    /// Most entries in one list.
    pub max_list_items: usize,
}

impl MessageBoxes {
    /// The reader's messages matching `query` (its targets filled in here).
    pub async fn list(&self, reader: &Reader, mut query: BoxQuery) -> Result<Page, BoxError> {
        let limit = query.limit.clamp(1, self.max_list_items.max(1));
        query.targets = reader.targets.clone();
        query.limit = limit + 1;
        let mut entries = self.store.mailbox(query).await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        Ok(Page { entries, more })
    }

    /// A delivery of one of the reader's targets, or why not.
    async fn own(&self, reader: &Reader, message_id: &str) -> Result<DeliveryInfo, BoxError> {
        let unknown = || BoxError::Unknown(message_id.to_owned());
        if message_id.len() > crate::core::status::MAX_ID {
            return Err(unknown());
        }
        let d = self.store.delivery(message_id).await?.ok_or_else(unknown)?;
        if !reader.targets.contains(&d.target) {
            return Err(BoxError::NotYours(message_id.to_owned()));
        }
        Ok(d)
    }

    /// One message of the reader's box with its sealed envelope.
    pub async fn fetch(&self, reader: &Reader, message_id: &str) -> Result<Fetched, BoxError> {
        let d = self.own(reader, message_id).await?;
        match (d.state, d.offered_ms) {
            (DeliveryState::InFlight, Some(_)) => {}
            (DeliveryState::Delivered, Some(_)) => return Err(BoxError::Closed(d.message_id)),
            _ => return Err(BoxError::Unknown(d.message_id)),
        }
        let query = BoxQuery {
            targets: vec![d.target.clone()],
            ids: vec![d.message_id.clone()],
            limit: 1,
            ..BoxQuery::default()
        };
        let entry = self
            .store
            .mailbox(query)
            .await?
            .pop()
            .ok_or_else(|| BoxError::Unknown(d.message_id.clone()))?;
        let envelope = self
            .store
            .envelope(&d.message_id)
            .await?
            .ok_or_else(|| BoxError::Unknown(d.message_id.clone()))?;
        self.metrics
            .box_fetched
            .get_or_create(&TargetLabel {
                target: d.target.clone(),
            })
            .inc();
        Ok(Fetched { entry, envelope })
    }

    /// The next message of the reader's box after `after` (the oldest if none).
    pub async fn next(
        &self,
        reader: &Reader,
        after: Option<String>,
    ) -> Result<Option<Fetched>, BoxError> {
        let page = self
            .list(
                reader,
                BoxQuery {
                    after,
                    limit: 1,
                    ..BoxQuery::default()
                },
            )
            .await?;
        match page.entries.into_iter().next() {
            Some(e) => self.fetch(reader, &e.message_id).await.map(Some),
            None => Ok(None),
        }
    }

    /// The reader has the message: delivered, audited. Closing again changes nothing.
    pub async fn close(&self, reader: &Reader, message_id: &str) -> Result<Closed, BoxError> {
        let d = self.own(reader, message_id).await?;
        match (d.state, d.offered_ms) {
            (DeliveryState::InFlight, Some(_)) => {}
            (DeliveryState::Delivered, Some(_)) => return Ok(Closed::Already),
            _ => return Err(BoxError::Unknown(d.message_id)),
        }
        let recorded = Recorded::Delivered { receipt: None };
        match self
            .store
            .record(&d.message_id, recorded, self.clock.now_ms())
            .await
        {
            Ok(()) => {}
            // Two closes at once: the other one recorded it.
            Err(StoreError::Corrupt(_)) => {
                return match self.store.delivery(&d.message_id).await? {
                    Some(now) if now.state == DeliveryState::Delivered => Ok(Closed::Already),
                    _ => Err(BoxError::Unknown(d.message_id)),
                }
            }
            Err(e) => return Err(e.into()),
        }
        let label = TargetLabel {
            target: d.target.clone(),
        };
        self.metrics.box_closed.get_or_create(&label).inc();
        self.metrics.attempt(&d.target, "delivered", "");
        if let Some(offered) = d.offered_ms {
            let waited = (self.clock.now_ms() - offered).max(0) as f64 / 1000.0;
            tracing::info!(message_id = %d.message_id, submission_id = %d.submission_id, target_id = %d.target, reader = %reader.account, waited_s = waited, "closed by its reader: delivered");
        }
        Ok(Closed::Now)
    }

    /// A receipt the reader sends for one of its messages (the xdomea 0202
    /// naming the package's ProzessID, which is the delivery's message id):
    /// kept as the delivery's receipt, audited. A message still in the box is
    /// closed by it.
    pub async fn confirm(
        &self,
        reader: &Reader,
        message_id: &str,
        receipt: String,
    ) -> Result<(), BoxError> {
        let d = self.own(reader, message_id).await?;
        let recorded = match (d.state, d.offered_ms) {
            (DeliveryState::InFlight, Some(_)) => Recorded::Delivered {
                receipt: Some(receipt),
            },
            (DeliveryState::Delivered, _) => Recorded::Confirmed { receipt },
            _ => return Err(BoxError::Unknown(d.message_id)),
        };
        let closes = matches!(recorded, Recorded::Delivered { .. });
        self.store
            .record(&d.message_id, recorded, self.clock.now_ms())
            .await?;
        if closes {
            self.metrics
                .box_closed
                .get_or_create(&TargetLabel {
                    target: d.target.clone(),
                })
                .inc();
        }
        tracing::info!(message_id = %d.message_id, submission_id = %d.submission_id, target_id = %d.target, reader = %reader.account, "receipt (xdomea 0202) kept");
        Ok(())
    }

    /// The submission a sender made under an XTA message id (its idempotency key).
    async fn sent(&self, sender: &Portal, message_id: &str) -> Result<SubmissionStatus, BoxError> {
        let unknown = || BoxError::Unknown(message_id.to_owned());
        let id = self
            .store
            .submission_by_key(&sender.id, &idempotency_key_hash(message_id))
            .await?
            .ok_or_else(unknown)?;
        self.store.submission(&id).await?.ok_or_else(unknown)
    }

    /// The state and trace of a message: one the sender sent, or one in the reader's box.
    pub async fn report(
        &self,
        sender: Option<&Portal>,
        reader: Option<&Reader>,
        message_id: &str,
    ) -> Result<Report, BoxError> {
        if message_id.len() > 255 {
            return Err(BoxError::Unknown(message_id.to_owned()));
        }
        let mut found = None;
        if let Some(p) = sender {
            match self.sent(p, message_id).await {
                Ok(s) => found = Some(s),
                Err(BoxError::Unknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let (None, Some(r)) = (&found, reader) {
            match self.own(r, message_id).await {
                Ok(d) => {
                    found = self.store.submission(&d.submission_id).await?.map(|mut s| {
                        // A reader learns about its own delivery only.
                        s.deliveries.retain(|x| x.message_id == d.message_id);
                        s
                    })
                }
                Err(BoxError::Unknown(_)) if found.is_none() && sender.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        let mut submission = found.ok_or_else(|| BoxError::Unknown(message_id.to_owned()))?;
        let before = self.clock.now_ms() - self.overdue_after.as_millis() as i64;
        for d in &mut submission.deliveries {
            d.mark_overdue(before);
            d.last_error = None;
        }
        let mut trace = self.store.trace(&submission.submission_id).await?;
        let own: Vec<&str> = submission
            .deliveries
            .iter()
            .map(|d| d.message_id.as_str())
            .collect();
        trace.retain(|r| r.message_id.as_deref().is_none_or(|m| own.contains(&m)));
        Ok(Report {
            message_id: message_id.to_owned(),
            submission,
            trace,
        })
    }

    /// Takes a sent message back where it has not reached its targets yet:
    /// every delivery still waiting (or in a box) is discarded, audited with
    /// the sender's account. Refused when every target has it already.
    pub async fn cancel(&self, sender: &Portal, message_id: &str) -> Result<usize, BoxError> {
        let s = self.sent(sender, message_id).await?;
        let by = crate::model::delivery::Actor::new(format!("xta:{}", sender.xta_account), None);
        let mut cancelled = 0;
        for d in &s.deliveries {
            match self
                .store
                .operate(&d.message_id, Action::Discard, &by)
                .await?
            {
                Operated::Done { .. } => cancelled += 1,
                Operated::NotFound | Operated::WrongState(_) => {}
            }
        }
        if cancelled == 0 {
            let why = if s
                .deliveries
                .iter()
                .all(|d| d.state == DeliveryState::Discarded)
            {
                "it was cancelled before"
            } else {
                "it has reached its targets or is being delivered right now"
            };
            return Err(BoxError::NotCancellable {
                id: message_id.to_owned(),
                why: why.into(),
            });
        }
        tracing::info!(submission_id = %s.submission_id, sender = %sender.id, deliveries = cancelled, "cancelled by its sender");
        Ok(cancelled)
    }

    /// Looks for overdue messages every `every`: sets the metric per target
    /// and logs once when a target's count grows.
    pub async fn watch_overdue(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let seen: Mutex<HashMap<String, u64>> = Mutex::default();
        loop {
            let before = self.clock.now_ms() - self.overdue_after.as_millis() as i64;
            match self.store.overdue(before).await {
                Ok(list) => {
                    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                    for (target, n) in seen.iter_mut() {
                        if !list.iter().any(|o| &o.target == target) {
                            *n = 0;
                            self.metrics
                                .pickup_overdue
                                .get_or_create(&TargetLabel {
                                    target: target.clone(),
                                })
                                .set(0);
                        }
                    }
                    for o in list {
                        let label = TargetLabel {
                            target: o.target.clone(),
                        };
                        self.metrics
                            .pickup_overdue
                            .get_or_create(&label)
                            .set(o.count as i64);
                        let before = seen.insert(o.target.clone(), o.count).unwrap_or(0);
                        if o.count > before {
                            tracing::warn!(target_id = %o.target, overdue = o.count, oldest_since = %crate::model::time::rfc3339_ms(o.oldest_ms), after = %humantime::format_duration(self.overdue_after), "messages not picked up by their reader in time: is the Fachverfahren fetching its box?");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for overdue messages"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;
