//! The conformance kit for vendors: a fixed series of envelopes sent to a
//! receiver the way the gateway sends them, each with what a conformant
//! receiver does with it and why. Run it against a test instance of the
//! receiver before go-live (`ozg-gateway conformance http`).
//!
//! The envelopes are built as the gateway builds them: sealed with the
//! gateway's seal key, encrypted for the target's certificate, delivered by
//! the gateway's own `http` adapter, whose answer classes decide the outcome
//! (2xx delivered, other 4xx parked, 5xx/408/429 retried). The bad ones are
//! made from a good one by changing exactly one thing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ozg_adapter_http::Http;
use ozg_adapter_sdk::envelope::{build_envelope, seal_manifest, sha512_hex, EnvelopeHeader};
use ozg_adapter_sdk::{Adapter, Delivery, Manifest, ManifestPart, Outcome, RecipientCert, SealKey};
use serde::Serialize;

/// What the kit sends to and how it seals.
pub struct HttpKit {
    /// The receiver, as the target's `http` adapter reaches it.
    pub http: Http,
    /// The receiver's URL (for the report).
    pub url: String,
    /// The target's encryption certificate.
    pub recipient: Arc<RecipientCert>,
    /// The gateway's seal key: what the receiver pins.
    pub seal: Arc<SealKey>,
    /// Another key of the receiver's PKI, not the gateway's seal; `None`: a
    /// key of a CA of the kit's own is used (a weaker check).
    pub forger: Option<SealKey>,
    /// `GET {count_url}?message_id=…` answers `{"count": n}`: how often the
    /// receiver passed that message on (for the duplicate case).
    pub count_url: Option<String>,
    /// Size of the large case's attachment.
    pub large_bytes: usize,
    /// How long the slow-read case holds back the end of its body.
    pub hold: Duration,
}

/// One case's result.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: &'static str,
    pub passed: bool,
    /// What a conformant receiver does.
    pub expected: &'static str,
    /// What this one did.
    pub got: String,
    /// Why it matters.
    pub why: &'static str,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub recipient: String,
    pub passed: usize,
    pub failed: usize,
    pub cases: Vec<CaseResult>,
}

/// The cases in the order they run, with what is expected and why.
pub const CASES: [(&str, &str, &str); 8] = [
    ("valid", "2xx", "a correct envelope must be taken: the gateway counts it delivered only on 2xx"),
    ("duplicate", "2xx again, passed on once", "the gateway delivers at least once with the same message_id (after a timeout, a crash, a lost answer); the case worker must see it once"),
    ("tampered-ciphertext", "4xx", "a part whose AES-GCM tag does not verify was changed on the way; 4xx parks it for an operator, 2xx would pass on content nobody vouches for, 5xx would be retried in vain"),
    ("forged-seal", "4xx", "a manifest sealed by another key than the gateway's seal (even one of the same PKI) is not from the gateway"),
    ("wrong-recipient", "4xx", "an envelope encrypted for another recipient cannot be opened here; 2xx would lose it silently"),
    ("hash-mismatch", "4xx", "the sealed manifest's SHA-512 of a part must match the part: otherwise parts were swapped or replaced"),
    ("large", "2xx within the timeout", "Bauanträge carry scans of tens of MiB; a receiver must take an envelope of that size"),
    ("slow-read", "2xx only after the whole body", "a receiver that answers before it has read (and stored) the whole envelope acknowledges what it may never have"),
];

fn case(name: &'static str, passed: bool, got: String) -> CaseResult {
    case_in(&CASES, name, passed, got)
}

