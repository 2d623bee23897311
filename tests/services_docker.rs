//! A service on the real Docker Engine: three containers of the busybox test image, one killed
//! with `docker kill` and replaced, then a rolling update from one command to another with
//! `max_parallel = 1`, sampled every 50 ms. Under `CI=true` an unreachable engine fails the test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{localize, start, wait_for, Api};
use hyper::Method;
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};
use poseidon_runtimes::{ContainerStatus, Runtime};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn body(seconds: u64) -> Value {
    json!({
        "name": "dweb",
        "count": 3,
        "task": {
            "image": TEST_IMAGE,
            "cmd": ["sleep", seconds.to_string()],
            "health_check": {"type": "exec", "cmd": ["sh", "-c", "true"], "interval": "200ms", "retries": 1}
        },
        "update": {"max_parallel": 1, "min_healthy": "500ms", "healthy_deadline": "60s", "auto_revert": true}
    })
}

/// Running, healthy copies of any version (what a client of the endpoints would find).
async fn healthy_any(api: &Api) -> usize {
    api.ok("/tasks?service=dweb")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "running" && t["desired"] == "run" && t["health"] == "healthy")
        .count()
}

async fn settled(api: &Api, version: u64) -> Value {
    wait_for(
        &format!("dweb version {version} to run 3 healthy copies"),
        WAIT,
        || async {
            let s = api.ok("/services/dweb").await;
            let live_old = s["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| {
                    t["desired"] == "run" && t["state"] == "running" && t["version"] != version
                })
                .count();
            (s["version"] == version
                && s["state"] == "running"
                && s["healthy"] == 3
                && live_old == 0)
                .then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_on_docker_replaces_a_killed_container_and_rolls_to_a_new_command() {
    let Some(rt) = docker_or_skip(
        "a_service_on_docker_replaces_a_killed_container_and_rolls_to_a_new_command",
    )
    .await
    else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = format!("svc-{}", std::process::id());
    let _cleanup = common::NodeContainers(node.clone());
    let cfg = localize(
        &format!(
            "[manager]\n[[worker]]\nname = \"{node}\"\nruntime = \"docker\"\nstop_grace = \"1s\"\nheartbeat_interval = \"200ms\"\n"
        ),
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let running = || async {
        rt.list(&format!("io.poseidon.node={node}"))
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.status == ContainerStatus::Running)
            .collect::<Vec<_>>()
    };

    let started = Instant::now();
    let (status, v) = api.post("/services", &body(3600)).await;
    assert_eq!(status, 201, "{v}");
    let s = settled(&api, 1).await;
    eprintln!("3 copies healthy on docker in {:?}", started.elapsed());
    assert_eq!(running().await.len(), 3);

    // docker kill of one copy: a new copy runs in its place.
    let victim = s["tasks"][0].clone();
    let cid = victim["container_id"].as_str().unwrap().to_string();
    let killed = Instant::now();
    let out = std::process::Command::new("docker")
        .args(["kill", &cid])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker kill: {out:?}");
    wait_for("a replacement to run", WAIT, || async {
        let s = api.ok("/services/dweb").await;
        let fresh = s["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["id"] != victim["id"] && t["state"] == "running" && t["desired"] == "run")
            .count();
        (fresh == 3).then_some(())
    })
    .await;
    let replaced = killed.elapsed();
    eprintln!("killed copy replaced (a new one running) in {replaced:?}");
    assert!(
        replaced < Duration::from_secs(5),
        "replacement took {replaced:?}"
    );
    settled(&api, 1).await;

    let (status, v) = api
        .raw(
            Method::PUT,
            "/services/dweb",
            Some(serde_json::to_vec(&body(7200)).unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let rolled = Instant::now();
    let mut samples = Vec::new();
    loop {
        samples.push(healthy_any(&api).await);
        let s = api.ok("/services/dweb").await;
        if s["state"] == "running" && s["healthy"] == 3 {
            break;
        }
        assert!(rolled.elapsed() < WAIT, "the update did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = settled(&api, 2).await;
    eprintln!(
        "rolled 3 copies in {:?}; {} samples, lowest healthy {}",
        rolled.elapsed(),
        samples.len(),
        samples.iter().min().unwrap()
    );
    assert!(
        samples.iter().all(|n| *n >= 2),
        "healthy fell below count - 1: {samples:?}"
    );
    for t in s["tasks"].as_array().unwrap() {
        if t["desired"] == "run" && t["state"] == "running" {
            assert_eq!(t["spec"]["cmd"], json!(["sleep", "7200"]), "{t}");
        }
    }
    // On the engine: three running containers, each of a version 2 task.
    let now_running = running().await;
    assert_eq!(now_running.len(), 3);
    let v2: Vec<String> = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["version"] == 2 && t["state"] == "running")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    for c in &now_running {
        assert!(v2.contains(&c.labels["io.poseidon.task"]), "{c:?}");
    }
    let (status, _) = api.delete("/services/dweb").await;
    assert_eq!(status, 200);
    wait_for("the service's containers to be gone", WAIT, || async {
        running().await.is_empty().then_some(())
    })
    .await;
    run.stop().await;
}
