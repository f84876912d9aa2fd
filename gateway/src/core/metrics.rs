//! Prometheus metrics (served on the admin listener at `/metrics`).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabel {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub target: String,
    /// delivered, retry, parked
    pub outcome: &'static str,
    /// The error class (empty when delivered).
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub target: String,
    pub state: &'static str,
}

fn delivery_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 20))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub certificate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrlLabels {
    /// The entry of `pki.crls` (file or URL).
    pub crl: String,
}

/// All metrics of one daemon.
pub struct Metrics {
    registry: Registry,
    pub accepted: Counter,
    pub replayed: Counter,
    /// Replies of targets durably accepted.
    pub replies: Counter,
    pub refused: Family<RefusalLabels, Counter>,
    pub accept_seconds: Histogram,
    pub accepted_bytes: Counter,
    store_commits: Counter,
    store_submission_commits: Counter,
    store_submissions: Counter,
    store_largest_group: Gauge,
    store_envelope_bytes: Gauge,
    pub cert_not_after: Family<CertLabels, Gauge>,
    /// nextUpdate of the newest loaded CRL of each `pki.crls` entry (Unix time).
    pub crl_next_update: Family<CrlLabels, Gauge>,
    /// 1 while a target's certificate is listed as revoked.
    pub target_revoked: Family<TargetLabel, Gauge>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub delivery_seconds: Family<TargetLabel, Histogram, fn() -> Histogram>,
    pub breaker_open: Family<TargetLabel, Gauge>,
    /// 1 while an operator has paused the target (set at scrape time).
    pub operator_paused: Family<TargetLabel, Gauge>,
    /// Seconds since the submission of each target's oldest waiting delivery was accepted.
    pub oldest_waiting: Family<TargetLabel, Gauge>,
    /// Messages in a target's box longer than `xta.overdue_after`.
    pub pickup_overdue: Family<TargetLabel, Gauge>,
    /// Messages fetched from / closed in a target's box over XTA.
    pub box_fetched: Family<TargetLabel, Counter>,
    pub box_closed: Family<TargetLabel, Counter>,
    pub audit_head: Gauge,
    pub audit_checkpoint: Gauge,
    /// Checkpoints still waiting for their RFC 3161 time-stamp token.
    pub audit_unstamped: Gauge,
    /// Requests to the time-stamping authority that failed.
    pub audit_stamp_failures: Counter,
    queue: Family<QueueLabels, Gauge>,
    /// Cluster mode's figures (see [`Metrics::for_cluster`]).
    cluster: Option<ClusterGauges>,
    /// 1 while `/readyz` says ready.
    ready: Gauge,
    /// The data directory's file system (embedded store).
    disk_available: Gauge,
    disk_size: Gauge,
}

