//! The event log of a case: Security Event Tokens (RFC 8417; `typ:
//! secevent+jwt`, `alg: PS512`). The gateway signs its own (`submit-submission`)
//! with its RSA-4096 event key, published as a JWKS; a subscriber posts
//! `accept-submission` (with the authentication tags of what it received,
//! which must match what was stored: the delivery is then delivered) or
//! `reject-submission` (with its problems: the delivery is parked with class
//! `rejected-by-subscriber`). Both are kept as they came and land in the
//! audit log and the Laufzettel.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair, RSA_PSS_SHA512};
use serde_json::{json, Value};

use super::submissions::Stored;
use super::{Client, FitError, Role, Zustelldienst};
use crate::model::delivery::{DeliveryState, Recorded};
use crate::model::submission::message_id;
use ozg_adapter_sdk::base64url;
use ozg_adapter_sdk::Failure;

/// The `$schema` of a SET payload.
pub const SET_SCHEMA_URI: &str = SET_SCHEMA;
pub const EVENT_PREFIX: &str = "https://schema.fitko.de/fit-connect/events/";
const SET_SCHEMA: &str =
    "https://schema.fitko.de/fit-connect/set-payload/1.0.0/set-payload.schema.json";

/// The gateway's event signing key.
pub struct EventSigner {
    key: RsaKeyPair,
    pub kid: String,
    /// The public key as a JWK (`use: sig`, `alg: PS512`).
    pub jwk: Value,
}

impl EventSigner {
    /// From a PKCS#8 RSA key (≥ 4096 bits) and its certificate (DER).
    pub fn new(pkcs8: &[u8], certificate: &[u8]) -> Result<EventSigner, String> {
        let key = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| format!("not an RSA key: {e}"))?;
        if key.public_modulus_len() * 8 < 4096 {
            return Err("the event signing key must be RSA with at least 4096 bits".into());
        }
        let published = super::keys::DestinationKey::from_certificate(certificate)?;
        let n = published.jwk["n"].as_str().unwrap_or_default();
        let modulus = base64url::decode(n).unwrap_or_default();
        if !key
            .public_key()
            .as_ref()
            .windows(modulus.len().max(1))
            .any(|w| w == modulus)
        {
            return Err("the event signing key does not belong to its certificate".into());
        }
        let mut jwk = published.jwk.clone();
        jwk["use"] = json!("sig");
        jwk["alg"] = json!("PS512");
        jwk["key_ops"] = json!(["verify"]);
        Ok(EventSigner {
            key,
            kid: published.kid,
            jwk,
        })
    }

    /// A signed SET over `payload`.
    pub fn sign(&self, payload: &Value) -> Result<String, FitError> {
        sign_set(&self.key, Some(&self.kid), payload)
    }
}

