//! Certificate revocation lists (`pki.crls`): loaded from files or `https://`
//! URLs at start — where one that cannot be loaded is a config error (see
//! [`crate::daemon::setup`]) — and again every `pki.crl_refresh` by
//! [`refresh_task`], which hands them to the ingest listener's client check
//! ([`PeerCheck::set_crls`]) and checks the targets' certificates against them
//! again ([`RevokedTargets`]).
//!
//! A source that fails at a refresh keeps its last good CRLs (and is warned
//! about). A CRL past its nextUpdate is used all the same — refusing every
//! portal because a CRL server is down would stop intake altogether, while the
//! stale CRL still holds every revocation up to its issue — and is warned about
//! loudly: at start (`config check` too), at every refresh, and through the
//! metric `ozg_crl_next_update_seconds`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ozg_adapter_sdk::{KeyError, RecipientCert, TrustAnchors};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateRevocationListDer;
use tokio::sync::watch;

use crate::config::CrlSource;
use crate::core::metrics::{CrlLabels, Metrics, TargetLabel};
use crate::core::revoked::RevokedTargets;
use crate::listen::tls::PeerCheck;

/// The largest CRL accepted from a server.
const MAX_CRL_BYTES: usize = 64 << 20;

/// One loaded CRL.
#[derive(Debug, Clone)]
pub struct Crl {
    pub der: CertificateRevocationListDer<'static>,
    /// Its issuer, as displayed.
    pub issuer: String,
    /// Its issuer's name (DER), to match the subjects of CA certificates.
    pub issuer_der: Vec<u8>,
    /// Its nextUpdate, Unix seconds.
    pub next_update: i64,
}

/// Reads the CRLs of one source: PEM (one or more `X509 CRL` blocks) or DER.
pub fn parse(bytes: &[u8]) -> Result<Vec<Crl>, String> {
    let ders: Vec<CertificateRevocationListDer<'static>> =
        if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            CertificateRevocationListDer::pem_slice_iter(bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("not valid PEM: {e}"))?
        } else {
            vec![CertificateRevocationListDer::from(bytes.to_vec())]
        };
    if ders.is_empty() {
        return Err("no CRL in it (expected PEM `X509 CRL` blocks or DER)".into());
    }
    ders.into_iter()
        .map(|der| {
            // What rustls and the SDK will use it with must accept it.
            webpki::BorrowedCertRevocationList::from_der(der.as_ref()).map_err(|e| match e {
                webpki::Error::UnsupportedCrlVersion => "a version 1 CRL; only version 2 CRLs (with the CRL number and authority key identifier RFC 5280 requires) are supported".to_owned(),
                webpki::Error::UnsupportedDeltaCrl => "a delta CRL; give the full CRL".to_owned(),
                e => format!("not a usable CRL: {e:?}"),
            })?;
            let (_, x) = x509_parser::parse_x509_crl(der.as_ref())
                .map_err(|e| format!("not a usable CRL: {e}"))?;
            let next_update = x
                .next_update()
                .map(|t| t.timestamp())
                .ok_or("the CRL has no nextUpdate")?;
            let (issuer, issuer_der) = (x.issuer().to_string(), x.issuer().as_raw().to_vec());
            Ok(Crl {
                der,
                issuer,
                issuer_der,
                next_update,
            })
        })
        .collect()
}

/// An error with its causes (reqwest's own message names only the first).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Loads CRLs from their sources (the default one reads files only).
#[derive(Debug, Clone, Default)]
pub struct Loader {
    /// For `https://` sources: trusts `pki.crl_server_ca` only.
    client: Option<reqwest::Client>,
}

