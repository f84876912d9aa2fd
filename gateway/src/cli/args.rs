//! The command line's arguments: every command and its options (clap derive).
//! Defaults point at the local daemon and the DEMO ONLY certificates of a checkout.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub(super) use super::operator_args::{
    OperatorArgs, QueueAction, QueueCommand, RouteCommand, StatsArgs, TargetAdd, TargetCommand,
};
use crate::tools::client::{self, PortalIdentity};

#[derive(Parser)]
#[command(
    name = "ozg-gateway",
    version,
    about = "Seals, encrypts and reliably delivers OZG submissions"
)]
pub struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Run the daemon.
    Serve {
        /// Config file.
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// Make the running daemon re-read its config (like SIGHUP): portals,
    /// operators, Leistungen, routes, targets, request limits. A config with
    /// problems, or one that changes what is read at start only, is refused and
    /// the one in force stays. Asks the daemon's admin listener.
    Reload {
        /// The config file the daemon runs with (names its admin listener).
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// The audit log: verify the chain and checkpoints, show a submission's Laufzettel.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Drive a running gateway with many portal connections and report rates and latencies.
    Loadgen(LoadgenArgs),
    /// Empty message boxes over XTA as several Fachverfahren would (getStatusList,
    /// getMessage, close) and report messages/s, MiB/s and latencies (see bench/xta.sh).
    XtaReaders(XtaReadersArgs),
    /// Measure the machine's limits for the benchmark (see bench/run.sh).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Generate a DEMO ONLY PKI (CA, TLS, portal, operator, seal and recipient certificates).
    DemoPki {
        /// Output directory (required: nothing is written to a default place).
        #[arg(long)]
        out: PathBuf,
        /// Replace a PKI that is already there (its keys are gone afterwards).
        #[arg(long)]
        force: bool,
    },
    /// Run an example HTTPS inbox that opens, verifies and stores envelopes (for trying out).
    DemoReceiver(DemoReceiverArgs),
    /// For vendors: prove a receiver handles envelopes as the gateway expects,
    /// before go-live (a fixed series of good and bad envelopes; exit 0 only
    /// when every case passes).
    Conformance {
        #[command(subcommand)]
        command: super::conformance::ConformanceCommand,
    },
    /// Send a submission as a portal would and print the gateway's JSON answer.
    Submit(SubmitArgs),
    /// Open an envelope as a recipient: decrypt, verify the seal and every hash, write the parts.
    Open(OpenArgs),
    /// The delivery queues, as an operator: list, show a submission, retry,
    /// park, discard (over the admin listener's operator API; audited with
    /// your id). Exit codes: 0 done, 1 refused, 3 not found, 4 gateway
    /// unreachable or failing.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Delivery targets, as an operator: their queues, breakers and last
    /// errors; pause, resume and test them; register and remove targets.
    Target {
        #[command(subcommand)]
        command: TargetCommand,
    },
    /// Routes, as an operator: list them, register and remove routes.
    Route {
        #[command(subcommand)]
        command: RouteCommand,
    },
    /// The gateway at a glance, as an operator: ready or not, the queues,
    /// paused and failing targets. Exit 0 when nothing needs attention, 1
    /// when something does (not ready, parked deliveries, a paused target or
    /// an open breaker), 4 when the gateway cannot be reached.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Case statistics (Fallzahlen), as an operator: submissions and delivery
    /// outcomes per period, by Leistung, destination, tenant, portal or
    /// target, with the median and 95th percentile of the time from
    /// acceptance to delivery. Counts only: no content, no names.
    Stats(StatsArgs),
    /// Show a submission's status as the portal that sent it.
    Submission(StatusArgs),
    /// Check an Eingangsquittung (the receipt of a 202) as a portal or a court would.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Print the shell completion script for bash, zsh or fish (e.g.
    /// `ozg-gateway completions bash > /etc/bash_completion.d/ozg-gateway`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ozg-gateway.1 and one per command) into a directory.
    Man {
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a FIT-Connect API client: prints a new random client secret (give
    /// it to the client, once) and the `[[fitconnect.clients]]` entry with its
    /// SHA-256 (the gateway stores only that).
    FitconnectClient {
        /// The client id.
        #[arg(long)]
        id: String,
        /// `sender` (an online service) or `subscriber` (the authority's side).
        #[arg(long, default_value = "sender")]
        role: String,
        /// A destination (UUID) it is bound to (repeatable).
        #[arg(long = "destination", required = true)]
        destinations: Vec<String>,
    },
    /// Create a new privacy key file (`pki.privacy_key`), readable by its owner
    /// only; refuses to overwrite one.
    PrivacyKey {
        #[arg(long)]
        out: PathBuf,
    },
}

/// How a portal reaches the gateway (defaults: the local daemon and the demo portal).
#[derive(clap::Args)]
pub(super) struct PortalArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "https://localhost:8443")]
    pub(super) url: String,
    /// Portal client certificate.
    #[arg(long, default_value = "certs-example/portal.pem")]
    pub(super) cert: PathBuf,
    /// Portal client key.
    #[arg(long, default_value = "certs-example/portal.key")]
    pub(super) key: PathBuf,
    /// CA of the gateway's server certificate.
    #[arg(long, default_value = "certs-example/ca.pem")]
    pub(super) ca: PathBuf,
}

