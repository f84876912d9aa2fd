//! The audit log: the Laufzettel of a submission, and `audit verify` catching
//! every kind of tampering on copies of a real log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
const MARKER: &str = "AUDIT-MARKER-Erika-Mustermann";
const FILE_NAME: &str = "Geheimer-Dateiname.pdf";

/// Runs the daemon for a few submissions, stops it (a final checkpoint is signed)
/// and returns its config and the submission ids.
async fn a_real_log() -> (TestConfig, Vec<String>, Receiver) {
    let (receiver, tc, gw) = start_with_receiver(Mode::Accept).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let req = SubmitRequest {
            leistung: "99115005001000".into(),
            destination: "05315000".into(),
            data: format!("<antrag><name>{MARKER}</name><n>{n}</n></antrag>").into_bytes(),
            data_media_type: "application/xml".into(),
            attachments: vec![(
                FILE_NAME.into(),
                "application/pdf".into(),
                b"%PDF-1.7".to_vec(),
            )],
            ..Default::default()
        };
        let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
            .await
            .unwrap();
        assert_eq!(a.status, 202);
        ids.push(a.body["submission_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        eventually(Duration::from_secs(10), "both delivered", || async {
            states(&gw, id)
                .await
                .values()
                .all(|s| s == "delivered")
                .then_some(())
        })
        .await;
    }
    // The portal reads its Laufzettel; another portal does not.
    let url = format!(
        "{}/v1/submissions/{}/trace",
        base_url(gw.ingest_addr),
        ids[0]
    );
    let own = client::status(&portal_client("portal"), &url)
        .await
        .unwrap();
    assert_eq!(own.status, 200, "{}", own.body);
    let events: Vec<&str> = own.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(&events[..2], ["received", "sealed"]);
    assert_eq!(
        events.iter().filter(|e| **e == "delivered").count(),
        2,
        "{events:?}"
    );
    assert_eq!(
        client::status(&portal_client("portal2"), &url)
            .await
            .unwrap()
            .status,
        404
    );
    // No checkpoint covers the records yet: the proof lists them as not yet covered.
    let proof_url = url.replace("/trace", "/proof");
    let proof = client::status(&portal_client("portal"), &proof_url)
        .await
        .unwrap();
    assert_eq!(proof.status, 200, "{}", proof.body);
    assert_eq!(
        proof.body["not_yet_covered"].as_array().map(Vec::len),
        Some(events.len()),
        "{}",
        proof.body
    );
    assert_eq!(proof.body["records"], serde_json::json!([]));
    assert_eq!(
        client::status(&portal_client("portal2"), &proof_url)
            .await
            .unwrap()
            .status,
        404
    );
    gw.shutdown().await.unwrap();
    (tc, ids, receiver)
}

fn verify(config: &Path, data_dir: &Path) -> (bool, String) {
    let (code, text) = audit_verify(BIN, config, Some(data_dir));
    (code == Some(0), text)
}

/// A copy of the data directory with `sql` applied to it.
fn tampered(tc: &TestConfig, name: &str, sql: &str) -> PathBuf {
    data_dir_copy_with(tc, name, sql)
}