impl Loader {
    /// A loader; `server_ca` is needed for `https://` sources.
    pub fn new(server_ca: Option<&Path>) -> Result<Loader, String> {
        let Some(ca) = server_ca else {
            return Ok(Loader::default());
        };
        let tls = crate::listen::tls::server_only_client_config(ca)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            // Fetched rarely, and from more than one runtime (setup, then the daemon's).
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Loader {
            client: Some(client),
        })
    }

    /// Loads the CRLs of one source.
    pub async fn load(&self, source: &CrlSource) -> Result<Vec<Crl>, String> {
        let bytes = match source {
            CrlSource::File(path) => tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            CrlSource::Https(url) => self.fetch(url).await?,
        };
        parse(&bytes).map_err(|e| format!("{source}: {e}"))
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| format!("{url}: no pki.crl_server_ca to check the server against"))?;
        let fail = |e: reqwest::Error| format!("cannot fetch {url}: {}", with_causes(&e));
        let mut response = client.get(url).send().await.map_err(fail)?;
        if !response.status().is_success() {
            return Err(format!("{url}: the server answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_CRL_BYTES {
                return Err(format!("{url}: larger than {MAX_CRL_BYTES} bytes"));
            }
        }
        Ok(body)
    }

    /// Loads every source once, on a thread with a runtime of its own, so that
    /// setup can call it inside a runtime (the tests) or outside one (the CLI).
    pub fn load_all_blocking(&self, sources: &[CrlSource]) -> Vec<Result<Vec<Crl>, String>> {
        if sources.is_empty() {
            return Vec::new();
        }
        let failed = |why: String| sources.iter().map(|_| Err(why.clone())).collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(async {
                        let mut out = Vec::with_capacity(sources.len());
                        for source in sources {
                            out.push(self.load(source).await);
                        }
                        out
                    }),
                    Err(e) => failed(format!("cannot start a runtime to load CRLs: {e}")),
                }
            })
            .join()
            .unwrap_or_else(|_| failed("the CRL loader failed".into()))
        })
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The CRLs in force, where they come from, and what targets are checked with.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// `pki.crls`, in order; empty: no revocation checking.
    pub sources: Vec<CrlSource>,
    /// The CRLs last loaded from each source.
    pub current: Vec<Vec<Crl>>,
    pub loader: Loader,
    pub refresh: Duration,
    /// What target certificates chain to (`pki.trust_anchors`).
    pub trust: Option<TrustAnchors>,
}

impl Revocation {
    /// Every CRL in force.
    pub fn ders(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.current
            .iter()
            .flatten()
            .map(|c| c.der.clone())
            .collect()
    }

    /// A warning for every CRL in force past its nextUpdate at `now`.
    pub fn stale_warnings(&self, now: SystemTime) -> Vec<String> {
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.sources
            .iter()
            .zip(&self.current)
            .flat_map(|(source, crls)| {
                crls.iter().filter(|c| c.next_update < now).map(move |c| {
                    format!(
                        "STALE CRL: the CRL of {:?} from {source} is past its nextUpdate ({}); it is still used, but revocations since it was issued are unknown — publish a fresh one where pki.crls reads it",
                        c.issuer,
                        rfc3339(c.next_update)
                    )
                })
            })
            .collect()
    }

    fn publish(&self, metrics: &Metrics) {
        for (source, crls) in self.sources.iter().zip(&self.current) {
            if let Some(next) = crls.iter().map(|c| c.next_update).min() {
                metrics
                    .crl_next_update
                    .get_or_create(&CrlLabels {
                        crl: source.to_string(),
                    })
                    .set(next);
            }
        }
    }
}

