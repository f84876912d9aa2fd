//! Targets and routes registered at run time over the operator API, kept in
//! the store, and how they combine with the config file.
//!
//! The config file stays the base: its targets and routes cannot be changed
//! or removed over the API, and a registered target cannot take the id of one
//! of the file's. Should a later config file define a target with the id of a
//! registered one, the file's wins and the registered one is set aside (with a
//! warning) until it is removed. Registered routes are added to the file's; one
//! with the same Leistung and destination pattern as a route of the file is
//! refused. Either way the result is checked exactly as `config check` checks
//! the file alone.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AdapterConfig, Config, RouteConfig, TargetConfig};

/// The store's setting kinds.
pub const TARGET_KIND: &str = "target";
pub const ROUTE_KIND: &str = "route";

/// A target as registered over the operator API (`POST /admin/v1/targets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredTarget {
    /// Letters, digits, `-`, `_`, `.`; at most 64.
    pub id: String,
    /// The target's encryption certificate, PEM (RSA >= 3072 or P-256,
    /// chaining to `pki.trust_anchors`).
    pub certificate: String,
    /// As `[targets.<id>.adapter]` in the config file (`type` and its keys;
    /// file paths are on the gateway's machine, relative ones relative to the
    /// config file).
    pub adapter: serde_json::Value,
    /// `raw` (default) or `xdomea`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// 2 (default) or 1, as `[targets.<id>] envelope_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Changes to `[delivery] retry` for this target, as `[targets.<id>.retry]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<serde_json::Value>,
    /// Set by the gateway: who registered it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
}

/// A route as registered over the operator API (`POST /admin/v1/routes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisteredRoute {
    pub leistung: String,
    #[serde(default = "star")]
    pub destination: String,
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
}

fn star() -> String {
    "*".into()
}

impl RegisteredRoute {
    /// Its key in the store: Leistung and destination pattern.
    pub fn key(&self) -> String {
        format!("{} {}", self.leistung, self.destination)
    }
}

/// Whether `id` may name a target: 1 to 64 letters, digits, `-`, `_`, `.`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.')
}

impl RegisteredTarget {
    /// The target as the config file would hold it; `base` resolves relative paths.
    pub fn to_config(&self, base: &Path) -> Result<TargetConfig, String> {
        if !valid_id(&self.id) {
            return Err(format!(
                "target id {:?}: use 1 to 64 letters, digits, '-', '_' or '.'",
                self.id
            ));
        }
        let mut adapter: AdapterConfig =
            serde_json::from_value(self.adapter.clone()).map_err(|e| format!("adapter: {e}"))?;
        adapter.settings_mut().resolve_paths(base);
        let payload = match self.payload.as_deref() {
            None | Some("raw") => crate::model::routing::Payload::Raw,
            Some("xdomea") => crate::model::routing::Payload::Xdomea,
            Some(other) => return Err(format!("payload {other:?}: use raw or xdomea")),
        };
        let envelope_version = match self.envelope_version {
            None => super::ENVELOPE_VERSION,
            Some(v @ (1 | 2)) => v,
            Some(other) => return Err(format!("envelope_version {other}: use 2 or 1")),
        };
        let retry = match &self.retry {
            None => Default::default(),
            Some(r) => serde_json::from_value(r.clone()).map_err(|e| format!("retry: {e}"))?,
        };
        if !self.certificate.contains("-----BEGIN CERTIFICATE-----") {
            return Err("certificate: give the target's encryption certificate as PEM".into());
        }
        Ok(TargetConfig {
            certificate: format!("(registered target {})", self.id).into(),
            certificate_pem: Some(self.certificate.clone()),
            certificates: Vec::new(),
            registered: true,
            adapter,
            payload,
            envelope_version,
            description: self.description.clone(),
            tenant: self.tenant.clone(),
            concurrency: self.concurrency,
            retry,
            reply_client: None,
            replies_of: None,
        })
    }
}

/// Adds registered targets and routes to the file's config; returns what was
/// set aside, and why (for the log).
pub fn merge(
    config: &mut Config,
    targets: &[RegisteredTarget],
    routes: &[RegisteredRoute],
) -> Vec<String> {
    let base = config
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut set_aside = Vec::new();
    for t in targets {
        if config.targets.contains_key(&t.id) {
            set_aside.push(format!(
                "the registered target {} is set aside: the config file defines a target of that id, and the file wins; remove the registered one",
                t.id
            ));
            continue;
        }
        match t.to_config(&base) {
            Ok(c) => {
                config.targets.insert(t.id.clone(), c);
            }
            Err(e) => set_aside.push(format!("the registered target {} is set aside: {e}", t.id)),
        }
    }
    for r in routes {
        if let Some(t) = r.targets.iter().find(|t| {
            config
                .targets
                .get(t.as_str())
                .is_some_and(|x| x.replies_of.is_some())
        }) {
            set_aside.push(format!(
                "the registered route {} is set aside: {t} is a portal's reply box, which holds replies only",
                r.key()
            ));
            continue;
        }
        let clash = config
            .routes
            .iter()
            .any(|f| f.leistung == r.leistung && f.destination == r.destination);
        if clash {
            set_aside.push(format!(
                "the registered route {} is set aside: the config file routes that Leistung and destination, and the file wins",
                r.key()
            ));
            continue;
        }
        config.routes.push(RouteConfig {
            leistung: r.leistung.clone(),
            destination: r.destination.clone(),
            targets: r.targets.clone(),
            tenant: r.tenant.clone(),
            registered: true,
        });
    }
    set_aside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_target_may_ask_for_envelope_format_1_and_nothing_else() {
        let pem = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n";
        let target = |v: Option<u32>| RegisteredTarget {
            id: "fv-bau".into(),
            certificate: pem.into(),
            adapter: serde_json::json!({"type": "filedrop", "dir": "/tmp/fv"}),
            payload: None,
            envelope_version: v,
            description: None,
            tenant: None,
            concurrency: None,
            retry: None,
            registered_by: None,
            registered_at: None,
        };
        let base = Path::new("/etc/ozg-gateway");
        assert_eq!(target(None).to_config(base).unwrap().envelope_version, 2);
        assert_eq!(target(Some(1)).to_config(base).unwrap().envelope_version, 1);
        let err = target(Some(7)).to_config(base).unwrap_err();
        assert!(err.contains("envelope_version 7"), "{err}");
    }
}
