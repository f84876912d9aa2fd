//! The command line as an operator uses it: config check, graceful stop, slow clients.

use std::process::Command;
use std::time::{Duration, Instant};

use ozg_e2e::*;
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

#[test]
fn config_check_names_file_key_and_fix() {
    let tc = test_config(&Options::default());
    let ok = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK"));

    // The seal key of another certificate, a previous seal that is no certificate,
    // a route to a target that does not exist, and no data checks at all.
    let text = std::fs::read_to_string(&tc.path)
        .unwrap()
        .replace("seal.key", "portal.key")
        .replace(
            "[ingest.limits]\n",
            "[ingest.limits]\nvalidation_concurrency = 0\n",
        )
        .replace("[delivery]\n", "[delivery]\nenvelope_memory = \"64KiB\"\n")
        .replace(
            "[pki]\n",
            &format!(
                "[pki]\nprevious_seal_certificates = [\"{}\"]\n",
                demo("README.md").display()
            ),
        )
        .replace(
            r#"targets = ["fachverfahren-demo"]"#,
            r#"targets = ["fachverfahren-dmeo"]"#,
        );
    std::fs::write(&tc.path, text).unwrap();
    let bad = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains(&tc.path.display().to_string()), "{msg}");
    assert!(
        msg.contains("`pki.seal_key`") && msg.contains("does not belong"),
        "{msg}"
    );
    assert!(
        msg.contains("`routes[0].targets`") && msg.contains("fachverfahren-dmeo"),
        "{msg}"
    );
    assert!(msg.contains("`pki.previous_seal_certificates[0]`"), "{msg}");
    assert!(
        msg.contains("`ingest.limits.validation_concurrency`: must be at least 1"),
        "{msg}"
    );
    assert!(
        msg.contains("`delivery.envelope_memory`") && msg.contains("at least 1MiB"),
        "{msg}"
    );
    assert!(msg.matches("fix:").count() >= 3, "{msg}");

    // serve refuses the same config with the same words.
    let serve = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&serve.stderr).contains("does not belong"));
}

#[test]
fn the_privacy_key_must_be_a_secret_outside_the_data_directory() {
    let tc = test_config(&Options::default());
    let original = std::fs::read_to_string(&tc.path).unwrap();
    let key_line = original
        .lines()
        .find(|l| l.starts_with("privacy_key"))
        .unwrap()
        .to_owned();
    let check = |key_line: &str| {
        std::fs::write(
            &tc.path,
            original.replace(&key_line_of(&original), key_line),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["config", "check", "--config"])
            .arg(&tc.path)
            .output()
            .unwrap();
        let said = [out.stderr, out.stdout].concat();
        (
            out.status.code(),
            String::from_utf8_lossy(&said).into_owned(),
        )
    };
    // Inside the data directory: a copy of the data would carry its own key.
    std::fs::create_dir_all(&tc.data_dir).unwrap();
    let inside = tc.data_dir.join("privacy.key");
    std::fs::copy(demo("privacy.key"), &inside).unwrap();
    let (code, msg) = check(&format!("privacy_key = \"{}\"", inside.display()));
    assert_eq!(code, Some(2), "{msg}");
    assert!(
        msg.contains("`pki.privacy_key`") && msg.contains("inside the data directory"),
        "{msg}"
    );
    // Missing, and too short to be a secret.
    let (code, msg) = check("privacy_key = \"no-such.key\"");
    assert_eq!(code, Some(2), "{msg}");
    assert!(
        msg.contains("file not found") && msg.contains("openssl rand -hex 32"),
        "{msg}"
    );
    let short = tc.dir.path().join("short.key");
    std::fs::write(&short, "00112233445566778899aabbccddeeff\n").unwrap();
    let (code, msg) = check(&format!("privacy_key = \"{}\"", short.display()));
    assert_eq!(code, Some(2), "{msg}");
    assert!(msg.contains("16 bytes; at least 32"), "{msg}");
    // The demo key is accepted, with a loud warning.
    let (code, msg) = check(&key_line);
    assert_eq!(code, Some(0), "{msg}");
    assert!(msg.contains("DEMO ONLY privacy key"), "{msg}");
}

