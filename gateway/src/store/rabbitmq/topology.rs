//! Names and declarations of the exchanges and queues (drawn in `store::rabbitmq`).
//! Declaring is idempotent: every instance declares at start, with the same
//! arguments (a queue declared before with other arguments is an error the
//! broker names — an operator changed them by hand).

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::BrokerConfig;

/// The wait queues' delays: 1 s · 2^k for k in 0..=17 (the longest ≈ 36 h).
const WAIT_STEPS: u32 = 18;
/// A message due sooner than this goes to the target's queue at once.
const DUE_NOW_MS: i64 = 250;

/// The wait queue delay (ms) for a message due in `remaining_ms`: the
/// longest that does not overshoot (the shortest, if even that does), or
/// `None` if it is due now.
pub fn wait_delay(remaining_ms: i64) -> Option<u64> {
    if remaining_ms <= DUE_NOW_MS {
        return None;
    }
    let mut delay = 1000u64;
    for _ in 1..WAIT_STEPS {
        if (delay * 2) as i64 > remaining_ms {
            break;
        }
        delay *= 2;
    }
    Some(delay)
}

fn delays() -> impl Iterator<Item = u64> {
    (0..WAIT_STEPS).map(|k| 1000u64 << k)
}

/// The names under one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names {
            prefix: prefix.to_owned(),
        }
    }
    pub fn deliver_exchange(&self) -> String {
        format!("{}.deliver", self.prefix)
    }
    pub fn parked_exchange(&self) -> String {
        format!("{}.parked", self.prefix)
    }
    pub fn deliver_queue(&self, target: &str) -> String {
        format!("{}.deliver.{target}", self.prefix)
    }
    pub fn parked_queue(&self, target: &str) -> String {
        format!("{}.parked.{target}", self.prefix)
    }
    /// The wait exchange and queue of one delay (same name).
    pub fn wait(&self, delay_ms: u64) -> String {
        format!("{}.wait.{delay_ms}ms", self.prefix)
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

const DURABLE: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: true,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};

/// The exchanges and wait queues every target shares.
pub async fn declare_shared(ch: &Channel, names: &Names) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for exchange in [names.deliver_exchange(), names.parked_exchange()] {
        ch.exchange_declare(
            &exchange,
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    }
    for delay in delays() {
        let name = names.wait(delay);
        ch.exchange_declare(&name, ExchangeKind::Fanout, durable, FieldTable::default())
            .await?;
        // Expired messages go on to the deliver exchange with their routing
        // key (the target), dead-lettered at least once (never dropped).
        let args = table(&[
            ("x-queue-type", text("quorum")),
            ("x-message-ttl", AMQPValue::LongLongInt(delay as i64)),
            ("x-dead-letter-exchange", text(&names.deliver_exchange())),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ]);
        ch.queue_declare(&name, DURABLE, args).await?;
        ch.queue_bind(
            &name,
            &name,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// A target's queue and parked queue.
pub async fn declare_target(
    ch: &Channel,
    names: &Names,
    config: &BrokerConfig,
    target: &str,
) -> Result<(), lapin::Error> {
    let parked = names.parked_queue(target);
    ch.queue_declare(&parked, DURABLE, table(&[("x-queue-type", text("quorum"))]))
        .await?;
    ch.queue_bind(
        &parked,
        &names.parked_exchange(),
        target,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let queue = names.deliver_queue(target);
    let args = table(&[
        ("x-queue-type", text("quorum")),
        ("x-single-active-consumer", AMQPValue::Boolean(true)),
        (
            "x-max-length",
            AMQPValue::LongLongInt(config.max_queue_length.min(i64::MAX as u64) as i64),
        ),
        ("x-overflow", text("reject-publish")),
        (
            "x-delivery-limit",
            AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
        ),
        ("x-dead-letter-exchange", text(&names.parked_exchange())),
        ("x-dead-letter-strategy", text("at-least-once")),
    ]);
    ch.queue_declare(&queue, DURABLE, args).await?;
    ch.queue_bind(
        &queue,
        &names.deliver_exchange(),
        target,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_never_overshoots_beyond_the_shortest_delay_and_due_messages_go_at_once() {
        assert_eq!(wait_delay(0), None);
        assert_eq!(wait_delay(-5_000), None);
        assert_eq!(wait_delay(250), None);
        assert_eq!(wait_delay(600), Some(1000));
        assert_eq!(wait_delay(1000), Some(1000));
        assert_eq!(wait_delay(1999), Some(1000));
        assert_eq!(wait_delay(2000), Some(2000));
        assert_eq!(wait_delay(300_000), Some(256_000));
        // Longer than the longest wait queue: the longest, then again.
        assert_eq!(wait_delay(i64::MAX / 4), Some(1000 << 17));
        // Following the chain from any remaining time ends within a second of it.
        for remaining in [1_500i64, 59_000, 3_600_000, 90_000_000] {
            let (mut left, mut hops) = (remaining, 0);
            while let Some(d) = wait_delay(left) {
                left -= d as i64;
                hops += 1;
            }
            assert!((-1000..=DUE_NOW_MS).contains(&left), "{remaining}: {left}");
            assert!(hops <= 20, "{remaining}: {hops} hops");
        }
    }
}
