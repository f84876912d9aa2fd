//! FIT-Connect callbacks: the Zustelldienst tells a subscriber about new
//! submissions with a POST signed by HMAC-SHA-512 over `<timestamp>.<body>`
//! (header `callback-authentication`, hex; `callback-timestamp`, Unix
//! seconds). The receiver checks it in constant time and refuses timestamps
//! more than five minutes off.

use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::json;

/// How far a callback's timestamp may be from now.
pub const WINDOW_SECS: i64 = 300;

fn key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA512, secret.as_bytes())
}

/// The `callback-authentication` value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(&key(secret));
    ctx.update(format!("{timestamp}.").as_bytes());
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

/// Whether a received callback is authentic and fresh.
pub fn verify(secret: &str, timestamp: &str, authentication: &str, body: &[u8], now: i64) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if (now - ts).abs() > WINDOW_SECS {
        return false;
    }
    let Ok(tag) = hex::decode(authentication.trim()) else {
        return false;
    };
    let mut msg = format!("{ts}.").into_bytes();
    msg.extend_from_slice(body);
    hmac::verify(&key(secret), &msg, &tag).is_ok()
}

/// A destination's callback: where, with what secret, over which client.
pub struct Callback {
    pub url: String,
    pub secret: String,
    pub client: reqwest::Client,
}

impl Callback {
    /// Tells the subscriber about a new submission; three tries, then it
    /// polls anyway. Logged, never failing the submission.
    pub async fn new_submission(&self, destination: &str, submission: &str, case: &str) {
        let body = json!({
            "type": "https://schema.fitko.de/fit-connect/submission-api/callbacks/new-submissions",
            "submissionIds": [submission],
            "submissions": [{"destinationId": destination, "submissionId": submission, "caseId": case}],
        })
        .to_string();
        let mut wait = Duration::from_millis(500);
        for attempt in 1..=3 {
            let ts = crate::model::time::now_ms() / 1000;
            let sent = self
                .client
                .post(&self.url)
                .header("content-type", "application/json")
                .header("callback-timestamp", ts.to_string())
                .header(
                    "callback-authentication",
                    sign(&self.secret, ts, body.as_bytes()),
                )
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => tracing::warn!(
                    destination,
                    attempt,
                    status = r.status().as_u16(),
                    "FIT-Connect callback refused"
                ),
                Err(e) => {
                    tracing::warn!(destination, attempt, error = %e, "FIT-Connect callback failed")
                }
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_verifies_only_unchanged_and_in_time() {
        let body = br#"{"type":"x"}"#;
        let tag = sign("s3cret", 1000, body);
        assert!(verify("s3cret", "1000", &tag, body, 1100));
        assert!(!verify("s3cret", "1000", &tag, b"{}", 1100), "body changed");
        assert!(!verify("other", "1000", &tag, body, 1100), "another secret");
        assert!(
            !verify("s3cret", "1001", &tag, body, 1100),
            "timestamp changed"
        );
        assert!(
            !verify("s3cret", "1000", &tag, body, 1000 + WINDOW_SECS + 1),
            "too old"
        );
        assert!(!verify("s3cret", "x", &tag, body, 1000));
    }
}