impl PortalArgs {
    pub(super) fn client(&self) -> anyhow::Result<reqwest::Client> {
        tls_client(&self.cert, &self.key, &self.ca)
    }
}

/// An HTTPS client presenting `cert`/`key` and trusting `ca`.
pub(super) fn tls_client(
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
) -> anyhow::Result<reqwest::Client> {
    client::http_client(&PortalIdentity {
        cert: cert.into(),
        key: key.into(),
        ca: ca.into(),
    })
    .map_err(anyhow::Error::msg)
}

#[derive(Subcommand)]
pub(super) enum BenchCommand {
    /// Seal + encrypt submissions of a profile in-process on all cores.
    Crypto {
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value = "small")]
        profile: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long)]
        json: bool,
    },
    /// Seal signatures alone with the config's seal key (a file or a token
    /// key over PKCS#11), on `threads` threads: signatures per second and the
    /// time of one.
    Seal {
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long)]
        json: bool,
    },
    /// An HTTPS endpoint on the ingest TLS configuration that only reads and answers 202.
    BareHttps {
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8444")]
        listen: std::net::SocketAddr,
    },
    /// Publish with confirms into a scratch quorum queue on the config's broker
    /// (cluster mode), messages of the relay's size; deleted afterwards.
    RawAmqp {
        #[arg(long, short, default_value = "config/cluster.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Bytes per message: the relay's work message (`{"m":<message id>,"t":<ticket>}`)
        /// and its message-id property together are about this long.
        #[arg(long, default_value_t = 96)]
        size: usize,
        #[arg(long, default_value_t = 4)]
        channels: usize,
        /// Messages published before their confirms are awaited together (the relay's batch).
        #[arg(long, default_value_t = 256)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Insert and commit the rows of sealed submissions of a profile into a scratch
    /// database beside the config's (cluster mode); dropped afterwards.
    RawPostgres {
        #[arg(long, short, default_value = "config/cluster.toml")]
        config: PathBuf,
        #[arg(long, default_value = "small")]
        profile: String,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Connections writing at once (default: the config's pool_size).
        #[arg(long)]
        connections: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

/// Which store an `audit` command reads.
#[derive(clap::Args)]
pub(super) struct StoreArgs {
    #[arg(long, short, default_value = "config/gateway.toml")]
    pub(super) config: PathBuf,
    /// Read this data directory (e.g. a copy) instead of the configured one.
    #[arg(long)]
    pub(super) data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Recompute the hash chain, check every checkpoint's signature; name the first bad record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Every event of one submission, in order (the Laufzettel).
    Trace {
        submission_id: String,
        #[command(flatten)]
        store: StoreArgs,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inclusion proofs of one submission's records against the signed checkpoints
    /// (JSON, `schemas/audit-proof.schema.json`): hand it to a receiver or an auditor.
    Prove {
        submission_id: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Write the proof here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Was this document part of the submission? Compares files with the
    /// keyed part hashes of its `received` record (needs the configured
    /// privacy key; the record holds no plain hash). Exit 0 only if every file
    /// matches a part.
    MatchParts {
        submission_id: String,
        /// The documents to check (e.g. the XML and PDFs a case worker has).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check an inclusion proof with the trust anchor and the gateway's seal
    /// certificate(s): the checkpoints' signatures and every record's path to its
    /// signed Merkle tree head.
    VerifyProof {
        proof: PathBuf,
        /// PEM trust anchor(s) the gateway's seal chains to.
        #[arg(long)]
        trust: PathBuf,
        /// The gateway's seal certificate (PEM), as its operator publishes it; repeat
        /// for seals used before a rotation. Checkpoints signed by any other
        /// certificate of the PKI are refused.
        #[arg(long = "seal", required = true)]
        seals: Vec<PathBuf>,
        /// CA certificate(s) (PEM) of the time-stamping authority: also check
        /// the checkpoints' RFC 3161 tokens and show when they were stamped.
        #[arg(long)]
        tsa_anchors: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(super) enum ConfigCommand {
    /// Check a config file (keys, certificates, routes, schemas) without starting.
    Check {
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
}

/// Empty message boxes over XTA and report rates and latencies.
#[derive(clap::Args)]
pub(super) struct XtaReadersArgs {
    /// The XTA endpoint.
    #[arg(long, default_value = "https://localhost:8444/xta")]
    pub(super) url: String,
    /// CA of the gateway's server certificate.
    #[arg(long, default_value = "certs-example/ca.pem")]
    pub(super) ca: PathBuf,
    /// A reader as CERT:KEY:ACCOUNT (repeatable).
    #[arg(long = "reader", required = true)]
    pub(super) readers: Vec<String>,
    /// Connections per reader fetching and closing at once.
    #[arg(long, default_value_t = 4)]
    pub(super) workers: usize,
    /// Longest run.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub(super) duration: std::time::Duration,
    /// Stop once every box was empty this long (rates count until the last message).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(super) idle_stop: Option<std::time::Duration>,
    /// Print the report as JSON.
    #[arg(long)]
    pub(super) json: bool,
}

/// Drive a running gateway with many portal connections and report rates and latencies.
#[derive(clap::Args)]
pub(super) struct LoadgenArgs {
    /// `small` (8 KiB XML), `typical` (16 KiB XML + 256 KiB attachment) or
    /// `large` (16 KiB XML + 32 MiB attachment).
    #[arg(long, default_value = "small")]
    pub(super) profile: String,
    /// Leistung to submit for (default: the profile's, as in
    /// bench/gateway-bench.toml; when the gateway does not take it, the first
    /// routed Leistung it accepts the profile's data for).
    #[arg(long)]
    pub(super) leistung: Option<String>,
    /// Destination to submit for (default: 05315000).
    #[arg(long)]
    pub(super) destination: Option<String>,
    /// Data size in bytes (overrides the profile).
    #[arg(long)]
    pub(super) data_size: Option<usize>,
    /// A file to send as the data part instead of generated XML (`.json`:
    /// JSON, else XML), e.g. data the Leistung's schema accepts.
    #[arg(long)]
    pub(super) data: Option<std::path::PathBuf>,
    /// Attachment size in bytes (overrides the profile; 0 = none).
    #[arg(long)]
    pub(super) attachment_size: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub(super) connections: usize,
    /// How long, e.g. `30s` (default 10s unless --count is given).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(super) duration: Option<std::time::Duration>,
    /// How many submissions in all.
    #[arg(long)]
    pub(super) count: Option<u64>,
    /// Admin listener for delivery figures; `none` to skip.
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    pub(super) admin: String,
    #[command(flatten)]
    pub(super) portal: PortalArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// Instead of the load: each connection sends a submission but its last
    /// bytes (the closing boundary) and holds it for --duration (what a stalled
    /// upload makes the gateway keep); reports what became of them.
    #[arg(long)]
    pub(super) stall: bool,
}

/// Run an example HTTPS inbox that opens, verifies and stores envelopes (for trying out).
#[derive(clap::Args)]
pub(super) struct DemoReceiverArgs {
    #[arg(long, default_value = "127.0.0.1:9443")]
    pub(super) listen: std::net::SocketAddr,
    /// Recipient private key.
    #[arg(long, default_value = "certs-example/recipient-ec.key")]
    pub(super) key: PathBuf,
    /// Recipient certificate (checks the envelope is addressed to it).
    #[arg(long, default_value = "certs-example/recipient-ec.pem")]
    pub(super) cert: PathBuf,
    /// CA the seal must chain to.
    #[arg(long, default_value = "certs-example/ca.pem")]
    pub(super) trust: PathBuf,
    /// The gateway's seal certificate: only envelopes it sealed are accepted.
    /// Repeat during a seal rotation (the old and the new seal).
    #[arg(long = "seal", default_value = "certs-example/seal.pem")]
    pub(super) seals: Vec<PathBuf>,
    /// TLS certificate of the receiver.
    #[arg(long, default_value = "certs-example/server.pem")]
    pub(super) tls_cert: PathBuf,
    /// TLS key of the receiver.
    #[arg(long, default_value = "certs-example/server.key")]
    pub(super) tls_key: PathBuf,
    /// Where opened submissions are written (one directory per message id).
    #[arg(long, default_value = "var/inbox")]
    pub(super) out: PathBuf,
    /// Answer 200 without opening anything (a fast sink for benchmarks).
    #[arg(long)]
    pub(super) accept_only: bool,
    /// Misbehave on purpose, to show the conformance kit naming the case
    /// (for its own tests): accept-tampered, early-200, retry-on-refusal,
    /// store-duplicates, reject-large, leave-open.
    #[arg(long, hide = true)]
    pub(super) broken: Option<crate::tools::demo_receiver::Broken>,
    /// Also consume envelopes from this RabbitMQ (amqp://…), queue --amqp-queue,
    /// reporting each verdict to the queue --amqp-results (the conformance
    /// kit's protocol for AMQP consumers).
    #[arg(long, requires_all = ["amqp_queue", "amqp_results"])]
    pub(super) amqp_url: Option<String>,
    #[arg(long)]
    pub(super) amqp_queue: Option<String>,
    #[arg(long)]
    pub(super) amqp_results: Option<String>,
    /// Also read the XTA message box at this URL (https://…/xta) as account
    /// --xta-account with the client certificate --xta-cert/--xta-key (server
    /// CA --xta-ca), posting each verdict to --xta-results (the conformance
    /// kit's protocol for XTA clients) and closing every message.
    #[arg(long, requires_all = ["xta_account", "xta_cert", "xta_key", "xta_ca", "xta_results"])]
    pub(super) xta_url: Option<String>,
    #[arg(long)]
    pub(super) xta_account: Option<String>,
    #[arg(long)]
    pub(super) xta_cert: Option<PathBuf>,
    #[arg(long)]
    pub(super) xta_key: Option<PathBuf>,
    #[arg(long)]
    pub(super) xta_ca: Option<PathBuf>,
    #[arg(long)]
    pub(super) xta_results: Option<String>,
}

/// Send a submission as a portal would and print the gateway's JSON answer.
#[derive(clap::Args)]
pub(super) struct SubmitArgs {
    /// FIM-Leistungsschlüssel.
    #[arg(long)]
    pub(super) leistung: String,
    /// Destination (zuständige Stelle), e.g. an AGS.
    #[arg(long)]
    pub(super) destination: String,
    /// The Antragsdaten (XML or JSON file).
    #[arg(long)]
    pub(super) data: PathBuf,
    /// Media type of the data (default: by file extension).
    #[arg(long)]
    pub(super) data_type: Option<String>,
    /// An attachment (repeatable); media type by file extension.
    #[arg(long = "attach")]
    pub(super) attachments: Vec<PathBuf>,
    /// The portal's own reference.
    #[arg(long)]
    pub(super) reference: Option<String>,
    /// Idempotency-Key header: resending with the same key is safe.
    #[arg(long)]
    pub(super) idempotency_key: Option<String>,
    #[command(flatten)]
    pub(super) portal: PortalArgs,
}

/// Open an envelope as a recipient: decrypt, verify the seal and every hash, write the parts.
#[derive(clap::Args)]
pub(super) struct OpenArgs {
    /// The envelope (JSON file).
    pub(super) envelope: PathBuf,
    /// The recipient's private key (PKCS#8 PEM); repeat during a key
    /// rotation (the old and the new key): the envelope's `kid` picks one.
    #[arg(long = "key", required = true)]
    pub(super) keys: Vec<PathBuf>,
    /// CA certificate(s) the seal must chain to (PEM).
    #[arg(long)]
    pub(super) trust: PathBuf,
    /// The gateway's seal certificate (PEM), as its operator publishes it; repeat
    /// for seals used before a rotation. Other signers are refused.
    #[arg(long = "seal", required = true)]
    pub(super) seals: Vec<PathBuf>,
    /// The recipient's certificate (PEM): also checks that the envelope is
    /// addressed to it. With several `--key`, one per key, in the same order.
    #[arg(long = "cert")]
    pub(super) certs: Vec<PathBuf>,
    /// Write the parts (with their original file names) and manifest.json here.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
}

/// List deliveries by state, as an operator (default: the queue — everything
/// not delivered or discarded yet).

#[derive(Subcommand)]
pub(super) enum ReceiptCommand {
    /// Verify the receipt's seal (chain to the trust anchor, signed by the
    /// gateway's seal certificate) and, given the documents, that each is the
    /// part the receipt names; exit 0 only if everything matches, 3 otherwise.
    Verify {
        /// The receipt: the compact JWS, or the whole JSON answer of the `202`.
        receipt: PathBuf,
        /// CA certificate(s) the seal must chain to (PEM).
        #[arg(long)]
        trust: PathBuf,
        /// The gateway's seal certificate (PEM), as its operator publishes it;
        /// repeat for seals used before a rotation.
        #[arg(long = "seal", required = true)]
        seals: Vec<PathBuf>,
        /// The `data` part as it was sent.
        #[arg(long)]
        data: Option<PathBuf>,
        /// An attachment as it was sent, in the order sent (repeat).
        #[arg(long = "attachment")]
        attachments: Vec<PathBuf>,
        /// The verified receipt as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Show a submission's status (as the submitting portal).
#[derive(clap::Args)]
pub(super) struct StatusArgs {
    /// Submission id.
    pub(super) id: String,
    #[command(flatten)]
    pub(super) portal: PortalArgs,
}
