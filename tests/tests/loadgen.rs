//! `ozg-gateway loadgen` for a newcomer: against a gateway that does not route
//! the profile's Leistung it finds one the gateway takes (and says so), or
//! explains the refusal and the option to set; refusals during a run are
//! reported by their problem type.

use std::path::Path;
use std::process::Command;

use ozg_e2e::*;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

/// Runs the load generator against `gw` from the directory `cwd`.
fn loadgen_in(
    cwd: &Path,
    gw: &ozg_gateway::daemon::Gateway,
    extra: &[&str],
) -> (bool, String, String) {
    let out = Command::new(BIN)
        .current_dir(cwd)
        .arg("loadgen")
        .args(["--url", &base_url(gw.ingest_addr)])
        .args(["--admin", &format!("http://{}", gw.admin_addr)])
        .arg("--cert")
        .arg(demo("portal.pem"))
        .arg("--key")
        .arg(demo("portal.key"))
        .arg("--ca")
        .arg(demo("ca.pem"))
        .args(["--json", "--connections", "2"])
        .args(extra)
        .output()
        .expect("the gateway binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// … from a directory without example data.
fn loadgen(gw: &ozg_gateway::daemon::Gateway, extra: &[&str]) -> (bool, String, String) {
    let elsewhere = tempfile::tempdir().unwrap();
    loadgen_in(elsewhere.path(), gw, extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_picks_a_leistung_the_gateway_takes_or_says_why_not() {
    let (_tc, gw) = start(&Options::default()).await;

    // The small profile's Leistung is no Leistung of this portal: the routes
    // are tried; the first (a JSON schema) refuses XML, the second takes it.
    let (ok, out, err) = loadgen(&gw, &["--count", "10"]);
    assert!(ok, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["leistung"], "99115005001000", "{report}");
    assert_eq!(report["accepted"], 10, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    let note = report["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("99000000000001") && note.contains("--leistung"),
        "{note}"
    );

    // A Leistung the user names is not replaced: the refusal and the fix are said.
    let (ok, out, err) = loadgen(&gw, &["--count", "5", "--leistung", "99999999999999"]);
    assert!(!ok, "{out}");
    assert!(err.contains("422 no-route"), "{err}");
    assert!(err.contains("fix:") && err.contains("--leistung"), "{err}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_during_a_run_are_reported_by_their_problem_type() {
    let (_tc, gw) = start(&Options {
        limits: "portal_rate = 5",
        ..Default::default()
    })
    .await;
    let (ok, out, err) = loadgen(
        &gw,
        &[
            "--count",
            "60",
            "--leistung",
            "99115005001000",
            "--destination",
            "05315000",
        ],
    );
    assert!(ok, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let limited = report["refusals"]["portal-rate-limited"]
        .as_u64()
        .unwrap_or(0);
    assert!(limited > 0, "{report}");
    assert_eq!(report["refused"].as_u64(), Some(limited), "{report}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_shipped_config_it_sends_the_example_data_a_schema_takes() {
    // config/gateway.toml as shipped, on free ports and a scratch data directory.
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = repo().canonicalize().unwrap();
    let mut text = std::fs::read_to_string(repo_dir.join("config/gateway.toml"))
        .unwrap()
        .replace("\"../var", &format!("\"{}/var", dir.path().display()))
        .replace("\"../", &format!("\"{}/", repo_dir.display()));
    for port in ["8443", "9090", "8444", "8445"] {
        text = text.replace(
            &format!("127.0.0.1:{port}\""),
            &format!("127.0.0.1:{}\"", free_port()),
        );
    }
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let config = ozg_gateway::config::Config::load(&path).expect("the shipped config parses");
    let setup = ozg_gateway::daemon::setup::setup(config).expect("and is valid");
    let gw = ozg_gateway::daemon::Gateway::start(setup).await.unwrap();

    // From a checkout, as the README's newcomer runs it: neither profile's
    // Leistung is the demo portal's, every route has a schema; the example
    // data of the Hundesteuer form is what its schema takes.
    let (ok, out, err) = loadgen_in(&repo_dir, &gw, &["--count", "10"]);
    assert!(ok, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["accepted"], 10, "{report}");
    assert_eq!(report["refused"], 0, "{report}");
    assert_eq!(report["leistung"], "99050012104000", "{report}");
    assert!(
        report["note"]
            .as_str()
            .is_some_and(|n| n.contains("schemas/examples/hundesteuer.json")),
        "{report}"
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_are_held_and_nothing_of_them_is_stored() {
    let (_tc, gw) = start(&Options::default()).await;
    let (ok, out, err) = loadgen(
        &gw,
        &[
            "--stall",
            "--duration",
            "2s",
            "--leistung",
            "99115005001000",
        ],
    );
    assert!(ok, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    assert_eq!(report["held"], 2, "{report}");
    assert_eq!(report["refused"], serde_json::json!({}), "{report}");
    assert!(
        audit_records(&gw, "received").await.is_empty(),
        "an upload that never ended is no submission"
    );
    gw.shutdown().await.unwrap();
}
