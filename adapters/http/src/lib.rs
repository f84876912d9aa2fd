//! The `http` adapter: POSTs the envelope (`application/json`) to a target's HTTPS
//! endpoint, presenting the gateway's client certificate and trusting only the
//! configured CA. Connections are kept alive and reused.
//!
//! Request headers: `Ozg-Message-Id` and `Idempotency-Key` (both the message id —
//! the receiver deduplicates by it), `Ozg-Submission-Id`.
//!
//! Outcomes: `2xx` → delivered; a JSON answer with a string field `receipt` (the
//! receiver's signed receipt), or a DMS's xdomea `EmpfangBestaetigen.0202`, is kept. `408`, `429`, `5xx`, timeouts and network
//! errors → retry (honouring `Retry-After`). A server certificate the gateway does
//! not trust, or a client certificate the server rejects, and every other `4xx`
//! → permanent (parked).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ozg_adapter_sdk::{
    Adapter, AdapterConfig, AdapterConfigError, DeliverFuture, Delivery, Outcome,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// Settings of an `http` target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Endpoint URL; must be `https://`.
    pub url: String,
    /// CA certificates (PEM) the endpoint's server certificate must chain to.
    pub server_ca: PathBuf,
    /// Client certificate (PEM chain) the gateway presents.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    /// Its private key (PKCS#8 PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Time for one whole request (connect, send, answer).
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// Time to establish a connection.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

impl AdapterConfig for HttpConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut v = vec![&mut self.server_ca];
        v.extend(self.client_certificate.as_mut());
        v.extend(self.client_key.as_mut());
        v
    }

    fn build(&self) -> Result<Arc<dyn Adapter>, AdapterConfigError> {
        let http = Http::new(self).map_err(AdapterConfigError::new)?;
        Ok(Arc::new(http))
    }
}

/// The adapter: one connection pool per target.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    url: String,
}

fn read_chain(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{} contains no certificate", path.display()));
    }
    Ok(chain)
}

impl Http {
    /// Builds the client; errors name the file and the problem (for `config check`).
    pub fn new(config: &HttpConfig) -> Result<Self, String> {
        if !config.url.starts_with("https://") {
            return Err(format!("url {:?} must start with https://", config.url));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in read_chain(&config.server_ca)? {
            roots.add(c).map_err(|e| {
                format!(
                    "{}: not a usable CA certificate: {e}",
                    config.server_ca.display()
                )
            })?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let tls = match (&config.client_certificate, &config.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_chain(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate and key do not fit together: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("client_certificate and client_key must be given together".into()),
        };
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Http {
            client,
            url: config.url.clone(),
        })
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Is a TLS certificate problem anywhere in the error's chain?
fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(c) => {
                    Some(format!("server certificate rejected: {c:?}"))
                }
                rustls::Error::AlertReceived(a) => {
                    Some(format!("the server rejected our TLS handshake: {a:?}"))
                }
                _ => None,
            };
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = certificate_problem(inner) {
                    return Some(found);
                }
            }
        }
        cur = err.source();
    }
    None
}

fn classify_error(e: &reqwest::Error, url: &str) -> Outcome {
    if let Some(why) = certificate_problem(e) {
        return Outcome::permanent("tls-certificate", why);
    }
    // Where to, and the innermost cause (e.g. "Connection refused (os error 111)"):
    // what an operator needs to tell a wrong address from a receiver that is down.
    let cause = root_cause(e);
    let url = reqwest::Url::parse(url)
        .map(|mut u| {
            // Never a credential in a message.
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        })
        .unwrap_or_else(|_| "the receiver".into());
    if e.is_timeout() {
        Outcome::retry("timeout", format!("no answer in time from {url}"))
    } else if e.is_connect() {
        Outcome::retry("connect", format!("cannot connect to {url}: {cause}"))
    } else {
        Outcome::retry(
            "network",
            format!("connection to {url} failed during the request: {cause}"),
        )
    }
}

/// The innermost error of a chain, without control characters, bounded.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// What a status code means for the delivery.
pub fn classify_status(status: u16, after: Option<Duration>) -> Option<Outcome> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(Outcome::Retry {
            failure: ozg_adapter_sdk::Failure::new(
                format!("http-{status}"),
                format!("the receiver answered {status}"),
            ),
            after,
        }),
        _ => Some(Outcome::permanent(
            &format!("http-{status}"),
            format!("the receiver refused with {status}"),
        )),
    }
}

const MAX_ANSWER: usize = 64 << 10;

/// Longest excerpt of a receiver's explanation kept with a failure.
const MAX_EXPLANATION: usize = 200;

/// A receiver that refuses with an RFC 9457 problem (or any JSON with `title` /
/// `detail`) says why: a bounded excerpt without control characters joins the
/// failure's message, so the operator sees it with the parked delivery. The
/// answer is the receiver's text, never our content.
fn with_explanation(outcome: Outcome, body: &[u8]) -> Outcome {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return outcome;
    };
    let said: Vec<&str> = ["title", "detail"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(|t| t.as_str()))
        .collect();
    if said.is_empty() {
        return outcome;
    }
    let mut excerpt: String = said
        .join(": ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_EXPLANATION)
        .collect();
    if said.iter().map(|s| s.chars().count()).sum::<usize>() + 2 > MAX_EXPLANATION {
        excerpt.push('…');
    }
    let add = |f: &mut ozg_adapter_sdk::Failure| f.receiver_says = Some(excerpt.clone());
    match outcome {
        Outcome::Retry { mut failure, after } => {
            add(&mut failure);
            Outcome::Retry { failure, after }
        }
        Outcome::Permanent { mut failure } => {
            add(&mut failure);
            Outcome::Permanent { failure }
        }
        delivered => delivered,
    }
}

