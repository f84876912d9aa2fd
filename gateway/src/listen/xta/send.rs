//! `sendMessage`: an XTA sender (a portal, or an online service that speaks
//! XTA instead of the portal API) hands over a message. It goes through the
//! same intake as `POST /v1/submissions` — authorisation, routing by service
//! (the Leistung) and reader (the destination), data checks, seal and
//! encryption per target — and is answered once it is durable. The message id
//! is its idempotency key: sent again with the same content, nothing new is
//! stored; with other content, it is refused.
//!
//! Mapping: `Qualifier/Service` → Leistung (`urn:de:fim:leika:leistung:<key>`
//! or the bare key); `Destinations/Reader/Identifier` → destination;
//! `ContentContainer/Message` → the data part; each `Attachment` → an
//! attachment with its `filename` and `contentType`.
//!
//! A box reader's message with `MsgIdentification/In-Reply-To` (the id of a
//! message it fetched, or of the submission) is a reply: it goes back to the
//! submission's portal (see `core::replies`), `MessageType/code` is its type.

use base64::Engine as _;
use bytes::Bytes;

use super::ops::Call;
use super::reply;
use super::tree::Node;
use super::Fault;
use crate::core::intake::{Incoming, Metadata, Part, ReplyMetadata, Sender};
use crate::core::replies::IncomingReply;
use crate::model::portal::Reader;

impl Call<'_> {
    pub(super) async fn send(&self) -> Result<(String, String), Fault> {
        let meta = self
            .header("MessageMetaData")
            .ok_or_else(|| Fault::invalid("sendMessage needs the MessageMetaData header"))?;
        if meta
            .at(&["Qualifier", "MessageType", "code"])
            .map(Node::value)
            == Some(RECEIPT)
        {
            return self.receipt(meta).await;
        }
        if let Some(answered) = meta
            .at(&["MsgIdentification", "In-Reply-To"])
            .map(Node::value)
        {
            return self.reply(meta, answered).await;
        }
        let sender = self.sender()?;
        let author = meta
            .at(&["Originators", "Author", "Identifier"])
            .map(Node::value)
            .ok_or_else(|| Fault::invalid("MessageMetaData names no Originators/Author"))?;
        if author != sender.xta_account {
            return Err(Fault::new(
                super::soap::Exception::PermissionDenied,
                super::code::NOT_THIS_ACCOUNT,
                format!("the client certificate does not belong to account {author:?}"),
            ));
        }
        let message_id = message_id(meta)?;
        let readers: Vec<&Node> = meta
            .child("Destinations")
            .map(|d| d.all("Reader").collect())
            .unwrap_or_default();
        let [reader] = readers[..] else {
            return Err(Fault::invalid(
                "name exactly one Destinations/Reader: the destination (responsible authority)",
            ));
        };
        let destination = reader
            .child("Identifier")
            .map(Node::value)
            .unwrap_or_default();
        let service = meta
            .at(&["Qualifier", "Service"])
            .map(Node::value)
            .ok_or_else(|| Fault::invalid("Qualifier/Service (the Leistung) is missing"))?;
        let metadata = Metadata {
            leistung: reply::leistung(service).to_owned(),
            destination: destination.to_owned(),
            reference: None,
            payment: None,
            reply_channel: None,
        };
        metadata.check()?;
        let intake = &self.xta.ingest.intake;
        intake.authorize(sender, &metadata)?;

        let (data, attachments) = self.content()?;
        intake.checks.check(&metadata, &data).await?;
        let bytes: u64 =
            data.data.len() as u64 + attachments.iter().map(|a| a.data.len() as u64).sum::<u64>();
        let answer = intake
            .accept(Incoming {
                sender: Sender::Portal(
                    self.caller
                        .sender
                        .clone()
                        .ok_or_else(|| Fault::denied("no sender"))?,
                ),
                metadata: metadata.clone(),
                data,
                attachments,
                idempotency_key: Some(message_id.clone()),
                stream: None,
            })
            .await?;
        crate::listen::portal::count_accepted(
            &self.xta.ingest.metrics,
            &answer,
            sender,
            &metadata,
            bytes,
            "XTA",
        );
        Ok((String::new(), String::new()))
    }
}

/// `MsgIdentification/MessageID`: 1 to 255 visible characters.
fn message_id(meta: &Node) -> Result<String, Fault> {
    meta.at(&["MsgIdentification", "MessageID"])
        .map(Node::value)
        .filter(|v| !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| {
            Fault::invalid(
                "MsgIdentification/MessageID is missing or not 1 to 255 visible characters",
            )
        })
}