/// A case's result, with what `table` says is expected and why.
pub(super) fn case_in(
    table: &[(&'static str, &'static str, &'static str)],
    name: &'static str,
    passed: bool,
    got: String,
) -> CaseResult {
    let (_, expected, why) = table
        .iter()
        .find(|(n, _, _)| *n == name)
        .copied()
        .unwrap_or((name, "", ""));
    CaseResult {
        case: name,
        passed,
        expected,
        got,
        why,
    }
}

/// What an outcome says, for the report.
fn describe(o: &Outcome) -> String {
    match o {
        Outcome::Delivered { .. } => "2xx (delivered)".into(),
        Outcome::Offered => "offered".into(),
        Outcome::Retry { failure, .. } => {
            format!(
                "{} (the gateway would retry): {}",
                failure.class, failure.message
            )
        }
        Outcome::Permanent { failure } => {
            format!(
                "{} (the gateway parks it): {}",
                failure.class, failure.message
            )
        }
    }
}

/// `len` bytes that do not compress and do not repeat: what a scan looks like
/// to a receiver (and to AES).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    out
}

const DATA: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<antrag><hinweis>ozg-gateway conformance kit: test data, no application</hinweis></antrag>\n";

/// A submission of the kit: its manifest and parts.
pub(super) struct Sample {
    pub(super) manifest: Manifest,
    parts: Vec<Vec<u8>>,
}

impl Sample {
    pub(super) fn new(attachment: Vec<u8>) -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        let received_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let part = |id: &str, media: &str, name: Option<&str>, data: &[u8]| ManifestPart {
            id: id.into(),
            media_type: media.into(),
            filename: name.map(str::to_owned),
            size: data.len() as u64,
            sha512: sha512_hex(data),
        };
        let manifest = Manifest {
            submission_id: id,
            received_at,
            sender: "conformance-kit".into(),
            leistung: "99000000000000".into(),
            destination: "00000000".into(),
            metadata: Default::default(),
            parts: vec![
                part("data", "application/xml", None, DATA),
                part(
                    "attachment-1",
                    "application/pdf",
                    Some("Nachweis.pdf"),
                    &attachment,
                ),
            ],
            in_reply_to: None,
            reply_type: None,
        };
        Sample {
            manifest,
            parts: vec![DATA.to_vec(), attachment],
        }
    }

    /// The envelope for `recipient`, the manifest sealed by `seal`.
    pub(super) fn envelope(
        &self,
        seal: &SealKey,
        recipient: &RecipientCert,
    ) -> anyhow::Result<(String, Bytes)> {
        let message_id = uuid::Uuid::new_v4().to_string();
        let sealed = seal_manifest(&self.manifest, seal)?;
        let parts: Vec<&[u8]> = self.parts.iter().map(Vec::as_slice).collect();
        let env = build_envelope(
            EnvelopeHeader {
                message_id: message_id.clone(),
                target: "conformance".into(),
                created_at: self.manifest.received_at.clone(),
            },
            &self.manifest,
            &sealed,
            &parts,
            recipient,
        )?;
        Ok((message_id, Bytes::from(env.to_json())))
    }
}

impl HttpKit {
    async fn send(&self, message_id: &str, submission_id: &str, envelope: &Bytes) -> Outcome {
        self.http
            .deliver(Delivery {
                message_id,
                submission_id,
                target: "conformance",
                attempt: 1,
                envelope,
            })
            .await
    }

    /// Sends a bad envelope: conformant if the answer parks it.
    async fn refused(
        &self,
        name: &'static str,
        sample: &Sample,
        envelope: anyhow::Result<(String, Bytes)>,
    ) -> CaseResult {
        let (id, env) = match envelope {
            Ok(e) => e,
            Err(e) => return case(name, false, format!("the kit could not build it: {e}")),
        };
        let o = self.send(&id, &sample.manifest.submission_id, &env).await;
        case(name, matches!(o, Outcome::Permanent { .. }), describe(&o))
    }

    /// How often the receiver says it passed `message_id` on.
    async fn count(&self, url: &str, message_id: &str) -> Result<u64, String> {
        let answer = self
            .http
            .client()
            .get(url)
            .timeout(Duration::from_secs(10))
            .query(&[("message_id", message_id)])
            .send()
            .await
            .map_err(|e| format!("asking {url}: {e}"))?;
        let v: serde_json::Value = answer
            .json()
            .await
            .map_err(|e| format!("{url} did not answer JSON: {e}"))?;
        v["count"]
            .as_u64()
            .ok_or_else(|| format!("{url} answered without a numeric \"count\": {v}"))
    }

