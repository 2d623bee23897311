//! One test for each bug of the Go original listed in DESIGN.md section 6, on a mock cluster over
//! real HTTP, so that none of them comes back.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{localize, start, wait_for, Api};
use poseidon::cluster::{self, Roles};
use poseidon_runtimes::mock::{Call, Op};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);
const ONE: &str = "[manager]\nheartbeat_ttl = \"1s\"\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\nheartbeat_interval = \"200ms\"\n";

#[tokio::test]
async fn stop_stops_and_removes_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(ONE, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    let mock = run.workers[0].mock.clone().unwrap();
    let id = api.submit(&json!({"name": "s", "image": "busybox"})).await;
    let cid = api.wait_state(&id, "running", WAIT).await["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    api.delete(&format!("/tasks/{id}")).await;
    api.wait_state(&id, "completed", WAIT).await;
    assert!(
        mock.calls()
            .iter()
            .any(|c| matches!(c, Call::Stop(x, _) if *x == cid)),
        "stop was sent to the engine"
    );
    wait_for("the container to be removed", WAIT, || async {
        mock.container(&cid).is_none().then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test]
async fn a_restart_does_not_collide_with_the_old_container_name() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(ONE, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    let mock = run.workers[0].mock.clone().unwrap();
    mock.exit_after("flaky:1", Duration::from_millis(20), 1);
    let id = api
        .submit(&json!({"name": "flaky", "image": "flaky:1", "restart_policy": {"policy": "on-failure", "max_restarts": 2, "backoff": "100ms"}}))
        .await;
    let t = wait_for("two restarts", WAIT, || async {
        let t = api.ok(&format!("/tasks/{id}")).await;
        (t["state"] == "failed" && t["restart_count"] == 2).then_some(t)
    })
    .await;
    assert!(
        !t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("onflict")),
        "{t}"
    );
    assert_eq!(mock.count(Op::Create), 3, "three creates, none refused");
    run.stop().await;
}

#[tokio::test]
async fn an_exited_container_marks_its_task_failed_with_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(ONE, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    run.workers[0]
        .mock
        .as_ref()
        .unwrap()
        .exit_after("dies:1", Duration::from_millis(20), 42);
    let id = api
        .submit(&json!({"name": "dies", "image": "dies:1"}))
        .await;
    let t = api.wait_state(&id, "failed", WAIT).await;
    assert_eq!(t["exit_code"], 42);
    run.stop().await;
}

#[tokio::test]
async fn a_dead_worker_is_detected_its_tasks_rescheduled_and_the_manager_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\nheartbeat_ttl = \"1s\"\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\nlisten = \"127.0.0.1:0\"\nheartbeat_interval = \"200ms\"\n[[worker]]\nname = \"w2\"\nruntime = \"mock\"\nlisten = \"127.0.0.1:0\"\nheartbeat_interval = \"200ms\"\n",
        dir.path(),
        false,
    );
    let manager = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let url = manager.manager_url().unwrap();
    let mut wcfg = cfg.clone();
    for w in &mut wcfg.workers {
        w.manager = Some(url.clone());
    }
    let w1 = cluster::start(&wcfg, Roles::Worker("w1".into()))
        .await
        .unwrap();
    let api = Api::new(url);
    let id = api.submit(&json!({"name": "x", "image": "busybox"})).await;
    api.wait_state(&id, "running", WAIT).await;
    w1.stop().await; // dead: no heartbeats, its address refuses connections
    let w2 = cluster::start(&wcfg, Roles::Worker("w2".into()))
        .await
        .unwrap();
    // Submissions meanwhile hit the dead worker's address or wait; the manager keeps answering.
    let other = api.submit(&json!({"name": "y", "image": "busybox"})).await;
    let t = wait_for("the task to move to w2", WAIT, || async {
        let t = api.ok(&format!("/tasks/{id}")).await;
        (t["state"] == "running" && t["node"] == "w2").then_some(t)
    })
    .await;
    assert!(
        t["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap().contains("w1")),
        "the history says why: {t}"
    );
    assert_eq!(api.wait_state(&other, "running", WAIT).await["node"], "w2");
    assert_eq!(api.ok("/health").await["status"], "ok");
    w2.stop().await;
    manager.stop().await;
}

#[tokio::test]
async fn a_submission_runs_at_once_not_on_a_ten_second_tick() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(ONE, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    // The Go original's loops acted once every 10 s; the deadline here is a fifth of that.
    let started = Instant::now();
    let id = api
        .submit(&json!({"name": "fast", "image": "busybox"}))
        .await;
    wait_for("the task to run", Duration::from_secs(2), || async {
        (api.ok(&format!("/tasks/{id}")).await["state"] == "running").then_some(())
    })
    .await;
    eprintln!("running {:?} after submission", started.elapsed());
    run.stop().await;
}

#[tokio::test]
async fn node_to_task_maps_survive_a_manager_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(ONE, dir.path(), false);
    let manager = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let url = manager.manager_url().unwrap();
    let mut wcfg = cfg.clone();
    wcfg.workers[0].manager = Some(url.clone());
    let w1 = cluster::start(&wcfg, Roles::Worker("w1".into()))
        .await
        .unwrap();
    let api = Api::new(url.clone());
    let id = api
        .submit(&json!({"name": "kept", "image": "busybox", "cpus": 0.5}))
        .await;
    api.wait_state(&id, "running", WAIT).await;
    let addr = manager.manager.as_ref().unwrap().addr;
    manager.stop().await;
    // Start it again on the same address and data.
    let mut mcfg = cfg.clone();
    mcfg.manager.as_mut().unwrap().listen = addr;
    let manager = cluster::start(&mcfg, Roles::Manager).await.unwrap();
    let on_w1 = api.ok("/tasks?node=w1").await;
    assert_eq!(on_w1.as_array().unwrap().len(), 1, "{on_w1}");
    assert_eq!(on_w1[0]["id"], id.as_str());
    let nodes = api.ok("/nodes").await;
    assert_eq!(nodes[0]["tasks"], 1, "{nodes}");
    assert_eq!(nodes[0]["reserved_cpus"], 0.5, "{nodes}");
    w1.stop().await;
    manager.stop().await;
}

#[tokio::test]
async fn the_server_makes_ids_and_an_unknown_id_is_a_404_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(ONE, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    let (st, t) = api
        .post("/tasks", &json!({"name": "noid", "image": "busybox"}))
        .await;
    assert_eq!(st, 201);
    assert_eq!(t["id"].as_str().unwrap().len(), 36, "{t}");
    for path in [
        "/tasks/6f1d1a7e-0000-4000-8000-000000000000",
        "/tasks/6f1d1a7e-0000-4000-8000-000000000000/logs",
    ] {
        let (st, v) = api.get(path).await;
        assert_eq!(st, 404, "{path}: {v}");
    }
    let (st, _) = api
        .delete("/tasks/6f1d1a7e-0000-4000-8000-000000000000")
        .await;
    assert_eq!(st, 404);
    assert_eq!(api.ok("/health").await["status"], "ok");
    run.stop().await;
}
