//! The way back: a submission goes in, its Fachverfahren replies with a
//! Bescheid (a PDF), the portal fetches the reply from its reply box and opens
//! it with its own key — checked by an independent JOSE implementation
//! (Python jwcrypto). Who may reply, who may fetch, the Laufzettel of both
//! directions, and a reply that survives `kill -9` right after its `202`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ozg_e2e::receiver::{Mode, Receiver};
use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

/// The test config with replies: portal-demo fetches its replies (encrypted
/// for the RSA demo key), portal2-demo too (EC key); fachverfahren-demo replies
/// with the demo Fachverfahren's client certificate, dms-demo with `dms_replier`.
fn with_replies(tc: &TestConfig, dms_replier: &Path) {
    let c = |name: &str| demo(name).display().to_string();
    let mut text = std::fs::read_to_string(&tc.path).unwrap();
    for (portal, cert, enc) in [
        ("portal-demo", "portal.pem", "recipient-rsa.pem"),
        ("portal2-demo", "portal2.pem", "recipient-ec.pem"),
    ] {
        let at = format!("id = \"{portal}\"\ncertificate = \"{}\"\n", c(cert));
        assert!(text.contains(&at), "{portal} in the test config");
        text = text.replace(
            &at,
            &format!("{at}replies = {{ certificate = \"{}\" }}\n", c(enc)),
        );
    }
    for (target, cert) in [
        ("fachverfahren-demo", c("fachverfahren.pem")),
        ("dms-demo", dms_replier.display().to_string()),
    ] {
        let at = format!("[targets.{target}]\n");
        text = text.replace(
            &at,
            &format!("{at}reply_client = {{ certificate = \"{cert}\" }}\n"),
        );
    }
    std::fs::write(&tc.path, text).unwrap();
}

fn hundesteuer() -> SubmitRequest {
    SubmitRequest {
        leistung: "99050012104000".into(),
        destination: "05315000".into(),
        data: std::fs::read(repo().join("schemas/examples/hundesteuer.json")).unwrap(),
        data_media_type: "application/json".into(),
        ..Default::default()
    }
}

fn bescheid(pdf: &[u8]) -> SubmitRequest {
    SubmitRequest {
        reference: Some("AZ-HST-2026-0042".into()),
        data: br#"{"entscheidung":"stattgegeben","steuer_eur":120}"#.to_vec(),
        data_media_type: "application/json".into(),
        attachments: vec![(
            "Bescheid.pdf".into(),
            "application/pdf".into(),
            pdf.to_vec(),
        )],
        ..Default::default()
    }
}

fn fachverfahren() -> reqwest::Client {
    client_with(&demo("fachverfahren.pem"), &demo("fachverfahren.key"))
}

