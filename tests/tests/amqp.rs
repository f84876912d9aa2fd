//! The amqp adapter against the real local RabbitMQ.

use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::daemon::Gateway;
use ozg_gateway::model::submission::DeliveryStatus;
use ozg_gateway::tools::client::{self, SubmitRequest};

const MARKER: &str = "AMQP-MARKER-Erika";

fn names(test: &str) -> (String, String) {
    let tag = format!("{}-{test}-{}", std::process::id(), free_port());
    (format!("ozg-test-x-{tag}"), format!("ozg-test-q-{tag}"))
}

fn req(n: usize) -> SubmitRequest {
    SubmitRequest {
        leistung: "99888888888888".into(),
        destination: "05315000".into(),
        data: format!("<antrag><name>{MARKER}</name><n>{n}</n></antrag>").into_bytes(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    }
}

/// Submits one request and waits for its delivery's first failure of this class.
async fn first_failure(gw: &Gateway, n: usize, class: &str) -> DeliveryStatus {
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req(n))
        .await
        .unwrap();
    let id = a.body["submission_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), class, || async {
        let s = gw.store.submission(&id).await.unwrap().unwrap();
        s.deliveries.into_iter().find(|d| {
            d.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with(class))
        })
    })
    .await
}

/// Removes a test's exchange and queue.
async fn clean_up(ch: &lapin::Channel, exchange: &str, queue: &str) {
    let _ = ch.queue_delete(queue, Default::default()).await;
    let _ = ch.exchange_delete(exchange, Default::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_persistent_confirmed_messages_with_the_message_id() {
    let ch = amqp_channel().await;
    let (exchange, queue) = names("publish");
    amqp_declare(&ch, &exchange, &queue, "fachverfahren").await;
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "fachverfahren".into())),
        ..Default::default()
    })
    .await;
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req(1))
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["submission_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "delivered to RabbitMQ", || async {
        (states(&gw, &id).await.get("amqp-demo").map(String::as_str) == Some("delivered"))
            .then_some(())
    })
    .await;
    let messages = amqp_drain(&ch, &queue).await;
    assert_eq!(messages.len(), 1);
    let (message_id, mode, body) = &messages[0];
    let expected = ozg_gateway::model::submission::message_id(
        &uuid::Uuid::parse_str(&id).unwrap(),
        "amqp-demo",
    );
    assert_eq!(message_id, &expected);
    assert_eq!(*mode, 2, "persistent");
    let envelope: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(envelope["message_id"], expected.as_str());
    assert!(
        !String::from_utf8_lossy(body).contains(MARKER),
        "plaintext in the broker"
    );
    gw.shutdown().await.unwrap();
    clean_up(&ch, &exchange, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_is_a_failure_not_a_success() {
    let ch = amqp_channel().await;
    let (exchange, queue) = names("unroutable");
    amqp_declare(&ch, &exchange, &queue, "fachverfahren").await;
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "nobody-listens".into())),
        ..Default::default()
    })
    .await;
    let d = first_failure(&gw, 1, "unroutable").await;
    assert_ne!(d.state.as_str(), "delivered");
    assert!(amqp_drain(&ch, &queue).await.is_empty());
    gw.shutdown().await.unwrap();
    clean_up(&ch, &exchange, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_checks_the_broker_certificate_and_publishes_over_tls() {
    let ch = amqp_channel().await;
    let (exchange, queue) = names("amqps");
    amqp_declare(&ch, &exchange, &queue, "fachverfahren").await;
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let read = |name: &str| std::fs::read_to_string(demo(name)).unwrap();

    // A broker certificate of the demo CA, for localhost: published over TLS.
    let trusted =
        ozg_e2e::tls_proxy::TlsProxy::start(broker, &read("server.pem"), &read("server.key")).await;
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "fachverfahren".into())),
        amqp_url: Some(format!(
            "amqps://guest:guest@localhost:{}/%2f",
            trusted.addr.port()
        )),
        ..Default::default()
    })
    .await;
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req(1))
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["submission_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "delivered over amqps", || async {
        (states(&gw, &id).await.get("amqp-demo").map(String::as_str) == Some("delivered"))
            .then_some(())
    })
    .await;
    assert!(trusted.handshakes() >= 1, "the adapter spoke TLS");
    let messages = amqp_drain(&ch, &queue).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].0,
        ozg_gateway::model::submission::message_id(
            &uuid::Uuid::parse_str(&id).unwrap(),
            "amqp-demo"
        )
    );
    gw.shutdown().await.unwrap();

    // A broker certificate of another CA: refused, nothing published, retried later.
    let rogue = ozg_gateway::tools::demo_pki::DemoCa::generate("rogue CA", 1).unwrap();
    let leaf = rogue
        .issue(
            "localhost",
            ozg_gateway::tools::demo_pki::Usage::Server,
            ozg_gateway::tools::demo_pki::Algorithm::EcP256,
            1,
        )
        .unwrap();
    let untrusted =
        ozg_e2e::tls_proxy::TlsProxy::start(broker, &leaf.cert_pem, &leaf.key_pem).await;
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "fachverfahren".into())),
        amqp_url: Some(format!(
            "amqps://guest:guest@localhost:{}/%2f",
            untrusted.addr.port()
        )),
        ..Default::default()
    })
    .await;
    let d = first_failure(&gw, 2, "broker-unavailable").await;
    println!("untrusted broker certificate: {:?}", d.last_error);
    assert!(
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("invalid peer certificate: UnknownIssuer")),
        "{d:?}"
    );
    assert_ne!(d.state.as_str(), "delivered");
    assert_eq!(
        untrusted.handshakes(),
        0,
        "no TLS session with an untrusted broker"
    );
    assert!(
        amqp_drain(&ch, &queue).await.is_empty(),
        "nothing published"
    );
    gw.shutdown().await.unwrap();

    // A certificate of the right CA for another host (it names localhost and
    // 127.0.0.1, the broker is reached at 127.0.0.2): refused too.
    let elsewhere = ozg_e2e::tls_proxy::TlsProxy::start_on(
        [127, 0, 0, 2].into(),
        broker,
        &read("server.pem"),
        &read("server.key"),
    )
    .await;
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "fachverfahren".into())),
        amqp_url: Some(format!(
            "amqps://guest:guest@127.0.0.2:{}/%2f",
            elsewhere.addr.port()
        )),
        ..Default::default()
    })
    .await;
    let d = first_failure(&gw, 3, "broker-unavailable").await;
    println!("broker certificate for another host: {:?}", d.last_error);
    assert!(
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("invalid peer certificate: certificate not valid for name")),
        "{d:?}"
    );
    assert_eq!(elsewhere.handshakes(), 0);
    assert!(amqp_drain(&ch, &queue).await.is_empty());
    gw.shutdown().await.unwrap();
    clean_up(&ch, &exchange, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_requires_a_client_certificate_gets_the_configured_one() {
    let ch = amqp_channel().await;
    let (exchange, queue) = names("amqps-mutual");
    amqp_declare(&ch, &exchange, &queue, "fachverfahren").await;
    let broker: std::net::SocketAddr = "127.0.0.1:5672".parse().unwrap();
    let read = |name: &str| std::fs::read_to_string(demo(name)).unwrap();
    // The broker admits clients of its own CA only.
    let clients = ozg_gateway::tools::demo_pki::DemoCa::generate("broker clients CA", 1).unwrap();
    let proxy = ozg_e2e::tls_proxy::TlsProxy::start_mutual(
        broker,
        &read("server.pem"),
        &read("server.key"),
        &clients.cert_pem(),
    )
    .await;
    let url = format!("amqps://guest:guest@localhost:{}/%2f", proxy.addr.port());
    let files = tempfile::tempdir().unwrap();
    let identity = clients
        .issue(
            "ozg-gateway",
            ozg_gateway::tools::demo_pki::Usage::Client,
            ozg_gateway::tools::demo_pki::Algorithm::EcP256,
            1,
        )
        .unwrap();
    let (cert, key) = (
        files.path().join("client.pem"),
        files.path().join("client.key"),
    );
    std::fs::write(&cert, &identity.cert_pem).unwrap();
    std::fs::write(&key, &identity.key_pem).unwrap();

    // Without a client certificate: refused by the broker, nothing published.
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "fachverfahren".into())),
        amqp_url: Some(url.clone()),
        ..Default::default()
    })
    .await;
    let d = first_failure(&gw, 1, "broker-unavailable").await;
    println!("no client certificate: {:?}", d.last_error);
    assert!(
        d.last_error
            .as_deref()
            .is_some_and(|e| e.contains("CertificateRequired")),
        "{d:?}"
    );
    assert_eq!(proxy.handshakes(), 0);
    gw.shutdown().await.unwrap();
    assert!(amqp_drain(&ch, &queue).await.is_empty());

    // With it: delivered over mutual TLS.
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "fachverfahren".into())),
        amqp_url: Some(url),
        amqp_client: Some((cert, key)),
        ..Default::default()
    })
    .await;
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req(2))
        .await
        .unwrap();
    let id = a.body["submission_id"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(10),
        "delivered over mutual TLS",
        || async {
            (states(&gw, &id).await.get("amqp-demo").map(String::as_str) == Some("delivered"))
                .then_some(())
        },
    )
    .await;
    assert!(proxy.handshakes() >= 1);
    assert_eq!(amqp_drain(&ch, &queue).await.len(), 1);
    gw.shutdown().await.unwrap();
    clean_up(&ch, &exchange, &queue).await;
}
