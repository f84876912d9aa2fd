//! The XTA 2 listener's settings (`[xta]`) and the settings of a message-box
//! target (`adapter = { type = "xta", … }`): whose box it is, and the
//! certificate its reader (the Fachverfahren) presents.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ozg_adapter_sdk::{Adapter, AdapterConfigError, DeliverFuture, Delivery, Outcome};
use serde::Deserialize;

/// `[xta]`: the XTA 2 listener. It shares the ingest listener's server
/// certificate, client CA and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XtaConfig {
    /// Address to bind, e.g. `127.0.0.1:8444` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// How clients reach the listener; named in transport reports
    /// (`XTAServerIdentity`). Default: `https://localhost:<port>/xta`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// A message not closed by its reader this long after it was put in the
    /// box is overdue: a metric, a log line and the delivery's status say so.
    #[serde(with = "humantime_serde", default = "three_days")]
    pub overdue_after: Duration,
    /// Most entries one `getStatusList` answers with, whatever the reader asks.
    #[serde(default = "max_list_items")]
    pub max_list_items: usize,
}

fn three_days() -> Duration {
    XtaConfig::default_overdue()
}

impl XtaConfig {
    /// `overdue_after` when not configured: 3 days, as FIT-Connect notifies.
    pub fn default_overdue() -> Duration {
        Duration::from_secs(3 * 86400)
    }
}

fn max_list_items() -> usize {
    1000
}

/// A target whose envelopes wait in the gateway's message box until the
/// reader fetches and closes them over XTA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBoxConfig {
    /// The reader's XTA account (`Identifier`), e.g. `fv-gewerbe`. Several
    /// targets may share one account: its reader sees all their messages.
    pub account: String,
    /// The reader's client certificate (PEM); pins its SHA-256 fingerprint.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The client certificate's SHA-256 fingerprint (hex, colons allowed).
    #[serde(default)]
    pub certificate_sha256: Option<String>,
    /// The client certificate's subject (written as for portals).
    #[serde(default)]
    pub subject: Option<String>,
}

/// Delivering to a message box is putting the envelope in it.
struct MessageBox;

/// The adapter of a message box (`xta` targets, FIT-Connect destinations).
pub fn message_box() -> Arc<dyn Adapter> {
    Arc::new(MessageBox)
}

impl Adapter for MessageBox {
    fn kind(&self) -> &'static str {
        "xta"
    }

    fn deliver<'a>(&'a self, _delivery: Delivery<'a>) -> DeliverFuture<'a> {
        Box::pin(async { Outcome::Offered })
    }
}

impl ozg_adapter_sdk::AdapterConfig for MessageBoxConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        self.certificate.iter_mut().collect()
    }

    fn build(&self) -> Result<Arc<dyn Adapter>, AdapterConfigError> {
        let ok = !self.account.is_empty()
            && self.account.len() <= 255
            && self.account.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err(AdapterConfigError::new(format!(
                "account {:?} is not an XTA account",
                self.account
            ))
            .with_fix("write 1 to 255 visible ASCII characters, e.g. \"fv-gewerbe\""));
        }
        Ok(Arc::new(MessageBox))
    }
}
