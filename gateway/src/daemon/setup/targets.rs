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
use crate::core::intake::rotation::{current, KeyWindow};

/// One certificate a target or destination lists: its config key, its PEM
/// (or why it cannot be read) and the configured takeover (seconds since the
/// epoch).
pub(super) type Listed = (String, Result<Vec<u8>, String>, Option<i64>);

/// Why a certificate whose `from` is at or after its notAfter is refused.
fn never_used(cert: &Certificate) -> String {
    format!(
        "certificate {:?} would take over only after its notAfter ({}): it would never be used",
        cert.subject(),
        cert.not_after_rfc3339()
    )
}

/// When a listed certificate is used, and as of when its chain is checked.
pub(super) struct Use {
    /// Takes over (seconds since the epoch): the later of `from` and notBefore.
    pub start: i64,
    /// Used until (its notAfter).
    pub end: i64,
    /// Now, or its takeover for one of a rotation that takes over later.
    pub check_at: std::time::SystemTime,
}

/// When `cert`, listed with takeover `from`, is used. `Ok(None)`: an old one
/// of a rotation past its notAfter (listed for the record, never used
/// again, not checked). A `from` at or after its notAfter is refused.
pub(super) fn use_of(
    cert: &Certificate,
    from: Option<i64>,
    rotating: bool,
    now: std::time::SystemTime,
) -> Result<Option<Use>, String> {
    let now_s = epoch_s(now);
    let (start, end) = (
        from.unwrap_or(i64::MIN).max(cert.not_before()),
        cert.not_after(),
    );
    if start >= end {
        return Err(never_used(cert));
    }
    if rotating && end <= now_s {
        return Ok(None);
    }
    let check_at = if rotating && start > now_s {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(start as u64)
    } else {
        now
    };
    Ok(Some(Use {
        start,
        end,
        check_at,
    }))
}

/// Seconds since the epoch.
pub(super) fn epoch_s(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A configured `from` in whole seconds, rounded up: a key is never used
/// before its `from`.
pub(super) fn takeover(from: &time::OffsetDateTime) -> i64 {
    from.unix_timestamp() + i64::from(from.nanosecond() > 0)
}

/// The certificates listed at `at` as `certificate` (one) or `certificates`
/// (a rotation), or given as `pem` (a registered target).
pub(super) fn listed(
    at: &str,
    certificate: &std::path::Path,
    certificates: &[crate::config::CertificateWindow],
    pem: Option<&str>,
) -> Result<Vec<Listed>, String> {
    if let Some(pem) = pem {
        return Ok(vec![(
            format!("{at}.certificate"),
            Ok(pem.as_bytes().to_vec()),
            None,
        )]);
    }
    match (certificate.as_os_str().is_empty(), certificates.is_empty()) {
        (false, true) => Ok(vec![(format!("{at}.certificate"), read(certificate), None)]),
        (true, false) => Ok(certificates
            .iter()
            .enumerate()
            .map(|(i, w)| {
                (
                    format!("{at}.certificates[{i}]"),
                    read(&w.file),
                    w.from.as_ref().map(takeover),
                )
            })
            .collect()),
        (true, true) => Err("no encryption certificate is given".into()),
        (false, false) => Err("give either certificate or certificates, not both".into()),
    }
}

/// Every target's encryption certificate in use now, chaining to the trust
/// anchors; and, for targets listing several, when each is used. A
/// certificate that takes over later is checked as of that time.
pub(super) fn target_certificates(
    c: &mut Checks,
    trust: &Option<TrustAnchors>,
    crls: &[CertificateRevocationListDer<'static>],
) -> (
    BTreeMap<String, Arc<RecipientCert>>,
    BTreeMap<String, Vec<KeyWindow>>,
) {
    let config = c.config;
    let now = c.now;
    let now_s = epoch_s(now);
    let mut targets = BTreeMap::new();
    let mut rotations = BTreeMap::new();
    for (id, t) in &config.targets {
        let at = format!("targets.{id}");
        let entries = match listed(
            &at,
            &t.certificate,
            &t.certificates,
            t.certificate_pem.as_deref(),
        ) {
            Ok(e) => e,
            Err(e) => {
                c.errors.push(config.error(
                    format!("targets.{id}.certificate"),
                    e,
                    "give certificate = \"FILE\", or certificates = [{ file = \"FILE\" }, { file = \"NEXT\", from = \"2027-01-15T00:00:00Z\" }]",
                ));
                continue;
            }
        };
        let mut windows = Vec::new();
        let mut expired = 0;
        // A single certificate must be valid now; in a rotation, one that
        // takes over later is checked as of then.
        let rotating = entries.len() > 1;
        for (key, pem, from) in entries {
            let cert = pem.and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()));
            let cert = match cert {
                Ok(cert) => cert,
                Err(e) => {
                    c.errors.push(config.error(
                        key,
                        e,
                        "give the target's encryption certificate as PEM",
                    ));
                    continue;
                }
            };
            let Some(trust) = &trust else { continue };
            let Use {
                start,
                end,
                check_at,
            } = match use_of(&cert, from, rotating, now) {
                Ok(Some(u)) => u,
                Ok(None) => {
                    expired += 1;
                    continue;
                }
                Err(e) => {
                    let fix = "give a `from` before the certificate's notAfter";
                    c.errors.push(config.error(key, e, fix));
                    continue;
                }
            };
            match trust.verify_recipient_with_crls(cert.der(), &[], check_at, crls) {
                Ok(r) => windows.push(KeyWindow {
                    end,
                    cert: Arc::new(r),
                    start,
                }),
                Err(KeyError::Expired { .. }) if t.certificates.len() > 1 => {
                    // An old certificate of a rotation, past its time: may
                    // stay listed for the record, never used again.
                    expired += 1;
                }
                Err(e) => {
                    let fix = match e {
                        KeyError::Revoked { .. } => "give the target's new encryption certificate; the revoked one must not be encrypted for",
                        KeyError::RevocationUnknown { .. } => "add the CRL of the CA that issued it to pki.crls",
                        _ => "use the target's encryption certificate (RSA >= 3072 or P-256) issued under pki.trust_anchors",
                    };
                    c.errors.push(config.error(key, e.to_string(), fix));
                }
            }
        }
        if windows.is_empty() {
            if expired > 0 {
                c.errors.push(config.error(
                    format!("targets.{id}.certificates"),
                    "every certificate of the target has expired",
                    "add the target's current encryption certificate",
                ));
            }
            continue;
        }
        let Some(now_used) = current(&windows, now_s).cloned() else {
            c.errors.push(config.error(
                format!("targets.{id}.certificates"),
                "none of the target's certificates is in use now (each is used from its `from` or notBefore until its notAfter)",
                "list a certificate that is valid now",
            ));
            continue;
        };
        c.watched.push(Watched {
            label: format!("target:{id}"),
            cert: now_used.cert.certificate().clone(),
        });
        targets.insert(id.clone(), now_used.cert);
        if windows.len() > 1 {
            rotations.insert(id.clone(), windows);
        }
    }
    (targets, rotations)
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
