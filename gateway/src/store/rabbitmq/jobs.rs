//! A target's queue as a stream of jobs: one task keeps a consumer on it
//! across reconnects (manual acks, prefetch = the target's concurrency) and
//! hands each message on. Dropping [`Jobs`] cancels the consumer; messages
//! not acknowledged by then go back to the queue for the next consumer.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::acker::Acker;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::mpsc;

use super::{Broker, QueueError, WorkMessage};
use crate::store::queue::{Job, Jobs, Kind, QueueFuture, Settle};

/// Settles one message on the channel it came on.
struct Settler(Acker);

impl Settle for Settler {
    fn ack(&self) -> QueueFuture<'_, ()> {
        Box::pin(async move {
            self.0.ack(BasicAckOptions::default()).await?;
            Ok(())
        })
    }

    fn requeue(&self) -> QueueFuture<'_, ()> {
        Box::pin(async move {
            self.0
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await?;
            Ok(())
        })
    }
}

impl Broker {
    /// Consumes `target`'s queue with at most `prefetch` unacknowledged messages.
    pub(super) fn consume(self: Arc<Self>, target: &str, kind: Kind, prefetch: u16) -> Jobs {
        let (tx, rx) = mpsc::channel(usize::from(prefetch.max(1)));
        tokio::spawn(consume(self, target.to_owned(), kind, prefetch, tx));
        Jobs::new(rx)
    }
}

async fn consume(
    broker: Arc<Broker>,
    target: String,
    kind: Kind,
    prefetch: u16,
    tx: mpsc::Sender<Job>,
) {
    let queue = match kind {
        Kind::Deliver => broker.names.deliver_queue(&target),
        Kind::Parked => broker.names.parked_queue(&target),
    };
    let mut failures = 0u32;
    loop {
        let session = tokio::select! {
            s = broker.session() => s,
            _ = tx.closed() => return,
        };
        let consumer = async {
            broker.declare_target(&session, &target).await?;
            let ch = session.conn.create_channel().await?;
            ch.basic_qos(prefetch.max(1), BasicQosOptions::default())
                .await?;
            let consumer = ch
                .basic_consume(
                    &queue,
                    "",
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, QueueError>((ch, consumer))
        }
        .await;
        let (ch, mut consumer) = match consumer {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::error!(target_id = %target, queue = %queue, error = %e, "cannot consume the target's queue; retrying");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let delivery = tokio::select! {
                d = consumer.next() => d,
                _ = tx.closed() => {
                    let _ = ch.close(200, "consumer stops").await;
                    return;
                }
            };
            let Some(Ok(d)) = delivery else { break };
            let Ok(m) = serde_json::from_slice::<WorkMessage>(&d.data) else {
                // Not ours (someone published by hand): dropped, with a trace.
                tracing::error!(queue = %queue, bytes = d.data.len(), "a message in the queue is not a gateway work message; dropped");
                let _ = d
                    .acker
                    .nack(BasicNackOptions {
                        requeue: false,
                        ..Default::default()
                    })
                    .await;
                continue;
            };
            let job = Job::new(
                m.message_id,
                m.ticket,
                d.redelivered,
                Box::new(Settler(d.acker)),
            );
            if tx.send(job).await.is_err() {
                // Dropped: the channel's close hands unacknowledged messages back.
                let _ = ch.close(200, "consumer stops").await;
                return;
            }
        }
        // The stream ended: the connection or channel went; a new session comes.
        let _ = ch.close(200, "consumer restarts").await;
    }
}
