//! `[audit]`: when checkpoints are signed, and the time-stamping authority
//! that countersigns them (RFC 3161).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Checkpoint settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Sign a checkpoint at least this often while records are added.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// … and whenever this many records were added since the last one.
    pub checkpoint_every: u64,
    /// Have every checkpoint time-stamped by a TSA (RFC 3161).
    pub timestamp: Option<TimestampConfig>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_every: 1000,
            timestamp: None,
        }
    }
}

/// `[audit.timestamp]`: the time-stamping authority.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    /// The TSA's URL (`https://…`, or `http://…`: a token proves itself by its
    /// signature, and many TSAs answer over plain HTTP).
    pub url: String,
    /// CA certificates (PEM) the TSA's certificate must chain to.
    pub anchors: PathBuf,
    /// CA certificates (PEM) of the TSA's HTTPS server certificate (default:
    /// `anchors`).
    #[serde(default)]
    pub server_ca: Option<PathBuf>,
    /// Time for one request.
    #[serde(with = "humantime_serde", default = "ten_seconds")]
    pub timeout: Duration,
    /// While the TSA cannot be reached, try again this often.
    #[serde(with = "humantime_serde", default = "one_minute")]
    pub retry: Duration,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn one_minute() -> Duration {
    Duration::from_secs(60)
}
