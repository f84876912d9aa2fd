//! Delivery against the real daemon: real TLS to a scripted HTTPS receiver, real
//! files for the filedrop target. Retry delays are milliseconds here (the policy
//! itself is unit-tested with exact values).

use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

fn melde(n: usize) -> SubmitRequest {
    SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: format!("<antrag><nr>{n}</nr></antrag>").into_bytes(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    }
}

async fn submit(gw: &ozg_gateway::daemon::Gateway, req: &SubmitRequest) -> String {
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), req)
        .await
        .expect("sent");
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["submission_id"].as_str().expect("id").to_owned()
}

async fn wait_state(
    gw: &ozg_gateway::daemon::Gateway,
    id: &str,
    target: &str,
    state: &str,
    within: Duration,
) {
    eventually(within, &format!("{target} becomes {state}"), || async {
        (states(gw, id).await.get(target).map(String::as_str) == Some(state)).then_some(())
    })
    .await
}

/// The delivery of submission `id` to the http target, as the store has it now.
async fn http_delivery(
    gw: &ozg_gateway::daemon::Gateway,
    id: &str,
) -> ozg_gateway::model::submission::DeliveryStatus {
    gw.store
        .submission(id)
        .await
        .unwrap()
        .unwrap()
        .deliveries
        .into_iter()
        .find(|d| d.target == "fachverfahren-demo")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_delivers_the_quick_start_to_filedrop_and_http() {
    let receiver = Receiver::start(Mode::Accept).await;
    let repo = repo().canonicalize().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo.join("config/gateway.toml"))
        .unwrap()
        .replace(
            "\"../var\"",
            &format!("\"{}\"", scratch.path().join("var").display()),
        )
        .replace(
            "../var/outbox/dms-demo",
            &scratch.path().join("outbox").display().to_string(),
        )
        .replace("../", &format!("{}/", repo.display()))
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9090", "127.0.0.1:0")
        .replace("127.0.0.1:8444", "127.0.0.1:0")
        .replace("127.0.0.1:8445", "127.0.0.1:0")
        .replace("https://localhost:9443/inbox", &receiver.url());
    let path = scratch.path().join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    let setup =
        ozg_gateway::daemon::setup::setup(ozg_gateway::config::Config::load(&path).unwrap())
            .unwrap();
    let gw = ozg_gateway::daemon::Gateway::start(setup).await.unwrap();

    let mut req = melde(1);
    req.data = std::fs::read(repo.join("schemas/examples/meldebescheinigung.xml")).unwrap();
    req.attachments.push((
        "Nachweis.pdf".into(),
        "application/pdf".into(),
        b"%PDF-1.7 demo".to_vec(),
    ));
    let id = submit(&gw, &req).await;
    for target in ["dms-demo", "fachverfahren-demo"] {
        wait_state(&gw, &id, target, "delivered", Duration::from_secs(20)).await;
    }
    let status = client::status(
        &portal_client("portal"),
        &format!("{}/v1/submissions/{id}", base_url(gw.ingest_addr)),
    )
    .await
    .unwrap();
    let deliveries = status.body["deliveries"].as_array().unwrap();
    assert!(
        deliveries.iter().all(|d| d["state"] == "delivered"),
        "{}",
        status.body
    );
    let http = deliveries
        .iter()
        .find(|d| d["target"] == "fachverfahren-demo")
        .unwrap();
    let mid = http["message_id"].as_str().unwrap();
    assert_eq!(
        http["receipt"],
        format!("receipt-for-{mid}"),
        "the receiver's receipt is kept"
    );
    assert_eq!(receiver.accepted().get(mid), Some(&1));
    let dms = deliveries
        .iter()
        .find(|d| d["target"] == "dms-demo")
        .unwrap();
    let file = scratch
        .path()
        .join("outbox")
        .join(format!("{}.json", dms["message_id"].as_str().unwrap()));
    let envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(envelope["submission_id"], id.as_str());
    assert_eq!(
        metric(
            gw.admin_addr,
            "ozg_deliveries{target=\"dms-demo\",state=\"delivered\"}"
        )
        .await,
        1.0
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_it_after_recovery() {
    let port = free_port();
    let (_tc, gw) = start(&Options {
        receiver_url: format!("https://localhost:{port}/inbox"),
        ..Default::default()
    })
    .await;
    let id = submit(&gw, &melde(1)).await;
    wait_state(&gw, &id, "dms-demo", "delivered", Duration::from_secs(10)).await;
    // Nothing listens: connection refused, retried.
    let attempts = eventually(
        Duration::from_secs(10),
        "several failed attempts",
        || async {
            let d = http_delivery(&gw, &id).await;
            (d.attempts >= 3).then_some(d)
        },
    )
    .await;
    let error = attempts.last_error.as_deref().unwrap_or("");
    assert!(error.starts_with("connect"), "{attempts:?}");
    // Which address, and what the operating system said.
    assert!(
        error.contains(&format!("cannot connect to https://localhost:{port}/"))
            && error.to_lowercase().contains("refused"),
        "{error}"
    );
    // Up, but overloaded: 503 is retried too.
    let receiver = Receiver::start_on(port, Mode::Status(503, None)).await;
    eventually(Duration::from_secs(10), "a 503 was answered", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    receiver.set_mode(Mode::Accept);
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "delivered",
        Duration::from_secs(10),
    )
    .await;
    let received = receiver.received();
    assert!(received.len() >= 2, "{received:?}");
    assert!(
        received.windows(2).all(|w| w[0] == w[1]),
        "every attempt carries the same message_id"
    );
    assert_eq!(receiver.accepted().len(), 1);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_times_out_and_is_retried() {
    let (receiver, _tc, gw) = start_with_receiver(Mode::Hang).await;
    let id = submit(&gw, &melde(1)).await;
    let d = eventually(Duration::from_secs(15), "a timed-out attempt", || async {
        let s = gw.store.submission(&id).await.unwrap().unwrap();
        s.deliveries.into_iter().find(|d| {
            d.target == "fachverfahren-demo"
                && d.last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("timeout"))
        })
    })
    .await;
    assert!(d.attempts >= 1);
    receiver.set_mode(Mode::Accept);
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "delivered",
        Duration::from_secs(15),
    )
    .await;
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_parks_at_once() {
    let (receiver, _tc, gw) = start_with_receiver(Mode::Status(422, None)).await;
    let id = submit(&gw, &melde(1)).await;
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "parked",
        Duration::from_secs(10),
    )
    .await;
    let d = http_delivery(&gw, &id).await;
    assert_eq!(d.attempts, 1, "no retry after a 4xx");
    assert!(
        d.last_error.as_deref().unwrap().starts_with("http-422"),
        "{d:?}"
    );
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(
        metric(gw.admin_addr, "ozg_delivery_attempts_total{target=\"fachverfahren-demo\",outcome=\"parked\",class=\"http-422\"}").await,
        1.0
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_does_not_slow_a_healthy_one() {
    // fachverfahren-demo hangs on every request and occupies all its slots; dms-demo must not care.
    let (_receiver, tc, gw) = start_with_receiver(Mode::Hang).await;
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(submit(&gw, &melde(n)).await);
    }
    let started = tokio::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "all 40 filedrop deliveries",
        || async {
            (files_under(&tc.outbox)
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "json"))
                .count()
                == 40)
                .then_some(())
        },
    )
    .await;
    let healthy = started.elapsed();
    let mut waiting = 0;
    for id in &ids {
        let st = states(&gw, id).await;
        assert_eq!(st["dms-demo"], "delivered");
        if st["fachverfahren-demo"] != "delivered" {
            waiting += 1;
        }
    }
    println!("healthy target: 40 delivered {healthy:?} after the last 202; dead target: {waiting} waiting");
    assert_eq!(waiting, 40, "nothing reached the hanging receiver");
    // The dead target's attempts time out after 2 s each (4 at a time): 40 in line would
    // take 20 s; the healthy target finished long before that.
    assert!(healthy < Duration::from_secs(10), "{healthy:?}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_running_attempts_back_to_pending() {
    let receiver = Receiver::start(Mode::Hang).await;
    let (tc, gw) = start(&Options {
        receiver_url: receiver.url(),
        delivery: r#"
concurrency = 4
attempt_timeout = "30s"
shutdown_grace = "300ms"
"#,
        ..Default::default()
    })
    .await;
    // The http adapter's own timeout in the test config is 1 s; make the attempt outlive the grace period.
    let id = submit(&gw, &melde(1)).await;
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "in_flight",
        Duration::from_secs(5),
    )
    .await;
    gw.shutdown().await.unwrap();
    let store = ozg_gateway::store::embedded::EmbeddedStore::open(&tc.data_dir, 1).unwrap();
    use ozg_gateway::store::Store as _;
    let s = store.submission(&id).await.unwrap().unwrap();
    let d = s
        .deliveries
        .iter()
        .find(|d| d.target == "fachverfahren-demo")
        .unwrap();
    assert_eq!(d.state.as_str(), "pending", "{d:?}");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_receiver_opens_what_the_gateway_delivers() {
    let (port, stop, inbox, receiver) = demo_receiver(None);
    let (_tc, gw) = start(&Options {
        receiver_url: format!("https://localhost:{port}/inbox"),
        ..Default::default()
    })
    .await;
    let mut req = melde(7);
    req.attachments.push((
        "Nachweis.pdf".into(),
        "application/pdf".into(),
        b"%PDF-1.7 x".to_vec(),
    ));
    let id = submit(&gw, &req).await;
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "delivered",
        Duration::from_secs(15),
    )
    .await;
    let mid = ozg_gateway::model::submission::message_id(
        &uuid::Uuid::parse_str(&id).unwrap(),
        "fachverfahren-demo",
    );
    let dir = inbox.path().join(mid);
    assert_eq!(std::fs::read(dir.join("data.xml")).unwrap(), req.data);
    assert_eq!(
        std::fs::read(dir.join("Nachweis.pdf")).unwrap(),
        b"%PDF-1.7 x"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["submission_id"], id.as_str());
    gw.shutdown().await.unwrap();
    let _ = stop.send(());
    receiver.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_envelope_is_parked_not_retried_forever() {
    // The http target is down at first: its delivery waits in the store.
    let (tc, gw) = start(&Options::default()).await;
    let id = submit(&gw, &melde(1)).await;
    wait_state(&gw, &id, "dms-demo", "delivered", Duration::from_secs(10)).await;
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "retry_wait",
        Duration::from_secs(10),
    )
    .await;
    gw.shutdown().await.unwrap();
    // Disk damage while the daemon is down: a byte in every 256 of every segment
    // (each envelope is longer than that).
    let segments = files_under(&tc.data_dir.join("envelopes"));
    assert!(!segments.is_empty());
    for f in &segments {
        let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        for at in (20..file.metadata().unwrap().len()).step_by(256) {
            std::os::unix::fs::FileExt::write_all_at(&file, b"#", at).unwrap();
        }
    }
    // Back up, with the receiver up: the envelope cannot be read, so it is parked
    // with a clear error instead of being retried every second.
    let receiver = Receiver::start(Mode::Accept).await;
    let config = std::fs::read_to_string(&tc.path)
        .unwrap()
        .replace("https://localhost:1/inbox", &receiver.url());
    std::fs::write(&tc.path, config).unwrap();
    let gw = start_from(&tc).await;
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "parked",
        Duration::from_secs(10),
    )
    .await;
    let d = http_delivery(&gw, &id).await;
    let error = d.last_error.as_deref().unwrap();
    assert!(error.contains("damaged on disk"), "{error}");
    assert!(receiver.received().is_empty(), "nothing damaged went out");
    assert_eq!(
        metric(gw.admin_addr, "ozg_delivery_attempts_total{target=\"fachverfahren-demo\",outcome=\"parked\",class=\"envelope-damaged\"}").await,
        1.0
    );
    gw.shutdown().await.unwrap();
}

