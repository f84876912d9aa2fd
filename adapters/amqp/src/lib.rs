//! The `amqp` adapter: publishes the envelope to a RabbitMQ exchange.
//!
//! Each message is published `mandatory` (a message no queue takes is a failure,
//! not a success), persistent (delivery mode 2), with the message id as AMQP
//! `message-id` and `content-type: application/json`, on a channel in confirm
//! mode: only the broker's ack counts as delivered. A nack, an unroutable
//! return, a lost connection or a missing confirm is a retry — the engine sends
//! the same `message_id` again, so a consumer deduplicates by it. The connection
//! is opened lazily and replaced after a broker restart. `amqps://` URLs use TLS
//! (rustls) and trust only the CA file given as `ca` (required with `amqps://`);
//! the broker's certificate must name the URL's host.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use ozg_adapter_sdk::{
    Adapter, AdapterConfig, AdapterConfigError, DeliverFuture, Delivery, Outcome,
};
use serde::Deserialize;
use tokio::sync::Mutex;

/// Settings of an `amqp` target.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// Broker URL, e.g. `amqp://user:${AMQP_PASSWORD}@host:5672/%2f` or `amqps://…`.
    pub url: String,
    /// Exchange to publish to (must exist).
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// CA certificate(s) (PEM) for `amqps://`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The gateway's client certificate chain (PEM) for brokers that require one
    /// (`amqps://` only; with `client_key`).
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Longest wait for the broker's confirm.
    #[serde(with = "humantime_serde", default = "default_confirm_timeout")]
    pub confirm_timeout: Duration,
}

impl std::fmt::Debug for AmqpConfig {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .finish_non_exhaustive()
    }
}

fn default_confirm_timeout() -> Duration {
    Duration::from_secs(30)
}

impl AdapterConfig for AmqpConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.ca
            .iter_mut()
            .chain(self.client_certificate.iter_mut())
            .chain(self.client_key.iter_mut())
            .collect()
    }

    fn build(&self) -> Result<Arc<dyn Adapter>, AdapterConfigError> {
        let amqp = Amqp::new(self).map_err(AdapterConfigError::new)?;
        Ok(Arc::new(amqp))
    }
}

/// The adapter: one connection and confirm channel per target, shared by its attempts.
pub struct Amqp {
    config: AmqpConfig,
    ca_pem: Option<String>,
    /// Client certificate chain and key (PEM).
    identity: Option<(Vec<u8>, Vec<u8>)>,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl Amqp {
    /// Checks the settings (the broker is contacted on the first delivery).
    pub fn new(config: &AmqpConfig) -> Result<Self, String> {
        let tls = config.url.starts_with("amqps://");
        if !(tls || config.url.starts_with("amqp://")) {
            return Err("url must start with amqp:// or amqps://".into());
        }
        match (tls, &config.ca) {
            (true, None) => {
                return Err("an amqps:// url needs `ca`: the PEM file of the CA(s) the broker's certificate chains to (only these are trusted)".into())
            }
            (false, Some(_)) => {
                return Err("`ca` is set but the url is amqp:// (no TLS): use amqps:// and the broker's TLS port, or remove `ca`".into())
            }
            _ => {}
        }
        let ca_pem = match &config.ca {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let identity = match (&config.client_certificate, &config.client_key) {
            (Some(cert), Some(key)) => {
                if !tls {
                    return Err(
                        "client_certificate is set but the url is amqp:// (no TLS): use amqps://"
                            .into(),
                    );
                }
                Some(read_identity(cert, key)?)
            }
            (None, None) => None,
            _ => return Err("client_certificate and client_key must be given together".into()),
        };
        Ok(Amqp {
            config: config.clone(),
            ca_pem,
            identity,
            channel: Mutex::new(None),
        })
    }

    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut guard = self.channel.lock().await;
        if let Some((conn, ch)) = guard.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *guard = None;
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current())
            .with_connection_name("ozg-gateway".into());
        let tls = lapin::tcp::OwnedTLSConfig {
            cert_chain: self.ca_pem.clone(),
            identity: self
                .identity
                .clone()
                .map(|(pem, key)| lapin::tcp::OwnedIdentity::PKCS8 { pem, key }),
        };
        let conn = Connection::connect_with_config(&self.config.url, props, tls).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        tracing::info!(exchange = %self.config.exchange, "connected to the AMQP broker");
        *guard = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn forget(&self) {
        self.channel.lock().await.take();
    }
}

impl Adapter for Amqp {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn deliver<'a>(&'a self, d: Delivery<'a>) -> DeliverFuture<'a> {
        Box::pin(async move {
            let ch = match self.channel().await {
                Ok(ch) => ch,
                Err(e) => {
                    return Outcome::retry(
                        "broker-unavailable",
                        format!("cannot connect: {}", error_class(&e)),
                    )
                }
            };
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(d.message_id.to_owned()));
            let options = BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            };
            let publish = ch
                .basic_publish(
                    &self.config.exchange,
                    &self.config.routing_key,
                    options,
                    d.envelope,
                    props,
                )
                .await;
            let confirm = match publish {
                Ok(c) => c,
                Err(e) => {
                    self.forget().await;
                    return Outcome::retry(
                        "broker-unavailable",
                        format!("publish failed: {}", error_class(&e)),
                    );
                }
            };
            match tokio::time::timeout(self.config.confirm_timeout, confirm).await {
                Ok(Ok(Confirmation::Ack(None))) => Outcome::Delivered { receipt: None },
                Ok(Ok(Confirmation::Ack(Some(returned))))
                | Ok(Ok(Confirmation::Nack(Some(returned)))) => Outcome::retry(
                    "unroutable",
                    format!(
                        "no queue is bound for exchange {:?} and routing key {:?} ({})",
                        self.config.exchange, self.config.routing_key, returned.reply_text
                    ),
                ),
                Ok(Ok(Confirmation::Nack(None))) => {
                    Outcome::retry("nack", "the broker refused the message")
                }
                Ok(Ok(Confirmation::NotRequested)) => {
                    self.forget().await;
                    Outcome::retry("internal", "the channel is not in confirm mode")
                }
                Ok(Err(e)) => {
                    self.forget().await;
                    Outcome::retry(
                        "broker-unavailable",
                        format!("no confirm: {}", error_class(&e)),
                    )
                }
                Err(_) => {
                    self.forget().await;
                    Outcome::retry("timeout", "no confirm from the broker in time")
                }
            }
        })
    }
}

