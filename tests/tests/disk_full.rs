//! A full disk under the data directory, for real: the data directory is a small
//! tmpfs (CI runs as root, which may mount one). Submissions get `503` and change
//! nothing, `/readyz` says not ready while writes fail, and both recover by
//! themselves once space is freed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ozg_e2e::*;
use ozg_gateway::tools::client::{self, SubmitRequest};

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "this test mounts a small tmpfs as the data directory and needs root (as in CI)"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system under `dir` until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 256 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

fn request(n: usize) -> SubmitRequest {
    SubmitRequest {
        leistung: "99115005001000".into(),
        destination: "05315000".into(),
        data: format!("<antrag><nr>{n}</nr></antrag>").into_bytes(),
        data_media_type: "application/xml".into(),
        attachments: vec![(
            "scan.pdf".into(),
            "application/pdf".into(),
            vec![b'%'; 512 << 10],
        )],
        ..Default::default()
    }
}

async fn readyz(admin: std::net::SocketAddr) -> u16 {
    reqwest::get(format!("http://{admin}/readyz"))
        .await
        .expect("admin reachable")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_503_and_not_ready_and_both_recover() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let tc = test_config(&Options::default());
    let _tmpfs = Tmpfs::mount(&tc.data_dir, "24m");
    let gw = start_from(&tc).await;
    let url = base_url(gw.ingest_addr);
    let portal = portal_client("portal");

    let first = client::submit(&portal, &url, &request(1)).await.unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(readyz(gw.admin_addr).await, 200);

    let filler = fill(&tc.data_dir);
    let refused = client::submit(&portal, &url, &request(2)).await.unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.body["type"], "/problems/unavailable");
    assert_eq!(
        readyz(gw.admin_addr).await,
        503,
        "not ready while the store cannot write"
    );
    assert!(gw.store.submission("none").await.unwrap().is_none());

    // Space again: ready by itself (the store probes the disk), and submissions
    // are taken again.
    std::fs::remove_file(filler).unwrap();
    // The store's writer probes the disk between its operations (the engine's
    // idle polls give it some); no submission is needed for that.
    eventually(Duration::from_secs(15), "ready again", || async {
        (readyz(gw.admin_addr).await == 200).then_some(())
    })
    .await;
    let again = client::submit(&portal, &url, &request(4)).await.unwrap();
    assert_eq!(again.status, 202, "{}", again.body);
    gw.shutdown().await.unwrap();
}