    /// Runs every case; the report says which passed.
    pub async fn run(&self) -> anyhow::Result<Report> {
        let mut cases = Vec::new();
        let sample = Sample::new(noise(64 << 10, 1));
        let sid = sample.manifest.submission_id.clone();

        // valid, then the same message again.
        let (id, env) = sample.envelope(&self.seal, &self.recipient)?;
        let first = self.send(&id, &sid, &env).await;
        cases.push(case(
            "valid",
            matches!(first, Outcome::Delivered { .. }),
            describe(&first),
        ));
        let again = self.send(&id, &sid, &env).await;
        let mut duplicate = case(
            "duplicate",
            matches!(again, Outcome::Delivered { .. }),
            describe(&again),
        );
        match &self.count_url {
            Some(url) if duplicate.passed => match self.count(url, &id).await {
                Ok(1) => duplicate.got.push_str("; passed on once"),
                Ok(n) => {
                    duplicate.passed = false;
                    duplicate
                        .got
                        .push_str(&format!("; but passed on {n} times (expected once)"));
                }
                Err(e) => {
                    duplicate.passed = false;
                    duplicate
                        .got
                        .push_str(&format!("; count check failed: {e}"));
                }
            },
            Some(_) => {}
            None => duplicate
                .got
                .push_str("; passed on how often: not checked (give --count-url)"),
        }
        cases.push(duplicate);

        // One thing changed each.
        let bad = tampered(sample.envelope(&self.seal, &self.recipient));
        cases.push(self.refused("tampered-ciphertext", &sample, bad).await);

        let own_forger;
        let forger = match &self.forger {
            Some(f) => f,
            None => {
                own_forger = foreign_seal()?;
                &own_forger
            }
        };
        let mut forged = self
            .refused(
                "forged-seal",
                &sample,
                sample.envelope(forger, &self.recipient),
            )
            .await;
        if self.forger.is_none() {
            forged
                .got
                .push_str(" (sealed by a CA of the kit's own; give --forger-cert/--forger-key for a key of your PKI)");
        }
        cases.push(forged);

        let stranger = foreign_recipient()?;
        cases.push(
            self.refused(
                "wrong-recipient",
                &sample,
                sample.envelope(&self.seal, &stranger),
            )
            .await,
        );

        let mut swapped = Sample::new(noise(64 << 10, 2));
        swapped.manifest.parts[1].sha512 = sha512_hex(b"another document");
        cases.push(
            self.refused(
                "hash-mismatch",
                &swapped,
                swapped.envelope(&self.seal, &self.recipient),
            )
            .await,
        );

        let large = Sample::new(noise(self.large_bytes, 3));
        let (id, env) = large.envelope(&self.seal, &self.recipient)?;
        let started = Instant::now();
        let o = self.send(&id, &large.manifest.submission_id, &env).await;
        cases.push(case(
            "large",
            matches!(o, Outcome::Delivered { .. }),
            format!(
                "{} after {:.1} s ({:.1} MiB envelope)",
                describe(&o),
                started.elapsed().as_secs_f64(),
                env.len() as f64 / (1 << 20) as f64
            ),
        ));
        drop(env);

        cases.push(self.slow_read(&sample).await?);

        let passed = cases.iter().filter(|c| c.passed).count();
        Ok(Report {
            url: self.url.clone(),
            recipient: self.recipient.certificate().subject().to_owned(),
            passed,
            failed: cases.len() - passed,
            cases,
        })
    }

    /// Sends a valid envelope with its last bytes held back for `hold`: an
    /// answer before they were sent fails the case.
    async fn slow_read(&self, sample: &Sample) -> anyhow::Result<CaseResult> {
        let (id, env) = sample.envelope(&self.seal, &self.recipient)?;
        let split = env.len().saturating_sub(64);
        let (head, tail) = (env.slice(..split), env.slice(split..));
        let sent_all = Arc::new(AtomicBool::new(false));
        let hold = self.hold;
        let flag = sent_all.clone();
        let body = futures_util::stream::unfold(0u8, move |step| {
            let (head, tail, flag) = (head.clone(), tail.clone(), flag.clone());
            async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(head), 1)),
                    1 => {
                        tokio::time::sleep(hold).await;
                        flag.store(true, Ordering::SeqCst);
                        Some((Ok(tail), 2))
                    }
                    _ => None,
                }
            }
        });
        let answer = self
            .http
            .request(&id, &sample.manifest.submission_id)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await;
        let early = !sent_all.load(Ordering::SeqCst);
        Ok(match answer {
            Ok(r) if r.status().is_success() && early => case(
                "slow-read",
                false,
                format!(
                    "answered {} while the last 64 bytes were still held back ({} s)",
                    r.status().as_u16(),
                    hold.as_secs()
                ),
            ),
            Ok(r) if r.status().is_success() => case(
                "slow-read",
                true,
                format!("answered {} after the whole body", r.status().as_u16()),
            ),
            Ok(r) => case(
                "slow-read",
                false,
                format!("answered {} to a valid envelope", r.status().as_u16()),
            ),
            Err(e) => case("slow-read", false, format!("no answer: {e}")),
        })
    }
}

