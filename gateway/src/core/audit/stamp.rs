//! RFC 3161 time-stamps on checkpoints (`[audit.timestamp]`): every signed
//! checkpoint is sent to the time-stamping authority and the token it answers
//! with is kept beside it, after the gateway checked it like `audit verify`
//! will (the checkpoint's hash, the TSA's signature and certificate). The
//! daemon never waits for the TSA: checkpoints it cannot reach are stamped
//! later, oldest first, and `ozg_audit_checkpoints_unstamped` shows the gap.

use std::sync::Arc;
use std::time::Duration;

use ozg_adapter_sdk::{timestamp, TrustAnchors};

use crate::core::metrics::Metrics;
use crate::core::throttle::Throttle;
use crate::store::Store;

/// How often the task looks for new checkpoints while the TSA answers.
const POLL: Duration = Duration::from_secs(2);
/// Checkpoints stamped per round.
const BATCH: usize = 32;
const LOG_EVERY: Duration = Duration::from_secs(300);

/// The time-stamping authority.
pub struct Tsa {
    pub url: String,
    pub client: reqwest::Client,
    /// What the TSA's certificate must chain to.
    pub trust: TrustAnchors,
    /// Wait between rounds while the TSA fails.
    pub retry: Duration,
}

impl Tsa {
    /// Asks for a token over `message` and checks it; the token (DER).
    pub async fn stamp(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let nonce = {
            let mut b = [0u8; 8];
            aws_lc_rs::rand::fill(&mut b).map_err(|_| "no randomness for the nonce")?;
            u64::from_be_bytes(b) >> 1
        };
        let request = timestamp::request(message, nonce).map_err(|e| e.to_string())?;
        let answer = self
            .client
            .post(&self.url)
            .header("content-type", "application/timestamp-query")
            .body(request)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(format!("{} answered {status}", self.url));
        }
        let body = answer
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let token = timestamp::token_of(&body).map_err(|e| e.to_string())?;
        let stamp = timestamp::verify(&token, message, &self.trust)
            .map_err(|e| format!("the TSA's token does not verify: {e}"))?;
        if stamp.nonce != Some(nonce) {
            return Err(format!(
                "{} answered with a token for another request (nonce {:?}, asked {nonce})",
                self.url, stamp.nonce
            ));
        }
        Ok(token)
    }
}

/// Stamps checkpoints as they are signed, and those the TSA missed, until
/// `shutdown` changes.
pub async fn stamp_task(
    store: Arc<dyn Store>,
    tsa: Arc<Tsa>,
    metrics: Arc<Metrics>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut failures = Throttle::new(LOG_EVERY);
    // Every checkpoint up to here is stamped: checkpoints are stamped oldest
    // first, so a round need not look at the whole log again (it would cost
    // a scan of every checkpoint ever signed, every two seconds).
    let mut stamped_up_to = 0u64;
    loop {
        let mut wait = POLL;
        match store.unstamped(stamped_up_to, BATCH).await {
            Ok((list, total)) => {
                metrics.audit_unstamped.set(total as i64);
                let mut stamped = 0u64;
                for c in list {
                    match tsa.stamp(c.jws.as_bytes()).await {
                        Ok(token) => {
                            if let Err(e) = store
                                .add_stamp(c.seq, token, crate::model::time::now_s())
                                .await
                            {
                                tracing::error!(error = %e, seq = c.seq, "the checkpoint's time-stamp could not be stored");
                                wait = tsa.retry;
                                break;
                            }
                            stamped += 1;
                            // The oldest unstamped after the mark: all before it are stamped.
                            stamped_up_to = c.seq;
                            tracing::debug!(seq = c.seq, "audit checkpoint time-stamped");
                        }
                        Err(e) => {
                            metrics.audit_stamp_failures.inc();
                            if let Some(left_out) = failures.occurred() {
                                tracing::warn!(error = %e, seq = c.seq, unstamped = total, repeated = left_out, "the time-stamping authority did not stamp the checkpoint; trying again later");
                            }
                            wait = tsa.retry;
                            break;
                        }
                    }
                }
                if stamped > 0 {
                    failures.recovered();
                    metrics
                        .audit_unstamped
                        .set(total.saturating_sub(stamped) as i64);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the checkpoints to time-stamp");
                wait = tsa.retry;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What `audit verify` found of the checkpoints' time-stamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StampReport {
    /// Checkpoints with a token that verifies.
    pub stamped: u64,
    /// Checkpoints without a token (the TSA was not reached yet, or a token
    /// was removed), by `seq`.
    pub missing: Vec<u64>,
    /// The newest stamped checkpoint: its `seq`, the stamped time (seconds
    /// since the epoch) and the TSA.
    pub newest: Option<(u64, i64, String)>,
}

/// Checks every stored token against its checkpoint (the token must stamp
/// the checkpoint's JWS and be signed by a TSA under `trust`). A token that
/// does not verify, or one for no checkpoint, breaks the log.
pub fn verify_stamps(
    log: &dyn crate::store::AuditLogRead,
    trust: &TrustAnchors,
) -> Result<Result<StampReport, super::Broken>, crate::store::StoreError> {
    let checkpoints = log.checkpoints()?;
    let stamps = log.stamps()?;
    let mut report = StampReport {
        stamped: 0,
        missing: Vec::new(),
        newest: None,
    };
    for seq in stamps.keys() {
        if !checkpoints.iter().any(|c| c.seq == *seq) {
            return Ok(Err(super::Broken {
                seq: *seq,
                reason: "a time-stamp token for a checkpoint that does not exist".into(),
            }));
        }
    }
    for c in &checkpoints {
        let Some(token) = stamps.get(&c.seq) else {
            report.missing.push(c.seq);
            continue;
        };
        match timestamp::verify(token, c.jws.as_bytes(), trust) {
            Ok(stamp) => {
                report.stamped += 1;
                report.newest = Some((c.seq, stamp.time, stamp.tsa));
            }
            Err(e) => {
                return Ok(Err(super::Broken {
                    seq: c.seq,
                    reason: format!("the checkpoint's time-stamp token does not verify: {e}"),
                }))
            }
        }
    }
    Ok(Ok(report))
}
