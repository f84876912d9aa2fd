//! The XTA 2 listener driven by an independent client: Python zeep, with its
//! operations generated from the official WSDL (`tests/interop/xta_client.py`),
//! over mTLS. Every answer the client saw is validated against the official
//! XTA schemas (`tests/interop/xta_validate.py`, lxml). Raw hostile requests
//! check that refusals are SOAP faults and change nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

/// The official XTA WSDL and schemas (reference data beside the repository).
fn xta_schemas() -> Option<PathBuf> {
    let dir = shared()?.join("xta");
    dir.join("XTA.wsdl").exists().then_some(dir)
}

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("OZG_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"));
    if dir.exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("OZG_REQUIRE_REFERENCE").is_none(),
        "OZG_REQUIRE_REFERENCE is set but {} does not exist",
        dir.display()
    );
    None
}

/// One XTA client: a certificate (demo stem), the account it names, where its answers go.
struct Client {
    url: String,
    stem: &'static str,
    account: &'static str,
    dump: PathBuf,
    schemas: PathBuf,
}

impl Client {
    fn new(addr: SocketAddr, stem: &'static str, account: &'static str, dump: &Path) -> Client {
        Client {
            url: format!("https://localhost:{}/xta", addr.port()),
            stem,
            account,
            dump: dump.to_owned(),
            schemas: xta_schemas().expect("schemas"),
        }
    }