impl Http {
    /// The client deliveries go out with (its TLS settings: the server CA,
    /// the client certificate).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The request a delivery of `message_id` is sent as, without its body
    /// (the conformance kit sends bodies of its own with it).
    pub fn request(&self, message_id: &str, submission_id: &str) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Ozg-Message-Id", message_id)
            .header("Idempotency-Key", message_id)
            .header("Ozg-Submission-Id", submission_id)
    }
}

impl Adapter for Http {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn deliver<'a>(&'a self, d: Delivery<'a>) -> DeliverFuture<'a> {
        Box::pin(async move {
            let resp = self
                .request(d.message_id, d.submission_id)
                .body(d.envelope.clone())
                .send()
                .await;
            let mut resp = match resp {
                Ok(r) => r,
                Err(e) => return classify_error(&e, &self.url),
            };
            let status = resp.status().as_u16();
            let after = retry_after(resp.headers());
            // Read a bounded answer: a receipt, or why the receiver refused.
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                if body.len() + chunk.len() > MAX_ANSWER {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            if let Some(outcome) = classify_status(status, after) {
                return with_explanation(outcome, &body);
            }
            Outcome::Delivered {
                receipt: receipt_in(&body),
            }
        })
    }
}

/// The receiver's receipt in a `2xx` answer: a JSON object's string field
/// `receipt`, or an xdomea `Geschaeftsgang.EmpfangBestaetigen.0202` (kept whole).
fn receipt_in(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return v.get("receipt").and_then(|r| r.as_str()).map(str::to_owned);
    }
    ozg_adapter_sdk::xdomea::confirmation(body)?;
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_receipt_is_a_json_field_or_an_xdomea_0202() {
        assert_eq!(
            receipt_in(br#"{"receipt":"eyJ.x.y"}"#).as_deref(),
            Some("eyJ.x.y")
        );
        assert_eq!(receipt_in(br#"{"ok":true}"#), None);
        let confirmation = "<x:Geschaeftsgang.EmpfangBestaetigen.0202 xmlns:x=\"urn:xoev-de:xdomea:schema:3.0.0\"><x:Kopf><x:ProzessID>p-1</x:ProzessID></x:Kopf></x:Geschaeftsgang.EmpfangBestaetigen.0202>";
        assert_eq!(
            receipt_in(confirmation.as_bytes()).as_deref(),
            Some(confirmation)
        );
        assert_eq!(receipt_in(b"<html>thanks</html>"), None);
        assert_eq!(receipt_in(b""), None);
    }

    #[test]
    fn a_refusal_keeps_a_bounded_excerpt_of_the_receivers_problem() {
        let problem = br#"{"type":"/p/x","title":"Envelope refused","detail":"seal\nnot trusted"}"#;
        let Some(Outcome::Permanent { failure }) =
            classify_status(422, None).map(|o| with_explanation(o, problem))
        else {
            panic!("not permanent")
        };
        assert_eq!(failure.class, "http-422");
        assert!(
            failure
                .to_string()
                .ends_with("(the receiver says: Envelope refused: seal not trusted)"),
            "{failure}"
        );
        assert!(!failure.loggable().contains("Envelope refused"));
        let long = format!(r#"{{"detail":"{}"}}"#, "x".repeat(5000));
        let Some(Outcome::Permanent { failure }) =
            classify_status(400, None).map(|o| with_explanation(o, long.as_bytes()))
        else {
            panic!("not permanent")
        };
        assert!(failure.to_string().len() < 300, "{failure}");
        // Not JSON: the message stays as it was.
        let Some(Outcome::Permanent { failure }) =
            classify_status(400, None).map(|o| with_explanation(o, b"<html>"))
        else {
            panic!("not permanent")
        };
        assert_eq!(failure.message, "the receiver refused with 400");
    }

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(202, None), None);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify_status(s, None), Some(Outcome::Retry { .. })),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(
                matches!(classify_status(s, None), Some(Outcome::Permanent { .. })),
                "{s}"
            );
        }
        match classify_status(503, Some(Duration::from_secs(7))) {
            Some(Outcome::Retry { after, failure }) => {
                assert_eq!(after, Some(Duration::from_secs(7)));
                assert_eq!(failure.class, "http-503");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settings_are_checked_when_the_adapter_is_built() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs-example");
        let mut c = HttpConfig {
            url: "http://dms.example/in".into(),
            server_ca: "ca.pem".into(),
            client_certificate: None,
            client_key: None,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
        };
        c.resolve_paths(&demo);
        assert_eq!(c.server_ca, demo.join("ca.pem"));
        let err = c.build().err().unwrap();
        assert_eq!(
            err.problem,
            "url \"http://dms.example/in\" must start with https://"
        );
        assert_eq!(err.fix, ozg_adapter_sdk::adapter_config::GENERIC_FIX);
        c.url = "https://dms.example/in".into();
        assert_eq!(c.build().unwrap().kind(), "http");
    }

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
