//! The seal key in a hardware security module: SoftHSM2 over PKCS#11. The
//! keys are generated inside the token (`pkcs11-tool --keypairgen`, marked
//! sensitive, so they cannot be read out); the certificates are issued by
//! the demo CA for the public keys only. The daemon seals manifests,
//! receipts and checkpoints through the token; the independent jwcrypto
//! check verifies the seal; `config check` refuses a token key that does not
//! belong to the seal certificate, a wrong PIN and a missing `[pki.pkcs11]`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
const PIN: &str = "472913";

/// SoftHSM2's module (Debian's `softhsm2`; `.ci/run` installs it).
fn module() -> PathBuf {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("SoftHSM2 is not installed: apt-get install softhsm2 opensc (.ci/run does)")
}

/// One token directory for the whole test binary (SoftHSM reads its config
/// once per process), with a token `ozg-ec` holding an EC P-256 seal key and
/// `ozg-rsa` an RSA 3072 one, and their certificates.
struct Tokens {
    _dir: tempfile::TempDir,
    ec_cert: PathBuf,
    rsa_cert: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pkcs11_tool(token: &str) -> Command {
    let mut c = Command::new("pkcs11-tool");
    c.arg("--module")
        .arg(module())
        .args(["--token-label", token, "--login", "--pin", PIN]);
    c
}

/// A token `label` with a key pair `seal` of `key_type` made inside it, and a
/// certificate for its public key from the demo CA.
fn token(dir: &Path, label: &str, key_type: &str) -> PathBuf {
    run(Command::new("softhsm2-util").args([
        "--init-token",
        "--free",
        "--label",
        label,
        "--pin",
        PIN,
        "--so-pin",
        "88776655",
    ]));
    run(pkcs11_tool(label).args([
        "--keypairgen",
        "--key-type",
        key_type,
        "--label",
        "seal",
        "--id",
        "01",
        "--sensitive",
    ]));
    let spki = dir.join(format!("{label}.pub.der"));
    run(pkcs11_tool(label)
        .args(["--read-object", "--type", "pubkey", "--label", "seal", "-o"])
        .arg(&spki));
    let public = dir.join(format!("{label}.pub.pem"));
    run(Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&spki)
        .arg("-out")
        .arg(&public));
    let ext = dir.join("seal.ext");
    std::fs::write(
        &ext,
        "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n",
    )
    .unwrap();
    let cert = dir.join(format!("{label}.pem"));
    run(Command::new("openssl")
        .args(["x509", "-new", "-days", "30", "-subj"])
        .arg(format!(
            "/O=ozg-gateway DEMO ONLY/CN={label} seal in SoftHSM"
        ))
        .arg("-force_pubkey")
        .arg(&public)
        .arg("-CA")
        .arg(demo("ca.pem"))
        .arg("-CAkey")
        .arg(demo("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    cert
}

fn tokens() -> &'static Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("tokens");
        std::fs::create_dir_all(&store).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                store.display()
            ),
        )
        .unwrap();
        // Before any module is loaded in this process (SoftHSM reads it once);
        // the daemon's config takes the PIN from the environment.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        std::env::set_var("OZG_TEST_HSM_PIN", PIN);
        let ec_cert = token(dir.path(), "ozg-ec", "EC:prime256v1");
        let rsa_cert = token(dir.path(), "ozg-rsa", "rsa:3072");
        Tokens {
            _dir: dir,
            ec_cert,
            rsa_cert,
        }
    })
}

/// `[pki.pkcs11]` for the token, the PIN from the environment.
fn pkcs11_table(pin: &str) -> String {
    format!(
        "[pki.pkcs11]\nmodule = \"{}\"\npin = \"{pin}\"\nsessions = 2\n",
        module().display()
    )
}

/// Options of a gateway sealing with the token key `token`'s `seal`.
fn sealed_by(token: &str, cert: &Path) -> Options {
    Options {
        seal: Some((cert.to_owned(), format!("pkcs11:token={token};object=seal"))),
        pki_extra: pkcs11_table("${OZG_TEST_HSM_PIN}"),
        ..Options::default()
    }
}

/// `config check` of `o`: (exit code, what it printed).
fn check(o: &Options) -> (Option<i32>, String) {
    config_check(BIN, o)
}

