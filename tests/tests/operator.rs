//! The operator's command line against a running daemon: where it finds the
//! gateway and its certificate (settings file, environment), and what it shows
//! of a failing target — next attempt, last error, the paused breaker.

use std::process::Command;
use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

/// Retries a minute apart; the breaker opens at the second failure in a row.
const SLOW_RETRIES: &str = r#"
concurrency = 1
attempt_timeout = "2s"
shutdown_grace = "1s"
retry = { initial = "60s", factor = 2.0, cap = "1h", jitter = 0.0, max_attempts = 100, max_age = "1d" }
breaker = { failures = 2, open_for = "10m", max_open_for = "1h" }
"#;

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI with no operator settings from the environment of the test run.
fn cli(home: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(home).env("HOME", home);
    for var in [
        "OZG_OPERATOR_CONFIG",
        "OZG_GATEWAY_URL",
        "OZG_OPERATOR_CERT",
        "OZG_OPERATOR_KEY",
        "OZG_GATEWAY_CA",
    ] {
        c.env_remove(var);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_next_attempt_last_error_and_a_paused_target() {
    let receiver = Receiver::start(Mode::Status(503, None)).await;
    let (tc, gw) = start(&Options {
        receiver_url: receiver.url(),
        delivery: SLOW_RETRIES,
        ..Default::default()
    })
    .await;
    let base = base_url(gw.ingest_addr);
    let mut ids = Vec::new();
    for n in 0..2 {
        let req = SubmitRequest {
            leistung: "99115005001000".into(),
            destination: "05315000".into(),
            data: format!("<antrag><n>{n}</n></antrag>").into_bytes(),
            data_media_type: "application/xml".into(),
            ..Default::default()
        };
        let a = client::submit(&portal_client("portal"), &base, &req)
            .await
            .unwrap();
        assert_eq!(a.status, 202, "{}", a.body);
        ids.push(a.body["submission_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        eventually(Duration::from_secs(10), "waiting for a retry", || async {
            (states(&gw, id)
                .await
                .get("fachverfahren-demo")
                .map(String::as_str)
                == Some("retry_wait"))
            .then_some(())
        })
        .await;
    }

    // The portal sees when the next attempt is due (not the error message).
    let status = client::status(
        &portal_client("portal"),
        &format!("{base}/v1/submissions/{}", ids[0]),
    )
    .await
    .unwrap();
    let fv = status.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"] == "fachverfahren-demo")
        .unwrap()
        .clone();
    assert!(fv["next_attempt_at"].as_str().is_some(), "{fv}");
    assert_eq!(fv["error_class"], "http-503");
    assert!(fv.get("last_error").is_none(), "{fv}");

    // An operator settings file, found through OZG_OPERATOR_CONFIG; relative
    // paths in it are relative to the file.
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("operator.toml");
    std::fs::copy(demo("operator.pem"), home.path().join("op.pem")).unwrap();
    std::fs::copy(demo("operator.key"), home.path().join("op.key")).unwrap();
    std::fs::write(
        &settings,
        format!(
            "url = \"{base}\"\ncertificate = \"op.pem\"\nkey = \"op.key\"\nca = \"{}\"\n",
            demo("ca.pem").display()
        ),
    )
    .unwrap();
    let (ok, out, err) = run(cli(home.path())
        .args(["show", &ids[0]])
        .env("OZG_OPERATOR_CONFIG", &settings));
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("portal-demo") && out.contains("99115005001000"),
        "{out}"
    );
    assert!(
        out.contains("target fachverfahren-demo: PAUSED (circuit breaker open after 2 failures in a row) until "),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.starts_with("fachverfahren-demo"))
        .expect("a row for the failing target");
    assert!(
        row.contains("retry_wait") && row.contains("http-503"),
        "{row}"
    );
    assert!(
        row.contains(&fv["next_attempt_at"].as_str().unwrap()[..16]),
        "{row}"
    );

    // The environment alone, in the default settings file's place: ~/.config.
    let config_dir = home.path().join(".config/ozg-gateway");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::rename(&settings, config_dir.join("operator.toml")).unwrap();
    std::fs::rename(home.path().join("op.pem"), config_dir.join("op.pem")).unwrap();
    std::fs::rename(home.path().join("op.key"), config_dir.join("op.key")).unwrap();
    let (ok, out, err) = run(cli(home.path())
        .args(["deliveries", "--state", "waiting"])
        .env("OZG_GATEWAY_URL", &base));
    assert!(ok, "{out}{err}");
    assert!(out.contains("PAUSED"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("retry_wait")).count(),
        2,
        "{out}"
    );
    // JSON for scripts.
    let (ok, out, _) = run(cli(home.path()).args(["show", &ids[1], "--json"]));
    assert!(ok, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["breakers"]["fachverfahren-demo"]["state"], "open");
    assert!(json["deliveries"][1]["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("503")));

    // Nothing configured and no checkout: it says what is missing and where to put it.
    let empty = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(cli(empty.path()).arg("deliveries"));
    assert!(!ok);
    assert!(
        err.contains("operator settings incomplete") && err.contains("OZG_GATEWAY_URL"),
        "{err}"
    );
    // An unknown submission is named.
    let (ok, _, err) = run(cli(home.path())
        .args(["show", "nope"])
        .env("OZG_GATEWAY_URL", &base));
    assert!(!ok && err.contains("404 no submission nope"), "{err}");
    drop(tc);
    gw.shutdown().await.unwrap();
}