/// Reads a client certificate chain and its key, checking that both parse and
/// belong together, so a wrong file is a config error, not a retry loop.
fn read_identity(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem =
        std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| format!("{}: unusable private key: {e}", key.display()))
        .and_then(|signing| {
            rustls::sign::CertifiedKey::new(chain, signing)
                .keys_match()
                .map_err(|e| format!("client_certificate and client_key do not fit together: {e}"))
        })?;
    Ok((cert_pem, key_pem))
}

/// A short error description without URLs (they may carry credentials).
pub fn error_class(e: &lapin::Error) -> String {
    let s = e.to_string();
    s.split("amqp")
        .next()
        .unwrap_or(&s)
        .chars()
        .take(160)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, ca: Option<&str>) -> AmqpConfig {
        AmqpConfig {
            url: url.into(),
            exchange: "x".into(),
            routing_key: "k".into(),
            ca: ca.map(PathBuf::from),
            client_certificate: None,
            client_key: None,
            confirm_timeout: Duration::from_secs(1),
        }
    }

    fn demo(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../certs-example")
            .join(name)
    }

    #[test]
    fn a_client_certificate_must_come_with_its_key_and_tls() {
        let ca = demo("ca.pem");
        let with = |url: &str, cert: Option<&str>, key: Option<&str>| {
            let mut c = config(
                url,
                url.starts_with("amqps").then_some(ca.to_str().unwrap()),
            );
            c.client_certificate = cert.map(demo);
            c.client_key = key.map(demo);
            Amqp::new(&c).err()
        };
        let url = "amqps://broker:5671/%2f";
        assert!(with(url, Some("portal.pem"), Some("portal.key")).is_none());
        let err = with(url, Some("portal.pem"), None).unwrap();
        assert!(err.contains("together"), "{err}");
        let err = with(url, Some("portal.pem"), Some("seal.key")).unwrap();
        assert!(err.contains("do not fit together"), "{err}");
        let err = with(url, Some("README.md"), Some("portal.key")).unwrap();
        assert!(err.contains("no certificate"), "{err}");
        let err = with(
            "amqp://broker:5672/%2f",
            Some("portal.pem"),
            Some("portal.key"),
        )
        .unwrap();
        assert!(err.contains("no TLS"), "{err}");
    }

    #[test]
    fn relative_paths_are_read_from_the_config_directory() {
        let mut c = config("amqps://broker:5671/%2f", Some("ca.pem"));
        c.client_certificate = Some("portal.pem".into());
        c.client_key = Some("portal.key".into());
        let err = c.build().err().unwrap();
        assert!(err.problem.starts_with("cannot read ca.pem"), "{err}");
        c.resolve_paths(&demo(""));
        assert_eq!(c.ca, Some(demo("ca.pem")));
        assert_eq!(c.client_certificate, Some(demo("portal.pem")));
        assert_eq!(c.client_key, Some(demo("portal.key")));
        assert_eq!(c.build().unwrap().kind(), "amqp");
    }

    #[test]
    fn tls_settings_must_agree_with_the_url() {
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../../certs-example/ca.pem");
        let err = Amqp::new(&config("amqps://broker:5671/%2f", None))
            .err()
            .unwrap();
        assert!(err.contains("needs `ca`"), "{err}");
        let err = Amqp::new(&config("amqp://broker:5672/%2f", Some(ca)))
            .err()
            .unwrap();
        assert!(err.contains("no TLS"), "{err}");
        let err = Amqp::new(&config("http://broker", None)).err().unwrap();
        assert!(err.contains("amqp:// or amqps://"), "{err}");
        assert!(Amqp::new(&config("amqps://broker:5671/%2f", Some(ca))).is_ok());
        assert!(Amqp::new(&config("amqp://broker:5672/%2f", None)).is_ok());
    }
}
