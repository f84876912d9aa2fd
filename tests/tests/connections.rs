//! Connection slots under attack: sockets that never start TLS cannot take the
//! slots of other clients, and a client that sends requests but never reads the
//! answers does not keep its connection forever. The attacker connects from
//! 127.0.0.2, the legitimate portal from 127.0.0.1 (both loopback).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ozg_e2e::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

async fn tls_from(from: &str, to: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    try_tls_from(from, to).await.expect("TLS handshake")
}

/// `None` when the server closes the connection instead of completing TLS.
async fn try_tls_from(
    from: &str,
    to: SocketAddr,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    try_tls_as("portal", from, to).await
}

/// A TLS connection as the demo client `stem` (its `.pem` and `.key`).
async fn try_tls_as(
    stem: &str,
    from: &str,
    to: SocketAddr,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = ozg_gateway::listen::tls::client_config(
        &demo(&format!("{stem}.pem")),
        &demo(&format!("{stem}.key")),
        &demo("ca.pem"),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    connector
        .connect(
            "localhost".try_into().unwrap(),
            connect_from(from, to).await,
        )
        .await
        .ok()
}

/// A status request as the demo portal; how long its answer took.
async fn timed_status(gw: &ozg_gateway::daemon::Gateway) -> (u16, Duration) {
    let started = Instant::now();
    let r = portal_client("portal")
        .get(format!(
            "{}/v1/submissions/nothing",
            base_url(gw.ingest_addr)
        ))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_start_tls_cannot_take_everyones_slots() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_tc, gw) = start(&Options {
        max_connections: 64,
        max_connections_per_address: 16,
        ..Default::default()
    })
    .await;
    // 100 idle sockets from one address: more than all 64 slots. Each would hold
    // its slot for the whole handshake timeout (10 s).
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(connect_from("127.0.0.2", gw.ingest_addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, took) = timed_status(&gw).await;
    assert_eq!(status, 404);
    assert!(
        took < Duration::from_secs(3),
        "a portal waited {took:?} behind sockets of another address"
    );
    assert!(
        metric(
            gw.admin_addr,
            "ozg_requests_refused_total{listener=\"ingest\",reason=\"too-many-connections-from-address\"}"
        )
        .await
            >= 84.0
    );
    drop(idle);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answers_is_disconnected() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_tc, gw) = start(&Options {
        max_connections_per_address: 1,
        write_timeout: "1s",
        ..Default::default()
    })
    .await;
    // Pipelined requests whose answers are never read: the server's writes stall.
    let mut stream = tls_from("127.0.0.2", gw.ingest_addr).await;
    let requests = "GET /v1/submissions/x HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(40_000);
    let writer = tokio::spawn(async move {
        let _ = stream.write_all(requests.as_bytes()).await;
        // Keep the connection (and its one slot) open, never reading.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(stream);
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Its address has one slot, held by that connection; once the server gave up
    // writing to it, the slot is free and a new connection is served.
    let served = eventually(Duration::from_secs(15), "the slot comes back", || async {
        let mut s = try_tls_from("127.0.0.2", gw.ingest_addr).await?;
        let ok = s
            .write_all(
                b"GET /v1/submissions/y HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await
            .is_ok();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_end(&mut s, &mut answer),
        )
        .await;
        (ok && answer.starts_with(b"HTTP/1.1 404")).then_some(())
    })
    .await;
    let () = served;
    writer.abort();
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_portal_cannot_hold_more_than_its_connections() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_tc, gw) = start(&Options {
        max_connections_per_client: 2,
        ..Default::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tls_from("127.0.0.1", gw.ingest_addr).await);
    }
    // The third connection of the same portal is refused with 429.
    let mut third = tls_from("127.0.0.1", gw.ingest_addr).await;
    third
        .write_all(b"GET /v1/submissions/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut third, &mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("/problems/too-many-connections"),
        "{answer}"
    );
    // Closing one gives the portal its slot back.
    drop(held.pop());
    let (status, _) = eventually(Duration::from_secs(5), "a slot again", || async {
        let r = timed_status(&gw).await;
        (r.0 == 404).then_some(r)
    })
    .await;
    assert_eq!(status, 404);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_mid_body_is_counted_as_incomplete_not_malformed() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let (_tc, gw) = start(&Options::default()).await;
    let mut stream = tls_from("127.0.0.1", gw.ingest_addr).await;
    let meta = r#"{"leistung":"99115005001000","destination":"05315000"}"#;
    let body = format!(
        "--B\r\nContent-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json\r\n\r\n{meta}\r\n--B\r\nContent-Disposition: form-data; name=\"data\"\r\nContent-Type: application/xml\r\n\r\n<antrag>"
    );
    let head = format!(
        "POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: {}\r\n\r\n",
        body.len() + 100_000
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    let reason = |r: &'static str| {
        let admin = gw.admin_addr;
        async move {
            metric(
                admin,
                &format!("ozg_requests_refused_total{{listener=\"ingest\",reason=\"{r}\"}}"),
            )
            .await
        }
    };
    eventually(
        Duration::from_secs(5),
        "counted as body-incomplete",
        || async { (reason("body-incomplete").await == 1.0).then_some(()) },
    )
    .await;
    assert_eq!(reason("multipart-malformed").await, 0.0);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_over_its_rate_or_its_uploads_gets_429_and_the_others_are_served() {
    use ozg_gateway::tools::client::{self, SubmitRequest};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tc = test_config(&Options::default());
    // portal-demo may send 2 a second; portal2-demo one upload at a time.
    let text = std::fs::read_to_string(&tc.path)
        .unwrap()
        .replace("id = \"portal-demo\"\n", "id = \"portal-demo\"\nrate = 2\n")
        .replace(
            "id = \"portal2-demo\"\n",
            "id = \"portal2-demo\"\nuploads = 1\n",
        );
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    let base = base_url(gw.ingest_addr);
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: b"<antrag/>".to_vec(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    };
    let slug = |a: &client::SubmitAnswer| {
        a.body["type"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned()
    };

    // Rate: a burst of one second's worth, then 429 with the time to wait.
    let portal = portal_client("portal");
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(client::submit(&portal, &base, &req).await.unwrap());
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses[..2], [202, 202], "{statuses:?}");
    let refused = answers.iter().find(|a| a.status == 429).expect("a 429");
    assert_eq!(slug(refused), "portal-rate-limited", "{}", refused.body);
    // The answer says when to come back (an empty form uses up a token when admitted).
    let mut raw = None;
    for _ in 0..10 {
        let r = portal
            .post(format!("{base}/v1/submissions"))
            .header("content-type", "multipart/form-data; boundary=B")
            .body("--B--\r\n")
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            raw = Some(r);
            break;
        }
    }
    let raw = raw.expect("a 429 while the bucket is empty");
    let wait: u64 = raw.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Another portal is not slowed down by it.
    let portal2 = portal_client("portal2");
    for _ in 0..4 {
        assert_eq!(
            client::submit(&portal2, &base, &req).await.unwrap().status,
            202
        );
    }

    // Uploads: portal2 holds one submission open mid-body; its next is refused,
    // portal-demo's (after its bucket refilled) is not.
    let mut open = try_tls_as("portal2", "127.0.0.1", gw.ingest_addr)
        .await
        .unwrap();
    let head = "POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 100000\r\n\r\n--B\r\n";
    open.write_all(head.as_bytes()).await.unwrap();
    open.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = client::submit(&portal2, &base, &req).await.unwrap();
    assert_eq!(second.status, 429, "{}", second.body);
    assert_eq!(slug(&second), "portal-too-many-uploads");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        client::submit(&portal, &base, &req).await.unwrap().status,
        202
    );
    // The slot comes back when the held upload goes.
    drop(open);
    eventually(
        Duration::from_secs(10),
        "portal2 has its slot back",
        || async {
            (client::submit(&portal2, &base, &req).await.ok()?.status == 202).then_some(())
        },
    )
    .await;
    let refused = |r: &'static str| {
        let admin = gw.admin_addr;
        async move {
            metric(
                admin,
                &format!("ozg_requests_refused_total{{listener=\"ingest\",reason=\"{r}\"}}"),
            )
            .await
        }
    };
    assert!(refused("portal-rate-limited").await >= 1.0);
    assert!(refused("portal-too-many-uploads").await >= 1.0);
    gw.shutdown().await.unwrap();
}
