//! The hostile-input suite against the real daemon: each request gets its exact
//! status and problem type, is counted, stores nothing, and the daemon keeps serving.
//! (The ingest test covers the certificate cases, XML bombs, XXE, deep XML, the body
//! limit, bad UTF-8 in JSON, schema violations and idempotency conflicts.)

use std::time::{Duration, Instant};

use ozg_e2e::*;
use ozg_gateway::store::embedded::counts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes over TLS as the demo portal and returns the raw answer.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let tls = ozg_gateway::listen::tls::client_config(
        &demo("portal.pem"),
        &demo("portal.key"),
        &demo("ca.pem"),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut s = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let _ = s.write_all(request).await;
    let _ = s.flush().await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        let mut buf = [0u8; 8192];
        while !String::from_utf8_lossy(&answer).contains('}') {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn multipart(parts: &[(&str, &str)]) -> Vec<u8> {
    let mut body = String::new();
    for (headers, content) in parts {
        body.push_str(&format!("--B0undary\r\n{headers}\r\n\r\n{content}\r\n"));
    }
    body.push_str("--B0undary--\r\n");
    format!(
        "POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const META: (&str, &str) = (
    "Content-Disposition: form-data; name=\"metadata\"\r\nContent-Type: application/json",
    r#"{"leistung":"99115005001000","destination":"05315000"}"#,
);
const DATA: (&str, &str) = (
    "Content-Disposition: form-data; name=\"data\"\r\nContent-Type: application/xml",
    "<a/>",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_are_refused_precisely_and_leave_nothing() {
    let (tc, gw) = start(&Options {
        header_timeout: "1s",
        ..Default::default()
    })
    .await;
    let addr = gw.ingest_addr;
    let deep_xml = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let many_attributes = format!(
        "<a{}/>",
        (0..257).map(|i| format!(" a{i}=\"x\"")).collect::<String>()
    );
    // Over 16 KiB: checked on the validation pool.
    let many_elements = format!("<a>{}</a>", "<b/>".repeat(200_000));
    let many_values = format!("[{}0]", "0,".repeat(200_000));
    let big_number = format!("{{\"antragsteller\":{{\"name\":\"x\",\"anschrift\":\"y\"}},\"hund\":{{\"rasse\":\"z\",\"geburtsjahr\":1{}}}}}", "0".repeat(400));
    let hund_meta = (
        META.0,
        r#"{"leistung":"99050012104000","destination":"05315000"}"#,
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("100,000-deep XML", multipart(&[META, (DATA.0, &deep_xml)]), 400, "xml-too-deep"),
        ("100,000-deep JSON", multipart(&[hund_meta, ("Content-Disposition: form-data; name=\"data\"\r\nContent-Type: application/json", &deep_json)]), 400, "json-too-deep"),
        ("oversized JSON number", multipart(&[hund_meta, ("Content-Disposition: form-data; name=\"data\"\r\nContent-Type: application/json", &big_number)]), 400, "json-malformed"),
        ("257 attributes on one element", multipart(&[META, (DATA.0, &many_attributes)]), 400, "xml-too-many-attributes"),
        ("200,001 XML elements", multipart(&[META, (DATA.0, &many_elements)]), 400, "xml-too-many-elements"),
        ("200,001 JSON values", multipart(&[META, ("Content-Disposition: form-data; name=\"data\"\r\nContent-Type: application/json", &many_values)]), 400, "json-too-many-values"),
        ("DOCTYPE without entities", multipart(&[META, (DATA.0, "<!DOCTYPE a><a/>")]), 400, "xml-doctype"),
        ("truncated multipart", {
            let mut r = multipart(&[META, DATA]);
            let cut = r.len() - 20;
            r.truncate(cut);
            // Keep the declared length honest for the bytes sent: the parser sees the end of the stream.
            let s = String::from_utf8(r).unwrap();
            let (head, body) = s.split_once("\r\n\r\n").unwrap();
            let head = head.replace(&head[head.find("Content-Length: ").unwrap()..], &format!("Content-Length: {}", body.len()));
            format!("{head}\r\n\r\n{body}").into_bytes()
        }, 400, "multipart-malformed"),
        ("a part without a name", multipart(&[META, ("Content-Disposition: form-data\r\nContent-Type: application/xml", "<a/>")]), 400, "part-unknown"),
        ("duplicate data parts", multipart(&[META, DATA, DATA]), 400, "part-duplicate"),
        ("duplicate metadata parts", multipart(&[META, META, DATA]), 400, "part-duplicate"),
        ("NUL in a file name (raw NUL is not a valid header byte)", multipart(&[META, DATA, ("Content-Disposition: form-data; name=\"attachment\"; filename=\"a\0b.pdf\"\r\nContent-Type: application/pdf", "%PDF")]), 400, "multipart-malformed"),
        ("control character in a file name", multipart(&[META, DATA, ("Content-Disposition: form-data; name=\"attachment\"; filename=\"a\tb.pdf\"\r\nContent-Type: application/pdf", "%PDF")]), 400, "attachment-invalid"),
        ("path traversal in a file name", multipart(&[META, DATA, ("Content-Disposition: form-data; name=\"attachment\"; filename=\"../../etc/passwd\"\r\nContent-Type: application/pdf", "%PDF")]), 400, "attachment-invalid"),
        ("bad UTF-8 in metadata", multipart(&[(META.0, "{\"leistung\":\"\u{fffd}\"}"), DATA]).into_iter().map(|b| if b == 0xbd { 0xff } else { b }).collect(), 400, "metadata-invalid"),
        ("unknown metadata field", multipart(&[(META.0, r#"{"leistung":"99115005001000","destination":"05315000","name":"x"}"#), DATA]), 400, "metadata-invalid"),
        ("1 GB declared Content-Length", b"POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nContent-Length: 1000000000\r\n\r\n--B0undary\r\n".to_vec(), 413, "body-too-large"),
        ("not multipart", b"POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_vec(), 415, "unsupported-media-type"),
        ("leistung given twice in the metadata", multipart(&[(META.0, r#"{"leistung":"99115005001000","destination":"05315000","leistung":"99050012104000"}"#), DATA]), 400, "metadata-invalid"),
        ("data before metadata", multipart(&[DATA, META]), 400, "metadata-first"),
        ("bidi override disguising the extension", multipart(&[META, DATA, ("Content-Disposition: form-data; name=\"attachment\"; filename=\"Rechnung\u{202e}fdp.exe\"\r\nContent-Type: application/pdf", "%PDF")]), 400, "attachment-invalid"),
        ("a Windows device name", multipart(&[META, DATA, ("Content-Disposition: form-data; name=\"attachment\"; filename=\"CON.pdf\"\r\nContent-Type: application/pdf", "%PDF")]), 400, "attachment-invalid"),
        ("an alternate data stream", multipart(&[META, DATA, ("Content-Disposition: form-data; name=\"attachment\"; filename=\"a.pdf:evil.exe\"\r\nContent-Type: application/pdf", "%PDF")]), 400, "attachment-invalid"),
        ("the same file name twice, NFD and NFC", multipart(&[META, DATA, ("Content-Disposition: form-data; name=\"attachment\"; filename=\"Ma\u{308}rz.pdf\"\r\nContent-Type: application/pdf", "%PDF"), ("Content-Disposition: form-data; name=\"attachment\"; filename=\"M\u{e4}rz.pdf\"\r\nContent-Type: application/pdf", "%PDF")]), 400, "attachment-invalid"),
        ("gzip transfer coding", b"POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(), 501, "transfer-coding-unsupported"),
        ("gzip content coding", b"POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nContent-Encoding: gzip\r\nContent-Length: 0\r\n\r\n".to_vec(), 415, "content-coding-unsupported"),
        ("unknown path", b"GET /etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 404, "not-found"),
        ("wrong method", b"DELETE /v1/submissions/x HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 405, "method-not-allowed"),
    ];
    for (what, request, status, slug) in &cases {
        let answer = raw(addr, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {}",
            answer.lines().next().unwrap_or("(no answer)")
        );
        assert!(
            answer.contains(&format!("\"/problems/{slug}\"")),
            "{what}: {answer}"
        );
        assert!(answer.contains("application/problem+json"), "{what}");
        let counted = metric(
            gw.admin_addr,
            &format!("ozg_requests_refused_total{{listener=\"ingest\",reason=\"{slug}\"}}"),
        )
        .await;
        assert!(counted >= 1.0, "{what}: not counted");
    }
    let c = counts(&tc.data_dir).unwrap();
    assert_eq!(
        (c.submissions, c.envelopes),
        (0, 0),
        "a hostile request left something behind"
    );

    // Slowloris: a head that never ends is cut off by the header timeout (1 s here).
    let tls = ozg_gateway::listen::tls::client_config(
        &demo("portal.pem"),
        &demo("portal.key"),
        &demo("ca.pem"),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut slow = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    slow.write_all(b"POST /v1/submissions HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a slow head was not cut off");
    println!("slowloris head cut off after {:?}", started.elapsed());

    // Headers over the limit.
    let huge = format!(
        "GET /v1/submissions/x HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let answer = raw(addr, huge.as_bytes()).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // The admin listener refuses what it does not serve, precisely.
    let admin = reqwest::Client::new();
    let r = admin
        .post(format!("http://{}/metrics", gw.admin_addr))
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    // Its body was not read: the answer says the connection ends, so the client
    // does not send the next request on it.
    assert_eq!(
        r.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let r = admin
        .get(format!("http://{}/../../etc/passwd", gw.admin_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Still serving.
    let ok = ozg_gateway::tools::client::submit(
        &portal_client("portal"),
        &base_url(addr),
        &ozg_gateway::tools::client::SubmitRequest {
            leistung: "99115005001000".into(),
            destination: "05315000".into(),
            data: b"<ok/>".to_vec(),
            data_media_type: "application/xml".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 202);
    gw.shutdown().await.unwrap();
}

/// An operator's request for an admin path that does not exist is a 404, not a
/// listing of deliveries; the ingest listener has no operator API at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_admin_paths_are_not_found() {
    let (_tc, gw) = start(&Options::default()).await;
    let operator = client_with(&demo("operator.pem"), &demo("operator.key"));
    let base = base_url(gw.ingest_addr);
    let r = operator
        .get(format!("{base}/v1/admin/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let admin = format!("http://{}", gw.admin_addr);
    let http = plain_client();
    for path in [
        "/admin/v1/anything",
        "/admin/v1/",
        "/admin/v1/deliveriesx",
        "/admin/v1/deliveries/x/explode",
        "/admin/v1/targets/dms-demo/parked/park",
        "/v1/admin/deliveries",
    ] {
        for post in [false, true] {
            let r = if post {
                http.post(format!("{admin}{path}"))
            } else {
                http.get(format!("{admin}{path}"))
            };
            let r = r.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 404, "{path}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["type"], "/problems/not-found", "{path}");
        }
    }
    // Bad queries are named, not ignored.
    for q in [
        "state=stuck",
        "limit=0",
        "limit=5000",
        "older_than=soon",
        "colour=red",
        "after=%ZZ",
        "state=parked&state=pending",
    ] {
        let r = http
            .get(format!("{admin}/admin/v1/deliveries?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{q}");
    }
    let r = http
        .get(format!("{admin}/admin/v1/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // A body beyond the admin listener's bound is refused.
    let r = http
        .post(format!("{admin}/admin/v1/targets/dms-demo/pause"))
        .body(vec![b' '; 100 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    gw.shutdown().await.unwrap();
}

/// Request bodies share one memory budget: while slow uploads hold it, another
/// upload gets `503` with `Retry-After` instead of more memory; once they are
/// answered, the budget is free again. An attachment sealed as it arrives (over
/// 1 MiB) holds only what is not sealed yet: slow uploads of those do not
/// exhaust it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_cannot_take_more_than_the_memory_budget() {
    let (_tc, gw) = start(&Options {
        max_body: "2MiB",
        memory_budget: "2MiB",
        ..Default::default()
    })
    .await;
    let addr = gw.ingest_addr;
    let tls = std::sync::Arc::new(
        ozg_gateway::listen::tls::client_config(
            &demo("portal.pem"),
            &demo("portal.key"),
            &demo("ca.pem"),
        )
        .unwrap(),
    );
    let upload = |attachment: &str| {
        multipart(&[
            META,
            DATA,
            (
                "Content-Disposition: form-data; name=\"attachment\"; filename=\"scan.pdf\"\r\nContent-Type: application/pdf",
                attachment,
            ),
        ])
    };
    // Sends all of `request` but its last 200 bytes, and holds the connection.
    let stall = |request: Vec<u8>| {
        let tls = tls.clone();
        async move {
            let connector = tokio_rustls::TlsConnector::from(tls);
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut s = connector
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .unwrap();
            s.write_all(&request[..request.len() - 200]).await.unwrap();
            s.flush().await.unwrap();
            s
        }
    };
    // Two uploads that send 768 KiB of an attachment (held: below the size
    // that is sealed as it arrives) each and then stall.
    let request = upload(&"x".repeat(3 << 18));
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(stall(request.clone()).await);
    }
    // A third upload of 768 KiB does not fit.
    // Give the gateway time to read what they sent (1.5 MiB of the 2 MiB budget
    // then held); a third upload racing them could make one of them the one refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut answer = String::new();
    for _ in 0..40 {
        answer = raw(addr, &request).await;
        if answer.starts_with("HTTP/1.1 503") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"/problems/busy\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );

    // The stalled uploads give up: their bytes are given back.
    drop(held);
    let mut accepted = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if raw(addr, &request).await.starts_with("HTTP/1.1 202") {
            accepted = true;
            break;
        }
    }
    assert!(accepted, "the budget was not given back");

    // Three uploads stalled in a 1.75 MiB attachment (5.25 MiB in all, more
    // than the budget): it is sealed as it arrives, so they hold little of it
    // and another upload still gets in.
    let large = upload(&"y".repeat(7 << 18));
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stall(large.clone()).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = raw(addr, &request).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    drop(held);
    gw.shutdown().await.unwrap();
}
