//! The web dashboard in a real browser: a mock cluster, and `tests/dashboard.py` driving headless
//! Chromium through Selenium (Debian's `chromium`, `chromium-driver`, `python3-selenium`). The
//! script checks the page loads without console errors, a task submitted over HTTP appears
//! within 2 s, the Stop button stops it, and saves a screenshot whose path it prints.
//!
//! Under CI (`CI=true`) a missing browser, driver or Selenium fails the test; elsewhere the test
//! says SKIPPED and passes.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";
/// Debian's Python, where `python3-selenium` is installed.
const PYTHON: &str = "/usr/bin/python3";

/// Whether the browser and Selenium are here; under CI their absence is a failure.
fn browser_available() -> bool {
    let mut missing = Vec::new();
    for path in [CHROMIUM, DRIVER, PYTHON] {
        if !std::path::Path::new(path).exists() {
            missing.push(path.to_string());
        }
    }
    let selenium = Command::new(PYTHON)
        .args(["-c", "import selenium"])
        .status()
        .is_ok_and(|s| s.success());
    if !selenium {
        missing.push("python3-selenium".into());
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("the dashboard test needs {}", missing.join(", "));
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: .ci/run installs them (chromium chromium-driver python3-selenium)");
    }
    eprintln!("SKIPPED: {why} (apt-get install chromium chromium-driver python3-selenium)");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_submitted_task_live_and_its_stop_button_stops_it() {
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::localize(
        include_str!("../config/mock-cluster.toml"),
        dir.path(),
        true,
    );
    let running = common::start(&cfg).await;
    let base = running.manager_url().unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard.py");
    let out = tokio::process::Command::new("timeout")
        .args(["120", PYTHON, script, &base])
        .arg(&shot)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- dashboard.py stdout\n{stdout}--- stderr\n{stderr}");
    assert!(
        out.status.success(),
        "the browser checks failed ({})",
        out.status
    );
    assert!(stdout.contains("dashboard: all checks passed"));
    assert!(shot.exists());
    eprintln!("dashboard screenshot: {}", shot.display());
    running.stop().await;
}

/// The README's `dashboard` block, run against a mock cluster (its fixed address replaced by this
/// test's manager).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_dashboard_block_runs() {
    let readme = include_str!("../README.md");
    let marker = "<!-- readme-test: dashboard -->";
    let rest = &readme[readme.find(marker).expect("the README has the block") + marker.len()..];
    let open = rest.find("```sh\n").unwrap() + "```sh\n".len();
    let block = &rest[open..open + rest[open..].find("\n```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::localize(
        include_str!("../config/mock-cluster.toml"),
        dir.path(),
        true,
    );
    let running = common::start(&cfg).await;
    let script = block.replace("http://127.0.0.1:5555", &running.manager_url().unwrap());
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_poseidon"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the README block failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("complete -o default -F _poseidon poseidon")
    );
    running.stop().await;
}
