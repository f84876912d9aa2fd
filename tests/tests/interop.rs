//! Interop: an independent JOSE implementation (Python jwcrypto, see
//! `tests/interop/open_envelope.py`) opens envelopes the daemon produced, with
//! only the recipient key and the CA — for an RSA and an EC recipient, whose
//! envelopes share each part's ciphertext (format 2), also for a 32 MiB part.

use std::process::Command;

use ozg_e2e::*;
use ozg_gateway::daemon::Gateway;
use ozg_gateway::tools::client::{self, SubmitRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwcrypto_opens_envelopes_for_rsa_and_ec_recipients() {
    let (_tc, gw) = start(&Options::default()).await;
    let data = b"<antrag><name>Interop-Marker</name></antrag>".to_vec();
    let pdf = b"%PDF-1.7 interop attachment".to_vec();
    let id = submit(&gw, "05315000", &data, ("Anlage 1.pdf", &pdf)).await;
    let status = gw.store.submission(&id).await.unwrap().unwrap();

    let scratch = tempfile::tempdir().unwrap();
    let envelopes = open_both(
        &gw,
        &id,
        &scratch,
        &[(&data, "data"), (&pdf, "Anlage 1.pdf")],
    )
    .await;
    for env in &envelopes {
        if let Err(e) = envelope_schema().validate(env) {
            panic!("envelope does not match schemas/envelope.schema.json: {e}");
        }
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
    let mut ciphertext = env["parts"][0]["jwe"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    // Flip a character in the middle of the ciphertext (the last one may carry only padding bits).
    let mid = ciphertext.len() / 2;
    let flipped = if &ciphertext[mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    ciphertext.replace_range(mid..mid + 1, flipped);
    env["parts"][0]["jwe"]["ciphertext"] = ciphertext.into();
    let env_path = scratch.path().join("tampered.json");
    std::fs::write(&env_path, env.to_string()).unwrap();
    let key = if delivery.target == "dms-demo" {
        "recipient-rsa.key"
    } else {
        "recipient-ec.key"
    };
    let run = jwcrypto(&env_path, key, "seal.pem", None);
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
    let run = jwcrypto(&untampered, key, "portal.pem", None);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr)
            .contains("another certificate than the gateway's seal"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    gw.shutdown().await.unwrap();
}

fn envelope_schema() -> jsonschema::Validator {
    let text = std::fs::read(repo().join("schemas/envelope.schema.json")).unwrap();
    jsonschema::validator_for(&serde_json::from_slice(&text).unwrap()).unwrap()
}

/// Opens submission `id`'s envelopes for `dms-demo` (RSA) and
/// `fachverfahren-demo` (EC) with jwcrypto, checks the written parts are
/// `parts` (content, file name) and that both envelopes carry each part's
/// ciphertext once, the same bytes. Returns both envelopes.
async fn open_both(
    gw: &Gateway,
    id: &str,
    scratch: &tempfile::TempDir,
    parts: &[(&Vec<u8>, &str)],
) -> Vec<serde_json::Value> {
    let status = gw.store.submission(id).await.unwrap().unwrap();
    let mut envelopes = Vec::new();
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
        let run = jwcrypto(&env_path, key, "seal.pem", Some(&out));
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{target}: {}{}",
            stdout,
            String::from_utf8_lossy(&run.stderr)
        );
        let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
        assert_eq!(summary["submission_id"], id);
        let expected_alg = if key.contains("rsa") {
            "RSA-OAEP-256"
        } else {
            "ECDH-ES+A256KW"
        };
        assert_eq!(summary["key_alg"], expected_alg);
        assert_eq!(summary["seal_alg"], "ES256");
        for (bytes, name) in parts {
            assert!(
                std::fs::read(out.join(name)).unwrap() == **bytes,
                "{target}: {name} differs"
            );
        }
        envelopes.push(serde_json::from_slice::<serde_json::Value>(&envelope).unwrap());
    }
    // One ciphertext per part for both targets; each its own wrapped key.
    assert_eq!(envelopes[0]["version"], 2);
    let pairs = envelopes[0]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(envelopes[1]["parts"].as_array().unwrap());
    assert_eq!(pairs.len(), parts.len());
    for (i, (a, b)) in pairs.enumerate() {
        let (a, b) = (&a["jwe"], &b["jwe"]);
        for shared in ["protected", "iv", "ciphertext", "tag"] {
            assert!(
                a[shared].is_string() && a[shared] == b[shared],
                "part {i}: {shared} differs"
            );
        }
        assert_ne!(a["encrypted_key"], b["encrypted_key"]);
    }
    envelopes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwcrypto_opens_a_32_mib_part_shared_by_two_targets() {
    let (tc, gw) = start(&Options {
        max_body: "40MiB",
        ..Options::default()
    })
    .await;
    let data = b"<antrag><name>Interop-Marker</name></antrag>".to_vec();
    // Not compressible, not repeating: what a scan looks like to AES.
    let mut scan = vec![0u8; 32 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for chunk in scan.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let id = submit(&gw, "05315000", &data, ("Bauantrag.pdf", &scan)).await;
    let scratch = tempfile::tempdir().unwrap();
    let envelopes = open_both(
        &gw,
        &id,
        &scratch,
        &[(&data, "data"), (&scan, "Bauantrag.pdf")],
    )
    .await;
    if let Err(e) = envelope_schema().validate(&envelopes[1]) {
        panic!("envelope does not match schemas/envelope.schema.json: {e}");
    }
    // The segment holds the part's ciphertext once: about 4/3 of 32 MiB, not twice that.
    let on_disk: u64 = std::fs::read_dir(tc.data_dir.join("envelopes"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk < (32 << 20) * 3 / 2, "{on_disk} bytes of segments");
    assert!(on_disk > (32 << 20) * 4 / 3, "{on_disk} bytes of segments");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_on_envelope_format_1_gets_compact_parts_of_its_own_beside_the_shared_ones() {
    let drop_dir = tempfile::tempdir().unwrap();
    let (_tc, gw) = start(&Options {
        extra: format!(
            r#"
[targets.compact-demo]
certificate = "{}"
adapter = {{ type = "filedrop", dir = "{}" }}
envelope_version = 1

[[routes]]
leistung = "99115005001000"
destination = "06000000"
targets = ["dms-demo", "fachverfahren-demo", "compact-demo"]
"#,
            demo("recipient-rsa.pem").display(),
            drop_dir.path().display()
        ),
        ..Options::default()
    })
    .await;
    let data = b"<antrag><name>Interop-Marker</name></antrag>".to_vec();
    let pdf = b"%PDF-1.7 interop attachment".to_vec();
    let id = submit(&gw, "06000000", &data, ("Anlage 1.pdf", &pdf)).await;
    let scratch = tempfile::tempdir().unwrap();
    // The two targets on format 2 share the ciphertext ...
    let shared = open_both(
        &gw,
        &id,
        &scratch,
        &[(&data, "data"), (&pdf, "Anlage 1.pdf")],
    )
    .await;
    // ... the one on format 1 has compact JWEs of its own, opened the same way.
    let status = gw.store.submission(&id).await.unwrap().unwrap();
    let delivery = status
        .deliveries
        .iter()
        .find(|d| d.target == "compact-demo")
        .expect("delivery to compact-demo");
    let envelope = gw
        .store
        .envelope(&delivery.message_id)
        .await
        .unwrap()
        .unwrap();
    let env: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(env["version"], 1);
    for (part, other) in env["parts"]
        .as_array()
        .unwrap()
        .iter()
        .zip(shared[0]["parts"].as_array().unwrap())
    {
        let compact = part["jwe"].as_str().expect("a compact JWE");
        assert_eq!(compact.split('.').count(), 5);
        let other = other["jwe"]["ciphertext"].as_str().unwrap();
        assert_ne!(
            compact.split('.').nth(3),
            Some(other),
            "not the shared ciphertext"
        );
    }
    if let Err(e) = envelope_schema().validate(&env) {
        panic!("format 1 envelope does not match the schema: {e}");
    }
    let env_path = scratch.path().join("compact.json");
    std::fs::write(&env_path, &envelope).unwrap();
    let out = scratch.path().join("compact");
    let run = jwcrypto(&env_path, "recipient-rsa.key", "seal.pem", Some(&out));
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(std::fs::read(out.join("Anlage 1.pdf")).unwrap(), pdf);
    gw.shutdown().await.unwrap();
}

/// Submits `data` (XML) with one attachment to Leistung 99115005001000 at
/// `destination` as portal-demo; returns the submission id.
async fn submit(gw: &Gateway, destination: &str, data: &[u8], attachment: (&str, &[u8])) -> String {
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: destination.into(),
        data: data.to_vec(),
        data_media_type: "application/xml".into(),
        attachments: vec![(
            attachment.0.into(),
            "application/pdf".into(),
            attachment.1.to_vec(),
        )],
        ..Default::default()
    };
    let answer = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body["submission_id"].as_str().unwrap().to_owned()
}

/// Runs `open_envelope.py` on `envelope` with recipient key `key` (a demo
/// file), pinning `seal` (a demo file) as the gateway's seal, writing the parts
/// to `out` if given.
fn jwcrypto(
    envelope: &std::path::Path,
    key: &str,
    seal: &str,
    out: Option<&std::path::Path>,
) -> std::process::Output {
    let mut run = Command::new(python());
    run.arg(repo().join("tests/interop/open_envelope.py"))
        .arg(envelope)
        .arg(demo(key))
        .arg(demo("ca.pem"))
        .arg(demo(seal));
    if let Some(out) = out {
        std::fs::create_dir_all(out).unwrap();
        run.arg(out);
    }
    run.output().expect("python3 runs")
}
