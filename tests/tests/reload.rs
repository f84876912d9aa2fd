//! Reloading the config of a running daemon (SIGHUP and `ozg-gateway reload`):
//! what changes takes effect without a restart, a bad config is refused and
//! the one in force stays, and a reload that took effect is audited.

use std::process::Command;
use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

fn request(leistung: &str, destination: &str) -> SubmitRequest {
    SubmitRequest {
        leistung: leistung.into(),
        destination: destination.into(),
        data: b"<antrag><n>1</n></antrag>".to_vec(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    }
}

fn reload_cli(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["reload", "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_portals_routes_and_targets_without_a_restart() {
    let ingest_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port: free_port(),
        ..Default::default()
    });
    let daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let base = base_url(daemon.ingest);
    let portal2 = portal_client("portal2");
    let submit = |client: reqwest::Client, req: SubmitRequest| {
        let base = base.clone();
        async move { client::submit(&client, &base, &req).await.unwrap() }
    };
    // Before: portal2 may submit only for destinations 05*; Leistung
    // 99444444444444 exists nowhere.
    let refused = submit(portal2.clone(), request("99115005001000", "06411000")).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let original = std::fs::read_to_string(&tc.path).unwrap();

    // A config with a syntax error: refused, the one in force stays — by the
    // CLI before it asks, and by the daemon on SIGHUP (it keeps running).
    std::fs::write(&tc.path, original.replace("[[routes]]", "[[routes]")).unwrap();
    let (ok, said) = reload_cli(&tc.path);
    assert!(!ok, "{said}");
    assert!(
        said.contains("reload refused") && said.contains("the config in force stays"),
        "{said}"
    );
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = submit(
        portal_client("portal"),
        request("99115005001000", "05315000"),
    )
    .await;
    assert_eq!(
        still.status, 202,
        "the daemon runs on with the old config: {}",
        still.body
    );
    // A certificate that does not exist: the daemon's own check refuses it.
    std::fs::write(
        &tc.path,
        original.replace("portal2.pem", "portal3-missing.pem"),
    )
    .unwrap();
    let (ok, said) = reload_cli(&tc.path);
    assert!(!ok, "{said}");
    assert!(
        said.contains("file not found") && said.contains("portal3-missing.pem"),
        "{said}"
    );

    // A change of what is read at start only: refused, naming the key.
    let changed_cap = original.replacen(
        &format!("max_connections = {}", Options::default().max_connections),
        "max_connections = 77",
        1,
    );
    std::fs::write(&tc.path, &changed_cap).unwrap();
    let (ok, said) = reload_cli(&tc.path);
    assert!(!ok, "{said}");
    assert!(said.contains("ingest.limits.max_connections"), "{said}");

    // Portal2 for every destination, a new target with its own drop directory,
    // and a route for a new Leistung to it; then SIGHUP.
    let outbox2 = tc.dir.path().join("outbox2");
    let new = original
        .replacen("destinations = [\"05*\"]", "destinations = [\"*\"]", 1)
        .replace(
            "leistungen = [\"99115005001000\"]",
            "leistungen = [\"99115005001000\", \"99444444444444\"]",
        )
        + &format!(
            "\n[targets.dms2-demo]\ncertificate = \"{}\"\nadapter = {{ type = \"filedrop\", dir = \"{}\" }}\n\n[[routes]]\nleistung = \"99444444444444\"\ntargets = [\"dms2-demo\"]\n",
            demo("recipient-rsa.pem").display(),
            outbox2.display()
        );
    std::fs::write(&tc.path, new).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let accepted = eventually(
        Duration::from_secs(10),
        "portal2 may send to 06411000",
        || {
            let portal2 = portal2.clone();
            let submit = &submit;
            async move {
                let a = submit(portal2, request("99115005001000", "06411000")).await;
                (a.status == 202).then_some(a)
            }
        },
    )
    .await;
    assert!(accepted.body["submission_id"].is_string());
    // The new target runs: the new Leistung arrives in its directory.
    let to_new = submit(portal2.clone(), request("99444444444444", "05315000")).await;
    assert_eq!(to_new.status, 202, "{}", to_new.body);
    eventually(
        Duration::from_secs(10),
        "delivered to the new target",
        || async {
            (files_under(&outbox2)
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "json"))
                .count()
                == 1)
                .then_some(())
        },
    )
    .await;
    // The same again through the CLI: nothing new to start, every target updated.
    let (ok, said) = reload_cli(&tc.path);
    assert!(ok, "{said}");
    assert!(
        said.contains("\"updated\"") && said.contains("dms2-demo"),
        "{said}"
    );

    // Back to the original: portal2's keep-alive connection is refused at its
    // next request, the new target stops.
    std::fs::write(
        &tc.path,
        original.replacen(
            "[[portals]]\nid = \"portal2-demo\"",
            "[[portals]]\nid = \"portal2-renamed\"",
            1,
        ),
    )
    .unwrap();
    let (ok, said) = reload_cli(&tc.path);
    assert!(ok, "{said}");
    assert!(
        said.contains("\"stopped\"") && said.contains("dms2-demo"),
        "{said}"
    );
    let renamed = submit(portal2.clone(), request("99115005001000", "05315000")).await;
    assert_eq!(renamed.status, 202, "{}", renamed.body);
    let status = client::status(
        &portal2,
        &format!(
            "{base}/v1/submissions/{}",
            renamed.body["submission_id"].as_str().unwrap()
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        status.status, 200,
        "the same certificate, now portal2-renamed"
    );
    let old_id = accepted.body["submission_id"].as_str().unwrap();
    let other = client::status(&portal2, &format!("{base}/v1/submissions/{old_id}"))
        .await
        .unwrap();
    assert_eq!(
        other.status, 404,
        "portal2-demo's submission is not portal2-renamed's"
    );

    // Audited: the reloads that took effect, with what changed.
    daemon.kill_9();
    let db = rusqlite::Connection::open(tc.data_dir.join("gateway.db")).unwrap();
    let records: Vec<String> = db
        .prepare("SELECT record FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let reloads: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::from_str::<serde_json::Value>(r).unwrap())
        .filter(|r| r["event"] == "reloaded")
        .collect();
    assert_eq!(
        reloads.len(),
        3,
        "three reloads took effect, three were refused"
    );
    assert_eq!(
        reloads[0]["detail"]["changes"]["targets"]["started"],
        serde_json::json!(["dms2-demo"])
    );
    assert!(reloads[0]["detail"]["config_sha256"]
        .as_str()
        .is_some_and(|h| h.len() == 64));
    assert_eq!(
        reloads[2]["detail"]["changes"]["portals"],
        serde_json::json!({"added": ["portal2-renamed"], "removed": ["portal2-demo"]})
    );
    assert_eq!(
        reloads[2]["detail"]["changes"]["targets"]["stopped"],
        serde_json::json!(["dms2-demo"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_server_certificate_is_taken_without_a_restart() {
    use ozg_gateway::tools::client::{http_client, PortalIdentity};
    use ozg_gateway::tools::demo_pki::{Algorithm, DemoCa, Usage};
    let ingest_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port: free_port(),
        ..Default::default()
    });
    // The server's certificate from a copy, as an operator's renewal replaces it.
    let (cert, key) = (tc.dir.path().join("tls.pem"), tc.dir.path().join("tls.key"));
    std::fs::copy(demo("server.pem"), &cert).unwrap();
    std::fs::copy(demo("server.key"), &key).unwrap();
    let original = std::fs::read_to_string(&tc.path).unwrap();
    let config = original
        .replace(
            &demo("server.pem").display().to_string(),
            &cert.display().to_string(),
        )
        .replace(
            &demo("server.key").display().to_string(),
            &key.display().to_string(),
        );
    assert_ne!(config, original);
    std::fs::write(&tc.path, &config).unwrap();
    let daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let base = base_url(daemon.ingest);

    // The renewed certificate comes from another CA, so a client that trusts
    // only that one tells which certificate the listener presents.
    let renewed_ca = DemoCa::generate("renewed server CA", 1).unwrap();
    let renewed = renewed_ca
        .issue("localhost", Usage::Server, Algorithm::EcP256, 1)
        .unwrap();
    let renewed_ca_file = tc.dir.path().join("renewed-ca.pem");
    std::fs::write(&renewed_ca_file, renewed_ca.cert_pem()).unwrap();
    let trusting_renewed = http_client(&PortalIdentity {
        cert: demo("portal.pem"),
        key: demo("portal.key"),
        ca: renewed_ca_file,
    })
    .unwrap();
    let status_url = format!("{base}/v1/submissions/unknown");
    assert!(
        trusting_renewed.get(&status_url).send().await.is_err(),
        "the old certificate is presented before the reload"
    );
    std::fs::write(&cert, &renewed.cert_pem).unwrap();
    std::fs::write(&key, &renewed.key_pem).unwrap();
    let (ok, said) = reload_cli(&tc.path);
    assert!(ok, "{said}");
    let answer = trusting_renewed.get(&status_url).send().await.unwrap();
    assert_eq!(
        answer.status().as_u16(),
        404,
        "new connections get the renewed certificate"
    );
    drop(daemon);
}
