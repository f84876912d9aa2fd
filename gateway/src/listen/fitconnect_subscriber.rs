//! The gateway as the subscriber of a destination at a FIT-Connect
//! Zustelldienst (`[[fitconnect_subscriptions]]`): an ingest source that
//! polls, fetches, decrypts with the destination's key, checks the SHA-512 of
//! the data and every attachment against the metadata, and hands each
//! application to the normal intake (checks, routing, seal, encryption per
//! target, durable). Only then it posts `accept-submission` (signed PS512,
//! with the authentication tags); data the intake refuses get
//! `reject-submission` with the problem.
//!
//! Crash-safe: the FIT-Connect submission id is the intake's idempotency key,
//! so a crash between the commit and the accept leaves the submission listed
//! at the Zustelldienst; the next poll takes it again, the intake answers
//! with the stored submission (nothing twice), and the accept is posted.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::RsaKeyPair;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::config::FitSubscriptionConfig;
use crate::core::fitconnect::events::{sign_set, EVENT_PREFIX, SET_SCHEMA_URI};
use crate::core::intake::{Incoming, Intake, Metadata, Part, Sender};
use crate::core::refusal::Kind;
use crate::model::portal::Portal;
use crate::model::routing::{Pattern, PatternSet};
use ozg_adapter_sdk::keys::RecipientPrivateKey;

/// The longest wait after a failed poll.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// One subscription, ready to poll.
pub struct Subscription {
    pub config: FitSubscriptionConfig,
    client: reqwest::Client,
    key: RecipientPrivateKey,
    signer: RsaKeyPair,
    /// Who the intake sees as the sender.
    portal: Arc<Portal>,
    intake: Arc<Intake>,
    /// Largest plaintext taken per part.
    max_part: u64,
    /// A callback makes it poll at once.
    pub wake: Arc<tokio::sync::Notify>,
}

fn pkcs8(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::PrivateKeyDer::from_pem_file(path)
        .map(|k| k.secret_der().to_vec())
        .map_err(|e| format!("{}: not a PKCS#8 PEM key: {e}", path.display()))
}

fn sha512_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, b))
}

impl Subscription {
    pub fn new(
        config: FitSubscriptionConfig,
        intake: Arc<Intake>,
        max_part: u64,
    ) -> Result<Self, String> {
        let key_pem = std::fs::read(&config.destination_key)
            .map_err(|e| format!("{}: {e}", config.destination_key.display()))?;
        let key = RecipientPrivateKey::from_pem(&key_pem, None).map_err(|e| e.to_string())?;
        let signer = RsaKeyPair::from_pkcs8(&pkcs8(&config.signing_key)?)
            .map_err(|e| format!("{}: not an RSA key: {e}", config.signing_key.display()))?;
        let tls = crate::listen::tls::server_only_client_config(&config.server_ca)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let id = format!("fitconnect:{}", config.destination);
        let portal = Arc::new(Portal {
            id: id.clone(),
            leistungen: PatternSet(vec![Pattern::Prefix(String::new())]),
            destinations: PatternSet(vec![Pattern::Prefix(String::new())]),
            xta_account: id,
            rate: None,
            uploads: None,
            replies: None,
        });
        Ok(Subscription {
            config,
            client,
            key,
            signer,
            portal,
            intake,
            max_part,
            wake: Arc::default(),
        })
    }

