//! schemathesis (PyPI) against a running manager with its own `/openapi.json`: no 5xx, no status,
//! content type or body the document does not allow, no crash. The run is bounded (examples per
//! operation and a time budget) so that CI stays short.
//!
//! The CLI is found through `POSEIDON_SCHEMATHESIS` (which `.ci/run` sets after installing it in a
//! venv), then `st` on the PATH. Under CI (`CI=true`) a missing CLI fails the test; elsewhere the
//! test says SKIPPED and passes.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

/// The checks that matter here: server errors, conformance to the document, and a 405 with `Allow`
/// for a method a path does not have. (Checks such as
/// positive-data acceptance judge how strict the schemas of free-form task specs are, not the
/// server's behaviour.)
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,unsupported_method";
/// Examples per operation and phase.
const MAX_EXAMPLES: &str = "40";
/// The whole run is stopped after this long (it takes about 15 s on the CI machine).
const BUDGET: Duration = Duration::from_secs(240);

fn schemathesis() -> Option<String> {
    let candidates = [
        std::env::var("POSEIDON_SCHEMATHESIS").ok(),
        Some("/var/cache/poseidon/schemathesis-venv/bin/st".to_string()),
        Some("st".to_string()),
    ];
    for c in candidates.into_iter().flatten() {
        let ok = Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(c);
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("schemathesis is not installed: .ci/run installs it (POSEIDON_SCHEMATHESIS)");
    }
    eprintln!("SKIPPED: schemathesis is not installed (pip install schemathesis, or run .ci/run)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let Some(st) = schemathesis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::localize(
        include_str!("../config/mock-cluster.toml"),
        dir.path(),
        true,
    );
    let running = common::start(&cfg).await;
    let base = running.manager_url().unwrap();
    // `/events` and `/tasks/{id}/logs?follow=true` stream until the client leaves (or the task
    // stops), which a fuzzer reads as a hang; both are validated by tests/openapi.rs. Services
    // are documented before they are served.
    let out = tokio::process::Command::new("timeout")
        .arg(BUDGET.as_secs().to_string())
        .arg(&st)
        .args(["run", &format!("{base}/openapi.json"), "--url", &base])
        .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
        .args([
            "--exclude-path",
            "/events",
            "--exclude-operation-id",
            "taskLogs",
        ])
        .args(["--exclude-tag", "services"])
        // Blocking queries hold the request until the catalog changes or their wait ends (5
        // minutes by default), which a fuzzer reads as a hang; tests/openapi.rs validates them.
        .args([
            "--exclude-tag",
            "catalog",
            "--exclude-operation-id",
            "nodeMesh",
        ])
        .args(["--request-timeout", "10", "--max-response-time", "10"])
        .args(["--seed", "16"])
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- schemathesis stdout\n{stdout}\n--- stderr\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "schemathesis failed (124 is the time budget running out)"
    );
    assert!(stdout.contains("passed"), "schemathesis ran no test");
    // The manager is still serving after it.
    let (status, _) = common::Api::new(&base).get("/health").await;
    assert_eq!(status, 200);
    running.stop().await;
}
