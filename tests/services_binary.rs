//! Services with the real `poseidon` binary: the manager killed with SIGKILL in the middle of a
//! rolling update goes on from where it was after the restart and keeps every version; the
//! README's services block run as written with the binary as `poseidon`.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/readme.rs"]
mod readme;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use hyper::Method;
use poseidon::cluster::{self, Roles};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

const CLUSTER: &str = r#"
[manager]
heartbeat_ttl = "2s"

[[worker]]
name = "s1"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = { cpus = 64.0, memory = "64g" }

[[worker]]
name = "s2"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = { cpus = 64.0, memory = "64g" }
"#;

async fn put(api: &Api, path: &str, body: &Value) -> (u16, Value) {
    api.raw(Method::PUT, path, Some(serde_json::to_vec(body).unwrap()))
        .await
}

/// Waits until the service is `state` with `healthy` copies of the current version and no live
/// task of another version; returns the service.
async fn settled(api: &Api, state: &str, healthy: u64) -> Value {
    wait_for(
        &format!("web to be {state} with {healthy} healthy"),
        WAIT,
        || async {
            let s = api.ok("/services/web").await;
            let version = s["version"].as_u64().unwrap();
            let others = live(&s)
                .iter()
                .filter(|t| t["version"].as_u64() != Some(version))
                .count();
            (s["state"] == state && s["healthy"].as_u64() == Some(healthy) && others == 0)
                .then_some(s)
        },
    )
    .await
}

/// The tasks of a service view that want to run and have not ended.
fn live(s: &Value) -> Vec<Value> {
    s["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| {
            t["desired"] == "run"
                && (t["state"] == "running" || t["state"] == "pending" || t["state"] == "scheduled")
        })
        .collect()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_manager(file: &str, cwd: &std::path::Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_poseidon"))
            .args(["manager", "-c", file])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

async fn serving(api: &Api) {
    wait_for("the manager to serve", WAIT, || async {
        poseidon::http::HttpClient::new(Duration::from_millis(500))
            .get::<Value>(&format!("{}/health", api.base))
            .await
            .ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_killed_mid_update_goes_on_from_where_it_was_and_keeps_every_version() {
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
name = "k1"
listen = "127.0.0.1:0"
runtime = "mock"
data_dir = "{data}/k1"
heartbeat_interval = "200ms"
capacity = {{ cpus = 64.0, memory = "64g" }}
"#,
            data = dir.path().display()
        ),
    )
    .unwrap();
    let cfg = poseidon::config::load(&file).unwrap();
    let file_s = file.to_str().unwrap().to_string();
    let mut manager = spawn_manager(&file_s, dir.path());
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    serving(&api).await;
    let worker = cluster::start(&cfg, Roles::Worker("k1".into()))
        .await
        .unwrap();
    let mock = worker.workers[0].mock.clone().unwrap();
    // Without a health check, each new copy counts once it has run min_healthy: slow enough to
    // kill the manager between two steps of the update.
    let body = |image: &str| {
        json!({"name": "web", "count": 4, "task": {"image": image},
               "update": {"max_parallel": 1, "min_healthy": "700ms", "healthy_deadline": "60s"}})
    };
    assert_eq!(api.post("/services", &body("app:1")).await.0, 201);
    settled(&api, "running", 4).await;
    assert_eq!(put(&api, "/services/web", &body("app:2")).await.0, 200);
    let before = wait_for("the update to be half-way", WAIT, || async {
        let s = api.ok("/services/web").await;
        let tasks = live(&s);
        let new = tasks
            .iter()
            .filter(|t| t["version"] == 2 && t["state"] == "running")
            .count();
        let old = tasks.iter().filter(|t| t["version"] == 1).count();
        (new >= 1 && old >= 2).then_some(s)
    })
    .await;
    manager.0.kill().unwrap(); // SIGKILL
    manager.0.wait().unwrap();
    let new_before: Vec<Value> = live(&before)
        .into_iter()
        .filter(|t| t["version"] == 2 && t["state"] == "running")
        .collect();

    let _manager = spawn_manager(&file_s, dir.path());
    serving(&api).await;
    let s = api.ok("/services/web").await;
    let versions: Vec<u64> = s["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (versions, s["version"].as_u64()),
        (vec![1, 2], Some(2)),
        "{s}"
    );
    let s = settled(&api, "running", 4).await;
    let after = live(&s);
    for t in &new_before {
        let same = after.iter().find(|a| a["id"] == t["id"]);
        assert!(
            same.is_some_and(
                |a| a["container_id"] == t["container_id"] && a["generation"] == t["generation"]
            ),
            "a copy of version 2 made before the kill goes on running untouched: {t}"
        );
    }
    // No copy was made twice: exactly four copies of version 2 ever existed.
    let all = api.ok("/tasks?service=web").await;
    let v2 = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["version"] == 2)
        .count();
    assert_eq!(v2, 4, "{all}");
    let v2_containers = mock
        .containers()
        .iter()
        .filter(|c| c.image.starts_with("app:2"))
        .count();
    assert_eq!(v2_containers, 4);
    worker.stop().await;
}

/// The README's services block, read from README.md and run as written with the real binary as
/// `poseidon`, against a mock cluster whose manager `POSEIDON_MANAGER` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_services_block_runs_as_written() {
    let script = readme::block("services", "sh");
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let url = run.manager_url().unwrap();
    let (stdout, log) = tokio::task::block_in_place(|| {
        readme::run_script_with(
            &script,
            dir.path(),
            std::path::Path::new(env!("CARGO_BIN_EXE_poseidon"))
                .parent()
                .unwrap(),
            &[("POSEIDON_MANAGER", url.as_str())],
            120,
        )
    });
    assert!(
        stdout.contains("version 4: 3/3 healthy (running)"),
        "update shows progress to the end:\n{log}"
    );
    assert!(stdout.contains("service web purged"), "{log}");
    run.stop().await;
}
