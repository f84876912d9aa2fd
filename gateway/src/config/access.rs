//! Who may talk to the gateway: portals, operators, and the admin listener.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{reply_box, AdapterConfig, ConfigError, MessageBoxConfig, RetryOverride, TargetConfig};

/// The admin listener: health, readiness, metrics and the operator API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to bind. Plain HTTP is allowed on a loopback address only
    /// (whoever can reach it is an operator of every tenant: `local`).
    pub listen: SocketAddr,
    /// HTTPS with the ingest listener's certificate, its client CA and CRLs:
    /// every operator request needs a registered operator's client
    /// certificate. Required when `listen` is not a loopback address.
    #[serde(default)]
    pub tls: bool,
    /// The time zone whose days, weeks and months the case statistics count
    /// in: `Europe/Berlin` (the default) or `UTC`. A change applies to what
    /// happens from then on; counts already made keep their days.
    #[serde(default)]
    pub statistics_time_zone: crate::model::cases::StatsZone,
}

/// A portal: identified by its client certificate, allowed some Leistungen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Portal id; appears as `sender` in envelopes and receipts.
    pub id: String,
    /// The portal's client certificate (PEM); pins its SHA-256 fingerprint.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The client certificate's SHA-256 fingerprint (hex, colons allowed).
    #[serde(default)]
    pub certificate_sha256: Option<String>,
    /// The client certificate's subject, compared attribute by attribute: RFC 4514
    /// syntax and escaping (`\,` for a comma inside a value), in the certificate's
    /// order as `openssl x509 -noout -subject` prints it, e.g.
    /// `C=DE, O=Stadt Musterstadt, CN=buergerportal`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Leistungen this portal may submit for (`*` or a prefix ending in `*` allowed).
    pub leistungen: Vec<String>,
    /// Destinations this portal may submit for (patterns as above).
    #[serde(default = "any")]
    pub destinations: Vec<String>,
    /// Its XTA account (`Identifier`) when it sends over XTA (default: its id).
    pub xta_account: Option<String>,
    /// Submissions a second (default `[ingest.limits] portal_rate`); beyond it 429.
    pub rate: Option<f64>,
    /// Submissions in progress at once (default `portal_uploads`); beyond it 429.
    pub uploads: Option<usize>,
    /// The tenant it belongs to: operators of that tenant see its submissions.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Where the Fachverfahren's replies (Bescheide, Nachforderungen) to its
    /// submissions go; without it, nobody can reply to them.
    #[serde(default)]
    pub replies: Option<RepliesConfig>,
}

impl PortalConfig {
    /// Where its replies go, as configured (`None` when `replies` is absent
    /// or names neither or both ways; `config check` says which).
    pub fn reply_route(&self) -> Option<crate::model::portal::ReplyRoute> {
        match self.replies.as_ref()? {
            RepliesConfig {
                certificate: Some(_),
                target: None,
                ..
            } => Some(crate::model::portal::ReplyRoute {
                target: super::reply_box(&self.id),
                fetched: true,
            }),
            RepliesConfig {
                certificate: None,
                target: Some(t),
                ..
            } => Some(crate::model::portal::ReplyRoute {
                target: t.clone(),
                fetched: false,
            }),
            _ => None,
        }
    }
}

/// How a portal receives the replies to its submissions: it fetches them
/// (`certificate`: they wait in its reply box, `GET /v1/replies`), or the
/// gateway delivers them to one of its targets (`target`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// The portal's (or its Postfach service's) encryption certificate (PEM):
    /// replies wait encrypted for it in the box `<portal id>.replies`, which the
    /// portal reads with its client certificate.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// Or: the target the gateway delivers replies to (any adapter; its
    /// encryption certificate is the one replies are encrypted for).
    #[serde(default)]
    pub target: Option<String>,
    /// With `certificate`: the envelope format the portal reads, 2 (the
    /// default) or 1 (compact JWE parts); a `target` has its own.
    #[serde(
        default = "super::envelope_version_default",
        deserialize_with = "super::envelope_version"
    )]
    pub envelope_version: u32,
}

/// The client certificate a target's Fachverfahren sends replies with
/// (`[targets.<id>] reply_client = { … }`), pinned like a portal's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientPins {
    /// The client certificate (PEM); pins its SHA-256 fingerprint.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The client certificate's SHA-256 fingerprint (hex, colons allowed).
    #[serde(default)]
    pub certificate_sha256: Option<String>,
    /// The client certificate's subject (written as for portals).
    #[serde(default)]
    pub subject: Option<String>,
}

fn any() -> Vec<String> {
    vec!["*".into()]
}

/// An operator, identified by a client certificate like a portal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Operator id; recorded in the audit log with every action.
    pub id: String,
    /// The operator's client certificate (PEM); pins its SHA-256 fingerprint.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The client certificate's SHA-256 fingerprint (hex, colons allowed).
    #[serde(default)]
    pub certificate_sha256: Option<String>,
    /// The client certificate's subject (written as for portals).
    #[serde(default)]
    pub subject: Option<String>,
    /// The tenants whose portals, targets and routes this operator sees and
    /// acts on; `["*"]`: all (the service provider). Required as soon as
    /// anything in the config names a tenant; without tenants anywhere, an
    /// operator sees everything.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Only these targets (a vendor's own certificate): it sees their
    /// deliveries, acts on them, and may test and change their registration.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
}

impl super::Config {
    /// Adds the reply box of every portal that fetches its replies: a
    /// message-box target read with the portal's own client certificate.
    pub(super) fn add_reply_boxes(&mut self) -> Result<(), ConfigError> {
        for (i, p) in self.portals.iter().enumerate() {
            if let Some(RepliesConfig {
                target: Some(t),
                envelope_version: 1,
                ..
            }) = &p.replies
            {
                return Err(self.error(
                    format!("portals[{i}].replies.envelope_version"),
                    format!("replies of portal {:?} go to target {t:?}, which has its own envelope format", p.id),
                    "set `envelope_version = 1` on that target instead",
                ));
            }
            let Some(RepliesConfig {
                certificate: Some(certificate),
                envelope_version,
                ..
            }) = &p.replies
            else {
                continue;
            };
            let id = reply_box(&p.id);
            if self.targets.contains_key(&id) {
                return Err(self.error(
                    format!("portals[{i}].replies"),
                    format!("target {id:?} is the reply box of portal {:?}, but a target of that id is configured", p.id),
                    "rename that target: ids ending in `.replies` are the portals' reply boxes",
                ));
            }
            let target = TargetConfig {
                certificate: certificate.clone(),
                certificate_pem: None,
                certificates: Vec::new(),
                registered: false,
                adapter: AdapterConfig::Xta(MessageBoxConfig {
                    account: p.xta_account.clone().unwrap_or_else(|| p.id.clone()),
                    certificate: p.certificate.clone(),
                    certificate_sha256: p.certificate_sha256.clone(),
                    subject: p.subject.clone(),
                }),
                payload: Default::default(),
                envelope_version: *envelope_version,
                description: Some(format!("replies to portal {}, fetched by the portal", p.id)),
                tenant: p.tenant.clone(),
                concurrency: None,
                retry: RetryOverride::default(),
                reply_client: None,
                replies_of: Some(p.id.clone()),
            };
            self.targets.insert(id, target);
        }
        Ok(())
    }
}
