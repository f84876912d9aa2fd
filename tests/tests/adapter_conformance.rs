//! The built-in `http` and `amqp` adapters against the gateway's adapter
//! contract, checked by the SDK's harness (`ozg_adapter_sdk::conformance`):
//! the `http` adapter against a scriptable HTTPS receiver, the `amqp` adapter
//! against the local RabbitMQ. (`filedrop` runs it in its own crate.)

use std::sync::Arc;
use std::time::Duration;

use ozg_adapter_sdk::conformance::{assert_conformant, run, Remote, Rig, RigFuture};
use ozg_adapter_sdk::Adapter;
use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;

struct HttpRig {
    receiver: Receiver,
}

impl Rig for HttpRig {
    fn adapter(&mut self, remote: Remote) -> RigFuture<'_, Option<Arc<dyn Adapter>>> {
        let url = match remote {
            Remote::Unreachable => format!("https://localhost:{}/inbox", free_port()),
            _ => self.receiver.url(),
        };
        self.receiver.set_mode(match remote {
            Remote::Takes | Remote::Unreachable => Mode::Accept,
            Remote::Busy => Mode::Status(503, None),
            Remote::Refuses => Mode::Status(422, None),
            Remote::Hangs => Mode::Hang,
        });
        Box::pin(async move {
            let http = ozg_adapter_http::Http::new(&ozg_adapter_http::HttpConfig {
                url,
                server_ca: demo("ca.pem"),
                client_certificate: None,
                client_key: None,
                timeout: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(1),
            })
            .expect("http adapter");
            Some(Arc::new(http) as Arc<dyn Adapter>)
        })
    }

    fn taken(&mut self) -> RigFuture<'_, Vec<String>> {
        let taken = self.receiver.received();
        Box::pin(async move { taken })
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(1)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_adapter_keeps_the_contract() {
    let mut rig = HttpRig {
        receiver: Receiver::start(Mode::Accept).await,
    };
    let checks = run(&mut rig).await;
    assert_conformant(&checks);
    assert!(checks.iter().all(|c| c.passed.is_some()), "{checks:#?}");
}

struct AmqpRig {
    channel: lapin::Channel,
    exchange: String,
    queue: String,
}

impl Rig for AmqpRig {
    fn adapter(&mut self, remote: Remote) -> RigFuture<'_, Option<Arc<dyn Adapter>>> {
        let (url, key) = match remote {
            Remote::Takes => (AMQP_URL.to_owned(), "conformance"),
            Remote::Unreachable => (
                format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port()),
                "conformance",
            ),
            // Nothing bound to this key: the broker returns it (mandatory).
            Remote::Busy => (AMQP_URL.to_owned(), "no-queue-is-bound-to-this"),
            // A broker takes or cannot take; it never refuses a message for good.
            Remote::Refuses | Remote::Hangs => {
                return Box::pin(async { None });
            }
        };
        let exchange = self.exchange.clone();
        Box::pin(async move {
            let amqp = ozg_adapter_amqp::Amqp::new(&ozg_adapter_amqp::AmqpConfig {
                url,
                exchange,
                routing_key: key.into(),
                ca: None,
                client_certificate: None,
                client_key: None,
                confirm_timeout: Duration::from_secs(5),
            })
            .expect("amqp adapter");
            Some(Arc::new(amqp) as Arc<dyn Adapter>)
        })
    }

    fn taken(&mut self) -> RigFuture<'_, Vec<String>> {
        Box::pin(async move {
            amqp_drain(&self.channel, &self.queue)
                .await
                .into_iter()
                .map(|(id, _, _)| id)
                .collect()
        })
    }

    fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amqp_adapter_keeps_the_contract() {
    let channel = amqp_channel().await;
    let exchange = format!("conformance-{}", uuid::Uuid::new_v4());
    let queue = format!("{exchange}-q");
    amqp_declare(&channel, &exchange, &queue, "conformance").await;
    let mut rig = AmqpRig {
        channel,
        exchange,
        queue,
    };
    let checks = run(&mut rig).await;
    assert_conformant(&checks);
    let skipped: Vec<_> = checks
        .iter()
        .filter(|c| c.passed.is_none())
        .map(|c| c.rule)
        .collect();
    assert_eq!(skipped, ["refusal-parks", "hang-ends-in-time"]);
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    let _ = rig
        .channel
        .queue_delete(&rig.queue, QueueDeleteOptions::default())
        .await;
    let _ = rig
        .channel
        .exchange_delete(&rig.exchange, ExchangeDeleteOptions::default())
        .await;
}
