//! Who may ask and where submissions go: the routing table, portals and
//! operators with the certificates they are recognised by.

use std::sync::Arc;

use ozg_adapter_sdk::keys::Certificate;

use super::{read, Checks};
use crate::config::{AdapterConfig, Config, ConfigError, MessageBoxConfig};
use crate::listen::dn::Dn;
use crate::listen::identity::{Pin, Portals};
use crate::model::portal::{Portal, Reader, ReplyRoute};
use crate::model::routing::{Pattern, PatternSet, Router};

/// The routing table: patterns parse and name existing targets.
pub(super) fn routes(c: &mut Checks) -> Router {
    let config = c.config;
    let errors = &mut c.errors;
    let mut router = Router::default();
    for (i, r) in config.routes.iter().enumerate() {
        let at = |k: &str| format!("routes[{i}].{k}");
        let l = Pattern::parse(&r.leistung).map_err(|e| {
            errors.push(config.error(
                at("leistung"),
                e,
                "write a Leistungsschlüssel, a prefix ending in `*`, or `*`",
            ))
        });
        let d = Pattern::parse(&r.destination).map_err(|e| {
            errors.push(config.error(
                at("destination"),
                e,
                "write a destination, a prefix ending in `*`, or `*`",
            ))
        });
        if r.targets.is_empty() {
            errors.push(config.error(
                at("targets"),
                "no targets",
                "name at least one target from [targets]",
            ));
        }
        for t in &r.targets {
            if let Some(portal) = config.targets.get(t).and_then(|x| x.replies_of.as_ref()) {
                errors.push(config.error(
                    at("targets"),
                    format!("{t:?} is the reply box of portal {portal:?}: what is routed there, that portal could read"),
                    "route to a target of [targets]; reply boxes hold replies only",
                ));
            } else if !config.targets.contains_key(t) {
                errors.push(config.error(
                    at("targets"),
                    format!("unknown target {t:?}"),
                    format!(
                            "define [targets.{t}] or use one of: {}",
                            config
                                .targets
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                ));
            }
        }
        if let (Ok(l), Ok(d)) = (l, d) {
            router.add(l, d, r.targets.clone());
        }
    }
    router
}

/// Portals and operators, and the certificates they are recognised by.
pub(super) fn clients(c: &mut Checks) -> Portals {
    let config = c.config;
    let errors = &mut c.errors;
    let mut portals = Portals::default();
    let mut seen = std::collections::HashSet::new();
    for (i, p) in config.portals.iter().enumerate() {
        let at = |k: &str| format!("portals[{i}].{k}");
        if !seen.insert(p.id.clone()) {
            errors.push(config.error(
                at("id"),
                format!("portal id {:?} is used twice", p.id),
                "give every portal its own id",
            ));
        }
        if p.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            errors.push(config.error(
                at("rate"),
                "must be a number of submissions a second above 0",
                "e.g. rate = 20, or leave it out for [ingest.limits] portal_rate",
            ));
        }
        if p.uploads == Some(0) {
            errors.push(config.error(
                at("uploads"),
                "must be at least 1",
                "e.g. uploads = 16, or leave it out for [ingest.limits] portal_uploads",
            ));
        }
        let patterns = |list: &[String], key: &str, errors: &mut Vec<ConfigError>| {
            PatternSet(
                list.iter()
                    .filter_map(|s| {
                        Pattern::parse(s)
                            .map_err(|e| {
                                errors.push(config.error(
                                    at(key),
                                    e,
                                    "write a value, a prefix ending in `*`, or `*`",
                                ))
                            })
                            .ok()
                    })
                    .collect(),
            )
        };
        let portal = Arc::new(Portal {
            id: p.id.clone(),
            leistungen: patterns(&p.leistungen, "leistungen", errors),
            destinations: patterns(&p.destinations, "destinations", errors),
            xta_account: p.xta_account.clone().unwrap_or_else(|| p.id.clone()),
            rate: p.rate,
            uploads: p.uploads,
            replies: reply_route(config, i, p, errors),
        });
        for pin in pins(
            config,
            "portal",
            &p.id,
            &at,
            &p.certificate,
            &p.certificate_sha256,
            &p.subject,
            errors,
        ) {
            portals.add_portal(pin, portal.clone());
        }
    }

    // Tenants are optional; once anything names one, every operator must say
    // which they see (forgetting it must not show a municipality everything).
    let tenanted = config.portals.iter().any(|p| p.tenant.is_some())
        || config.targets.values().any(|t| t.tenant.is_some())
        || config.routes.iter().any(|r| r.tenant.is_some());
    for (i, o) in config.operators.iter().enumerate() {
        let at = |k: &str| format!("operators[{i}].{k}");
        let tenants = match &o.tenants {
            None if tenanted => {
                errors.push(config.error(
                    at("tenants"),
                    format!("operator {:?} names no tenants, but this config assigns portals, targets or routes to tenants", o.id),
                    "add tenants = [\"<tenant>\", …], or tenants = [\"*\"] for an operator of the service provider who sees all",
                ));
                None
            }
            None => None,
            Some(list) if list.is_empty() => {
                errors.push(config.error(
                    at("tenants"),
                    "an empty list would let the operator see nothing",
                    "name the operator's tenants, or [\"*\"] for all",
                ));
                Some(Default::default())
            }
            Some(list) if list.iter().any(|t| t == "*") => None,
            Some(list) => Some(list.iter().cloned().collect()),
        };
        // A vendor's target may not exist yet: the vendor registers it.
        if let Some(targets) = &o.targets {
            for t in targets
                .iter()
                .filter(|t| !crate::config::registered::valid_id(t))
            {
                errors.push(config.error(
                    at("targets"),
                    format!("{t:?} is no target id"),
                    "name targets by their ids (letters, digits, '-', '_', '.')",
                ));
            }
        }
        let id = Arc::new(crate::model::portal::Operator {
            id: o.id.clone(),
            tenants,
            targets: o.targets.as_ref().map(|t| t.iter().cloned().collect()),
        });
        for pin in pins(
            config,
            "operator",
            &o.id,
            &at,
            &o.certificate,
            &o.certificate_sha256,
            &o.subject,
            errors,
        ) {
            portals.add_operator(pin, id.clone());
        }
    }
    readers(config, errors, &mut portals);
    for (id, t) in &config.targets {
        let Some(r) = &t.reply_client else { continue };
        let at = |k: &str| format!("targets.{id}.reply_client.{k}");
        for pin in pins(
            config,
            "reply client",
            id,
            &at,
            &r.certificate,
            &r.certificate_sha256,
            &r.subject,
            errors,
        ) {
            portals.add_replier(pin, id);
        }
    }
    portals
}

