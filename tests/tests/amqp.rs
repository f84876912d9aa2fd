//! The amqp adapter against the real local RabbitMQ.

use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::client::{self, SubmitRequest};

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
    let expected =
        ozg_gateway::pipeline::message_id(&uuid::Uuid::parse_str(&id).unwrap(), "amqp-demo");
    assert_eq!(message_id, &expected);
    assert_eq!(*mode, 2, "persistent");
    let envelope: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(envelope["message_id"], expected.as_str());
    assert!(
        !String::from_utf8_lossy(body).contains(MARKER),
        "plaintext in the broker"
    );
    gw.shutdown().await.unwrap();
    let _ = ch.queue_delete(queue.as_str(), Default::default()).await;
    let _ = ch
        .exchange_delete(exchange.as_str(), Default::default())
        .await;
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
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req(1))
        .await
        .unwrap();
    let id = a.body["submission_id"].as_str().unwrap().to_owned();
    let d = eventually(Duration::from_secs(10), "an unroutable attempt", || async {
        let s = gw.store.submission(&id).await.unwrap().unwrap();
        s.deliveries.into_iter().find(|d| {
            d.last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("unroutable"))
        })
    })
    .await;
    assert_ne!(d.state.as_str(), "delivered");
    assert!(amqp_drain(&ch, &queue).await.is_empty());
    gw.shutdown().await.unwrap();
    let _ = ch.queue_delete(queue.as_str(), Default::default()).await;
    let _ = ch
        .exchange_delete(exchange.as_str(), Default::default())
        .await;
}
