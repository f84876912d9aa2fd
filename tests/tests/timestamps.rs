//! RFC 3161 time-stamps on audit checkpoints, against a local TSA that is
//! `openssl ts -reply` behind a small HTTP handler: while the TSA is down the
//! daemon keeps working and the gap shows in `ozg_audit_checkpoints_unstamped`;
//! once it is up every checkpoint gets its token; a stored token verifies with
//! `openssl ts -verify`; `audit verify` reports the stamps, a missing token,
//! and breaks (exit 4) on a forged one.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

const BIN: &str = env!("CARGO_BIN_EXE_ozg-gateway-e2e");
const MAKE_TSA: &str = "interop/make_tsa.sh";

/// Runs `program` with `args` in `dir`; it must succeed.
fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    run(dir, "openssl", args)
}

/// A CA, a TSA certificate under it and the TSA's `openssl ts` config, made
/// in `dir` by `tests/interop/make_tsa.sh`.
fn make_tsa(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(MAKE_TSA);
    run(dir, "sh", &[&script.display().to_string(), "."])
}

/// A local TSA: its CA file and URL; it answers 503 while `down` is set.
struct LocalTsa {
    dir: tempfile::TempDir,
    port: u16,
    down: Arc<AtomicBool>,
    /// Answers requests other than the one asked (the same hash, no nonce):
    /// a replayed or mixed-up answer.
    no_nonce: Arc<AtomicBool>,
}

impl LocalTsa {
    fn start() -> LocalTsa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_tsa(d);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(true));
        let no_nonce = Arc::new(AtomicBool::new(false));
        let (root, flag, other) = (d.to_owned(), down.clone(), no_nonce.clone());
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { continue };
                let mode = (flag.load(Ordering::SeqCst), other.load(Ordering::SeqCst));
                let _ = answer(&mut conn, &root, n, mode);
            }
        });
        LocalTsa {
            dir,
            port,
            down,
            no_nonce,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/tsr", self.port)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A gateway that signs a checkpoint every second and has it stamped here.
    fn options(&self) -> Options {
        Options {
            extra: format!(
                "[audit]\ncheckpoint_interval = \"1s\"\n\n[audit.timestamp]\nurl = \"{}\"\nanchors = \"{}\"\nretry = \"1s\"\n",
                self.url(),
                self.file("ca.pem").display()
            ),
            ..Options::default()
        }
    }
}

/// One HTTP/1.1 exchange: the request's body to `openssl ts -reply`, its
/// answer back (or 503 while down; with `no_nonce`, the answer to a request
/// of its own for the same hash).
fn answer(
    conn: &mut std::net::TcpStream,
    dir: &Path,
    n: usize,
    (down, no_nonce): (bool, bool),
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let got = conn.read(&mut chunk)?;
        if got == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..got]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let got = conn.read(&mut chunk)?;
        if got == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..got]);
    }
    if down {
        return conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        );
    }
    let (query, reply) = (dir.join(format!("q{n}.tsq")), dir.join(format!("r{n}.tsr")));
    std::fs::write(&query, &buf[head_end..head_end + length])?;
    let query = if no_nonce {
        // The SHA-256 imprint: the 32-byte OCTET STRING after the algorithm.
        let q = &buf[head_end..head_end + length];
        let at = q.windows(2).rposition(|w| w == [0x04, 0x20]).unwrap() + 2;
        let other = dir.join(format!("q{n}-other.tsq"));
        Command::new("openssl")
            .args(["ts", "-query", "-sha256", "-cert", "-no_nonce", "-digest"])
            .arg(hex::encode(&q[at..at + 32]))
            .arg("-out")
            .arg(&other)
            .output()?;
        other
    } else {
        query
    };
    let ok = Command::new("openssl")
        .args([
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-inkey",
            "tsa.key",
            "-signer",
            "tsa.pem",
            "-queryfile",
        ])
        .arg(&query)
        .arg("-out")
        .arg(&reply)
        .current_dir(dir)
        .output()?
        .status
        .success();
    let body = if ok {
        std::fs::read(&reply)?
    } else {
        Vec::new()
    };
    conn.write_all(
        format!(
            "HTTP/1.1 {}\r\ncontent-type: application/timestamp-reply\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            if ok { "200 OK" } else { "500 Internal Server Error" },
            body.len()
        )
        .as_bytes(),
    )?;
    conn.write_all(&body)
}

/// Waits until no checkpoint is left unstamped.
async fn all_stamped(gw: &ozg_gateway::daemon::Gateway) {
    eventually(
        Duration::from_secs(30),
        "every checkpoint stamped",
        || async {
            (metric(gw.admin_addr, "ozg_audit_checkpoints_unstamped").await == 0.0).then_some(())
        },
    )
    .await;
}

