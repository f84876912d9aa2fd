//! Recipient key rotation: a target lists two certificates, the second taking
//! over a few seconds after the start. Envelopes before the switch are for
//! the old key, after it for the new one (each opens with its own key and
//! not with the other); the switch is audited with both `kid`s; the expiry
//! metric the shipped alert watches moves from the old certificate (expiring
//! within the alert's 30 days, so the alert fires) to the new one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};
use ozg_gateway::tools::demo_pki::{Algorithm, DemoCa, Usage};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

struct Key {
    cert: PathBuf,
    key: PathBuf,
    kid: String,
    not_after: i64,
}

fn write(dir: &Path, name: &str, issued: &ozg_gateway::tools::demo_pki::Issued) -> Key {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    let parsed = ozg_adapter_sdk::keys::Certificate::from_pem(issued.cert_pem.as_bytes()).unwrap();
    Key {
        cert,
        key,
        kid: parsed.thumbprint(),
        not_after: parsed.not_after(),
    }
}

/// A CA of the test's own and a trust anchor file with it and the demo CA
/// (which issues the demo seal).
fn test_ca(dir: &Path) -> (DemoCa, PathBuf) {
    let ca = DemoCa::generate("rotation test CA", 1).unwrap();
    let trust = dir.join("trust.pem");
    std::fs::write(
        &trust,
        std::fs::read_to_string(demo("ca.pem")).unwrap() + &ca.cert_pem(),
    )
    .unwrap();
    (ca, trust)
}