impl Call<'_> {
    /// The `ContentContainer`: its `Message` as the data part, each
    /// `Attachment` as an attachment, within the request limits.
    fn content(&self) -> Result<(Part, Vec<Part>), Fault> {
        let container = self
            .body("GenericContentContainer")?
            .child("ContentContainer")
            .ok_or_else(|| {
                Fault::invalid("the content must be a ContentContainer (inline, not encrypted)")
            })?;
        let limits = self.xta.ingest.limits.load_full();
        let message = container
            .child("Message")
            .ok_or_else(|| Fault::invalid("ContentContainer holds no Message"))?;
        let data = part(message, "Message", limits.max_part.0)?;
        let mut attachments = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, a) in container.all("Attachment").enumerate() {
            if attachments.len() + 1 >= limits.max_parts {
                return Err(Fault::invalid(format!(
                    "more than {} parts in one message",
                    limits.max_parts
                )));
            }
            let mut p = part(a, "Attachment", limits.max_part.0)?;
            let name = crate::listen::portal::form::check_filename(p.filename.take(), i + 1)?;
            if !names.insert(name.clone()) {
                return Err(Fault::invalid(format!(
                    "attachment {}: the filename {name:?} is used twice",
                    i + 1
                )));
            }
            p.filename = Some(name);
            attachments.push(p);
        }
        Ok((data, attachments))
    }

    /// A reader's reply to a message it received (`In-Reply-To` names that
    /// message's id, or the submission's): it goes back to the portal like a
    /// reply over `POST /v1/submissions/{id}/replies`, its type is the
    /// `MessageType` code, its message id the idempotency key.
    async fn reply(&self, meta: &Node, answered: &str) -> Result<(String, String), Fault> {
        let reader = self.reader_as_author(
            meta,
            "only the reader of a message box replies to what it received",
        )?;
        let message_id = message_id(meta)?;
        // As the box named it (`urn:de:xta:messageid:…`), or a bare id.
        let answered = reply::message_id(answered.trim());
        let replies = &self.xta.ingest.replies;
        // The id of the message it fetched, or the submission's.
        let submission_id = match self.xta.boxes.store.delivery(answered).await {
            Ok(Some(d)) => d.submission_id,
            Ok(None) => answered.to_owned(),
            Err(e) => return Err(crate::core::mailbox::BoxError::Store(e).into()),
        };
        let answering = replies.may_reply(&reader.targets, &submission_id).await?;
        let metadata = ReplyMetadata {
            reply_type: meta
                .at(&["Qualifier", "MessageType", "code"])
                .map(Node::value)
                .unwrap_or_default()
                .to_owned(),
            reference: None,
        };
        metadata.check()?;
        replies.check_type(&metadata.reply_type)?;
        let (data, attachments) = self.content()?;
        let answer = replies
            .accept(IncomingReply {
                answering: answering.clone(),
                metadata,
                data,
                attachments,
                idempotency_key: Some(message_id),
            })
            .await?;
        if answer.replayed {
            self.xta.ingest.metrics.replayed.inc();
        } else {
            self.xta.ingest.metrics.replies.inc();
        }
        tracing::info!(reply_id = %answer.submission_id, submission_id = %answering.submission_id, by = %answering.by, reader = %reader.account, via = "XTA", "reply accepted");
        Ok((String::new(), String::new()))
    }
}

/// The message type of an xdomea receipt a DMS sends for a package it took.
const RECEIPT: &str = "Geschaeftsgang.EmpfangBestaetigen.0202";

impl Call<'_> {
    /// The caller as the reader whose account is the message's `Author`
    /// (`not_reader`: why a caller that reads no box may not send this).
    fn reader_as_author(&self, meta: &Node, not_reader: &str) -> Result<&Reader, Fault> {
        let reader = self
            .caller
            .reader
            .as_deref()
            .ok_or_else(|| Fault::denied(not_reader))?;
        let author = meta
            .at(&["Originators", "Author", "Identifier"])
            .map(Node::value)
            .unwrap_or_default();
        if author != reader.account {
            return Err(Fault::new(
                super::soap::Exception::PermissionDenied,
                super::code::NOT_THIS_ACCOUNT,
                format!("the client certificate does not belong to account {author:?}"),
            ));
        }
        Ok(reader)
    }

    /// A reader's xdomea `EmpfangBestaetigen.0202`: the receipt of the
    /// package whose ProzessID it names (the delivery's message id), kept as
    /// that delivery's receipt.
    async fn receipt(&self, meta: &Node) -> Result<(String, String), Fault> {
        let reader = self.reader_as_author(
            meta,
            "only the reader of a message box confirms its messages",
        )?;
        let message = self
            .body("GenericContentContainer")?
            .at(&["ContentContainer", "Message"])
            .ok_or_else(|| Fault::invalid("the receipt must be the content's Message"))?;
        let content = part(message, "Message", 64 << 10)?;
        let confirmed = ozg_adapter_sdk::xdomea::confirmation(&content.data).ok_or_else(|| {
            Fault::new(
                super::soap::Exception::MessageSchemaViolation,
                super::code::SCHEMA,
                "the Message is no xdomea 3.0.0 Geschaeftsgang.EmpfangBestaetigen.0202 with a Kopf/ProzessID",
            )
        })?;
        let receipt = String::from_utf8(content.data.to_vec())
            .map_err(|_| Fault::invalid("the receipt is not UTF-8"))?;
        self.xta
            .boxes
            .confirm(reader, &confirmed.process_id, receipt)
            .await?;
        Ok((String::new(), String::new()))
    }
}

/// A `Message` or `Attachment` (`xta:ContentType`): inline base64 with its
/// `contentType` and `filename`.
fn part(node: &Node, what: &str, max: u64) -> Result<Part, Fault> {
    let media_type = node
        .attr("contentType")
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 255 && t.contains('/'))
        .ok_or_else(|| {
            Fault::invalid(format!(
                "{what}: contentType is missing or not a media type"
            ))
        })?
        .to_ascii_lowercase();
    if node.children.iter().any(|c| c.name == "Include") {
        return Err(Fault::invalid(format!(
            "{what}: XOP/MTOM content is not taken; send the content inline as base64"
        )));
    }
    let text: Vec<u8> = node
        .text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if (text.len() as u64 / 4) * 3 > max + 3 {
        return Err(Fault::new(
            super::soap::Exception::ParameterIsNotValid,
            super::code::SIZE,
            format!("{what}: larger than the limit of {max} bytes per part"),
        ));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .map_err(|_| Fault::invalid(format!("{what}: the content is not base64")))?;
    if data.len() as u64 > max {
        return Err(Fault::new(
            super::soap::Exception::ParameterIsNotValid,
            super::code::SIZE,
            format!("{what}: larger than the limit of {max} bytes per part"),
        ));
    }
    Ok(Part {
        media_type,
        filename: node.attr("filename").map(str::to_owned),
        data: Bytes::from(data),
        sealed: None,
    })
}