fn key_line_of(config: &str) -> String {
    config
        .lines()
        .find(|l| l.starts_with("privacy_key"))
        .unwrap()
        .to_owned()
}

#[test]
fn sigterm_stops_gracefully_and_keeps_the_data() {
    let ingest_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port: free_port(),
        ..Default::default()
    });
    let mut daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no exit 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    // The lock is released: the next daemon starts on the same data directory.
    drop(DaemonProcess::spawn(BIN, &tc.path, ingest_port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_is_cut_off_with_408() {
    let (tc, gw) = start(&Options {
        request_timeout: "1s",
        ..Default::default()
    })
    .await;
    // Raw TLS so the body can stall half-way.
    let tls = ozg_gateway::listen::tls::client_config(
        &demo("portal.pem"),
        &demo("portal.key"),
        &demo("ca.pem"),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(gw.ingest_addr)
        .await
        .unwrap();
    let mut stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let head = "POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{\"leistung\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut off after {:?}",
        started.elapsed()
    );
    assert_eq!(
        ozg_gateway::store::embedded::counts(&tc.data_dir)
            .unwrap()
            .submissions,
        0
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_writes_the_parts_and_refuses_a_tampered_envelope() {
    use ozg_gateway::tools::client::{self, SubmitRequest};
    let (_tc, gw) = start(&Options::default()).await;
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: b"<antrag><n>1</n></antrag>".to_vec(),
        data_media_type: "application/xml".into(),
        attachments: vec![(
            "Nachweis.pdf".into(),
            "application/pdf".into(),
            b"%PDF-1.7 x".to_vec(),
        )],
        ..Default::default()
    };
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    let s = gw
        .store
        .submission(a.body["submission_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let d = s
        .deliveries
        .iter()
        .find(|d| d.target == "dms-demo")
        .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let env_path = scratch.path().join("envelope.json");
    let envelope = gw.store.envelope(&d.message_id).await.unwrap().unwrap();
    std::fs::write(&env_path, &envelope).unwrap();
    let out = scratch.path().join("out");
    let open = |env: &std::path::Path| open_envelope(BIN, env, "recipient-rsa", &out);
    let ok = open(&env_path);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read(out.join("data.xml")).unwrap(), req.data);
    assert_eq!(
        std::fs::read(out.join("Nachweis.pdf")).unwrap(),
        b"%PDF-1.7 x"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["parts"][1]["filename"], "Nachweis.pdf");

    // Swap the attachment's JWE for the data's: the hash check names the part.
    let mut env: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    env["parts"][1]["jwe"] = env["parts"][0]["jwe"].clone();
    let bad_path = scratch.path().join("bad.json");
    std::fs::write(&bad_path, env.to_string()).unwrap();
    let bad = open(&bad_path);
    assert_eq!(bad.status.code(), Some(3));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("part attachment-1"), "{msg}");

    // For another recipient: named as such.
    let other = Command::new(BIN)
        .arg("open")
        .arg(&env_path)
        .args(["--key"])
        .arg(demo("recipient-ec.key"))
        .arg("--cert")
        .arg(demo("recipient-ec.pem"))
        .arg("--trust")
        .arg(demo("ca.pem"))
        .arg("--seal")
        .arg(demo("seal.pem"))
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&other.stderr).contains("not for this recipient"));

    // The other kind of key without its certificate: still named as another
    // recipient's envelope, not as an unsupported algorithm.
    let other_kind = Command::new(BIN)
        .arg("open")
        .arg(&env_path)
        .args(["--key"])
        .arg(demo("recipient-ec.key"))
        .arg("--trust")
        .arg(demo("ca.pem"))
        .arg("--seal")
        .arg(demo("seal.pem"))
        .output()
        .unwrap();
    assert_eq!(other_kind.status.code(), Some(3));
    let msg = String::from_utf8_lossy(&other_kind.stderr);
    assert!(msg.contains("for another recipient key"), "{msg}");

    // A recipient that pins another certificate as the gateway's seal refuses it.
    let pinned_elsewhere = Command::new(BIN)
        .arg("open")
        .arg(&env_path)
        .arg("--key")
        .arg(demo("recipient-rsa.key"))
        .arg("--trust")
        .arg(demo("ca.pem"))
        .arg("--seal")
        .arg(demo("portal.pem"))
        .output()
        .unwrap();
    assert_eq!(pinned_elsewhere.status.code(), Some(3));
    let msg = String::from_utf8_lossy(&pinned_elsewhere.stderr);
    assert!(
        msg.contains("not one of the gateway's seal certificates"),
        "{msg}"
    );
    gw.shutdown().await.unwrap();
}

#[test]
fn config_check_refuses_bad_subjects_unloadable_crls_and_revoked_targets() {
    use ozg_e2e::pki::{test_ca_crl, OpensslCa};
    let scratch = tempfile::tempdir().unwrap();
    let ca = OpensslCa::new(&scratch.path().join("ca"));
    let crl = scratch.path().join("demo-ca.crl.pem");
    ca.write_crl(&crl);
    let stale = scratch.path().join("test-ca.crl.pem");
    std::fs::write(&stale, test_ca_crl(&[], true)).unwrap();
    let check = |tc: &TestConfig| {
        Command::new(BIN)
            .args(["config", "check", "--config"])
            .arg(&tc.path)
            .output()
            .unwrap()
    };

    // A CRL past its nextUpdate: a loud warning, not a refusal.
    let tc = test_config(&Options::default());
    let text = std::fs::read_to_string(&tc.path).unwrap().replace(
        "[pki]\n",
        &format!(
            "[pki]\ncrls = [\"{}\", \"{}\"]\n",
            crl.display(),
            stale.display()
        ),
    );
    std::fs::write(&tc.path, &text).unwrap();
    let out = check(&tc);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("warning:")
            && stdout.contains("nextUpdate")
            && stdout.contains(&stale.display().to_string()),
        "{stdout}"
    );

    // A revoked target certificate, CRLs that cannot be loaded, a subject that
    // does not parse.
    ca.revoke(&demo("recipient-rsa.pem"));
    ca.write_crl(&crl);
    let text = text.replace(
        "crls = [",
        &format!(
            "crls = [\"{}/missing.crl\", \"https://localhost:1/ca.crl\", \"http://pki.example/ca.crl\", ",
            scratch.path().display()
        ),
    ) + "\n[[portals]]\nid = \"odd\"\nsubject = \"O=Stadt Musterstadt, CN\"\nleistungen = [\"*\"]\n";
    std::fs::write(&tc.path, text).unwrap();
    let out = check(&tc);
    assert_eq!(out.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&out.stderr);
    for (key, words) in [
        ("`pki.crls[0]`", "missing.crl"),
        ("`pki.crl_server_ca`", "https://localhost:1/ca.crl"),
        ("`pki.crls[2]`", "http://pki.example/ca.crl"),
        ("`targets.dms-demo.certificate`", "revoked"),
        ("`portals[2].subject`", "CN"),
    ] {
        let line = msg
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} not named: {msg}"));
        assert!(line.contains(words), "{key}: {line}");
    }
    assert!(msg.matches("fix:").count() >= 5, "{msg}");
}

