//! The connection to RabbitMQ, kept up by one task: connect, declare the
//! topology, hand out the session; when the connection goes (a broker
//! restart, a network failure), say so (`/readyz` is false), wait, connect
//! again. Publishing (the relay's and the early returners') goes through the
//! session's confirm-mode channel.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::Deserialize;
use tokio::sync::watch;

use super::topology::{self, Names};
use super::{QueueError, WorkMessage};
use crate::store::queue::{Jobs, Kind, QueueFuture, WorkQueue};
use crate::store::Wanted;

/// `[store.broker]`: the RabbitMQ cluster mode uses.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `amqp://user:${AMQP_PASSWORD}@host:5672/%2f` or `amqps://…`.
    pub url: String,
    /// The broker cluster's other nodes, tried in turn when the connection to
    /// one goes (quorum queues keep serving from the remaining nodes).
    #[serde(default)]
    pub failover_urls: Vec<String>,
    /// CA certificate(s) (PEM) for `amqps://` (only these are trusted).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Prefix of every exchange and queue name.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Most messages in one target's queue; beyond it the broker refuses
    /// publishes (the outbox keeps them in PostgreSQL until there is room).
    #[serde(default = "default_max_queue_length")]
    pub max_queue_length: u64,
    /// A message returned this many times by consumers that died mid-attempt
    /// is dead-lettered to the target's parked queue (a poison message) and
    /// its delivery parked.
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// Longest wait for the broker's publisher confirm.
    #[serde(with = "humantime_serde", default = "default_confirm_timeout")]
    pub confirm_timeout: Duration,
}

impl std::fmt::Debug for BrokerConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("prefix", &self.prefix)
            .field("max_queue_length", &self.max_queue_length)
            .field("delivery_limit", &self.delivery_limit)
            .finish_non_exhaustive()
    }
}

fn default_prefix() -> String {
    "ozg".into()
}
fn default_max_queue_length() -> u64 {
    1_000_000
}
fn default_delivery_limit() -> u32 {
    10
}
fn default_confirm_timeout() -> Duration {
    Duration::from_secs(15)
}

/// One connection and what was declared on it.
pub struct Session {
    pub(super) conn: Connection,
    publish: Channel,
    declared: Mutex<HashSet<String>>,
    /// Serialises publishes on the channel with the wait for their confirms.
    publishing: tokio::sync::Mutex<()>,
}

/// Whether the broker is connected, for `/readyz` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    Connecting,
    Connected,
    /// Was connected; lost it and tries again.
    Lost,
}

/// The broker, shared by the relay, the consumers and readiness.
pub struct Broker {
    pub(super) config: BrokerConfig,
    pub(super) names: Names,
    ca_pem: Option<String>,
    session: watch::Sender<Option<Arc<Session>>>,
    state: watch::Sender<BrokerState>,
    /// Which of the URLs to try next.
    next_url: std::sync::atomic::AtomicUsize,
}

/// First and longest wait between two connection attempts.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