/// Where a portal's replies go (`[[portals]] replies`), checked.
fn reply_route(
    config: &Config,
    i: usize,
    p: &crate::config::PortalConfig,
    errors: &mut Vec<ConfigError>,
) -> Option<ReplyRoute> {
    p.replies.as_ref()?;
    let at = format!("portals[{i}].replies");
    let reply_box = |t: &str| {
        config
            .targets
            .get(t)
            .is_some_and(|x| x.replies_of.is_some())
    };
    match p.reply_route() {
        Some(route) if !route.fetched && reply_box(&route.target) => {
            errors.push(config.error(
                at,
                format!("{:?} is another portal's reply box", route.target),
                "name a target of [targets], or let the portal fetch its replies: replies = { certificate = \"<its encryption certificate>.pem\" }",
            ));
            None
        }
        Some(route) if config.targets.contains_key(&route.target) => Some(route),
        Some(route) => {
            errors.push(config.error(
                at,
                format!("no target {:?} to deliver portal {:?}'s replies to", route.target, p.id),
                "name a target of [targets], or let the portal fetch its replies: replies = { certificate = \"<its encryption certificate>.pem\" }",
            ));
            None
        }
        None => {
            errors.push(config.error(
                at,
                "give either `certificate` (the portal fetches its replies) or `target` (the gateway delivers them)",
                "e.g. replies = { certificate = \"portal-enc.pem\" } or replies = { target = \"postfach\" }",
            ));
            None
        }
    }
}

