//! A destination's encryption key as FIT-Connect publishes it: an RSA
//! (≥ 4096 bits) public JWK for `RSA-OAEP-256` with `key_ops: ["wrapKey"]`,
//! its certificate in `x5c`, and as `kid` its RFC 7638 thumbprint — the `kid`
//! senders' SDKs put in their JWE headers, so both agree.

use base64::Engine as _;
use serde_json::json;

use ozg_adapter_sdk::base64url;

/// The published key.
#[derive(Debug, Clone)]
pub struct DestinationKey {
    pub kid: String,
    pub jwk: serde_json::Value,
}

/// Strips the sign byte DER puts before a high bit.
fn unsigned(b: &[u8]) -> &[u8] {
    let mut b = b;
    while b.len() > 1 && b[0] == 0 {
        b = &b[1..];
    }
    b
}

impl DestinationKey {
    /// From the destination's encryption certificate (DER).
    pub fn from_certificate(der: &[u8]) -> Result<DestinationKey, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let spki = cert.public_key();
        let rsa = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa,
            _ => {
                return Err("the key is not RSA: FIT-Connect destinations use RSA-OAEP-256".into())
            }
        };
        let n = unsigned(rsa.modulus);
        if n.len() * 8 < 4096 {
            return Err(format!(
                "the RSA key has {} bits; FIT-Connect requires at least 4096",
                n.len() * 8
            ));
        }
        let n = base64url::encode(n);
        let e = base64url::encode(unsigned(rsa.exponent));
        // RFC 7638: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = base64url::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref(),
        );
        let jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "key_ops": ["wrapKey"],
            "alg": "RSA-OAEP-256",
            "n": n,
            "e": e,
            "x5c": [base64::engine::general_purpose::STANDARD.encode(der)],
        });
        Ok(DestinationKey { kid, jwk })
    }
}
