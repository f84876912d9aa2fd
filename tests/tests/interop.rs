//! Interop: an independent JOSE implementation (Python jwcrypto, see
//! `tests/interop/open_envelope.py`) opens envelopes the daemon produced, with
//! only the recipient key and the CA — for an RSA and an EC recipient.

use std::process::Command;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwcrypto_opens_envelopes_for_rsa_and_ec_recipients() {
    let (_tc, gw) = start(&Options::default()).await;
    let portal = portal_client("portal");
    let data = b"<antrag><name>Interop-Marker</name></antrag>".to_vec();
    let pdf = b"%PDF-1.7 interop attachment".to_vec();
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: data.clone(),
        data_media_type: "application/xml".into(),
        attachments: vec![("Anlage 1.pdf".into(), "application/pdf".into(), pdf.clone())],
        ..Default::default()
    };
    let answer = client::submit(&portal, &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["submission_id"].as_str().unwrap().to_owned();
    let status = gw.store.submission(&id).await.unwrap().unwrap();

    let scratch = tempfile::tempdir().unwrap();
    for (target, key) in [
        ("dms-demo", "recipient-rsa.key"),
        ("fachverfahren-demo", "recipient-ec.key"),
    ] {
        let delivery = status
            .deliveries
            .iter()
            .find(|d| d.target == target)
            .expect("delivery");
        let envelope = gw
            .store
            .envelope(&delivery.message_id)
            .await
            .unwrap()
            .expect("envelope");
        let env_path = scratch.path().join(format!("{target}.json"));
        std::fs::write(&env_path, &envelope).unwrap();
        let out = scratch.path().join(target);
        std::fs::create_dir_all(&out).unwrap();
        let run = Command::new(python())
            .arg(repo().join("tests/interop/open_envelope.py"))
            .arg(&env_path)
            .arg(demo(key))
            .arg(demo("ca.pem"))
            .arg(demo("seal.pem"))
            .arg(&out)
            .output()
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{target}: {}{}",
            stdout,
            String::from_utf8_lossy(&run.stderr)
        );
        let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
        assert_eq!(summary["submission_id"], id.as_str());
        let expected_alg = if key.contains("rsa") {
            "RSA-OAEP-256"
        } else {
            "ECDH-ES+A256KW"
        };
        assert_eq!(summary["key_alg"], expected_alg);
        assert_eq!(summary["seal_alg"], "ES256");
        assert_eq!(std::fs::read(out.join("data")).unwrap(), data);
        assert_eq!(std::fs::read(out.join("Anlage 1.pdf")).unwrap(), pdf);
    }

    // A tampered part is caught by the independent implementation too.
    let delivery = &status.deliveries[0];
    let mut env: serde_json::Value = serde_json::from_slice(
        &gw.store
            .envelope(&delivery.message_id)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let jwe = env["parts"][0]["jwe"].as_str().unwrap().to_owned();
    let mut pieces: Vec<String> = jwe.split('.').map(str::to_owned).collect();
    // Flip a character in the middle of the ciphertext (the last one may carry only padding bits).
    let mid = pieces[3].len() / 2;
    let flipped = if &pieces[3][mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    pieces[3].replace_range(mid..mid + 1, flipped);
    env["parts"][0]["jwe"] = pieces.join(".").into();
    let env_path = scratch.path().join("tampered.json");
    std::fs::write(&env_path, env.to_string()).unwrap();
    let key = if delivery.target == "dms-demo" {
        "recipient-rsa.key"
    } else {
        "recipient-ec.key"
    };
    let run = Command::new(python())
        .arg(repo().join("tests/interop/open_envelope.py"))
        .arg(&env_path)
        .arg(demo(key))
        .arg(demo("ca.pem"))
        .arg(demo("seal.pem"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("part data"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // A recipient that pins another certificate as the gateway's seal refuses it.
    let untampered = scratch.path().join("untampered.json");
    std::fs::write(
        &untampered,
        gw.store
            .envelope(&delivery.message_id)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    let run = Command::new(python())
        .arg(repo().join("tests/interop/open_envelope.py"))
        .arg(&untampered)
        .arg(demo(key))
        .arg(demo("ca.pem"))
        .arg(demo("portal.pem"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("another certificate than the gateway's seal"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    gw.shutdown().await.unwrap();
}