/// Submits to the rotating target; its envelope.
async fn submit(gw: &ozg_gateway::daemon::Gateway) -> Vec<u8> {
    let req = SubmitRequest {
        leistung: "99999999999999".into(),
        destination: "05315000".into(),
        data: b"<antrag><hinweis>rotation</hinweis></antrag>".to_vec(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    };
    let answer = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["submission_id"].as_str().unwrap();
    let status = gw.store.submission(id).await.unwrap().unwrap();
    let d = &status.deliveries[0];
    assert_eq!(d.target, "rotating");
    gw.store.envelope(&d.message_id).await.unwrap().unwrap()
}

/// The `kid` the envelope's manifest is encrypted for.
fn kid(envelope: &[u8]) -> String {
    let env: serde_json::Value = serde_json::from_slice(envelope).unwrap();
    let header = env["manifest"].as_str().unwrap().split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&ozg_adapter_sdk::base64url::decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// `ozg-gateway open` with `key`: whether it opened.
fn opens(envelope: &[u8], key: &Key, trust: &Path, dir: &Path) -> (bool, String) {
    let path = dir.join(format!("env-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, envelope).unwrap();
    let out = Command::new(BIN)
        .arg("open")
        .arg(&path)
        .arg("--key")
        .arg(&key.key)
        .arg("--cert")
        .arg(&key.cert)
        .arg("--trust")
        .arg(trust)
        .arg("--seal")
        .arg(demo("seal.pem"))
        .arg("--out")
        .arg(dir.join(format!("out-{}", uuid::Uuid::new_v4())))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_follow_the_key_in_use_and_the_switch_is_audited_and_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, trust) = test_ca(dir.path());
    let now = time::OffsetDateTime::now_utc();
    // The old key expires in 10 days: within the alert's 30.
    let old = write(
        dir.path(),
        "old",
        &ca.issue_between(
            "recipient 2026",
            Usage::Recipient,
            Algorithm::EcP256,
            now - time::Duration::days(300),
            now + time::Duration::days(10),
        )
        .unwrap(),
    );
    let new = write(
        dir.path(),
        "new",
        &ca.issue_between(
            "recipient 2027",
            Usage::Recipient,
            Algorithm::EcP256,
            now - time::Duration::hours(1),
            now + time::Duration::days(365),
        )
        .unwrap(),
    );
    let switch_at = now + time::Duration::seconds(5);
    let from = switch_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let o = Options {
        trust_anchors: Some(trust.clone()),
        extra: format!(
            "[targets.rotating]\ncertificates = [{{ file = \"{}\" }}, {{ file = \"{}\", from = \"{from}\" }}]\nadapter = {{ type = \"filedrop\", dir = \"{}\" }}\n\n[[routes]]\nleistung = \"99999999999999\"\ntargets = [\"rotating\"]\n",
            old.cert.display(),
            new.cert.display(),
            dir.path().join("drop").display()
        ),
        ..Options::default()
    };
    let (_tc, gw) = start(&o).await;
    let label = "ozg_certificate_not_after_seconds{certificate=\"target:rotating\"}";
    assert_eq!(metric(gw.admin_addr, label).await as i64, old.not_after);

    let before = submit(&gw).await;
    assert_eq!(kid(&before), old.kid);
    assert!(opens(&before, &old, &trust, dir.path()).0);
    let (opened, said) = opens(&before, &new, &trust, dir.path());
    assert!(!opened, "the new key opened an envelope for the old one");
    assert!(
        said.contains("another recipient") || said.contains("not for this recipient"),
        "{said}"
    );

    let switched = eventually(Duration::from_secs(20), "the key switch", || async {
        let records = audit_records(&gw, "key_switched").await;
        records.into_iter().next()
    })
    .await;
    assert!(time::OffsetDateTime::now_utc() >= switch_at);
    assert_eq!(switched["detail"]["target"], "rotating", "{switched}");
    assert_eq!(
        switched["detail"]["from_kid"],
        old.kid.as_str(),
        "{switched}"
    );
    assert_eq!(switched["detail"]["to_kid"], new.kid.as_str(), "{switched}");
    assert_eq!(metric(gw.admin_addr, label).await as i64, new.not_after);

    let after = submit(&gw).await;
    assert_eq!(kid(&after), new.kid);
    assert!(opens(&after, &new, &trust, dir.path()).0);
    assert!(!opens(&after, &old, &trust, dir.path()).0);
    // The envelope made before the switch still opens with the old key.
    assert!(opens(&before, &old, &trust, dir.path()).0);
    gw.shutdown().await.unwrap();
}

#[test]
fn a_target_must_have_a_certificate_in_use_now() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, trust) = test_ca(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let later = write(
        dir.path(),
        "later",
        &ca.issue_between(
            "recipient later",
            Usage::Recipient,
            Algorithm::EcP256,
            now + time::Duration::days(2),
            now + time::Duration::days(365),
        )
        .unwrap(),
    );
    let check = |target: String| {
        config_check(
            BIN,
            &Options {
                trust_anchors: Some(trust.clone()),
                extra: target,
                ..Options::default()
            },
        )
    };
    // A single certificate must be valid now.
    let (code, said) = check(format!(
        "[targets.t]\ncertificates = [{{ file = \"{}\" }}]\nadapter = {{ type = \"filedrop\", dir = \"/tmp\" }}\n",
        later.cert.display()
    ));
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("not valid before"), "{said}");
    // Two that both take over later: none in use now.
    let from = (now + time::Duration::days(5))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (code, said) = check(format!(
        "[targets.t]\ncertificates = [{{ file = \"{0}\" }}, {{ file = \"{0}\", from = \"{from}\" }}]\nadapter = {{ type = \"filedrop\", dir = \"/tmp\" }}\n",
        later.cert.display()
    ));
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("none of the target's certificates is in use now"),
        "{said}"
    );
    // Both forms at once.
    let (code, said) = check(format!(
        "[targets.t]\ncertificate = \"{0}\"\ncertificates = [{{ file = \"{0}\" }}]\nadapter = {{ type = \"filedrop\", dir = \"/tmp\" }}\n",
        later.cert.display()
    ));
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("not both"), "{said}");
    // Taking over after its own notAfter: never used.
    let (code, said) = check(format!(
        "[targets.t]\ncertificates = [{{ file = \"{0}\" }}, {{ file = \"{0}\", from = \"2099-01-01T00:00:00Z\" }}]\nadapter = {{ type = \"filedrop\", dir = \"/tmp\" }}\n",
        later.cert.display()
    ));
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("would never be used"), "{said}");
}
