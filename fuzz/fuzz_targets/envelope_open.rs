//! What a recipient runs on an envelope it received: parse, decrypt, verify.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ozg_adapter_sdk::{open, Envelope, RecipientPrivateKey, SealPins, TrustAnchors};

type Keys = (RecipientPrivateKey, RecipientPrivateKey, TrustAnchors, SealPins);

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        (
            RecipientPrivateKey::from_pem(include_bytes!("../../certs-example/recipient-ec.key"), None).unwrap(),
            RecipientPrivateKey::from_pem(include_bytes!("../../certs-example/recipient-rsa.key"), None).unwrap(),
            TrustAnchors::from_pem(include_bytes!("../../certs-example/ca.pem")).unwrap(),
            SealPins::from_pem(include_bytes!("../../certs-example/seal.pem")).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (ec, rsa, trust, seals) = keys();
    if let Ok(env) = serde_json::from_slice::<Envelope>(data) {
        let _ = open(&env, ec, trust, seals, std::time::SystemTime::now());
        let _ = open(&env, rsa, trust, seals, std::time::SystemTime::now());
    }
});
