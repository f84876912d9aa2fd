//! A target with `payload = "xdomea"`: its envelope holds one xdomea 3.0.0
//! Geschaeftsgang.0201 package with the application's data and every
//! attachment, sealed and encrypted like any envelope; other targets of the
//! same submission still get the parts as sent.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");

/// The official xdomea schema (see the gateway's xdomea tests): required in CI.
fn reference_schema() -> Option<PathBuf> {
    let rel = "xdomea/3.0.0/xdomea.xsd";
    let found = std::env::var_os("OZG_SHARED")
        .map(|d| PathBuf::from(d).join(rel))
        .into_iter()
        .chain(repo().ancestors().map(|a| a.join("shared").join(rel)))
        .find(|p| p.is_file());
    assert!(
        found.is_some() || std::env::var_os("OZG_REQUIRE_REFERENCE").is_none(),
        "the official xdomea schema is required but not found; set OZG_SHARED"
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xdomea_target_gets_one_sealed_0201_package_with_every_document() {
    let tc = test_config(&Options::default());
    let text = std::fs::read_to_string(&tc.path).unwrap();
    std::fs::write(
        &tc.path,
        text.replace(
            "[targets.dms-demo]\n",
            "[targets.dms-demo]\npayload = \"xdomea\"\n",
        ),
    )
    .unwrap();
    let gw = start_from(&tc).await;
    let data = b"<antrag><name>Erika</name></antrag>".to_vec();
    let pdf = b"%PDF-1.7 Nachweis".to_vec();
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: data.clone(),
        data_media_type: "application/xml".into(),
        attachments: vec![(
            "Nachweis über Einkommen.pdf".into(),
            "application/pdf".into(),
            pdf.clone(),
        )],
        ..Default::default()
    };
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    // The portal's receipt names the parts it sent, not the package.
    assert_eq!(a.body["parts"].as_array().unwrap().len(), 2);
    let id = a.body["submission_id"].as_str().unwrap().to_owned();
    let envelope = eventually(Duration::from_secs(10), "dropped for the DMS", || async {
        files_under(&tc.outbox)
            .into_iter()
            .find(|f| f.extension().is_some_and(|e| e == "json"))
    })
    .await;
    // The Fachverfahren's envelope of the same submission (its receiver is down).
    let s = gw.store.submission(&id).await.unwrap().unwrap();
    let fv = s
        .deliveries
        .iter()
        .find(|d| d.target == "fachverfahren-demo")
        .unwrap();
    let fv_envelope = tc.dir.path().join("fv.json");
    std::fs::write(
        &fv_envelope,
        gw.store.envelope(&fv.message_id).await.unwrap().unwrap(),
    )
    .unwrap();
    gw.shutdown().await.unwrap();

    let open = |envelope: &std::path::Path, recipient: &str, out: &std::path::Path| {
        let opened = open_envelope(BIN, envelope, recipient, out);
        assert!(
            opened.status.success(),
            "{}",
            String::from_utf8_lossy(&opened.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(out.join("manifest.json")).unwrap(),
        )
        .unwrap()
    };
    // The Fachverfahren got the parts as sent.
    let fv_manifest = open(&fv_envelope, "recipient-ec", &tc.dir.path().join("fv"));
    assert_eq!(fv_manifest["parts"].as_array().unwrap().len(), 2);

    // The DMS side opens its envelope as any other: one part, the package.
    let out = tc.dir.path().join("opened");
    let manifest = open(&envelope, "recipient-rsa", &out);
    assert_eq!(manifest["submission_id"], id.as_str());
    let parts = manifest["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{manifest}");
    assert_eq!(parts[0]["media_type"], "application/zip");
    let zip_name = parts[0]["filename"].as_str().unwrap();
    assert!(
        zip_name.ends_with("_Geschaeftsgang.Geschaeftsgang.0201.zip"),
        "{zip_name}"
    );
    let zip = std::fs::read(out.join(zip_name)).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        entries.push((f.name().to_owned(), bytes));
    }
    assert_eq!(entries.len(), 3);
    let message = String::from_utf8(entries[0].1.clone()).unwrap();
    assert!(entries[0]
        .0
        .ends_with("_Geschaeftsgang.Geschaeftsgang.0201.xml"));
    assert_eq!(entries[1].1, data);
    assert_eq!(entries[2].1, pdf);
    assert!(message.contains("<xdomea:DateinameOriginal>Nachweis über Einkommen.pdf<"));
    assert!(message.contains(&format!("<xdomea:Wert>{id}</xdomea:Wert>")));
    for (name, _) in &entries[1..] {
        assert!(message.contains(&format!("<xdomea:Dateiname>{name}</xdomea:Dateiname>")));
    }
    if let Some(schema) = reference_schema() {
        let file = tc.dir.path().join("message.xml");
        std::fs::write(&file, &message).unwrap();
        let lint = Command::new("xmllint")
            .arg("--noout")
            .arg("--schema")
            .arg(&schema)
            .arg(&file)
            .output()
            .expect("xmllint runs");
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dms_receipt_0202_is_kept_as_the_delivery_receipt() {
    let confirmation = "<?xml version=\"1.0\"?><xdomea:Geschaeftsgang.EmpfangBestaetigen.0202 xmlns:xdomea=\"urn:xoev-de:xdomea:schema:3.0.0\"><xdomea:Kopf><xdomea:ProzessID>ca5232c5-f44d-42eb-8514-d3b509be81ea</xdomea:ProzessID></xdomea:Kopf></xdomea:Geschaeftsgang.EmpfangBestaetigen.0202>";
    let receiver =
        ozg_e2e::receiver::Receiver::start(ozg_e2e::receiver::Mode::Answer(confirmation.into()))
            .await;
    let tc = test_config(&Options {
        receiver_url: receiver.url(),
        ..Default::default()
    });
    let text = std::fs::read_to_string(&tc.path).unwrap();
    std::fs::write(
        &tc.path,
        text.replace(
            "[targets.fachverfahren-demo]\n",
            "[targets.fachverfahren-demo]\npayload = \"xdomea\"\n",
        ),
    )
    .unwrap();
    let gw = start_from(&tc).await;
    let req = SubmitRequest {
        leistung: "99050012104000".into(),
        destination: "05315000".into(),
        data: std::fs::read(repo().join("schemas/examples/hundesteuer.json")).unwrap(),
        data_media_type: "application/json".into(),
        ..Default::default()
    };
    let a = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    let id = a.body["submission_id"].as_str().unwrap().to_owned();
    let receipt = eventually(
        Duration::from_secs(10),
        "delivered with a receipt",
        || async {
            let s = gw.store.submission(&id).await.unwrap()?;
            s.deliveries
                .iter()
                .find(|d| d.target == "fachverfahren-demo")
                .and_then(|d| d.receipt.clone())
        },
    )
    .await;
    assert_eq!(receipt, confirmation);
    gw.shutdown().await.unwrap();
}
