//! The case statistics (Fallzahlen) and the dashboard, against the real
//! daemon over HTTPS with operators of two tenants: the statistics match a
//! count made directly from the store, in JSON, CSV and through the CLI, and
//! hold no personal data; the dashboard, driven in Debian's chromium, shows a
//! parked delivery to its tenant's operator, who retries it, and nothing of
//! it to another tenant's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::daemon::Gateway;
use ozg_gateway::tools::client::{self, SubmitRequest};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
/// What a portal might carry about an applicant; must never reach statistics or pages.
const MARKER: &str = "Erika-Mustermann-Geheim-4711";

/// A gateway with operators of Musterstadt and Beispielkreis over HTTPS, and
/// Beispielkreis's Fachverfahren answering as `mode` says.
async fn two_tenants(
    certs: &Path,
    mode: Mode,
) -> (Receiver, TestConfig, Gateway, [(PathBuf, PathBuf); 2]) {
    let (extra, operators) = operators(certs);
    let receiver = Receiver::start(mode).await;
    let (tc, gw) = start(&Options {
        receiver_url: receiver.url(),
        delivery: FAST_DELIVERY,
        tenants: true,
        admin_tls: true,
        extra,
        ..Default::default()
    })
    .await;
    (receiver, tc, gw, operators)
}

fn operators(certs: &Path) -> (String, [(PathBuf, PathBuf); 2]) {
    let muster = issue_client(certs, "op-musterstadt");
    let kreis = issue_client(certs, "op-beispielkreis");
    let extra = format!(
        "[[operators]]\nid = \"op-musterstadt\"\ncertificate = \"{}\"\ntenants = [\"musterstadt\"]\n\n[[operators]]\nid = \"op-beispielkreis\"\ncertificate = \"{}\"\ntenants = [\"beispielkreis\"]\n\n[[routes]]\nleistung = \"99115005001000\"\ndestination = \"05999999\"\ntargets = [\"fachverfahren-demo\"]\n",
        muster.0.display(),
        kreis.0.display(),
    );
    (extra, [muster, kreis])
}

async fn submit(stem: &str, base: &str, destination: &str) -> String {
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: destination.into(),
        data: format!("<antrag><name>{MARKER}</name></antrag>").into_bytes(),
        data_media_type: "application/xml".into(),
        attachments: vec![(
            format!("{MARKER}.pdf"),
            "application/pdf".into(),
            b"%PDF-1.4\n%%EOF\n".to_vec(),
        )],
        ..Default::default()
    };
    let a = client::submit(&portal_client(stem), base, &req)
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["submission_id"].as_str().unwrap().to_owned()
}

