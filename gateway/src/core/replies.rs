//! The way back: a target's reply to a submission it received (a Bescheid, a
//! request for missing documents, a payment notice) on its way to the portal.
//!
//! A reply is a submission in the other direction: validated like one, sealed
//! by the gateway, encrypted for the portal's reply target, stored before it
//! is answered, audited (`received` and `sealed` on the reply, `replied` on
//! the submission it answers). Only a target the submission was routed to may
//! reply to it, and a reply is not answered again.
//!
//! A portal that fetches its replies reads them from its reply box (the
//! message-box machinery of XTA targets: listed, fetched, acknowledged, and
//! overdue when nobody fetches them); one whose replies are pushed gets them
//! through its reply target's adapter, with retries and parking like any
//! delivery.

use std::sync::Arc;

use crate::core::intake::{Incoming, Intake, Metadata, Part, ReplyMetadata, Sender};
use crate::core::mailbox::{BoxError, Closed, Fetched, MessageBoxes, Page};
use crate::core::refusal::{Kind, Refusal};
use crate::model::delivery::BoxQuery;
use crate::model::portal::{Portal, Reader};
use crate::model::submission::{message_id, ReplyOf, SubmissionStatus};
use crate::store::StoreError;

/// The submission a reply answers, and who answers it.
#[derive(Debug, Clone)]
pub struct Answering {
    pub submission_id: String,
    /// The submission's portal: the reply goes there.
    pub portal: String,
    pub leistung: String,
    pub destination: String,
    /// The replier's target the submission was routed to.
    pub by: String,
}

impl Answering {
    /// The reply's metadata as the core takes it: the submission's Leistung
    /// and destination with the replier's reference.
    pub fn metadata(&self, reply: &ReplyMetadata) -> Metadata {
        Metadata {
            leistung: self.leistung.clone(),
            destination: self.destination.clone(),
            reference: reply.reference.clone(),
            payment: None,
            reply_channel: None,
        }
    }
}

/// A reply as it arrived, checked.
pub struct IncomingReply {
    pub answering: Answering,
    pub metadata: ReplyMetadata,
    pub data: Part,
    pub attachments: Vec<Part>,
    pub idempotency_key: Option<String>,
}

/// Replies: accepting them from targets, handing them to portals.
pub struct Replies {
    pub intake: Arc<Intake>,
    pub boxes: Arc<MessageBoxes>,
}

fn unavailable(e: StoreError) -> Refusal {
    tracing::error!(error = %e, "reading a submission for a reply failed");
    Refusal::unavailable("the submission cannot be read right now; retry later")
}

/// The message-box errors as the portal API answers them.
fn box_refusal(e: BoxError) -> Refusal {
    match e {
        BoxError::Unknown(id) | BoxError::NotYours(id) => {
            Refusal::not_found(format!("no reply {id} for this portal"))
        }
        BoxError::Closed(id) => Refusal::new(
            Kind::Conflict,
            "reply-acknowledged",
            format!("reply {id} was acknowledged and is no longer in the reply box"),
        ),
        BoxError::NotCancellable { id, why } => Refusal::new(
            Kind::Conflict,
            "not-cancellable",
            format!("reply {id}: {why}"),
        ),
        BoxError::Store(e) => {
            tracing::error!(error = %e, "the reply box cannot be read");
            Refusal::unavailable("the reply box cannot be read right now; retry later")
        }
    }
}