/// The series for a kit that hands every envelope over alike (AMQP, XTA): the
/// valid envelope, then the bad ones and the large one in the order of the
/// cases. `seed` keeps the kits' attachments apart.
pub(super) struct Series {
    pub(super) valid: (String, Bytes),
    pub(super) rest: Vec<(&'static str, anyhow::Result<(String, Bytes)>)>,
}

impl Series {
    pub(super) fn new(
        seal: &SealKey,
        recipient: &RecipientCert,
        forger: Option<&SealKey>,
        large_bytes: usize,
        seed: u64,
    ) -> anyhow::Result<Series> {
        let sample = Sample::new(noise(64 << 10, seed));
        let valid = sample.envelope(seal, recipient)?;
        let own_forger;
        let forger = match forger {
            Some(f) => f,
            None => {
                own_forger = foreign_seal()?;
                &own_forger
            }
        };
        let stranger = foreign_recipient()?;
        let mut swapped = Sample::new(noise(64 << 10, seed + 1));
        swapped.manifest.parts[1].sha512 =
            ozg_adapter_sdk::envelope::sha512_hex(b"another document");
        let large = Sample::new(noise(large_bytes, seed + 2));
        let rest = vec![
            (
                "tampered-ciphertext",
                tampered(sample.envelope(seal, recipient)),
            ),
            ("forged-seal", sample.envelope(forger, recipient)),
            ("wrong-recipient", sample.envelope(seal, &stranger)),
            ("hash-mismatch", swapped.envelope(seal, recipient)),
            ("large", large.envelope(seal, recipient)),
        ];
        Ok(Series { valid, rest })
    }
}

/// The envelope with one character of its attachment's ciphertext changed.
pub(super) fn tampered(
    envelope: anyhow::Result<(String, Bytes)>,
) -> anyhow::Result<(String, Bytes)> {
    let (id, env) = envelope?;
    let mut v: serde_json::Value = serde_json::from_slice(&env)?;
    let mut ct = v["parts"][1]["jwe"]["ciphertext"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no ciphertext"))?
        .to_owned();
    let mid = ct.len() / 2;
    let flipped = if &ct[mid..mid + 1] == "A" { "B" } else { "A" };
    ct.replace_range(mid..mid + 1, flipped);
    v["parts"][1]["jwe"]["ciphertext"] = ct.into();
    Ok((id, Bytes::from(serde_json::to_vec(&v)?)))
}

/// A seal key of a throw-away CA (not the receiver's PKI).
pub(super) fn foreign_seal() -> anyhow::Result<SealKey> {
    use super::demo_pki::{Algorithm, DemoCa, Usage};
    let ca = DemoCa::generate("conformance kit foreign CA", 1)?;
    let seal = ca.issue("conformance kit forger", Usage::Seal, Algorithm::EcP256, 1)?;
    Ok(SealKey::from_pem(
        seal.cert_pem.as_bytes(),
        seal.key_pem.as_bytes(),
    )?)
}

/// An encryption certificate of someone else (a throw-away CA's).
pub(super) fn foreign_recipient() -> anyhow::Result<RecipientCert> {
    use super::demo_pki::{Algorithm, DemoCa, Usage};
    let ca = DemoCa::generate("conformance kit foreign CA", 1)?;
    let other = ca.issue(
        "conformance kit other recipient",
        Usage::Recipient,
        Algorithm::EcP256,
        1,
    )?;
    let cert = ozg_adapter_sdk::keys::Certificate::from_pem(other.cert_pem.as_bytes())?;
    Ok(RecipientCert::new(cert)?)
}

impl Report {
    /// The report as text for a terminal.
    pub fn text(&self) -> String {
        let mut out = format!(
            "ozg-gateway conformance: {}\nrecipient: {}\n\n",
            self.url, self.recipient
        );
        for c in &self.cases {
            out.push_str(&format!(
                "{} {:<20} expected: {}\n     {:<20} got:      {}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.case,
                c.expected,
                "",
                c.got
            ));
            if !c.passed {
                out.push_str(&format!("     {:<20} why:      {}\n", "", c.why));
            }
        }
        out.push_str(&format!(
            "\n{} of {} cases passed\n",
            self.passed,
            self.cases.len()
        ));
        out
    }
}
