//! The crash oracle: the daemon runs as a child process under continuous load and
//! is killed with SIGKILL at random moments; every submission that got a `202`
//! must reach a receiver that deduplicates by `message_id`. Prints the counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
const KILLS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing() {
    let receiver = Receiver::start(Mode::Accept).await;
    let ingest_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port: free_port(),
        receiver_url: receiver.url(),
        ..Default::default()
    });
    let mut rng = Rng::from_clock();
    let mut daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let base = format!("https://localhost:{ingest_port}");

    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (accepted, stop, base) = (accepted.clone(), stop.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let portal = portal_client("portal");
                let req = SubmitRequest {
                    leistung: "99115005001000".into(),
                    destination: "05315000".into(),
                    data: format!("<antrag><w>{w}</w><n>{n}</n></antrag>").into_bytes(),
                    data_media_type: "application/xml".into(),
                    ..Default::default()
                };
                match client::submit(&portal, &base, &req).await {
                    Ok(a) if a.status == 202 => {
                        accepted
                            .lock()
                            .unwrap()
                            .push(a.body["submission_id"].as_str().unwrap().to_owned());
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }));
    }
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        daemon.kill_9();
        daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 50,
        "too little load to mean anything: {}",
        accepted.len()
    );

    let expected: HashMap<String, String> = accepted
        .iter()
        .map(|id| {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            (
                ozg_gateway::model::submission::message_id(&uuid, "fachverfahren-demo"),
                id.clone(),
            )
        })
        .collect();
    let files: Vec<String> = accepted
        .iter()
        .map(|id| {
            ozg_gateway::model::submission::message_id(
                &uuid::Uuid::parse_str(id).unwrap(),
                "dms-demo",
            )
        })
        .collect();
    let lost = eventually(Duration::from_secs(90), "the queue drains", || async {
        let got = receiver.accepted();
        let missing_http = expected.keys().filter(|m| !got.contains_key(*m)).count();
        let missing_files = files
            .iter()
            .filter(|m| !tc.outbox.join(format!("{m}.json")).exists())
            .count();
        (missing_http == 0 && missing_files == 0).then_some(missing_http + missing_files)
    })
    .await;
    let got = receiver.accepted();
    let duplicates: usize = got.values().map(|c| c - 1).sum();
    let unexpected = got.keys().filter(|m| !expected.contains_key(*m)).count();
    println!(
        "crash oracle: {KILLS} x kill -9; {} accepted (202); http receiver: {} distinct message_ids, {duplicates} duplicate deliveries (same message_id), {unexpected} stored without a 202; filedrop: {} files; lost: {lost}",
        accepted.len(),
        got.len(),
        files.len()
    );
    assert_eq!(lost, 0);

    // Every accepted submission has its record and both deliveries are recorded. A
    // target may hold the envelope a moment before the daemon commits `delivered`, so
    // the records are awaited, not expected at the instant the receivers have it.
    let conn = ozg_gateway::store::embedded::open_read_only(&tc.data_dir).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let incomplete = accepted.iter().find_map(|id| {
            let events: Vec<String> = ozg_gateway::store::embedded::read_trace(&conn, id)
                .unwrap()
                .into_iter()
                .map(|r| r.event)
                .collect();
            let complete = events.first().map(String::as_str) == Some("received")
                && events.iter().filter(|e| *e == "delivered").count() == 2;
            (!complete).then(|| format!("{id}: {events:?}"))
        });
        match incomplete {
            None => break,
            Some(what) => assert!(
                std::time::Instant::now() < deadline,
                "not recorded within 30 s: {what}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);
    daemon.kill_9();

    // The audit log survived the kills intact.
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    println!(
        "audit after the kills: {}",
        text.lines().next().unwrap_or_default()
    );
}