    /// Runs a command; (exit code, its JSON answer).
    fn run(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(python())
            .arg(repo().join("tests/interop/xta_client.py"))
            .arg("--wsdl")
            .arg(self.schemas.join("XTA.wsdl"))
            .arg("--url")
            .arg(&self.url)
            .arg("--cert")
            .arg(demo(&format!("{}.pem", self.stem)))
            .arg("--key")
            .arg(demo(&format!("{}.key", self.stem)))
            .arg("--ca")
            .arg(demo("ca.pem"))
            .arg("--account")
            .arg(self.account)
            .arg("--dump-dir")
            .arg(&self.dump)
            .args(args)
            .output()
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
            panic!(
                "xta_client {args:?}: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), json)
    }

    /// `sendMessage` of `file` (XML) for Leistung `leistung` to `destination`.
    fn send(
        &self,
        id: &str,
        leistung: &str,
        destination: &str,
        file: &Path,
        extra: &[&str],
    ) -> (i32, Value) {
        let service = format!("urn:de:fim:leika:leistung:{leistung}");
        let mut args = vec![
            "send",
            "--message-id",
            id,
            "--service",
            &service,
            "--reader",
            destination,
            "--file",
            file.to_str().unwrap(),
            "--content-type",
            "application/xml",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (code, json) = self.run(args);
        assert_eq!(code, 0, "{args:?}: {json}");
        json
    }

    fn fault(&self, args: &[&str]) -> (String, String) {
        let (code, json) = self.run(args);
        assert_eq!(code, 3, "{args:?} should be a fault: {json}");
        (
            json["fault"].as_str().unwrap().to_owned(),
            json["code"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

/// Every answer saved in `dump` validates against the official schemas.
fn validate_all(dump: &Path) {
    let files: Vec<PathBuf> = files_under(dump);
    assert!(!files.is_empty(), "no answers saved in {}", dump.display());
    let out = Command::new(python())
        .arg(repo().join("tests/interop/xta_validate.py"))
        .arg("--schemas")
        .arg(xta_schemas().unwrap())
        .args(["--op", "auto"])
        .args(&files)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "answers not valid against the XTA schemas:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test config with the XTA listener, two message-box targets for
/// Leistung 99999999999999 (destination `fv2` → the second reader's box) and
/// the demo portal allowed to send over XTA.
async fn start_xta(overdue_after: &str) -> (TestConfig, ozg_gateway::daemon::Gateway) {
    let tc = xta_config(overdue_after);
    let gw = start_from(&tc).await;
    (tc, gw)
}

/// The test config with the XTA listener and two message-box targets.
fn xta_config(overdue_after: &str) -> TestConfig {
    // A fixed admin port: `ozg-gateway reload` finds the daemon by it.
    let tc = test_config(&Options {
        admin_port: free_port(),
        ..Default::default()
    });
    let mut text = std::fs::read_to_string(&tc.path).unwrap();
    text.push_str(&format!(
        r#"
[xta]
listen = "127.0.0.1:0"
max_list_items = 3
overdue_after = "{overdue_after}"

[targets.fv-xta]
certificate = "{ec}"
adapter = {{ type = "xta", account = "fachverfahren-demo", certificate = "{fv}" }}

[targets.fv2-xta]
certificate = "{ec}"
payload = "xdomea"
adapter = {{ type = "xta", account = "dms2", certificate = "{other}" }}

[[routes]]
leistung = "99999999999999"
destination = "*"
targets = ["fv-xta"]

[[routes]]
leistung = "99999999999999"
destination = "fv2"
targets = ["fv2-xta"]
"#,
        ec = demo("recipient-ec.pem").display(),
        fv = demo("fachverfahren.pem").display(),
        other = demo("portal2.pem").display(),
    ));
    std::fs::write(&tc.path, text).unwrap();
    tc
}

fn request(destination: &str, marker: &str) -> SubmitRequest {
    SubmitRequest {
        leistung: "99999999999999".into(),
        destination: destination.into(),
        data: format!("<antrag><marker>{marker}</marker></antrag>").into_bytes(),
        data_media_type: "application/xml".into(),
        attachments: vec![(
            "Nachweis.pdf".into(),
            "application/pdf".into(),
            b"%PDF-1.7 xta".to_vec(),
        )],
        ..Default::default()
    }
}

async fn submit(gw: &ozg_gateway::daemon::Gateway, req: &SubmitRequest) -> String {
    let answer = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body["submission_id"].as_str().unwrap().to_owned()
}

/// The message id of the submission's delivery to `target`, once it is in the box.
async fn boxed(gw: &ozg_gateway::daemon::Gateway, id: &str, target: &str) -> String {
    eventually(Duration::from_secs(10), "in the box", || async {
        let s = gw.store.submission(id).await.unwrap()?;
        let d = s.deliveries.into_iter().find(|d| d.target == target)?;
        d.offered_at.is_some().then_some(d.message_id)
    })
    .await
}

async fn state(gw: &ozg_gateway::daemon::Gateway, id: &str, target: &str) -> String {
    let s = gw.store.submission(id).await.unwrap().unwrap();
    let d = s.deliveries.iter().find(|d| d.target == target).unwrap();
    d.state.as_str().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_lists_fetches_and_closes_over_xta_and_a_second_reader_sees_none_of_it() {
    if xta_schemas().is_none() {
        return;
    }
    let (_tc, gw) = start_xta("3d").await;
    let addr = gw.xta_addr.expect("xta listener");
    let dump = tempfile::tempdir().unwrap();
    let reader = Client::new(addr, "fachverfahren", "fachverfahren-demo", dump.path());
    let other = Client::new(addr, "portal2", "dms2", dump.path());

    let mut ids = Vec::new();
    for i in 0..4 {
        let id = submit(&gw, &request("05315000", &format!("m{i}"))).await;
        let mid = boxed(&gw, &id, "fv-xta").await;
        assert_eq!(state(&gw, &id, "fv-xta").await, "in_flight");
        ids.push((id, mid));
    }
    assert_eq!(reader.ok(&["check-account"])["active"], true);

    // Three per list (max_list_items), then the rest with getNextStatusList.
    let list = reader.ok(&["status-list", "--max", "10"]);
    let listed: Vec<String> = list["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), 3, "{list}");
    assert_eq!(list["items_pending"], 1, "{list}");
    let next = reader.ok(&[
        "next-status-list",
        "--request-id",
        list["request_id"].as_str().unwrap(),
    ]);
    assert_eq!(next["messages"].as_array().unwrap().len(), 1, "{next}");
    let xta_id = |mid: &str| format!("urn:de:xta:messageid:ozg-gateway:{mid}");
    assert_eq!(listed[0], xta_id(&ids[0].1));
    assert_eq!(next["messages"][0]["message_id"], xta_id(&ids[3].1));
    assert_eq!(
        list["messages"][0]["service"],
        "urn:de:fim:leika:leistung:99999999999999"
    );

    // The second reader sees none of them and can neither fetch nor close them.
    let empty = other.ok(&["status-list"]);
    assert_eq!(empty["no_message"], true, "{empty}");
    let scratch = tempfile::tempdir().unwrap();
    let stolen = scratch.path().join("stolen.json");
    let (fault, _) = other.fault(&["get", &listed[0], "--out", stolen.to_str().unwrap()]);
    assert_eq!(fault, "PermissionDeniedException");
    let (fault, _) = other.fault(&["close", &listed[0]]);
    assert_eq!(fault, "PermissionDeniedException");
    assert_eq!(state(&gw, &ids[0].0, "fv-xta").await, "in_flight");

    // getMessage: the sealed envelope, byte for byte as stored; `open` reads it.
    let got = scratch.path().join("got.json");
    let meta = reader.ok(&["get", &listed[0], "--out", got.to_str().unwrap()]);
    assert_eq!(meta["message_id"], listed[0]);
    let fetched = std::fs::read(&got).unwrap();
    let stored = gw.store.envelope(&ids[0].1).await.unwrap().unwrap();
    assert_eq!(fetched, stored);
    let out = scratch.path().join("opened");
    let open = open_envelope(BIN, &got, "recipient-ec", &out);
    assert!(
        open.status.success(),
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );
    assert!(dir_contains(&out, b"<marker>m0</marker>"));
    assert!(dir_contains(&out, b"%PDF-1.7 xta"));

    // close: delivered, audited; a second close is harmless.
    reader.ok(&["close", &listed[0]]);
    assert_eq!(state(&gw, &ids[0].0, "fv-xta").await, "delivered");
    reader.ok(&["close", &listed[0]]);
    let trace = gw.store.trace(&ids[0].0).await.unwrap();
    let events: Vec<&str> = trace.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["received", "sealed", "offered", "delivered"]);
    let (fault, code) = reader.fault(&["get", &listed[0], "--out", got.to_str().unwrap()]);
    assert_eq!(
        (fault.as_str(), code.as_str()),
        ("InvalidMessageIDException", "9070")
    );

    // getNextMessage with LastMsgReceived: closes what was received, returns the next.
    let first = reader.ok(&["get", &listed[1], "--out", got.to_str().unwrap()]);
    let following = reader.ok(&[
        "next-message",
        "--request-id",
        first["request_id"].as_str().unwrap(),
        "--last",
        &listed[1],
        "--out",
        got.to_str().unwrap(),
    ]);
    assert_eq!(following["message_id"], listed[2]);
    assert_eq!(state(&gw, &ids[1].0, "fv-xta").await, "delivered");

    // The transport report: the reader's view of its delivery.
    let report = reader.ok(&["report", &listed[0]]);
    assert_eq!(report["status"]["code"], 1, "{report}");
    let report = reader.ok(&["report", &xta_id(&ids[3].1)]);
    assert_eq!(report["status"]["code"], 0, "{report}");
    let (fault, _) = reader.fault(&[
        "get",
        "urn:de:xta:messageid:ozg-gateway:unknown",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(fault, "InvalidMessageIDException");

    // The second reader's own box: an xdomea target.
    let id = submit(&gw, &request("fv2", "second")).await;
    boxed(&gw, &id, "fv2-xta").await;
    let mine = other.ok(&["status-list"]);
    assert_eq!(mine["messages"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(
        mine["messages"][0]["message_type"],
        "Geschaeftsgang.Geschaeftsgang.0201"
    );
    // Its DMS confirms with an xdomea 0202 over sendMessage: kept as the receipt
    // (closing the message); sent again, kept again and audited as confirmed.
    let boxed_id = boxed(&gw, &id, "fv2-xta").await;
    let receipt = scratch.path().join("0202.xml");
    std::fs::write(
        &receipt,
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><xdomea:Geschaeftsgang.EmpfangBestaetigen.0202 xmlns:xdomea=\"urn:xoev-de:xdomea:schema:3.0.0\"><xdomea:Kopf><xdomea:ProzessID>{boxed_id}</xdomea:ProzessID></xdomea:Kopf></xdomea:Geschaeftsgang.EmpfangBestaetigen.0202>"),
    )
    .unwrap();
    let confirm_as = |client: &Client, n: &str| {
        client.run(&[
            "send",
            "--message-id",
            n,
            "--service",
            "urn:de:fim:leika:leistung:99999999999999",
            "--reader",
            "fv2",
            "--file",
            receipt.to_str().unwrap(),
            "--content-type",
            "application/xml",
            "--message-type",
            "Geschaeftsgang.EmpfangBestaetigen.0202",
            "--payload-schema",
            "urn:xoev-de:xdomea:schema:3.0.0",
        ])
    };
    let confirm = |n: &str| confirm_as(&other, n);
    let (code, json) = confirm("urn:de:xta:messageid:dms2:1");
    assert_eq!(code, 0, "{json}");
    assert_eq!(state(&gw, &id, "fv2-xta").await, "delivered");
    let status = gw.store.submission(&id).await.unwrap().unwrap();
    let kept = status.deliveries[0].receipt.clone().unwrap();
    assert!(kept.contains(&boxed_id), "{kept}");
    let (code, json) = confirm("urn:de:xta:messageid:dms2:2");
    assert_eq!(code, 0, "{json}");
    let events: Vec<String> = gw
        .store
        .trace(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(
        events,
        ["received", "sealed", "offered", "delivered", "confirmed"]
    );
    // The first reader cannot confirm the second one's message.
    let (code, json) = confirm_as(&reader, "urn:x:3");
    assert_eq!(
        (code, json["fault"].as_str()),
        (3, Some("PermissionDeniedException")),
        "{json}"
    );

    assert_eq!(
        reader.ok(&["status-list"])["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    validate_all(dump.path());
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_over_xta_reaches_its_targets_like_one_from_the_portal_api() {
    if xta_schemas().is_none() {
        return;
    }
    let (tc, gw) = start_xta("3d").await;
    let addr = gw.xta_addr.unwrap();
    let dump = tempfile::tempdir().unwrap();
    let sender = Client::new(addr, "portal", "portal-demo", dump.path());
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("antrag.xml");
    std::fs::write(
        &data,
        std::fs::read(repo().join("schemas/examples/meldebescheinigung.xml")).unwrap(),
    )
    .unwrap();
    let pdf = scratch.path().join("n.pdf");
    std::fs::write(&pdf, b"%PDF-1.7 sent over XTA").unwrap();
    let attach = format!("{}:application/pdf:Nachweis.pdf", pdf.display());

    let avail = sender.ok(&[
        "lookup-service",
        "urn:de:fim:leika:leistung:99115005001000",
        "--reader",
        "05315000",
    ]);
    assert_eq!(avail["available"], true);
    let unavailable = sender.ok(&[
        "lookup-service",
        "urn:de:fim:leika:leistung:99000000000000",
        "--reader",
        "05315000",
    ]);
    assert_eq!(unavailable["available"], false);

    let mid = sender.ok(&["create-id"])["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = |mid: &str, file: &Path| {
        sender.send(
            mid,
            "99115005001000",
            "05315000",
            file,
            &["--filename", "antrag.xml", "--attach", &attach],
        )
    };
    let (code, json) = send(&mid, &data);
    assert_eq!(code, 0, "{json}");
    // Sent again with the same id and content: nothing new.
    let (code, json) = send(&mid, &data);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        metric(gw.admin_addr, "ozg_submissions_accepted_total").await,
        1.0
    );
    // The same id for other content: refused.
    let other = scratch.path().join("other.xml");
    std::fs::write(&other, b"<antrag>anders</antrag>").unwrap();
    let (code, json) = send(&mid, &other);
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["code"], "9024");

    // It travels like a portal submission: the filedrop DMS has it.
    eventually(Duration::from_secs(10), "delivered to the DMS", || async {
        let files = files_under(&tc.outbox);
        (!files.is_empty()).then_some(())
    })
    .await;
    let report = sender.ok(&["report", &mid]);
    let infos = report.to_string();
    assert!(
        infos.contains("received") && infos.contains("sealed"),
        "{report}"
    );

    // Not data of its Leistung's type: a schema violation, nothing stored.
    let json_data = scratch.path().join("a.json");
    std::fs::write(&json_data, b"{not xml").unwrap();
    let (code, json) = sender.send(
        "urn:de:xta:messageid:test:bad",
        "99115005001000",
        "05315000",
        &json_data,
        &["--filename", "a.xml"],
    );
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["fault"], "MessageSchemaViolationException");
    // Not allowed this Leistung: permission denied.
    let (code, json) = sender.send(
        "urn:de:xta:messageid:test:forbidden",
        "99000000000000",
        "05315000",
        &data,
        &[],
    );
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["fault"], "PermissionDeniedException");
    assert_eq!(
        metric(gw.admin_addr, "ozg_submissions_accepted_total").await,
        1.0
    );

    // cancelMessage: what has not reached its target yet is taken back.
    let held = sender.ok(&["create-id"])["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, json) = sender.send(&held, "99999999999999", "05315000", &data, &[]);
    assert_eq!(code, 0, "{json}");
    sender.ok(&["cancel", &held]);
    let (fault, code) = sender.fault(&["cancel", &held]);
    assert_eq!(
        (fault.as_str(), code.as_str()),
        ("CancelDeniedException", "9100")
    );
    let (fault, _) = sender.fault(&["cancel", "urn:de:xta:messageid:test:never-sent"]);
    assert_eq!(fault, "ParameterIsNotValidException");
    // A portal reads no box.
    let (fault, _) = sender.fault(&["status-list"]);
    assert_eq!(fault, "PermissionDeniedException");

    validate_all(dump.path());
    gw.shutdown().await.unwrap();
}

/// A raw SOAP 1.2 request with `body` for `action`, as the given account.
fn soap(action: &str, account: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:m="http://www.osci.eu/ws/2014/10/transport" xmlns:o="http://www.osci.eu/ws/2008/05/transport"><s:Header><m:Author><m:Identifier type="xoev">{account}</m:Identifier></m:Author><wsa:Action>{action}</wsa:Action><wsa:MessageID>urn:uuid:0b9d7f3a-6c2e-4e1f-9a8b-5d4c3b2a1f00</wsa:MessageID></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
    )
}

const LIST: &str =
    "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxStatusListRequest";
const CLOSE: &str = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/MsgBoxCloseRequest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_soap_gets_faults_and_changes_nothing() {
    if xta_schemas().is_none() {
        return;
    }
    let (_tc, gw) = start_xta("1s").await;
    let addr = gw.xta_addr.unwrap();
    let id = submit(&gw, &request("05315000", "hostile")).await;
    let mid = boxed(&gw, &id, "fv-xta").await;
    let url = format!("https://localhost:{}/xta", addr.port());
    let reader = client_with(&demo("fachverfahren.pem"), &demo("fachverfahren.key"));
    let close_body = format!(
        r#"<o:MsgBoxCloseRequest MsgBoxRequestID="urn:x"><o:LastMsgReceived>urn:de:xta:messageid:ozg-gateway:{mid}</o:LastMsgReceived></o:MsgBoxCloseRequest>"#
    );
    let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>&lol2;</s:Body></s:Envelope>"#;
    let big = soap(
        LIST,
        "fachverfahren-demo",
        &format!("<x>{}</x>", "A".repeat(5 << 20)),
    );
    let dump = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("DOCTYPE", bomb.to_owned(), "ParameterIsNotValidException"),
        (
            "undeclared entity",
            soap(CLOSE, "fachverfahren-demo", "<x>&xxe;</x>"),
            "ParameterIsNotValidException",
        ),
        (
            "too deep",
            soap(LIST, "fachverfahren-demo", &deep),
            "ParameterIsNotValidException",
        ),
        ("oversized", big, "ParameterIsNotValidException"),
        (
            "another account",
            soap(CLOSE, "portal-demo", &close_body),
            "PermissionDeniedException",
        ),
        (
            "unknown operation",
            soap("http://www.xta.de/XTA/Shutdown", "fachverfahren-demo", ""),
            "ParameterIsNotValidException",
        ),
        (
            "no Action",
            soap("", "fachverfahren-demo", "").replace("<wsa:Action></wsa:Action>", ""),
            "ParameterIsNotValidException",
        ),
        (
            "not XML",
            "{\"close\": true}".to_owned(),
            "ParameterIsNotValidException",
        ),
        (
            "close without ids",
            soap(
                CLOSE,
                "fachverfahren-demo",
                r#"<o:MsgBoxCloseRequest MsgBoxRequestID="urn:x"/>"#,
            ),
            "ParameterIsNotValidException",
        ),
        (
            "bad maxListItems",
            soap(
                LIST,
                "fachverfahren-demo",
                r#"<o:MsgBoxStatusListRequest maxListItems="-1"/>"#,
            ),
            "ParameterIsNotValidException",
        ),
    ];
    for (i, (what, body, exception)) in cases.into_iter().enumerate() {
        let resp = reader
            .post(&url)
            .header("content-type", "application/soap+xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(
            status == 400 || status == 500,
            "{what}: HTTP {status}: {text}"
        );
        assert!(
            text.contains(&format!("<xta:{exception}>")),
            "{what}: expected {exception}: {text}"
        );
        std::fs::write(dump.path().join(format!("{i:03}-fault.xml")), &text).unwrap();
        assert_eq!(
            state(&gw, &id, "fv-xta").await,
            "in_flight",
            "{what} changed the delivery"
        );
    }
    // The faults themselves are valid XTA faults.
    let out = Command::new(python())
        .arg(repo().join("tests/interop/xta_validate.py"))
        .arg("--schemas")
        .arg(xta_schemas().unwrap())
        .arg("--allow-non-xta-fault")
        .args(files_under(dump.path()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // SOAP 1.1 and other content types are refused before parsing.
    let resp = reader
        .post(&url)
        .header("content-type", "text/xml")
        .body(soap(LIST, "fachverfahren-demo", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // A client certificate registered for nothing is refused.
    let scratch = tempfile::tempdir().unwrap();
    let stranger = unregistered_client(scratch.path());
    let resp = stranger
        .post(&url)
        .header("content-type", "application/soap+xml")
        .body(soap(
            LIST,
            "fachverfahren-demo",
            "<o:MsgBoxStatusListRequest/>",
        ))
        .send()
        .await;
    if let Ok(resp) = resp {
        let text = resp.text().await.unwrap();
        assert!(text.contains("PermissionDeniedException"), "{text}");
    }
    assert_eq!(state(&gw, &id, "fv-xta").await, "in_flight");
    // Not picked up within overdue_after (1 s here): the status and a metric say so.
    eventually(Duration::from_secs(10), "overdue in the metric", || async {
        let n = metric(
            gw.admin_addr,
            "ozg_pickup_overdue_messages{target=\"fv-xta\"}",
        )
        .await;
        (n >= 1.0).then_some(())
    })
    .await;
    let status = client::status(
        &portal_client("portal"),
        &format!("{}/v1/submissions/{id}", base_url(gw.ingest_addr)),
    )
    .await
    .unwrap();
    let d = &status.body["deliveries"][0];
    assert_eq!(d["target"], "fv-xta");
    assert_eq!(d["pickup_overdue"], true, "{}", status.body);
    assert!(d["offered_at"].is_string(), "{}", status.body);
    assert!(
        metric(
            gw.admin_addr,
            "ozg_requests_refused_total{listener=\"xta\",reason=\"permission-denied\"}"
        )
        .await
            >= 1.0
    );
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_message_box_and_its_reader() {
    if xta_schemas().is_none() {
        return;
    }
    let (tc, gw) = start_xta("3d").await;
    let addr = gw.xta_addr.unwrap();
    let dump = tempfile::tempdir().unwrap();
    // The operator's certificate reads no box yet.
    let late = Client::new(addr, "operator", "late", dump.path());
    let (fault, _) = late.fault(&["status-list"]);
    assert_eq!(fault, "PermissionDeniedException");
    let mut text = std::fs::read_to_string(&tc.path).unwrap();
    text = text.replace(
        "[[routes]]\nleistung = \"99999999999999\"\ndestination = \"fv2\"",
        "[[routes]]\nleistung = \"99999999999999\"\ndestination = \"late\"\ntargets = [\"late-xta\"]\n\n[[routes]]\nleistung = \"99999999999999\"\ndestination = \"fv2\"",
    );
    text.push_str(&format!(
        "\n[targets.late-xta]\ncertificate = \"{}\"\nadapter = {{ type = \"xta\", account = \"late\", certificate = \"{}\" }}\n",
        demo("recipient-ec.pem").display(),
        demo("operator.pem").display()
    ));
    std::fs::write(&tc.path, text).unwrap();
    let out = Command::new(BIN)
        .args(["reload", "--config"])
        .arg(&tc.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = submit(&gw, &request("late", "after the reload")).await;
    boxed(&gw, &id, "late-xta").await;
    let list = late.ok(&["status-list"]);
    assert_eq!(list["messages"].as_array().unwrap().len(), 1, "{list}");
    validate_all(dump.path());
    gw.shutdown().await.unwrap();
}

#[test]
fn a_message_box_without_an_xta_listener_is_refused_at_start() {
    let tc = test_config(&Options::default());
    let mut text = std::fs::read_to_string(&tc.path).unwrap();
    text.push_str(&format!(
        "\n[targets.fv-xta]\ncertificate = \"{}\"\nadapter = {{ type = \"xta\", account = \"fv\", certificate = \"{}\" }}\n",
        demo("recipient-ec.pem").display(),
        demo("fachverfahren.pem").display()
    ));
    std::fs::write(&tc.path, text).unwrap();
    let config = ozg_gateway::config::Config::load(&tc.path).unwrap();
    let refused = ozg_gateway::daemon::setup::setup(config)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        refused.contains("targets.fv-xta.adapter") && refused.contains("no XTA listener"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_replies_over_xta_and_the_portal_reads_the_reply_from_its_account() {
    if xta_schemas().is_none() {
        return;
    }
    // portal-demo fetches its replies: over the portal API, or over XTA with
    // its account, as here.
    // Overdue after 1 s: a reply the portal does not fetch in time is alerted on.
    let tc = xta_config("1s");
    let text = std::fs::read_to_string(&tc.path).unwrap().replacen(
        "id = \"portal-demo\"\n",
        &format!(
            "id = \"portal-demo\"\nreplies = {{ certificate = \"{}\" }}\n",
            demo("recipient-rsa.pem").display()
        ),
        1,
    );
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    let addr = gw.xta_addr.expect("xta listener");
    let dump = tempfile::tempdir().unwrap();
    let reader = Client::new(addr, "fachverfahren", "fachverfahren-demo", dump.path());
    let other = Client::new(addr, "portal2", "dms2", dump.path());
    let portal = Client::new(addr, "portal", "portal-demo", dump.path());

    let id = submit(&gw, &request("05315000", "r0")).await;
    let mid = boxed(&gw, &id, "fv-xta").await;
    let xta_id = format!("urn:de:xta:messageid:ozg-gateway:{mid}");
    let scratch = tempfile::tempdir().unwrap();
    let bescheid = scratch.path().join("bescheid.xml");
    std::fs::write(
        &bescheid,
        "<bescheid><ergebnis>stattgegeben</ergebnis></bescheid>",
    )
    .unwrap();
    let reply_args = [
        "--in-reply-to",
        xta_id.as_str(),
        "--message-type",
        "bescheid",
    ];

    // dms2 reads another box: it did not receive the message and may not answer it.
    let (code, json) = other.send(
        "reply-x",
        "99999999999999",
        "portal-demo",
        &bescheid,
        &reply_args,
    );
    assert_eq!(code, 3, "{json}");
    assert_eq!(json["fault"], "PermissionDeniedException", "{json}");
    // The reader answers what it received.
    let (code, json) = reader.send(
        "reply-1",
        "99999999999999",
        "portal-demo",
        &bescheid,
        &reply_args,
    );
    assert_eq!(code, 0, "{json}");

    eventually(
        Duration::from_secs(10),
        "the unfetched reply overdue",
        || async {
            let n = metric(
                gw.admin_addr,
                "ozg_pickup_overdue_messages{target=\"portal-demo.replies\"}",
            )
            .await;
            (n >= 1.0).then_some(())
        },
    )
    .await;

    // The portal's account holds the reply; it fetches, opens and closes it.
    let list = portal.ok(&["status-list"]);
    let listed = list["messages"].as_array().expect("messages");
    assert_eq!(listed.len(), 1, "{list}");
    let reply_xta_id = listed[0]["message_id"].as_str().unwrap().to_owned();
    let got = scratch.path().join("reply.json");
    portal.ok(&["get", &reply_xta_id, "--out", got.to_str().unwrap()]);
    let out = scratch.path().join("opened");
    let open = open_envelope(BIN, &got, "recipient-rsa", &out);
    assert!(
        open.status.success(),
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );
    assert!(dir_contains(&out, b"<ergebnis>stattgegeben</ergebnis>"));
    let envelope: Value = serde_json::from_slice(&std::fs::read(&got).unwrap()).unwrap();
    assert_eq!(
        envelope["sender"], "fv-xta",
        "the reply's sender is the target"
    );
    portal.ok(&["close", &reply_xta_id]);
    let trace = gw.store.trace(&id).await.unwrap();
    let replied: Vec<_> = trace.iter().filter(|r| r.event == "replied").collect();
    assert_eq!(replied.len(), 1);
    assert_eq!(replied[0].detail["by"], "fv-xta");
    assert_eq!(replied[0].detail["reply_type"], "bescheid");
    let reply_id = replied[0].detail["reply_id"].as_str().unwrap();
    assert_eq!(
        states(&gw, reply_id)
            .await
            .get("portal-demo.replies")
            .map(String::as_str),
        Some("delivered")
    );
    // Sent again under the same message id: the same reply, nothing new.
    let (code, json) = reader.send(
        "reply-1",
        "99999999999999",
        "portal-demo",
        &bescheid,
        &reply_args,
    );
    assert_eq!(code, 0, "{json}");
    let trace = gw.store.trace(&id).await.unwrap();
    assert_eq!(trace.iter().filter(|r| r.event == "replied").count(), 1);
    validate_all(dump.path());
    gw.shutdown().await.unwrap();
}
