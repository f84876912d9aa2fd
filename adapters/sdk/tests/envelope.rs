//! Seal, encrypt and open envelopes with the demo PKI; tampering is named.

use std::time::SystemTime;

use ozg_adapter_sdk::envelope::{
    build_envelope, build_envelopes, seal_manifest, sha512_hex, EnvelopeHeader, PartJwe, Receipt,
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
fn a_receiver_holding_old_and_new_key_opens_either_envelope() {
    // During a key rotation the receiver holds both keys; each envelope names its kid.
    let (_, rsa) = recipient("recipient-rsa");
    let (_, ec) = recipient("recipient-ec");
    let keys = [rsa, ec];
    for stem in ["recipient-rsa", "recipient-ec"] {
        let env = envelope(stem, "s-rot", &[("data", DATA)]);
        let opened =
            ozg_adapter_sdk::open_with_keys(&env, &keys, &trust(), &seals(), SystemTime::now())
                .unwrap();
        assert_eq!(opened.parts[0].data, DATA, "{stem}");
    }
    // Only the other key: named as for another recipient.
    let env = envelope("recipient-rsa", "s-rot", &[("data", DATA)]);
    let err =
        ozg_adapter_sdk::open_with_keys(&env, &keys[1..], &trust(), &seals(), SystemTime::now())
            .unwrap_err();
    assert!(err.to_string().contains("not for this recipient"), "{err}");
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
    let PartJwe::Json(jwe) = &mut env.parts[0].jwe else {
        panic!("version 2 parts are JSON")
    };
    let mut ct = std::mem::take(&mut jwe.ciphertext).into_bytes();
    ct[2] = if ct[2] == b'A' { b'B' } else { b'A' };
    jwe.ciphertext = String::from_utf8(ct).unwrap();
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

fn json(jwe: &PartJwe) -> &jose::FlattenedJwe {
    match jwe {
        PartJwe::Json(j) => j,
        PartJwe::Compact(_) => panic!("version 2 parts are JSON"),
    }
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
        let manifest_ek = env.manifest.split('.').nth(1).unwrap().to_owned();
        // Same encrypted key in the manifest and every part ...
        assert!(env
            .parts
            .iter()
            .all(|p| json(&p.jwe).encrypted_key == manifest_ek));
        // ... but every JWE has its own IV.
        let mut ivs: Vec<String> =
            std::iter::once(env.manifest.split('.').nth(2).unwrap().to_owned())
                .chain(env.parts.iter().map(|p| json(&p.jwe).iv.clone()))
                .collect();
        ivs.sort();
        ivs.dedup();
        assert_eq!(ivs.len(), 3, "{stem}: IVs must not repeat");
        // Each JWE is complete on its own: a fresh decryptor opens it.
        let plain = jose::Decryptor::new(&key)
            .decrypt_json(json(&env.parts[1].jwe))
            .unwrap();
        assert_eq!(plain.plaintext, b"%PDF-1.7 demo");
        assert_eq!(plain.cty, "application/octet-stream");
        // Two envelopes never share a key.
        let other = envelope(stem, "s-2", &[("data", DATA)]);
        assert_ne!(other.manifest.split('.').nth(1).unwrap(), manifest_ek);
    }
}

/// Envelopes of one submission for an RSA and an EC target, sharing the parts'
/// ciphertext, as the gateway stores them (own bytes + shared pieces).
fn shared_pair(parts: &[(&str, &[u8])]) -> (Vec<ozg_adapter_sdk::Envelope>, Vec<Vec<u8>>) {
    let m = manifest("s-shared", parts);
    let sealed = seal_manifest(&m, &seal()).unwrap();
    let data: Vec<&[u8]> = parts.iter().map(|(_, d)| *d).collect();
    let (rsa, _) = recipient("recipient-rsa");
    let (ec, _) = recipient("recipient-ec");
    let header = |t: &str| EnvelopeHeader {
        message_id: format!("s-shared-{t}"),
        target: t.into(),
        created_at: m.received_at.clone(),
    };
    let built = build_envelopes(
        &[(header("dms"), &rsa), (header("fv"), &ec)],
        &m,
        &sealed,
        &data,
    )
    .unwrap();
    assert_eq!(built.shared.len(), parts.len());
    let bytes: Vec<Vec<u8>> = built
        .envelopes
        .iter()
        .map(|e| e.assemble(&built.shared))
        .collect();
    let envs = bytes
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    (envs, bytes)
}

#[test]
fn targets_of_one_submission_share_each_part_ciphertext_and_open_with_their_own_key() {
    let (envs, bytes) = shared_pair(&[("data", DATA), ("attachment-1", PDF)]);
    for (env, raw) in envs.iter().zip(&bytes) {
        // The assembled bytes are exactly the envelope's JSON.
        assert_eq!(serde_json::to_vec(env).unwrap(), *raw);
        assert_eq!(env.version, 2);
        assert!(!String::from_utf8_lossy(raw).contains("MARKER"));
    }
    for i in 0..2 {
        let (a, b) = (json(&envs[0].parts[i].jwe), json(&envs[1].parts[i].jwe));
        assert_eq!(
            (&a.protected, &a.iv, &a.ciphertext, &a.tag),
            (&b.protected, &b.iv, &b.ciphertext, &b.tag),
            "part {i}: one ciphertext for both targets"
        );
        assert_ne!(a.encrypted_key, b.encrypted_key);
        assert_eq!(
            (a.header.alg.as_str(), b.header.alg.as_str()),
            ("RSA-OAEP-256", "ECDH-ES+A256KW")
        );
    }
    for (env, stem, target) in [
        (&envs[0], "recipient-rsa", "dms"),
        (&envs[1], "recipient-ec", "fv"),
    ] {
        let (_, key) = recipient(stem);
        let opened = open(env, &key, &trust(), &seals(), SystemTime::now()).unwrap();
        assert_eq!(env.target, target);
        assert_eq!(opened.parts[0].data, DATA);
        assert_eq!(opened.parts[1].data, PDF);
    }
    // The other target's key opens neither.
    let (_, ec) = recipient("recipient-ec");
    assert!(open(&envs[0], &ec, &trust(), &seals(), SystemTime::now()).is_err());
}

#[test]
fn a_recipient_header_or_key_taken_from_the_other_target_does_not_open() {
    let (envs, _) = shared_pair(&[("data", DATA)]);
    let (_, ec) = recipient("recipient-ec");
    // The EC target's part with the RSA target's encrypted key (and header):
    // the EC key cannot unwrap it.
    let mut swapped = envs[1].clone();
    let PartJwe::Json(jwe) = &mut swapped.parts[0].jwe else {
        unreachable!()
    };
    let rsa_part = json(&envs[0].parts[0].jwe).clone();
    jwe.encrypted_key = rsa_part.encrypted_key.clone();
    assert!(open(&swapped, &ec, &trust(), &seals(), SystemTime::now()).is_err());
    // Another ephemeral key (a fresh one of another envelope) in the
    // unprotected header: the unwrapped key differs, AES key wrap refuses.
    let (other, _) = shared_pair(&[("data", DATA)]);
    let mut forged = envs[1].clone();
    let PartJwe::Json(jwe) = &mut forged.parts[0].jwe else {
        unreachable!()
    };
    jwe.header.epk = json(&other[1].parts[0].jwe).header.epk.clone();
    match open(&forged, &ec, &trust(), &seals(), SystemTime::now()).unwrap_err() {
        OpenError::PartDecrypt { id, .. } => assert_eq!(id, "data"),
        e => panic!("unexpected {e}"),
    }
    // A protected header with a recipient's field in it is refused.
    let mut added = envs[1].clone();
    let PartJwe::Json(jwe) = &mut added.parts[0].jwe else {
        unreachable!()
    };
    jwe.protected = ozg_adapter_sdk::base64url::encode(
        br#"{"enc":"A256GCM","cty":"application/octet-stream","alg":"dir"}"#,
    );
    assert!(open(&added, &ec, &trust(), &seals(), SystemTime::now()).is_err());
}

#[test]
fn version_1_envelopes_with_compact_parts_still_open() {
    let (cert, key) = recipient("recipient-ec");
    let mut env = envelope("recipient-ec", "s-1", &[("data", DATA)]);
    env.version = 1;
    env.parts[0].jwe =
        PartJwe::Compact(jose::encrypt(&cert, "application/octet-stream", DATA).unwrap());
    let json = env.to_json();
    assert_eq!(json, serde_json::to_vec(&env).unwrap());
    let back: ozg_adapter_sdk::Envelope = serde_json::from_slice(&json).unwrap();
    let opened = open(&back, &key, &trust(), &seals(), SystemTime::now()).unwrap();
    assert_eq!(opened.parts[0].data, DATA);
    env.version = 3;
    assert!(matches!(
        open(&env, &key, &trust(), &seals(), SystemTime::now()),
        Err(OpenError::Version(3))
    ));
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
    // A compact part that is not a compact JWE: the slow path, still the same bytes.
    env.parts[0].jwe = PartJwe::Compact("a\"b".into());
    assert_eq!(env.to_json(), serde_json::to_vec(&env).unwrap());
}

#[test]
fn a_part_jwe_is_read_by_its_json_type_and_anything_else_is_named() {
    let env = envelope("recipient-ec", "s-1", &[("data", DATA)]);
    let mut json: serde_json::Value = serde_json::to_value(&env).unwrap();
    let back: ozg_adapter_sdk::Envelope = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, env);
    json["parts"][0]["jwe"]["aad"] = "eA".into();
    let err = serde_json::from_value::<ozg_adapter_sdk::Envelope>(json.clone()).unwrap_err();
    assert!(err.to_string().contains("aad"), "{err}");
    json["parts"][0]["jwe"] = 7.into();
    let err = serde_json::from_value::<ozg_adapter_sdk::Envelope>(json.clone()).unwrap_err();
    assert!(err.to_string().contains("a JWE: an object"), "{err}");
    json["parts"][0]["jwe"] = "a.b.c.d.e".into();
    let back: ozg_adapter_sdk::Envelope = serde_json::from_value(json).unwrap();
    assert_eq!(back.parts[0].jwe, PartJwe::Compact("a.b.c.d.e".into()));
}

