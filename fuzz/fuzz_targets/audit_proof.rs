//! What a receiver or an auditor runs on an inclusion proof someone handed them:
//! parse, verify every checkpoint JWS (x5c certificates, signature) and path.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ozg_adapter_sdk::audit_proof::{verify, ProofDocument};
use ozg_adapter_sdk::{SealPins, TrustAnchors};

fn keys() -> &'static (TrustAnchors, SealPins) {
    static K: OnceLock<(TrustAnchors, SealPins)> = OnceLock::new();
    K.get_or_init(|| {
        (
            TrustAnchors::from_pem(include_bytes!("../../certs-example/ca.pem")).unwrap(),
            SealPins::from_pem(include_bytes!("../../certs-example/seal.pem")).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let (trust, seals) = keys();
    if let Ok(doc) = serde_json::from_slice::<ProofDocument>(data) {
        let _ = verify(&doc, trust, seals, std::time::SystemTime::now());
    }
});
