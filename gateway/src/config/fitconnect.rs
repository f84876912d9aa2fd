//! `[fitconnect]`: the gateway as a self-hosted FIT-Connect Zustelldienst
//! (Submission and Subscriber API v1): its listener, the API clients with
//! their hashed secrets and bindings, and the destinations with their
//! encryption certificates.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitConnectConfig {
    /// Address to bind (HTTPS with the ingest listener's certificate; clients
    /// authenticate with OAuth2 client credentials, not certificates).
    pub listen: SocketAddr,
    /// Base URL clients reach it at (`iss`/`aud` of tokens); the API is at
    /// `<public_url>/v1`, tokens at `<public_url>/token`. Default: `https://localhost:<port>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The gateway's event signing key (PKCS#8 PEM, RSA ≥ 4096) and its
    /// certificate: signs Security Event Tokens (PS512), published as a JWKS.
    pub signing_key: PathBuf,
    pub signing_certificate: PathBuf,
    /// How long an access token is valid (FIT-Connect: at most 30 minutes).
    #[serde(with = "humantime_serde", default = "thirty_minutes")]
    pub token_lifetime: Duration,
    /// A submission its subscriber neither accepted nor rejected this long
    /// after it was submitted is rejected by the gateway (FIT-Connect: 14 days).
    #[serde(with = "humantime_serde", default = "fourteen_days")]
    pub auto_reject_after: Duration,
    /// A submission created but not submitted this long is deleted with its attachments.
    #[serde(with = "humantime_serde", default = "one_day")]
    pub incomplete_after: Duration,
    /// API clients (senders: online services; subscribers: the authority's side).
    #[serde(default)]
    pub clients: Vec<FitClientConfig>,
    /// Destinations (Zustellpunkte) by their UUID.
    #[serde(default)]
    pub destinations: BTreeMap<String, FitDestinationConfig>,
}

fn thirty_minutes() -> Duration {
    Duration::from_secs(30 * 60)
}

fn fourteen_days() -> Duration {
    Duration::from_secs(14 * 86400)
}

fn one_day() -> Duration {
    Duration::from_secs(86400)
}

/// What an API client may do.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FitRole {
    /// Creates and submits submissions to its destinations.
    Sender,
    /// Lists, fetches and confirms the submissions of its destinations.
    Subscriber,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitClientConfig {
    /// The OAuth2 `client_id`.
    pub id: String,
    /// SHA-256 (hex) of its `client_secret`; the secret itself is never stored
    /// (make both with `ozg-gateway fitconnect-client`).
    pub secret_sha256: String,
    pub role: FitRole,
    /// Destinations (UUIDs) it may send to or subscribe to.
    pub destinations: Vec<String>,
    /// Leistungen (`*` and prefixes allowed) a sender may submit for.
    #[serde(default = "any")]
    pub leistungen: Vec<String>,
    /// A subscriber's signature certificate (PEM, RSA): the events it posts
    /// must be signed (PS512) by its key. Without one, its events are taken
    /// on its token alone (the daemon warns).
    #[serde(default)]
    pub signing_certificate: Option<PathBuf>,
}

fn any() -> Vec<String> {
    vec!["*".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitDestinationConfig {
    /// The destination's encryption certificate (PEM, RSA with at least 4096
    /// bits, chaining to `pki.trust_anchors`): published as its JWK; senders
    /// encrypt for it, only the holder of its key reads the submissions.
    #[serde(default)]
    pub certificate: PathBuf,
    /// Instead of `certificate`: several, each with the time it takes over
    /// (a key rotation). The destination names the one that took over last
    /// among those in use as its `encryptionKid`; every listed key not past
    /// its notAfter stays published, for senders that fetched it before.
    #[serde(default)]
    pub certificates: Vec<super::CertificateWindow>,
    /// Leistungen (`*` and prefixes) it takes.
    #[serde(default = "any")]
    pub leistungen: Vec<String>,
    /// Local targets that get every submission as it came (the `fitconnect`
    /// payload: the submission JSON with the sender's JWEs, never decrypted
    /// here), besides the destination's box: for receivers that hold the
    /// destination's key.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Where the subscriber takes callbacks (`https://…`): told about every new
    /// submission, HMAC-SHA-512 over `<timestamp>.<body>` with `callback_secret`.
    #[serde(default)]
    pub callback_url: Option<String>,
    #[serde(default)]
    pub callback_secret: Option<String>,
    /// CA of the callback endpoint's TLS certificate (PEM).
    #[serde(default)]
    pub callback_ca: Option<PathBuf>,
    /// Free text for operators.
    #[serde(default)]
    pub description: Option<String>,
}

/// `[[fitconnect_subscriptions]]`: the gateway as the subscriber of a
/// destination at a (hosted or self-hosted) FIT-Connect Zustelldienst. It
/// fetches, decrypts with the destination's key, checks every hash, hands
/// each application to its own intake (routing by Leistung and `route_as`),
/// and accepts it there only once it is durable here (or rejects it when its
/// data are refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitSubscriptionConfig {
    /// The destination (UUID) at the Zustelldienst.
    pub destination: String,
    /// The Submission/Subscriber API, e.g. `https://zustelldienst.example/v1`.
    pub api_url: String,
    /// Its OAuth2 token endpoint.
    pub token_url: String,
    pub client_id: String,
    /// The client secret (use `${ENV}`).
    pub client_secret: String,
    /// The destination's private key (PKCS#8 PEM, RSA): decrypts what senders sent.
    pub destination_key: PathBuf,
    /// This subscriber's signature key (PKCS#8 PEM, RSA): signs accept/reject events (PS512).
    pub signing_key: PathBuf,
    /// CA of the Zustelldienst's TLS certificate (PEM).
    pub server_ca: PathBuf,
    /// How often it looks for new submissions.
    #[serde(with = "humantime_serde", default = "thirty_seconds")]
    pub poll_interval: Duration,
    /// The destination the local routes see (default: the FIT-Connect destination id).
    #[serde(default)]
    pub route_as: Option<String>,
    /// Where to take the Zustelldienst's callbacks (HTTPS with the ingest
    /// listener's certificate, any path): a valid one makes it poll at once.
    #[serde(default)]
    pub callback_listen: Option<std::net::SocketAddr>,
    /// The callback secret agreed with the Zustelldienst (use `${ENV}`).
    #[serde(default)]
    pub callback_secret: Option<String>,
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
