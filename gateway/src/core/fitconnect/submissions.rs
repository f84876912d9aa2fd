//! Submissions through the Zustelldienst: created by a sender (staged until
//! every announced attachment is there and it is submitted), then stored
//! durably as one delivery to the destination's box; listed and fetched by
//! the destination's subscriber. Everything handled is ciphertext: the JWEs
//! are checked for their form and kept as they came.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{box_target, Client, FitError, Role, Zustelldienst};
use crate::model::delivery::{BoxQuery, DeliveryState};
use crate::model::submission::{
    idempotency_key_hash, message_id, Accepted, AuditPart, IdempotencyKey, NewDelivery,
    NewSubmission,
};
use ozg_adapter_sdk::base64url;

/// What a staged submission records about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    destination_id: String,
    case_id: String,
    service_type: serde_json::Value,
    leistung: String,
    announced: Vec<String>,
    client: String,
}

/// What is stored and delivered to the destination's box.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub destination_id: String,
    pub submission_id: String,
    pub case_id: String,
    pub service_type: serde_json::Value,
    pub attachments: Vec<String>,
    pub encrypted_metadata: String,
    pub encrypted_data: Option<String>,
    /// The attachments' JWEs by id.
    pub attachment_jwes: BTreeMap<String, String>,
}

/// `POST /v1/submissions`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    pub destination_id: String,
    #[serde(default)]
    pub announced_attachments: Vec<String>,
    pub service_type: ServiceType,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct ServiceType {
    #[serde(default)]
    pub name: String,
    pub identifier: String,
}

/// `PUT /v1/submissions/{id}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submit {
    pub encrypted_metadata: String,
    #[serde(default)]
    pub encrypted_data: Option<String>,
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

fn not_found(id: &str) -> FitError {
    FitError::new(
        404,
        "submission-not-found",
        "Submission not found",
        format!("no submission {id} for this client"),
    )
}

/// The case of a submission (see `events::case_of`).
fn case_id(submission_id: &uuid::Uuid) -> String {
    super::events::case_of(submission_id).to_string()
}