fn verify(config: &Path, data_dir: &Path) -> (Option<i32>, String) {
    audit_verify(BIN, config, Some(data_dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_stamped_when_the_tsa_answers_and_audit_verify_checks_the_tokens() {
    let tsa = LocalTsa::start();
    let (tc, gw) = start(&tsa.options()).await;
    let req = SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: b"<antrag><hinweis>stamp</hinweis></antrag>".to_vec(),
        data_media_type: "application/xml".into(),
        ..Default::default()
    };
    // The TSA is down: the daemon accepts all the same, and the gap shows.
    let answer = client::submit(&portal_client("portal"), &base_url(gw.ingest_addr), &req)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let gap = eventually(
        Duration::from_secs(20),
        "an unstamped checkpoint",
        || async {
            let n = metric(gw.admin_addr, "ozg_audit_checkpoints_unstamped").await;
            (n >= 1.0).then_some(n)
        },
    )
    .await;
    assert!(gap >= 1.0);
    assert!(metric(gw.admin_addr, "ozg_audit_timestamp_failures_total").await >= 1.0);

    // Up again: every checkpoint is stamped.
    tsa.down.store(false, Ordering::SeqCst);
    all_stamped(&gw).await;
    gw.shutdown().await.unwrap();
    // The final checkpoint of the shutdown may be left unstamped; stamp what is there.
    let (code, said) = verify(&tc.path, &tc.data_dir);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("time-stamps: "), "{said}");
    assert!(!said.contains("time-stamps: no checkpoint"), "{said}");

    // A stored token verifies with openssl over its checkpoint.
    let conn = rusqlite::Connection::open(tc.data_dir.join("gateway.db")).unwrap();
    let (seq, token, jws): (u64, Vec<u8>, String) = conn
        .query_row(
            "SELECT s.seq, s.token, c.jws FROM audit_stamps s JOIN audit_checkpoints c ON c.seq = s.seq ORDER BY s.seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    drop(conn);
    std::fs::write(tsa.file("token.der"), &token).unwrap();
    std::fs::write(tsa.file("checkpoint.jws"), jws.as_bytes()).unwrap();
    openssl(
        tsa.dir.path(),
        &[
            "ts",
            "-verify",
            "-token_in",
            "-in",
            "token.der",
            "-data",
            "checkpoint.jws",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ],
    );

    // The submission's inclusion proof carries its checkpoints' tokens, and
    // verify-proof checks them with the TSA's anchors.
    let sid = answer.body["submission_id"].as_str().unwrap().to_owned();
    let proof = tc.dir.path().join("proof.json");
    let out = Command::new(BIN)
        .args(["audit", "prove", &sid, "--config"])
        .arg(&tc.path)
        .arg("--out")
        .arg(&proof)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    assert!(
        doc["records"][0]["checkpoint_timestamp"].is_string(),
        "{doc}"
    );
    let verify_proof = |tsa_anchors: &Path| {
        Command::new(BIN)
            .args(["audit", "verify-proof"])
            .arg(&proof)
            .arg("--trust")
            .arg(demo("ca.pem"))
            .arg("--seal")
            .arg(demo("seal.pem"))
            .arg("--tsa-anchors")
            .arg(tsa_anchors)
            .output()
            .unwrap()
    };
    let out = verify_proof(&tsa.file("ca.pem"));
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("checkpoint time-stamped 20"), "{said}");
    // With other anchors the tokens do not verify.
    assert_eq!(verify_proof(&demo("ca.pem")).status.code(), Some(4));

    // A missing token is reported; a forged one breaks the log.
    let missing = data_dir_copy_with(
        &tc,
        "missing",
        &format!("DELETE FROM audit_stamps WHERE seq = {seq};"),
    );
    let (code, said) = verify(&tc.path, &missing);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("without a time-stamp token"), "{said}");
    assert!(said.contains(&seq.to_string()), "{said}");
    let forged = data_dir_copy_with(
        &tc,
        "forged",
        &format!("UPDATE audit_stamps SET token = (SELECT token FROM audit_stamps WHERE seq != {seq} ORDER BY seq LIMIT 1) WHERE seq = {seq};"),
    );
    let (code, said) = verify(&tc.path, &forged);
    if code == Some(0) {
        // Only one token: forge by changing a byte instead.
        let flipped = data_dir_copy_with(&tc, "flipped", &format!("UPDATE audit_stamps SET token = substr(token, 1, length(token) - 1) || x'00' WHERE seq = {seq};"));
        let (code, said) = verify(&tc.path, &flipped);
        assert_eq!(code, Some(4), "{said}");
        assert!(said.contains("does not verify"), "{said}");
    } else {
        assert_eq!(code, Some(4), "{said}");
        assert!(said.contains("does not verify"), "{said}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_answering_another_request_is_not_kept() {
    let tsa = LocalTsa::start();
    tsa.no_nonce.store(true, Ordering::SeqCst);
    tsa.down.store(false, Ordering::SeqCst);
    let (tc, gw) = start(&tsa.options()).await;
    // The tokens are good ones for the checkpoint's hash, but not answers to
    // the gateway's request (no nonce): none is kept.
    eventually(Duration::from_secs(20), "refused tokens", || async {
        let failed = metric(gw.admin_addr, "ozg_audit_timestamp_failures_total").await;
        let gap = metric(gw.admin_addr, "ozg_audit_checkpoints_unstamped").await;
        (failed >= 2.0 && gap >= 1.0).then_some(())
    })
    .await;
    let stamps = || {
        let conn = rusqlite::Connection::open(tc.data_dir.join("gateway.db")).unwrap();
        conn.query_row("SELECT COUNT(*) FROM audit_stamps", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
    };
    assert_eq!(stamps(), 0);
    // The same TSA answering the requests asked: stamped.
    tsa.no_nonce.store(false, Ordering::SeqCst);
    all_stamped(&gw).await;
    assert!(stamps() >= 1);
    gw.shutdown().await.unwrap();
}
