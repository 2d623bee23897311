//! Logs (follow, previous, bad queries), exec and both `/metrics` as users drive them, through the
//! `poseidon` binary and HTTP, on a mock cluster: a followed log ends on both hops when the
//! follower hangs up (the mock counts open log streams), the previous run's logs survive a
//! restart, exec answers the command's outputs and exit code.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_for, Api};
use poseidon_runtimes::{ExecOutput, OutputStream};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
const WAIT: Duration = Duration::from_secs(20);

fn cli(args: &[&str], url: &str) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("POSEIDON_MANAGER", url)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cluster(dir: &std::path::Path) -> poseidon::cluster::Running {
    let cfg = common::localize(
        "[manager]\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\n",
        dir,
        false,
    );
    common::start(&cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_through_the_manager_and_a_hang_up_closes_the_engine_stream() {
    let dir = tempfile::tempdir().unwrap();
    let run = cluster(dir.path()).await;
    let url = run.manager_url().unwrap();
    let mock = run.workers[0].mock.clone().unwrap();
    let api = Api::new(url.clone());
    let id = api
        .submit(&json!({"name": "chatty", "image": "busybox"}))
        .await;
    let t = api.wait_state(&id, "running", WAIT).await;
    let cid = t["container_id"].as_str().unwrap().to_string();

    let mut child = Command::new(BIN)
        .args(["logs", "-f", &id])
        .env("POSEIDON_MANAGER", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(WAIT).unwrap();
    assert!(first.starts_with("mock logs for"), "{first}");
    assert_eq!(mock.open_log_streams(), 1);
    // Output written after the follow began arrives while it runs.
    mock.write_log(&cid, OutputStream::Stdout, "written later\n");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), "written later");

    // The follower hangs up: the manager's relay, the worker's stream and the engine's stream
    // all end (none left reading for nobody).
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for("the engine's log stream to close", WAIT, || async {
        (mock.open_log_streams() == 0).then_some(())
    })
    .await;

    // A follow ends by itself when the task stops: the CLI exits 0.
    let follower = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || cli(&["logs", "-f", &id], &url)
    });
    wait_for("the second follow", WAIT, || async {
        (mock.open_log_streams() == 1).then_some(())
    })
    .await;
    api.delete(&format!("/tasks/{id}")).await;
    let (code, out, err) = tokio::time::timeout(WAIT, follower).await.unwrap().unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("written later"), "{out}");

    // Bad queries are 400s with a message, never a stream.
    for q in [
        "since=yesterday",
        "previous=true&follow=true",
        "follow=maybe",
        "tail=-1",
    ] {
        let (status, body) = api.get(&format!("/tasks/{id}/logs?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body["error"].is_string(), "{q}: {body}");
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_runs_logs_survive_a_restart_and_the_metrics_count_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = cluster(dir.path()).await;
    let url = run.manager_url().unwrap();
    let mock = run.workers[0].mock.clone().unwrap();
    let api = Api::new(url.clone());
    mock.exit_after("crashy:1", Duration::from_millis(300), 1);
    let id = api
        .submit(&json!({"name": "crashy", "image": "crashy:1",
            "restart_policy": {"policy": "on-failure", "max_restarts": 1, "backoff": "50ms"}}))
        .await;
    // Failed for good: after its one restart.
    wait_for("the restarted run to fail", WAIT, || async {
        let (_, t) = api.get(&format!("/tasks/{id}")).await;
        (t["state"] == "failed" && t["restart_count"] == 1).then_some(())
    })
    .await;

    // Each container's mock output names the container; the restart's name ends in -r1.
    let (code, current, err) = cli(&["logs", &id], &url);
    assert_eq!(code, 0, "{err}");
    assert!(current.contains("-r1"), "{current}");
    let (code, previous, err) = cli(&["logs", "--previous", &id], &url);
    assert_eq!(code, 0, "{err}");
    assert!(
        previous.starts_with("mock logs for") && !previous.contains("-r1"),
        "{previous}"
    );
    let (code, _, err) = cli(&["logs", "--previous", "-f", &id], &url);
    assert_eq!(code, 2, "{err}");

    // A task that never restarted has no previous run: a conflict, said plainly.
    let calm = api
        .submit(&json!({"name": "calm", "image": "busybox"}))
        .await;
    api.wait_state(&calm, "running", WAIT).await;
    let (status, body) = api.get(&format!("/tasks/{calm}/logs?previous=true")).await;
    assert_eq!(status, 409, "{body}");

    // The worker's metrics: tasks by state, the restart, the create-to-start histogram.
    let worker = Api::new(format!("http://{}", run.workers[0].addr));
    let text = reqwest_text(&worker.base, "/metrics").await;
    assert!(text.contains("poseidon_worker_restarts_total 1"), "{text}");
    assert!(
        text.contains("poseidon_worker_tasks{state=\"failed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("poseidon_worker_tasks{state=\"running\"} 1"),
        "{text}"
    );
    // Three containers started: the crashing task's two runs and the calm one.
    assert!(
        text.contains("poseidon_worker_container_start_seconds_count 3"),
        "{text}"
    );
    // The manager's histograms: two tasks ran (the restart is not a second first run).
    let text = reqwest_text(&url, "/metrics").await;
    for line in [
        "poseidon_submit_to_running_seconds_count 2",
        "poseidon_submit_to_running_seconds_bucket{le=\"+Inf\"} 2",
        "poseidon_placement_seconds_count 2",
        "poseidon_dispatch_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
    run.stop().await;
}

async fn reqwest_text(base: &str, path: &str) -> String {
    let r = poseidon::http::HttpClient::new(WAIT)
        .send(hyper::Method::GET, &format!("{base}{path}"), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_prints_the_outputs_and_exits_with_the_commands_code() {
    let dir = tempfile::tempdir().unwrap();
    let run = cluster(dir.path()).await;
    let url = run.manager_url().unwrap();
    let mock = run.workers[0].mock.clone().unwrap();
    let api = Api::new(url.clone());
    mock.set_exec_result("tool:1", ExecOutput::new(3, "to stdout\n", "to stderr\n"));
    let id = api
        .submit(&json!({"name": "tool", "image": "tool:1"}))
        .await;
    api.wait_state(&id, "running", WAIT).await;

    let (code, out, err) = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || cli(&["exec", &id, "--", "sh", "-c", "exit 3"], &url)
    })
    .await
    .unwrap();
    assert_eq!(code, 3, "{out}{err}");
    assert_eq!(out, "to stdout\n");
    assert!(err.starts_with("to stderr\n"), "{err}");
    // The command reached the engine as given.
    let calls = mock.calls_of(poseidon_runtimes::mock::Op::Exec);
    assert!(format!("{calls:?}").contains("\"exit 3\""), "{calls:?}");

    // Over HTTP: the three fields; bad bodies are 400s.
    let (status, body) = api
        .post(
            &format!("/tasks/{id}/exec"),
            &json!({"cmd": ["true"], "timeout": "5s"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"stdout": "to stdout\n", "stderr": "to stderr\n", "exit_code": 3})
    );
    for bad in [
        json!({"cmd": []}),
        json!({"cmd": "ls"}),
        json!({"cmd": ["ls"], "timeout": "2h"}),
    ] {
        let (status, body) = api.post(&format!("/tasks/{id}/exec"), &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (code, _, err) = cli(&["exec", &id], &url);
    assert_eq!(code, 2, "no command is a usage error: {err}");

    // A stopped task cannot run commands: 409, exit 1.
    api.delete(&format!("/tasks/{id}")).await;
    api.wait_state(&id, "completed", WAIT).await;
    let (code, _, err) = cli(&["exec", &id, "--", "true"], &url);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("409"), "{err}");
    run.stop().await;
}