/// Opens `envelope` with jwcrypto and `key`; returns the summary, parts under `out`.
fn jwcrypto_open(envelope: &[u8], key: &str, out: &Path) -> serde_json::Value {
    std::fs::create_dir_all(out).unwrap();
    let env_path = out.join("envelope.json");
    std::fs::write(&env_path, envelope).unwrap();
    let run = Command::new(python())
        .arg(repo().join("tests/interop/open_envelope.py"))
        .arg(&env_path)
        .arg(demo(key))
        .arg(demo("ca.pem"))
        .arg(demo("seal.pem"))
        .arg(out)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("JSON summary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bescheid_goes_back_to_the_portal_sealed_encrypted_and_proven() {
    let rx = Receiver::start(Mode::Accept).await;
    // Two reply types; a Bescheid's data must say what was decided.
    let schemas = tempfile::tempdir().unwrap();
    let schema = schemas.path().join("bescheid.schema.json");
    std::fs::write(
        &schema,
        r#"{"type":"object","required":["entscheidung"],"properties":{"entscheidung":{"enum":["stattgegeben","abgelehnt"]}}}"#,
    )
    .unwrap();
    let tc = test_config(&Options {
        receiver_url: rx.url(),
        extra: format!(
            "[reply_types.bescheid]\nname = \"Bescheid\"\nschema = \"{}\"\n\n[reply_types.nachforderung]\nname = \"Nachforderung\"\n",
            schema.display()
        ),
        ..Default::default()
    });
    let (dms_cert, dms_key) = issue_client(tc.dir.path(), "dms-replier");
    with_replies(&tc, &dms_cert);
    let gw = start_from(&tc).await;
    let base = base_url(gw.ingest_addr);
    let portal = portal_client("portal");

    let answer = client::submit(&portal, &base, &hundesteuer())
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["submission_id"].as_str().unwrap().to_owned();
    eventually(
        Duration::from_secs(20),
        "delivered to the Fachverfahren",
        || {
            let gw = &gw;
            let id = id.clone();
            async move {
                (states(gw, &id)
                    .await
                    .get("fachverfahren-demo")
                    .map(String::as_str)
                    == Some("delivered"))
                .then_some(())
            }
        },
    )
    .await;

    // dms-demo did not receive the submission: it may not answer it.
    let dms = client_with(&dms_cert, &dms_key);
    let pdf = b"%PDF-1.7\n% Bescheid ueber die Hundesteuer\n%%EOF\n".to_vec();
    let foreign = client::reply(&dms, &base, &id, "bescheid", &bescheid(&pdf))
        .await
        .unwrap();
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    assert_eq!(
        foreign.body["type"]
            .as_str()
            .map(|t| t.ends_with("not-a-recipient")),
        Some(true),
        "{}",
        foreign.body
    );
    let unknown = client::reply(
        &fachverfahren(),
        &base,
        "019ad000-0000-7000-8000-000000000000",
        "bescheid",
        &bescheid(&pdf),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // A portal cannot send a reply; a replier cannot submit.
    let by_portal = client::reply(&portal, &base, &id, "bescheid", &bescheid(&pdf))
        .await
        .unwrap();
    assert_eq!(by_portal.status, 403, "{}", by_portal.body);
    assert_eq!(by_portal.body["type"], "/problems/repliers-only");
    let submit_by_replier = client::submit(&fachverfahren(), &base, &hundesteuer())
        .await
        .unwrap();
    assert_eq!(submit_by_replier.status, 403, "{}", submit_by_replier.body);

    // Checked like a submission: the reply type's schema, known types only.
    let mut undecided = bescheid(&pdf);
    undecided.data = br#"{"entscheidung":"vielleicht"}"#.to_vec();
    let refused = client::reply(&fachverfahren(), &base, &id, "bescheid", &undecided)
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["type"], "/problems/schema-violation");
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("reply type bescheid") && !d.contains("vielleicht")),
        "{}",
        refused.body
    );
    let unknown_type = client::reply(&fachverfahren(), &base, &id, "mahnung", &bescheid(&pdf))
        .await
        .unwrap();
    assert_eq!(unknown_type.status, 422, "{}", unknown_type.body);
    assert_eq!(unknown_type.body["type"], "/problems/reply-type-unknown");
    let mut doctype = bescheid(&pdf);
    doctype.data = b"<!DOCTYPE x [<!ENTITY e \"e\">]><x>&e;</x>".to_vec();
    doctype.data_media_type = "application/xml".into();
    let unsafe_xml = client::reply(&fachverfahren(), &base, &id, "nachforderung", &doctype)
        .await
        .unwrap();
    assert_eq!(unsafe_xml.status, 400, "{}", unsafe_xml.body);

    // The Fachverfahren replies with its Bescheid (its Aktenzeichen as the key).
    let keyed = SubmitRequest {
        idempotency_key: Some("AZ-HST-2026-0042".into()),
        ..bescheid(&pdf)
    };
    let reply = client::reply(&fachverfahren(), &base, &id, "bescheid", &keyed)
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let again = client::reply(&fachverfahren(), &base, &id, "bescheid", &keyed)
        .await
        .unwrap();
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(
        again.body["submission_id"], reply.body["submission_id"],
        "a replay"
    );
    // The same key and content for another submission is a conflict, not a
    // replay that would leave that submission unanswered.
    let other = client::submit(&portal, &base, &hundesteuer())
        .await
        .unwrap();
    let other_id = other.body["submission_id"].as_str().unwrap().to_owned();
    let conflict = client::reply(&fachverfahren(), &base, &other_id, "bescheid", &keyed)
        .await
        .unwrap();
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.body["type"], "/problems/idempotency-conflict");
    // The portal's keys are its own: the same key on a submission is no replay.
    let portal_keyed = SubmitRequest {
        idempotency_key: Some("AZ-HST-2026-0042".into()),
        ..hundesteuer()
    };
    let own = client::submit(&portal, &base, &portal_keyed).await.unwrap();
    assert_eq!(own.status, 202, "{}", own.body);
    assert_ne!(own.body["submission_id"], reply.body["submission_id"]);
    let reply_id = reply.body["submission_id"].as_str().unwrap().to_owned();
    assert!(reply.body["receipt"]
        .as_str()
        .is_some_and(|r| r.len() > 100));
    let status_url = reply.body["status_url"].as_str().unwrap().to_owned();
    assert!(status_url.ends_with(&format!("/v1/submissions/{id}/replies/{reply_id}")));
    assert_eq!(
        audit_records(&gw, "replied").await.len(),
        1,
        "the refused replies stored nothing"
    );

    // portal2 sees nothing of it; portal-demo lists it.
    let portal2 = portal_client("portal2");
    let foreign_get = portal2
        .get(format!("{base}/v1/replies/{reply_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_get.status(), 404);
    let list: serde_json::Value = portal2
        .get(format!("{base}/v1/replies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["replies"], serde_json::json!([]), "{list}");
    let list: serde_json::Value = portal
        .get(format!("{base}/v1/replies"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = list["replies"].as_array().expect("replies");
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["reply_id"], reply_id.as_str());
    assert_eq!(listed[0]["in_reply_to"], id.as_str());

    // Fetched as its sealed envelope and opened by jwcrypto with the portal's key.
    let envelope = portal
        .get(format!("{base}/v1/replies/{reply_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(envelope.status(), 200);
    let envelope = envelope.bytes().await.unwrap();
    let out = tc.dir.path().join("opened");
    let summary = jwcrypto_open(&envelope, "recipient-rsa.key", &out);
    assert_eq!(summary["submission_id"], reply_id.as_str());
    assert_eq!(summary["in_reply_to"], id.as_str());
    assert_eq!(summary["reply_type"], "bescheid");
    assert_eq!(summary["sender"], "fachverfahren-demo");
    assert_eq!(summary["key_alg"], "RSA-OAEP-256");
    assert_eq!(std::fs::read(out.join("Bescheid.pdf")).unwrap(), pdf);
    assert_eq!(
        std::fs::read(out.join("data")).unwrap(),
        bescheid(&pdf).data
    );
    // Not with another portal's key.
    let wrong = tc.dir.path().join("wrong");
    std::fs::create_dir_all(&wrong).unwrap();
    std::fs::write(wrong.join("envelope.json"), &envelope).unwrap();
    let run = Command::new(python())
        .arg(repo().join("tests/interop/open_envelope.py"))
        .arg(wrong.join("envelope.json"))
        .arg(demo("recipient-ec.key"))
        .arg(demo("ca.pem"))
        .arg(demo("seal.pem"))
        .output()
        .unwrap();
    assert!(!run.status.success(), "another key opened the reply");

    // The portal acknowledges: delivered; again: nothing changes.
    let ack_url = format!("{base}/v1/replies/{reply_id}/ack");
    let ack: serde_json::Value = portal
        .post(&ack_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ack["acknowledged"], "now", "{ack}");
    let again: serde_json::Value = portal
        .post(&ack_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["acknowledged"], "before", "{again}");
    assert_eq!(
        portal2.post(&ack_url).send().await.unwrap().status(),
        404,
        "another portal cannot acknowledge it"
    );

    // The Fachverfahren sees its reply delivered; the portal's status and
    // Laufzettel of the submission show the reply.
    let seen = client::status(&fachverfahren(), &status_url).await.unwrap();
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["in_reply_to"], id.as_str());
    assert_eq!(seen.body["deliveries"][0]["target"], "portal-demo.replies");
    assert_eq!(seen.body["deliveries"][0]["state"], "delivered");
    let dms_sees = client::status(&dms, &status_url).await.unwrap();
    assert_eq!(dms_sees.status, 404, "{}", dms_sees.body);
    let status = client::status(&portal, &format!("{base}/v1/submissions/{id}"))
        .await
        .unwrap();
    assert_eq!(status.body["replies"][0]["reply_id"], reply_id.as_str());
    assert_eq!(status.body["replies"][0]["by"], "fachverfahren-demo");
    assert_eq!(status.body["replies"][0]["reply_type"], "bescheid");
    let trace = client::status(&portal, &format!("{base}/v1/submissions/{id}/trace"))
        .await
        .unwrap();
    let events: Vec<&str> = trace.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        events,
        ["received", "sealed", "delivered", "replied"],
        "{}",
        trace.body
    );
    let reply_trace = client::status(&portal, &format!("{base}/v1/submissions/{reply_id}/trace"))
        .await
        .unwrap();
    let reply_events: Vec<&str> = reply_trace.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert_eq!(
        reply_events,
        ["received", "sealed", "offered", "delivered"],
        "{}",
        reply_trace.body
    );
    let received = &reply_trace.body["events"][0]["detail"];
    assert_eq!(received["in_reply_to"], id.as_str());
    assert_eq!(received["sender"], "fachverfahren-demo");
    // Ids, hashes and sizes only: nothing of the Bescheid is in the log.
    let log = serde_json::to_string(&reply_trace.body).unwrap();
    assert!(
        !log.contains("AZ-HST") && !log.contains("stattgegeben"),
        "{log}"
    );

    // Case statistics count the reply as replied, not as accepted, and its
    // delivery to the portal's box as no case outcome.
    let submitted = [
        id.clone(),
        other_id.clone(),
        own.body["submission_id"].as_str().unwrap().to_owned(),
    ];
    eventually(
        Duration::from_secs(20),
        "the three submissions delivered",
        || {
            let (gw, submitted) = (&gw, submitted.clone());
            async move {
                for s in &submitted {
                    if states(gw, s)
                        .await
                        .get("fachverfahren-demo")
                        .map(String::as_str)
                        != Some("delivered")
                    {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    let stats: serde_json::Value = plain_client()
        .get(format!(
            "http://{}/admin/v1/stats?period=month",
            gw.admin_addr
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totals"]["accepted"], 3, "{stats}");
    assert_eq!(stats["totals"]["replied"], 1, "{stats}");
    assert_eq!(stats["totals"]["delivered"], 3, "{stats}");
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_survives_kill_9_right_after_its_202() {
    let rx = Receiver::start(Mode::Accept).await;
    let ingest_port = free_port();
    let tc = test_config(&Options {
        receiver_url: rx.url(),
        ingest_port,
        ..Default::default()
    });
    let (dms_cert, _) = issue_client(tc.dir.path(), "dms-replier");
    with_replies(&tc, &dms_cert);
    let daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let base = base_url(daemon.ingest);
    let portal = portal_client("portal");
    let answer = client::submit(&portal, &base, &hundesteuer())
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["submission_id"].as_str().unwrap().to_owned();
    // The Fachverfahren has it once the receiver got it.
    eventually(
        Duration::from_secs(20),
        "received by the Fachverfahren",
        || {
            let rx = rx.clone();
            async move { (!rx.received().is_empty()).then_some(()) }
        },
    )
    .await;
    let pdf = b"%PDF-1.7\n% Nachforderung\n%%EOF\n".to_vec();
    let reply = eventually(Duration::from_secs(20), "reply accepted", || {
        let (base, id, pdf) = (base.clone(), id.clone(), pdf.clone());
        async move {
            let r = client::reply(
                &fachverfahren(),
                &base,
                &id,
                "nachforderung",
                &bescheid(&pdf),
            )
            .await
            .ok()?;
            (r.status == 202).then_some(r)
        }
    })
    .await;
    let reply_id = reply.body["submission_id"].as_str().unwrap().to_owned();
    daemon.kill_9();

    let daemon = DaemonProcess::spawn(BIN, &tc.path, ingest_port);
    let envelope = eventually(Duration::from_secs(20), "the reply in the box", || {
        let (portal, url) = (portal.clone(), format!("{base}/v1/replies/{reply_id}"));
        async move {
            let r = portal.get(url).send().await.ok()?;
            (r.status() == 200).then_some(r.bytes().await.ok()?)
        }
    })
    .await;
    let summary = jwcrypto_open(
        &envelope,
        "recipient-rsa.key",
        &tc.dir.path().join("opened"),
    );
    assert_eq!(summary["in_reply_to"], id.as_str());
    assert_eq!(summary["reply_type"], "nachforderung");
    let ack = portal
        .post(format!("{base}/v1/replies/{reply_id}/ack"))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status(), 200);

    // Stopped cleanly (its last checkpoint signed), `audit prove` shows both
    // directions: the submission's records end with `replied`, the reply's
    // with its delivery to the portal; both proofs verify.
    let mut daemon = daemon;
    let stopped = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(daemon.child.wait().unwrap().success());
    let cli = |args: &[&std::ffi::OsStr]| Command::new(BIN).args(args).output().unwrap();
    for (what, which, events) in [
        ("submission", &id, "delivered, received, replied, sealed"),
        ("reply", &reply_id, "delivered, offered, received, sealed"),
    ] {
        let proof = tc.dir.path().join(format!("{what}-proof.json"));
        let prove = cli(&[
            "audit".as_ref(),
            "prove".as_ref(),
            which.as_ref(),
            "--config".as_ref(),
            tc.path.as_os_str(),
            "--out".as_ref(),
            proof.as_os_str(),
        ]);
        assert!(
            prove.status.success(),
            "{}",
            String::from_utf8_lossy(&prove.stderr)
        );
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
        // The crash's `recovered` records are part of the story, not of this check.
        let proven: Vec<String> = doc["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let record: serde_json::Value =
                    serde_json::from_str(r["record"].as_str().unwrap()).unwrap();
                record["event"].as_str().unwrap().to_owned()
            })
            .filter(|e| e != "recovered")
            .collect();
        // Offered before the kill, recovered and offered again at the restart:
        // once here. Whether the delivery was recorded before the reply came
        // depends on when the kill hit: the order of those two is not checked.
        let mut proven = proven;
        proven.sort();
        proven.dedup();
        assert_eq!(proven.join(", "), events, "{what}: {doc}");
        let verify = cli(&[
            "audit".as_ref(),
            "verify-proof".as_ref(),
            proof.as_os_str(),
            "--trust".as_ref(),
            demo("ca.pem").as_os_str(),
            "--seal".as_ref(),
            demo("seal.pem").as_os_str(),
        ]);
        assert!(
            verify.status.success(),
            "{what}: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_pushed_to_a_portals_target_arrive_there_and_are_not_fetched() {
    let rx = Receiver::start(Mode::Accept).await;
    let scratch = tempfile::tempdir().unwrap();
    let postfach = scratch.path().join("postfach");
    let tc = test_config(&Options {
        receiver_url: rx.url(),
        extra: format!(
            "[targets.postfach]\ncertificate = \"{}\"\nadapter = {{ type = \"filedrop\", dir = \"{}\" }}\n",
            demo("recipient-ec.pem").display(),
            postfach.display()
        ),
        ..Default::default()
    });
    let (dms_cert, _) = issue_client(tc.dir.path(), "dms-replier");
    with_replies(&tc, &dms_cert);
    // portal2-demo's replies go to its Postfach service's drop directory instead.
    let text = std::fs::read_to_string(&tc.path).unwrap();
    let fetched = format!(
        "replies = {{ certificate = \"{}\" }}",
        demo("recipient-ec.pem").display()
    );
    // (portal-demo's reply certificate is the RSA one: the first EC one is portal2-demo's.)
    let text = text.replacen(&fetched, "replies = { target = \"postfach\" }", 1);
    assert!(text.contains("replies = { target = \"postfach\" }"));
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    let base = base_url(gw.ingest_addr);
    let portal2 = portal_client("portal2");
    let answer = client::submit(
        &portal2,
        &base,
        &SubmitRequest {
            leistung: "99115005001000".into(),
            destination: "05315000".into(),
            data: b"<antrag/>".to_vec(),
            data_media_type: "application/xml".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["submission_id"].as_str().unwrap().to_owned();
    let pdf = b"%PDF-1.7\n% Zahlungsaufforderung\n%%EOF\n".to_vec();
    let reply = client::reply(
        &fachverfahren(),
        &base,
        &id,
        "zahlungsaufforderung",
        &bescheid(&pdf),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    let reply_id = reply.body["submission_id"].as_str().unwrap().to_owned();
    let file = eventually(
        Duration::from_secs(20),
        "the reply in the Postfach's directory",
        || {
            let postfach = postfach.clone();
            async move {
                files_under(&postfach)
                    .into_iter()
                    .find(|f| f.extension().is_some_and(|e| e == "json"))
            }
        },
    )
    .await;
    let summary = jwcrypto_open(
        &std::fs::read(&file).unwrap(),
        "recipient-ec.key",
        &tc.dir.path().join("opened"),
    );
    assert_eq!(summary["submission_id"], reply_id.as_str());
    assert_eq!(summary["in_reply_to"], id.as_str());
    assert_eq!(summary["reply_type"], "zahlungsaufforderung");
    // Nothing to fetch: the portal is told where its replies go.
    let list = portal2
        .get(format!("{base}/v1/replies"))
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 409);
    gw.shutdown().await.unwrap();
}

#[test]
fn nothing_is_routed_into_a_reply_box() {
    let tc = test_config(&Options {
        extra: "[[routes]]\nleistung = \"99999999999999\"\ntargets = [\"portal-demo.replies\"]\n"
            .into(),
        ..Default::default()
    });
    let dms = tc.dir.path().join("dms.pem");
    std::fs::copy(demo("operator.pem"), &dms).unwrap();
    with_replies(&tc, &dms);
    let config = ozg_gateway::config::Config::load(&tc.path).unwrap();
    let refused = ozg_gateway::daemon::setup::setup(config)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        refused.contains("reply box of portal \"portal-demo\""),
        "{refused}"
    );
}