fn last_checkpoint(tc: &TestConfig) -> u64 {
    let conn = rusqlite::Connection::open(tc.data_dir.join("gateway.db")).unwrap();
    conn.query_row("SELECT MAX(seq) FROM audit_checkpoints", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_every_kind_of_tampering_and_names_the_first_bad_record() {
    let (tc, ids, _rx) = a_real_log().await;
    let (ok, text) = verify(&tc.path, &tc.data_dir);
    assert!(ok, "{text}");
    assert!(text.starts_with("OK: "), "{text}");
    let cp = last_checkpoint(&tc);
    assert!(cp >= 10, "the final checkpoint covers the log: {cp}");

    // No personal data, no file names in the audit log.
    let conn = rusqlite::Connection::open(tc.data_dir.join("gateway.db")).unwrap();
    let all: Vec<String> = conn
        .prepare("SELECT record FROM audit")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let joined = all.join("\n");
    assert!(
        !joined.contains(MARKER) && !joined.contains(FILE_NAME),
        "personal data in the audit log"
    );
    assert!(ids.iter().all(|id| joined.contains(id.as_str())));

    let cases = [
        (
            "edited",
            "UPDATE audit SET record = replace(record, '\"attempt\":1', '\"attempt\":2') WHERE seq = (SELECT MIN(seq) FROM audit WHERE record LIKE '%\"delivered\"%');",
            "edited",
        ),
        (
            "edited-and-rehashed",
            "UPDATE audit SET record = replace(record, '\"05315000\"', '\"09162000\"'), hash = 'x' WHERE seq = 2;",
            "seq 2",
        ),
        ("deleted", "DELETE FROM audit WHERE seq = 4;", "record 4 is missing"),
        (
            "reordered",
            "UPDATE audit SET seq = -1 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = -1;",
            "reordered",
        ),
        ("truncated", &format!("DELETE FROM audit WHERE seq > {};", cp - 2), "truncated"),
        (
            "forged-checkpoint",
            &format!("UPDATE audit_checkpoints SET head = '{}' WHERE seq = {cp};", "ab".repeat(32)),
            "forged",
        ),
        (
            "forged-merkle-root",
            &format!("UPDATE audit_checkpoints SET root = '{}' WHERE seq = {cp};", "cd".repeat(32)),
            "forged",
        ),
    ];
    for (name, sql, expect) in cases {
        let copy = tampered(&tc, name, sql);
        let (ok, text) = verify(&tc.path, &copy);
        assert!(!ok, "{name}: verify passed a tampered log: {text}");
        assert!(text.contains("first bad record: seq"), "{name}: {text}");
        assert!(
            text.contains(expect),
            "{name}: expected {expect:?} in {text}"
        );
        println!("{name}: {}", text.trim());
    }

    // A rewrite that keeps the chain consistent is caught by the signed checkpoint.
    let copy = tampered(&tc, "rewritten", "SELECT 1;");
    {
        let conn = rusqlite::Connection::open(copy.join("gateway.db")).unwrap();
        let rows: Vec<(u64, String)> = conn
            .prepare("SELECT seq, record FROM audit ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut prev = "0".repeat(64);
        for (seq, text) in rows {
            let mut rec: serde_json::Value = serde_json::from_str(&text).unwrap();
            if seq == 2 {
                rec["detail"]["destination"] = "09162000".into();
            }
            rec["prev"] = prev.clone().into();
            let new_text = serde_json::to_string(&rec).unwrap();
            let hash = ozg_gateway::model::audit::record_hash(&new_text);
            conn.execute(
                "UPDATE audit SET record = ?1, hash = ?2 WHERE seq = ?3",
                rusqlite::params![new_text, hash, seq],
            )
            .unwrap();
            prev = hash;
        }
    }
    let (ok, text) = verify(&tc.path, &copy);
    assert!(!ok && text.contains("rewritten"), "{text}");
    println!("rewritten: {}", text.trim());

    // Trace on the command line.
    let out = Command::new(BIN)
        .args(["audit", "trace", &ids[0], "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    for event in ["received", "sealed", "delivered"] {
        assert!(table.contains(event), "{table}");
    }
    assert!(
        table.contains("dms-demo") && table.contains("fachverfahren-demo"),
        "{table}"
    );

    // An auditor with the privacy key confirms which documents were part of
    // submission 0; another submission's data matches nothing.
    let docs = tc.dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let own = docs.join("antrag-0.xml");
    std::fs::write(
        &own,
        format!("<antrag><name>{MARKER}</name><n>0</n></antrag>"),
    )
    .unwrap();
    let pdf = docs.join("nachweis.pdf");
    std::fs::write(&pdf, b"%PDF-1.7").unwrap();
    let other = docs.join("antrag-1.xml");
    std::fs::write(
        &other,
        format!("<antrag><name>{MARKER}</name><n>1</n></antrag>"),
    )
    .unwrap();
    let matching = |files: &[&Path]| {
        let out = Command::new(BIN)
            .args(["audit", "match-parts", &ids[0], "--config"])
            .arg(&tc.path)
            .args(files)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, said) = matching(&[&own, &pdf]);
    assert!(ok, "{said}");
    assert!(
        said.contains("matches part data") && said.contains("matches part attachment-1"),
        "{said}"
    );
    let (ok, said) = matching(&[&other]);
    assert!(!ok && said.contains("matches no part"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_sealed_parts_but_keeps_the_audit_records() {
    let receiver = Receiver::start(Mode::Status(422, None)).await;
    let tc = test_config(&Options {
        receiver_url: receiver.url(),
        ..Default::default()
    });
    let text = std::fs::read_to_string(&tc.path).unwrap()
        + "\n[retention]\ndelivered = \"0s\"\nparked = \"0s\"\ncheck_interval = \"100ms\"\n";
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    // 99050012104000 goes to the http target only (parked by the 422); 99115005001000 also to the filedrop.
    let req = |leistung: &str| SubmitRequest {
        leistung: leistung.into(),
        destination: "05315000".into(),
        data: if leistung == "99050012104000" {
            br#"{"antragsteller":{"name":"x","anschrift":"y"},"hund":{"rasse":"z","geburtsjahr":2020}}"#.to_vec()
        } else {
            b"<antrag/>".to_vec()
        },
        data_media_type: if leistung == "99050012104000" {
            "application/json"
        } else {
            "application/xml"
        }
        .into(),
        ..Default::default()
    };
    let a = client::submit(
        &portal_client("portal"),
        &base_url(gw.ingest_addr),
        &req("99050012104000"),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    let parked_id = a.body["submission_id"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(10),
        "parked, then discarded by retention",
        || async {
            (states(&gw, &parked_id)
                .await
                .get("fachverfahren-demo")
                .map(String::as_str)
                == Some("discarded"))
            .then_some(())
        },
    )
    .await;
    receiver.set_mode(Mode::Accept);
    let b = client::submit(
        &portal_client("portal"),
        &base_url(gw.ingest_addr),
        &req("99115005001000"),
    )
    .await
    .unwrap();
    let done_id = b.body["submission_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "delivered and purged", || async {
        let events: Vec<String> = gw
            .store
            .trace(&done_id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect();
        events.contains(&"purged".to_owned()).then_some(())
    })
    .await;
    let c = ozg_gateway::store::embedded::counts(&tc.data_dir).unwrap();
    assert_eq!(c.envelopes, 0, "no sealed part is kept after retention");
    assert_eq!(c.submissions, 2, "submission records stay");
    let events: Vec<String> = gw
        .store
        .trace(&parked_id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(events, ["received", "sealed", "parked", "discarded"]);
    gw.shutdown().await.unwrap();
    let (ok, text) = verify(&tc.path, &tc.data_dir);
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_retry_and_discard_parked_deliveries_and_are_audited() {
    // The operator API over HTTPS: the operator is known by certificate.
    let receiver = ozg_e2e::receiver::Receiver::start(Mode::Status(422, None)).await;
    let (tc, gw) = start(&Options {
        receiver_url: receiver.url(),
        admin_tls: true,
        ..Default::default()
    })
    .await;
    let port = gw.admin_addr.port();
    let mut ids = Vec::new();
    for n in 0..2 {
        let req = SubmitRequest {
            leistung: "99115005001000".into(),
            destination: "05315000".into(),
            data: format!("<antrag><n>{n}</n></antrag>").into_bytes(),
            data_media_type: "application/xml".into(),
            ..Default::default()
        };
        let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
            .await
            .unwrap();
        ids.push(a.body["submission_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        eventually(Duration::from_secs(10), "parked", || async {
            (states(&gw, id)
                .await
                .get("fachverfahren-demo")
                .map(String::as_str)
                == Some("parked"))
            .then_some(())
        })
        .await;
    }
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--url", &format!("https://localhost:{port}"), "--cert"])
            .arg(demo("operator.pem"))
            .arg("--key")
            .arg(demo("operator.key"))
            .arg("--ca")
            .arg(demo("ca.pem"))
            .current_dir(repo())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, listing) = cli(&["queue", "list", "--state", "parked"]);
    assert!(ok, "{listing}");
    let mid = |id: &str| {
        ozg_gateway::model::submission::message_id(
            &uuid::Uuid::parse_str(id).unwrap(),
            "fachverfahren-demo",
        )
    };
    let (m0, m1) = (mid(&ids[0]), mid(&ids[1]));
    assert!(
        listing.contains(&m0) && listing.contains(&m1) && listing.contains("http-422"),
        "{listing}"
    );

    // The receiver is fixed; the operator retries one and discards the other.
    receiver.set_mode(Mode::Accept);
    let (ok, text) = cli(&["queue", "retry", &m0]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&["queue", "discard", &m1]);
    assert!(ok, "{text}");
    eventually(
        Duration::from_secs(10),
        "delivered after the retry",
        || async {
            (states(&gw, &ids[0])
                .await
                .get("fachverfahren-demo")
                .map(String::as_str)
                == Some("delivered"))
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        states(&gw, &ids[1]).await["fachverfahren-demo"],
        "discarded"
    );
    let (ok, text) = cli(&["queue", "retry", &m1]);
    assert!(
        !ok && text.contains("409"),
        "a discarded delivery cannot be retried: {text}"
    );

    // A portal may not act as an operator.
    let r = portal_client("portal")
        .post(format!(
            "https://localhost:{port}/admin/v1/deliveries/{m1}/retry"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    let trace0 = gw.store.trace(&ids[0]).await.unwrap();
    let retried = trace0
        .iter()
        .find(|r| r.event == "retried")
        .expect("retried is audited");
    assert_eq!(retried.detail["by"], "operator-demo");
    let trace1 = gw.store.trace(&ids[1]).await.unwrap();
    let discarded = trace1
        .iter()
        .find(|r| r.event == "discarded")
        .expect("discarded is audited");
    assert_eq!(discarded.detail["by"], "operator-demo");
    gw.shutdown().await.unwrap();
    let (ok, text) = verify(&tc.path, &tc.data_dir);
    assert!(ok, "{text}");
}

/// The payload of a compact JWS.
fn payload_of(jws: &str) -> serde_json::Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    serde_json::from_slice(&b64.decode(jws.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

fn b64(payload: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string())
}

/// A checkpoint JWS over `payload` signed with a demo key pair.
fn sign_with(cert: &str, key: &str, payload: &serde_json::Value) -> String {
    let signer = ozg_adapter_sdk::SealKey::from_pem(
        &std::fs::read(demo(cert)).unwrap(),
        &std::fs::read(demo(key)).unwrap(),
    )
    .unwrap();
    ozg_adapter_sdk::jose::sign(
        &signer,
        "ozg-audit-checkpoint",
        payload.to_string().as_bytes(),
    )
    .unwrap()
}

fn run(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inclusion_proofs_prove_a_submissions_records_and_fail_when_altered() {
    let (tc, ids, _rx) = a_real_log().await;
    let proof = tc.dir.path().join("proof.json");
    let (ok, _, err) = run(&[
        "audit".as_ref(),
        "prove".as_ref(),
        ids[0].as_ref(),
        "--config".as_ref(),
        tc.path.as_os_str(),
        "--out".as_ref(),
        proof.as_os_str(),
    ]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    let trace: Vec<u64> = {
        let conn = ozg_gateway::store::embedded::open_read_only(&tc.data_dir).unwrap();
        ozg_gateway::store::embedded::read_trace(&conn, &ids[0])
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect()
    };
    let proven: Vec<u64> = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(proven, trace, "the final checkpoint covers every record");
    assert!(doc.get("not_yet_covered").is_none(), "{doc}");
    // The document and its records are what the published schemas describe.
    let schema = |name: &str| {
        let text = std::fs::read(repo().join("schemas").join(name)).unwrap();
        jsonschema::validator_for(&serde_json::from_slice(&text).unwrap()).unwrap()
    };
    let (proof_schema, record_schema) = (
        schema("audit-proof.schema.json"),
        schema("audit-record.schema.json"),
    );
    if let Err(e) = proof_schema.validate(&doc) {
        panic!("proof does not match its schema: {e}");
    }
    for r in doc["records"].as_array().unwrap() {
        let record: serde_json::Value =
            serde_json::from_str(r["record"].as_str().unwrap()).unwrap();
        if let Err(e) = record_schema.validate(&record) {
            panic!("record does not match its schema: {e}: {record}");
        }
    }
    let mut broken = doc.clone();
    broken["records"][0]["path"][0] = "not hex".into();
    assert!(
        proof_schema.validate(&broken).is_err(),
        "the schema checks paths"
    );

    // The gateway's own check, with the trust anchor and the published seal.
    let (ca, seal) = (demo("ca.pem"), demo("seal.pem"));
    let check = |path: &Path| {
        run(&[
            "audit".as_ref(),
            "verify-proof".as_ref(),
            path.as_os_str(),
            "--trust".as_ref(),
            ca.as_os_str(),
            "--seal".as_ref(),
            seal.as_os_str(),
        ])
    };
    let (ok, out, err) = check(&proof);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "OK: {} record(s) of submission {}",
            trace.len(),
            ids[0]
        )),
        "{out}"
    );
    for event in ["received", "sealed", "delivered"] {
        assert!(out.contains(event), "{out}");
    }
    println!("{out}");

    // An independent implementation (Python: hashlib and jwcrypto) agrees.
    let py = |path: &Path| {
        Command::new(python())
            .arg(repo().join("tests/interop/verify_proof.py"))
            .arg(path)
            .arg(&ca)
            .arg(&seal)
            .output()
            .expect("python3 runs")
    };
    let out = py(&proof);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["records"].as_array().unwrap().len(), trace.len());

    // The portal gets the same proof over its API once a checkpoint covers the records.
    let gw = start_from(&tc).await;
    let answer = client::status(
        &portal_client("portal"),
        &format!(
            "{}/v1/submissions/{}/proof",
            base_url(gw.ingest_addr),
            ids[0]
        ),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, doc, "the API and the CLI give the same proof");
    let parsed: ozg_adapter_sdk::audit_proof::ProofDocument =
        serde_json::from_value(answer.body).unwrap();
    let trust = ozg_adapter_sdk::TrustAnchors::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let pins =
        ozg_adapter_sdk::audit_proof::SealPins::from_pem(&std::fs::read(&seal).unwrap()).unwrap();
    let proven =
        ozg_adapter_sdk::audit_proof::verify(&parsed, &trust, &pins, std::time::SystemTime::now())
            .unwrap();
    assert_eq!(proven.len(), trace.len());
    gw.shutdown().await.unwrap();

    // Every alteration is caught, by both.
    let delivered = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .position(|r| r["record"].as_str().unwrap().contains("\"delivered\""))
        .unwrap();
    let other_target = |r: &mut serde_json::Value| {
        let text = r["record"].as_str().unwrap();
        let changed = if text.contains("dms-demo") {
            text.replace("dms-demo", "fachverfahren-demo")
        } else {
            text.replace("fachverfahren-demo", "dms-demo")
        };
        r["record"] = changed.into();
    };
    type Alter = Box<dyn Fn(&mut serde_json::Value)>;
    // (what, alteration, in the gateway's message, in the Python script's)
    let cases: Vec<(&str, Alter, &str, &str)> = vec![
        (
            "record edited",
            Box::new(move |d| other_target(&mut d["records"][delivered])),
            "does not lead to the signed root",
            "does not lead to the signed root",
        ),
        (
            "path altered",
            Box::new(|d| {
                let h = d["records"][0]["path"][0].as_str().unwrap();
                let flipped = if h.starts_with('0') { "1" } else { "0" }.to_owned() + &h[1..];
                d["records"][0]["path"][0] = flipped.into();
            }),
            "does not lead to the signed root",
            "does not lead to the signed root",
        ),
        (
            "path shortened",
            Box::new(|d| {
                d["records"][0]["path"].as_array_mut().unwrap().pop();
            }),
            "does not lead to the signed root",
            "does not lead to the signed root",
        ),
        (
            "leaf index moved",
            Box::new(|d| {
                let i = d["records"][0]["leaf_index"].as_u64().unwrap();
                d["records"][0]["leaf_index"] = (i + 1).into();
            }),
            "does not fit checkpoint",
            "does not fit the checkpoint",
        ),
        (
            "tree size changed",
            Box::new(|d| {
                let n = d["records"][0]["tree_size"].as_u64().unwrap();
                d["records"][0]["tree_size"] = (n + 1).into();
            }),
            "does not fit checkpoint",
            "does not fit the checkpoint",
        ),
        (
            "claimed for another submission",
            {
                let other = ids[1].clone();
                Box::new(move |d| d["submission_id"] = other.clone().into())
            },
            "belongs to submission",
            "not record",
        ),
        (
            "checkpoint payload replaced",
            Box::new(|d| {
                let jws = d["records"][0]["checkpoint"].as_str().unwrap().to_owned();
                let parts: Vec<&str> = jws.split('.').collect();
                let mut payload = payload_of(&jws);
                payload["root"] = "00".repeat(32).into();
                let forged = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
                d["records"][0]["checkpoint"] = forged.into();
            }),
            "signature",
            "signature does not verify",
        ),
        (
            // Same CA, may sign, but not the gateway's seal.
            "checkpoint signed by a portal's key",
            Box::new(|d| {
                let payload = payload_of(d["records"][0]["checkpoint"].as_str().unwrap());
                d["records"][0]["checkpoint"] =
                    sign_with("portal.pem", "portal.key", &payload).into();
            }),
            "not one of the pinned seal certificates",
            "not by a pinned seal",
        ),
        (
            "checkpoint without a Merkle tree head",
            Box::new(|d| {
                let mut payload = payload_of(d["records"][0]["checkpoint"].as_str().unwrap());
                let map = payload.as_object_mut().unwrap();
                map.remove("root");
                map.remove("from");
                d["records"][0]["checkpoint"] = sign_with("seal.pem", "seal.key", &payload).into();
            }),
            "carries no Merkle tree head",
            "malformed proof document",
        ),
    ];
    for (name, alter, expect, expect_py) in cases {
        let mut altered = doc.clone();
        alter(&mut altered);
        let path = tc.dir.path().join("altered.json");
        std::fs::write(&path, altered.to_string()).unwrap();
        let (ok, out, err) = check(&path);
        assert!(!ok, "{name}: verify-proof passed: {out}");
        assert!(err.contains(expect), "{name}: expected {expect:?} in {err}");
        println!("{name}: {}", err.trim());
        let independent = py(&path);
        let said = String::from_utf8_lossy(&independent.stderr);
        assert!(
            !independent.status.success()
                && said.starts_with("FAILED: ")
                && said.contains(expect_py),
            "{name}: expected the independent check to fail with {expect_py:?}: {said}"
        );
    }
}
