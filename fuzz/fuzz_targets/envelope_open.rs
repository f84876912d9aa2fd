//! What a recipient runs on an envelope it received: parse, decrypt, verify.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ozg_adapter_sdk::{open, Envelope, RecipientPrivateKey, TrustAnchors};

fn keys() -> &'static (RecipientPrivateKey, RecipientPrivateKey, TrustAnchors) {
    static K: OnceLock<(RecipientPrivateKey, RecipientPrivateKey, TrustAnchors)> = OnceLock::new();
    K.get_or_init(|| {
        (
            RecipientPrivateKey::from_pem(include_bytes!("../../certs-example/recipient-ec.key"), None).unwrap(),
            RecipientPrivateKey::from_pem(include_bytes!("../../certs-example/recipient-rsa.key"), None).unwrap(),
            TrustAnchors::from_pem(include_bytes!("../../certs-example/ca.pem")).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (ec, rsa, trust) = keys();
    if let Ok(env) = serde_json::from_slice::<Envelope>(data) {
        let _ = open(&env, ec, trust, std::time::SystemTime::now());
        let _ = open(&env, rsa, trust, std::time::SystemTime::now());
    }
});
