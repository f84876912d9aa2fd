//! The vendors' conformance kit (`ozg-gateway conformance http`) passes
//! against the demo receiver, its reference, and names the case each
//! deliberately broken receiver fails.

use std::process::Command;

use ozg_e2e::*;
use ozg_gateway::tools::demo_receiver::Broken;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

/// A demo receiver on a free port, misbehaving as `broken` says.
fn receiver(broken: Option<Broken>) -> (u16, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let (port, stop, inbox, _) = demo_receiver(broken);
    (port, stop, inbox)
}

/// Runs the kit against the receiver on `port` as a vendor would; its exit
/// code and JSON report.
async fn kit(port: u16, large_mib: &'static str) -> (Option<i32>, serde_json::Value) {
    // The receiver's port answers before the kit starts.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = format!("https://localhost:{port}");
    let mut kit = Command::new(BIN);
    kit.args(["conformance", "http", "--json"])
        .args(["--url", &format!("{url}/inbox")])
        .arg("--server-ca")
        .arg(demo("ca.pem"))
        .args(demo_keys())
        .args(["--count-url", &format!("{url}/count")])
        .args(["--large-mib", large_mib, "--hold-secs", "1"]);
    run_kit(kit).await
}

/// The demo recipient certificate, the demo seal, and another key of the
/// same PKI (the portal's) for the forged-seal case.
fn demo_keys() -> Vec<std::ffi::OsString> {
    let mut args = Vec::new();
    for (flag, file) in [
        ("--recipient-cert", "recipient-ec.pem"),
        ("--seal-cert", "seal.pem"),
        ("--seal-key", "seal.key"),
        ("--forger-cert", "portal.pem"),
        ("--forger-key", "portal.key"),
    ] {
        args.push(flag.into());
        args.push(demo(file).into_os_string());
    }
    args
}

