//! RFC 3161 against an independent TSA: `openssl ts -reply` answers the
//! request `timestamp::request` makes, `openssl ts -verify` accepts it, and
//! `timestamp::verify` checks the token — and refuses another message, a
//! changed signature and a TSA outside the anchors.

use std::path::Path;
use std::process::Command;

use ozg_adapter_sdk::timestamp::{self, TimestampError};
use ozg_adapter_sdk::TrustAnchors;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a TSA certificate (EKU timeStamping, critical) under it, and
/// the `openssl ts` config of that TSA, in `dir`.
fn tsa(dir: &Path) {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ca.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=test TSA root",
            "-days",
            "30",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "tsa.key",
            "-subj",
            "/CN=test TSA",
            "-out",
            "tsa.csr",
        ],
    );
    std::fs::write(
        dir.join("tsa.ext"),
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = critical, timeStamping\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "30",
            "-extfile", "tsa.ext", "-out", "tsa.pem",
        ],
    );
    std::fs::write(
        dir.join("tsa.cnf"),
        "[ tsa ]\ndefault_tsa = t\n[ t ]\nserial = ./serial\ncrypto_device = builtin\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256, sha384, sha512\naccuracy = secs:1\nordering = no\ntsa_name = no\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
    )
    .unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
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