#[test]
fn a_part_sealed_as_it_arrives_opens_for_every_target_like_one_sealed_whole() {
    use ozg_adapter_sdk::envelope::{build_envelopes_keyed, content_keys, PartBody};
    // 1 MiB + 1 byte, in pieces of awkward sizes (not multiples of 3 or 16).
    let big: Vec<u8> = (0..(1 << 20) + 1u32)
        .map(|i| (i * 31 + i / 7) as u8)
        .collect();
    let parts: [(&str, &[u8]); 3] = [
        ("data", DATA),
        ("attachment-1", &big),
        ("attachment-2", PDF),
    ];
    let m = manifest("s-streamed", &parts);
    let sealed = seal_manifest(&m, &seal()).unwrap();
    let (rsa, rsa_key) = recipient("recipient-rsa");
    let (ec, ec_key) = recipient("recipient-ec");
    let keys = content_keys(&[&rsa, &ec]).unwrap();
    let mut piece = String::new();
    let mut sealer = keys[0]
        .shared_json_seal("application/octet-stream")
        .unwrap();
    piece.push_str(&sealer.start());
    for chunk in big.chunks(65_537) {
        sealer.update(chunk, &mut piece).unwrap();
    }
    sealer.finish(&mut piece);
    let header = |t: &str| EnvelopeHeader {
        message_id: format!("s-streamed-{t}"),
        target: t.into(),
        created_at: m.received_at.clone(),
    };
    let (h1, h2) = (header("dms"), header("fv"));
    let ozg_adapter_sdk::envelope::KeyedEnvelopes { shared, envelopes } = build_envelopes_keyed(
        &keys,
        &[&h1, &h2],
        &m,
        &sealed,
        &[
            PartBody::Clear(DATA),
            PartBody::Sealed,
            PartBody::Clear(PDF),
        ],
    )
    .unwrap();
    assert!(
        shared[1].is_none(),
        "the sealed part's piece is the caller's"
    );
    let pieces: Vec<Vec<u8>> = shared
        .into_iter()
        .map(|p| p.unwrap_or_else(|| piece.clone().into_bytes()))
        .collect();
    for (e, key) in envelopes.iter().zip([&rsa_key, &ec_key]) {
        let bytes = e.assemble(&pieces);
        let env: ozg_adapter_sdk::Envelope = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            serde_json::to_vec(&env).unwrap(),
            bytes,
            "serde's JSON, byte for byte"
        );
        let opened = open(&env, key, &trust(), &seals(), SystemTime::now()).unwrap();
        assert_eq!(opened.parts[1].data, big);
        assert_eq!(opened.parts[2].data, PDF);
    }
    // A changed ciphertext character is caught.
    let mut bad = pieces.clone();
    let at = bad[1].len() / 2;
    bad[1][at] = if bad[1][at] == b'A' { b'B' } else { b'A' };
    let env: ozg_adapter_sdk::Envelope =
        serde_json::from_slice(&envelopes[0].assemble(&bad)).unwrap();
    assert!(open(&env, &rsa_key, &trust(), &seals(), SystemTime::now()).is_err());
}
