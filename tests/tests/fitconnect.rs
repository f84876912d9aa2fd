//! The gateway as a FIT-Connect Zustelldienst, driven by the unmodified
//! `fitconnect` SDK from PyPI (`tests/interop/fitconnect_roundtrip.py`): a
//! sender sends JSON data and an attachment, the subscriber lists, fetches and
//! decrypts them with the destination's key. Raw requests check who may do
//! what, and that the gateway never holds the plaintext.

use std::process::Command;

use ozg_e2e::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
const DEST: &str = "5f1a6c2e-8b3d-4e9a-9c71-2d4f6b8a0e13";
const OTHER: &str = "0c6f7a9e-3b21-4d5e-8f40-1a2b3c4d5e6f";
const LEISTUNG: &str = "99050012104000";
/// DEMO ONLY secrets (their SHA-256 are in config/gateway.toml).
const SENDER: (&str, &str) = (
    "demo-sender",
    "DEMO-ONLY-esAA34ZHp6eHQG1oq11e0KQ0hpiRPEIVFC2jfkhwG6Y",
);
const SUBSCRIBER: (&str, &str) = (
    "demo-subscriber",
    "DEMO-ONLY-GKAMMow50fOomKIxT8NcdTJK51IpwiXnDSfI-JurXNs",
);

fn sha256(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        s.as_bytes(),
    ))
}

/// The test config with the Zustelldienst: the demo destination and a second
/// one, each with its own sender and subscriber.
async fn start_fit(
    extra: &str,
    subscriber_cert: Option<&std::path::Path>,
) -> (TestConfig, ozg_gateway::daemon::Gateway) {
    let cert = demo("fitconnect-destination.pem").display().to_string();
    start_fit_keys(
        extra,
        subscriber_cert,
        &format!("certificate = \"{cert}\""),
        "",
    )
    .await
}

/// [`start_fit`] with `keys` as the destination's key setting(s), and
/// `trust_anchors` (a file) if not empty.
async fn start_fit_keys(
    extra: &str,
    subscriber_cert: Option<&std::path::Path>,
    keys: &str,
    trust_anchors: &str,
) -> (TestConfig, ozg_gateway::daemon::Gateway) {
    let signing = subscriber_cert
        .map(|p| format!("signing_certificate = \"{}\"", p.display()))
        .unwrap_or_default();
    let tc = test_config(&Options {
        trust_anchors: (!trust_anchors.is_empty()).then(|| trust_anchors.into()),
        ..Options::default()
    });
    let mut text = std::fs::read_to_string(&tc.path).unwrap();
    let cert = demo("fitconnect-destination.pem").display().to_string();
    text.push_str(&format!(
        r#"
[fitconnect]
listen = "127.0.0.1:0"
signing_key = "{signing_key}"
signing_certificate = "{signing_cert}"
{extra}

[fitconnect.destinations.{DEST}]
{keys}
leistungen = ["{LEISTUNG}"]

[fitconnect.destinations.{OTHER}]
certificate = "{cert}"

[[fitconnect.clients]]
id = "{sender}"
role = "sender"
secret_sha256 = "{sender_hash}"
destinations = ["{DEST}"]

[[fitconnect.clients]]
id = "{subscriber}"
role = "subscriber"
secret_sha256 = "{subscriber_hash}"
destinations = ["{DEST}"]
{signing}

[[fitconnect.clients]]
id = "other-sender"
role = "sender"
secret_sha256 = "{other_hash}"
destinations = ["{OTHER}"]

[[fitconnect.clients]]
id = "other-subscriber"
role = "subscriber"
secret_sha256 = "{other_hash}"
destinations = ["{OTHER}"]
"#,
        sender = SENDER.0,
        subscriber = SUBSCRIBER.0,
        sender_hash = sha256(SENDER.1),
        subscriber_hash = sha256(SUBSCRIBER.1),
        other_hash = sha256("other-secret"),
        signing_key = demo("fitconnect-signing.key").display(),
        signing_cert = demo("fitconnect-signing.pem").display(),
    ));
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    (tc, gw)
}

fn http() -> reqwest::Client {
    anonymous_client()
}

