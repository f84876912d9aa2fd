//! The targets: encryption certificates, delivery policies and adapters; the
//! schemas of the Leistungen.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{KeyError, RecipientCert, TrustAnchors};
use rustls::pki_types::CertificateRevocationListDer;

use super::{read, Checks, Watched};
use crate::core::engine::TargetRuntime;
use crate::core::intake::check::SchemaOf;

/// Every target's encryption certificate, chaining to the trust anchors.
pub(super) fn target_certificates(
    c: &mut Checks,
    trust: &Option<TrustAnchors>,
    crls: &[CertificateRevocationListDer<'static>],
) -> BTreeMap<String, Arc<RecipientCert>> {
    let config = c.config;
    let now = c.now;
    let errors = &mut c.errors;
    let watched = &mut c.watched;
    let mut targets = BTreeMap::new();
    for (id, t) in &config.targets {
        let key = format!("targets.{id}.certificate");
        let pem = match &t.certificate_pem {
            Some(pem) => Ok(pem.as_bytes().to_vec()),
            None => read(&t.certificate),
        };
        let cert = pem.and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()));
        match (cert, &trust) {
            (Ok(cert), Some(trust)) => {
                match trust.verify_recipient_with_crls(cert.der(), &[], now, crls) {
                    Ok(r) => {
                        watched.push(Watched {
                            label: format!("target:{id}"),
                            cert: r.certificate().clone(),
                        });
                        targets.insert(id.clone(), Arc::new(r));
                    }
                    Err(e) => {
                        let fix = match e {
                        KeyError::Revoked { .. } => "give the target's new encryption certificate; the revoked one must not be encrypted for",
                        KeyError::RevocationUnknown { .. } => "add the CRL of the CA that issued it to pki.crls",
                        _ => "use the target's encryption certificate (RSA >= 3072 or P-256) issued under pki.trust_anchors",
                    };
                        errors.push(config.error(key, e.to_string(), fix))
                    }
                }
            }
            (Err(e), _) => {
                errors.push(config.error(key, e, "give the target's encryption certificate as PEM"))
            }
            (Ok(_), None) => {}
        }
    }
    targets
}

/// The delivery policies and every target's adapter, built by its own crate.
pub(super) fn delivery_runtimes(c: &mut Checks) -> Vec<Arc<TargetRuntime>> {
    let config = c.config;
    let errors = &mut c.errors;
    let d = &config.delivery;
    if let Some(p) = d.retry.problem() {
        errors.push(config.error(
            "delivery.retry",
            p,
            "see the defaults in config/gateway.toml",
        ));
    }
    if d.concurrency == 0 {
        errors.push(config.error("delivery.concurrency", "must be at least 1", "use e.g. 8"));
    }
    if d.envelope_memory.0 < 1 << 20 {
        errors.push(config.error(
            "delivery.envelope_memory",
            format!(
                "{} bytes would let one small envelope at a time go out",
                d.envelope_memory.0
            ),
            "give it at least 1MiB (the default is 128MiB)",
        ));
    }
    if d.breaker.failures == 0
        || d.breaker.open_for.is_zero()
        || d.breaker.max_open_for < d.breaker.open_for
    {
        errors.push(config.error(
            "delivery.breaker",
            "failures must be at least 1, open_for longer than 0s and max_open_for at least open_for",
            "use e.g. failures = 5, open_for = \"30s\", max_open_for = \"10m\"",
        ));
    }
    let mut deliveries = Vec::new();
    for (id, t) in &config.targets {
        let policy = d.retry.with(&t.retry);
        if let Some(p) = policy.problem() {
            errors.push(config.error(
                format!("targets.{id}.retry"),
                p,
                "correct the override or remove it",
            ));
        }
        if t.concurrency == Some(0) {
            errors.push(config.error(
                format!("targets.{id}.concurrency"),
                "must be at least 1",
                "remove it to use delivery.concurrency",
            ));
        }
        match t.adapter.settings().build() {
            Ok(adapter) => deliveries.push(Arc::new(TargetRuntime {
                id: id.clone(),
                adapter,
                policy,
                breaker: d.breaker,
                concurrency: t.concurrency.unwrap_or(d.concurrency).max(1),
                attempt_timeout: d.attempt_timeout,
                payload: t.payload,
            })),
            Err(e) => errors.push(config.error(format!("targets.{id}.adapter"), e.problem, e.fix)),
        }
    }
    deliveries
}

/// The schemas of the Leistungen that have one: JSON Schema or XML Schema.
#[allow(clippy::type_complexity)]
pub(super) fn leistung_schemas(
    c: &mut Checks,
) -> (
    HashMap<String, Arc<jsonschema::Validator>>,
    HashMap<String, Arc<crate::core::intake::xsd::XsdSchema>>,
) {
    let config = c.config;
    let errors = &mut c.errors;
    let mut schemas = HashMap::new();
    let mut xsds = HashMap::new();
    let leistungen = config
        .leistungen
        .iter()
        .map(|(l, c)| (SchemaOf::Leistung(l), format!("leistungen.{l}.schema"), c));
    let replies = config
        .reply_types
        .iter()
        .map(|(t, c)| (SchemaOf::ReplyType(t), format!("reply_types.{t}.schema"), c));
    for (of, key, l) in leistungen.chain(replies) {
        let Some(path) = &l.schema else { continue };
        let leistung = &of.key();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("xsd"))
        {
            match crate::core::intake::xsd::XsdSchema::load(path) {
                Ok(x) => {
                    xsds.insert(leistung.clone(), Arc::new(x));
                }
                Err(e) => errors.push(config.error(
                    key,
                    e,
                    "give an XML Schema (.xsd) that libxml2 can compile",
                )),
            }
            continue;
        }
        let schema = read(path).and_then(|b| {
            serde_json::from_slice::<serde_json::Value>(&b)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))
        });
        match schema {
            Ok(schema) => match jsonschema::validator_for(&schema) {
                Ok(v) => {
                    schemas.insert(leistung.clone(), Arc::new(v));
                }
                Err(e) => errors.push(config.error(
                    key,
                    format!("not a valid JSON Schema: {}", e.masked()),
                    "fix the schema file",
                )),
            },
            Err(e) => errors.push(config.error(
                key,
                e,
                "give a JSON Schema (.json) or an XML Schema (.xsd) file",
            )),
        }
    }
    (schemas, xsds)
}
