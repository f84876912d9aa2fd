//! The ingest API against the real daemon over real TLS: durable 202s, group
//! commit, and refusals that leave no trace.

use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::store::embedded::counts;
use ozg_gateway::tools::client::{self, SubmitRequest};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
const MARKER: &str = "MARKER-Erika-Mustermann-4711";
const PDF_NAME: &str = "Nachweis-Geheim-Dateiname.pdf";

fn xml_with_marker() -> Vec<u8> {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><antrag><name>{MARKER}</name><zweck>Arbeitgeber</zweck></antrag>").into_bytes()
}

fn pdf() -> Vec<u8> {
    format!("%PDF-1.7\n1 0 obj << /Title ({MARKER}) >> endobj\n%%EOF\n").into_bytes()
}

fn melde(data: Vec<u8>) -> SubmitRequest {
    SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data,
        data_media_type: "application/xml".into(),
        ..Default::default()
    }
}

async fn post_form(client: &reqwest::Client, base: &str, form: Form) -> (u16, Value) {
    let resp = client
        .post(format!("{base}/v1/submissions"))
        .multipart(form)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(
            ctype, "application/problem+json",
            "refusals are problem+json: {body}"
        );
    }
    (status, body)
}

fn metadata_part(leistung: &str) -> Part {
    Part::text(format!(
        r#"{{"leistung":"{leistung}","destination":"05315000"}}"#
    ))
    .mime_str("application/json")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_submission_survives_kill_9_and_nothing_readable_is_stored() {
    let ingest_port = free_port();
    let tc = test_config(&Options {
        ingest_port,
        admin_port: free_port(),
        ..Default::default()
    });
    let daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let base = base_url(daemon.ingest);
    let portal = portal_client("portal");
    let mut req = melde(xml_with_marker());
    req.attachments
        .push((PDF_NAME.into(), "application/pdf".into(), pdf()));
    req.idempotency_key = Some("AZ-2026-0815".into());
    let answer = client::submit(&portal, &base, &req)
        .await
        .expect("submitted");
    assert_eq!(answer.status, 202, "{}", answer.body);
    let part_hashes: Vec<String> = answer.body["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sha512"].as_str().unwrap().to_owned())
        .collect();
    let id = answer.body["submission_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(answer.body["parts"].as_array().map(Vec::len), Some(2));
    assert!(answer.body["receipt"]
        .as_str()
        .is_some_and(|r| r.split('.').count() == 3));

    // Right after the 202: SIGKILL, no shutdown code runs.
    daemon.kill_9();
    let daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let status = client::status(&portal, &format!("{base}/v1/submissions/{id}"))
        .await
        .unwrap();
    assert_eq!(status.status, 200, "{}", status.body);
    let deliveries = status.body["deliveries"].as_array().expect("deliveries");
    let mut targets: Vec<&str> = deliveries
        .iter()
        .map(|d| d["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["dms-demo", "fachverfahren-demo"]);
    // Not lost: each is waiting, being delivered, or delivered (the engine runs).
    assert!(
        deliveries
            .iter()
            .all(|d| ["pending", "in_flight", "retry_wait", "delivered"]
                .contains(&d["state"].as_str().unwrap())),
        "{deliveries:?}"
    );

    // Another portal cannot read it (and does not learn that it exists).
    let other = client::status(
        &portal_client("portal2"),
        &format!("{base}/v1/submissions/{id}"),
    )
    .await
    .unwrap();
    assert_eq!(other.status, 404);

    // The answer kept for replays is sealed with the privacy key, and opens
    // after the restart: the same 202, byte for byte.
    let replay = client::submit(&portal, &base, &req).await.unwrap();
    assert_eq!(replay.status, 202, "{}", replay.body);
    assert_eq!(replay.body, answer.body);

    daemon.kill_9();
    assert!(
        !dir_contains(&tc.data_dir, MARKER.as_bytes()),
        "plaintext data on disk"
    );
    // No plain hash of a part anywhere (audit records, stored answers): a copy
    // of the data directory cannot confirm a guess about the content.
    let data = xml_with_marker();
    let plain = [
        part_hashes[0].clone(),
        part_hashes[1].clone(),
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data)),
    ];
    for h in plain {
        assert!(
            !dir_contains(&tc.data_dir, h.as_bytes()),
            "plain part hash {h} on disk"
        );
    }
    assert!(
        dir_contains(&tc.data_dir, b"hmac_sha256"),
        "the audit record names the parts by keyed hash"
    );
    assert!(
        !dir_contains(&tc.data_dir, PDF_NAME.as_bytes()),
        "attachment file name on disk"
    );
    assert!(
        !dir_contains(&tc.data_dir, b"application/pdf"),
        "attachment media type on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_connections_share_fsyncs() {
    let (tc, gw) = start(&Options::default()).await;
    let base = base_url(gw.ingest_addr);
    let rounds = 3;
    let mut accepted = 0;
    for round in 0..rounds {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let base = base.clone();
                // One client per task: 64 separate TLS connections.
                let portal = portal_client("portal");
                tokio::spawn(async move {
                    let data = format!("<antrag><nr>{round}-{i}</nr></antrag>").into_bytes();
                    client::submit(&portal, &base, &melde(data))
                        .await
                        .expect("sent")
                        .status
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 202);
            accepted += 1;
        }
    }
    let c = counts(&tc.data_dir).unwrap();
    assert_eq!(c.submissions, accepted);
    assert_eq!(c.deliveries, 2 * accepted);
    let commits = metric(gw.admin_addr, "ozg_store_submission_commits_total").await;
    let stored = metric(gw.admin_addr, "ozg_store_submissions_total").await;
    println!("{stored} submissions in {commits} commits (fsyncs)");
    assert_eq!(stored as u64, accepted);
    assert!(
        commits < stored,
        "group commit: {commits} commits for {stored} submissions"
    );
    // Every envelope is in a segment file, and the metric says how much there is.
    let on_disk: u64 = files_under(&tc.data_dir.join("envelopes"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(
        on_disk > 2 * accepted * 1000,
        "{on_disk} bytes of envelopes"
    );
    let reported = metric(gw.admin_addr, "ozg_store_envelope_bytes").await;
    assert_eq!(reported as u64, on_disk);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_precise_counted_and_leave_no_trace() {
    let (tc, gw) = start(&Options::default()).await;
    let base = base_url(gw.ingest_addr);
    let portal = portal_client("portal");
    let scratch = tempfile::tempdir().unwrap();

    let mut cases: Vec<(&str, u16, &str, (u16, Value))> = Vec::new();
    let xml = |body: &str| melde(body.as_bytes().to_vec());
    let send = |c: reqwest::Client, r: SubmitRequest| {
        let base = base.clone();
        async move {
            let a = client::submit(&c, &base, &r).await.expect("sent");
            (a.status, a.body)
        }
    };

    let plain = melde(xml_with_marker());
    cases.push((
        "no client certificate",
        403,
        "client-certificate-required",
        send(anonymous_client(), plain.clone()).await,
    ));
    cases.push((
        "certificate of another CA",
        403,
        "client-certificate-untrusted",
        send(foreign_ca_client(scratch.path()), plain.clone()).await,
    ));
    cases.push((
        "expired certificate",
        403,
        "client-certificate-expired",
        send(expired_client(scratch.path()), plain.clone()).await,
    ));
    cases.push((
        "unregistered client",
        403,
        "unknown-client",
        send(unregistered_client(scratch.path()), plain.clone()).await,
    ));
    cases.push((
        "an operator submitting",
        403,
        "portals-only",
        send(portal_client("operator"), plain.clone()).await,
    ));
    let mut hund = plain.clone();
    hund.leistung = "99050012104000".into();
    cases.push((
        "portal2, Leistung not allowed",
        403,
        "leistung-not-allowed",
        send(portal_client("portal2"), hund).await,
    ));
    let mut noroute = plain.clone();
    noroute.leistung = "99999999999999".into();
    cases.push((
        "no route",
        422,
        "no-route",
        send(portal.clone(), noroute).await,
    ));
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><lolz>&lol2;</lolz>"#;
    cases.push((
        "billion laughs",
        400,
        "xml-doctype",
        send(portal.clone(), xml(laughs)).await,
    ));
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><a>&xxe;</a>"#;
    cases.push((
        "XXE",
        400,
        "xml-doctype",
        send(portal.clone(), xml(xxe)).await,
    ));
    let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    cases.push((
        "10,000-deep nesting",
        400,
        "xml-too-deep",
        send(portal.clone(), xml(&deep)).await,
    ));
    cases.push((
        "body over the limit",
        413,
        "body-too-large",
        send(portal.clone(), melde(vec![b'a'; 5 << 20])).await,
    ));
    let mut bad_utf8 = plain.clone();
    bad_utf8.leistung = "99050012104000".into();
    bad_utf8.data = b"{\"antragsteller\": \"\xff\xfe\"}".to_vec();
    bad_utf8.data_media_type = "application/json".into();
    cases.push((
        "invalid UTF-8 in JSON",
        400,
        "data-not-utf8",
        send(portal.clone(), bad_utf8).await,
    ));
    let mut schema_bad = plain.clone();
    schema_bad.leistung = "99050012104000".into();
    schema_bad.data = format!(r#"{{"antragsteller":{{"name":"{MARKER}","anschrift":"x"}},"hund":{{"rasse":"x","geburtsjahr":"zwei"}}}}"#).into_bytes();
    schema_bad.data_media_type = "application/json".into();
    cases.push((
        "schema-invalid data",
        422,
        "schema-violation",
        send(portal.clone(), schema_bad).await,
    ));
    let mut xsd_bad = plain.clone();
    xsd_bad.leistung = "99777777777777".into();
    xsd_bad.data = format!("<antrag xmlns=\"urn:example:meldebescheinigung\">\n<zweck>{MARKER}</zweck>\n<anzahl>{MARKER}</anzahl>\n</antrag>").into_bytes();
    cases.push((
        "XSD-invalid XML data",
        422,
        "schema-violation",
        send(portal.clone(), xsd_bad).await,
    ));
    let no_data = Form::new().part("metadata", metadata_part("99115005001000"));
    cases.push((
        "missing data part",
        400,
        "part-missing",
        post_form(&portal, &base, no_data).await,
    ));
    let traversal = Form::new()
        .part("metadata", metadata_part("99115005001000"))
        .part(
            "data",
            Part::bytes(b"<a/>".to_vec())
                .mime_str("application/xml")
                .unwrap(),
        )
        .part(
            "attachment",
            Part::bytes(pdf())
                .file_name("../../etc/passwd")
                .mime_str("application/pdf")
                .unwrap(),
        );
    cases.push((
        "path traversal in a file name",
        400,
        "attachment-invalid",
        post_form(&portal, &base, traversal).await,
    ));

    let refused_before_idempotency = cases.len();
    for (what, status, slug, (got, body)) in &cases {
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["type"], format!("/problems/{slug}"), "{what}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}: {body}"
        );
        assert!(
            !body.to_string().contains(MARKER),
            "{what}: refusal echoes the data: {body}"
        );
    }
    let c = counts(&tc.data_dir).unwrap();
    assert_eq!(
        (c.submissions, c.deliveries, c.envelopes, c.idempotency_keys),
        (0, 0, 0, 0),
        "refusals stored something"
    );

    // Idempotency: same key + same content → the same answer; other content → 409.
    let mut first = melde(b"<antrag><nr>1</nr></antrag>".to_vec());
    first.idempotency_key = Some("portal-ref-0001".into());
    let a = client::submit(&portal, &base, &first).await.unwrap();
    let b = client::submit(&portal, &base, &first).await.unwrap();
    assert_eq!((a.status, b.status), (202, 202));
    assert_eq!(a.body, b.body, "a replay answers exactly as the first time");
    let mut other = first.clone();
    other.data = b"<antrag><nr>2</nr></antrag>".to_vec();
    let conflict = client::submit(&portal, &base, &other).await.unwrap();
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.body["type"], "/problems/idempotency-conflict");
    assert_eq!(conflict.body["submission_id"], a.body["submission_id"]);
    let c = counts(&tc.data_dir).unwrap();
    assert_eq!((c.submissions, c.idempotency_keys), (1, 1));

    let refused = metric(
        gw.admin_addr,
        "ozg_requests_refused_total{listener=\"ingest\",reason=\"xml-doctype\"}",
    )
    .await;
    assert_eq!(refused, 2.0);
    let mut total = 0.0;
    for slug in cases
        .iter()
        .map(|c| c.2)
        .collect::<std::collections::BTreeSet<_>>()
    {
        total += metric(
            gw.admin_addr,
            &format!("ozg_requests_refused_total{{listener=\"ingest\",reason=\"{slug}\"}}"),
        )
        .await;
    }
    assert_eq!(
        total as usize, refused_before_idempotency,
        "every refusal is counted once"
    );
    assert_eq!(
        metric(gw.admin_addr, "ozg_submissions_accepted_total").await,
        1.0
    );
    assert_eq!(
        metric(gw.admin_addr, "ozg_submissions_replayed_total").await,
        1.0
    );

    // Still serving.
    let ok = client::submit(&portal, &base, &melde(b"<ok/>".to_vec()))
        .await
        .unwrap();
    assert_eq!(ok.status, 202);
    gw.shutdown().await.unwrap();
}

/// The portal registered by subject in [`client_identity_is_strict`].
const BUERGERPORTAL: &str = "\n[[portals]]\nid = \"buergerportal\"\nsubject = \"O=Stadt Musterstadt, CN=buergerportal\"\nleistungen = [\"99115005001000\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_is_strict() {
    use ozg_e2e::pki::client_issued_with;
    use rcgen::{DnType, ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};

    let tc = test_config(&Options::default());
    let mut text = std::fs::read_to_string(&tc.path).unwrap();
    text.push_str(BUERGERPORTAL);
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    let base = base_url(gw.ingest_addr);
    let scratch = tempfile::tempdir().unwrap();
    let genuine = [
        (DnType::OrganizationName, "Stadt Musterstadt"),
        (DnType::CommonName, "buergerportal"),
    ];
    let send = |c: reqwest::Client| {
        let base = base.clone();
        async move {
            let a = client::submit(&c, &base, &melde(b"<a/>".to_vec()))
                .await
                .expect("sent");
            (a.status, a.body)
        }
    };

    // The registered subject, attribute by attribute: accepted.
    let (status, body) = send(client_issued_with(
        scratch.path(),
        "genuine",
        &genuine,
        vec![Ku::DigitalSignature],
        vec![Eku::ClientAuth],
    ))
    .await;
    assert_eq!(status, 202, "{body}");

    let cases = [
        (
            "one O attribute that reads like the registered subject",
            client_issued_with(
                scratch.path(),
                "confused",
                &[(
                    DnType::OrganizationName,
                    "Stadt Musterstadt, CN=buergerportal",
                )],
                vec![Ku::DigitalSignature],
                vec![Eku::ClientAuth],
            ),
            "unknown-client",
            "",
        ),
        (
            "the registered attributes in another order",
            client_issued_with(
                scratch.path(),
                "reordered",
                &[genuine[1].clone(), genuine[0].clone()],
                vec![Ku::DigitalSignature],
                vec![Eku::ClientAuth],
            ),
            "unknown-client",
            "",
        ),
        (
            "no extended key usage, key usage keyAgreement only",
            client_issued_with(
                scratch.path(),
                "keyagreement",
                &genuine,
                vec![Ku::KeyAgreement],
                vec![],
            ),
            "client-certificate-invalid",
            "clientAuth",
        ),
        (
            "no extended key usage",
            client_issued_with(
                scratch.path(),
                "noeku",
                &genuine,
                vec![Ku::DigitalSignature],
                vec![],
            ),
            "client-certificate-invalid",
            "no extended key usage",
        ),
        (
            "clientAuth, but key usage keyAgreement only",
            client_issued_with(
                scratch.path(),
                "clientauth-keyagreement",
                &genuine,
                vec![Ku::KeyAgreement],
                vec![Eku::ClientAuth],
            ),
            "client-certificate-invalid",
            "digitalSignature",
        ),
    ];
    for (what, client, slug, detail) in cases {
        let (status, body) = send(client).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert_eq!(body["type"], format!("/problems/{slug}"), "{what}: {body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(detail)),
            "{what}: {body}"
        );
    }
    let c = counts(&tc.data_dir).unwrap();
    assert_eq!(c.submissions, 1, "only the genuine portal's submission");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_client_certificates_are_refused_and_crls_are_refreshed() {
    use ozg_e2e::pki::{issue_client, serve_file_https, test_ca_crl, OpensslCa};
    use rcgen::{DnType, ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};

    let scratch = tempfile::tempdir().unwrap();
    // The demo CA's CRL from `openssl ca` (a file), nothing revoked yet.
    let demo_ca = OpensslCa::new(&scratch.path().join("demo-ca"));
    let demo_crl = scratch.path().join("demo-ca.crl.pem");
    demo_ca.write_crl(&demo_crl);
    // The test client CA's CRL from rcgen, served over HTTPS, revoking one client.
    let stranger = |cn: &str| {
        issue_client(
            &[(DnType::CommonName, cn)],
            vec![Ku::DigitalSignature],
            vec![Eku::ClientAuth],
        )
    };
    let (revoked, unrevoked) = (stranger("revoked"), stranger("unrevoked"));
    let test_crl = scratch.path().join("test-ca.crl.pem");
    std::fs::write(&test_crl, test_ca_crl(&[&revoked.cert_pem], false)).unwrap();
    let crl_server = serve_file_https(test_crl.clone()).await;

    let tc = test_config(&Options::default());
    let text = std::fs::read_to_string(&tc.path).unwrap().replace(
        "[pki]\n",
        &format!(
            "[pki]\ncrls = [\"{}\", \"https://localhost:{}/test-ca.crl\"]\ncrl_refresh = \"1s\"\ncrl_server_ca = \"{}\"\n",
            demo_crl.display(),
            crl_server.port(),
            demo("ca.pem").display()
        ),
    );
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    let base = base_url(gw.ingest_addr);
    let submit = |c: reqwest::Client| {
        let base = base.clone();
        async move {
            let a = client::submit(&c, &base, &melde(b"<a/>".to_vec()))
                .await
                .expect("sent");
            (a.status, a.body)
        }
    };
    let deliveries = |c: reqwest::Client| {
        let url = format!("{base}/v1/admin/deliveries");
        async move {
            let r = c.get(url).send().await.expect("sent");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    let (status, body) = submit(client_from_issued(scratch.path(), "revoked", &revoked)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["type"], "/problems/client-certificate-revoked",
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    // Not revoked, but registered for nothing: its revocation status was checked.
    let (status, body) = submit(client_from_issued(scratch.path(), "unrevoked", &unrevoked)).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("/problems/unknown-client")),
        "{body}"
    );

    // Portals and operators of the demo CA are fine until the CA revokes them.
    let (portal, portal2, operator) = (
        portal_client("portal"),
        portal_client("portal2"),
        portal_client("operator"),
    );
    assert_eq!(submit(portal.clone()).await.0, 202);
    assert_eq!(submit(portal2.clone()).await.0, 202);
    // A valid operator certificate is told where the operator API is (404 here).
    let (status, body) = deliveries(operator.clone()).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("admin listener"),
        "{body}"
    );

    demo_ca.revoke(&demo("portal2.pem"));
    demo_ca.revoke(&demo("operator.pem"));
    demo_ca.write_crl(&demo_crl);
    // The next refresh applies, also on connections opened before it.
    let body = eventually(
        Duration::from_secs(20),
        "portal2 refused after the refresh",
        || {
            let portal2 = portal2.clone();
            let submit = &submit;
            async move {
                let (status, body) = submit(portal2).await;
                (status == 403).then_some(body)
            }
        },
    )
    .await;
    assert_eq!(
        body["type"], "/problems/client-certificate-revoked",
        "{body}"
    );
    let (status, body) = deliveries(operator).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (403, Some("/problems/client-certificate-revoked")),
        "{body}"
    );
    assert_eq!(submit(portal.clone()).await.0, 202);
    assert!(
        metric(
            gw.admin_addr,
            "ozg_requests_refused_total{listener=\"ingest\",reason=\"client-certificate-revoked\"}"
        )
        .await
            >= 3.0
    );

    // A target whose certificate is revoked at run time: nothing is encrypted
    // for it any more; submissions routed to it are refused and leave nothing.
    demo_ca.revoke(&demo("recipient-ec.pem"));
    demo_ca.write_crl(&demo_crl);
    let body = eventually(Duration::from_secs(20), "a revoked target refused", || {
        let portal = portal.clone();
        let submit = &submit;
        async move {
            let (status, body) = submit(portal).await;
            (status == 503).then_some(body)
        }
    })
    .await;
    assert_eq!(body["type"], "/problems/unavailable", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("target fachverfahren-demo has been revoked"),
        "{body}"
    );
    assert_eq!(
        metric(
            gw.admin_addr,
            "ozg_target_certificate_revoked{target=\"fachverfahren-demo\"}"
        )
        .await,
        1.0
    );
    let before = counts(&tc.data_dir).unwrap().submissions;
    assert_eq!(submit(portal).await.0, 503);
    assert_eq!(counts(&tc.data_dir).unwrap().submissions, before);
    gw.shutdown().await.unwrap();
}