/// Targets whose certificate `ders` list as revoked.
fn revoked_targets(
    trust: &TrustAnchors,
    targets: &BTreeMap<String, Arc<RecipientCert>>,
    ders: &[CertificateRevocationListDer<'static>],
    now: SystemTime,
) -> BTreeSet<String> {
    let mut revoked = BTreeSet::new();
    for (id, cert) in targets {
        match trust.verify_recipient_with_crls(cert.certificate().der(), &[], now, ders) {
            Err(KeyError::Revoked { .. }) => {
                revoked.insert(id.clone());
            }
            Err(e @ KeyError::RevocationUnknown { .. }) => {
                tracing::warn!(target_id = %id, "{e}");
            }
            // Expiry is watched on its own; the certificate stays in use.
            _ => {}
        }
    }
    revoked
}

/// Loads every source again, applies the CRLs to client certificates and
/// re-checks the targets.
async fn refresh_once(
    rev: &mut Revocation,
    peer_check: &PeerCheck,
    targets: &BTreeMap<String, Arc<RecipientCert>>,
    revoked: &RevokedTargets,
    metrics: &Metrics,
) {
    for (i, source) in rev.sources.iter().enumerate() {
        match rev.loader.load(source).await {
            Ok(crls) => rev.current[i] = crls,
            Err(e) => tracing::warn!(
                crl = %source,
                error = %e,
                "CRL could not be loaded again; the one loaded before stays in force"
            ),
        }
    }
    let ders = rev.ders();
    if let Err(e) = peer_check.set_crls(&ders) {
        tracing::error!(error = %e, "the new CRLs cannot be applied to client certificates; the previous ones stay in force");
    }
    let now = SystemTime::now();
    for w in rev.stale_warnings(now) {
        tracing::warn!("{w}");
    }
    rev.publish(metrics);
    if let Some(trust) = &rev.trust {
        let set = revoked_targets(trust, targets, &ders, now);
        for id in targets.keys() {
            metrics
                .target_revoked
                .get_or_create(&TargetLabel { target: id.clone() })
                .set(i64::from(set.contains(id)));
        }
        for id in &set {
            tracing::error!(
                target_id = %id,
                "the encryption certificate of this target has been revoked: submissions routed to it are refused until it has a new certificate (config, restart); deliveries already queued for it wait for an operator"
            );
        }
        revoked.set(set);
    }
}

/// Refreshes the CRLs every `rev.refresh` until shutdown (nothing to do without
/// CRLs).
pub async fn refresh_task(
    mut rev: Revocation,
    peer_check: PeerCheck,
    intake: Arc<crate::core::intake::Intake>,
    revoked: Arc<RevokedTargets>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    if rev.sources.is_empty() {
        return;
    }
    rev.publish(&metrics);
    let mut tick = tokio::time::interval(rev.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // setup loaded them just now
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // The targets in force now (a reload may have changed them).
                let routes = intake.routes.load_full();
                tokio::select! {
                    _ = refresh_once(&mut rev, &peer_check, &routes.targets, &revoked, &metrics) => {}
                    _ = shutdown.changed() => return,
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_pem_are_refused_with_a_reason() {
        assert!(parse(b"not a crl")
            .unwrap_err()
            .contains("not a usable CRL"));
        let err =
            parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err();
        assert!(err.contains("no CRL"), "{err}");
    }

    #[test]
    fn pem_and_der_crls_are_read_and_stale_ones_named() {
        let ca = crate::tools::demo_pki::DemoCa::generate("CRL unit test CA", 1).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let pem = ca
            .crl(
                &[],
                now - time::Duration::days(2),
                now - time::Duration::days(1),
            )
            .unwrap();
        let crls = parse(pem.as_bytes()).unwrap();
        assert_eq!(crls.len(), 1);
        assert!(
            crls[0].issuer.contains("CRL unit test CA"),
            "{}",
            crls[0].issuer
        );
        let der = parse(crls[0].der.as_ref()).unwrap();
        assert_eq!(der[0].next_update, crls[0].next_update);
        let rev = Revocation {
            sources: vec![CrlSource::File("/etc/ozg/ca.crl".into())],
            current: vec![crls],
            loader: Loader::default(),
            refresh: Duration::from_secs(60),
            trust: None,
        };
        let warnings = rev.stale_warnings(SystemTime::now());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("/etc/ozg/ca.crl") && warnings[0].contains("nextUpdate"));
        let earlier = SystemTime::now() - Duration::from_secs(3 * 86400);
        assert!(rev.stale_warnings(earlier).is_empty());
    }
}