impl Replies {
    /// May a client that replies for `targets` answer `submission_id`? Only
    /// when the submission was routed to one of them; a reply is not answered.
    pub async fn may_reply(
        &self,
        targets: &[String],
        submission_id: &str,
    ) -> Result<Answering, Refusal> {
        let not_found = || Refusal::not_found(format!("no submission {submission_id}"));
        if submission_id.len() > crate::core::status::MAX_ID {
            return Err(not_found());
        }
        let s = self
            .intake
            .store
            .submission(submission_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(not_found)?;
        if s.in_reply_to.is_some() {
            return Err(Refusal::new(
                Kind::Unprocessable,
                "reply-to-reply",
                format!("{submission_id} is a reply; replies go to submissions of portals"),
            ));
        }
        let by = s
            .deliveries
            .iter()
            .map(|d| &d.target)
            .find(|t| targets.contains(t))
            .ok_or_else(|| {
                Refusal::new(
                    Kind::Forbidden,
                    "not-a-recipient",
                    format!(
                        "submission {submission_id} was not routed to {}; only a target that received a submission may reply to it",
                        targets.join(", ")
                    ),
                )
            })?;
        Ok(Answering {
            submission_id: s.submission_id.clone(),
            portal: s.portal.clone(),
            leistung: s.leistung.clone(),
            destination: s.destination.clone(),
            by: by.clone(),
        })
    }

    /// Is `reply_type` one the gateway takes (any, when `[reply_types]` lists none)?
    pub fn check_type(&self, reply_type: &str) -> Result<(), Refusal> {
        let rules = self.intake.checks.rules.load();
        let known = &rules.reply_types;
        if known.is_empty() || known.iter().any(|k| k == reply_type) {
            return Ok(());
        }
        Err(Refusal::new(
            Kind::Unprocessable,
            "reply-type-unknown",
            format!("reply type {reply_type} is not one of {}", known.join(", ")),
        ))
    }

    /// Checks the data, seals, encrypts for the portal's reply target and
    /// stores the reply; returns once it is durable.
    pub async fn accept(
        &self,
        reply: IncomingReply,
    ) -> Result<crate::core::intake::Answer, Refusal> {
        let IncomingReply {
            answering,
            metadata,
            data,
            attachments,
            idempotency_key,
        } = reply;
        self.intake
            .checks
            .check_of(
                crate::core::intake::check::SchemaOf::ReplyType(&metadata.reply_type),
                &data,
            )
            .await?;
        let md = answering.metadata(&metadata);
        self.intake
            .accept(Incoming {
                sender: Sender::Reply {
                    portal: answering.portal.clone(),
                    of: ReplyOf {
                        submission_id: answering.submission_id.clone(),
                        by: answering.by.clone(),
                        reply_type: metadata.reply_type,
                    },
                },
                metadata: md,
                data,
                attachments,
                idempotency_key,
                stream: None,
            })
            .await
    }

    /// The status of a reply, for the target that sent it.
    pub async fn status_for_replier(
        &self,
        targets: &[String],
        submission_id: &str,
        reply_id: &str,
    ) -> Result<SubmissionStatus, Refusal> {
        let not_found = || Refusal::not_found(format!("no reply {reply_id} to {submission_id}"));
        if reply_id.len() > crate::core::status::MAX_ID {
            return Err(not_found());
        }
        let s = self
            .intake
            .store
            .submission(reply_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(not_found)?;
        if s.in_reply_to.as_deref() != Some(submission_id) {
            return Err(not_found());
        }
        // Sent by one of the caller's targets: its row says which.
        let sent_by_caller = self
            .intake
            .store
            .replies_to(submission_id)
            .await
            .map_err(unavailable)?
            .iter()
            .any(|r| r.reply_id == reply_id && targets.contains(&r.by));
        if !sent_by_caller {
            return Err(not_found());
        }
        let mut s = s;
        for d in &mut s.deliveries {
            d.last_error = None;
        }
        crate::core::status::mark_overdue(&mut s, self.boxes.overdue_after);
        Ok(s)
    }

    /// The reader of `portal`'s reply box, or why it has none.
    fn reader(portal: &Portal) -> Result<Reader, Refusal> {
        match &portal.replies {
            Some(r) if r.fetched => Ok(Reader {
                account: portal.xta_account.clone(),
                targets: vec![r.target.clone()],
            }),
            Some(r) => Err(Refusal::new(
                Kind::Conflict,
                "replies-pushed",
                format!(
                    "replies to portal {} are delivered to its target {}; there is nothing to fetch",
                    portal.id, r.target
                ),
            )),
            None => Err(Refusal::not_found(format!(
                "portal {} receives no replies: the gateway's operator has to give it `replies` in its configuration",
                portal.id
            ))),
        }
    }

    /// A page of the replies waiting in the portal's box, oldest first.
    pub async fn list(
        &self,
        portal: &Portal,
        after: Option<String>,
        limit: usize,
    ) -> Result<Page, Refusal> {
        let reader = Self::reader(portal)?;
        let after = match after {
            Some(id) => Some(self.message_of(&reader, &id)?),
            None => None,
        };
        self.boxes
            .list(
                &reader,
                BoxQuery {
                    after,
                    limit,
                    ..BoxQuery::default()
                },
            )
            .await
            .map_err(box_refusal)
    }

    /// One waiting reply with its sealed envelope.
    pub async fn fetch(&self, portal: &Portal, reply_id: &str) -> Result<Fetched, Refusal> {
        let reader = Self::reader(portal)?;
        let message = self.message_of(&reader, reply_id)?;
        self.boxes
            .fetch(&reader, &message)
            .await
            .map_err(box_refusal)
    }

    /// The portal has the reply: delivered, audited; acknowledging again changes nothing.
    pub async fn ack(&self, portal: &Portal, reply_id: &str) -> Result<Closed, Refusal> {
        let reader = Self::reader(portal)?;
        let message = self.message_of(&reader, reply_id)?;
        self.boxes
            .close(&reader, &message)
            .await
            .map_err(box_refusal)
    }

    /// The message id of reply `reply_id` in the box (a reply id is its submission id).
    fn message_of(&self, reader: &Reader, reply_id: &str) -> Result<String, Refusal> {
        let id = uuid::Uuid::parse_str(reply_id)
            .map_err(|_| Refusal::not_found(format!("no reply {reply_id} for this portal")))?;
        Ok(message_id(&id, &reader.targets[0]))
    }
}
