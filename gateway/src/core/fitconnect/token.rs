//! Access tokens: compact JWTs (HS256) with the client as `sub`, short-lived,
//! signed with a key made at start (a restart ends every token; clients ask
//! for a new one before every call anyway).

use std::time::Duration;

use aws_lc_rs::hmac;
use serde_json::json;

use super::{Client, Role};
use ozg_adapter_sdk::base64url;

pub struct Tokens {
    key: hmac::Key,
    issuer: String,
    lifetime: Duration,
}

const SEND_SCOPE: &str = "send:region:DE";
const SUBSCRIBE_SCOPE: &str =
    "https://schema.fitko.de/fit-connect/oauth/scopes/subscribe-destinations";

fn now() -> i64 {
    crate::model::time::now_ms() / 1000
}

impl Tokens {
    pub fn new(issuer: String, lifetime: Duration) -> Result<Tokens, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| "no randomness")?;
        Ok(Tokens {
            key,
            issuer,
            lifetime,
        })
    }

    /// The issuer (`iss`): the Zustelldienst's public URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A token for `client` and its lifetime.
    pub fn issue(&self, client: &Client) -> (String, Duration) {
        let iat = now();
        let scope = match client.role {
            Role::Sender => SEND_SCOPE,
            Role::Subscriber => SUBSCRIBE_SCOPE,
        };
        let header = base64url::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = json!({
            "iss": self.issuer,
            "sub": client.id,
            "aud": format!("{}/v1", self.issuer),
            "iat": iat,
            "exp": iat + self.lifetime.as_secs() as i64,
            "jti": uuid::Uuid::new_v4().to_string(),
            "scope": scope,
            "token_type": "access",
        });
        let payload = base64url::encode(claims.to_string().as_bytes());
        let input = format!("{header}.{payload}");
        let tag = hmac::sign(&self.key, input.as_bytes());
        (
            format!("{input}.{}", base64url::encode(tag.as_ref())),
            self.lifetime,
        )
    }

    /// The client id of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Option<String> {
        if token.len() > 4096 {
            return None;
        }
        let (input, tag) = token.rsplit_once('.')?;
        let tag = base64url::decode(tag)?;
        hmac::verify(&self.key, input.as_bytes(), &tag).ok()?;
        let (_, payload) = input.split_once('.')?;
        let claims: serde_json::Value =
            serde_json::from_slice(&base64url::decode(payload)?).ok()?;
        let exp = claims.get("exp")?.as_i64()?;
        (exp > now() && claims.get("iss")?.as_str()? == self.issuer)
            .then(|| claims.get("sub")?.as_str().map(str::to_owned))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::routing::PatternSet;

    fn client() -> Client {
        Client {
            id: "c1".into(),
            secret_sha256: [0; 32],
            role: Role::Sender,
            destinations: vec![],
            leistungen: PatternSet(vec![]),
            signing_key: None,
        }
    }

    #[test]
    fn tokens_verify_until_they_expire_and_not_when_altered() {
        let t = Tokens::new("https://gw".into(), Duration::from_secs(60)).unwrap();
        let (token, _) = t.issue(&client());
        assert_eq!(t.verify(&token).as_deref(), Some("c1"));
        let mut bad = token.clone();
        bad.insert(10, 'x');
        assert_eq!(t.verify(&bad), None);
        let other = Tokens::new("https://gw".into(), Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(&token), None, "another key");
        let expired = Tokens::new("https://gw".into(), Duration::ZERO).unwrap();
        let (old, _) = expired.issue(&client());
        assert_eq!(expired.verify(&old), None);
    }
}
