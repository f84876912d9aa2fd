//! RFC 3161 against an independent TSA: `openssl ts -reply` answers the
//! request `timestamp::request` makes, `openssl ts -verify` accepts it, and
//! `timestamp::verify` checks the token — and refuses another message, a
//! changed signature and a TSA outside the anchors.

use std::path::Path;
use std::process::Command;

use ozg_adapter_sdk::timestamp::{self, TimestampError};
use ozg_adapter_sdk::TrustAnchors;

const MAKE_TSA: &str = "../../tests/interop/make_tsa.sh";

/// Runs `program` with `args` in `dir`; it must succeed.
fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(dir, "openssl", args)
}

/// A CA, a TSA certificate (EKU timeStamping, critical) under it and the TSA's `openssl ts` config, made
/// in `dir` by `tests/interop/make_tsa.sh`.
fn tsa(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(MAKE_TSA);
    run(dir, "sh", &[&script.display().to_string(), "."])
}

/// The TSA's answer to `request` (DER).
fn reply(dir: &Path, request: &[u8]) -> Vec<u8> {
    std::fs::write(dir.join("req.tsq"), request).unwrap();
    openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            "req.tsq",
            "-inkey",
            "tsa.key",
            "-signer",
            "tsa.pem",
            "-out",
            "resp.tsr",
        ],
    );
    std::fs::read(dir.join("resp.tsr")).unwrap()
}

#[test]
fn a_token_of_an_independent_tsa_verifies_and_forgeries_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    tsa(dir);
    let checkpoint = b"eyJhbGciOiJFUzI1NiJ9.checkpoint.signature";
    let request = timestamp::request(checkpoint, 0x0102_0304_0506_0708).unwrap();
    let response = reply(dir, &request);
    // openssl agrees the answer fits the request (imprint, nonce, signature, chain).
    openssl(
        dir,
        &[
            "ts",
            "-verify",
            "-in",
            "resp.tsr",
            "-queryfile",
            "req.tsq",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ],
    );

    let token = timestamp::token_of(&response).unwrap();
    let trust = TrustAnchors::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let stamp = timestamp::verify(&token, checkpoint, &trust).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((stamp.time - now).abs() < 120, "{stamp:?}");
    assert!(stamp.tsa.contains("test TSA"), "{stamp:?}");
    assert_eq!(stamp.nonce, Some(0x0102_0304_0506_0708), "{stamp:?}");

    // Another checkpoint.
    assert!(matches!(
        timestamp::verify(&token, b"another checkpoint", &trust),
        Err(TimestampError::ImprintMismatch)
    ));
    // A changed last byte (the signature's).
    let mut forged = token.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(timestamp::verify(&forged, checkpoint, &trust).is_err());
    // A TSA not under the anchors.
    let other = TrustAnchors::from_pem(
        &std::fs::read(format!(
            "{}/../../certs-example/ca.pem",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        timestamp::verify(&token, checkpoint, &other),
        Err(TimestampError::Untrusted(_))
    ));
}

#[test]
fn a_refusal_of_the_tsa_is_named() {
    // A TimeStampResp with status rejection (2) and no token.
    let refused = [0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02];
    assert!(matches!(
        timestamp::token_of(&refused),
        Err(TimestampError::NotGranted(2))
    ));
    assert!(timestamp::token_of(b"not DER").is_err());
}