/// Logs that go to a file (or journald) carry no terminal colour codes, and the
/// audit checkpoint's sequence number is a metric (the README names it).
#[test]
fn logs_to_a_file_are_plain_text_and_the_checkpoint_metric_exists() {
    let ingest_port = free_port();
    let admin_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port,
        ..Default::default()
    });
    let log = tc.dir.path().join("daemon.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&tc.path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}/metrics");
    let mut metrics = String::new();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(25));
        if let Ok(out) = Command::new("curl").args(["-fsS", &admin]).output() {
            if out.status.success() {
                metrics = String::from_utf8_lossy(&out.stdout).into_owned();
                break;
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(metrics.contains("ozg_audit_checkpoint_seq"), "{metrics}");
    assert!(metrics.contains("ozg_audit_head_seq"), "{metrics}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEMO ONLY"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}

/// `… | head` closes the pipe early: the command ends quietly, not with a panic.
#[test]
fn a_closed_output_pipe_ends_a_command_quietly() {
    let tc = test_config(&Options::default());
    let mut child = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&tc.path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the command prints its result.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

/// The operator's `queue retry` passes on the server's explanation when it is
/// refused, with the exit code for "not found".
#[test]
fn a_refused_retry_says_why() {
    let ingest_port = free_port();
    let admin_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port,
        ..Default::default()
    });
    let _daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let out = Command::new(BIN)
        .args(["queue", "retry", "no-such-delivery", "--url"])
        .arg(format!("http://127.0.0.1:{admin_port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("retry refused: 404 no delivery no-such-delivery"),
        "{stderr}"
    );
}

/// `queue list` shows the queue by default — a delivery waiting for its next
/// attempt included — and a wrong state is a usage error naming the states.
#[test]
fn queue_list_shows_the_whole_queue_by_default() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ingest_port = free_port();
    let admin_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port,
        ..Default::default()
    });
    let _daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let url = format!("https://localhost:{ingest_port}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = runtime
        .block_on(ozg_gateway::tools::client::submit(
            &portal_client("portal"),
            &url,
            &ozg_gateway::tools::client::SubmitRequest {
                leistung: "99115005001000".into(),
                destination: "05315000".into(),
                data: b"<antrag/>".to_vec(),
                data_media_type: "application/xml".into(),
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(answer.status, 202);
    let operator = |state: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args([
            "queue",
            "list",
            "--url",
            &format!("http://127.0.0.1:{admin_port}"),
        ]);
        if let Some(s) = state {
            c.args(["--state", s]);
        }
        c.output().unwrap()
    };
    // Nothing listens at the http target: its delivery waits for a retry.
    let mut listing = String::new();
    for _ in 0..100 {
        let out = operator(None);
        assert!(out.status.success());
        listing = String::from_utf8_lossy(&out.stdout).into_owned();
        if listing.contains("retry_wait") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        listing.contains("fachverfahren-demo") && listing.contains("retry_wait"),
        "{listing}"
    );
    let parked = String::from_utf8_lossy(&operator(Some("parked")).stdout).into_owned();
    assert!(!parked.contains("retry_wait"), "{parked}");
    let wrong = operator(Some("stuck"));
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("retry_wait"));
}

/// `demo-pki` writes nowhere by default and does not replace a PKI without --force.
#[test]
fn demo_pki_needs_out_and_does_not_overwrite_silently() {
    let no_out = Command::new(BIN).arg("demo-pki").output().unwrap();
    assert_eq!(no_out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_out.stderr).contains("--out"));
    let dir = tempfile::tempdir().unwrap();
    let run = |force: bool| {
        let mut c = Command::new(BIN);
        c.args(["demo-pki", "--out"]).arg(dir.path());
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    assert!(run(false).status.success());
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    let again = run(false);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        std::fs::read(dir.path().join("ca.pem")).unwrap(),
        ca,
        "untouched"
    );
    assert!(run(true).status.success());
    assert_ne!(
        std::fs::read(dir.path().join("ca.pem")).unwrap(),
        ca,
        "replaced"
    );
}

