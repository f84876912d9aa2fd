//! The privacy key: what keeps the database from confirming guesses about
//! Antragsdaten.
//!
//! A plain hash of a part is a fingerprint anyone can test a guess against: a
//! form with a name and a birth date has few enough values to try them all. So
//! whatever the store keeps about a submission's content is keyed with a secret
//! that lives outside the data directory (`pki.privacy_key`):
//!
//! - the audit record `received` carries each part's HMAC-SHA-256 and the key's
//!   id, never a plain hash; an auditor with the key and a document can still
//!   confirm it (`ozg-gateway audit part-hash`), and the portal's receipt is
//!   matched by its own hash, which reveals nothing;
//! - the `202` answer kept for idempotent replays (it holds the receipt, whose
//!   part hashes are plain, for the portal) is stored encrypted (AES-256-GCM,
//!   the submission id as associated data);
//! - what makes two requests "the same content" for an Idempotency-Key is an
//!   HMAC as well.
//!
//! A copy of the data directory alone therefore confirms nothing. The key file
//! holds one line of 64 hex digits (`openssl rand -hex 32`); lines starting with
//! `#` are comments. Three independent subkeys are derived from it with HKDF.

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::{hkdf, hmac};
use ozg_adapter_sdk::base64url;

/// Marks a stored answer sealed with the privacy key (older rows are plain JSON).
const SEALED_ANSWER: &str = "sealed-v1:";

/// The secret and the subkeys derived from it.
pub struct PrivacyKey {
    part_mac: hmac::Key,
    request_mac: hmac::Key,
    answers: RandomizedNonceKey,
    id: String,
    demo: bool,
}

impl std::fmt::Debug for PrivacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyKey").field("id", &self.id).finish()
    }
}

/// Why a key file or a stored answer could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivacyError {
    #[error("{0}")]
    KeyFile(String),
    #[error("the stored answer cannot be opened with this privacy key (key changed, or the row was altered)")]
    Answer,
}

impl PrivacyKey {
    /// Parses a key file: one line of at least 64 hex digits; `#` lines are comments.
    pub fn from_file_text(text: &[u8]) -> Result<PrivacyKey, PrivacyError> {
        let bad = |why: &str| PrivacyError::KeyFile(why.to_owned());
        let text = std::str::from_utf8(text).map_err(|_| bad("not text"))?;
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let [line] = lines.as_slice() else {
            return Err(bad(
                "expected exactly one line of hex digits besides # comments",
            ));
        };
        let secret = hex::decode(line).map_err(|_| bad("the key line is not hex"))?;
        if secret.len() < 32 {
            return Err(bad(&format!(
                "the key has {} bytes; at least 32 are needed",
                secret.len()
            )));
        }
        if secret.iter().all(|b| *b == secret[0]) {
            return Err(bad("the key is one repeated byte, not a random secret"));
        }
        Ok(Self::from_secret(&secret, text.contains("DEMO ONLY")))
    }

    fn from_secret(secret: &[u8], demo: bool) -> PrivacyKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"ozg-gateway privacy key").extract(secret);
        let sub = |label: &[u8]| {
            let mut out = [0u8; 32];
            prk.expand(&[label], hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(&mut out))
                .expect("32 bytes are within HKDF-SHA256's output length");
            out
        };
        let id_bytes = sub(b"key id");
        PrivacyKey {
            part_mac: hmac::Key::new(hmac::HMAC_SHA256, &sub(b"part mac v1")),
            request_mac: hmac::Key::new(hmac::HMAC_SHA256, &sub(b"request mac v1")),
            answers: RandomizedNonceKey::new(&AES_256_GCM, &sub(b"answer seal v1"))
                .expect("32 bytes are an AES-256 key"),
            id: hex::encode(&digest(&SHA256, &id_bytes).as_ref()[..8]),
            demo,
        }
    }

    /// The text of a new key file: `comment` lines (each gets a `# `), then 32
    /// random bytes as hex.
    pub fn new_file_text(comment: &[&str]) -> Result<String, PrivacyError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| PrivacyError::KeyFile("no random numbers".into()))?;
        let mut text: String = comment.iter().map(|c| format!("# {c}\n")).collect();
        text.push_str(&hex::encode(secret));
        text.push('\n');
        Ok(text)
    }

    /// A short public id of the key (derived, reveals nothing about it): audit
    /// records name it so a rotated key is recognised.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True if the file says DEMO ONLY.
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// HMAC-SHA-256 (hex) of a part's plaintext, as audit records carry it.
    pub fn part_mac(&self, data: &[u8]) -> String {
        hex::encode(hmac::sign(&self.part_mac, data))
    }

    /// [`PrivacyKey::part_mac`] of a part that arrives in pieces:
    /// `update` each, then hex-encode `sign()`.
    pub fn part_mac_context(&self) -> hmac::Context {
        hmac::Context::with_key(&self.part_mac)
    }

    /// HMAC-SHA-256 (hex) of a request's canonical form (for Idempotency-Keys).
    pub fn request_mac(&self, canonical: &[u8]) -> String {
        hex::encode(hmac::sign(&self.request_mac, canonical))
    }

    /// Encrypts the `202` answer for storage, bound to its submission id.
    pub fn seal_answer(&self, submission_id: &str, answer: &str) -> String {
        let mut buf = answer.as_bytes().to_vec();
        let nonce = self
            .answers
            .seal_in_place_append_tag(Aad::from(submission_id.as_bytes()), &mut buf)
            .expect("AES-GCM sealing of an in-memory buffer does not fail");
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        format!("{SEALED_ANSWER}{}", base64url::encode(&out))
    }

    /// The stored answer in clear; plain JSON rows from before the key pass through.
    pub fn open_answer(&self, submission_id: &str, stored: &str) -> Result<String, PrivacyError> {
        let Some(sealed) = stored.strip_prefix(SEALED_ANSWER) else {
            return if stored.starts_with('{') {
                Ok(stored.to_owned())
            } else {
                Err(PrivacyError::Answer)
            };
        };
        let mut raw = base64url::decode(sealed).ok_or(PrivacyError::Answer)?;
        if raw.len() < NONCE_LEN {
            return Err(PrivacyError::Answer);
        }
        let mut body = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).map_err(|_| PrivacyError::Answer)?;
        let plain = self
            .answers
            .open_in_place(nonce, Aad::from(submission_id.as_bytes()), &mut body)
            .map_err(|_| PrivacyError::Answer)?;
        String::from_utf8(plain.to_vec()).map_err(|_| PrivacyError::Answer)
    }
}