    /// Polls every `poll_interval` until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            // After a failed poll it tries again soon, whatever the interval.
            let wait = match self.poll().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(destination = %self.config.destination, submissions = n, "FIT-Connect submissions taken in");
                    }
                    self.config.poll_interval
                }
                Err(e) => {
                    tracing::warn!(destination = %self.config.destination, error = %e, "FIT-Connect poll failed; trying again");
                    self.config.poll_interval.min(RETRY_AFTER_FAILURE)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn token(&self) -> Result<String, String> {
        let r = self
            .client
            .post(&self.config.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", self.config.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("token: {e}"))?;
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| format!("token: {e}"))?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("token refused: HTTP {status}"))
    }

    async fn get(&self, token: &str, path: &str) -> Result<reqwest::Response, String> {
        let url = format!("{}{path}", self.config.api_url.trim_end_matches('/'));
        let r = self
            .client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("GET {path}: HTTP {}", r.status()));
        }
        Ok(r)
    }

    /// One poll: every listed submission of the destination taken in.
    pub async fn poll(&self) -> Result<usize, String> {
        let token = self.token().await?;
        let list: Value = self
            .get(&token, "/submissions?offset=0&limit=100")
            .await?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let mut taken = 0;
        for s in list["submissions"].as_array().into_iter().flatten() {
            if s["destinationId"] != self.config.destination.as_str() {
                continue;
            }
            let Some(id) = s["submissionId"].as_str() else {
                continue;
            };
            match self.take(&token, id).await {
                Ok(()) => taken += 1,
                Err(e) => {
                    tracing::warn!(fitconnect_submission = %id, error = %e, "FIT-Connect submission not taken in yet")
                }
            }
        }
        Ok(taken)
    }

    /// Decrypts a compact JWE (inflating `zip: DEF`), within `max_part`.
    fn open(&self, what: &str, jwe: &str) -> Result<Vec<u8>, String> {
        let header: Value = jwe
            .split('.')
            .next()
            .and_then(ozg_adapter_sdk::base64url::decode)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| format!("{what}: not a JWE"))?;
        let plain = ozg_adapter_sdk::jose::decrypt(jwe, &self.key)
            .map_err(|e| format!("{what}: {e}"))?
            .plaintext;
        if header["zip"] == "DEF" {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(plain.as_slice())
                .take(self.max_part + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("{what}: not deflated: {e}"))?;
            if out.len() as u64 > self.max_part {
                return Err(format!("{what}: larger than {} bytes", self.max_part));
            }
            return Ok(out);
        }
        Ok(plain)
    }

    async fn take(&self, token: &str, id: &str) -> Result<(), String> {
        let sub: Value = self
            .get(token, &format!("/submissions/{id}"))
            .await?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let case = sub["caseId"].as_str().ok_or("no caseId")?.to_owned();
        let metadata_jwe = sub["encryptedMetadata"]
            .as_str()
            .ok_or("no encryptedMetadata")?;
        let metadata: Value = serde_json::from_slice(&self.open("metadata", metadata_jwe)?)
            .map_err(|e| {
                // serde's message may quote the decrypted metadata: only where it broke.
                format!(
                    "metadata: not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                )
            })?;
        let structure = &metadata["contentStructure"];
        let mut tags = json!({"metadata": metadata_jwe.rsplit('.').next(), "attachments": {}});
        let mut problems = Vec::new();
        let data_jwe = sub["encryptedData"].as_str().ok_or("no encryptedData")?;
        tags["data"] = json!(data_jwe.rsplit('.').next());
        let data = self.open("data", data_jwe)?;
        if structure["data"]["hash"]["content"].as_str() != Some(sha512_hex(&data).as_str()) {
            problems.push((
                "hash-mismatch",
                "the data do not match their hash in the metadata".to_owned(),
            ));
        }
        let media_type = structure["data"]["submissionSchema"]["mimeType"]
            .as_str()
            .unwrap_or("application/json")
            .to_owned();
        let mut attachments = Vec::new();
        for (n, aid) in sub["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .enumerate()
        {
            let jwe = self
                .get(token, &format!("/submissions/{id}/attachments/{aid}"))
                .await?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            tags["attachments"][aid] = json!(jwe.trim().rsplit('.').next());
            let bytes = self.open("attachment", jwe.trim())?;
            let meta = structure["attachments"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["attachmentId"] == aid);
            let Some(meta) = meta else {
                problems.push((
                    "missing-attachment-metadata",
                    format!("attachment {aid} is not described in the metadata"),
                ));
                continue;
            };
            if meta["hash"]["content"].as_str() != Some(sha512_hex(&bytes).as_str()) {
                problems.push((
                    "hash-mismatch",
                    format!("attachment {aid} does not match its hash in the metadata"),
                ));
            }
            let filename = meta["filename"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("anlage-{}", n + 1));
            attachments.push(Part {
                media_type: meta["mimeType"]
                    .as_str()
                    .unwrap_or("application/octet-stream")
                    .to_owned(),
                filename: Some(filename),
                data: bytes.into(),
                sealed: None,
            });
        }
        if !problems.is_empty() {
            return self.decide(token, id, &case, Err(problems)).await;
        }
        let md = Metadata {
            leistung: sub["serviceType"]["identifier"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            destination: self
                .config
                .route_as
                .clone()
                .unwrap_or_else(|| self.config.destination.clone()),
            reference: Some(format!("fitconnect:{id}")),
            payment: None,
            reply_channel: None,
        };
        let data = Part {
            media_type,
            filename: None,
            data: data.into(),
            sealed: None,
        };
        let checked = match md.check() {
            Ok(()) => self.intake.checks.check(&md, &data).await,
            Err(r) => Err(r),
        };
        let accepted = match checked {
            Ok(()) => {
                self.intake
                    .accept(Incoming {
                        sender: Sender::Portal(self.portal.clone()),
                        metadata: md,
                        data,
                        attachments,
                        idempotency_key: Some(format!("fitconnect:{id}")),
                        stream: None,
                    })
                    .await
            }
            Err(r) => Err(r),
        };
        match accepted {
            Ok(answer) => {
                tracing::info!(submission_id = %answer.submission_id, fitconnect_submission = %id, replayed = answer.replayed, "FIT-Connect submission stored");
                self.decide(token, id, &case, Ok(tags)).await
            }
            Err(r) if matches!(r.kind, Kind::Unavailable | Kind::Internal | Kind::Timeout) => {
                Err(format!("the intake is not taking it now: {}", r.slug))
            }
            Err(r) => {
                self.decide(token, id, &case, Err(vec![(r.slug, r.detail)]))
                    .await
            }
        }
    }

    /// Posts the decision: accept (with the tags) or reject (with the problems).
    async fn decide(
        &self,
        token: &str,
        id: &str,
        case: &str,
        decision: Result<Value, Vec<(&str, String)>>,
    ) -> Result<(), String> {
        let (event, body) = match decision {
            Ok(tags) => ("accept-submission", json!({"authenticationTags": tags})),
            Err(problems) => (
                "reject-submission",
                json!({"problems": problems.iter().map(|(t, d)| json!({
                    "type": format!("https://schema.fitko.de/fit-connect/events/problems/{t}"),
                    "title": t, "detail": d,
                })).collect::<Vec<_>>()}),
            ),
        };
        let set = sign_set(
            &self.signer,
            None,
            &json!({
                "$schema": SET_SCHEMA_URI,
                "jti": uuid::Uuid::new_v4().to_string(),
                "iss": self.config.destination,
                "iat": crate::model::time::now_ms() / 1000,
                "sub": format!("submission:{id}"),
                "txn": format!("case:{case}"),
                "events": {format!("{EVENT_PREFIX}{event}"): body},
            }),
        )
        .map_err(|e| e.detail)?;
        let url = format!(
            "{}/cases/{case}/events",
            self.config.api_url.trim_end_matches('/')
        );
        let r = self
            .client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/jose")
            .body(set)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match r.status().as_u16() {
            200..=299 => {
                tracing::info!(fitconnect_submission = %id, event, "FIT-Connect decision posted");
                Ok(())
            }
            // Decided before (a crash after the post): nothing left to do.
            409 => Ok(()),
            s => Err(format!("{event}: HTTP {s}")),
        }
    }
}