async fn get_text(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let (status, text) = get_text(c, url).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn count(conn: &rusqlite::Connection, sql: &str) -> u64 {
    conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_statistics_match_the_store_per_tenant_and_hold_no_personal_data() {
    let certs = tempfile::tempdir().unwrap();
    let (_receiver, tc, gw, [(muster_pem, muster_key), (kreis_pem, kreis_key)]) =
        two_tenants(certs.path(), Mode::Accept).await;
    let base = base_url(gw.ingest_addr);
    let admin = format!("https://localhost:{}", gw.admin_addr.port());
    // Musterstadt's portal sends three, Beispielkreis's two; each goes to
    // dms-demo (Musterstadt's) and fachverfahren-demo (Beispielkreis's).
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(submit("portal", &base, "05315000").await);
    }
    for _ in 0..2 {
        ids.push(submit("portal2", &base, "05315000").await);
    }
    for id in &ids {
        eventually(Duration::from_secs(20), "both delivered", || async {
            let s = states(&gw, id).await;
            (s.values().filter(|v| *v == "delivered").count() == 2).then_some(())
        })
        .await;
    }
    let muster = client_with(&muster_pem, &muster_key);
    let kreis = client_with(&kreis_pem, &kreis_key);
    let all = portal_client("operator");

    // Counted directly from the store's rows.
    let db = ozg_gateway::store::embedded::open_read_only(&tc.data_dir).unwrap();
    let from_portal = |p: &str| {
        count(
            &db,
            &format!("SELECT COUNT(*) FROM submissions WHERE portal = '{p}'"),
        )
    };
    let delivered_to = |t: &str| {
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM deliveries WHERE target = '{t}' AND state = 'delivered'"
            ),
        )
    };
    let by = "by=portal,target,tenant,leistung,destination";
    let (status, all_stats) = get(&all, &format!("{admin}/admin/v1/stats?period=day&{by}")).await;
    assert_eq!(status, 200, "{all_stats}");
    assert_eq!(all_stats["time_zone"], "Europe/Berlin");
    assert_eq!(
        all_stats["totals"]["accepted"],
        from_portal("portal-demo") + from_portal("portal2-demo")
    );
    assert_eq!(all_stats["totals"]["accepted"], 5);
    assert_eq!(
        all_stats["totals"]["delivered"],
        delivered_to("dms-demo") + delivered_to("fachverfahren-demo")
    );
    assert!(
        all_stats["totals"]["delivery_median_seconds"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert!(all_stats["totals"]["delivery_p95_seconds"]
        .as_f64()
        .is_some());
    let rows = all_stats["rows"].as_array().unwrap();
    let sum = |rows: &[Value], key: &str, value: &str, field: &str| -> u64 {
        rows.iter()
            .filter(|r| r[key] == value)
            .map(|r| r[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        sum(rows, "portal", "portal-demo", "accepted"),
        from_portal("portal-demo")
    );
    assert_eq!(
        sum(rows, "target", "fachverfahren-demo", "delivered"),
        delivered_to("fachverfahren-demo")
    );
    assert_eq!(sum(rows, "leistung", "99115005001000", "accepted"), 5);
    assert_eq!(
        sum(rows, "tenant", "beispielkreis", "accepted"),
        from_portal("portal2-demo")
    );

    // Musterstadt sees its portal's submissions and its target's deliveries.
    let (_, m) = get(
        &muster,
        &format!("{admin}/admin/v1/stats?period=week&by=portal,target"),
    )
    .await;
    assert_eq!(m["totals"]["accepted"], from_portal("portal-demo"));
    assert_eq!(m["totals"]["delivered"], delivered_to("dms-demo"));
    // (The portal a delivery to its own target came from is shown, as on the
    // submission's page; that portal's submissions are not counted.)
    let text = m.to_string();
    assert!(!text.contains("fachverfahren-demo"), "{text}");
    let rows = m["rows"].as_array().unwrap();
    assert_eq!(sum(rows, "portal", "portal2-demo", "accepted"), 0, "{text}");
    for period in ["hour", "month"] {
        let (_, p) = get(&muster, &format!("{admin}/admin/v1/stats?period={period}")).await;
        assert_eq!(p["totals"]["accepted"], 3, "{period}: {p}");
    }

    // CSV for Beispielkreis.
    let (status, csv) = get_text(
        &kreis,
        &format!("{admin}/admin/v1/stats?period=month&by=target&format=csv"),
    )
    .await;
    assert_eq!(status, 200);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("period,start,target,accepted,delivered,parked,discarded,replied,delivery_median_seconds,delivery_p95_seconds")
    );
    let body: Vec<&str> = lines.collect();
    assert!(
        body.iter()
            .any(|l| l.contains(",fachverfahren-demo,0,5,0,0,")),
        "{csv}"
    );
    assert!(
        body.iter().any(|l| l.contains(",,2,0,0,0,0,,")),
        "accepted has no target: {csv}"
    );
    assert!(!csv.contains("dms-demo"));

    // Bad queries say what is wrong.
    for q in [
        "period=year",
        "by=name",
        "period=hour&by=leistung",
        "from=2026-02-30",
        "format=xml",
        "limit=1",
    ] {
        let (status, body) = get(&all, &format!("{admin}/admin/v1/stats?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
    }

    // The CLI, as the README shows it.
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--url", &admin])
            .arg("--cert")
            .arg(&kreis_pem)
            .arg("--key")
            .arg(&kreis_key)
            .arg("--ca")
            .arg(demo("ca.pem"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let table = cli(&["stats", "--by", "leistung,destination", "--period", "week"]);
    assert!(
        table.contains("99115005001000") && table.contains("05315000") && table.contains("total"),
        "{table}"
    );
    let csv = cli(&["stats", "--by", "target", "--period", "day", "--csv"]);
    assert!(csv.starts_with("period,start,target,accepted"), "{csv}");

    // No personal data or file names anywhere an operator looks.
    let mut seen = vec![all_stats.to_string(), csv, table];
    for path in [
        "/admin/v1/stats?period=hour&by=portal,target".to_owned(),
        "/admin/v1/targets".to_owned(),
        "/admin/v1/deliveries?state=delivered".to_owned(),
        format!("/admin/v1/submissions/{}", ids[0]),
        "/dashboard/".to_owned(),
        "/dashboard/app.js".to_owned(),
    ] {
        let (status, text) = get_text(&all, &format!("{admin}{path}")).await;
        assert_eq!(status, 200, "{path}");
        seen.push(text);
    }
    for text in &seen {
        assert!(
            !text.contains(MARKER),
            "the marker reached an operator's view: {text}"
        );
    }

    // A change a page of another site asks the operator's browser to make is refused.
    let r = kreis
        .post(format!("{admin}/admin/v1/targets/fachverfahren-demo/pause"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (_, t) = get(
        &kreis,
        &format!("{admin}/admin/v1/targets/fachverfahren-demo"),
    )
    .await;
    assert!(t.get("paused").is_none(), "nothing changed: {t}");
    gw.shutdown().await.unwrap();
}

/// Node with playwright-core (`npm ci` in tests/browser) and Debian's
/// chromium, or why not. CI (`OZG_REQUIRE_BROWSER=1`) fails without them.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let script = repo().join("tests/browser/dashboard.mjs");
    let chromium =
        PathBuf::from(std::env::var("OZG_CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    let ready = chromium.exists()
        && repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if ready {
        return Some((script, chromium));
    }
    let why = "the browser test needs node, Debian's chromium and `npm ci --prefix tests/browser`";
    if std::env::var("OZG_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_browser_retries_a_parked_delivery_and_hides_it_from_other_tenants() {
    let Some((script, chromium)) = browser() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    // The Fachverfahren refuses at first: the delivery is parked.
    let (receiver, _tc, gw, [(muster_pem, muster_key), (kreis_pem, kreis_key)]) =
        two_tenants(certs.path(), Mode::Status(422, None)).await;
    let base = base_url(gw.ingest_addr);
    let admin = format!("https://localhost:{}", gw.admin_addr.port());
    // Some history for the charts, then one for Beispielkreis's target only.
    submit("portal", &base, "05315000").await;
    let id = submit("portal2", &base, "05999999").await;
    eventually(Duration::from_secs(20), "parked", || async {
        (states(&gw, &id)
            .await
            .get("fachverfahren-demo")
            .map(String::as_str)
            == Some("parked"))
        .then_some(())
    })
    .await;
    let message_id = ozg_gateway::model::submission::message_id(
        &uuid::Uuid::parse_str(&id).unwrap(),
        "fachverfahren-demo",
    );
    // Parked deliveries wait for an operator: the receiver is mended meanwhile.
    receiver.set_mode(Mode::Accept);
    let out = tempfile::tempdir().unwrap();
    let screenshot = repo().join("target/dashboard.png");
    let job = serde_json::json!({
        "url": admin,
        "chromium": chromium,
        "operator": {"cert": kreis_pem, "key": kreis_key},
        "other": {"cert": muster_pem, "key": muster_key},
        "target": "fachverfahren-demo",
        "message_id": message_id,
        "submission_id": id,
        "error_contains": "422",
        "marker": MARKER,
        "screenshot": screenshot,
    });
    let job_file = out.path().join("job.json");
    std::fs::write(&job_file, job.to_string()).unwrap();
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&job_file)
        .current_dir(repo().join("tests/browser"))
        .output();
    let run = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser finished")
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: Value = serde_json::from_str(&report).unwrap();
    assert!(
        seen["parked_row"]
            .as_str()
            .unwrap()
            .contains("fachverfahren-demo"),
        "{seen}"
    );
    // What the browser did happened: delivered, and audited as the operator's retry.
    assert_eq!(states(&gw, &id).await["fachverfahren-demo"], "delivered");
    let retried = audit_records(&gw, "retried").await;
    assert!(
        retried
            .iter()
            .any(|r| r["message_id"] == message_id.as_str()
                && r["detail"]["by"] == "op-beispielkreis"),
        "{retried:?}"
    );
    eprintln!("dashboard screenshot: {}", screenshot.display());
    gw.shutdown().await.unwrap();
}
