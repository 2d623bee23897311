//! The real `poseidon` binary as a child process: a manager killed with SIGKILL under a stream of
//! submissions loses no acknowledged task and starts none twice; the CLI's exit codes and messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Api};
use poseidon::cluster::{self, Roles};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
const WAIT: Duration = Duration::from_secs(20);

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], cwd: &Path) -> Proc {
    Proc(
        Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn healthy(api: &Api) {
    wait_for("the manager to serve", WAIT, || async {
        let url = format!("{}/health", api.base);
        poseidon::http::HttpClient::new(Duration::from_millis(500))
            .get::<serde_json::Value>(&url)
            .await
            .ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_killed_under_load_loses_no_acknowledged_task_and_starts_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[manager]
listen = "127.0.0.1:{port}"
data_dir = "{data}/manager"
heartbeat_ttl = "2s"

[[worker]]
name = "w1"
listen = "127.0.0.1:0"
runtime = "mock"
data_dir = "{data}/w1"
heartbeat_interval = "200ms"
capacity = {{ cpus = 10000.0, memory = "10000g" }}
"#,
            data = dir.path().display()
        ),
    )
    .unwrap();
    let cfg = poseidon::config::load(&file).unwrap();
    let file_s = file.to_str().unwrap().to_string();
    let mut manager = spawn(&["manager", "-c", &file_s], dir.path());
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    healthy(&api).await;
    // The worker runs in this process, so its mock engine can be inspected afterwards.
    let worker = cluster::start(&cfg, Roles::Worker("w1".into()))
        .await
        .unwrap();
    let mock = worker.workers[0].mock.clone().unwrap();

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for c in 0..16 {
        let api = api.clone();
        let acked = acked.clone();
        clients.push(tokio::spawn(async move {
            let client = poseidon::http::HttpClient::new(Duration::from_secs(2));
            for i in 0.. {
                let body =
                    serde_json::to_vec(&json!({"name": format!("c{c}-{i}"), "image": "busybox"}))
                        .unwrap();
                match client
                    .send(
                        hyper::Method::POST,
                        &format!("{}/tasks", api.base),
                        Some(body),
                    )
                    .await
                {
                    Ok(r) if r.status == 201 => {
                        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_string());
                    }
                    Ok(r) => panic!(
                        "unexpected answer {}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ),
                    Err(_) => return, // the manager is gone
                }
            }
        }));
    }
    wait_for("200 acknowledged submissions", WAIT, || async {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    manager.0.kill().unwrap(); // SIGKILL
    manager.0.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200);

    let _manager = spawn(&["manager", "-c", &file_s], dir.path());
    healthy(&api).await;
    for id in &acked {
        let (st, t) = api.get(&format!("/tasks/{id}")).await;
        assert_eq!(
            st, 200,
            "acknowledged task {id} is known after the restart: {t}"
        );
    }
    let known = api.ok("/tasks").await.as_array().unwrap().len();
    let start = std::time::Instant::now();
    loop {
        let all = api.ok("/tasks").await;
        let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
        for t in all.as_array().unwrap() {
            *by_state
                .entry(t["state"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        if by_state.keys().all(|s| s == "running") {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let stuck: Vec<_> = all
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["state"] != "running")
                .take(3)
                .collect();
            let on_worker: Vec<_> = stuck
                .iter()
                .map(|t| {
                    worker.workers[0]
                        .worker
                        .task(t["id"].as_str().unwrap().parse().unwrap())
                })
                .collect();
            panic!("not every task runs after 60 s: {by_state:?}; for example {stuck:#?}; the worker has {on_worker:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The restart moved nothing: every task is still on its first placement.
    let all = api.ok("/tasks").await;
    for t in all.as_array().unwrap() {
        assert_eq!(
            (t["node"].as_str(), t["generation"].as_u64()),
            (Some("w1"), Some(1)),
            "{t}"
        );
    }
    // One container per task, no more: nothing was started twice.
    let mut per_task: BTreeMap<String, usize> = BTreeMap::new();
    for c in mock.containers() {
        *per_task
            .entry(c.labels["io.poseidon.task"].clone())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_task.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "started twice: {twice:?}");
    assert_eq!(per_task.len(), known, "every known task has its container");
    let ids: BTreeSet<&String> = per_task.keys().collect();
    for id in &acked {
        assert!(ids.contains(id), "acknowledged task {id} runs");
    }
    eprintln!(
        "{} acknowledged before the kill, {known} known after, all running once",
        acked.len()
    );
    worker.stop().await;
}

#[test]
fn cli_errors_are_one_line_with_exit_codes() {
    // Usage errors: 2.
    let (code, _, err) = cli(&["frobnicate"], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(&["-c", "/nonexistent/cluster.toml"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/cluster.toml"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[manager]\nscheduler = \"fastest\"\n").unwrap();
    let (code, _, err) = cli(&["-c", bad.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml")
            && err.contains("scheduler")
            && err.contains("round-robin")
            && err.contains("epvm"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // An unreachable manager: 1, one line, naming it.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    for args in [
        vec!["status"],
        vec!["node"],
        vec!["run", "--image", "busybox", "-d"],
    ] {
        let (code, _, err) = cli(&args, &[("POSEIDON_MANAGER", &dead)]);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("127.0.0.1"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_runs_lists_and_stops_tasks_on_a_mock_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::localize(
        "[manager]\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\n",
        dir.path(),
        false,
    );
    let run = common::start(&cfg).await;
    let url = run.manager_url().unwrap();
    // The image must be pulled first, and creating takes a moment: `run` shows the pull.
    let mock = run.workers[0].mock.clone().unwrap();
    mock.remove_image("busybox:latest");
    mock.set_delay(
        poseidon_runtimes::mock::Op::Create,
        Duration::from_millis(500),
    );
    let env = [("POSEIDON_MANAGER", url.as_str())];
    let (code, out, err) = tokio::task::spawn_blocking({
        let env = env.map(|(a, b)| (a.to_string(), b.to_string()));
        move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            cli(
                &[
                    "run", "--image", "busybox", "--name", "hello", "-p", "8080:80",
                ],
                &env,
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("stored")
            && out.contains("placed on w1")
            && out.contains("pulling")
            && out.contains("running")
            && out.contains("8080->80/tcp"),
        "{out}"
    );
    let id = out.split_whitespace().nth(1).unwrap().to_string();

    // `run -f` takes a task file, here in the Go original's TaskEvent format.
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go.json");
    std::fs::write(
        &go,
        r#"{"ID": "6f1d1a7e-5555-4000-8000-0000000000ee", "State": 0, "Task": {"ID": "6f1d1a7e-5555-4000-8000-000000000001", "Name": "go-task", "Image": "busybox"}}"#,
    )
    .unwrap();
    let (code, out, err) = cli(&["run", "-f", go.to_str().unwrap(), "-d"], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("6f1d1a7e-5555-4000-8000-000000000001"),
        "{out}"
    );
    Api::new(url.clone())
        .wait_state("6f1d1a7e-5555-4000-8000-000000000001", "running", WAIT)
        .await;
    let (code, _, err) = cli(&["run", "-f", go.to_str().unwrap(), "-d"], &env);
    assert_eq!(code, 1, "the manager refuses a duplicate: {err}");
    assert!(err.contains("409") || err.contains("already"), "{err}");

    let (code, out, err) = cli(&["status", "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v.as_array().unwrap().iter().any(|t| t["id"] == id.as_str()),
        "{v}"
    );
    let (code, out, _) = cli(&["status"], &env);
    assert_eq!(code, 0);
    assert!(out.contains("hello") && out.contains("running"), "{out}");
    let (code, out, _) = cli(&["node"], &env);
    assert_eq!(code, 0);
    assert!(out.contains("w1") && out.contains("up"), "{out}");
    // A reference that matches nothing is a failed lookup (exit 1), like a 404.
    let (code, _, err) = cli(&["status", "not-an-id"], &env);
    assert_eq!(code, 1, "nothing matches: {err}");
    assert!(err.contains("not-an-id"), "{err}");
    // A task name and a unique id prefix both resolve.
    let (code, out, err) = cli(&["status", "hello"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    let (code, out, err) = cli(&["status", "6f1d1a7e-5555"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("go-task"), "{out}");
    // Two tasks named alike: the name is ambiguous, a usage error listing both ids.
    let (code, out, err) = cli(
        &["run", "--image", "busybox", "--name", "hello", "-d"],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let second = out.trim().to_string();
    let (code, _, err) = cli(&["status", "hello"], &env);
    assert_eq!(code, 2, "an ambiguous name is a usage error: {err}");
    assert!(err.contains(&id) && err.contains(&second), "{err}");
    let (code, out, err) = cli(&["--version"], &env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("poseidon {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, err) = cli(&["version"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("client:  poseidon") && out.contains("manager: poseidon"),
        "{out}"
    );
    let (code, out, err) = cli(&["stop", &id[..8]], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&id), "{out}");
    Api::new(url.clone())
        .wait_state(&id, "completed", WAIT)
        .await;
    run.stop().await;
}

/// Runs `poseidon [format args] manager -c FILE` with `RUST_LOG=rust_log` until it serves, sends it
/// one request that is refused before routing (a debug event), stops it with SIGTERM and returns its
/// stderr.
async fn manager_stderr(format_args: &[&str], rust_log: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "[manager]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}/manager\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut args: Vec<&str> = format_args.to_vec();
    args.extend(["manager", "-c", file.to_str().unwrap()]);
    let mut cmd = Command::new(BIN);
    cmd.args(&args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    let child = cmd.spawn().unwrap();
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    healthy(&api).await;
    // Headers only, declaring 2 MiB: the server answers 413 before reading a byte of the body
    // (sending the body too could meet a closed connection instead of the answer).
    let status = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.write_all(b"POST /tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
            .unwrap();
        let mut answer = [0u8; 12];
        conn.read_exact(&mut answer).unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(status, "HTTP/1.1 413");
    terminate(child.id());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "a clean stop after SIGTERM");
    String::from_utf8(out.stderr).unwrap()
}

/// Sends SIGTERM through the `kill` command, so that the test needs no `unsafe`.
fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_rust_log_filters_them() {
    let stderr = manager_stderr(&["--log-format", "json"], Some("debug")).await;
    let mut levels = BTreeSet::new();
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("not a JSON object ({e}): {line}\n--- all of stderr:\n{stderr}")
        });
        let level = v["level"]
            .as_str()
            .unwrap_or_else(|| panic!("no level: {line}"));
        let message = v["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fields.message: {line}"));
        levels.insert(level.to_string());
        messages.push((message.to_string(), v["fields"].clone()));
    }
    let (_, listening) = messages
        .iter()
        .find(|(m, _)| m == "manager listening")
        .unwrap_or_else(|| panic!("no start-up line in:\n{stderr}"));
    assert!(
        listening["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{listening}"
    );
    assert_eq!(listening["scheduler"], "epvm", "{listening}");
    assert!(
        listening["data_dir"]
            .as_str()
            .unwrap()
            .ends_with("/manager"),
        "{listening}"
    );
    assert!(
        messages
            .iter()
            .any(|(m, f)| m == "refused a request" && f["status"] == 413),
        "the refused request is logged at debug:\n{stderr}"
    );
    assert!(
        levels.contains("DEBUG") && levels.contains("INFO"),
        "{levels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_are_structured_lines_at_info_by_default() {
    let stderr = manager_stderr(&[], None).await;
    let listening = stderr
        .lines()
        .find(|l| l.contains("manager listening"))
        .unwrap_or_else(|| panic!("no start-up line in:\n{stderr}"));
    // `<RFC 3339 time>  INFO poseidon::cluster: manager listening url=http://... scheduler=epvm ...`
    let (time, rest) = listening.split_once(' ').unwrap();
    assert!(humantime_like(time), "a timestamp first: {listening}");
    assert!(
        rest.trim_start()
            .starts_with("INFO poseidon::cluster: manager listening url=http://127.0.0.1:"),
        "{listening}"
    );
    assert!(listening.contains(" scheduler=epvm "), "{listening}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a pipe:\n{stderr}"
    );
    assert!(
        !stderr.contains("DEBUG"),
        "the default filter is info:\n{stderr}"
    );
    assert!(stderr.contains("shutting down"), "{stderr}");
}

/// `2026-11-29T23:10:00.123456Z`: a date, a `T`, a time and a `Z`.
fn humantime_like(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && text.ends_with('Z')
}