/// Runs the kit's command line as a vendor would; its exit code and JSON report.
async fn run_kit(mut command: Command) -> (Option<i32>, serde_json::Value) {
    let out = tokio::task::spawn_blocking(move || command.output().expect("the kit runs"))
        .await
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// The names of the cases that failed.
fn failed(report: &serde_json::Value) -> Vec<String> {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["case"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_receiver_passes_every_case_of_the_kit() {
    let (port, stop, inbox) = receiver(None);
    let (code, report) = kit(port, "30").await;
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["passed"], 8, "{report:#}");
    let duplicate = &report["cases"][1];
    assert_eq!(duplicate["case"], "duplicate");
    assert!(
        duplicate["got"]
            .as_str()
            .unwrap()
            .contains("passed on once"),
        "{report:#}"
    );
    // What it took is on disk, opened: the valid, the large and the slow one.
    let stored = std::fs::read_dir(inbox.path()).unwrap().count();
    assert_eq!(stored, 3, "{report:#}");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_receiver_fails_the_case_that_names_its_fault() {
    for (broken, cases) in [
        (
            Broken::AcceptTampered,
            &[
                "tampered-ciphertext",
                "forged-seal",
                "wrong-recipient",
                "hash-mismatch",
            ][..],
        ),
        (
            Broken::RetryOnRefusal,
            &[
                "tampered-ciphertext",
                "forged-seal",
                "wrong-recipient",
                "hash-mismatch",
            ][..],
        ),
        (Broken::StoreDuplicates, &["duplicate"][..]),
        (Broken::RejectLarge, &["large"][..]),
        (Broken::Early200, &["slow-read"][..]),
    ] {
        let (port, stop, _inbox) = receiver(Some(broken));
        let (code, report) = kit(port, "20").await;
        assert_eq!(code, Some(1), "{broken:?}: {report:#}");
        let mut got = failed(&report);
        if broken == Broken::Early200 {
            // It answers everything before reading it: the refusals fail too.
            got.retain(|c| c == "slow-read");
        }
        assert_eq!(got, cases, "{broken:?}: {report:#}");
        if broken == Broken::RetryOnRefusal {
            let tampered = &report["cases"][2];
            assert!(
                tampered["got"].as_str().unwrap().contains("would retry"),
                "{report:#}"
            );
            assert!(
                tampered["why"]
                    .as_str()
                    .unwrap()
                    .contains("retried in vain"),
                "{report:#}"
            );
        }
        let _ = stop.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_takes_a_target_of_the_gateways_config() {
    let (port, stop, _inbox) = receiver(None);
    let tc = test_config(&Options {
        receiver_url: format!("https://localhost:{port}/inbox"),
        ..Options::default()
    });
    let path = tc.path.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["conformance", "http", "--target", "fachverfahren-demo"])
            .arg("--config")
            .arg(&path)
            // The test config gives the target a 1 s timeout.
            .args(["--large-mib", "1", "--hold-secs", "0"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("8 of 8 cases passed"), "{text}");
    assert!(
        text.contains(&format!("https://localhost:{port}/inbox")),
        "{text}"
    );
    // Without --count-url the report says the second delivery was not checked.
    assert!(text.contains("not checked (give --count-url)"), "{text}");

    // A target that is not delivered over http is named, nothing is sent.
    let path = tc.path.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["conformance", "http", "--target", "dms-demo", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not delivered over http"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = stop.send(());
}

/// A demo receiver consuming from a fresh queue bound to a fresh exchange
/// with key `fv`, misbehaving as `broken` says: the exchange, the result
/// queue, and what stops its HTTPS side.
async fn amqp_consumer(
    broken: Option<Broken>,
) -> (String, String, tokio::sync::oneshot::Sender<()>) {
    let channel = amqp_channel().await;
    let exchange = format!("conformance-{}", uuid::Uuid::new_v4());
    let (queue, results) = (format!("{exchange}-in"), format!("{exchange}-results"));
    amqp_declare(&channel, &exchange, &queue, "fv").await;
    let (_port, stop, _inbox, _) = demo_receiver_with(
        broken,
        Some(ozg_gateway::tools::demo_receiver::AmqpInbox {
            url: AMQP_URL.into(),
            queue,
            results: results.clone(),
        }),
        None,
    );
    (exchange, results, stop)
}

/// Runs `conformance amqp` against a demo receiver consuming from a fresh
/// queue, misbehaving as `broken` says; its exit code and JSON report.
async fn amqp_kit(broken: Option<Broken>) -> (Option<i32>, serde_json::Value) {
    let (exchange, results, stop) = amqp_consumer(broken).await;
    let mut kit = Command::new(BIN);
    kit.args(["conformance", "amqp", "--json", "--url", AMQP_URL])
        .args(["--exchange", &exchange, "--routing-key", "fv"])
        .args(demo_keys())
        .args([
            "--results",
            &results,
            "--large-mib",
            "20",
            "--wait-secs",
            "20",
        ]);
    let outcome = run_kit(kit).await;
    let _ = stop.send(());
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_consumer_is_checked_through_its_reports() {
    let (code, report) = amqp_kit(None).await;
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(
        (code, report["passed"].as_u64()),
        (Some(0), Some(7)),
        "{report:#}"
    );
    let (code, report) = amqp_kit(Some(Broken::StoreDuplicates)).await;
    assert_eq!(code, Some(1));
    assert_eq!(failed(&report), ["duplicate"], "{report:#}");
    let (code, report) = amqp_kit(Some(Broken::AcceptTampered)).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        failed(&report),
        [
            "tampered-ciphertext",
            "forged-seal",
            "wrong-recipient",
            "hash-mismatch"
        ],
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amqp_kit_takes_a_target_of_the_gateways_config() {
    let (exchange, results, stop) = amqp_consumer(None).await;
    let tc = test_config(&Options {
        amqp: Some((exchange.clone(), "fv".into())),
        ..Options::default()
    });
    let mut kit = Command::new(BIN);
    kit.args(["conformance", "amqp", "--json", "--target", "amqp-demo"])
        .arg("--config")
        .arg(&tc.path)
        // The test config gives the target a 2 s confirm timeout.
        .args([
            "--results",
            &results,
            "--large-mib",
            "4",
            "--wait-secs",
            "20",
        ]);
    let (code, report) = run_kit(kit).await;
    let _ = stop.send(());
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(code, Some(0), "{report:#}");
    assert!(
        report["url"].as_str().unwrap().contains(&exchange),
        "{report:#}"
    );
}

/// Runs `conformance xta` from a test config with an `xta` target whose
/// reader is a demo receiver reading the kit's box with the reader's demo
/// certificate, misbehaving as `broken` says; its exit code and JSON report.
async fn xta_kit(broken: Option<Broken>, wait_secs: &str) -> (Option<i32>, serde_json::Value) {
    let (xta_port, results_port) = (free_port(), free_port());
    let tc = test_config(&Options {
        extra: format!(
            "[xta]\nlisten = \"127.0.0.1:{xta_port}\"\n\n[targets.xta-demo]\ncertificate = \"{}\"\nadapter = {{ type = \"xta\", account = \"fachverfahren-demo\", certificate = \"{}\" }}\n",
            demo("recipient-ec.pem").display(),
            demo("fachverfahren.pem").display()
        ),
        ..Options::default()
    });
    let (_port, stop, _inbox, _) = demo_receiver_with(
        broken,
        None,
        Some(ozg_gateway::tools::demo_receiver::XtaInbox {
            url: format!("https://localhost:{xta_port}/xta"),
            ca: demo("ca.pem"),
            cert: demo("fachverfahren.pem"),
            key: demo("fachverfahren.key"),
            account: "fachverfahren-demo".into(),
            results: format!("http://127.0.0.1:{results_port}/results"),
        }),
    );
    let mut kit = Command::new(BIN);
    kit.args(["conformance", "xta", "--json", "--target", "xta-demo"])
        .arg("--config")
        .arg(&tc.path)
        .args(["--results-listen", &format!("127.0.0.1:{results_port}")])
        .args(["--large-mib", "12", "--wait-secs", wait_secs])
        .args(["--forger-cert", demo("portal.pem").to_str().unwrap()])
        .args(["--forger-key", demo("portal.key").to_str().unwrap()]);
    let outcome = run_kit(kit).await;
    let _ = stop.send(());
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xta_client_is_checked_by_what_it_reported_and_closed() {
    let (code, report) = xta_kit(None, "60").await;
    assert_eq!(failed(&report), Vec::<String>::new(), "{report:#}");
    assert_eq!(
        (code, report["passed"].as_u64()),
        (Some(0), Some(7)),
        "{report:#}"
    );
    for case in report["cases"].as_array().unwrap() {
        assert!(
            case["got"].as_str().unwrap().ends_with(", closed"),
            "{case:#}"
        );
    }
    let (code, report) = xta_kit(Some(Broken::StoreDuplicates), "60").await;
    assert_eq!(code, Some(1));
    assert_eq!(failed(&report), ["duplicate"], "{report:#}");
    let (code, report) = xta_kit(Some(Broken::AcceptTampered), "60").await;
    assert_eq!(code, Some(1));
    assert_eq!(
        failed(&report),
        [
            "tampered-ciphertext",
            "forged-seal",
            "wrong-recipient",
            "hash-mismatch"
        ],
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xta_client_that_never_closes_fails_every_case() {
    let (code, report) = xta_kit(Some(Broken::LeaveOpen), "8").await;
    assert_eq!(code, Some(1));
    assert_eq!(report["passed"].as_u64(), Some(0), "{report:#}");
    let duplicate = &report["cases"][1];
    assert_eq!(duplicate["case"], "duplicate");
    assert!(
        duplicate["got"]
            .as_str()
            .unwrap()
            .starts_with("not offered"),
        "{duplicate:#}"
    );
    // Fetched again and again, it is taken once, then a duplicate: never closed.
    for case in report["cases"].as_array().unwrap() {
        if case["case"] != "duplicate" {
            assert!(
                case["got"].as_str().unwrap().contains(", left in the box"),
                "{case:#}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_xta_kit_refuses_a_target_that_is_no_message_box() {
    let tc = test_config(&Options::default());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["conformance", "xta", "--target", "dms-demo", "--config"])
            .arg(&tc.path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a message box"), "{err}");
}