/// What an operator of a cluster watches besides the queues.
struct ClusterGauges {
    broker_connected: Gauge,
    outbox: Gauge,
    audit_unplaced: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    fn common() -> Self {
        let mut registry = Registry::with_prefix("ozg");
        let m = Metrics {
            accepted: Counter::default(),
            replayed: Counter::default(),
            replies: Counter::default(),
            refused: Family::default(),
            accept_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            accepted_bytes: Counter::default(),
            store_commits: Counter::default(),
            store_submission_commits: Counter::default(),
            store_submissions: Counter::default(),
            store_largest_group: Gauge::default(),
            store_envelope_bytes: Gauge::default(),
            cert_not_after: Family::default(),
            crl_next_update: Family::default(),
            target_revoked: Family::default(),
            attempts: Family::default(),
            delivery_seconds: Family::new_with_constructor(delivery_histogram),
            breaker_open: Family::default(),
            operator_paused: Family::default(),
            oldest_waiting: Family::default(),
            pickup_overdue: Family::default(),
            box_fetched: Family::default(),
            box_closed: Family::default(),
            audit_head: Gauge::default(),
            audit_checkpoint: Gauge::default(),
            audit_unstamped: Gauge::default(),
            audit_stamp_failures: Counter::default(),
            queue: Family::default(),
            cluster: None,
            ready: Gauge::default(),
            disk_available: Gauge::default(),
            disk_size: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "submissions_accepted",
            "Submissions durably accepted (202)",
            m.accepted.clone(),
        );
        registry.register(
            "pickup_overdue_messages",
            "Messages waiting in a target's message box (or a portal's reply box) longer than xta.overdue_after",
            m.pickup_overdue.clone(),
        );
        registry.register(
            "box_fetched",
            "Messages fetched from a target's message box over XTA (getMessage, getNextMessage)",
            m.box_fetched.clone(),
        );
        registry.register(
            "box_closed",
            "Messages closed by their reader over XTA (delivered)",
            m.box_closed.clone(),
        );
        registry.register(
            "replies_accepted",
            "Replies of targets (Bescheide and other answers) durably accepted (202)",
            m.replies.clone(),
        );
        registry.register(
            "submissions_replayed",
            "Idempotent replays answered with the first 202",
            m.replayed.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused, by listener and problem type",
            m.refused.clone(),
        );
        registry.register(
            "accept_duration_seconds",
            "Time from request to durable 202",
            m.accept_seconds.clone(),
        );
        registry.register(
            "accepted_payload_bytes",
            "Plaintext bytes of accepted parts",
            m.accepted_bytes.clone(),
        );
        registry.register(
            "store_commits",
            "Durable store commits (one WAL fsync each)",
            m.store_commits.clone(),
        );
        registry.register(
            "store_submission_commits",
            "Durable commits that stored submissions (group commit: fewer than submissions under load)",
            m.store_submission_commits.clone(),
        );
        registry.register(
            "store_submissions",
            "Submissions written by the store",
            m.store_submissions.clone(),
        );
        registry.register(
            "store_largest_group",
            "Most submissions committed by one fsync",
            m.store_largest_group.clone(),
        );
        registry.register(
            "store_envelope_bytes",
            "Bytes of sealed envelopes on disk (segment files); falls as retention frees segments",
            m.store_envelope_bytes.clone(),
        );
        registry.register(
            "certificate_not_after_seconds",
            "Expiry of a configured certificate (Unix time); alert on it minus time()",
            m.cert_not_after.clone(),
        );
        registry.register(
            "crl_next_update_seconds",
            "nextUpdate of a configured CRL (Unix time); past it the CRL is stale but still used",
            m.crl_next_update.clone(),
        );
        registry.register(
            "target_certificate_revoked",
            "1 while a CRL lists a target's encryption certificate as revoked (submissions routed to it are refused)",
            m.target_revoked.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts by target, outcome and error class",
            m.attempts.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Time from acceptance to delivery, by target",
            m.delivery_seconds.clone(),
        );
        registry.register(
            "target_paused",
            "1 while a target's circuit breaker is open",
            m.breaker_open.clone(),
        );
        registry.register(
            "target_oldest_waiting_seconds",
            "Age of each target's oldest waiting (pending or retry_wait) delivery",
            m.oldest_waiting.clone(),
        );
        registry.register(
            "target_paused_by_operator",
            "1 while an operator has paused the target",
            m.operator_paused.clone(),
        );
        registry.register(
            "deliveries",
            "Deliveries in the store by target and state",
            m.queue.clone(),
        );
        registry.register(
            "audit_head_seq",
            "Sequence number of the newest audit record",
            m.audit_head.clone(),
        );
        registry.register(
            "ready",
            "1 while the daemon is ready to take submissions (/readyz), 0 while not",
            m.ready.clone(),
        );
        registry.register(
            "audit_checkpoint_seq",
            "Sequence number the newest signed audit checkpoint covers; copy checkpoints off the machine",
            m.audit_checkpoint.clone(),
        );
        registry.register(
            "audit_checkpoints_unstamped",
            "Signed audit checkpoints without an RFC 3161 time-stamp token yet ([audit] timestamp); grows while the TSA cannot be reached",
            m.audit_unstamped.clone(),
        );
        registry.register(
            "audit_timestamp_failures",
            "Requests to the time-stamping authority that failed (unreachable, refused, or a token that does not verify)",
            m.audit_stamp_failures.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn refuse(&self, listener: &'static str, reason: &'static str) {
        self.refused
            .get_or_create(&RefusalLabels { listener, reason })
            .inc();
    }

    pub fn attempt(&self, target: &str, outcome: &'static str, class: &str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                target: target.to_owned(),
                outcome,
                class: class.to_owned(),
            })
            .inc();
    }

    /// The metrics of the embedded store: the common ones and the data
    /// directory's disk.
    pub fn new() -> Self {
        let mut m = Self::common();
        m.registry.register(
            "data_dir_available_bytes",
            "Bytes available to the daemon on the data directory's file system",
            m.disk_available.clone(),
        );
        m.registry.register(
            "data_dir_size_bytes",
            "Size of the data directory's file system in bytes",
            m.disk_size.clone(),
        );
        m
    }

