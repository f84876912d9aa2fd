//! The shipped alerting rules (`config/alerts.yml`) and the daemon's metrics,
//! checked by Prometheus's own tool: `promtool check rules`, `promtool test
//! rules` with `config/alerts.test.yml`, and `promtool check metrics` on what a
//! running daemon serves. Every metric a rule uses is one the daemon registers.
//! `.ci/run` installs promtool; without it these tests fail, they do not skip.

use std::io::Write as _;
use std::process::{Command, Stdio};

use ozg_e2e::*;

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (.ci/run unpacks it from Debian's prometheus package)");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_alerting_rules_are_valid_and_fire_as_their_unit_tests_expect() {
    let (ok, text) = promtool(&["check", "rules", "config/alerts.yml"], None);
    assert!(ok, "{text}");
    let (ok, text) = promtool(&["test", "rules", "config/alerts.test.yml"], None);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_metric_a_rule_uses_is_one_the_daemon_registers() {
    let rules = std::fs::read_to_string(repo().join("config/alerts.yml")).unwrap();
    let registered = std::fs::read_to_string(repo().join("gateway/src/core/metrics.rs")).unwrap();
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("ozg_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        // Registered without the prefix; a counter's samples add `_total`.
        let base = name.trim_start_matches("ozg_");
        let base = base.strip_suffix("_total").unwrap_or(base);
        assert!(
            registered.contains(&format!("\"{base}\"")),
            "config/alerts.yml uses {name}, which the daemon does not register"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_daemon_serves_passes_promtool_check_metrics() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_tc, gw) = start(&Options::default()).await;
    let portal = portal_client("portal");
    let req = ozg_gateway::tools::client::SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: b"<antrag/>".to_vec(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    };
    let answer = ozg_gateway::tools::client::submit(&portal, &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202);
    let url = format!("http://{}/metrics", gw.admin_addr);
    let plain = reqwest::get(&url).await.unwrap();
    assert!(plain.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = plain.text().await.unwrap();
    assert!(text.contains("\nozg_ready 1\n"), "{text}");
    assert!(text.contains("\nozg_data_dir_size_bytes "), "{text}");
    let (ok, lint) = promtool(&["check", "metrics"], Some(&text));
    assert!(ok, "{lint}\n{text}");
    // A scraper that asks for OpenMetrics gets it.
    let om = reqwest::Client::new()
        .get(&url)
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.text().await.unwrap().ends_with("# EOF\n"));
    gw.shutdown().await.unwrap();
}
