//! Per-submission crypto cost: seal (sign the manifest), and encrypt one part for an
//! RSA-3072 and a P-256 recipient, for 8 KiB and 1 MiB parts. Also `open` (decrypt
//! and verify) of an envelope with one 8 KiB part. Uses the demo PKI.
//!
//! Run: `cargo bench -p ozg-adapter-sdk --bench crypto`

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ozg_adapter_sdk::envelope::{
    build_envelope, seal_manifest, sha512_hex, EnvelopeHeader, Receipt,
};
use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{
    jose, Manifest, ManifestPart, RecipientCert, RecipientPrivateKey, SealKey, TrustAnchors,
};

fn demo(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../certs-example/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("demo PKI file")
}

fn recipient(stem: &str) -> RecipientCert {
    RecipientCert::new(Certificate::from_pem(&demo(&format!("{stem}.pem"))).unwrap()).unwrap()
}

fn manifest(data: &[u8]) -> Manifest {
    Manifest {
        submission_id: "0191d6e2-0000-7000-8000-000000000000".into(),
        received_at: "2026-11-24T10:42:00Z".into(),
        sender: "portal-demo".into(),
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        metadata: Default::default(),
        parts: vec![ManifestPart {
            id: "data".into(),
            media_type: "application/xml".into(),
            filename: None,
            size: data.len() as u64,
            sha512: sha512_hex(data),
        }],
        in_reply_to: None,
        reply_type: None,
    }
}

fn bench(c: &mut Criterion) {
    let seal = SealKey::from_pem(&demo("seal.pem"), &demo("seal.key")).unwrap();
    let small = vec![b'x'; 8 << 10];
    let m = manifest(&small);

    c.bench_function("seal/manifest+receipt ES256", |b| {
        b.iter(|| {
            let sealed = seal_manifest(black_box(&m), &seal).unwrap();
            let receipt = Receipt::for_manifest(&m).sign(&seal).unwrap();
            black_box((sealed, receipt))
        })
    });

    let mut group = c.benchmark_group("encrypt-part");
    for (stem, label) in [
        ("recipient-rsa", "RSA-OAEP-256/3072"),
        ("recipient-ec", "ECDH-ES+A256KW/P-256"),
    ] {
        let r = recipient(stem);
        for size in [8usize << 10, 1 << 20] {
            let data = vec![b'y'; size];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::new(label, size), &data, |b, data| {
                b.iter(|| {
                    black_box(
                        jose::encrypt(&r, "application/octet-stream", black_box(data)).unwrap(),
                    )
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("sha512");
    for size in [8usize << 10, 1 << 20] {
        let data = vec![b'z'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, d| {
            b.iter(|| black_box(sha512_hex(d)))
        });
    }
    group.finish();

    // AES-256-GCM of a 32 MiB part: aws-lc-rs one-shot, and in 64 KiB pieces
    // (`jose::gcm`, what the streaming intake will use).
    let mut group = c.benchmark_group("aes-256-gcm");
    group.sample_size(10);
    let big = vec![0x5au8; 32 << 20];
    group.throughput(Throughput::Bytes(big.len() as u64));
    let (key, iv) = ([3u8; 32], [4u8; 12]);
    group.bench_function("one-shot 32MiB", |b| {
        use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        b.iter(|| {
            let mut buf = big.clone();
            let tag = k
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(b"h"),
                    &mut buf,
                )
                .unwrap();
            black_box(tag.as_ref()[0]);
            black_box(buf)
        })
    });
    group.bench_function("pieces of 64KiB, 32MiB", |b| {
        b.iter(|| {
            let mut seal = jose::gcm::GcmSeal::new(&key, &iv, b"h").unwrap();
            let mut out = Vec::with_capacity(64 << 10);
            for chunk in big.chunks(64 << 10) {
                out.clear();
                seal.update(chunk, &mut out).unwrap();
                black_box(&out);
            }
            black_box(seal.finish())
        })
    });
    group.finish();

    let trust = TrustAnchors::from_pem(&demo("ca.pem")).unwrap();
    let seals = ozg_adapter_sdk::SealPins::from_pem(&demo("seal.pem")).unwrap();
    let sealed = seal_manifest(&m, &seal).unwrap();
    for (stem, label) in [("recipient-rsa", "RSA"), ("recipient-ec", "EC")] {
        let r = recipient(stem);
        let key = RecipientPrivateKey::from_pem(&demo(&format!("{stem}.key")), None).unwrap();
        let header = EnvelopeHeader {
            message_id: "m".into(),
            target: "t".into(),
            created_at: m.received_at.clone(),
        };
        let env = build_envelope(header, &m, &sealed, &[&small], &r).unwrap();
        c.bench_function(&format!("open/8KiB {label}"), |b| {
            b.iter(|| {
                black_box(
                    ozg_adapter_sdk::open(&env, &key, &trust, &seals, SystemTime::now()).unwrap(),
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