/// A Security Event Token over `payload`, signed PS512 with `key`.
pub fn sign_set(key: &RsaKeyPair, kid: Option<&str>, payload: &Value) -> Result<String, FitError> {
    let mut header = json!({"typ": "secevent+jwt", "alg": "PS512"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = format!(
        "{}.{}",
        base64url::encode(header.to_string().as_bytes()),
        base64url::encode(payload.to_string().as_bytes())
    );
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &RSA_PSS_SHA512,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| FitError::unavailable("the event could not be signed"))?;
    Ok(format!("{input}.{}", base64url::encode(&sig)))
}

/// The case id of a submission and back: the submission id with fixed bits
/// flipped (outside the version and variant), so either names the other.
const CASE_MASK: u128 = 0x5a5a_5a5a_5a5a_0a5a_0a5a_5a5a_5a5a_5a5a;

pub fn case_of(submission: &uuid::Uuid) -> uuid::Uuid {
    uuid::Uuid::from_u128(submission.as_u128() ^ CASE_MASK)
}

pub fn submission_of(case: &uuid::Uuid) -> uuid::Uuid {
    uuid::Uuid::from_u128(case.as_u128() ^ CASE_MASK)
}

/// The last segment of a compact JWE: its authentication tag.
fn tag(jwe: &str) -> &str {
    jwe.rsplit('.').next().unwrap_or_default()
}

/// The authentication tags of what was stored, as `accept-submission` names them.
fn tags(s: &Stored) -> Value {
    let attachments: serde_json::Map<String, Value> = s
        .attachment_jwes
        .iter()
        .map(|(id, jwe)| (id.clone(), json!(tag(jwe))))
        .collect();
    let mut t = json!({"metadata": tag(&s.encrypted_metadata), "attachments": attachments});
    if let Some(d) = &s.encrypted_data {
        t["data"] = json!(tag(d));
    }
    t
}

impl Zustelldienst {
    /// The submission of a case, for a subscriber of its destination or its sender.
    async fn case(&self, client: &Client, case_id: &str) -> Result<(Stored, String), FitError> {
        let not_found = || {
            FitError::new(
                404,
                "case-not-found",
                "Case not found",
                format!("no case {case_id} for this client"),
            )
        };
        let case = uuid::Uuid::parse_str(case_id).map_err(|_| not_found())?;
        let sid = submission_of(&case).to_string();
        let stored = match client.role {
            Role::Subscriber => {
                let any = [
                    DeliveryState::InFlight,
                    DeliveryState::Delivered,
                    DeliveryState::Parked,
                    DeliveryState::Discarded,
                ];
                self.stored_for(client, &sid, &any)
                    .await
                    .map_err(|_| not_found())?
            }
            Role::Sender => {
                let s = self.store.submission(&sid).await?.ok_or_else(not_found)?;
                if s.portal != format!("fitconnect:{}", client.id) {
                    return Err(not_found());
                }
                let mid = &s.deliveries.first().ok_or_else(not_found)?.message_id;
                let env = self.store.envelope(mid).await?.ok_or_else(not_found)?;
                serde_json::from_slice(&env).map_err(|_| not_found())?
            }
        };
        Ok((stored, sid))
    }

    /// `GET /v1/cases/{caseId}/events`: the gateway's `submit-submission` and
    /// every event a subscriber posted, in order.
    pub async fn events(&self, client: &Client, case_id: &str) -> Result<Value, FitError> {
        let (stored, sid) = self.case(client, case_id).await?;
        let s = self
            .store
            .submission(&sid)
            .await?
            .ok_or_else(|| FitError::unavailable("submission vanished"))?;
        let iat = time::OffsetDateTime::parse(
            &s.received_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| t.unix_timestamp())
        .unwrap_or_default();
        let submitted = self.signer.sign(&json!({
            "$schema": SET_SCHEMA,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iss": self.tokens.issuer(),
            "iat": iat,
            "sub": format!("submission:{sid}"),
            "txn": format!("case:{}", stored.case_id),
            "events": {format!("{EVENT_PREFIX}submit-submission"): {}},
        }))?;
        let mut log = vec![Value::String(submitted)];
        if let Some(staged) = self.events.load(case_id).await? {
            let mut posted = staged.parts;
            posted.sort();
            log.extend(
                posted
                    .into_iter()
                    .map(|(_, set)| Value::String(String::from_utf8_lossy(&set).into_owned())),
            );
        }
        Ok(json!({"offset": 0, "count": log.len(), "totalCount": log.len(), "eventLog": log}))
    }

    /// `POST /v1/cases/{caseId}/events`: a subscriber accepts or rejects.
    pub async fn post_event(
        &self,
        client: &Client,
        case_id: &str,
        set: &str,
    ) -> Result<(), FitError> {
        if client.role != Role::Subscriber {
            return Err(FitError::forbidden("only a subscriber posts events"));
        }
        let (stored, sid) = self.case(client, case_id).await?;
        let bad = |why: String| FitError::new(422, "event-invalid", "Invalid event", why);
        let parts: Vec<&str> = set.trim().split('.').collect();
        let [h, p, sig] = parts[..] else {
            return Err(bad("not a compact JWS".into()));
        };
        if sig.is_empty() || set.len() > 64 << 10 {
            return Err(bad("not a signed SET".into()));
        }
        if let Some(key) = &client.signing_key {
            let signature = base64url::decode(sig)
                .ok_or_else(|| bad("the signature is not base64url".into()))?;
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA512,
                key,
            )
            .verify(format!("{h}.{p}").as_bytes(), &signature)
            .map_err(|_| {
                bad(
                    "the SET's signature does not verify with the subscriber's signing certificate"
                        .into(),
                )
            })?;
        }
        let decode = |part: &str| -> Option<Value> {
            serde_json::from_slice(&base64url::decode(part)?).ok()
        };
        let header = decode(h).ok_or_else(|| bad("the header is not JSON".into()))?;
        let payload = decode(p).ok_or_else(|| bad("the payload is not JSON".into()))?;
        if header["typ"] != "secevent+jwt" || header["alg"] != "PS512" {
            return Err(bad("a SET has typ secevent+jwt and alg PS512".into()));
        }
        if payload["sub"] != format!("submission:{sid}")
            || payload["txn"] != format!("case:{}", stored.case_id)
        {
            return Err(bad(format!(
                "the event is not about submission {sid} of case {case_id}"
            )));
        }
        let events = payload["events"]
            .as_object()
            .filter(|e| e.len() == 1)
            .ok_or_else(|| bad("a SET carries exactly one event".into()))?;
        let (uri, body) = events.iter().next().ok_or_else(|| bad("no event".into()))?;
        let dest = &stored.destination_id;
        let mid = message_id(
            &submission_of(&uuid::Uuid::parse_str(case_id).unwrap_or_default()),
            &super::box_target(dest),
        );
        let decision = self.decisions.clone().lock_owned().await;
        let info = self
            .store
            .delivery(&mid)
            .await?
            .ok_or_else(|| bad("no delivery".into()))?;
        if info.state != DeliveryState::InFlight {
            return Err(FitError::new(
                409,
                "submission-state-invalid",
                "Submission already decided",
                format!("submission {sid} was accepted or rejected before"),
            ));
        }
        let recorded = match uri.strip_prefix(EVENT_PREFIX) {
            Some("accept-submission") => {
                if body["authenticationTags"] != tags(&stored) {
                    return Err(bad(
                        "the authentication tags are not those of the submission as stored".into(),
                    ));
                }
                Recorded::Delivered {
                    receipt: Some(set.trim().to_owned()),
                }
            }
            Some("reject-submission") => Recorded::Parked {
                failure: Failure::new(
                    "rejected-by-subscriber",
                    "the subscriber rejected the submission (reject-submission)",
                ),
                gave_up_after: None,
            },
            _ => return Err(bad(format!("{uri} is not an event a subscriber posts"))),
        };
        // The event is kept, then the decision recorded, in a task of its own:
        // a subscriber that drops the connection mid-request (or dies) cannot
        // leave an event kept without its decision, which a retry would post a
        // second time.
        let (events, store) = (self.events.clone(), self.store.clone());
        let (case, set) = (case_id.to_owned(), set.trim().to_owned());
        tokio::spawn(async move {
            let _decision = decision;
            let _ = events.create(&case, b"{}".to_vec()).await;
            let name = uuid::Uuid::now_v7().to_string();
            events.put(&case, &name, set.into_bytes()).await?;
            store
                .record(&mid, recorded, crate::model::time::now_ms())
                .await
        })
        .await
        .map_err(|_| FitError::unavailable("the decision could not be recorded; retry"))??;
        tracing::info!(submission_id = %sid, client = %client.id, event = %uri.trim_start_matches(EVENT_PREFIX), "FIT-Connect event posted");
        Ok(())
    }
}