/// A delivery parked because its retries ran out is audited with the class of its
/// last real failure (here `http-503`), not with the words of giving up; its last
/// error says both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_after_retries_keeps_the_last_real_error_class() {
    let receiver = Receiver::start(Mode::Status(503, None)).await;
    let (_tc, gw) = start(&Options {
        receiver_url: receiver.url(),
        delivery: r#"
concurrency = 4
attempt_timeout = "2s"
shutdown_grace = "1s"
retry = { initial = "50ms", factor = 2.0, cap = "100ms", jitter = 0.1, max_attempts = 2, max_age = "1h" }
breaker = { failures = 1000, open_for = "100ms", max_open_for = "200ms" }
"#,
        ..Default::default()
    })
    .await;
    let id = submit(&gw, &melde(1)).await;
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "parked",
        Duration::from_secs(10),
    )
    .await;
    let d = http_delivery(&gw, &id).await;
    let error = d.last_error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("gave up after 2 attempt(s): http-503"),
        "{error}"
    );
    let trace = gw.store.trace(&id).await.unwrap();
    let parked: Vec<_> = trace
        .iter()
        .filter(|r| r.event == "parked" && r.target.as_deref() == Some("fachverfahren-demo"))
        .collect();
    assert_eq!(parked.len(), 1, "{trace:?}");
    assert_eq!(parked[0].detail["class"], "http-503", "{:?}", parked[0]);
    assert_eq!(parked[0].detail["attempt"], 2);
    let failed: Vec<_> = trace
        .iter()
        .filter(|r| r.event == "attempt_failed")
        .collect();
    assert!(
        failed.iter().all(|r| r.detail["class"] == "http-503"),
        "{failed:?}"
    );
    assert_eq!(
        metric(
            gw.admin_addr,
            "ozg_delivery_attempts_total{target=\"fachverfahren-demo\",outcome=\"parked\",class=\"http-503\"}"
        )
        .await,
        1.0
    );
    gw.shutdown().await.unwrap();
}

