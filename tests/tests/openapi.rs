//! `schemas/openapi.yaml` against the running daemon: the document validates
//! (openapi-spec-validator), and a property-based run of schemathesis against
//! the portal API (with a portal's client certificate) and the operator API
//! finds no server error and no answer that contradicts the document (status
//! code, media type, body schema). Bounded in time; `.ci/run` installs both
//! tools (tests/interop/requirements.txt); without them these tests fail.

use std::process::Command;

use ozg_e2e::*;

/// Seconds each schemathesis run may take.
const BUDGET_SECS: &str = "40";

fn spec() -> String {
    repo().join("schemas/openapi.yaml").display().to_string()
}

#[test]
fn the_openapi_document_is_valid() {
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", &spec()])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs schemathesis on the operations whose path matches `paths` at `url`.
fn schemathesis(url: &str, paths: &str, extra: &[String]) {
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new("schemathesis")
        .current_dir(scratch.path())
        .args(["run", &spec(), "--url", url, "--include-path-regex", paths])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--max-time",
            BUDGET_SECS,
            // One worker: hypothesis describes its strategies with ast.parse,
            // which CPython 3.11 does not run safely on several threads at once
            // (a "recursion depth mismatch" SystemError inside the tool).
            "--workers",
            "1",
            "--seed",
            "20261201",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .args(extra)
        .output()
        .expect("schemathesis on PATH (.ci/run installs it with pip)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found problems:\n{text}");
    assert!(text.contains("passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_against_the_document() {
    let (_tc, gw) = start(&Options {
        delivery: FAST_DELIVERY,
        ..Default::default()
    })
    .await;
    let admin = format!("http://127.0.0.1:{}", gw.admin_addr.port());
    let ingest = format!("https://localhost:{}", gw.ingest_addr.port());
    let portal_tls: Vec<String> = vec![
        "--tls-verify".into(),
        demo("ca.pem").display().to_string(),
        "--request-cert".into(),
        demo("portal.pem").display().to_string(),
        "--request-cert-key".into(),
        demo("portal.key").display().to_string(),
    ];
    let (a, i) = (admin.clone(), ingest.clone());
    tokio::task::spawn_blocking(move || {
        schemathesis(&a, "^/(admin/|healthz|readyz|metrics|audit/|reload)", &[]);
        schemathesis(&i, "^/v1/", &portal_tls);
    })
    .await
    .unwrap();
    // Still serving after everything the runs sent.
    let r = plain_client()
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await.unwrap();
}