/// `config check` warns about a Leistung a portal may use but no route takes, and
/// names a missing file as such.
#[test]
fn config_check_warns_about_unrouted_leistungen_and_names_missing_files() {
    let tc = test_config(&Options::default());
    let ok = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let out = String::from_utf8_lossy(&ok.stdout);
    // 99999999999999 is the test config's Leistung without a route.
    assert!(
        out.contains("Leistung 99999999999999, but no route takes it"),
        "{out}"
    );
    assert!(
        !out.contains("Leistung 99115005001000, but no route"),
        "{out}"
    );

    let text =
        std::fs::read_to_string(&tc.path)
            .unwrap()
            .replacen("portal.pem", "portal-missing.pem", 1);
    std::fs::write(&tc.path, text).unwrap();
    let bad = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(
        msg.contains("file not found") && msg.contains("portal-missing.pem"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_verify_checks_the_seal_and_the_documents() {
    use ozg_gateway::tools::client::{self, SubmitRequest};
    let (tc, gw) = start(&Options::default()).await;
    let data = b"<antrag><n>1</n></antrag>".to_vec();
    let pdf = b"%PDF-1.7 Nachweis".to_vec();
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: data.clone(),
        data_media_type: "application/xml".into(),
        attachments: vec![("n.pdf".into(), "application/pdf".into(), pdf.clone())],
        ..Default::default()
    };
    let answer = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202);
    let dir = tc.dir.path();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let answer_file = file("answer.json", answer.body.to_string().as_bytes());
    let jws = answer.body["receipt"].as_str().unwrap();
    let jws_file = file("receipt.jws", jws.as_bytes());
    let (data_file, pdf_file) = (file("antrag.xml", &data), file("n.pdf", &pdf));
    let verify = |receipt: &std::path::Path, seal: &str, docs: &[&std::path::Path]| {
        let mut c = Command::new(BIN);
        c.args(["receipt", "verify"])
            .arg(receipt)
            .arg("--trust")
            .arg(demo("ca.pem"))
            .arg("--seal")
            .arg(demo(seal));
        if let Some(d) = docs.first() {
            c.arg("--data").arg(d);
        }
        for a in docs.iter().skip(1) {
            c.arg("--attachment").arg(a);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned(),
        )
    };
    let id = answer.body["submission_id"].as_str().unwrap();
    let (code, said) = verify(&answer_file, "seal.pem", &[&data_file, &pdf_file]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains(id) && said.contains("portal-demo"), "{said}");
    assert!(said.contains("= ") && said.contains("n.pdf"), "{said}");
    // The JWS alone works as well.
    assert_eq!(verify(&jws_file, "seal.pem", &[]).0, Some(0));
    // A document that is not the part the receipt names.
    let other = file("other.pdf", b"%PDF-1.7 something else");
    let (code, said) = verify(&answer_file, "seal.pem", &[&data_file, &other]);
    assert_eq!(code, Some(3), "{said}");
    assert!(
        said.contains("MISMATCH") && said.contains("not part attachment-1"),
        "{said}"
    );
    // Signed by another key of the same PKI, or altered: invalid.
    let (code, said) = verify(&answer_file, "portal.pem", &[]);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("INVALID"), "{said}");
    let mut parts: Vec<String> = jws.split('.').map(str::to_owned).collect();
    let mut payload: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["sender"] = "someone-else".into();
    parts[1] = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        payload.to_string(),
    );
    let forged = file("forged.jws", parts.join(".").as_bytes());
    let (code, said) = verify(&forged, "seal.pem", &[]);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("INVALID"), "{said}");
    gw.shutdown().await.unwrap();
}

