//! Targets and routes registered at run time over the operator API: a valid
//! target gets its test message through the real adapter and then real
//! deliveries, without a restart, and keeps them after one; certificates a
//! target must not have are refused with the reason; the config file's
//! targets cannot be changed over the API; every change is audited. The test
//! certificates are issued by `openssl ca` under the demo CA.

use std::process::Command;
use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};
use ozg_gateway::tools::demo_pki::{Algorithm, DemoCa, Usage};
use serde_json::{json, Value};

/// An encryption certificate issued by the demo CA with `openssl ca`, valid
/// from `from` to `to` days from now; `key` is `ec` (P-256, keyAgreement) or
/// an RSA size (keyEncipherment).
fn issue(dir: &std::path::Path, key: &str, from: i64, to: i64) -> String {
    let dir = dir.join(format!("{key}{from}{to}"));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let usage = if key == "ec" {
        "keyAgreement"
    } else {
        "keyEncipherment"
    };
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = demo\n[demo]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
             default_md = sha256\npolicy = any\nx509_extensions = ext\nunique_subject = no\n\
             [any]\ncommonName = supplied\n[ext]\nkeyUsage = critical,{usage}\n"
        ),
    )
    .unwrap();
    let newkey = if key == "ec" {
        "ec".to_owned()
    } else {
        format!("rsa:{key}")
    };
    let mut req = vec![
        "req",
        "-new",
        "-newkey",
        &newkey,
        "-nodes",
        "-keyout",
        "leaf.key",
        "-subj",
        "/CN=registered-target",
        "-out",
        "leaf.csr",
    ];
    if key == "ec" {
        req.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    run(&req);
    let at = |days: i64| {
        let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    };
    let (start, end) = (at(from), at(to));
    let (ca_key, ca_pem) = (
        demo("ca.key").display().to_string(),
        demo("ca.pem").display().to_string(),
    );
    run(&[
        "ca",
        "-config",
        "ca.cnf",
        "-batch",
        "-notext",
        "-keyfile",
        &ca_key,
        "-cert",
        &ca_pem,
        "-in",
        "leaf.csr",
        "-out",
        "leaf.pem",
        "-startdate",
        &start,
        "-enddate",
        &end,
    ]);
    std::fs::read_to_string(dir.join("leaf.pem")).unwrap()
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut r = plain_client().request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn target(id: &str, certificate: &str, url: &str) -> Value {
    json!({
        "id": id,
        "certificate": certificate,
        "adapter": {"type": "http", "url": url, "server_ca": demo("ca.pem"), "timeout": "2s"},
        "description": "Fachverfahren Bauantrag (registered in a test)",
        "retry": {"initial": "100ms", "max_attempts": 50},
    })
}

async fn submit(gw: &ozg_gateway::daemon::Gateway) -> String {
    let req = SubmitRequest {
        leistung: "99050012104000".into(),
        destination: "05999999".into(),
        data: std::fs::read(repo().join("schemas/examples/hundesteuer.json")).unwrap(),
        data_media_type: "application/json".into(),
        ..Default::default()
    };
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["submission_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_registered_at_run_time_is_tested_delivered_to_and_kept() {
    use reqwest::Method;
    let inbox = Receiver::start(Mode::Accept).await;
    let tc = test_config(&Options {
        delivery: FAST_DELIVERY,
        ..Default::default()
    });
    let gw = start_from(&tc).await;
    let admin = format!("http://127.0.0.1:{}/admin/v1", gw.admin_addr.port());
    // Certificates a target must not have: refused, with the reason, nothing kept.
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let good = issue(dir, "ec", -1, 365);
    let foreign = DemoCa::generate("foreign CA", 1)
        .unwrap()
        .issue("foreign", Usage::Recipient, Algorithm::EcP256, 1)
        .unwrap()
        .cert_pem;
    for (cert, reason) in [
        (issue(dir, "ec", -30, -1), "expired"),
        (issue(dir, "ec", 2, 365), "not valid before"),
        (issue(dir, "2048", -1, 365), "3072"),
        (foreign, "trust"),
        (issue(dir, "ec", -1, 10), "within pki.expiry_warning"),
    ] {
        let (status, body) = call(
            Method::POST,
            format!("{admin}/targets"),
            Some(target("fv-neu", &cert, &inbox.url())),
        )
        .await;
        assert_eq!(status, 422, "{reason}: {body}");
        let detail = body["detail"].as_str().unwrap().to_lowercase();
        assert!(detail.contains(reason), "{reason}: {detail}");
    }
    let (status, body) = call(
        Method::POST,
        format!("{admin}/targets"),
        Some(target("dms-demo", &good, &inbox.url())),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some("/problems/target-in-config")),
        "{body}"
    );
    let (status, body) = call(
        Method::POST,
        format!("{admin}/targets"),
        Some(json!({"id": "x", "certificate": good})),
    )
    .await;
    assert_eq!(status, 400, "no adapter: {body}");
    let (status, _) = call(Method::GET, format!("{admin}/targets/fv-neu"), None).await;
    assert_eq!(status, 404, "nothing refused was kept");

    // A valid one: registered, tested through the real adapter.
    let (status, body) = call(
        Method::POST,
        format!("{admin}/targets"),
        Some(target("fv-neu", &good, &inbox.url())),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["registered_by"], "local");
    let (status, t) = call(Method::GET, format!("{admin}/targets/fv-neu"), None).await;
    assert_eq!(
        (status, t["origin"].as_str(), t["adapter"].as_str()),
        (200, Some("api"), Some("http")),
        "{t}"
    );
    let (status, outcome) = call(Method::POST, format!("{admin}/targets/fv-neu/test"), None).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["outcome"], "delivered", "{outcome}");
    assert_eq!(
        inbox.received().len(),
        1,
        "the receiver got the test message"
    );
    let test_id = outcome["message_id"].as_str().unwrap().to_owned();
    assert!(inbox.received().contains(&test_id));

    // A route to it, and a real delivery.
    let route =
        json!({"leistung": "99050012104000", "destination": "05999999", "targets": ["fv-neu"]});
    let (status, body) = call(Method::POST, format!("{admin}/routes"), Some(route)).await;
    assert_eq!(status, 201, "{body}");
    let (_, routes) = call(Method::GET, format!("{admin}/routes"), None).await;
    assert!(
        routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["origin"] == "api" && r["targets"][0] == "fv-neu"),
        "{routes}"
    );
    let id = submit(&gw).await;
    eventually(
        Duration::from_secs(10),
        "delivered to the registered target",
        || async {
            (states(&gw, &id).await.get("fv-neu").map(String::as_str) == Some("delivered"))
                .then_some(())
        },
    )
    .await;
    gw.shutdown().await.unwrap();

    // A restart keeps both.
    let gw = start_from(&tc).await;
    let admin = format!("http://127.0.0.1:{}/admin/v1", gw.admin_addr.port());
    let (status, t) = call(Method::GET, format!("{admin}/targets/fv-neu"), None).await;
    assert_eq!((status, t["origin"].as_str()), (200, Some("api")), "{t}");
    let id = submit(&gw).await;
    eventually(
        Duration::from_secs(10),
        "delivered after the restart",
        || async {
            (states(&gw, &id).await.get("fv-neu").map(String::as_str) == Some("delivered"))
                .then_some(())
        },
    )
    .await;

    // Removing: not while routed; the route first, then the target.
    let (status, body) = call(Method::DELETE, format!("{admin}/targets/fv-neu"), None).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (409, Some("/problems/target-routed")),
        "{body}"
    );
    let (status, body) = call(
        Method::DELETE,
        format!("{admin}/routes?leistung=99050012104000&destination=05999999"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(Method::DELETE, format!("{admin}/targets/fv-neu"), None).await;
    assert_eq!(status, 200, "{body}");
    let (_, t) = call(Method::GET, format!("{admin}/targets/fv-neu"), None).await;
    assert_eq!(
        t["origin"], "none",
        "its delivered deliveries remain, the target is gone: {t}"
    );

    // The audit log has every change, with who made it.
    let changes: Vec<String> = audit_records(&gw, "changed")
        .await
        .iter()
        .map(|r| {
            let d = &r["detail"];
            format!(
                "{} {} {}",
                d["setting"].as_str().unwrap_or_default(),
                d["change"].as_str().unwrap_or_default(),
                d["by"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            "target registered local",
            "target tested local",
            "route registered local",
            "route removed local",
            "target removed local"
        ]
    );

    // The same from the command line.
    let cert = scratch.path().join("fv-cli.pem");
    std::fs::write(&cert, &good).unwrap();
    let url = format!("http://127.0.0.1:{}", gw.admin_addr.port());
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ozg-gateway-e2e"))
            .args(args)
            .args(["--url", &url])
            .env("HOME", scratch.path())
            .env_remove("OZG_OPERATOR_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let adapter =
        json!({"type": "http", "url": inbox.url(), "server_ca": demo("ca.pem")}).to_string();
    let cert_arg = cert.display().to_string();
    let (code, text) = cli(&[
        "target",
        "add",
        "fv-cli",
        "--certificate",
        &cert_arg,
        "--adapter",
        &adapter,
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(&["target", "test", "fv-cli"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("delivered"), "{text}");
    let (code, text) = cli(&[
        "route",
        "add",
        "--leistung",
        "99050012104000",
        "--destination",
        "05888888",
        "--target",
        "fv-cli",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(&["route", "list"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("05888888") && l.contains("api") && l.contains("fv-cli")),
        "{text}"
    );
    let (code, text) = cli(&["target", "remove", "fv-cli"]);
    assert_eq!(code, Some(1), "routed: refused; {text}");
    let (code, text) = cli(&[
        "route",
        "remove",
        "--leistung",
        "99050012104000",
        "--destination",
        "05888888",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(&["target", "remove", "fv-cli"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = cli(&["target", "remove", "dms-demo"]);
    assert_eq!(code, Some(1), "the config file's: refused; {text}");
    assert!(text.contains("config file"), "{text}");
    gw.shutdown().await.unwrap();
}