impl Zustelldienst {
    /// Rejects the submissions no subscriber decided on within
    /// `auto_reject_after`: a `reject-submission` signed by the gateway in
    /// the case's log, the delivery parked as `rejected-automatically`.
    /// Returns how many.
    pub async fn reject_undecided(&self) -> Result<u64, FitError> {
        let cut = crate::model::time::now_ms()
            - self.auto_reject_after.as_millis().min(i64::MAX as u128) as i64;
        let targets: Vec<String> = self
            .destinations
            .keys()
            .map(|d| super::box_target(d))
            .collect();
        let due = self
            .store
            .mailbox(crate::model::delivery::BoxQuery {
                targets,
                to_ms: Some(cut),
                limit: 500,
                ..Default::default()
            })
            .await?;
        let mut n = 0;
        for e in due {
            let Ok(sid) = uuid::Uuid::parse_str(&e.submission_id) else {
                continue;
            };
            let _decision = self.decisions.lock().await;
            match self.store.delivery(&e.message_id).await? {
                Some(d) if d.state == DeliveryState::InFlight => {}
                _ => continue,
            }
            let case = case_of(&sid).to_string();
            let set = self.signer.sign(&json!({
                "$schema": SET_SCHEMA,
                "jti": uuid::Uuid::new_v4().to_string(),
                "iss": self.tokens.issuer(),
                "iat": crate::model::time::now_ms() / 1000,
                "sub": format!("submission:{sid}"),
                "txn": format!("case:{case}"),
                "events": {format!("{EVENT_PREFIX}reject-submission"): {"problems": [{
                    "type": "https://schema.fitko.de/fit-connect/events/problems/submission-not-accepted-in-time",
                    "title": "Not accepted in time",
                    "detail": format!("no subscriber accepted or rejected the submission within {}", humantime::format_duration(self.auto_reject_after)),
                }]}},
            }))?;
            let _ = self.events.create(&case, b"{}".to_vec()).await;
            self.events
                .put(&case, &uuid::Uuid::now_v7().to_string(), set.into_bytes())
                .await?;
            let failure = Failure::new("rejected-automatically", "no subscriber decided in time");
            match self
                .store
                .record(
                    &e.message_id,
                    Recorded::Parked {
                        failure,
                        gave_up_after: None,
                    },
                    crate::model::time::now_ms(),
                )
                .await
            {
                Ok(()) => n += 1,
                // Decided meanwhile by its subscriber.
                Err(crate::store::StoreError::Corrupt(_)) => {}
                Err(err) => return Err(err.into()),
            }
            tracing::warn!(submission_id = %sid, target_id = %e.target, "FIT-Connect submission rejected: no subscriber decided in time");
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_names_its_submission_and_back() {
        let sid = uuid::Uuid::now_v7();
        let case = case_of(&sid);
        assert_ne!(case, sid);
        assert_eq!(submission_of(&case), sid);
        assert_eq!(case.get_version_num(), sid.get_version_num());
    }
}