/// The readers of message boxes (`xta` targets), one per account, with the
/// certificates they are recognised by.
fn readers(config: &Config, errors: &mut Vec<ConfigError>, portals: &mut Portals) {
    let mut accounts: std::collections::BTreeMap<&str, Vec<(&String, &MessageBoxConfig)>> =
        Default::default();
    let mut reply_boxes = Vec::new();
    for (id, t) in &config.targets {
        if let (AdapterConfig::Xta(b), Some(_)) = (&t.adapter, &t.replies_of) {
            // Read with the portal's certificate: registered with the portal.
            reply_boxes.push((id, b));
        } else if let AdapterConfig::Xta(b) = &t.adapter {
            accounts
                .entry(b.account.as_str())
                .or_default()
                .push((id, b));
        }
    }
    if config.xta.is_none() {
        if let Some((id, _)) = accounts.values().flatten().next() {
            errors.push(config.error(
                format!("targets.{id}.adapter"),
                "a message-box target, but no XTA listener: its reader could never fetch",
                "add [xta] with listen = \"<address>:8444\", or give the target another adapter",
            ));
        }
    }
    for (id, b) in reply_boxes {
        let reader = Arc::new(Reader {
            account: b.account.clone(),
            targets: vec![id.clone()],
        });
        let none = |_: &str| String::new();
        for pin in pins(
            config,
            "portal",
            id,
            &none,
            &b.certificate,
            &b.certificate_sha256,
            &b.subject,
            &mut Vec::new(),
        ) {
            if let Some(other) = portals.add_reader(pin, reader.clone()) {
                errors.push(config.error(
                    format!("targets.{id}"),
                    format!(
                        "the portal's certificate also reads account {:?}; one certificate reads one account",
                        other.account
                    ),
                    "give the portal its own certificate, or let it receive its replies through a target (replies = { target = … })",
                ));
            }
        }
    }
    for (account, boxes) in accounts {
        let reader = Arc::new(Reader {
            account: account.to_owned(),
            targets: boxes.iter().map(|(id, _)| (*id).clone()).collect(),
        });
        for (id, b) in boxes {
            let at = |k: &str| format!("targets.{id}.adapter.{k}");
            for pin in pins(
                config,
                "reader",
                account,
                &at,
                &b.certificate,
                &b.certificate_sha256,
                &b.subject,
                errors,
            ) {
                if let Some(other) = portals.add_reader(pin, reader.clone()) {
                    errors.push(config.error(
                        at("certificate"),
                        format!(
                            "this certificate already reads account {:?}; one certificate reads one account",
                            other.account
                        ),
                        "give each reader account its own certificate, or let the targets share one account",
                    ));
                }
            }
        }
    }
}

/// The pins configured for a portal or operator (`certificate` file, `certificate_sha256`,
/// `subject`); problems go to `errors`, and having none at all is one.
#[allow(clippy::too_many_arguments)]
pub(super) fn pins(
    config: &Config,
    kind: &str,
    id: &str,
    at: &dyn Fn(&str) -> String,
    certificate: &Option<std::path::PathBuf>,
    sha256: &Option<String>,
    subject: &Option<String>,
    errors: &mut Vec<ConfigError>,
) -> Vec<Pin> {
    let mut out = Vec::new();
    if let Some(path) = certificate {
        match read(path).and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string())) {
            Ok(c) => out.push(Pin::Fingerprint(c.sha256_hex())),
            Err(e) => errors.push(config.error(
                at("certificate"),
                e,
                format!("give the {kind}'s client certificate as PEM"),
            )),
        }
    }
    if let Some(fp) = sha256 {
        let fp = fp.replace(':', "").to_ascii_lowercase();
        if fp.len() == 64 && fp.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push(Pin::Fingerprint(fp));
        } else {
            errors.push(config.error(
                at("certificate_sha256"),
                "not a SHA-256 fingerprint",
                "write 64 hex digits, e.g. from `openssl x509 -noout -fingerprint -sha256`",
            ));
        }
    }
    if let Some(subject) = subject {
        match Dn::parse(subject) {
            Ok(dn) => out.push(Pin::Subject(dn)),
            Err(e) => errors.push(config.error(
                at("subject"),
                format!("{subject:?} is not a subject the gateway can compare: {e}"),
                "write attribute=value pairs in the certificate's order, e.g. \"C=DE, O=Stadt Musterstadt, CN=buergerportal\"; inside a value escape , + \" \\ < > ; with a backslash (RFC 4514), or pin the certificate with `certificate` or `certificate_sha256`",
            )),
        }
    }
    if certificate.is_none() && sha256.is_none() && subject.is_none() {
        errors.push(config.error(
            at("certificate"),
            format!("{kind} {id:?} has no certificate, certificate_sha256 or subject"),
            format!("set one of them so the gateway can recognise the {kind}"),
        ));
    }
    out
}

/// A portal allowed a Leistung that no route takes: its submissions for it would
/// all be refused (`422 no-route`) — most likely a typo on one side.
pub(super) fn unrouted_leistungen(c: &mut Checks, router: &Router) {
    for (i, p) in c.config.portals.iter().enumerate() {
        for l in &p.leistungen {
            if let Ok(Pattern::Exact(l)) = Pattern::parse(l) {
                if !router.serves_leistung(&l) {
                    c.warnings.push(format!(
                        "portals[{i}].leistungen: portal {:?} may submit for Leistung {l}, but no route takes it; its submissions would be refused (no-route) — add a route or fix the key",
                        p.id
                    ));
                }
            }
        }
    }
}
