//! Cluster mode's work queue backend ([`super::queue::WorkQueue`]): RabbitMQ
//! quorum queues, through `lapin`.
//!
//! PostgreSQL holds every delivery's state (see `store::postgres`); the broker
//! carries the *work*: one small message per delivery that is due — its
//! message id and a ticket (the attempt count it takes the delivery at; see
//! `store::Take`). Envelopes never travel through the broker.
//!
//! # Topology (declared at start by every instance; `<p>` is `broker.prefix`)
//!
//! ```text
//!  outbox (PostgreSQL) ──relay, confirms + mandatory──┐
//!                                                     │ due now            due later
//!                                                     ▼                        ▼
//!                                        exchange <p>.deliver      exchange <p>.wait.<delay> (fanout)
//!                                        (direct, key = target)               │
//!                                                     │                       ▼
//!                                                     │            queue <p>.wait.<delay>  (quorum,
//!                                                     │◀── dead-lettered ─ x-message-ttl = delay)
//!                                                     ▼      after the delay
//!                                        queue <p>.deliver.<target>  (quorum, single active consumer,
//!                                           │  x-overflow reject-publish, x-max-length, x-delivery-limit,
//!                                           │  dead-letter exchange <p>.parked, at-least-once)
//!                                           │                    │ redelivered more than delivery_limit
//!                       consumer: take in PostgreSQL,            ▼ times (consumers died mid-attempt)
//!                       deliver, record, then ack    exchange <p>.parked → queue <p>.parked.<target>
//!                                                                │
//!                                                  consumer: park it in PostgreSQL, ack
//! ```
//!
//! * **Retries keep the retry policy's schedule**: the outcome (with its due
//!   time) is recorded in PostgreSQL with an outbox row; the relay publishes
//!   it to the wait queue of the longest delay (1 s · 2^k, up to 2^17 s) not
//!   after the due time. A message that comes back early finds its delivery
//!   not due yet and goes to the next shorter wait queue: it arrives at most
//!   a fraction of a second late, whatever the delay.
//! * **Concurrency limit and circuit breaker across instances**: each target's
//!   queue has a single active consumer (`x-single-active-consumer`); the
//!   instance holding it runs the target's breaker and its `concurrency`
//!   (= the consumer's prefetch). Other instances stand by and take over when
//!   that consumer's connection goes (an instance killed, a network split):
//!   the broker hands its unacknowledged messages, marked redelivered, to the
//!   next consumer. Targets spread over instances by who subscribed first.
//! * **Nothing lost between PostgreSQL and the broker**: a message is wanted
//!   in the same transaction as the change that needs it (the outbox); the
//!   relay deletes the row only after the broker confirmed the publish.
//!   Consumers acknowledge only after the outcome is committed.

mod broker;
mod jobs;
mod topology;

pub(super) use super::queue::QueueError;
pub use broker::{Broker, BrokerConfig, BrokerState};

/// What a queue message says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkMessage {
    /// The delivery's message id.
    #[serde(rename = "m")]
    pub message_id: String,
    /// The attempt count it takes the delivery at.
    #[serde(rename = "t")]
    pub ticket: u32,
}

impl From<lapin::Error> for QueueError {
    fn from(e: lapin::Error) -> Self {
        QueueError::Broker(broker::error_class(&e))
    }
}
