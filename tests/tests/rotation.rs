//! Key rotation. A target lists two certificates, the second taking
//! over a few seconds after the start. Envelopes before the switch are for
//! the old key, after it for the new one (each opens with its own key and
//! not with the other); the switch is audited with both `kid`s; the expiry
//! metric the shipped alert watches moves from the old certificate (expiring
//! within the alert's 30 days, so the alert fires) to the new one. The same
//! for the gateway's seal (`pki.seals`): receipts and checkpoints before the
//! switch are signed with the old seal, after it with the new one.

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

/// A certificate of `ca` (EC P-256) valid from `from` until `until`, with its
/// key, written to `dir` as `name`.pem and `name`.key.
fn issue(
    ca: &DemoCa,
    dir: &Path,
    name: &str,
    usage: Usage,
    from: time::OffsetDateTime,
    until: time::OffsetDateTime,
) -> Key {
    let issued = ca
        .issue_between(name, usage, Algorithm::EcP256, from, until)
        .unwrap();
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

/// Submits for `leistung`; the answer's body.
async fn submit_for(gw: &ozg_gateway::daemon::Gateway, leistung: &str) -> serde_json::Value {
    let req = SubmitRequest {
        leistung: leistung.into(),
        destination: "05315000".into(),
        data: b"<antrag><hinweis>rotation</hinweis></antrag>".to_vec(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    };
    let answer = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body
}

/// Submits to the rotating target; its envelope.
async fn submit(gw: &ozg_gateway::daemon::Gateway) -> Vec<u8> {
    let answer = submit_for(gw, "99999999999999").await;
    let id = answer["submission_id"].as_str().unwrap();
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

/// `ozg-gateway open` holding `keys`: whether it opened.
fn opens_with(envelope: &[u8], keys: &[&Key], trust: &Path, dir: &Path) -> (bool, String) {
    let path = dir.join(format!("env-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, envelope).unwrap();
    let mut c = Command::new(BIN);
    c.arg("open").arg(&path);
    for k in keys {
        c.arg("--key").arg(&k.key).arg("--cert").arg(&k.cert);
    }
    let out = c
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

/// `ozg-gateway open` with `key` alone.
fn opens(envelope: &[u8], key: &Key, trust: &Path, dir: &Path) -> (bool, String) {
    opens_with(envelope, &[key], trust, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_follow_the_key_in_use_and_the_switch_is_audited_and_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, trust) = test_ca(dir.path());
    let now = time::OffsetDateTime::now_utc();
    // The old key expires in 10 days: within the alert's 30.
    let old = issue(
        &ca,
        dir.path(),
        "recipient 2026",
        Usage::Recipient,
        now - time::Duration::days(300),
        now + time::Duration::days(10),
    );
    let new = issue(
        &ca,
        dir.path(),
        "recipient 2027",
        Usage::Recipient,
        now - time::Duration::hours(1),
        now + time::Duration::days(365),
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
    // The envelope made before the switch still opens with the old key; a
    // receiver holding both keys opens either.
    assert!(opens(&before, &old, &trust, dir.path()).0);
    for env in [&before, &after] {
        let (opened, said) = opens_with(env, &[&old, &new], &trust, dir.path());
        assert!(opened, "{said}");
    }
    gw.shutdown().await.unwrap();
}

/// A certificate valid from two days on, for a year.
fn valid_later(ca: &DemoCa, dir: &Path, usage: Usage) -> Key {
    let now = time::OffsetDateTime::now_utc();
    issue(
        ca,
        dir,
        "later",
        usage,
        now + time::Duration::days(2),
        now + time::Duration::days(365),
    )
}

#[test]
fn a_target_must_have_a_certificate_in_use_now() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, trust) = test_ca(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let later = valid_later(&ca, dir.path(), Usage::Recipient);
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

/// The SHA-256 thumbprint of the leaf certificate in a JWS's `x5c`: which
/// seal signed it.
fn signer(jws: &str) -> String {
    use base64::Engine;
    let header = jws.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&ozg_adapter_sdk::base64url::decode(header).unwrap()).unwrap();
    let leaf = base64::engine::general_purpose::STANDARD
        .decode(header["x5c"][0].as_str().unwrap())
        .unwrap();
    ozg_adapter_sdk::keys::Certificate::from_der(leaf.into())
        .unwrap()
        .thumbprint()
}

/// One entry of `pki.seals`.
fn seal_entry(k: &Key, from: Option<&str>) -> String {
    let from = from.map_or(String::new(), |f| format!(", from = \"{f}\""));
    format!(
        "{{ certificate = \"{}\", key = \"{}\"{from} }}",
        k.cert.display(),
        k.key.display()
    )
}

/// `ozg-gateway receipt verify` pinning the seal certificates `seals`.
fn receipt_verifies(receipt: &str, trust: &Path, seals: &[&Path], dir: &Path) -> bool {
    let path = dir.join(format!("receipt-{}.jws", uuid::Uuid::new_v4()));
    std::fs::write(&path, receipt).unwrap();
    let mut c = Command::new(BIN);
    c.args(["receipt", "verify"])
        .arg(&path)
        .arg("--trust")
        .arg(trust);
    for s in seals {
        c.arg("--seal").arg(s);
    }
    c.output().unwrap().status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seal_switches_at_its_time_and_every_signature_verifies_with_its_own_seal() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, trust) = test_ca(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let seal = |name: &str, until: time::Duration| {
        let from = now - time::Duration::days(300);
        issue(&ca, dir.path(), name, Usage::Seal, from, now + until)
    };
    // The old seal expires in 10 days: within the alert's 30.
    let (old, new) = (
        seal("seal 2026", time::Duration::days(10)),
        seal("seal 2027", time::Duration::days(365)),
    );
    let switch_at = now + time::Duration::seconds(5);
    let from = switch_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let seals = |list: &[(&Key, Option<&str>)]| {
        let entries: Vec<String> = list.iter().map(|(k, from)| seal_entry(k, *from)).collect();
        format!("[{}]", entries.join(", "))
    };
    let o = Options {
        trust_anchors: Some(trust.clone()),
        seals: Some(seals(&[(&old, None), (&new, Some(&from))])),
        extra: "[audit]\ncheckpoint_interval = \"1s\"\n".into(),
        ..Options::default()
    };
    let (code, said) = config_check(BIN, &o);
    assert_eq!(code, Some(0), "{said}");
    let line = said
        .lines()
        .find(|l| l.starts_with("scheduled: the seal switches to"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        line.contains("seal 2027") && line.contains(&new.kid),
        "{line}"
    );
    let (tc, gw) = start(&o).await;
    let label = "ozg_certificate_not_after_seconds{certificate=\"seal\"}";
    assert_eq!(metric(gw.admin_addr, label).await as i64, old.not_after);
    // The start names the seal in use (a switch while the daemon was down
    // shows here).
    let started = audit_records(&gw, "started").await;
    assert_eq!(
        started[0]["detail"]["seal_kid"],
        old.kid.as_str(),
        "{started:?}"
    );

    let submit = || async {
        let answer = submit_for(&gw, "99115005001000").await;
        answer["receipt"].as_str().unwrap().to_owned()
    };
    let before = submit().await;
    assert_eq!(signer(&before), old.kid);
    assert!(receipt_verifies(&before, &trust, &[&old.cert], dir.path()));
    assert!(!receipt_verifies(&before, &trust, &[&new.cert], dir.path()));
    // A checkpoint signed with the old seal.
    eventually(Duration::from_secs(10), "a checkpoint", || async {
        let conn = rusqlite::Connection::open(tc.data_dir.join("gateway.db")).unwrap();
        let n: i64 = conn
            .query_row("SELECT COUNT(*) FROM audit_checkpoints", [], |r| r.get(0))
            .unwrap();
        (n > 0).then_some(())
    })
    .await;

    let switched = eventually(Duration::from_secs(20), "the seal switch", || async {
        audit_records(&gw, "seal_switched").await.into_iter().next()
    })
    .await;
    assert!(time::OffsetDateTime::now_utc() >= switch_at);
    assert_eq!(
        switched["detail"]["from_kid"],
        old.kid.as_str(),
        "{switched}"
    );
    assert_eq!(switched["detail"]["to_kid"], new.kid.as_str(), "{switched}");
    assert_eq!(metric(gw.admin_addr, label).await as i64, new.not_after);

    let after = submit().await;
    assert_eq!(signer(&after), new.kid);
    assert!(receipt_verifies(&after, &trust, &[&new.cert], dir.path()));
    assert!(!receipt_verifies(&after, &trust, &[&old.cert], dir.path()));
    gw.shutdown().await.unwrap();

    // Checkpoints of both seals; `audit verify` accepts both (both listed
    // in pki.seals) and refuses the log when the old one is not listed.
    let conn = rusqlite::Connection::open(tc.data_dir.join("gateway.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT jws FROM audit_checkpoints ORDER BY seq")
        .unwrap();
    let signers: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|jws| signer(&jws.unwrap()))
        .collect();
    assert_eq!(signers.first(), Some(&old.kid), "{signers:?}");
    assert_eq!(signers.last(), Some(&new.kid), "{signers:?}");
    let verify = |config: &Path| audit_verify(BIN, config, None);
    let (code, said) = verify(&tc.path);
    assert_eq!(code, Some(0), "{said}");
    let only_new = dir.path().join("only-new.toml");
    let text = std::fs::read_to_string(&tc.path).unwrap().replace(
        &seals(&[(&old, None), (&new, Some(&from))]),
        &seals(&[(&new, None)]),
    );
    std::fs::write(&only_new, text).unwrap();
    let (code, said) = verify(&only_new);
    assert_eq!(code, Some(4), "{said}");
}

#[test]
fn config_check_refuses_a_seal_rotation_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, trust) = test_ca(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let later = valid_later(&ca, dir.path(), Usage::Seal);
    let check = |seals: Option<String>, extra: &str| {
        config_check(
            BIN,
            &Options {
                trust_anchors: Some(trust.clone()),
                seals,
                pki_extra: extra.into(),
                ..Options::default()
            },
        )
    };
    let entry = |k: &Key, from: &str| seal_entry(k, (!from.is_empty()).then_some(from));
    // None in use now.
    let (code, said) = check(Some(format!("[{}]", entry(&later, ""))), "");
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("none of the seals is in use now"), "{said}");
    // Both forms at once (the template writes seal_certificate, seal_key).
    let both = format!("seals = [{}]\n", entry(&later, ""));
    let (code, said) = check(None, &both);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("both seal_certificate/seal_key and seals"),
        "{said}"
    );
    // A key that is not the certificate's.
    let wrong = Key {
        key: demo("seal.key"),
        ..issue(
            &ca,
            dir.path(),
            "seal other",
            Usage::Seal,
            now - time::Duration::days(1),
            now + time::Duration::days(365),
        )
    };
    let (code, said) = check(Some(format!("[{}]", entry(&wrong, ""))), "");
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("`pki.seals[0].key`"), "{said}");
    // Taking over after its notAfter: never used.
    let (code, said) = check(
        Some(format!(
            "[{}, {}]",
            entry(&wrong, ""),
            entry(&later, "2099-01-01T00:00:00Z")
        )),
        "",
    );
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("would never be used"), "{said}");
}

#[test]
fn an_expired_seal_may_stay_listed_without_its_key_and_a_gap_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, trust) = test_ca(dir.path());
    let now = time::OffsetDateTime::now_utc();
    let days = time::Duration::days;
    let issue = |name: &str, from, until| issue(&ca, dir.path(), name, Usage::Seal, from, until);
    let expired = issue("seal 2025", now - days(400), now - days(1));
    std::fs::remove_file(&expired.key).unwrap();
    let current = issue("seal 2026", now - days(30), now + days(10));
    let next = issue("seal 2027", now - days(1), now + days(400));
    let from = (now + days(20))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let seals = format!(
        "[{}, {}, {}]",
        seal_entry(&expired, None),
        seal_entry(&current, None),
        seal_entry(&next, Some(&from))
    );
    let (code, said) = config_check(
        BIN,
        &Options {
            trust_anchors: Some(trust),
            seals: Some(seals),
            ..Options::default()
        },
    );
    assert_eq!(code, Some(0), "{said}");
    let warning = said
        .lines()
        .find(|l| l.contains("pki.seals: the seal"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        warning.contains("seal 2026")
            && warning.contains("before")
            && warning.contains("seal 2027"),
        "{warning}"
    );
}
