//! Large attachments are sealed as they arrive: the ciphertext goes to a spool
//! segment of the submission's own while the upload runs, the envelopes open
//! as any others, and an upload that breaks off or is refused leaves no spool
//! behind.

use std::path::Path;
use std::time::SystemTime;

use ozg_adapter_sdk::{open, Envelope, RecipientPrivateKey, SealPins, TrustAnchors};
use ozg_e2e::*;
use ozg_gateway::daemon::Gateway;

/// Bytes of every segment file under the data directory, by file name.
fn segments(data_dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<_> = std::fs::read_dir(data_dir.join("envelopes"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

use ozg_gateway::tools::conformance::noise as scan;

const METADATA: &str = r#"{"leistung":"99115005001000","destination":"05315000"}"#;
const DATA: &[u8] = b"<antrag><name>Streaming-Marker</name></antrag>";

fn form() -> reqwest::multipart::Form {
    use reqwest::multipart::{Form, Part};
    Form::new()
        .part(
            "metadata",
            Part::text(METADATA).mime_str("application/json").unwrap(),
        )
        .part(
            "data",
            Part::bytes(DATA.to_vec())
                .mime_str("application/xml")
                .unwrap(),
        )
}

fn attachment(name: &str, bytes: Vec<u8>) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str("application/pdf")
        .unwrap()
}

async fn post(gw: &Gateway, form: reqwest::multipart::Form) -> reqwest::Result<reqwest::Response> {
    portal_client("portal")
        .post(format!("{}/v1/submissions", base_url(gw.ingest_addr)))
        .multipart(form)
        .send()
        .await
}

fn recipient_key(stem: &str) -> RecipientPrivateKey {
    RecipientPrivateKey::from_pem(
        &std::fs::read(demo(&format!("{stem}.key"))).unwrap(),
        Some(&std::fs::read(demo(&format!("{stem}.pem"))).unwrap()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_attachment_is_sealed_as_it_arrives_and_a_broken_or_refused_upload_leaves_no_spool()
{
    let (tc, gw) = start(&Options {
        max_body: "40MiB",
        ..Options::default()
    })
    .await;
    let empty = segments(&tc.data_dir);
    assert!(empty.iter().all(|(_, len)| *len == 0), "{empty:?}");

    // An upload that breaks off in the middle of a 6 MiB attachment.
    let big = scan(6 << 20, 7);
    let half = bytes::Bytes::copy_from_slice(&big[..3 << 20]);
    let broken = futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>(half),
        Err(std::io::Error::other("the portal's disk failed")),
    ]);
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(broken))
        .file_name("Bauantrag.pdf")
        .mime_str("application/pdf")
        .unwrap();
    assert!(
        post(&gw, form().part("attachment", part)).await.is_err(),
        "the request broke off"
    );

    // One refused after its large attachment was sealed: the next attachment
    // has the same file name.
    let refused = post(
        &gw,
        form()
            .part("attachment", attachment("Bauantrag.pdf", big.clone()))
            .part(
                "attachment",
                attachment("Bauantrag.pdf", b"%PDF-1.7".to_vec()),
            ),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(body.contains("attachment-invalid"), "{body}");

    // Neither left a spool: every segment file is empty (or gone).
    eventually(
        std::time::Duration::from_secs(5),
        "no spool left by a broken or refused upload",
        || {
            let now = segments(&tc.data_dir);
            async move { now.iter().all(|(_, len)| *len == 0).then_some(()) }
        },
    )
    .await;
    assert!(audit_records(&gw, "received").await.is_empty());

    // Accepted: the ciphertext is in a spool segment of its own, once for
    // both targets, and each target's envelope opens with its key.
    let accepted = post(
        &gw,
        form().part("attachment", attachment("Bauantrag.pdf", big.clone())),
    )
    .await
    .unwrap();
    assert_eq!(accepted.status(), 202);
    let answer: serde_json::Value = accepted.json().await.unwrap();
    let id = answer["submission_id"].as_str().unwrap().to_owned();
    let held: Vec<_> = segments(&tc.data_dir)
        .into_iter()
        .filter(|(_, len)| *len > 0)
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_ne!(held[0].0, empty[0].0, "not the active segment: a spool");
    let len = held[0].1;
    assert!(
        len > (6 << 20) * 4 / 3 && len < (6 << 20) * 3 / 2,
        "{len} bytes"
    );

    let status = gw.store.submission(&id).await.unwrap().unwrap();
    let trust = TrustAnchors::from_pem(&std::fs::read(demo("ca.pem")).unwrap()).unwrap();
    let seals = SealPins::from_pem(&std::fs::read(demo("seal.pem")).unwrap()).unwrap();
    for (target, stem) in [
        ("dms-demo", "recipient-rsa"),
        ("fachverfahren-demo", "recipient-ec"),
    ] {
        let d = status
            .deliveries
            .iter()
            .find(|d| d.target == target)
            .expect("delivery");
        let bytes = gw.store.envelope(&d.message_id).await.unwrap().unwrap();
        let envelope: Envelope = serde_json::from_slice(&bytes).unwrap();
        let opened = open(
            &envelope,
            &recipient_key(stem),
            &trust,
            &seals,
            SystemTime::now(),
        )
        .unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!(opened.parts[0].data, DATA);
        assert!(
            opened.parts[1].data == big,
            "{target}: the attachment differs"
        );
        assert_eq!(
            opened.manifest.parts[1].filename.as_deref(),
            Some("Bauantrag.pdf")
        );
    }
    // The receipt names the part's hash as the manifest does.
    let parts = answer["parts"].as_array().unwrap();
    assert_eq!(
        parts[1]["sha512"],
        ozg_adapter_sdk::envelope::sha512_hex(&big)
    );
    gw.shutdown().await.unwrap();
}