impl Broker {
    /// Checks the config (reads the CA); connects only in [`Broker::run`].
    pub fn new(config: BrokerConfig) -> Result<Arc<Broker>, String> {
        if config.prefix.is_empty()
            || !config
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err("broker.prefix: letters, digits, '-', '_' and '.' only".into());
        }
        if config.max_queue_length == 0 || config.delivery_limit == 0 {
            return Err(
                "broker.max_queue_length and broker.delivery_limit must be at least 1".into(),
            );
        }
        let ca_pem = match &config.ca {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("broker.ca: cannot read {}: {e}", p.display()))?,
            ),
            None if std::iter::once(&config.url)
                .chain(&config.failover_urls)
                .any(|u| u.starts_with("amqps://")) =>
            {
                return Err("broker.ca is required with amqps:// (only that CA is trusted)".into())
            }
            None => None,
        };
        let names = Names::new(&config.prefix);
        Ok(Arc::new(Broker {
            config,
            names,
            ca_pem,
            session: watch::channel(None).0,
            state: watch::channel(BrokerState::Connecting).0,
            next_url: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    pub fn state(&self) -> BrokerState {
        *self.state.borrow()
    }

    /// The current session, once there is one.
    pub async fn session(&self) -> Arc<Session> {
        let mut rx = self.session.subscribe();
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                if s.conn.status().connected() {
                    return s;
                }
            }
            if rx.changed().await.is_err() {
                // The broker task ended (shutdown): wait for ever; callers select on shutdown.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Keeps a connection up until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut wait = RECONNECT_FIRST;
        let mut failures = 0u32;
        loop {
            if *shutdown.borrow() {
                break;
            }
            match self.connect().await {
                Ok(session) => {
                    wait = RECONNECT_FIRST;
                    if failures > 0 || self.state() == BrokerState::Lost {
                        tracing::info!(after_failures = failures, "connected to RabbitMQ again");
                    } else {
                        tracing::info!("connected to RabbitMQ; topology declared");
                    }
                    failures = 0;
                    let session = Arc::new(session);
                    self.session.send_replace(Some(session.clone()));
                    self.state.send_replace(BrokerState::Connected);
                    // Until the connection goes or the daemon stops.
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = shutdown.changed() => {}
                        }
                        if *shutdown.borrow() || !session.conn.status().connected() {
                            break;
                        }
                    }
                    self.session.send_replace(None);
                    if *shutdown.borrow() {
                        let _ = session.conn.close(200, "ozg-gateway stops").await;
                        break;
                    }
                    self.state.send_replace(BrokerState::Lost);
                    // The node may be gone: the next connection starts with the next one.
                    self.next_url
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!("lost the connection to RabbitMQ: not ready; deliveries wait (accepted submissions stay in PostgreSQL's outbox), reconnecting");
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::error!(error = %e, failures, "cannot connect to RabbitMQ; retrying");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            wait = (wait * 2).min(RECONNECT_MAX);
        }
        self.session.send_replace(None);
    }

    /// Connects to the node that answered last, else to the next one in turn.
    async fn connect(&self) -> Result<Session, QueueError> {
        use std::sync::atomic::Ordering;
        let urls: Vec<&String> = std::iter::once(&self.config.url)
            .chain(&self.config.failover_urls)
            .collect();
        let mut last = QueueError::Disconnected;
        for _ in 0..urls.len() {
            let at = self.next_url.load(Ordering::Relaxed) % urls.len();
            match self.connect_to(urls[at]).await {
                Ok(s) => {
                    if urls.len() > 1 {
                        tracing::info!(
                            node = at,
                            "broker node connected (0 = url, 1.. = failover_urls)"
                        );
                    }
                    return Ok(s);
                }
                Err(e) => {
                    last = e;
                    self.next_url.store(at + 1, Ordering::Relaxed);
                }
            }
        }
        Err(last)
    }

    async fn connect_to(&self, url: &str) -> Result<Session, QueueError> {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current())
            .with_connection_name("ozg-gateway".into());
        let tls = lapin::tcp::OwnedTLSConfig {
            cert_chain: self.ca_pem.clone(),
            identity: None,
        };
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect_with_config(url, props, tls),
        )
        .await
        .map_err(|_| QueueError::Timeout)??;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology::declare_shared(&publish, &self.names).await?;
        Ok(Session {
            conn,
            publish,
            declared: Mutex::default(),
            publishing: tokio::sync::Mutex::new(()),
        })
    }

    /// Declares a target's queues on `session` (once per session).
    pub(super) async fn declare_target(
        &self,
        session: &Session,
        target: &str,
    ) -> Result<(), QueueError> {
        if session
            .declared
            .lock()
            .map(|d| d.contains(target))
            .unwrap_or(false)
        {
            return Ok(());
        }
        topology::declare_target(&session.publish, &self.names, &self.config, target).await?;
        if let Ok(mut d) = session.declared.lock() {
            d.insert(target.to_owned());
        }
        Ok(())
    }

    /// Publishes a message for each of `wanted` (due now: to the target's
    /// queue; due later: to a wait queue), with `mandatory`, persistent, and
    /// waits for the broker's confirms. Returns those the broker confirmed.
    pub async fn publish(
        &self,
        wanted: Vec<Wanted>,
        now_ms: i64,
    ) -> Result<Vec<Wanted>, QueueError> {
        let session = {
            let s = self.session.borrow().clone();
            s.ok_or(QueueError::Disconnected)?
        };
        for w in &wanted {
            self.declare_target(&session, &w.target).await?;
        }
        let _one_at_a_time = session.publishing.lock().await;
        let mut confirms = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let body = serde_json::to_vec(&WorkMessage {
                message_id: w.message_id.clone(),
                ticket: w.ticket,
            })
            .map_err(|e| QueueError::Broker(e.to_string()))?;
            let exchange = match topology::wait_delay(w.due_ms - now_ms) {
                Some(delay) => self.names.wait(delay),
                None => self.names.deliver_exchange(),
            };
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(w.message_id.clone()));
            let confirm = session
                .publish
                .basic_publish(
                    &exchange,
                    &w.target,
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    &body,
                    props,
                )
                .await?;
            confirms.push(confirm);
        }
        let mut confirmed = Vec::with_capacity(wanted.len());
        let all = futures_util::future::join_all(confirms);
        let results = tokio::time::timeout(self.config.confirm_timeout, all)
            .await
            .map_err(|_| QueueError::Timeout)?;
        for (w, r) in wanted.into_iter().zip(results) {
            match r? {
                Confirmation::Ack(None) => confirmed.push(w),
                Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                    // Unroutable: its queue vanished (deleted by hand); declare again next time.
                    if let Ok(mut d) = session.declared.lock() {
                        d.remove(&w.target);
                    }
                    tracing::warn!(target_id = %w.target, reply = %returned.reply_text, "queue message returned unroutable; declaring the target's queues again");
                }
                // Refused (the queue is full: reject-publish): the outbox keeps it.
                Confirmation::Nack(None) => {}
                Confirmation::NotRequested => {
                    return Err(QueueError::Broker("channel not in confirm mode".into()))
                }
            }
        }
        Ok(confirmed)
    }
}

/// A short error description without URLs (they may carry credentials).
pub(super) fn error_class(e: &lapin::Error) -> String {
    ozg_adapter_amqp::error_class(e)
}

impl WorkQueue for Broker {
    fn jobs(self: Arc<Self>, target: &str, kind: Kind, prefetch: u16) -> Jobs {
        self.consume(target, kind, prefetch)
    }

    fn publish(&self, wanted: Vec<Wanted>, now_ms: i64) -> QueueFuture<'_, Vec<Wanted>> {
        Box::pin(Broker::publish(self, wanted, now_ms))
    }

    fn connected(&self) -> bool {
        self.state() == BrokerState::Connected
    }

    fn until_connected(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            self.session().await;
        })
    }
}
