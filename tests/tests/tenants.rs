//! Tenants on the operator API over HTTPS: an operator of one municipality
//! sees and touches only its targets, deliveries, submissions and metrics —
//! through the API and the CLI — and every action is audited with the
//! operator's id and the tenant; an operator's pause outlasts a restart.

use std::process::Command;
use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

async fn submit(stem: &str, base: &str, n: u32) -> String {
    submit_to(stem, base, n, "05315000").await
}

async fn submit_to(stem: &str, base: &str, n: u32, destination: &str) -> String {
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: destination.into(),
        data: format!("<antrag><n>{n}</n></antrag>").into_bytes(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    };
    let a = client::submit(&portal_client(stem), base, &req)
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["submission_id"].as_str().unwrap().to_owned()
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.get(&url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn post(c: &reqwest::Client, url: String) -> (u16, Value) {
    let r = c.post(&url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn ids(v: &Value, list: &str, key: &str) -> Vec<String> {
    v[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_of_one_tenant_sees_and_touches_only_that_tenants_things() {
    let certs = tempfile::tempdir().unwrap();
    let (muster_pem, muster_key) = issue_client(certs.path(), "op-musterstadt");
    let (kreis_pem, kreis_key) = issue_client(certs.path(), "op-beispielkreis");
    let (vendor_pem, vendor_key) = issue_client(certs.path(), "vendor-fv");
    let receiver = Receiver::start(Mode::Status(503, None)).await;
    let (tc, gw) = start(&Options {
        receiver_url: receiver.url(),
        delivery: ozg_e2e::FAST_DELIVERY,
        tenants: true,
        admin_tls: true,
        extra: format!(
            "[[operators]]\nid = \"op-musterstadt\"\ncertificate = \"{}\"\ntenants = [\"musterstadt\"]\n\n[[operators]]\nid = \"op-beispielkreis\"\ncertificate = \"{}\"\ntenants = [\"beispielkreis\"]\n\n[[operators]]\nid = \"vendor-fv\"\ncertificate = \"{}\"\ntenants = [\"beispielkreis\"]\ntargets = [\"fv-vendor\"]\n\n[[routes]]\nleistung = \"99115005001000\"\ndestination = \"05999999\"\ntargets = [\"fachverfahren-demo\"]\n",
            muster_pem.display(),
            kreis_pem.display(),
            vendor_pem.display()
        ),
        ..Default::default()
    })
    .await;
    let base = base_url(gw.ingest_addr);
    let admin = format!("https://localhost:{}", gw.admin_addr.port());
    // portal-demo is Musterstadt's, portal2-demo Beispielkreis's; both send to
    // dms-demo (Musterstadt's, delivered) and fachverfahren-demo (Beispielkreis's, failing).
    let from_muster = submit("portal", &base, 1).await;
    let from_kreis = submit("portal2", &base, 2).await;
    // Only to Beispielkreis's target: nothing of it is Musterstadt's.
    let kreis_only = submit_to("portal2", &base, 3, "05999999").await;
    for id in [&from_muster, &from_kreis] {
        eventually(Duration::from_secs(10), "dms-demo delivered", || async {
            (states(&gw, id).await.get("dms-demo").map(String::as_str) == Some("delivered"))
                .then_some(())
        })
        .await;
    }
    let muster = client_with(&muster_pem, &muster_key);
    let kreis = client_with(&kreis_pem, &kreis_key);
    let all = portal_client("operator");

    // Targets.
    let (status, body) = get(&muster, format!("{admin}/admin/v1/targets")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body, "targets", "id"), ["dms-demo"]);
    assert_eq!(body["targets"][0]["tenant"], "musterstadt");
    let (_, body) = get(&kreis, format!("{admin}/admin/v1/targets")).await;
    assert_eq!(ids(&body, "targets", "id"), ["fachverfahren-demo"]);
    let (_, body) = get(&all, format!("{admin}/admin/v1/targets")).await;
    assert_eq!(
        ids(&body, "targets", "id"),
        ["dms-demo", "fachverfahren-demo"]
    );
    let (status, _) = get(
        &muster,
        format!("{admin}/admin/v1/targets/fachverfahren-demo"),
    )
    .await;
    assert_eq!(status, 404);

    // Deliveries: only their targets', whatever the filter asks for.
    let (_, body) = get(
        &muster,
        format!("{admin}/admin/v1/deliveries?state=delivered"),
    )
    .await;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 2, "{body}");
    assert!(body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["target"] == "dms-demo"));
    let (_, body) = get(
        &muster,
        format!("{admin}/admin/v1/deliveries?target=fachverfahren-demo"),
    )
    .await;
    assert_eq!(body["deliveries"].as_array().unwrap().len(), 0, "{body}");
    let (_, body) = get(
        &kreis,
        format!("{admin}/admin/v1/deliveries?target=fachverfahren-demo"),
    )
    .await;
    let fv: Vec<String> = ids(&body, "deliveries", "message_id");
    assert_eq!(fv.len(), 3, "{body}");

    // Submissions: their own portal's (without the other tenant's deliveries),
    // or one sent to their target; not another tenant's.
    let (status, body) = get(
        &muster,
        format!("{admin}/admin/v1/submissions/{from_muster}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body, "deliveries", "target"), ["dms-demo"]);
    assert!(body["laufzettel"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["target"].is_null() || r["target"] == "dms-demo"));
    let (status, _) = get(
        &kreis,
        format!("{admin}/admin/v1/submissions/{from_muster}"),
    )
    .await;
    assert_eq!(status, 200, "sent to Beispielkreis's target: seen");
    let (status, body) = get(&kreis, format!("{admin}/admin/v1/submissions/{from_kreis}")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&body, "deliveries", "target"), ["fachverfahren-demo"]);
    let (status, _) = get(
        &muster,
        format!("{admin}/admin/v1/submissions/{kreis_only}"),
    )
    .await;
    assert_eq!(
        status, 404,
        "neither its portal nor its target is Musterstadt's"
    );

    // Actions on another tenant's delivery or target answer as if it did not exist.
    let (status, _) = post(
        &muster,
        format!("{admin}/admin/v1/deliveries/{}/park", fv[0]),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &muster,
        format!("{admin}/admin/v1/targets/fachverfahren-demo/pause"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &muster,
        format!("{admin}/admin/v1/targets/fachverfahren-demo/parked/discard?all=true"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(&muster, format!("{admin}/reload")).await;
    assert_eq!(status, 403, "only an operator of all tenants reloads");
    // Their own: done, and audited with their id and the tenant.
    // (An attempt may be running at this moment: then 409, and again.)
    let body = eventually(Duration::from_secs(10), "parked", || async {
        let (status, body) = post(
            &kreis,
            format!("{admin}/admin/v1/deliveries/{}/park", fv[0]),
        )
        .await;
        assert!(status == 200 || status == 409, "{status} {body}");
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body["state"], "parked");
    let mut parked = None;
    for id in [&from_muster, &from_kreis] {
        parked = parked.or(gw
            .store
            .trace(id)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.event == "parked" && r.message_id.as_deref() == Some(fv[0].as_str())));
    }
    let parked = parked.expect("parked record");
    assert_eq!(parked.detail["by"], "op-beispielkreis");
    assert_eq!(parked.detail["tenant"], "beispielkreis");

    // Metrics: only their targets' series.
    let r = muster.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("target=\"dms-demo\""), "{text}");
    assert!(!text.contains("fachverfahren-demo"), "{text}");
    let text = all
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("target=\"fachverfahren-demo\""));

    // Without a certificate: health and readiness only. A portal's certificate is no operator's.
    let anon = anonymous_client();
    for (path, expected) in [
        ("healthz", 200),
        ("readyz", 200),
        ("admin/v1/targets", 403),
        ("metrics", 403),
    ] {
        assert_eq!(
            get(&anon, format!("{admin}/{path}")).await.0,
            expected,
            "{path}"
        );
    }
    let (status, body) = get(
        &portal_client("portal"),
        format!("{admin}/admin/v1/targets"),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("/problems/unknown-client")),
        "{body}"
    );

    // A vendor's certificate manages its own target only: registers it (in
    // its tenant), sees it alone, may not register others or routes.
    let vendor = client_with(&vendor_pem, &vendor_key);
    let registration = |id: &str| {
        serde_json::json!({
            "id": id,
            "certificate": std::fs::read_to_string(demo("recipient-ec.pem")).unwrap(),
            "adapter": {"type": "http", "url": receiver.url(), "server_ca": demo("ca.pem")},
        })
    };
    let r = vendor
        .post(format!("{admin}/admin/v1/targets"))
        .json(&registration("fv-vendor"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tenant"], "beispielkreis", "{body}");
    let r = vendor
        .post(format!("{admin}/admin/v1/targets"))
        .json(&registration("fv-other"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let route = serde_json::json!({"leistung": "99050012104000", "targets": ["fv-vendor"]});
    let r = vendor
        .post(format!("{admin}/admin/v1/routes"))
        .json(&route)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (_, body) = get(&vendor, format!("{admin}/admin/v1/targets")).await;
    assert_eq!(ids(&body, "targets", "id"), ["fv-vendor"]);
    let (status, _) = post(
        &vendor,
        format!("{admin}/admin/v1/targets/fachverfahren-demo/test"),
    )
    .await;
    assert_eq!(status, 404, "not its target");
    // Musterstadt does not see it; Beispielkreis does.
    let (status, _) = get(&muster, format!("{admin}/admin/v1/targets/fv-vendor")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&kreis, format!("{admin}/admin/v1/targets/fv-vendor")).await;
    assert_eq!(status, 200);

    // The CLI with Musterstadt's certificate: the same view, the same refusals.
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--url", &admin])
            .env("OZG_OPERATOR_CERT", &muster_pem)
            .env("OZG_OPERATOR_KEY", &muster_key)
            .env("OZG_GATEWAY_CA", demo("ca.pem"))
            .env_remove("OZG_OPERATOR_CONFIG")
            .env("HOME", certs.path())
            .output()
            .unwrap()
    };
    let out = cli(&["target", "list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("dms-demo") && !stdout.contains("fachverfahren-demo"),
        "{stdout}"
    );
    let out = cli(&["queue", "list", "--state", "all", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["target"] == "dms-demo"),
        "{listed}"
    );
    let out = cli(&["queue", "discard", &fv[1]]);
    assert_eq!(out.status.code(), Some(3), "not theirs: not found; {out:?}");
    let out = cli(&["queue", "show", &kreis_only]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = cli(&["queue", "show", &from_kreis]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("dms-demo") && !stdout.contains("fachverfahren-demo"),
        "{stdout}"
    );
    drop(tc);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_target_stays_paused_across_a_restart_and_delivers_when_resumed() {
    let tc = test_config(&Options {
        delivery: ozg_e2e::FAST_DELIVERY,
        ..Default::default()
    });
    let gw = start_from(&tc).await;
    let admin = format!("http://127.0.0.1:{}", gw.admin_addr.port());
    let http = plain_client();
    let (status, body) = post(
        &http,
        format!("{admin}/admin/v1/targets/dms-demo/pause?reason=DMS%20Wartung"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paused"]["reason"], "DMS Wartung");
    assert_eq!(body["paused"]["by"], "local");
    gw.shutdown().await.unwrap();

    let gw = start_from(&tc).await;
    let admin = format!("http://127.0.0.1:{}", gw.admin_addr.port());
    let (_, body) = get(&http, format!("{admin}/admin/v1/targets/dms-demo")).await;
    assert_eq!(body["paused"]["reason"], "DMS Wartung", "{body}");
    let id = submit("portal", &base_url(gw.ingest_addr), 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        states(&gw, &id).await.get("dms-demo").map(String::as_str),
        Some("pending")
    );
    let (_, status) = get(&http, format!("{admin}/admin/v1/status")).await;
    assert_eq!(
        status["paused"],
        serde_json::json!(["dms-demo"]),
        "{status}"
    );
    let gauge = "ozg_target_paused_by_operator{target=\"dms-demo\"}";
    assert_eq!(metric(gw.admin_addr, gauge).await, 1.0);
    // Its delivery waits, and the gauge of the oldest wait says how long.
    let age = "ozg_target_oldest_waiting_seconds{target=\"dms-demo\"}";
    let waited = metric(gw.admin_addr, age).await;
    assert!((1.0..60.0).contains(&waited), "{waited}");
    let (status, _) = post(&http, format!("{admin}/admin/v1/targets/dms-demo/resume")).await;
    assert_eq!(status, 200);
    assert_eq!(metric(gw.admin_addr, gauge).await, 0.0);
    eventually(
        Duration::from_secs(10),
        "no delivery waits any more",
        || async { (metric(gw.admin_addr, age).await == 0.0).then_some(()) },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "delivered once resumed",
        || async {
            (states(&gw, &id).await.get("dms-demo").map(String::as_str) == Some("delivered"))
                .then_some(())
        },
    )
    .await;
    // Both changes are in the audit log, with who and what.
    let changes: Vec<(String, String)> = audit_records(&gw, "changed")
        .await
        .iter()
        .map(|r| {
            let d = &r["detail"];
            (
                d["change"].as_str().unwrap_or_default().to_owned(),
                d["by"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("paused".to_owned(), "local".to_owned()),
            ("resumed".to_owned(), "local".to_owned())
        ]
    );
    gw.shutdown().await.unwrap();
}

#[test]
fn configs_that_would_show_too_much_are_refused() {
    let tc = test_config(&Options {
        tenants: true,
        ..Default::default()
    });
    let text = std::fs::read_to_string(&tc.path).unwrap();
    // An operator without tenants where tenants are used.
    let no_tenants = text.replace("tenants = [\"*\"]", "");
    std::fs::write(&tc.path, &no_tenants).unwrap();
    let err =
        ozg_gateway::daemon::setup::setup(ozg_gateway::config::Config::load(&tc.path).unwrap())
            .err()
            .expect("refused")
            .to_string();
    assert!(
        err.contains("operators[0].tenants") && err.contains("tenants = [\"*\"]"),
        "{err}"
    );
    // Plain HTTP on a non-loopback address.
    let open = text.replace(
        "listen = \"127.0.0.1:0\"\ntls = false",
        "listen = \"0.0.0.0:0\"\ntls = false",
    );
    assert_ne!(open, text);
    std::fs::write(&tc.path, &open).unwrap();
    let err =
        ozg_gateway::daemon::setup::setup(ozg_gateway::config::Config::load(&tc.path).unwrap())
            .err()
            .expect("refused")
            .to_string();
    assert!(
        err.contains("admin.listen") && err.contains("tls = true"),
        "{err}"
    );
}
