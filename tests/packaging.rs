//! The systemd units in `packaging/` and the config they read: every unit's `ExecStart` parses as
//! the binary's own command line, names the installed path the README gives and the shipped
//! config, and the manager's command really serves and stops cleanly on the unit's `KillSignal`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use argh::FromArgs;
use poseidon::cli::{Args, Command as Sub};

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
const MANAGER_UNIT: &str = include_str!("../packaging/poseidon-manager.service");
const WORKER_UNIT: &str = include_str!("../packaging/poseidon-worker@.service");
const CLUSTER: &str = include_str!("../packaging/cluster.toml");
const README: &str = include_str!("../README.md");

/// The installed binary and config, as the README's install steps put them.
const INSTALLED: &str = "/usr/local/bin/poseidon";
const CONFIG: &str = "/etc/poseidon/cluster.toml";

/// The `[Service]` keys of a unit (the last value of a repeated key).
fn service(unit: &str) -> BTreeMap<String, String> {
    let mut section = "";
    let mut keys = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[Service]" {
            let (k, v) = line.split_once('=').unwrap();
            keys.insert(k.to_string(), v.to_string());
        }
    }
    keys
}

/// The unit's `ExecStart` as argv after the program, with the template instance `%i` set.
fn exec_args(unit: &str, instance: &str) -> Vec<String> {
    let exec = service(unit)["ExecStart"].clone();
    assert!(
        !exec.contains('"') && !exec.contains('\''),
        "keep ExecStart unquoted: {exec}"
    );
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some(INSTALLED), "ExecStart runs {exec}");
    words.map(|w| w.replace("%i", instance)).collect()
}

fn parse(args: &[String]) -> Args {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Args::from_args(&["poseidon"], &refs)
        .unwrap_or_else(|e| panic!("ExecStart {args:?} does not parse: {}", e.output))
}

#[test]
fn the_manager_units_exec_start_is_a_valid_manager_command_line() {
    let args = parse(&exec_args(MANAGER_UNIT, ""));
    match args.command {
        Some(Sub::Manager(m)) => assert_eq!(m.config.unwrap().to_str(), Some(CONFIG)),
        other => panic!("the manager unit starts {other:?}"),
    }
    // And the binary itself agrees (its `--help` for that subcommand exits 0).
    let status = Command::new(BIN)
        .args(["manager", "--help"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_worker_template_starts_the_worker_named_by_its_instance() {
    let args = parse(&exec_args(WORKER_UNIT, "local"));
    match args.command {
        Some(Sub::Worker(w)) => {
            assert_eq!(w.name, "local");
            assert_eq!(w.config.unwrap().to_str(), Some(CONFIG));
        }
        other => panic!("the worker unit starts {other:?}"),
    }
    let unit = service(WORKER_UNIT);
    assert!(WORKER_UNIT.contains("After=network-online.target docker.service"));
    assert_eq!(unit["KillSignal"], "SIGTERM");
}

#[test]
fn the_shipped_config_has_the_manager_and_the_worker_the_readme_enables() {
    let cfg = poseidon::config::parse(CLUSTER, "packaging/cluster.toml").unwrap();
    assert!(cfg.manager.is_some());
    let names: Vec<&str> = cfg.workers.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["local"]);
    // The README's install steps name the same files and instance.
    for step in [
        "cargo install --path . --root /usr/local",
        "install -D -m 0644 packaging/cluster.toml /etc/poseidon/cluster.toml",
        "systemctl enable --now poseidon-manager poseidon-worker@local",
    ] {
        assert!(README.contains(step), "README lacks {step:?}");
    }
}

#[test]
fn the_manager_units_command_serves_and_stops_cleanly_on_its_kill_signal() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    // The shipped config, with this test's port and data directory.
    let toml = CLUSTER
        .replace("127.0.0.1:5555", &format!("127.0.0.1:{port}"))
        .replace("/var/lib/poseidon", &dir.path().display().to_string());
    let file = dir.path().join("cluster.toml");
    std::fs::write(&file, toml).unwrap();
    let args: Vec<String> = exec_args(MANAGER_UNIT, "")
        .into_iter()
        .map(|a| a.replace(CONFIG, &file.display().to_string()))
        .collect();
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        let ok = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/health")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("the manager started by the unit's command never served /health");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let signal = service(MANAGER_UNIT)["KillSignal"].clone();
    assert_eq!(signal, "SIGTERM");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Well within the unit's TimeoutStopSec (30 s).
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the manager did not stop on SIGTERM within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "the manager exited with {status} on SIGTERM"
    );
}
