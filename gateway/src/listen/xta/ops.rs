//! The XTA operations, chosen by `wsa:Action`: the message box
//! (`msgBoxPortType`) and management (`managementPortType`); sending is in
//! [`super::send`]. Each reads its body from the request tree, calls the
//! core and writes its answer with [`super::reply`].

use quick_xml::escape::escape;

use super::reply::{self, Cursor};
use super::soap::{Exception, Request, WSA};
use super::tree::Node;
use super::{code, Fault, Xta};
use crate::core::mailbox::Fetched;
use crate::listen::identity::XtaCaller;
use crate::model::delivery::BoxQuery;
use crate::model::delivery::DeliveryState;
use crate::model::portal::Reader;
use crate::model::routing::Payload;

const MSGBOX: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/";
const XTA_ACTIONS: &str = "http://www.xta.de/XTA/";

/// One request to answer.
pub(super) struct Call<'a> {
    pub xta: &'a Xta,
    pub caller: &'a XtaCaller,
    pub request: &'a Request,
    pub doc: &'a Node,
}

impl Call<'_> {
    pub async fn run(&self) -> Result<String, Fault> {
        let action = self.request.action.as_str();
        let headers_and_body = if let Some(op) = action.strip_prefix(MSGBOX) {
            let reader = self.reader()?;
            match op {
                "MsgBoxStatusListRequest" => self.status_list(reader).await?,
                "MsgBoxGetNextListRequest" => self.next_status_list(reader).await?,
                "MsgBoxFetchRequest" => self.get_message(reader).await?,
                "MsgBoxGetNextMsgRequest" => self.next_message(reader).await?,
                "MsgBoxCloseRequest" => self.close(reader).await?,
                _ => return Err(unknown(action)),
            }
        } else if let Some(op) = action.strip_prefix(XTA_ACTIONS) {
            match op {
                "CheckAccountActive" => (String::new(), String::new()),
                "CreateMessageID" => self.create_message_id()?,
                "IsServiceAvailable" => self.lookup_service()?,
                "GetTransportReport" => self.transport_report().await?,
                "CancelMessage" => self.cancel().await?,
                "SendMessage" => self.send().await?,
                "SendMessageSync" => {
                    return Err(Fault::new(
                        Exception::SyncAsync,
                        code::ASYNC_ONLY,
                        "the gateway delivers asynchronously only: use sendMessage",
                    ))
                }
                _ => return Err(unknown(action)),
            }
        } else {
            return Err(unknown(action));
        };
        let (headers, body) = headers_and_body;
        Ok(reply::envelope(
            action,
            self.request.message_id.as_deref(),
            &headers,
            &body,
        ))
    }

    fn reader(&self) -> Result<&Reader, Fault> {
        self.caller.reader.as_deref().ok_or_else(|| {
            Fault::denied(format!(
                "account {} reads no message box: no xta target names this certificate",
                self.caller.accounts()
            ))
        })
    }

    pub(super) fn sender(&self) -> Result<&crate::model::portal::Portal, Fault> {
        self.caller.sender.as_deref().ok_or_else(|| {
            Fault::denied(format!(
                "account {} may not send: its certificate belongs to no registered portal",
                self.caller.accounts()
            ))
        })
    }

    /// The body's element, which must be `name`.
    pub(super) fn body(&self, name: &str) -> Result<&Node, Fault> {
        self.doc
            .child("Body")
            .and_then(|b| b.children.first())
            .filter(|n| n.name == name)
            .ok_or_else(|| Fault::invalid(format!("the body must hold {name}")))
    }

    /// A header block by local name.
    pub(super) fn header(&self, name: &str) -> Option<&Node> {
        self.doc.child("Header").and_then(|h| h.child(name))
    }

    fn payload(&self, target: &str) -> Payload {
        self.xta
            .ingest
            .intake
            .routes
            .load()
            .payloads
            .get(target)
            .copied()
            .unwrap_or_default()
    }

    fn list_xml(&self, reader: &Reader, entries: &[crate::model::delivery::Boxed]) -> String {
        let items: String = entries
            .iter()
            .map(|e| reply::metadata(e, &reader.account, self.payload(&e.target)))
            .collect();
        format!("<osci:MsgStatusList>{items}</osci:MsgStatusList>")
    }

    async fn list(&self, reader: &Reader, query: BoxQuery) -> Result<(String, String), Fault> {
        let limit = query.limit;
        let page = self.xta.boxes.list(reader, query).await?;
        let cursor = Cursor {
            after: page.entries.last().map(|e| e.message_id.clone()),
            limit,
        };
        let pending = if page.entries.is_empty() {
            None
        } else {
            Some(usize::from(page.more))
        };
        Ok((
            reply::box_response(&cursor, pending),
            self.list_xml(reader, &page.entries),
        ))
    }

    async fn status_list(&self, reader: &Reader) -> Result<(String, String), Fault> {
        let body = self.body("MsgBoxStatusListRequest")?;
        let limit = match body.attr("maxListItems") {
            None => self.xta.boxes.max_list_items,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Fault::invalid("maxListItems must be a positive integer"))?,
        };
        let mut query = BoxQuery {
            limit: limit.min(self.xta.boxes.max_list_items),
            ..BoxQuery::default()
        };
        if let Some(sel) = body.child("MsgSelector") {
            query.ids = sel
                .all("MessageID")
                .map(|n| reply::message_id(n.value()).to_owned())
                .collect();
            if query.ids.len() > self.xta.boxes.max_list_items {
                return Err(Fault::invalid("too many message ids in MsgSelector"));
            }
            query.from_ms = time(sel, "MsgBoxEntryTimeFrom")?;
            query.to_ms = time(sel, "MsgBoxEntryTimeTo")?;
        }
        self.list(reader, query).await
    }

    /// The cursor of a `MsgBoxGetNextRequest` / `MsgBoxCloseRequest`, and the
    /// messages it says were received.
    fn cursor(&self, element: &str) -> Result<(Option<Cursor>, Vec<String>), Fault> {
        let body = self.body(element)?;
        let id = body
            .attr("MsgBoxRequestID")
            .ok_or_else(|| Fault::invalid("MsgBoxRequestID is missing"))?;
        let received = body
            .all("LastMsgReceived")
            .map(|n| reply::message_id(n.value()).to_owned())
            .collect::<Vec<_>>();
        if received.len() > self.xta.boxes.max_list_items {
            return Err(Fault::invalid("too many LastMsgReceived"));
        }
        Ok((Cursor::parse(id), received))
    }

    /// Closes what the reader says it received (OSCI: `LastMsgReceived`).
    async fn close_all(&self, reader: &Reader, ids: &[String]) -> Result<(), Fault> {
        for id in ids {
            self.xta.boxes.close(reader, id).await?;
        }
        Ok(())
    }

    async fn next_status_list(&self, reader: &Reader) -> Result<(String, String), Fault> {
        let (cursor, received) = self.cursor("MsgBoxGetNextRequest")?;
        let cursor = cursor
            .ok_or_else(|| Fault::invalid("MsgBoxRequestID was not given out by this gateway"))?;
        self.close_all(reader, &received).await?;
        let query = BoxQuery {
            after: cursor.after,
            limit: cursor.limit.clamp(1, self.xta.boxes.max_list_items),
            ..BoxQuery::default()
        };
        self.list(reader, query).await
    }

    fn message_xml(&self, reader: &Reader, got: &Fetched, pending: usize) -> (String, String) {
        let cursor = Cursor {
            after: Some(got.entry.message_id.clone()),
            limit: 1,
        };
        let headers = format!(
            "{}{}",
            reply::metadata(&got.entry, &reader.account, self.payload(&got.entry.target)),
            reply::box_response(&cursor, Some(pending))
        );
        (
            headers,
            reply::content(&got.entry.message_id, &got.envelope),
        )
    }

    async fn get_message(&self, reader: &Reader) -> Result<(String, String), Fault> {
        let body = self.body("MsgBoxFetchRequest")?;
        let ids: Vec<&Node> = body
            .child("MsgSelector")
            .map(|s| s.all("MessageID").collect())
            .unwrap_or_default();
        let [id] = ids[..] else {
            return Err(Fault::invalid(
                "MsgBoxFetchRequest must name exactly one MessageID in its MsgSelector",
            ));
        };
        let got = self
            .xta
            .boxes
            .fetch(reader, reply::message_id(id.value()))
            .await?;
        Ok(self.message_xml(reader, &got, 0))
    }

    async fn next_message(&self, reader: &Reader) -> Result<(String, String), Fault> {
        let (cursor, received) = self.cursor("MsgBoxGetNextRequest")?;
        let cursor = cursor
            .ok_or_else(|| Fault::invalid("MsgBoxRequestID was not given out by this gateway"))?;
        self.close_all(reader, &received).await?;
        match self.xta.boxes.next(reader, cursor.after).await? {
            Some(got) => Ok(self.message_xml(reader, &got, 0)),
            None => Err(Fault::new(
                Exception::InvalidMessageId,
                code::UNKNOWN_ID,
                "no further message in the box",
            )),
        }
    }

    async fn close(&self, reader: &Reader) -> Result<(String, String), Fault> {
        let (_, received) = self.cursor("MsgBoxCloseRequest")?;
        if received.is_empty() {
            return Err(Fault::invalid(
                "MsgBoxCloseRequest must name the messages to close in LastMsgReceived",
            ));
        }
        self.close_all(reader, &received).await?;
        Ok((String::new(), String::new()))
    }

    fn create_message_id(&self) -> Result<(String, String), Fault> {
        self.sender()?;
        let id = reply::xta_id(&uuid::Uuid::now_v7().to_string());
        Ok((
            String::new(),
            format!("<wsa:MessageID>{}</wsa:MessageID>", escape(&id)),
        ))
    }

    fn lookup_service(&self) -> Result<(String, String), Fault> {
        let sender = self.sender()?;
        let body = self.body("LookupServiceRequest")?;
        let mut results = String::new();
        let mut n = 0;
        for list in body.all("LookupServiceRequestList") {
            for ask in list.all("LookupService") {
                n += 1;
                if n > 100 {
                    return Err(Fault::invalid("at most 100 LookupService entries at once"));
                }
                let reader = ask
                    .at(&["Reader", "Identifier"])
                    .map(|r| r.value().to_owned())
                    .unwrap_or_default();
                let service = ask
                    .child("ServiceType")
                    .map(|s| s.value().to_owned())
                    .ok_or_else(|| Fault::invalid("LookupService needs a ServiceType"))?;
                let md = crate::core::intake::Metadata {
                    leistung: reply::leistung(&service).to_owned(),
                    destination: reader.clone(),
                    reference: None,
                    payment: None,
                    reply_channel: None,
                };
                let available =
                    md.check().is_ok() && self.xta.ingest.intake.authorize(sender, &md).is_ok();
                results.push_str(&format!(
                    "<xta:LookupServiceResult><oscimeta:Reader><oscimeta:Identifier type=\"xoev\">{}</oscimeta:Identifier></oscimeta:Reader><xta:ServiceType>{}</xta:ServiceType><xta:IsServiceAvailableValue><xta:ServiceIsAvailable>{available}</xta:ServiceIsAvailable></xta:IsServiceAvailableValue></xta:LookupServiceResult>",
                    escape(&reader),
                    escape(&service)
                ));
            }
        }
        if n == 0 {
            return Err(Fault::invalid("LookupServiceRequest asks for nothing"));
        }
        Ok((
            String::new(),
            format!("<xta:LookupServiceResponse><xta:LookupServiceResultList>{results}</xta:LookupServiceResultList></xta:LookupServiceResponse>"),
        ))
    }

    /// The XTA message id in the body (`wsa:MessageID`).
    fn body_message_id(&self) -> Result<String, Fault> {
        let id = self.body("MessageID")?;
        if id.ns != WSA || id.value().is_empty() {
            return Err(Fault::invalid("the body must hold the wsa:MessageID"));
        }
        Ok(id.value().to_owned())
    }

    async fn transport_report(&self) -> Result<(String, String), Fault> {
        let asked = self.body_message_id()?;
        let id = reply::message_id(&asked);
        // A sender asks under the id it sent with; a reader under the box's id.
        let sent_id = if self.caller.sender.is_some() {
            asked.as_str()
        } else {
            id
        };
        let report = match self
            .xta
            .boxes
            .report(self.caller.sender.as_deref(), None, sent_id)
            .await
        {
            Ok(r) => r,
            Err(crate::core::mailbox::BoxError::Unknown(_)) if self.caller.reader.is_some() => {
                self.xta
                    .boxes
                    .report(None, self.caller.reader.as_deref(), id)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok((String::new(), report_xml(self.xta, &asked, &report)))
    }

    async fn cancel(&self) -> Result<(String, String), Fault> {
        let sender = self.sender()?;
        let asked = self.body_message_id()?;
        // cancelMessage declares no InvalidMessageIDException.
        self.xta
            .boxes
            .cancel(sender, &asked)
            .await
            .map_err(|e| match e {
                crate::core::mailbox::BoxError::Unknown(_) => {
                    Fault::invalid(format!("no message {asked} of this account"))
                }
                e => e.into(),
            })?;
        Ok((String::new(), String::new()))
    }
}

fn unknown(action: &str) -> Fault {
    Fault::invalid(format!("the operation {action:?} is not offered here"))
}

/// An `xs:dateTime` selector as ms since the epoch.
fn time(sel: &Node, name: &str) -> Result<Option<i64>, Fault> {
    let Some(n) = sel.child(name) else {
        return Ok(None);
    };
    let t = time::OffsetDateTime::parse(n.value(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| Fault::invalid(format!("{name} must be an xs:dateTime with a time zone")))?;
    Ok(Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// The `xta:TransportReport` of a message: its state (0 open, 1 delivered
/// everywhere, 3 failed somewhere) and its audit trail as report lines.
fn report_xml(xta: &Xta, asked: &str, r: &crate::core::mailbox::Report) -> String {
    let s = &r.submission;
    let open = s.deliveries.iter().any(|d| {
        matches!(
            d.state,
            DeliveryState::Pending | DeliveryState::InFlight | DeliveryState::RetryWait
        )
    });
    let failed = s
        .deliveries
        .iter()
        .any(|d| matches!(d.state, DeliveryState::Parked | DeliveryState::Discarded));
    let status = if open {
        0
    } else if failed {
        3
    } else {
        1
    };
    let size: u64 = r
        .trace
        .iter()
        .filter(|t| t.event == "received")
        .filter_map(|t| t.detail.get("parts").and_then(|p| p.as_array()))
        .flatten()
        .filter_map(|p| p.get("size").and_then(|v| v.as_u64()))
        .sum();
    let mut errors = String::new();
    let mut infos = String::new();
    for t in &r.trace {
        let mut reason = t.event.replace('_', " ");
        if let Some(target) = &t.target {
            reason.push_str(&format!(" (target {target})"));
        }
        if let Some(class) = t.detail.get("class").and_then(|c| c.as_str()) {
            reason.push_str(&format!(": {class}"));
        }
        let line = reply::record(&t.ts, &t.event, &reason);
        if matches!(t.event.as_str(), "parked" | "discarded") {
            errors.push_str(&format!("<xta:Error>{line}</xta:Error>"));
        } else {
            infos.push_str(&format!("<xta:Info>{line}</xta:Info>"));
        }
    }
    let errors = if errors.is_empty() {
        String::new()
    } else {
        format!("<xta:ErrorList>{errors}</xta:ErrorList>")
    };
    let meta = format!(
        "<oscimeta:MessageMetaData><oscimeta:DeliveryAttributes><oscimeta:Origin>{received}</oscimeta:Origin></oscimeta:DeliveryAttributes><oscimeta:Originators><oscimeta:Author><oscimeta:Identifier type=\"xoev\">{author}</oscimeta:Identifier></oscimeta:Author></oscimeta:Originators><oscimeta:Destinations><oscimeta:Reader><oscimeta:Identifier type=\"xoev\">{dest}</oscimeta:Identifier></oscimeta:Reader></oscimeta:Destinations><oscimeta:MsgIdentification><wsa:MessageID>{id}</wsa:MessageID></oscimeta:MsgIdentification><oscimeta:Qualifier><oscimeta:Service>{service}</oscimeta:Service><oscimeta:BusinessScenario><oscimeta:Undefined>OZG-Antrag</oscimeta:Undefined></oscimeta:BusinessScenario><oscimeta:MessageType listURI=\"urn:de:payloadSchema:elementName\" listVersionID=\"1.0\" payloadSchema=\"urn:de:ozg-gateway:envelope:1\"><code>ozg-gateway.submission</code></oscimeta:MessageType></oscimeta:Qualifier>{size}</oscimeta:MessageMetaData>",
        received = escape(&s.received_at),
        author = escape(&s.portal),
        dest = escape(&s.destination),
        id = escape(asked),
        service = escape(reply::service(&s.leistung)),
        size = reply::msg_size(size),
    );
    format!(
        "<xta:TransportReport>{meta}<xta:ReportTime>{now}</xta:ReportTime><xta:XTAServerIdentity>{identity}</xta:XTAServerIdentity><xta:MessageStatus><xta:Status>{status}</xta:Status>{errors}<xta:InfoList>{infos}</xta:InfoList></xta:MessageStatus></xta:TransportReport>",
        now = crate::model::time::rfc3339_ms(crate::model::time::now_ms()),
        identity = escape(&xta.identity),
    )
}
