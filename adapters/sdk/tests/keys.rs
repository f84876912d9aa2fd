//! Key and certificate rules: RSA >= 3072, key usage, validity, chain.

use std::time::{Duration, SystemTime};

use ozg_adapter_sdk::keys::Certificate;
use ozg_adapter_sdk::{KeyError, RecipientCert, TrustAnchors};
use rcgen::{
    CertificateParams, KeyPair, KeyUsagePurpose, RsaKeySize, PKCS_ECDSA_P256_SHA256,
    PKCS_RSA_SHA256,
};

fn demo(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../certs-example/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn self_signed(key: &KeyPair, usages: Vec<KeyUsagePurpose>) -> Certificate {
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.key_usages = usages;
    let cert = p.self_signed(key).unwrap();
    Certificate::from_pem(cert.pem().as_bytes()).unwrap()
}

#[test]
fn rsa_below_3072_bit_is_refused() {
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let err =
        RecipientCert::new(self_signed(&key, vec![KeyUsagePurpose::KeyEncipherment])).unwrap_err();
    assert!(matches!(err, KeyError::RsaTooSmall { bits: 2048 }), "{err}");
}

#[test]
fn recipient_needs_the_right_key_usage() {
    // The seal certificate may sign but not agree keys.
    let seal = Certificate::from_pem(&demo("seal.pem")).unwrap();
    let err = RecipientCert::new(seal).unwrap_err();
    assert!(err.to_string().contains("keyAgreement"), "{err}");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    assert!(RecipientCert::new(self_signed(&key, vec![KeyUsagePurpose::KeyAgreement])).is_ok());
}

#[test]
fn chain_and_validity_are_checked() {
    let trust = TrustAnchors::from_pem(&demo("ca.pem")).unwrap();
    let rsa = Certificate::from_pem(&demo("recipient-rsa.pem")).unwrap();
    assert!(trust
        .verify_recipient(rsa.der(), &[], SystemTime::now())
        .is_ok());
    let in_50_years = SystemTime::now() + Duration::from_secs(50 * 365 * 86400);
    let err = trust
        .verify_recipient(rsa.der(), &[], in_50_years)
        .unwrap_err();
    assert!(matches!(err, KeyError::Expired { .. }), "{err}");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let stranger = self_signed(&key, vec![KeyUsagePurpose::KeyAgreement]);
    let err = trust
        .verify_recipient(stranger.der(), &[], SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, KeyError::Untrusted { .. }), "{err}");
}

#[test]
fn rsa_seal_signs_ps256_and_verifies() {
    use ozg_adapter_sdk::SealKey;
    let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072).unwrap();
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    let intermediate_key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072).unwrap();
    let mut leaf = CertificateParams::new(vec![]).unwrap();
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_cert = leaf.signed_by(&intermediate_key, &cert, &key).unwrap();
    let seal = SealKey::from_pem(
        leaf_cert.pem().as_bytes(),
        intermediate_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    assert_eq!(seal.alg(), "PS256");
    let jws = ozg_adapter_sdk::jose::sign(&seal, "ozg-receipt", b"{}").unwrap();
    let trust = TrustAnchors::from_pem(cert.pem().as_bytes()).unwrap();
    let v = ozg_adapter_sdk::jose::verify(&jws, "ozg-receipt", &trust, SystemTime::now()).unwrap();
    assert_eq!(v.payload, b"{}");
}

#[test]
fn recipient_certificates_are_checked_against_crls() {
    use rcgen::{
        BasicConstraints, CertificateRevocationListParams, IsCa, KeyIdMethod, RevokedCertParams,
        SerialNumber,
    };
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "CRL test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let trust = TrustAnchors::from_pem(ca.pem().as_bytes()).unwrap();
    let leaf = |serial: u64| {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.serial_number = Some(SerialNumber::from(serial));
        p.key_usages = vec![KeyUsagePurpose::KeyAgreement];
        p.signed_by(&key, &ca, &ca_key).unwrap().der().clone()
    };
    let (revoked, fine) = (leaf(7), leaf(8));
    let now = time::OffsetDateTime::now_utc();
    let crl = CertificateRevocationListParams {
        this_update: now - time::Duration::days(8),
        // Past its nextUpdate: still used.
        next_update: now - time::Duration::days(1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(7u64),
            revocation_time: now - time::Duration::days(2),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&ca, &ca_key)
    .unwrap();
    let crls = [crl.der().clone()];
    let at = SystemTime::now();
    let err = trust
        .verify_recipient_with_crls(&revoked, &[], at, &crls)
        .unwrap_err();
    assert!(matches!(err, KeyError::Revoked { .. }), "{err}");
    assert!(trust
        .verify_recipient_with_crls(&fine, &[], at, &crls)
        .is_ok());
    // Without CRLs nothing is checked; with CRLs of other CAs only, nothing is known.
    assert!(trust
        .verify_recipient_with_crls(&revoked, &[], at, &[])
        .is_ok());
    let other = Certificate::from_pem(&demo("recipient-ec.pem")).unwrap();
    let demo_trust = TrustAnchors::from_pem(&demo("ca.pem")).unwrap();
    let err = demo_trust
        .verify_recipient_with_crls(other.der(), &[], at, &crls)
        .unwrap_err();
    assert!(matches!(err, KeyError::RevocationUnknown { .. }), "{err}");
}