#[cfg(test)]
pub(crate) fn test_key() -> PrivacyKey {
    PrivacyKey::from_secret(&[7u8, 1, 2, 3, 4, 5, 6, 8].repeat(4), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "# a comment\n00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

    #[test]
    fn key_files_are_one_hex_line_of_32_bytes_or_more() {
        let k = PrivacyKey::from_file_text(KEY.as_bytes()).unwrap();
        assert!(!k.is_demo());
        assert_eq!(k.id().len(), 16);
        for (text, why) in [
            ("", "exactly one line"),
            ("abcd\nabcd\n", "exactly one line"),
            ("zz".repeat(32).as_str(), "not hex"),
            ("ab".repeat(16).as_str(), "16 bytes"),
            ("00".repeat(32).as_str(), "repeated byte"),
        ] {
            let e = PrivacyKey::from_file_text(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(why), "{text:?}: {e}");
        }
        let fresh = PrivacyKey::new_file_text(&["a new key"]).unwrap();
        assert!(fresh.starts_with("# a new key\n"));
        assert_ne!(fresh, PrivacyKey::new_file_text(&["a new key"]).unwrap());
        assert!(PrivacyKey::from_file_text(fresh.as_bytes()).is_ok());
        let demo = format!("# DEMO ONLY\n{}", &KEY[12..]);
        assert!(PrivacyKey::from_file_text(demo.as_bytes())
            .unwrap()
            .is_demo());
    }

    #[test]
    fn macs_depend_on_the_key_and_are_not_plain_hashes() {
        let a = PrivacyKey::from_file_text(KEY.as_bytes()).unwrap();
        let b = test_key();
        let data = b"Max Mustermann, 01.01.1970";
        assert_eq!(a.part_mac(data), a.part_mac(data));
        assert_ne!(a.part_mac(data), b.part_mac(data));
        assert_ne!(a.part_mac(data), a.request_mac(data), "subkeys differ");
        assert_ne!(
            a.part_mac(data),
            hex::encode(digest(&SHA256, data)),
            "not the plain hash"
        );
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn answers_are_sealed_bound_to_their_submission_and_key() {
        let k = test_key();
        let answer = r#"{"submission_id":"s1","parts":[{"sha512":"ab"}]}"#;
        let sealed = k.seal_answer("s1", answer);
        assert!(sealed.starts_with(SEALED_ANSWER));
        assert!(!sealed.contains("sha512"));
        assert_ne!(sealed, k.seal_answer("s1", answer), "fresh nonce each time");
        assert_eq!(k.open_answer("s1", &sealed).unwrap(), answer);
        assert_eq!(k.open_answer("s2", &sealed), Err(PrivacyError::Answer));
        let other = PrivacyKey::from_file_text(KEY.as_bytes()).unwrap();
        assert_eq!(other.open_answer("s1", &sealed), Err(PrivacyError::Answer));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(k.open_answer("s1", &tampered), Err(PrivacyError::Answer));
        assert_eq!(
            k.open_answer("s1", answer).unwrap(),
            answer,
            "old plain rows"
        );
        assert_eq!(k.open_answer("s1", "garbage"), Err(PrivacyError::Answer));
    }
}
