//! RabbitMQ stopped and started while deliveries run: nothing is lost. Its own test
//! binary, because it stops the broker every other test shares.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

fn rabbitmqctl(args: &[&str]) {
    let ok = Command::new("rabbitmqctl")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "rabbitmqctl {args:?} failed (the test needs the local broker and rabbitmqctl)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_during_delivery_loses_nothing() {
    let tag = format!("{}-{}", std::process::id(), free_port());
    let (exchange, queue) = (
        format!("ozg-test-x-restart-{tag}"),
        format!("ozg-test-q-restart-{tag}"),
    );
    {
        let ch = amqp_channel().await;
        amqp_declare(&ch, &exchange, &queue, "fv").await;
    }
    let (_tc, gw) = start(&Options {
        amqp: Some((exchange.clone(), "fv".into())),
        ..Default::default()
    })
    .await;
    let portal = portal_client("portal");
    let base = base_url(gw.ingest_addr);
    let mut ids = Vec::new();
    for n in 0..40 {
        if n == 10 {
            rabbitmqctl(&["stop_app"]);
        }
        if n == 30 {
            rabbitmqctl(&["start_app"]);
            rabbitmqctl(&["await_startup"]);
        }
        let req = SubmitRequest {
            leistung: "99888888888888".into(),
            destination: "05315000".into(),
            data: format!("<antrag><n>{n}</n></antrag>").into_bytes(),
            data_media_type: "application/xml".into(),
            ..Default::default()
        };
        let a = client::submit(&portal, &base, &req).await.unwrap();
        assert_eq!(a.status, 202, "accepting does not depend on the broker");
        ids.push(a.body["submission_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        eventually(
            Duration::from_secs(60),
            "delivered after the broker came back",
            || async {
                (states(&gw, id).await.get("amqp-demo").map(String::as_str) == Some("delivered"))
                    .then_some(())
            },
        )
        .await;
    }
    let ch = amqp_channel().await;
    let messages = amqp_drain(&ch, &queue).await;
    let got: HashSet<String> = messages.iter().map(|m| m.0.clone()).collect();
    let expected: HashSet<String> = ids
        .iter()
        .map(|id| {
            ozg_gateway::model::submission::message_id(
                &uuid::Uuid::parse_str(id).unwrap(),
                "amqp-demo",
            )
        })
        .collect();
    println!(
        "broker restart: {} accepted, {} messages in the queue, {} distinct, {} missing",
        ids.len(),
        messages.len(),
        got.len(),
        expected.difference(&got).count()
    );
    assert!(
        expected.is_subset(&got),
        "lost: {:?}",
        expected.difference(&got).collect::<Vec<_>>()
    );
    gw.shutdown().await.unwrap();
    let _ = ch.queue_delete(queue.as_str(), Default::default()).await;
    let _ = ch
        .exchange_delete(exchange.as_str(), Default::default())
        .await;
}