/// After a restart no delivery waits longer than the retry cap from now — the
/// case of a clock set back while deliveries waited (their due times then lie far
/// ahead), here made by a receiver asking for 30 minutes with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebases_waits_longer_than_the_retry_cap() {
    let receiver = Receiver::start(Mode::Status(503, Some(1800))).await;
    let (tc, gw) = start(&Options {
        receiver_url: receiver.url(),
        ..Default::default()
    })
    .await;
    let id = submit(&gw, &melde(1)).await;
    let d = eventually(Duration::from_secs(10), "a failed attempt", || async {
        let d = http_delivery(&gw, &id).await;
        (d.state.as_str() == "retry_wait").then_some(d)
    })
    .await;
    assert_eq!(d.attempts, 1);
    gw.shutdown().await.unwrap();

    receiver.set_mode(Mode::Accept);
    let gw = start_from(&tc).await;
    // The cap of the test policy is 200 ms: delivered at once, not in 30 minutes.
    wait_state(
        &gw,
        &id,
        "fachverfahren-demo",
        "delivered",
        Duration::from_secs(10),
    )
    .await;
    gw.shutdown().await.unwrap();
}

/// What a portal reads of a failing delivery is the error's class, never the
/// message (which may name the gateway's hosts or paths); its Idempotency-Key is
/// not stored in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_see_error_classes_and_keys_are_not_stored_in_clear() {
    let (tc, gw) = start(&Options::default()).await;
    let mut req = melde(1);
    req.idempotency_key = Some("AZ-4711-Musterstadt".into());
    let id = submit(&gw, &req).await;
    // Nothing listens at the http target: connection refused, retried. (The
    // attempt counts from its start; wait for its outcome to be recorded.)
    eventually(Duration::from_secs(10), "a failed attempt", || async {
        http_delivery(&gw, &id)
            .await
            .last_error
            .is_some()
            .then_some(())
    })
    .await;
    let status = client::status(
        &portal_client("portal"),
        &format!("{}/v1/submissions/{id}", base_url(gw.ingest_addr)),
    )
    .await
    .unwrap();
    let d = status.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"] == "fachverfahren-demo")
        .cloned()
        .unwrap();
    assert_eq!(d["error_class"], "connect", "{d}");
    assert!(d.get("last_error").is_none(), "{d}");
    // Operators still see the whole message.
    assert!(http_delivery(&gw, &id).await.last_error.is_some());
    gw.shutdown().await.unwrap();
    assert!(
        !dir_contains(&tc.data_dir, b"AZ-4711-Musterstadt"),
        "the Idempotency-Key is stored in clear"
    );
}
