//! Seal, encrypt and open envelopes with the demo PKI; tampering is named.

use std::time::SystemTime;

use ozg_adapter_sdk::envelope::{
    build_envelope, seal_manifest, sha512_hex, EnvelopeHeader, Receipt,
};
use ozg_adapter_sdk::jose;
use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{
    open, Manifest, ManifestPart, OpenError, RecipientCert, RecipientPrivateKey, SealKey,
    TrustAnchors,
};

fn demo(name: &str) -> Vec<u8> {
    let path = format!("{}/../../certs-example/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn seal() -> SealKey {
    SealKey::from_pem(&demo("seal.pem"), &demo("seal.key")).unwrap()
}

fn seals() -> ozg_adapter_sdk::SealPins {
    ozg_adapter_sdk::SealPins::from_pem(&demo("seal.pem")).unwrap()
}

fn trust() -> TrustAnchors {
    TrustAnchors::from_pem(&demo("ca.pem")).unwrap()
}

fn recipient(stem: &str) -> (RecipientCert, RecipientPrivateKey) {
    let cert = trust()
        .verify_recipient(
            Certificate::from_pem(&demo(&format!("{stem}.pem")))
                .unwrap()
                .der(),
            &[],
            SystemTime::now(),
        )
        .unwrap();
    let key = RecipientPrivateKey::from_pem(
        &demo(&format!("{stem}.key")),
        Some(&demo(&format!("{stem}.pem"))),
    )
    .unwrap();
    (cert, key)
}

fn manifest(submission_id: &str, parts: &[(&str, &[u8])]) -> Manifest {
    Manifest {
        submission_id: submission_id.into(),
        received_at: "2026-11-24T10:42:00Z".into(),
        sender: "portal-demo".into(),
        leistung: "99050012104000".into(),
        destination: "05315000".into(),
        metadata: Default::default(),
        parts: parts
            .iter()
            .map(|(id, data)| ManifestPart {
                id: (*id).into(),
                media_type: "application/xml".into(),
                filename: None,
                size: data.len() as u64,
                sha512: sha512_hex(data),
            })
            .collect(),
        in_reply_to: None,
        reply_type: None,
    }
}

fn envelope(stem: &str, submission_id: &str, parts: &[(&str, &[u8])]) -> ozg_adapter_sdk::Envelope {
    let (cert, _) = recipient(stem);
    let m = manifest(submission_id, parts);
    let sealed = seal_manifest(&m, &seal()).unwrap();
    let data: Vec<&[u8]> = parts.iter().map(|(_, d)| *d).collect();
    let header = EnvelopeHeader {
        message_id: format!("{submission_id}-msg"),
        target: "dms".into(),
        created_at: m.received_at.clone(),
    };
    build_envelope(header, &m, &sealed, &data, &cert).unwrap()
}

const DATA: &[u8] = b"<antrag><name>MARKER-Erika-Mustermann</name></antrag>";
const PDF: &[u8] = b"%PDF-1.7 MARKER-attachment";

#[test]
fn round_trip_for_rsa_and_ec_recipients() {
    for stem in ["recipient-rsa", "recipient-ec"] {
        let env = envelope(stem, "s-1", &[("data", DATA), ("attachment-1", PDF)]);
        let json = serde_json::to_string(&env).unwrap();
        assert!(
            !json.contains("MARKER"),
            "{stem}: plaintext visible in the envelope"
        );
        let (_, key) = recipient(stem);
        let opened = open(&env, &key, &trust(), &seals(), SystemTime::now()).unwrap();
        assert_eq!(opened.parts.len(), 2);
        assert_eq!(opened.parts[0].data, DATA);
        assert_eq!(opened.parts[1].data, PDF);
        assert!(
            opened.sealed_by.contains("seal demo"),
            "{}",
            opened.sealed_by
        );
    }
}

#[test]
fn wrong_recipient_is_named() {
    let env = envelope("recipient-rsa", "s-1", &[("data", DATA)]);
    let (_, other) = recipient("recipient-ec");
    let err = open(&env, &other, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(err.to_string().contains("not for this recipient"), "{err}");
}

#[test]
fn tampered_part_fails() {
    let mut env = envelope("recipient-ec", "s-1", &[("data", DATA)]);
    let mut pieces: Vec<String> = env.parts[0].jwe.split('.').map(str::to_owned).collect();
    let mut ct = pieces[3].clone().into_bytes();
    ct[2] = if ct[2] == b'A' { b'B' } else { b'A' };
    pieces[3] = String::from_utf8(ct).unwrap();
    env.parts[0].jwe = pieces.join(".");
    let (_, key) = recipient("recipient-ec");
    match open(&env, &key, &trust(), &seals(), SystemTime::now()).unwrap_err() {
        OpenError::PartDecrypt { id, .. } => assert_eq!(id, "data"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn swapped_parts_between_envelopes_fail_on_the_hash() {
    let a = envelope("recipient-rsa", "s-1", &[("data", DATA)]);
    let mut b = envelope("recipient-rsa", "s-2", &[("data", b"<other/>")]);
    b.parts[0] = a.parts[0].clone();
    let (_, key) = recipient("recipient-rsa");
    let err = open(&b, &key, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, OpenError::PartSize { .. } | OpenError::PartHash { .. }),
        "{err}"
    );
}

#[test]
fn swapped_manifest_is_caught_by_the_header_check() {
    let a = envelope("recipient-rsa", "s-1", &[("data", DATA)]);
    let mut b = envelope("recipient-rsa", "s-2", &[("data", DATA)]);
    b.manifest = a.manifest.clone();
    let (_, key) = recipient("recipient-rsa");
    let err = open(&b, &key, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(
            err,
            OpenError::HeaderMismatch {
                field: "submission_id",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn seal_from_a_foreign_ca_is_rejected() {
    let env = envelope("recipient-ec", "s-1", &[("data", DATA)]);
    // The recipient's own certificate as the only anchor: the seal chain does not reach it.
    let foreign = TrustAnchors::from_pem(&demo("recipient-ec.pem")).unwrap();
    let (_, key) = recipient("recipient-ec");
    let err = open(&env, &key, &foreign, &seals(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, OpenError::Seal(_)), "{err}");
    assert!(err.to_string().contains("trust anchor"), "{err}");
}

#[test]
fn a_manifest_or_receipt_sealed_by_another_key_of_the_pki_is_refused() {
    // The demo portal's certificate comes from the seal's CA and may sign.
    let portal = SealKey::from_pem(&demo("portal.pem"), &demo("portal.key")).unwrap();
    let m = manifest("s-5", &[("data", DATA)]);
    let sealed = seal_manifest(&m, &portal).unwrap();
    let (cert, key) = recipient("recipient-ec");
    let header = EnvelopeHeader {
        message_id: "s-5-msg".into(),
        target: "dms".into(),
        created_at: m.received_at.clone(),
    };
    let data: Vec<&[u8]> = vec![DATA];
    let env = build_envelope(header, &m, &sealed, &data, &cert).unwrap();
    let err = open(&env, &key, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, OpenError::NotTheGatewaysSeal(_)), "{err}");
    assert!(err.to_string().contains("portal-demo"), "{err}");
    let jws = Receipt::for_manifest(&m).sign(&portal).unwrap();
    let err = Receipt::verify(&jws, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(
        err.to_string().contains("not one of the pinned seal"),
        "{err}"
    );
}

#[test]
fn receipt_verifies_and_cannot_pass_for_a_manifest() {
    let m = manifest("s-9", &[("data", DATA)]);
    let jws = Receipt::for_manifest(&m).sign(&seal()).unwrap();
    let r = Receipt::verify(&jws, &trust(), &seals(), SystemTime::now()).unwrap();
    assert_eq!(r.parts[0].sha512, sha512_hex(DATA));
    let err = ozg_adapter_sdk::jose::verify(&jws, "ozg-manifest", &trust(), SystemTime::now())
        .unwrap_err();
    assert!(err.to_string().contains("typ"), "{err}");
}

#[test]
fn seal_key_must_match_its_certificate() {
    let err = SealKey::from_pem(&demo("seal.pem"), &demo("portal.key")).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn safe_file_names() {
    use ozg_adapter_sdk::envelope::safe_file_name;
    assert_eq!(
        safe_file_name("../../etc/passwd").as_deref(),
        Some("passwd")
    );
    assert_eq!(safe_file_name("a\0b.pdf").as_deref(), Some("ab.pdf"));
    assert_eq!(safe_file_name(".."), None);
    assert_eq!(
        safe_file_name("C:\\x\\Antrag.pdf").as_deref(),
        Some("Antrag.pdf")
    );
}

#[test]
fn tampered_manifest_fails() {
    let mut env = envelope("recipient-rsa", "s-1", &[("data", DATA)]);
    let mut pieces: Vec<String> = env.manifest.split('.').map(str::to_owned).collect();
    let mid = pieces[3].len() / 2;
    let flipped = if &pieces[3][mid..mid + 1] == "A" {
        "B"
    } else {
        "A"
    };
    pieces[3].replace_range(mid..mid + 1, flipped);
    env.manifest = pieces.join(".");
    let (_, key) = recipient("recipient-rsa");
    let err = open(&env, &key, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(matches!(err, OpenError::ManifestDecrypt(_)), "{err}");
    assert!(err.to_string().starts_with("manifest"), "{err}");
}

#[test]
fn part_missing_or_added_is_named() {
    let mut env = envelope(
        "recipient-ec",
        "s-1",
        &[("data", DATA), ("attachment-1", PDF)],
    );
    let (_, key) = recipient("recipient-ec");
    let extra = env.parts[1].clone();
    env.parts.pop();
    let err = open(&env, &key, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, OpenError::PartMissing(ref id) if id == "attachment-1"),
        "{err}"
    );
    env.parts.push(extra.clone());
    env.parts.push(ozg_adapter_sdk::envelope::EnvelopePart {
        id: "attachment-2".into(),
        jwe: extra.jwe,
    });
    let err = open(&env, &key, &trust(), &seals(), SystemTime::now()).unwrap_err();
    assert!(
        matches!(err, OpenError::PartUnexpected(ref id) if id == "attachment-2"),
        "{err}"
    );
}

#[test]
fn an_envelope_establishes_one_key_and_every_jwe_still_opens_alone() {
    for stem in ["recipient-rsa", "recipient-ec"] {
        let env = envelope(
            stem,
            "s-1",
            &[("data", DATA), ("attachment-1", b"%PDF-1.7 demo")],
        );
        let (_, key) = recipient(stem);
        let jwes: Vec<&str> = std::iter::once(env.manifest.as_str())
            .chain(env.parts.iter().map(|p| p.jwe.as_str()))
            .collect();
        let segment = |jwe: &str, i: usize| jwe.split('.').nth(i).unwrap().to_owned();
        // Same encrypted key (and, for EC, the same epk in the header) ...
        assert!(jwes.iter().all(|j| segment(j, 1) == segment(jwes[0], 1)));
        // ... but every JWE has its own IV.
        let mut ivs: Vec<String> = jwes.iter().map(|j| segment(j, 2)).collect();
        ivs.sort();
        ivs.dedup();
        assert_eq!(ivs.len(), jwes.len(), "{stem}: IVs must not repeat");
        // Each JWE is complete on its own: a library without the shared-key
        // shortcut opens it.
        let plain = jose::decrypt(&env.parts[1].jwe, &key).unwrap();
        assert_eq!(plain.plaintext, b"%PDF-1.7 demo");
        // Two envelopes never share a key.
        let other = envelope(stem, "s-2", &[("data", DATA)]);
        assert_ne!(segment(&other.manifest, 1), segment(jwes[0], 1));
    }
}

#[test]
fn to_json_writes_what_serde_writes() {
    let mut env = envelope(
        "recipient-ec",
        "s-1",
        &[("data", DATA), ("attachment-1", b"%PDF-1.7 demo")],
    );
    assert_eq!(env.to_json(), serde_json::to_vec(&env).unwrap());
    // Header fields that need escaping are escaped like serde does.
    env.destination = "a\"b\\c\u{1}".into();
    assert_eq!(env.to_json(), serde_json::to_vec(&env).unwrap());
    // Not a compact JWE: the slow path, still the same bytes.
    env.parts[0].jwe.push('"');
    assert_eq!(env.to_json(), serde_json::to_vec(&env).unwrap());
}
