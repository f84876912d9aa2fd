//! The work queue of cluster mode, as the core sees it: a target's queue as a
//! stream of [`Job`]s, publishing the messages the outbox wants, and whether
//! the broker is connected. [`super::rabbitmq`] is the backend (RabbitMQ
//! quorum queues); its module documentation draws the topology.
//!
//! A queue message names a delivery by its message id and a *ticket*, the
//! attempt count it takes the delivery at (see [`super::Take`]): the state
//! stays in the store, the queue carries the work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Wanted;

pub type QueueFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueueError>> + Send + 'a>>;

/// A broker failure; nothing was lost by it (the caller keeps the work and tries again).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the broker is not connected")]
    Disconnected,
    #[error("broker: {0}")]
    Broker(String),
    #[error("the broker did not confirm in time")]
    Timeout,
}

/// Which of a target's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The deliveries due.
    Deliver,
    /// Messages the broker gave up on (their consumers kept dying mid-attempt).
    Parked,
}

/// How a job is settled with the broker.
pub trait Settle: Send + Sync {
    fn ack(&self) -> QueueFuture<'_, ()>;
    fn requeue(&self) -> QueueFuture<'_, ()>;
}

/// One queue message: what to take, and how to settle it.
pub struct Job {
    pub message_id: String,
    pub ticket: u32,
    /// The broker gives it again after its consumer went without settling it.
    pub redelivered: bool,
    settle: Box<dyn Settle>,
}

impl Job {
    pub fn new(message_id: String, ticket: u32, redelivered: bool, settle: Box<dyn Settle>) -> Job {
        Job {
            message_id,
            ticket,
            redelivered,
            settle,
        }
    }

    /// Done with it: the broker forgets it.
    pub async fn ack(&self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Not now: back to the queue for another try.
    pub async fn requeue(&self) -> Result<(), QueueError> {
        self.settle.requeue().await
    }
}

/// The jobs of one queue. Dropping it ends its consumer; messages not yet
/// acknowledged go back to the queue.
pub struct Jobs {
    rx: mpsc::Receiver<Job>,
}

impl Jobs {
    pub fn new(rx: mpsc::Receiver<Job>) -> Jobs {
        Jobs { rx }
    }

    pub async fn recv(&mut self) -> Option<Job> {
        self.rx.recv().await
    }
}

/// The work queue.
pub trait WorkQueue: Send + Sync {
    /// Consumes `target`'s queue of `kind` with at most `prefetch` messages unsettled.
    fn jobs(self: Arc<Self>, target: &str, kind: Kind, prefetch: u16) -> Jobs;
    /// Publishes a message for each of `wanted` (due later: through a wait
    /// queue) and returns those the broker confirmed.
    fn publish(&self, wanted: Vec<Wanted>, now_ms: i64) -> QueueFuture<'_, Vec<Wanted>>;
    /// Whether the broker is connected now.
    fn connected(&self) -> bool;
    /// Resolves once the broker is connected.
    fn until_connected(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}
