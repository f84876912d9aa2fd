//! `[fitconnect]` checked and built: the API clients (secret hashes, roles,
//! bindings to existing destinations) and the destinations (RSA ≥ 4096
//! encryption certificates, published as JWKs), and one message-box target
//! per destination for the delivery engine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::targets::{use_of, Use};
use super::{read, Checks};
use crate::config::FitRole;
use crate::core::engine::TargetRuntime;
use crate::core::fitconnect::events::EventSigner;
use crate::core::fitconnect::keys::DestinationKey;
use crate::core::fitconnect::{box_target, Client, Destination, PublishedKey, Role};
use crate::model::routing::{Pattern, PatternSet};
use rustls_pki_types::pem::PemObject as _;

/// The Zustelldienst's clients, destinations and event signing key.
pub struct FitSetup {
    pub clients: HashMap<String, Arc<Client>>,
    pub destinations: BTreeMap<String, Arc<Destination>>,
    pub signer: Arc<EventSigner>,
}

/// A destination's keys with their times (see `targets::listed`); every one
/// issued under `pki.trust_anchors` and not revoked, as of now, or for a
/// later one of a rotation as of its takeover. Err: (config key, why).
fn destination_keys(
    at: &str,
    d: &crate::config::FitDestinationConfig,
    trust: Option<&ozg_adapter_sdk::TrustAnchors>,
    crls: &[rustls_pki_types::CertificateRevocationListDer<'static>],
    now: std::time::SystemTime,
) -> Result<Vec<PublishedKey>, (String, String)> {
    let now_s = super::targets::epoch_s(now);
    let entries = super::targets::listed(at, &d.certificate, &d.certificates, None)
        .map_err(|e| (format!("{at}.certificate"), e))?;
    let rotating = entries.len() > 1;
    let mut keys = Vec::new();
    for (key, pem, from) in entries {
        let cert = pem
            .and_then(|pem| {
                ozg_adapter_sdk::keys::Certificate::from_pem(&pem).map_err(|e| e.to_string())
            })
            .map_err(|e| (key.clone(), e))?;
        let Some(Use {
            start,
            end,
            check_at,
        }) = use_of(&cert, from, rotating, now).map_err(|e| (key.clone(), e))?
        else {
            continue; // an old key of the rotation, past its time
        };
        if let Some(trust) = trust {
            trust
                .verify_recipient_with_crls(cert.der(), &[], check_at, crls)
                .map_err(|e| (key.clone(), e.to_string()))?;
        }
        keys.push(PublishedKey {
            cert: Arc::new(
                DestinationKey::from_certificate(cert.der()).map_err(|e| (key.clone(), e))?,
            ),
            start,
            end,
        });
    }
    if crate::core::intake::rotation::current(&keys, now_s).is_none() {
        return Err((
            format!("{at}.certificates"),
            "none of the destination's certificates is in use now".into(),
        ));
    }
    Ok(keys)
}

fn patterns(list: &[String]) -> Result<PatternSet, String> {
    list.iter()
        .map(|s| Pattern::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map(PatternSet)
}

pub(super) fn fitconnect(
    c: &mut Checks,
    trust: &Option<ozg_adapter_sdk::keys::TrustAnchors>,
    crls: &[rustls_pki_types::CertificateRevocationListDer<'static>],
) -> Option<FitSetup> {
    let config = c.config;
    let f = config.fitconnect.as_ref()?;
    let errors = &mut c.errors;
    let signer = read(&f.signing_key)
        .and_then(|pem| {
            rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| format!("{}: not a PEM private key: {e}", f.signing_key.display()))
        })
        .and_then(|key| {
            let cert = read(&f.signing_certificate)?;
            let cert =
                ozg_adapter_sdk::keys::Certificate::from_pem(&cert).map_err(|e| e.to_string())?;
            EventSigner::new(key.secret_der(), cert.der())
        });
    let signer = match signer {
        Ok(s) => Arc::new(s),
        Err(e) => {
            errors.push(config.error(
                "fitconnect.signing_key",
                e,
                "give an RSA-4096 key (PKCS#8 PEM) and its certificate",
            ));
            return None;
        }
    };
    let mut out = FitSetup {
        clients: HashMap::new(),
        destinations: BTreeMap::new(),
        signer,
    };
    for (id, d) in &f.destinations {
        let at = format!("fitconnect.destinations.{id}");
        if uuid::Uuid::parse_str(id).is_err() {
            errors.push(config.error(
                &at,
                "a destination id must be a UUID",
                "use e.g. the output of `uuidgen`",
            ));
            continue;
        }
        let key = destination_keys(&at, d, trust.as_ref(), crls, c.now);
        let leistungen = patterns(&d.leistungen);
        match (key, leistungen) {
            (Ok(key), Ok(leistungen)) => {
                let callback = match (&d.callback_url, &d.callback_secret) {
                    (None, None) => None,
                    (Some(url), Some(secret))
                        if url.starts_with("https://") && secret.len() >= 32 =>
                    {
                        let tls = match &d.callback_ca {
                            Some(ca) => crate::listen::tls::server_only_client_config(ca),
                            None => Err("callback_ca is missing".into()),
                        };
                        match tls.and_then(|tls| {
                            reqwest::Client::builder()
                                .use_preconfigured_tls(tls)
                                .timeout(std::time::Duration::from_secs(10))
                                .build()
                                .map_err(|e| e.to_string())
                        }) {
                            Ok(client) => {
                                Some(Arc::new(crate::core::fitconnect::callback::Callback {
                                    url: url.clone(),
                                    secret: secret.clone(),
                                    client,
                                }))
                            }
                            Err(e) => {
                                errors.push(config.error(
                                    format!("{at}.callback_ca"),
                                    e,
                                    "the CA of the callback endpoint's certificate (PEM)",
                                ));
                                None
                            }
                        }
                    }
                    _ => {
                        errors.push(config.error(format!("{at}.callback_url"), "a callback needs an https:// callback_url and a callback_secret of at least 32 characters", "set both, or neither"));
                        None
                    }
                };
                out.destinations.insert(
                    id.clone(),
                    Arc::new(Destination {
                        id: id.clone(),
                        targets: d.targets.clone(),
                        callback,
                        leistungen,
                        keys: key,
                    }),
                );
            }
            (Err((key, e)), _) => errors.push(config.error(
                key,
                e,
                "give the destination's RSA-4096 encryption certificate (PEM), or certificates = [{ file, from }] for a key rotation",
            )),
            (_, Err(e)) => errors.push(config.error(
                format!("{at}.leistungen"),
                e,
                "write a Leistung, a prefix ending in `*`, or `*`",
            )),
        }
    }
    for (id, d) in &f.destinations {
        for t in &d.targets {
            if !config.targets.contains_key(t) {
                errors.push(config.error(
                    format!("fitconnect.destinations.{id}.targets"),
                    format!("unknown target {t:?}"),
                    "name targets of [targets]",
                ));
            }
        }
    }
    for (i, cl) in f.clients.iter().enumerate() {
        let at = |k: &str| format!("fitconnect.clients[{i}].{k}");
        let mut hash = [0u8; 32];
        if hex::decode_to_slice(cl.secret_sha256.trim(), &mut hash).is_err() {
            errors.push(config.error(
                at("secret_sha256"),
                "not a SHA-256 (64 hex digits)",
                "make a client with `ozg-gateway fitconnect-client`",
            ));
        }
        for d in &cl.destinations {
            if !f.destinations.contains_key(d) {
                errors.push(config.error(
                    at("destinations"),
                    format!("unknown destination {d}"),
                    "bind the client to a destination of [fitconnect.destinations]",
                ));
            }
        }
        let leistungen = patterns(&cl.leistungen).unwrap_or_else(|e| {
            errors.push(config.error(
                at("leistungen"),
                e,
                "write a Leistung, a prefix ending in `*`, or `*`",
            ));
            PatternSet(vec![])
        });
        let signing_key = cl.signing_certificate.as_ref().and_then(|path| {
            let cert = read(path).and_then(|pem| {
                ozg_adapter_sdk::keys::Certificate::from_pem(&pem).map_err(|e| e.to_string())
            });
            match cert.map(|c| c.public_key().clone()) {
                Ok(ozg_adapter_sdk::keys::PublicKey::Rsa { pkcs1, .. }) => Some(pkcs1),
                Ok(_) => {
                    errors.push(config.error(
                        at("signing_certificate"),
                        "not an RSA certificate",
                        "FIT-Connect events are signed with PS512 (RSA)",
                    ));
                    None
                }
                Err(e) => {
                    errors.push(config.error(
                        at("signing_certificate"),
                        e,
                        "give the subscriber's signature certificate (PEM)",
                    ));
                    None
                }
            }
        });
        if cl.role == FitRole::Subscriber && cl.signing_certificate.is_none() {
            c.warnings.push(format!(
                "fitconnect.clients[{i}]: subscriber {:?} has no signing_certificate: the events it posts are taken without checking their signature",
                cl.id
            ));
        }
        let client = Arc::new(Client {
            id: cl.id.clone(),
            secret_sha256: hash,
            role: match cl.role {
                FitRole::Sender => Role::Sender,
                FitRole::Subscriber => Role::Subscriber,
            },
            destinations: cl.destinations.clone(),
            leistungen,
            signing_key,
        });
        if out.clients.insert(cl.id.clone(), client).is_some() {
            errors.push(config.error(
                at("id"),
                format!("client id {:?} is used twice", cl.id),
                "give every client its own id",
            ));
        }
    }
    Some(out)
}

/// `[[fitconnect_subscriptions]]`: ids, URLs and keys that load.
pub(super) fn subscriptions(c: &mut Checks) {
    let config = c.config;
    for (i, s) in config.fitconnect_subscriptions.iter().enumerate() {
        let at = |k: &str| format!("fitconnect_subscriptions[{i}].{k}");
        if uuid::Uuid::parse_str(&s.destination).is_err() {
            c.errors.push(config.error(
                at("destination"),
                "not a UUID",
                "the destination id as the Zustelldienst names it",
            ));
        }
        for (key, url) in [("api_url", &s.api_url), ("token_url", &s.token_url)] {
            if !url.starts_with("https://") {
                c.errors.push(config.error(
                    at(key),
                    format!("{url:?} is not an https:// URL"),
                    "FIT-Connect is spoken over HTTPS",
                ));
            }
        }
        let key = read(&s.destination_key).and_then(|pem| {
            ozg_adapter_sdk::keys::RecipientPrivateKey::from_pem(&pem, None)
                .map_err(|e| e.to_string())
        });
        if let Err(e) = key {
            c.errors.push(config.error(
                at("destination_key"),
                e,
                "the destination's private key (PKCS#8 PEM, RSA ≥ 4096)",
            ));
        }
        let signing = read(&s.signing_key).and_then(|pem| {
            rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string())
        });
        match signing {
            Ok(k) if aws_lc_rs::signature::RsaKeyPair::from_pkcs8(k.secret_der()).is_ok() => {}
            Ok(_) => c.errors.push(config.error(
                at("signing_key"),
                "not an RSA PKCS#8 key",
                "events are signed PS512 (RSA)",
            )),
            Err(e) => c.errors.push(config.error(
                at("signing_key"),
                e,
                "this subscriber's signature key (PKCS#8 PEM, RSA)",
            )),
        }
        match (&s.callback_listen, &s.callback_secret) {
            (None, None) => {}
            (Some(_), Some(secret)) if secret.len() >= 32 => {}
            _ => c.errors.push(config.error(
                at("callback_listen"),
                "callbacks need callback_listen and a callback_secret of at least 32 characters",
                "set both (the secret as agreed with the Zustelldienst), or neither",
            )),
        }
        if let Err(e) = read(&s.server_ca) {
            c.errors.push(config.error(
                at("server_ca"),
                e,
                "the CA of the Zustelldienst's TLS certificate (PEM)",
            ));
        }
    }
}

/// One message-box target per destination: its subscriber fetches from it.
pub(super) fn destination_runtimes(c: &Checks, fit: Option<&FitSetup>) -> Vec<Arc<TargetRuntime>> {
    let d = &c.config.delivery;
    fit.map(|f| {
        f.destinations
            .keys()
            .map(|id| {
                Arc::new(TargetRuntime {
                    id: box_target(id),
                    adapter: crate::config::message_box(),
                    policy: d.retry,
                    breaker: d.breaker,
                    concurrency: d.concurrency.max(1),
                    attempt_timeout: d.attempt_timeout,
                    payload: Default::default(),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}