async fn token(base: &str, id: &str, secret: &str) -> (u16, Value) {
    let r = http()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn bearer(base: &str, id: &str, secret: &str) -> String {
    let (status, body) = token(base, id, secret).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn call(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http().request(method, url).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// `GET url` with a bearer token.
async fn get(url: String, token: &str) -> (u16, Value) {
    call(reqwest::Method::GET, url, token, None).await
}

/// A well-formed compact JWE (its content is not looked at by the Zustelldienst).
const JWE: &str = "eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0.a2V5.aXY.Y2lwaGVy.dGFn";

/// `POST /v1/submissions` for `dest` and Leistung `leistung`, announcing `attachments`.
async fn create(
    v1: &str,
    token: &str,
    dest: &str,
    leistung: &str,
    attachments: &[&str],
) -> (u16, Value) {
    let body = serde_json::json!({"destinationId": dest, "announcedAttachments": attachments, "serviceType": {"name": "", "identifier": leistung}});
    call(
        reqwest::Method::POST,
        format!("{v1}/submissions"),
        token,
        Some(body),
    )
    .await
}

/// `PUT /v1/submissions/{sid}` with [`JWE`] as metadata and data.
async fn submit(v1: &str, token: &str, sid: &str) -> (u16, Value) {
    let body = serde_json::json!({"encryptedMetadata": JWE, "encryptedData": JWE});
    call(
        reqwest::Method::PUT,
        format!("{v1}/submissions/{sid}"),
        token,
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmodified_sdk_sends_and_receives_through_the_gateway() {
    // The subscriber's signature key: the gateway checks its accept-submission with it.
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = signature_key(keys.path());
    let (tc, gw) = start_fit("", Some(&cert)).await;
    let base = format!("https://localhost:{}", gw.fitconnect_addr.unwrap().port());
    let marker = format!("Erika-{}", uuid::Uuid::new_v4());
    let out = Command::new(python())
        .arg(repo().join("tests/interop/fitconnect_roundtrip.py"))
        .args([&base, DEST, SENDER.0, SENDER.1, SUBSCRIBER.0, SUBSCRIBER.1])
        .arg(demo("fitconnect-destination.key"))
        .args([LEISTUNG, &marker])
        .env("REQUESTS_CA_BUNDLE", demo("ca.pem"))
        .env("FIT_SUBSCRIBER_KEY", &key)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_str(stdout.trim()).unwrap();
    let id = got["submission_id"].as_str().unwrap();
    assert!(
        got["listed"].as_array().unwrap().iter().any(|s| s == id),
        "{got}"
    );
    assert_eq!(got["data"]["antragsteller"], marker.as_str());
    assert_eq!(
        got["attachments"][0],
        format!("%PDF-1.7 FIT-Connect demo attachment {marker}")
    );
    // The event log: the gateway's submit-submission (verified by the script
    // with the published JWKS) and the subscriber's accept-submission.
    assert_eq!(got["submit_event_verified"], true, "{got}");
    assert_eq!(got["events"].as_array().unwrap().len(), 2, "{got}");
    // Stored durably, delivered by the accept with the SET as its receipt, audited.
    let s = gw.store.submission(id).await.unwrap().unwrap();
    assert_eq!(s.deliveries[0].target, format!("fitconnect:{DEST}"));
    assert_eq!(s.deliveries[0].state.as_str(), "delivered");
    assert_eq!(
        s.deliveries[0].receipt.as_deref(),
        got["events"][1].as_str()
    );
    let events: Vec<String> = gw
        .store
        .trace(id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(events, ["received", "sealed", "offered", "delivered"]);
    // An event not signed by the subscriber's key is refused.
    let subscriber = bearer(&base, SUBSCRIBER.0, SUBSCRIBER.1).await;
    let (_, sub) = get(format!("{base}/v1/submissions/{id}"), &subscriber).await;
    let case = sub["caseId"].as_str().unwrap();
    let forged = format!(
        "{}.{}.c2lnbmF0dXJl",
        ozg_adapter_sdk::base64url::encode(br#"{"typ":"secevent+jwt","alg":"PS512"}"#),
        ozg_adapter_sdk::base64url::encode(format!(r#"{{"sub":"submission:{id}","txn":"case:{case}","events":{{"https://schema.fitko.de/fit-connect/events/reject-submission":{{}}}}}}"#).as_bytes())
    );
    let r = http()
        .post(format!("{base}/v1/cases/{case}/events"))
        .bearer_auth(&subscriber)
        .header("content-type", "application/jose")
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("signature"));
    gw.shutdown().await.unwrap();
    // The gateway was only the Zustelldienst: the plaintext is nowhere in its data.
    assert!(
        !dir_contains(&tc.data_dir, marker.as_bytes()),
        "plaintext in the data directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_only_their_own_destinations() {
    let (_tc, gw) = start_fit("", None).await;
    let base = format!("https://localhost:{}", gw.fitconnect_addr.unwrap().port());
    let v1 = format!("{base}/v1");

    // Wrong secret, unknown client, other grant: OAuth2 errors.
    assert_eq!(token(&base, SENDER.0, "wrong").await.0, 401);
    assert_eq!(token(&base, "nobody", "x").await.0, 401);
    let r = http()
        .post(format!("{base}/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // No token, a forged token: 401 with a problem type.
    let (status, body) = call(
        reqwest::Method::GET,
        format!("{v1}/destinations/{DEST}"),
        "x.y.z",
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body["type"]
        .as_str()
        .unwrap()
        .starts_with("https://schema.fitko.de/fit-connect/"));

    let sender = bearer(&base, SENDER.0, SENDER.1).await;
    let (status, d) = get(format!("{v1}/destinations/{DEST}"), &sender).await;
    assert_eq!(status, 200, "{d}");
    let kid = d["encryptionKid"].as_str().unwrap();
    let (status, key) = get(format!("{v1}/destinations/{DEST}/keys/{kid}"), &sender).await;
    assert_eq!(status, 200);
    assert_eq!(key["key_ops"], serde_json::json!(["wrapKey"]));
    assert_eq!(key["alg"], "RSA-OAEP-256");
    assert_eq!(key["n"].as_str().unwrap().len(), 683, "RSA-4096");
    let (status, body) = get(
        format!("{v1}/destinations/00000000-0000-4000-8000-000000000000"),
        &sender,
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("/destination-not-found"),
        "{body}"
    );

    // A sender cannot submit to a destination it is not bound to, nor for a Leistung it does not take.
    let (status, body) = create(&v1, &sender, OTHER, LEISTUNG, &[]).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = create(&v1, &sender, DEST, "99000000000000", &[]).await;
    assert_eq!(status, 422);
    // Submitting before the announced attachment is there: refused.
    let aid = uuid::Uuid::new_v4().to_string();
    let (status, created) = create(&v1, &sender, DEST, LEISTUNG, &[&aid]).await;
    assert_eq!(status, 201, "{created}");
    let sid = created["submissionId"].as_str().unwrap().to_owned();
    let jwe = JWE;
    let (status, body) = submit(&v1, &sender, &sid).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["type"]
        .as_str()
        .unwrap()
        .ends_with("/missing-attachments"));
    // Not a JWE: refused; the other sender cannot upload into this submission.
    let put = |token: String, body: &'static str| {
        let url = format!("{v1}/submissions/{sid}/attachments/{aid}");
        async move {
            http()
                .put(url)
                .bearer_auth(token)
                .header("content-type", "application/jose")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(put(sender.clone(), "plaintext, not encrypted").await, 422);
    let other_sender = bearer(&base, "other-sender", "other-secret").await;
    assert_eq!(put(other_sender, jwe).await, 404);
    assert_eq!(put(sender.clone(), jwe).await, 204);
    let (status, body) = submit(&v1, &sender, &sid).await;
    assert_eq!(status, 202, "{body}");
    // Submitted again: the same answer, nothing new.
    let (status, again) = submit(&v1, &sender, &sid).await;
    assert_eq!((status, &again), (202, &body));
    assert_eq!(
        gw.store
            .submission(&sid)
            .await
            .unwrap()
            .unwrap()
            .deliveries
            .len(),
        1
    );

    // A sender does not list; the other destination's subscriber sees none of it.
    let (status, _) = get(format!("{v1}/submissions"), &sender).await;
    assert_eq!(status, 403);
    let other = bearer(&base, "other-subscriber", "other-secret").await;
    let list = eventually(std::time::Duration::from_secs(10), "in the box", || {
        let (v1, sub) = (v1.clone(), SUBSCRIBER);
        let sid = sid.clone();
        let base = base.clone();
        async move {
            let t = bearer(&base, sub.0, sub.1).await;
            let (_, l) = get(format!("{v1}/submissions"), &t).await;
            l["submissions"]
                .as_array()?
                .iter()
                .any(|s| s["submissionId"] == sid.as_str())
                .then_some(l)
        }
    })
    .await;
    assert_eq!(list["submissions"][0]["destinationId"], DEST);
    let (status, l) = get(format!("{v1}/submissions"), &other).await;
    assert_eq!((status, l["totalCount"].as_u64()), (200, Some(0)), "{l}");
    let (status, body) = get(format!("{v1}/submissions/{sid}"), &other).await;
    assert_eq!(status, 404);
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with("/submission-not-found"),
        "{body}"
    );
    let (status, _) = get(format!("{v1}/submissions/{sid}/attachments/{aid}"), &other).await;
    assert_eq!(status, 404);
    // Its own subscriber gets the JWEs as they came.
    let subscriber = bearer(&base, SUBSCRIBER.0, SUBSCRIBER.1).await;
    let (status, got) = get(format!("{v1}/submissions/{sid}"), &subscriber).await;
    assert_eq!(status, 200);
    assert_eq!(got["encryptedMetadata"], jwe);
    assert_eq!(got["attachments"], serde_json::json!([aid]));

    // The event log: only its destination's subscriber decides; tags must match.
    let case = created["caseId"].as_str().unwrap();
    let set = |event: &str, body: Value| {
        let enc = |v: Value| ozg_adapter_sdk::base64url::encode(v.to_string().as_bytes());
        format!(
            "{}.{}.c2lnbmF0dXJl",
            enc(serde_json::json!({"typ": "secevent+jwt", "alg": "PS512"})),
            enc(
                serde_json::json!({"sub": format!("submission:{sid}"), "txn": format!("case:{case}"),
                "events": {format!("https://schema.fitko.de/fit-connect/events/{event}"): body}})
            )
        )
    };
    let post = |token: String, set: String| {
        let url = format!("{v1}/cases/{case}/events");
        async move {
            let r = http()
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/jose")
                .body(set)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let wrong_tags = set(
        "accept-submission",
        serde_json::json!({"authenticationTags": {"metadata": "x", "attachments": {}}}),
    );
    assert_eq!(post(other.clone(), wrong_tags.clone()).await.0, 404);
    let (status, body) = post(subscriber.clone(), wrong_tags).await;
    assert_eq!(status, 422, "{body}");
    let reject = set(
        "reject-submission",
        serde_json::json!({"problems": [{"type": "https://schema.fitko.de/fit-connect/events/problems/invalid-data", "title": "invalid"}]}),
    );
    assert_eq!(post(subscriber.clone(), reject.clone()).await.0, 204);
    let decided = gw.store.submission(&sid).await.unwrap().unwrap();
    assert_eq!(decided.deliveries[0].state.as_str(), "parked");
    assert_eq!(
        decided.deliveries[0].error_class.as_deref(),
        Some("rejected-by-subscriber")
    );
    assert_eq!(
        post(subscriber.clone(), reject.clone()).await.0,
        409,
        "decided once"
    );
    let (status, log) = get(format!("{v1}/cases/{case}/events"), &sender).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["eventLog"].as_array().unwrap().len(), 2);
    assert_eq!(log["eventLog"][1], reject.as_str());
    let (status, _) = get(format!("{v1}/cases/{case}/events"), &other).await;
    assert_eq!(status, 404);
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_nobody_decides_on_is_rejected_by_the_gateway() {
    let (_tc, gw) = start_fit(r#"auto_reject_after = "2s""#, None).await;
    let base = format!("https://localhost:{}", gw.fitconnect_addr.unwrap().port());
    let v1 = format!("{base}/v1");
    let sender = bearer(&base, SENDER.0, SENDER.1).await;
    let (status, created) = create(&v1, &sender, DEST, LEISTUNG, &[]).await;
    assert_eq!(status, 201, "{created}");
    let sid = created["submissionId"].as_str().unwrap().to_owned();
    let (status, body) = submit(&v1, &sender, &sid).await;
    assert_eq!(status, 202, "{body}");
    let class = eventually(
        std::time::Duration::from_secs(15),
        "rejected automatically",
        || async {
            let s = gw.store.submission(&sid).await.unwrap()?;
            s.deliveries[0].error_class.clone()
        },
    )
    .await;
    assert_eq!(class, "rejected-automatically");
    let case = created["caseId"].as_str().unwrap();
    let (status, log) = get(format!("{v1}/cases/{case}/events"), &sender).await;
    assert_eq!(status, 200, "{log}");
    let entries = log["eventLog"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    let payload = entries[1].as_str().unwrap().split('.').nth(1).unwrap();
    let payload: Value =
        serde_json::from_slice(&ozg_adapter_sdk::base64url::decode(payload).unwrap()).unwrap();
    assert!(
        payload["events"]
            .get("https://schema.fitko.de/fit-connect/events/reject-submission")
            .is_some(),
        "{payload}"
    );
    gw.shutdown().await.unwrap();
}

/// An RSA-4096 key (PKCS#8) and a self-signed certificate for it, in `dir`.
fn signature_key(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, cert) = (dir.join("sub.key"), dir.join("sub.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:4096",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=subscriber-signature",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    (key, cert)
}

/// Two gateways: the SDK sends to A (the Zustelldienst); B subscribes to A for
/// the destination, decrypts, checks, takes the application into its own
/// intake and delivers it to its filedrop DMS; A's event log then holds B's
/// accept-submission, verified against B's signature certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gateway_subscribes_decrypts_delivers_and_accepts() {
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = signature_key(keys.path());
    let (_a_tc, a) = start_fit("", Some(&cert)).await;
    let a_base = format!("https://localhost:{}", a.fitconnect_addr.unwrap().port());

    let b_tc = subscriber_config(&a_base, &key);
    let b = start_from(&b_tc).await;

    let marker = format!("Erika-{}", uuid::Uuid::new_v4());
    let fit_id = sdk_send(&a_base, &marker, "--send-only");

    // A: delivered by B's accept (its signature checked against B's certificate).
    let receipt = eventually(
        std::time::Duration::from_secs(20),
        "accepted at A",
        || async {
            let s = a.store.submission(&fit_id).await.unwrap()?;
            (s.deliveries[0].state.as_str() == "delivered")
                .then(|| s.deliveries[0].receipt.clone())?
        },
    )
    .await;
    assert!(receipt.split('.').nth(1).is_some_and(|p| {
        let p = ozg_adapter_sdk::base64url::decode(p).unwrap();
        String::from_utf8_lossy(&p).contains("accept-submission")
    }));
    // B: one envelope for its DMS, holding the decrypted application.
    let files = eventually(
        std::time::Duration::from_secs(20),
        "delivered at B",
        || async {
            let f = files_under(&b_tc.outbox);
            (!f.is_empty()).then_some(f)
        },
    )
    .await;
    assert_eq!(files.len(), 1, "{files:?}");
    let opened = keys.path().join("opened");
    let run = open_envelope(BIN, &files[0], "recipient-rsa", &opened);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // An xdomea 0201 package, holding the application.
    let package = files_under(&opened)
        .into_iter()
        .find(|f| {
            f.to_string_lossy()
                .ends_with("_Geschaeftsgang.Geschaeftsgang.0201.zip")
        })
        .expect("an xdomea package");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&package).unwrap()).unwrap();
    let mut names = Vec::new();
    let mut found = false;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        names.push(entry.name().to_owned());
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        found |= content
            .windows(marker.len())
            .any(|w| w == marker.as_bytes());
    }
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("_Geschaeftsgang.Geschaeftsgang.0201.xml")),
        "{names:?}"
    );
    assert!(found, "the application reached B's DMS: {names:?}");
    // A only ever held ciphertext.
    a.shutdown().await.unwrap();
    assert!(!dir_contains(&_a_tc.data_dir, marker.as_bytes()));
    // B stored it once, whatever the polls did.
    b.shutdown().await.unwrap();
    let b = start_from(&b_tc).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(files_under(&b_tc.outbox).len(), 1);
    b.shutdown().await.unwrap();
}

/// Gateway B's config: subscribed to A's destination with `key` as its
/// signature key, routing it to its filedrop DMS.
fn subscriber_config(a_base: &str, key: &std::path::Path) -> TestConfig {
    let b_tc = test_config(&Options::default());
    let mut text = std::fs::read_to_string(&b_tc.path).unwrap();
    text.push_str(&format!(
        r#"
[[fitconnect_subscriptions]]
destination = "{DEST}"
api_url = "{a_base}/v1"
token_url = "{a_base}/token"
client_id = "{id}"
client_secret = "{secret}"
destination_key = "{dkey}"
signing_key = "{skey}"
server_ca = "{ca}"
poll_interval = "200ms"

[targets.dms-xdomea]
certificate = "{rsa}"
payload = "xdomea"
adapter = {{ type = "filedrop", dir = "{outbox}" }}

[[routes]]
leistung = "{LEISTUNG}"
destination = "{DEST}"
targets = ["dms-xdomea"]
"#,
        id = SUBSCRIBER.0,
        secret = SUBSCRIBER.1,
        dkey = demo("fitconnect-destination.key").display(),
        skey = key.display(),
        ca = demo("ca.pem").display(),
        rsa = demo("recipient-rsa.pem").display(),
        outbox = b_tc.outbox.display(),
    ));
    std::fs::write(&b_tc.path, text).unwrap();
    b_tc
}

/// Sends with the SDK (`mode`: `--send-only` or `--send-only-invalid`); the
/// FIT-Connect submission id.
fn sdk_send(base: &str, marker: &str, mode: &str) -> String {
    let out = Command::new(python())
        .arg(repo().join("tests/interop/fitconnect_roundtrip.py"))
        .args([base, DEST, SENDER.0, SENDER.1, SUBSCRIBER.0, SUBSCRIBER.1])
        .arg(demo("fitconnect-destination.key"))
        .args([LEISTUNG, marker, mode])
        .env("REQUESTS_CA_BUNDLE", demo("ca.pem"))
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Value = serde_json::from_str(stdout.trim()).unwrap();
    sent["submission_id"].as_str().unwrap().to_owned()
}

/// Data B's intake refuses are rejected at A with the problem; and a
/// submission sent while A is down for B is taken in, stored once and
/// accepted once A is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_data_are_rejected_and_an_outage_stores_nothing_twice() {
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = signature_key(keys.path());
    let (a_tc, a) = start_fit("", Some(&cert)).await;
    let port = a.fitconnect_addr.unwrap().port();
    let a_base = format!("https://localhost:{port}");
    let b_tc = subscriber_config(&a_base, &key);
    let b = start_from(&b_tc).await;

    let refused = sdk_send(&a_base, "no-dog", "--send-only-invalid");
    let class = eventually(
        std::time::Duration::from_secs(20),
        "rejected at A",
        || async {
            let s = a.store.submission(&refused).await.unwrap()?;
            s.deliveries[0].error_class.clone()
        },
    )
    .await;
    assert_eq!(class, "rejected-by-subscriber");
    assert!(
        files_under(&b_tc.outbox).is_empty(),
        "refused data reach no target"
    );

    // A submission waits at A while B is down, then A goes down too.
    b.shutdown().await.unwrap();
    let marker = format!("Max-{}", uuid::Uuid::new_v4());
    let fit_id = sdk_send(&a_base, &marker, "--send-only");
    a.shutdown().await.unwrap();
    // B polls an absent A: nothing fetched, nothing stored.
    let b = start_from(&b_tc).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(files_under(&b_tc.outbox).is_empty());
    // A back on its port: B fetches, stores and accepts — once.
    let text = std::fs::read_to_string(&a_tc.path).unwrap().replacen(
        "[fitconnect]\nlisten = \"127.0.0.1:0\"",
        &format!("[fitconnect]\nlisten = \"127.0.0.1:{port}\""),
        1,
    );
    std::fs::write(&a_tc.path, text).unwrap();
    let a = start_from(&a_tc).await;
    eventually(
        std::time::Duration::from_secs(20),
        "accepted at A",
        || async {
            let s = a.store.submission(&fit_id).await.unwrap()?;
            (s.deliveries[0].state.as_str() == "delivered").then_some(())
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(files_under(&b_tc.outbox).len(), 1);
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// A destination with local targets: the filedrop DMS gets the submission as it
/// came — the sender's JWEs, never decrypted by the gateway — and opens it with
/// the destination's key (here: jwcrypto).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destinations_local_targets_get_the_jwes_as_they_came() {
    let (tc, gw) = start_fit("", None).await;
    gw.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&tc.path).unwrap().replacen(
        &format!("leistungen = [\"{LEISTUNG}\"]"),
        &format!("leistungen = [\"{LEISTUNG}\"]\ntargets = [\"dms-demo\"]"),
        1,
    );
    std::fs::write(&tc.path, text).unwrap();
    let gw = start_from(&tc).await;
    let base = format!("https://localhost:{}", gw.fitconnect_addr.unwrap().port());
    let marker = format!("Fanout-{}", uuid::Uuid::new_v4());
    let id = sdk_send(&base, &marker, "--send-only");
    let files = eventually(std::time::Duration::from_secs(20), "at the DMS", || async {
        let f = files_under(&tc.outbox);
        (!f.is_empty()).then_some(f)
    })
    .await;
    let got: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(got["submissionId"], id.as_str());
    assert!(
        !dir_contains(&tc.outbox, marker.as_bytes()),
        "no plaintext on the way"
    );
    let script = "import json,sys\nfrom jwcrypto import jwk, jwe\nk=jwk.JWK.from_pem(b''.join(l for l in open(sys.argv[2],'rb').read().splitlines(True) if not l.startswith(b'#')))\ns=json.load(open(sys.argv[1]))\nt=jwe.JWE()\nt.deserialize(s['encryptedData'], key=k)\nsys.stdout.write(t.payload.decode())";
    let out = Command::new(python())
        .args(["-c", script])
        .arg(&files[0])
        .arg(demo("fitconnect-destination.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&marker));
    // The destination's box has it too, for its subscriber.
    let s = gw.store.submission(&id).await.unwrap().unwrap();
    assert_eq!(s.deliveries.len(), 2);
    gw.shutdown().await.unwrap();
    assert!(!dir_contains(&tc.data_dir, marker.as_bytes()));
}

/// The subscriber killed with SIGKILL again and again while it fetches,
/// stores and accepts: every submission reaches B's DMS once per message id,
/// and A's event log holds exactly one accept for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_survives_kill_9_without_losing_or_doubling_anything() {
    const N: usize = 24;
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = signature_key(keys.path());
    let (a_tc, a) = start_fit("", Some(&cert)).await;
    let a_base = format!("https://localhost:{}", a.fitconnect_addr.unwrap().port());
    let out = Command::new(python())
        .arg(repo().join("tests/interop/fitconnect_roundtrip.py"))
        .args([
            &a_base,
            DEST,
            SENDER.0,
            SENDER.1,
            SUBSCRIBER.0,
            SUBSCRIBER.1,
        ])
        .arg(demo("fitconnect-destination.key"))
        .args([LEISTUNG, "Kill", "--send-many", &N.to_string()])
        .env("REQUESTS_CA_BUNDLE", demo("ca.pem"))
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = sent["submission_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), N);

    // B as a process of its own, on fixed ports, killed at random moments.
    let ingest_port = free_port();
    let b_tc = subscriber_config(&a_base, &key);
    let text = std::fs::read_to_string(&b_tc.path).unwrap().replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{ingest_port}\""),
        1,
    );
    std::fs::write(&b_tc.path, text).unwrap();
    let delivered = |a: &ozg_gateway::daemon::Gateway, ids: Vec<String>| {
        let store = a.store.clone();
        async move {
            let mut n = 0;
            for id in &ids {
                let s = store.submission(id).await.unwrap().unwrap();
                n += usize::from(s.deliveries[0].state.as_str() == "delivered");
            }
            n
        }
    };
    for round in 0..5u64 {
        let b = DaemonProcess::spawn(BIN, &b_tc.path, ingest_port);
        tokio::time::sleep(std::time::Duration::from_millis(40 + 60 * round)).await;
        b.kill_9();
        let stored = files_under(&b_tc.outbox).len();
        let accepted = delivered(&a, ids.clone()).await;
        eprintln!("kill -9 #{round}: {stored} stored at B, {accepted} accepted at A");
    }
    let b = DaemonProcess::spawn(BIN, &b_tc.path, ingest_port);
    eventually(
        std::time::Duration::from_secs(60),
        "all accepted at A",
        || {
            let ids = ids.clone();
            let d = delivered(&a, ids);
            async move { (d.await == N).then_some(()) }
        },
    )
    .await;
    drop(b);
    // Once per message id at B's DMS.
    let files = files_under(&b_tc.outbox);
    let json: Vec<_> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(json.len(), N, "{files:?}");
    // Exactly one accept per case in A's event log.
    let sender = bearer(&a_base, SENDER.0, SENDER.1).await;
    let subscriber = bearer(&a_base, SUBSCRIBER.0, SUBSCRIBER.1).await;
    for id in &ids {
        let (status, s) = get(format!("{a_base}/v1/submissions/{id}"), &subscriber).await;
        assert_eq!(status, 200, "{s}");
        let case = s["caseId"].as_str().unwrap();
        let (_, log) = get(format!("{a_base}/v1/cases/{case}/events"), &sender).await;
        let accepts = log["eventLog"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                let p = e.as_str().unwrap().split('.').nth(1).unwrap();
                String::from_utf8_lossy(&ozg_adapter_sdk::base64url::decode(p).unwrap())
                    .contains("accept-submission")
            })
            .count();
        assert_eq!(accepts, 1, "case {case}: {log}");
    }
    a.shutdown().await.unwrap();
    drop((a_tc, b_tc));
}

/// Callbacks: A tells B about a new submission (HMAC-SHA-512 over
/// `<timestamp>.<body>`); B, which would poll only hourly, fetches at once. A
/// callback with a wrong HMAC is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_makes_the_subscriber_fetch_at_once() {
    let secret = "callback-secret-of-at-least-32-characters";
    let keys = tempfile::tempdir().unwrap();
    let (key, cert) = signature_key(keys.path());
    let callback_port = free_port();
    let (a_tc, a) = start_fit("", Some(&cert)).await;
    a.shutdown().await.unwrap();
    let text = std::fs::read_to_string(&a_tc.path).unwrap().replacen(
        &format!("leistungen = [\"{LEISTUNG}\"]"),
        &format!(
            "leistungen = [\"{LEISTUNG}\"]\ncallback_url = \"https://localhost:{callback_port}/callbacks/fit-connect\"\ncallback_secret = \"{secret}\"\ncallback_ca = \"{}\"",
            demo("ca.pem").display()
        ),
        1,
    );
    std::fs::write(&a_tc.path, text).unwrap();
    let a = start_from(&a_tc).await;
    let a_base = format!("https://localhost:{}", a.fitconnect_addr.unwrap().port());
    let b_tc = subscriber_config(&a_base, &key);
    let text = std::fs::read_to_string(&b_tc.path).unwrap().replacen(
        "poll_interval = \"200ms\"",
        &format!("poll_interval = \"1h\"\ncallback_listen = \"127.0.0.1:{callback_port}\"\ncallback_secret = \"{secret}\""),
        1,
    );
    std::fs::write(&b_tc.path, text).unwrap();
    let b = start_from(&b_tc).await;
    // B's first poll (at start) finds nothing; only the callback brings it.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let forged = http()
        .post(format!(
            "https://localhost:{callback_port}/callbacks/fit-connect"
        ))
        .header(
            "callback-timestamp",
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs())
            .to_string(),
        )
        .header("callback-authentication", "00".repeat(64))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    let marker = format!("Callback-{}", uuid::Uuid::new_v4());
    let fit_id = sdk_send(&a_base, &marker, "--send-only");
    eventually(
        std::time::Duration::from_secs(15),
        "fetched through the callback",
        || async {
            let s = a.store.submission(&fit_id).await.unwrap()?;
            (s.deliveries[0].state.as_str() == "delivered").then_some(())
        },
    )
    .await;
    assert_eq!(files_under(&b_tc.outbox).len(), 1);
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// A destination's encryption certificate must be issued under
/// `pki.trust_anchors`, like a target's: a self-signed one is refused at start.
#[test]
fn a_destination_certificate_outside_the_trust_anchors_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let (_, self_signed) = signature_key(keys.path());
    let tc = test_config(&Options::default());
    let mut text = std::fs::read_to_string(&tc.path).unwrap();
    text.push_str(&format!(
        "\n[fitconnect]\nlisten = \"127.0.0.1:0\"\nsigning_key = \"{}\"\nsigning_certificate = \"{}\"\n\n[fitconnect.destinations.{DEST}]\ncertificate = \"{}\"\n",
        demo("fitconnect-signing.key").display(),
        demo("fitconnect-signing.pem").display(),
        self_signed.display()
    ));
    std::fs::write(&tc.path, text).unwrap();
    let refused =
        ozg_gateway::daemon::setup::setup(ozg_gateway::config::Config::load(&tc.path).unwrap())
            .err()
            .expect("refused")
            .to_string();
    assert!(
        refused.contains(&format!("fitconnect.destinations.{DEST}.certificate")),
        "{refused}"
    );
}

/// A destination rotating its key: senders are told the key in use
/// (`encryptionKid`), and the next one is already published, as is the old
/// one until its notAfter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_names_its_key_in_use_and_publishes_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.path().join("ext"),
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, keyEncipherment\n",
    )
    .unwrap();
    run(&[
        "req",
        "-new",
        "-newkey",
        "rsa:4096",
        "-nodes",
        "-keyout",
        "next.key",
        "-subj",
        "/O=ozg-gateway DEMO ONLY/CN=destination 2027",
        "-out",
        "next.csr",
    ]);
    let (ca, ca_key) = (demo("ca.pem"), demo("ca.key"));
    run(&[
        "x509",
        "-req",
        "-in",
        "next.csr",
        "-CA",
        ca.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-days",
        "400",
        "-extfile",
        "ext",
        "-out",
        "next.pem",
    ]);
    let old = demo("fitconnect-destination.pem");
    let next = dir.path().join("next.pem");
    let kid = |p: &std::path::Path| {
        let c = ozg_adapter_sdk::keys::Certificate::from_pem(&std::fs::read(p).unwrap()).unwrap();
        ozg_gateway::core::fitconnect::keys::DestinationKey::from_certificate(c.der())
            .unwrap()
            .kid
    };
    let from = (time::OffsetDateTime::now_utc() + time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let keys = format!(
        "certificates = [{{ file = \"{}\" }}, {{ file = \"{}\", from = \"{from}\" }}]",
        old.display(),
        next.display()
    );
    let (_tc, gw) = start_fit_keys("", None, &keys, "").await;
    let base = format!("https://localhost:{}", gw.fitconnect_addr.unwrap().port());
    let token = bearer(&base, SENDER.0, SENDER.1).await;
    let (status, info) = get(format!("{base}/v1/destinations/{DEST}"), &token).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["encryptionKid"], kid(&old).as_str(), "{info}");
    for k in [kid(&old), kid(&next)] {
        let (status, jwk) = get(format!("{base}/v1/destinations/{DEST}/keys/{k}"), &token).await;
        assert_eq!(status, 200, "{jwk}");
        assert_eq!(jwk["kid"], k.as_str());
    }
    gw.shutdown().await.unwrap();
}
