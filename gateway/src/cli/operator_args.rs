//! The operator commands' arguments: where the operator API is, and
//! `queue`, `target` (clap derive).

use std::path::PathBuf;

use clap::Subcommand;

/// How an operator reaches the operator API: flags, else environment
/// variables, else an operator settings file (TOML with `url`, and for HTTPS
/// `certificate`, `key`, `ca`), else the admin listener of the gateway config
/// (`--config`; plain HTTP on loopback needs no certificate).
#[derive(clap::Args, Clone)]
pub(super) struct OperatorArgs {
    /// Operator settings file [default: ~/.config/ozg-gateway/operator.toml, then
    /// /etc/ozg-gateway/operator.toml, whichever exists].
    #[arg(long, env = "OZG_OPERATOR_CONFIG")]
    pub(super) operator_config: Option<PathBuf>,
    /// The admin listener's URL (e.g. https://gateway.example:9443).
    #[arg(long, env = "OZG_ADMIN_URL")]
    pub(super) url: Option<String>,
    /// The gateway's config file, to find its admin listener when no URL is given.
    #[arg(long, short, default_value = "config/gateway.toml")]
    pub(super) config: PathBuf,
    /// Operator client certificate (PEM), for an HTTPS admin listener.
    #[arg(long, env = "OZG_OPERATOR_CERT")]
    pub(super) cert: Option<PathBuf>,
    /// Operator client key (PEM).
    #[arg(long, env = "OZG_OPERATOR_KEY")]
    pub(super) key: Option<PathBuf>,
    /// CA certificate(s) of the admin listener's server certificate (PEM).
    #[arg(long, env = "OZG_GATEWAY_CA")]
    pub(super) ca: Option<PathBuf>,
}

/// `stats`: which case statistics.
#[derive(clap::Args)]
pub(super) struct StatsArgs {
    /// Group by these, comma-separated: leistung, destination, tenant, portal, target.
    #[arg(long, default_value = "")]
    pub(super) by: String,
    /// hour (the last two days), day (31 days), week (13 weeks), month (12 months).
    #[arg(long, default_value = "week", value_parser = ["hour", "day", "week", "month"])]
    pub(super) period: String,
    /// First day (YYYY-MM-DD) [default: as the period says].
    #[arg(long)]
    pub(super) from: Option<String>,
    /// Last day (YYYY-MM-DD) [default: today].
    #[arg(long)]
    pub(super) to: Option<String>,
    /// CSV (RFC 4180) instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub(super) csv: bool,
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) op: OperatorArgs,
}

#[derive(Subcommand)]
pub(super) enum QueueCommand {
    /// Deliveries, oldest first: message id, target, state, attempts, Leistung, last error.
    List {
        /// `queue` (pending, in_flight, retry_wait, parked), `waiting` (pending,
        /// retry_wait), `all`, or one state: pending, in_flight, retry_wait,
        /// parked, delivered, discarded.
        #[arg(long, default_value = "queue", value_parser = [
            "queue", "waiting", "all", "pending", "in_flight", "retry_wait", "parked", "delivered", "discarded",
        ])]
        state: String,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        leistung: Option<String>,
        /// Only deliveries of submissions accepted longer ago than this (e.g. 2h, 1d).
        #[arg(long)]
        older_than: Option<String>,
        /// Most rows shown.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// One submission: its deliveries, the targets' breakers and its Laufzettel.
    Show {
        submission_id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Make parked or waiting deliveries due now.
    Retry(QueueAction),
    /// Park waiting deliveries: kept, not attempted until retried.
    Park(QueueAction),
    /// Discard deliveries (their sealed envelopes are deleted).
    Discard(QueueAction),
}

/// The deliveries a queue action is for: message ids, or every parked
/// delivery of one target (`--target T --all-parked`).
#[derive(clap::Args)]
pub(super) struct QueueAction {
    pub(super) message_ids: Vec<String>,
    /// With --all-parked: the target whose parked deliveries are meant.
    #[arg(long, requires = "all_parked")]
    pub(super) target: Option<String>,
    /// Every parked delivery of --target (says how many it touched).
    #[arg(long, requires = "target", conflicts_with = "message_ids")]
    pub(super) all_parked: bool,
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) op: OperatorArgs,
}

#[derive(Subcommand)]
pub(super) enum TargetCommand {
    /// Every target you see: queue per state, breaker, pause, oldest waiting, last error.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// One target.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Stop attempting deliveries to a target (they wait; kept across restarts).
    Pause {
        id: String,
        /// Why (shown to other operators; no personal data).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Send a sealed test message (no personal data) through the target's
    /// adapter and show what it met; exit 0 only when it was delivered.
    Test {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Register a target at run time (checked like the config file, kept in
    /// the store, in force without a restart); --replace changes one.
    Add(TargetAdd),
    /// Remove a registered target (not while a route names it).
    Remove {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Deliver to a paused target again.
    Resume {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
}

/// A target to register.
#[derive(clap::Args)]
pub(super) struct TargetAdd {
    pub(super) id: String,
    /// The target's encryption certificate (PEM file).
    #[arg(long)]
    pub(super) certificate: PathBuf,
    /// The adapter as JSON, as `[targets.<id>.adapter]` in the config file,
    /// e.g. '{"type": "http", "url": "https://fv.example/inbox", "server_ca": "/etc/ozg-gateway/ca.pem"}'.
    #[arg(long)]
    pub(super) adapter: String,
    /// `raw` (default) or `xdomea`.
    #[arg(long)]
    pub(super) payload: Option<String>,
    #[arg(long)]
    pub(super) tenant: Option<String>,
    #[arg(long)]
    pub(super) description: Option<String>,
    /// Change a registered target instead of adding one.
    #[arg(long)]
    pub(super) replace: bool,
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) op: OperatorArgs,
}

#[derive(Subcommand)]
pub(super) enum RouteCommand {
    /// The routes you see: from the config file and registered at run time.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Register a route: (Leistung, destination) to targets.
    Add {
        #[arg(long)]
        leistung: String,
        #[arg(long, default_value = "*")]
        destination: String,
        /// A target it goes to (repeatable).
        #[arg(long = "target", required = true)]
        targets: Vec<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
    /// Remove a registered route.
    Remove {
        #[arg(long)]
        leistung: String,
        #[arg(long, default_value = "*")]
        destination: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        op: OperatorArgs,
    },
}
