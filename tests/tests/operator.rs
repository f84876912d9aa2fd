//! The operator's command line against a running daemon: where it finds the
//! operator API (settings file, environment), what it shows of a failing
//! target — next attempt, last error, the open breaker — and its actions
//! and exit codes.

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
        "OZG_ADMIN_URL",
        "SUDO_USER",
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

    // An operator settings file, found through OZG_OPERATOR_CONFIG, naming
    // the admin listener (plain HTTP on loopback: no certificate needed).
    let admin = format!("http://127.0.0.1:{}", gw.admin_addr.port());
    let home = tempfile::tempdir().unwrap();
    let settings = home.path().join("operator.toml");
    std::fs::write(&settings, format!("url = \"{admin}\"\n")).unwrap();
    let (ok, out, err) = run(cli(home.path())
        .args(["queue", "show", &ids[0]])
        .env("OZG_OPERATOR_CONFIG", &settings));
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("portal-demo") && out.contains("99115005001000"),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.contains(" fachverfahren-demo "))
        .expect("a row for the failing target");
    assert!(
        row.contains("retry_wait") && row.contains("http-503"),
        "{row}"
    );
    assert!(
        row.contains(&fv["next_attempt_at"].as_str().unwrap()[..16]),
        "{row}"
    );
    assert!(
        out.contains("Laufzettel:") && out.contains("attempt_failed"),
        "{out}"
    );

    // The targets: the failing one's breaker is open, its last error shown.
    let (ok, out, err) = run(cli(home.path())
        .args(["target", "list"])
        .env("OZG_ADMIN_URL", &admin));
    assert!(ok, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("fachverfahren-demo"))
        .expect("a row for the failing target");
    assert!(
        row.contains("OPEN until") && row.contains("http-503"),
        "{row}"
    );

    // The default settings file's place (~/.config) and the waiting queue.
    let config_dir = home.path().join(".config/ozg-gateway");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::rename(&settings, config_dir.join("operator.toml")).unwrap();
    let (ok, out, err) = run(cli(home.path()).args(["queue", "list", "--state", "waiting"]));
    assert!(ok, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains("retry_wait")).count(),
        2,
        "{out}"
    );
    // JSON for scripts.
    let (ok, out, _) = run(cli(home.path()).args(["queue", "show", &ids[1], "--json"]));
    assert!(ok, "{out}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["breakers"]["fachverfahren-demo"]["state"], "open");
    let fv_delivery = json["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"] == "fachverfahren-demo")
        .unwrap()
        .clone();
    assert!(fv_delivery["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("503")));
    // `status` says something needs attention (exit 1): a breaker is open.
    let out = cli(home.path()).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("failing      fachverfahren-demo"),
        "{out:?}"
    );

    // Park one, see it parked, then retry every parked one of the target in
    // bulk; the action is audited with the login name given.
    let parked_id = fv_delivery["message_id"].as_str().unwrap().to_owned();
    let (ok, out, err) = run(cli(home.path())
        .args(["queue", "park", &parked_id])
        .env("USER", "nachtdienst"));
    assert!(ok, "{out}{err}");
    let (ok, out, _) = run(cli(home.path()).args(["queue", "list", "--state", "parked", "--json"]));
    assert!(ok);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        listed["deliveries"][0]["message_id"],
        parked_id.as_str(),
        "{listed}"
    );
    let trace = gw.store.trace(&ids[1]).await.unwrap();
    let parked = trace.iter().rev().find(|r| r.event == "parked").unwrap();
    assert_eq!(
        parked.detail["by"], "local:nachtdienst",
        "{:?}",
        parked.detail
    );
    // Parking a parked delivery is refused (exit 1); a bulk action needs its flag.
    let out = cli(home.path())
        .args(["queue", "park", &parked_id])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let refused = plain_client()
        .post(format!(
            "{admin}/admin/v1/targets/fachverfahren-demo/parked/retry"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let (ok, out, err) = run(cli(home.path()).args([
        "queue",
        "retry",
        "--target",
        "fachverfahren-demo",
        "--all-parked",
    ]));
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 touched"), "{out}");
    // Due now: pending, in flight or (failed again) waiting; no longer parked.
    let now = states(&gw, &ids[1]).await;
    assert!(
        matches!(
            now.get("fachverfahren-demo").map(String::as_str),
            Some("pending" | "in_flight" | "retry_wait")
        ),
        "{now:?}"
    );

    // An unknown submission is named, with exit code 3.
    let out = cli(home.path())
        .args(["queue", "show", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404 no submission nope"),
        "{out:?}"
    );
    // A gateway that is not there: exit code 4.
    let out = cli(home.path())
        .args(["status", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    drop(tc);
    gw.shutdown().await.unwrap();
}
