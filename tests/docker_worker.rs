//! Tasks on the real Docker Engine: exit codes, logs, a published port reached from the host, a stop
//! that removes the container, and a worker binary killed with SIGKILL that adopts its container.
//! Under `CI=true` an unreachable engine fails these tests; elsewhere they say loudly they skipped.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE, TEST_PAGE};
use poseidon_runtimes::Runtime;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn label_count(rt: &dyn Runtime, task: &str) -> usize {
    rt.list(&format!("io.poseidon.task={task}"))
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_exit_serve_and_stop_on_real_docker() {
    let Some(rt) = docker_or_skip("tasks_run_exit_serve_and_stop_on_real_docker").await else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = format!("dk-{}", std::process::id());
    let _cleanup = common::NodeContainers(node.clone());
    let cfg = localize(
        &format!(
            "[manager]\n[[worker]]\nname = \"{node}\"\nruntime = \"docker\"\nstop_grace = \"2s\"\n"
        ),
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());

    let job = api
        .submit(&json!({"name": "job", "image": TEST_IMAGE, "cmd": ["sh", "-c", "echo out-line; echo err-line >&2; exit 3"]}))
        .await;
    let t = api.wait_state(&job, "failed", WAIT).await;
    assert_eq!(t["exit_code"], 3, "{t}");
    let logs = api.ok(&format!("/tasks/{job}/logs")).await;
    assert_eq!(logs["stdout"], "out-line\n", "{logs}");
    assert_eq!(logs["stderr"], "err-line\n", "{logs}");

    let web = api
        .submit(&json!({"name": "web", "image": TEST_IMAGE, "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"], "ports": ["8080"]}))
        .await;
    let t = api.wait_state(&web, "running", WAIT).await;
    let host_port = t["host_ports"][0]["host_port"].as_u64().unwrap();
    assert_eq!(t["host_ports"].as_array().unwrap().len(), 1, "{t}");
    let page = wait_for("the page to be served", WAIT, || async {
        let out = tokio::process::Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{host_port}/")])
            .output()
            .await
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    assert!(page.contains(TEST_PAGE), "{page}");
    assert_eq!(label_count(&rt, &web).await, 1);

    let (st, v) = api.delete(&format!("/tasks/{web}")).await;
    assert_eq!(st, 200, "{v}");
    let t = api.wait_state(&web, "completed", WAIT).await;
    assert_eq!(t["reason"], "stopped");
    assert_eq!(
        label_count(&rt, &web).await,
        0,
        "the stopped task's container is gone from the engine"
    );

    let (st, _) = api.delete(&format!("/tasks/{job}?purge=true")).await;
    assert_eq!(st, 200);
    // The purge reaches the worker in the background; the finished container goes with it.
    wait_for("the purged task's container to go", WAIT, || async {
        (label_count(&rt, &job).await == 0).then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_with_sigkill_adopts_its_container_on_restart() {
    let Some(rt) =
        docker_or_skip("a_worker_killed_with_sigkill_adopts_its_container_on_restart").await
    else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let node = format!("kill-{}", std::process::id());
    let _cleanup = common::NodeContainers(node.clone());
    let file = dir.path().join("worker.toml");
    std::fs::write(
        &file,
        format!(
            "[[worker]]\nname = \"{node}\"\nlisten = \"127.0.0.1:{port}\"\nruntime = \"docker\"\ndata_dir = \"{}/w\"\nstop_grace = \"1s\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_poseidon"))
            .args(["worker", "-c", file.to_str().unwrap(), "--name", &node])
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    let up = || async {
        wait_for("the worker to serve", WAIT, || async {
            poseidon::http::HttpClient::new(Duration::from_millis(500))
                .get::<serde_json::Value>(&format!("http://127.0.0.1:{port}/health"))
                .await
                .ok()
        })
        .await
    };
    let mut child = spawn();
    up().await;
    let id = api
        .submit(&json!({"name": "sleeper", "image": TEST_IMAGE, "cmd": ["sleep", "600"]}))
        .await;
    let before = api.wait_state(&id, "running", WAIT).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut child = spawn();
    up().await;
    let after = api.wait_state(&id, "running", WAIT).await;
    assert_eq!(
        after["container_id"], before["container_id"],
        "adopted, not recreated"
    );
    assert_eq!(label_count(&rt, &id).await, 1, "no duplicate, no orphan");

    // SIGTERM: a clean exit, the container keeps running, and the next start adopts it again.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    assert!(status.success(), "a graceful stop exits 0: {status}");
    let cid = after["container_id"].as_str().unwrap();
    assert_eq!(
        rt.inspect(cid).await.unwrap().status,
        poseidon_runtimes::ContainerStatus::Running
    );
    let mut child = spawn();
    up().await;
    assert_eq!(
        api.wait_state(&id, "running", WAIT).await["container_id"],
        cid
    );

    let (st, _) = api.delete(&format!("/tasks/{id}")).await;
    assert_eq!(st, 200);
    api.wait_state(&id, "completed", WAIT).await;
    assert_eq!(label_count(&rt, &id).await, 0);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_checks_and_a_container_killed_from_outside_on_real_docker() {
    let Some(rt) =
        docker_or_skip("http_health_checks_and_a_container_killed_from_outside_on_real_docker")
            .await
    else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = format!("hc-{}", std::process::id());
    let _cleanup = common::NodeContainers(node.clone());
    let cfg = localize(
        &format!(
            "[manager]\n[[worker]]\nname = \"{node}\"\nruntime = \"docker\"\nstop_grace = \"1s\"\n"
        ),
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let httpd = json!(["httpd", "-f", "-p", "8080", "-h", "/www"]);
    let healthy = api
        .submit(&json!({"name": "healthy", "image": TEST_IMAGE, "cmd": httpd, "ports": ["8080"],
            "health_check": {"type": "http", "port": 8080, "path": "/", "interval": "200ms", "timeout": "1s"}}))
        .await;
    let sick = api
        .submit(&json!({"name": "sick", "image": TEST_IMAGE, "cmd": httpd, "ports": ["8080"],
            "health_check": {"type": "http", "port": 8080, "path": "/missing", "interval": "200ms", "timeout": "1s", "retries": 2},
            "restart_policy": {"policy": "on-failure", "max_restarts": 1, "backoff": "100ms"}}))
        .await;
    let tcp = api
        .submit(
            &json!({"name": "tcp", "image": TEST_IMAGE, "cmd": httpd, "ports": ["8080"],
            "health_check": {"type": "tcp", "port": 8080, "interval": "200ms"}}),
        )
        .await;
    for id in [&healthy, &tcp] {
        wait_for("a healthy task", WAIT, || async {
            (api.ok(&format!("/tasks/{id}")).await["health"] == "healthy").then_some(())
        })
        .await;
    }
    let t = wait_for(
        "the sick task to be restarted once and fail",
        WAIT,
        || async {
            let t = api.ok(&format!("/tasks/{sick}")).await;
            (t["state"] == "failed" && t["restart_count"] == 1).then_some(t)
        },
    )
    .await;
    assert!(
        t["reason"].as_str().unwrap().contains("404"),
        "the probe's answer is kept: {t}"
    );
    assert_eq!(
        label_count(&rt, &sick).await,
        1,
        "the old container was removed before the restart"
    );

    // Killed from outside: the worker sees the exit at once and applies the policy.
    let restart = api
        .submit(
            &json!({"name": "victim", "image": TEST_IMAGE, "cmd": ["sleep", "600"],
            "restart_policy": {"policy": "on-failure", "backoff": "100ms"}}),
        )
        .await;
    let first = api.wait_state(&restart, "running", WAIT).await["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    rt.kill(&first).await.unwrap();
    let t = wait_for("a new container after the kill", WAIT, || async {
        let t = api.ok(&format!("/tasks/{restart}")).await;
        (t["state"] == "running" && t["container_id"] != first.as_str()).then_some(t)
    })
    .await;
    assert_eq!(t["restart_count"], 1);
    assert!(
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "exited with code 137; restarting in 0.1 s"),
        "{t}"
    );

    for id in [&healthy, &tcp, &restart] {
        api.delete(&format!("/tasks/{id}")).await;
        api.wait_state(id, "completed", WAIT).await;
    }
    run.stop().await;
}