/// Submits to Leistung 99115005001000 and returns the dms-demo envelope
/// (RSA recipient) and the receipt JWS.
async fn submit_and_read(gw: &ozg_gateway::daemon::Gateway) -> (Vec<u8>, String) {
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: b"<antrag><hinweis>HSM test</hinweis></antrag>".to_vec(),
        data_media_type: "application/xml".into(),
        attachments: vec![(
            "Anlage.pdf".into(),
            "application/pdf".into(),
            b"%PDF-1.7 hsm".to_vec(),
        )],
        ..Default::default()
    };
    let answer = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["submission_id"].as_str().unwrap();
    let receipt = answer.body["receipt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let status = gw.store.submission(id).await.unwrap().unwrap();
    let d = status
        .deliveries
        .iter()
        .find(|d| d.target == "dms-demo")
        .unwrap();
    let env = gw.store.envelope(&d.message_id).await.unwrap().unwrap();
    (env, receipt)
}

/// jwcrypto opens `envelope` as the RSA demo recipient, pinning `seal`.
fn jwcrypto_opens(envelope: &[u8], seal: &Path) {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("envelope.json");
    std::fs::write(&path, envelope).unwrap();
    let out = Command::new(python())
        .arg(repo().join("tests/interop/open_envelope.py"))
        .arg(&path)
        .arg(demo("recipient-rsa.key"))
        .arg(demo("ca.pem"))
        .arg(seal)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_seals_with_an_ec_key_that_never_leaves_the_token() {
    let t = tokens();
    let o = sealed_by("ozg-ec", &t.ec_cert);
    let (code, said) = check(&o);
    assert_eq!(code, Some(0), "{said}");
    let (tc, gw) = start(&o).await;
    let (envelope, receipt) = submit_and_read(&gw).await;
    jwcrypto_opens(&envelope, &t.ec_cert);
    // The manifest's seal names the token's certificate, signed ES256.
    let env: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
    assert_eq!(env["version"], 2);
    assert!(!receipt.is_empty(), "the 202 carries a sealed receipt");
    let header: serde_json::Value = serde_json::from_slice(
        &ozg_adapter_sdk::base64url::decode(receipt.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    gw.shutdown().await.unwrap();

    // The checkpoints, signed through the token, verify with the certificate.
    let (code, said) = audit_verify(BIN, &tc.path, None);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("checkpoint"), "{said}");

    // The key was made in the token and cannot leave it; no key file was written.
    let listed = run(pkcs11_tool("ozg-ec").args(["--list-objects", "--type", "privkey"]));
    assert!(
        listed.contains("sensitive, always sensitive, never extractable, local"),
        "{listed}"
    );
    let key_files: Vec<_> = files_under(tc.dir.path())
        .into_iter()
        .filter(|f| std::fs::read(f).is_ok_and(|b| b.windows(11).any(|w| w == b"PRIVATE KEY")))
        .collect();
    assert_eq!(key_files, Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_on_the_token_seals_ps256() {
    let t = tokens();
    let o = sealed_by("ozg-rsa", &t.rsa_cert);
    let (code, said) = check(&o);
    assert_eq!(code, Some(0), "{said}");
    let (_tc, gw) = start(&o).await;
    let (envelope, receipt) = submit_and_read(&gw).await;
    jwcrypto_opens(&envelope, &t.rsa_cert);
    let header: serde_json::Value = serde_json::from_slice(
        &ozg_adapter_sdk::base64url::decode(receipt.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "PS256");
    gw.shutdown().await.unwrap();
}

#[test]
fn config_check_refuses_what_cannot_seal() {
    let t = tokens();
    // The token's EC key with the demo seal's certificate: not its key.
    let mut o = sealed_by("ozg-ec", &t.ec_cert);
    o.seal = Some((demo("seal.pem"), "pkcs11:token=ozg-ec;object=seal".into()));
    let (code, said) = check(&o);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("does not belong"), "{said}");

    let mut o = sealed_by("ozg-ec", &t.ec_cert);
    o.pki_extra = pkcs11_table("000000");
    let (code, said) = check(&o);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("refused the PIN"), "{said}");

    let mut o = sealed_by("ozg-ec", &t.ec_cert);
    o.pki_extra = String::new();
    let (code, said) = check(&o);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("[pki.pkcs11] is missing"), "{said}");

    let mut o = sealed_by("no-such-token", &t.ec_cert);
    o.seal = Some((
        t.ec_cert.clone(),
        "pkcs11:token=no-such-token;object=seal".into(),
    ));
    let (code, said) = check(&o);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("no token matches"), "{said}");

    let mut o = sealed_by("ozg-ec", &t.ec_cert);
    o.seal = Some((
        t.ec_cert.clone(),
        "pkcs11:token=ozg-ec;object=seal?pin-value=472913".into(),
    ));
    let (code, said) = check(&o);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("no PIN in the URI"), "{said}");
    assert!(!said.contains(PIN), "the PIN is never printed: {said}");
}