#[test]
fn privacy_key_man_pages_and_completions_for_an_installation() {
    let tc = test_config(&Options::default());
    let dir = tc.dir.path();
    // A fresh privacy key: owner-only, never overwritten, accepted by config check.
    let key = dir.join("privacy.key");
    let make = || {
        Command::new(BIN)
            .args(["privacy-key", "--out"])
            .arg(&key)
            .output()
            .unwrap()
    };
    assert!(make().status.success());
    let first = std::fs::read(&key).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let again = make();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    assert_eq!(std::fs::read(&key).unwrap(), first, "not replaced");
    let text = std::fs::read_to_string(&tc.path).unwrap();
    let line = text.lines().find(|l| l.starts_with("privacy_key")).unwrap();
    std::fs::write(
        &tc.path,
        text.replace(line, &format!("privacy_key = \"{}\"", key.display())),
    )
    .unwrap();
    let check = Command::new(BIN)
        .args(["config", "check", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(!said.contains("DEMO ONLY privacy key"), "{said}");

    // Man pages: one per command, nested ones included.
    let man = dir.join("man");
    assert!(Command::new(BIN)
        .args(["man", "--out"])
        .arg(&man)
        .status()
        .unwrap()
        .success());
    for page in [
        "ozg-gateway.1",
        "ozg-gateway-serve.1",
        "ozg-gateway-audit-verify.1",
    ] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let verify = std::fs::read_to_string(man.join("ozg-gateway-audit-verify.1")).unwrap();
    assert!(
        verify.contains("ozg\\-gateway audit verify"),
        "synopsis names the invocation"
    );
    // Completion scripts know the commands.
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("queue")
                && script.contains("all-parked")
                && script.contains("match-parts"),
            "{shell}"
        );
    }
}
