//! What a portal may read of its own submissions: the status per target, the
//! Laufzettel (audit trace) and the inclusion proofs of its records. Another
//! portal's submission is reported as absent: its existence is not disclosed.

use std::sync::Arc;

use ozg_adapter_sdk::audit_proof::ProofDocument;

use crate::core::refusal::Refusal;
use crate::model::audit::AuditRecord;
use crate::model::submission::{ReplyInfo, SubmissionStatus};
use crate::store::{Store, StoreError};

/// Longest submission id looked up; longer ones cannot exist.
pub(crate) const MAX_ID: usize = 64;

/// Reads submissions on behalf of the portal that made them.
pub struct Submissions {
    pub store: Arc<dyn Store>,
    /// A message waiting in a box longer than this is marked `pickup_overdue`.
    pub overdue_after: std::time::Duration,
}

/// Marks the deliveries waiting in a message box longer than `after` as overdue.
pub fn mark_overdue(s: &mut SubmissionStatus, after: std::time::Duration) {
    let before = crate::model::time::now_ms() - after.as_millis().min(i64::MAX as u128) as i64;
    for d in &mut s.deliveries {
        d.mark_overdue(before);
    }
}

/// The replies a submission's records name (`replied`), oldest first.
pub fn replies_in(trace: &[AuditRecord]) -> Vec<ReplyInfo> {
    let text = |r: &AuditRecord, k: &str| r.detail[k].as_str().unwrap_or_default().to_owned();
    trace
        .iter()
        .filter(|r| r.event == "replied")
        .map(|r| ReplyInfo {
            reply_id: text(r, "reply_id"),
            by: text(r, "by"),
            reply_type: text(r, "reply_type"),
            received_at: text(r, "received_at"),
        })
        .collect()
}

fn unavailable(what: &'static str) -> impl Fn(StoreError) -> Refusal {
    move |e| {
        tracing::error!(error = %e, "reading {what} failed");
        Refusal::unavailable(format!("the {what} cannot be read right now; retry later"))
    }
}

impl Submissions {
    /// The submission and its deliveries, if `portal` made it.
    pub async fn status(&self, portal: &str, id: &str) -> Result<SubmissionStatus, Refusal> {
        let not_found = || Refusal::not_found(format!("no submission {id} of portal {portal}"));
        if id.len() > MAX_ID {
            return Err(not_found());
        }
        match self
            .store
            .submission(id)
            .await
            .map_err(unavailable("status"))?
        {
            Some(mut s) if s.portal == portal => {
                // The class tells the portal what went wrong; the message may name
                // hosts or paths of the gateway's side, so it stays with operators.
                for d in &mut s.deliveries {
                    d.last_error = None;
                }
                mark_overdue(&mut s, self.overdue_after);
                if s.in_reply_to.is_none() {
                    s.replies = self
                        .store
                        .replies_to(id)
                        .await
                        .map_err(unavailable("status"))?;
                }
                Ok(s)
            }
            _ => Err(not_found()),
        }
    }

    /// Every audit record of the submission, in order.
    pub async fn trace(&self, portal: &str, id: &str) -> Result<Vec<AuditRecord>, Refusal> {
        self.status(portal, id).await?;
        self.store.trace(id).await.map_err(unavailable("trace"))
    }

    /// The inclusion proofs of the submission's records against the signed checkpoints.
    pub async fn proof(&self, portal: &str, id: &str) -> Result<ProofDocument, Refusal> {
        self.status(portal, id).await?;
        crate::core::audit::prove_submission(self.store.as_ref(), id)
            .await
            .map_err(unavailable("trace"))
    }
}