    /// The metrics of cluster mode: the common ones and the broker's connection,
    /// the outbox's backlog and the audit records not placed in the chain yet.
    pub fn for_cluster() -> Self {
        let mut m = Self::common();
        let c = ClusterGauges {
            broker_connected: Gauge::default(),
            outbox: Gauge::default(),
            audit_unplaced: Gauge::default(),
        };
        m.registry.register(
            "broker_connected",
            "1 while this instance is connected to RabbitMQ (cluster mode)",
            c.broker_connected.clone(),
        );
        m.registry.register(
            "outbox_backlog",
            "Queue messages committed in PostgreSQL and not yet confirmed by RabbitMQ (cluster mode; grows while the broker is away)",
            c.outbox.clone(),
        );
        m.registry.register(
            "audit_unplaced_records",
            "Audit records committed and not yet placed in the chain (cluster mode; placed within a second while PostgreSQL answers)",
            c.audit_unplaced.clone(),
        );
        m.cluster = Some(c);
        m
    }

    /// Renders the text exposition format, refreshing store figures first
    /// (whether the daemon is `ready`, and in cluster mode whether the broker
    /// is connected).
    pub async fn render(
        &self,
        store: &Arc<dyn Store>,
        ready: bool,
        broker_connected: Option<bool>,
    ) -> String {
        self.ready.set(i64::from(ready));
        if let Some(c) = &self.cluster {
            c.broker_connected
                .set(i64::from(broker_connected.unwrap_or(false)));
            if let Some(outbox) = store.outbox() {
                match outbox.backlog().await {
                    Ok(n) => {
                        c.outbox.set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                    Err(e) => tracing::warn!(error = %e, "outbox backlog unavailable for /metrics"),
                }
            }
            match store.audit_unplaced().await {
                Ok(n) => {
                    c.audit_unplaced.set(i64::try_from(n).unwrap_or(i64::MAX));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unplaced audit records unavailable for /metrics")
                }
            }
        }
        match store.queue_depths().await {
            Ok(depths) => {
                self.queue.clear();
                self.oldest_waiting.clear();
                let waiting = crate::model::delivery::waiting_targets(&depths);
                match store.oldest_waiting(waiting).await {
                    Ok(oldest) => {
                        let now = crate::model::time::now_ms();
                        for (target, ms) in oldest {
                            self.oldest_waiting
                                .get_or_create(&TargetLabel { target })
                                .set((now - ms).max(0) / 1000);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "oldest waiting deliveries unavailable for /metrics")
                    }
                }
                for d in depths {
                    self.queue
                        .get_or_create(&QueueLabels {
                            target: d.target,
                            state: d.state.as_str(),
                        })
                        .set(d.count as i64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "queue depths unavailable for /metrics"),
        }
        let s = store.stats();
        self.store_commits
            .inc_by(s.commits.saturating_sub(self.store_commits.get()));
        self.store_submission_commits.inc_by(
            s.submission_commits
                .saturating_sub(self.store_submission_commits.get()),
        );
        self.store_submissions
            .inc_by(s.submissions.saturating_sub(self.store_submissions.get()));
        self.store_largest_group.set(s.largest_group as i64);
        self.store_envelope_bytes
            .set(i64::try_from(s.envelope_bytes).unwrap_or(i64::MAX));
        if let Some(d) = s.disk {
            self.disk_available
                .set(i64::try_from(d.available).unwrap_or(i64::MAX));
            self.disk_size
                .set(i64::try_from(d.size).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The OpenMetrics text `render` makes, in the Prometheus text format 0.0.4
/// (for clients that do not ask for OpenMetrics: curl, `promtool check
/// metrics`, older scrapers): a counter's `HELP` and `TYPE` name its sample
/// (`…_total`), and OpenMetrics' `# UNIT` and `# EOF` lines go.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod text_tests {
    #[test]
    fn counters_are_named_by_their_samples_and_openmetrics_markers_go() {
        let om = "# HELP ozg_x Things.\n# TYPE ozg_x counter\nozg_x_total 3\n# HELP ozg_g A gauge.\n# TYPE ozg_g gauge\n# UNIT ozg_g bytes\nozg_g 1\n# EOF\n";
        assert_eq!(
            super::prometheus_text(om),
            "# HELP ozg_x_total Things.\n# TYPE ozg_x_total counter\nozg_x_total 3\n# HELP ozg_g A gauge.\n# TYPE ozg_g gauge\nozg_g 1\n"
        );
    }
}