/// A compact JWE as FIT-Connect senders make it: five base64url parts, an
/// RSA-OAEP key wrap and an AES content encryption (`zip` tolerated).
pub fn check_jwe(what: &str, jwe: &str, max: u64) -> Result<(), FitError> {
    let bad =
        |why: &str| FitError::new(422, "jwe-invalid", "Invalid JWE", format!("{what}: {why}"));
    if jwe.len() as u64 > max {
        return Err(FitError::new(
            413,
            "payload-too-large",
            "Payload too large",
            format!("{what}: more than {max} bytes"),
        ));
    }
    let parts: Vec<&str> = jwe.trim().split('.').collect();
    if parts.len() != 5 {
        return Err(bad("not a compact JWE (five dot-separated parts)"));
    }
    if parts[0].len() > 4096
        || parts.iter().any(|p| {
            !p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    {
        return Err(bad("a part is not base64url"));
    }
    let header: serde_json::Value = base64url::decode(parts[0])
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or_else(|| bad("the protected header is not JSON"))?;
    let alg = header
        .get("alg")
        .and_then(|a| a.as_str())
        .unwrap_or_default();
    let enc = header
        .get("enc")
        .and_then(|a| a.as_str())
        .unwrap_or_default();
    if !matches!(alg, "RSA-OAEP-256" | "RSA-OAEP") {
        return Err(bad("alg must be RSA-OAEP-256"));
    }
    if !matches!(
        enc,
        "A256GCM" | "A128GCM" | "A192GCM" | "A256CBC-HS512" | "A128CBC-HS256"
    ) {
        return Err(bad("enc must be AES-GCM or AES-CBC-HMAC"));
    }
    if parts[1].is_empty() || parts[3].is_empty() || parts[4].is_empty() {
        return Err(bad(
            "the encrypted key, ciphertext and tag must not be empty",
        ));
    }
    Ok(())
}

impl Zustelldienst {
    fn sender<'c>(&self, client: &'c Client) -> Result<&'c Client, FitError> {
        (client.role == Role::Sender)
            .then_some(client)
            .ok_or_else(|| FitError::forbidden(format!("client {} is not a sender", client.id)))
    }

    fn subscriber<'c>(&self, client: &'c Client) -> Result<&'c Client, FitError> {
        (client.role == Role::Subscriber)
            .then_some(client)
            .ok_or_else(|| FitError::forbidden(format!("client {} is not a subscriber", client.id)))
    }

    /// Creates a submission (state `incomplete`): `201 {destinationId, submissionId, caseId}`.
    pub async fn create(&self, client: &Client, c: Create) -> Result<serde_json::Value, FitError> {
        let client = self.sender(client)?;
        let dest = self.destination_for(client, &c.destination_id)?;
        let leistung = c.service_type.identifier.trim().to_owned();
        if leistung.is_empty() || leistung.len() > 255 {
            return Err(FitError::invalid(
                "serviceType.identifier (the Leistung) is missing",
            ));
        }
        if !dest.leistungen.matches(&leistung) || !client.leistungen.matches(&leistung) {
            return Err(FitError::new(
                422,
                "service-not-available",
                "Service not available",
                format!(
                    "destination {} does not take Leistung {leistung} from this client",
                    dest.id
                ),
            ));
        }
        // The Python SDK announces one id once per attachment: the same id
        // twice is one attachment.
        let mut announced: Vec<String> = Vec::new();
        for a in c.announced_attachments {
            if !is_uuid(&a) {
                return Err(FitError::invalid(format!(
                    "announced attachment {a:?} is not a UUID"
                )));
            }
            if !announced.contains(&a) {
                announced.push(a);
            }
        }
        if announced.len() > self.max_parts {
            return Err(FitError::invalid(format!(
                "more than {} attachments",
                self.max_parts
            )));
        }
        let id = uuid::Uuid::now_v7();
        let meta = Meta {
            destination_id: dest.id.clone(),
            case_id: case_id(&id),
            service_type: serde_json::to_value(&c.service_type).unwrap_or_default(),
            leistung,
            announced: announced.clone(),
            client: client.id.clone(),
        };
        let bytes = serde_json::to_vec(&meta).map_err(|_| FitError::invalid("bad service type"))?;
        self.staging.create(&id.to_string(), bytes).await?;
        tracing::info!(submission_id = %id, client = %client.id, destination = %dest.id, attachments = announced.len(), "FIT-Connect submission created");
        Ok(json!({
            "destinationId": dest.id,
            "submissionId": id.to_string(),
            "caseId": meta.case_id,
            "announcedAttachments": announced,
        }))
    }

    /// A staged submission of this sender.
    async fn staged(
        &self,
        client: &Client,
        id: &str,
    ) -> Result<(Meta, Vec<(String, Vec<u8>)>), FitError> {
        if !is_uuid(id) {
            return Err(not_found(id));
        }
        let staged = self.staging.load(id).await?.ok_or_else(|| not_found(id))?;
        let meta: Meta = serde_json::from_slice(&staged.meta).map_err(|_| not_found(id))?;
        if meta.client != client.id {
            return Err(not_found(id));
        }
        Ok((meta, staged.parts))
    }

    /// Uploads one announced attachment (a compact JWE): durable before `204`.
    pub async fn put_attachment(
        &self,
        client: &Client,
        id: &str,
        attachment: &str,
        jwe: &[u8],
    ) -> Result<(), FitError> {
        let client = self.sender(client)?;
        let (meta, _) = self.staged(client, id).await?;
        if !meta.announced.iter().any(|a| a == attachment) {
            return Err(FitError::new(
                404,
                "attachment-not-announced",
                "Attachment not announced",
                format!("attachment {attachment} was not announced for submission {id}"),
            ));
        }
        let text = std::str::from_utf8(jwe)
            .map_err(|_| FitError::invalid("the attachment is not a compact JWE"))?;
        check_jwe(&format!("attachment {attachment}"), text, self.max_part)?;
        self.staging
            .put(id, attachment, text.trim().as_bytes().to_vec())
            .await?;
        Ok(())
    }

    /// Submits: every announced attachment must be there. Stored durably as
    /// one delivery to the destination's box before the answer; submitting
    /// again answers the same.
    pub async fn submit(
        &self,
        client: &Client,
        id: &str,
        s: Submit,
    ) -> Result<serde_json::Value, FitError> {
        let client = self.sender(client)?;
        let (meta, parts) = match self.staged(client, id).await {
            Ok(found) => found,
            Err(e) => return self.submitted_before(client, id).await.ok_or(e),
        };
        check_jwe("encryptedMetadata", &s.encrypted_metadata, self.max_part)?;
        if let Some(d) = &s.encrypted_data {
            check_jwe("encryptedData", d, self.max_part)?;
        }
        let mut jwes = BTreeMap::new();
        for (name, bytes) in parts {
            jwes.insert(name, String::from_utf8(bytes).map_err(|_| not_found(id))?);
        }
        let missing: Vec<&String> = meta
            .announced
            .iter()
            .filter(|a| !jwes.contains_key(*a))
            .collect();
        if !missing.is_empty() {
            return Err(FitError::new(
                422,
                "missing-attachments",
                "Missing attachments",
                format!("announced attachments not uploaded yet: {missing:?}"),
            ));
        }
        let sid = uuid::Uuid::parse_str(id).map_err(|_| not_found(id))?;
        let sid_uuid = sid;
        let target = box_target(&meta.destination_id);
        let stored = Stored {
            destination_id: meta.destination_id.clone(),
            submission_id: id.to_owned(),
            case_id: meta.case_id.clone(),
            service_type: meta.service_type.clone(),
            attachments: meta.announced.clone(),
            encrypted_metadata: s.encrypted_metadata.trim().to_owned(),
            encrypted_data: s.encrypted_data.as_deref().map(|d| d.trim().to_owned()),
            attachment_jwes: jwes,
        };
        let envelope = serde_json::to_vec(&stored).map_err(|_| FitError::invalid("unencodable"))?;
        let answer = json!({
            "destinationId": meta.destination_id,
            "submissionId": id,
            "caseId": meta.case_id,
        });
        let received_at = crate::model::time::rfc3339_ms(crate::model::time::now_ms());
        // The receipt: the seal over the SHA-512 of every ciphertext.
        let mut named: Vec<(String, &str)> =
            vec![("metadata".into(), stored.encrypted_metadata.as_str())];
        if let Some(d) = &stored.encrypted_data {
            named.push(("data".into(), d));
        }
        for (aid, jwe) in &stored.attachment_jwes {
            named.push((aid.clone(), jwe));
        }
        let hashes: Vec<serde_json::Value> = named
            .iter()
            .map(|(pid, jwe)| json!({"id": pid, "size": jwe.len(), "sha512": hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, jwe.as_bytes()))}))
            .collect();
        let receipt_payload = json!({
            "submissionId": id, "caseId": meta.case_id, "destinationId": meta.destination_id,
            "receivedAt": received_at, "sender": client.id, "ciphertexts": hashes,
        });
        let receipt = ozg_adapter_sdk::jose::sign(
            &self.seal.current(),
            "ozg-fitconnect-receipt+jwt",
            receipt_payload.to_string().as_bytes(),
        )
        .map_err(|e| {
            tracing::error!(error = %e, "signing a FIT-Connect receipt failed");
            FitError::unavailable("the receipt could not be signed; nothing was stored, retry")
        })?;
        let canonical = serde_json::to_vec(&hashes).unwrap_or_default();
        let new = NewSubmission {
            id: id.to_owned(),
            portal: format!("fitconnect:{}", client.id),
            leistung: meta.leistung.clone(),
            destination: meta.destination_id.clone(),
            received_at,
            response: self.privacy.seal_answer(id, &answer.to_string()),
            idempotency: Some(IdempotencyKey {
                key: idempotency_key_hash(id),
                request_hash: self.privacy.request_mac(&canonical),
                legacy_request_hash: String::new(),
            }),
            deliveries: std::iter::once(target.clone())
                .chain(
                    self.destinations
                        .get(&meta.destination_id)
                        .map(|d| d.targets.clone())
                        .unwrap_or_default(),
                )
                .map(|t| NewDelivery::whole(message_id(&sid, &t), t, envelope.clone()))
                .collect(),
            shared: Vec::new(),
            parts: named
                .iter()
                .map(|(pid, jwe)| AuditPart {
                    id: pid.clone(),
                    size: jwe.len() as u64,
                    hmac_sha256: self.privacy.part_mac(jwe.as_bytes()),
                })
                .collect(),
            privacy_key_id: self.privacy.id().to_owned(),
            receipt_sha256: hex::encode(aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                receipt.as_bytes(),
            )),
            reply: None,
            spool: None,
        };
        match self.store.accept(new).await? {
            Accepted::Stored | Accepted::Replay { .. } => {}
            Accepted::Conflict { .. } => {
                return Err(FitError::new(
                    409,
                    "submission-conflict",
                    "Submission already submitted",
                    format!("submission {id} was submitted with other content"),
                ))
            }
        }
        self.staging.remove(id).await?;
        self.wakers.wake(&target);
        if let Some(d) = self.destinations.get(&meta.destination_id) {
            d.targets.iter().for_each(|t| self.wakers.wake(t));
            if let Some(cb) = d.callback.clone() {
                let (dest, sid, case) = (d.id.clone(), id.to_owned(), meta.case_id.clone());
                let (store, mid) = (self.store.clone(), message_id(&sid_uuid, &target));
                tokio::spawn(async move {
                    // Told once its subscriber can list it: when the engine
                    // has put it in the box (within moments).
                    for _ in 0..100 {
                        match store.delivery(&mid).await {
                            Ok(Some(d)) if d.offered_ms.is_some() => break,
                            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                        }
                    }
                    cb.new_submission(&dest, &sid, &case).await
                });
            }
        }
        tracing::info!(submission_id = %id, client = %client.id, destination = %meta.destination_id, "FIT-Connect submission submitted");
        Ok(answer)
    }

    /// The answer to a submission this sender submitted before (a repeated submit).
    async fn submitted_before(&self, client: &Client, id: &str) -> Option<serde_json::Value> {
        let s = self.store.submission(id).await.ok()??;
        (s.portal == format!("fitconnect:{}", client.id)).then(|| {
            json!({"destinationId": s.destination, "submissionId": id, "caseId": uuid::Uuid::parse_str(id).map(|u| case_id(&u)).unwrap_or_default()})
        })
    }

    /// `GET /v1/submissions`: the subscriber's submissions waiting for it.
    pub async fn list(
        &self,
        client: &Client,
        offset: usize,
        limit: usize,
    ) -> Result<serde_json::Value, FitError> {
        let client = self.subscriber(client)?;
        let limit = limit.clamp(1, 500);
        let targets: Vec<String> = client.destinations.iter().map(|d| box_target(d)).collect();
        let entries = self
            .store
            .mailbox(BoxQuery {
                targets: targets.clone(),
                limit: offset.saturating_add(limit).min(100_000),
                ..BoxQuery::default()
            })
            .await?;
        let total: u64 = self
            .store
            .queue_depths()
            .await?
            .iter()
            .filter(|q| q.state == DeliveryState::InFlight && targets.contains(&q.target))
            .map(|q| q.count)
            .sum();
        let page: Vec<serde_json::Value> = entries
            .iter()
            .skip(offset)
            .map(|e| {
                let sid = uuid::Uuid::parse_str(&e.submission_id).map(|u| case_id(&u)).unwrap_or_default();
                json!({"destinationId": e.target.strip_prefix("fitconnect:").unwrap_or(&e.target), "submissionId": e.submission_id, "caseId": sid})
            })
            .collect();
        Ok(
            json!({"offset": offset, "count": page.len(), "totalCount": total.max((offset + page.len()) as u64), "submissions": page}),
        )
    }

    /// A submission of one of the subscriber's destinations, as stored, while
    /// it waits for its subscriber's decision or after it accepted it.
    pub async fn fetch(&self, client: &Client, id: &str) -> Result<Stored, FitError> {
        self.stored_for(
            client,
            id,
            &[DeliveryState::InFlight, DeliveryState::Delivered],
        )
        .await
    }

    /// A submission of one of the subscriber's destinations in one of `states`.
    pub(super) async fn stored_for(
        &self,
        client: &Client,
        id: &str,
        states: &[DeliveryState],
    ) -> Result<Stored, FitError> {
        let client = self.subscriber(client)?;
        let sid = uuid::Uuid::parse_str(id).map_err(|_| not_found(id))?;
        for d in &client.destinations {
            let mid = message_id(&sid, &box_target(d));
            let Some(info) = self.store.delivery(&mid).await? else {
                continue;
            };
            if !states.contains(&info.state) || info.offered_ms.is_none() {
                return Err(not_found(id));
            }
            let env = self
                .store
                .envelope(&mid)
                .await?
                .ok_or_else(|| not_found(id))?;
            return serde_json::from_slice(&env).map_err(|_| not_found(id));
        }
        Err(not_found(id))
    }

    /// Removes submissions created longer ago than `incomplete_after` and never submitted.
    pub async fn expire_incomplete(&self) -> Result<u64, FitError> {
        Ok(self.staging.expire(self.incomplete_after).await?)
    }
}
