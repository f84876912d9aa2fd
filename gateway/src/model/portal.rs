//! A registered portal (Onlinedienst): who may submit for which Leistungen and
//! destinations.

use crate::model::routing::PatternSet;

/// A registered portal.
#[derive(Debug)]
pub struct Portal {
    pub id: String,
    pub leistungen: PatternSet,
    pub destinations: PatternSet,
    /// Its XTA account when it sends over XTA.
    pub xta_account: String,
    /// Submissions a second it may send (instead of `[ingest.limits] portal_rate`).
    pub rate: Option<f64>,
    /// Submissions it may have in progress at once (instead of `portal_uploads`).
    pub uploads: Option<usize>,
    /// Where replies to its submissions go, if anywhere.
    pub replies: Option<ReplyRoute>,
}

/// Where the replies to a portal's submissions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRoute {
    /// The target they are encrypted for and delivered to.
    pub target: String,
    /// The portal fetches them from that target's box (`GET /v1/replies`);
    /// otherwise the gateway delivers them through the target's adapter.
    pub fetched: bool,
}

/// A reader of message boxes (a Fachverfahren or DMS fetching over XTA): its
/// account and the targets whose boxes it reads.
#[derive(Debug)]
pub struct Reader {
    pub account: String,
    pub targets: Vec<String>,
}

/// An operator of the operator API and what they may see and act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Recorded in the audit log with every action.
    pub id: String,
    /// The tenants whose targets, deliveries and submissions they see; `None`: all.
    pub tenants: Option<std::collections::BTreeSet<String>>,
    /// Only these targets (a vendor's certificate); `None`: every target of their tenants.
    pub targets: Option<std::collections::BTreeSet<String>>,
}

impl Operator {
    /// Whoever reaches the plain-HTTP admin listener on a loopback address:
    /// someone on the gateway's machine, an operator of every tenant. The name
    /// they give (the CLI sends the login name) is recorded, not trusted.
    pub fn local(name: Option<&str>) -> Operator {
        let name: String = name
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
            .take(64)
            .collect();
        Operator {
            id: if name.is_empty() {
                "local".into()
            } else {
                format!("local:{name}")
            },
            tenants: None,
            targets: None,
        }
    }

    /// Sees everything: every tenant, every target (the service provider).
    pub fn sees_all(&self) -> bool {
        self.tenants.is_none() && self.targets.is_none()
    }

    /// Sees what belongs to `tenant` (`None`: to no tenant, the provider's own).
    pub fn sees_tenant(&self, tenant: Option<&str>) -> bool {
        match &self.tenants {
            None => true,
            Some(mine) => tenant.is_some_and(|t| mine.contains(t)),
        }
    }

    /// Sees the target `id` of `tenant`.
    pub fn sees_target(&self, id: &str, tenant: Option<&str>) -> bool {
        self.targets.as_ref().is_none_or(|mine| mine.contains(id)) && self.sees_tenant(tenant)
    }
}
