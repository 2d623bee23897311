//! A manager and three workers in one process, on port 0, with `MockRuntime` and temporary RocksDB,
//! driven over real HTTP: placement per policy, stop, node stats, a worker that goes silent.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use poseidon::cluster::{self, Roles};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn three(scheduler: &str) -> String {
    format!(
        r#"
[manager]
scheduler = "{scheduler}"
heartbeat_ttl = "1s"

[[worker]]
name = "m1"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = {{ cpus = 2.0, memory = "4g" }}

[[worker]]
name = "m2"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = {{ cpus = 2.0, memory = "4g" }}

[[worker]]
name = "m3"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = {{ cpus = 4.0, memory = "8g" }}
"#
    )
}

async fn placed_on(api: &Api, id: &str) -> String {
    let t = api.wait_state(id, "running", WAIT).await;
    t["node"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn round_robin_cycles_over_the_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(&three("round-robin"), dir.path(), false);
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let mut nodes = Vec::new();
    for i in 0..6 {
        let id = api
            .submit(&json!({"name": format!("t{i}"), "image": "busybox", "cpus": 0.1}))
            .await;
        nodes.push(placed_on(&api, &id).await);
    }
    // Every window of three consecutive placements covers the three nodes once.
    for w in nodes.windows(3) {
        let mut s = w.to_vec();
        s.sort();
        assert_eq!(s, ["m1", "m2", "m3"], "placements {nodes:?}");
    }
    run.stop().await;
}

#[tokio::test]
async fn epvm_follows_the_marginal_cost_not_the_task_count() {
    // With n = 3 up nodes, a 1-core 1 GiB task costs (memory + job slots + cpu):
    //   m1, m2: (3^0.25 - 1) + (3^1 - 1) + (3^0.5 - 1)  = 0.3161 + 2 + 0.7321 = 3.0481
    //   m3:     (3^0.125 - 1) + (3^1 - 1) + (3^0.25 - 1) = 0.1472 + 2 + 0.3161 = 2.4633
    // so E-PVM sends it to m3, where RoundRobin (checked below, on a fresh cluster) sends it to m1.
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(&three("epvm"), dir.path(), false);
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let id = api
        .submit(&json!({"name": "big", "image": "busybox", "cpus": 1.0, "memory": "1g"}))
        .await;
    assert_eq!(placed_on(&api, &id).await, "m3");
    // A task too big for m1 and m2 can only go to m3; one too big for all stays Pending with reasons.
    let id = api
        .submit(&json!({"name": "huge", "image": "busybox", "cpus": 2.5, "memory": "1g"}))
        .await;
    assert_eq!(placed_on(&api, &id).await, "m3");
    let id = api
        .submit(&json!({"name": "absurd", "image": "busybox", "cpus": 64.0}))
        .await;
    let t = wait_for("a reason for the unplaceable task", WAIT, || async {
        let t = api.ok(&format!("/tasks/{id}")).await;
        t["reason"]
            .as_str()
            .filter(|r| r.contains("no node"))
            .map(|_| t.clone())
    })
    .await;
    assert_eq!(t["state"], "pending", "{t}");
    let reason = t["reason"].as_str().unwrap();
    for n in ["m1", "m2", "m3"] {
        assert!(reason.contains(n), "the reason names every node: {reason}");
    }
    run.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(&three("round-robin"), dir.path(), false);
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let id = api
        .submit(&json!({"name": "big", "image": "busybox", "cpus": 1.0, "memory": "1g"}))
        .await;
    assert_eq!(placed_on(&api, &id).await, "m1");
    run.stop().await;
}

#[tokio::test]
async fn stop_reaches_the_container_and_nodes_show_reservations_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(&three("epvm"), dir.path(), false);
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let id = api
        .submit(&json!({"name": "svc", "image": "busybox", "cpus": 1.5, "memory": "512m"}))
        .await;
    let t = api.wait_state(&id, "running", WAIT).await;
    let node = t["node"].as_str().unwrap().to_string();
    let cid = t["container_id"].as_str().unwrap().to_string();
    let w = run
        .workers
        .iter()
        .find(|w| w.worker.name() == node)
        .unwrap();
    let mock = w.mock.clone().unwrap();
    assert!(mock.container(&cid).is_some());

    let nodes = api.ok("/nodes").await;
    let by: BTreeMap<String, Value> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n.clone()))
        .collect();
    assert_eq!(by.len(), 3, "{nodes}");
    for (name, n) in &by {
        assert_eq!(n["state"], "up", "{name}: {n}");
        assert!(n["last_heartbeat_ms"].as_u64().unwrap() > 0, "{n}");
        assert!(
            n["stats"]["memory_total"].as_u64().unwrap() > 0,
            "live stats flow: {n}"
        );
    }
    assert_eq!(by[&node]["reserved_cpus"], 1.5, "{}", by[&node]);
    assert_eq!(by[&node]["reserved_memory"], 512u64 << 20);
    assert_eq!(by[&node]["tasks"], 1);

    let (st, v) = api.delete(&format!("/tasks/{id}")).await;
    assert_eq!(st, 200, "{v}");
    let t = api.wait_state(&id, "completed", WAIT).await;
    assert_eq!(t["reason"], "stopped");
    wait_for("the container to be removed", WAIT, || async {
        mock.container(&cid).is_none().then_some(())
    })
    .await;
    let n = wait_for("the reservation to be released", WAIT, || async {
        let nodes = api.ok("/nodes").await;
        let n = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node.as_str())
            .cloned()
            .unwrap();
        (n["reserved_cpus"] == 0.0).then_some(n)
    })
    .await;
    assert_eq!(n["tasks"], 0, "{n}");
    // Stopping a finished task again is an illegal transition: 409, and nothing changes.
    let (st, v) = api.delete(&format!("/tasks/{id}")).await;
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("completed"), "{v}");
    assert_eq!(api.ok(&format!("/tasks/{id}")).await["state"], "completed");
    let (st, v) = api.delete(&format!("/tasks/{id}?purge=true")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(api.get(&format!("/tasks/{id}")).await.0, 404);
    run.stop().await;
}

#[tokio::test]
async fn a_silent_worker_is_marked_down_and_its_tasks_run_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(&three("round-robin"), dir.path(), false);
    // The manager alone, then each worker with its own shutdown, so one can fall silent.
    let manager = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let url = manager.manager_url().unwrap();
    let mut wcfg = cfg.clone();
    for w in &mut wcfg.workers {
        w.manager = Some(url.clone());
    }
    let mut workers = Vec::new();
    for name in ["m1", "m2", "m3"] {
        workers.push(
            cluster::start(&wcfg, Roles::Worker(name.into()))
                .await
                .unwrap(),
        );
    }
    let api = Api::new(url);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            api.submit(&json!({"name": format!("t{i}"), "image": "busybox"}))
                .await,
        );
    }
    let mut on_m2 = Vec::new();
    for id in &ids {
        if placed_on(&api, id).await == "m2" {
            on_m2.push(id.clone());
        }
    }
    assert_eq!(on_m2.len(), 2);

    let m2 = workers.remove(1);
    m2.stop().await; // heartbeats stop; its (mock) containers keep running, as after a cut
    wait_for("m2 to be marked down", WAIT, || async {
        let nodes = api.ok("/nodes").await;
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "m2" && n["state"] == "down")
            .then_some(())
    })
    .await;
    for id in &on_m2 {
        let t = wait_for("the task to run elsewhere", WAIT, || async {
            let t = api.ok(&format!("/tasks/{id}")).await;
            (t["state"] == "running" && t["node"] != "m2").then_some(t)
        })
        .await;
        assert!(
            t["generation"].as_u64().unwrap() >= 2,
            "a new placement has a new generation: {t}"
        );
    }
    // Nothing lost, nothing doubled.
    let all = api.ok("/tasks").await;
    assert_eq!(all.as_array().unwrap().len(), 6);
    let running: usize = workers
        .iter()
        .map(|r| r.workers[0].mock.as_ref().unwrap().running_count())
        .sum();
    assert_eq!(
        running, 6,
        "the four that stayed and the two moved run on m1 and m3"
    );
    for r in workers {
        r.stop().await;
    }
    manager.stop().await;
}

#[tokio::test]
async fn metrics_the_go_task_event_and_configured_workers_known_before_they_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = localize(&three("epvm"), dir.path(), false);
    // A worker the file names with a fixed address is listed (waiting) before its first heartbeat.
    let mut ghost = cfg.workers[0].clone();
    ghost.name = "ghost".into();
    ghost.advertise = "http://127.0.0.1:9".into();
    cfg.workers.push(ghost);
    let manager = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let api = Api::new(manager.manager_url().unwrap());
    let nodes = api.ok("/nodes").await;
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(
        (nodes[0]["name"].as_str(), nodes[0]["state"].as_str()),
        (Some("ghost"), Some("waiting"))
    );
    manager.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(&three("epvm"), dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    let go = json!({"ID": "6f1d1a7e-1234-4000-8000-000000000042", "State": 0, "Timestamp": "2024-05-01T10:00:00Z",
        "Task": {"ID": "6f1d1a7e-1234-4000-8000-000000000042", "Name": "from-go", "Image": "busybox", "Cpu": 0.5,
                 "Memory": 134217728, "Disk": 1, "ExposedPorts": {"80/tcp": {}}, "PortBindings": {"80/tcp": "8081"},
                 "RestartPolicy": "on-failure"}});
    let (st, t) = api.post("/tasks", &go).await;
    assert_eq!(st, 201, "{t}");
    assert_eq!(t["id"], "6f1d1a7e-1234-4000-8000-000000000042");
    let t = api
        .wait_state("6f1d1a7e-1234-4000-8000-000000000042", "running", WAIT)
        .await;
    assert_eq!(t["spec"]["memory"], 134217728);
    assert_eq!(t["spec"]["restart_policy"]["policy"], "on-failure");
    assert_eq!(
        t["host_ports"][0]["host_port"], 8081,
        "the Go PortBindings are honoured: {t}"
    );
    let (st, _) = api.post("/tasks", &go).await;
    assert_eq!(st, 409, "the same id again is a duplicate");
    // At-most-one must be shorter than the TTL (1 s here), or it would promise nothing.
    let (st, v) = api
        .post(
            "/tasks",
            &json!({"name": "late", "image": "busybox", "stop_after_disconnect": "2s"}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("heartbeat_ttl"),
        "{v}"
    );

    let (st, text) = api.get("/metrics").await;
    assert_eq!(st, 200);
    let text = text.as_str().unwrap().to_string();
    for line in [
        "poseidon_submissions_total 1",
        "poseidon_placements_total 1",
        "poseidon_tasks{state=\"running\"} 1",
        "poseidon_nodes{state=\"up\"} 3",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from:\n{text}"
        );
    }
    let filtered = api.ok("/tasks?state=running&node=m3").await;
    let all_running = api.ok("/tasks?state=running").await;
    assert_eq!(all_running.as_array().unwrap().len(), 1);
    assert_eq!(
        filtered.as_array().unwrap().len(),
        usize::from(t["node"] == "m3")
    );
    // Shorter than the TTL is not enough: the kill needs its margin (250 ms) inside the TTL too.
    let (st, v) = api
        .post(
            "/tasks",
            &json!({"name": "close", "image": "busybox", "stop_after_disconnect": "800ms"}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("heartbeat_ttl (1000 ms)") && msg.contains("for the kill to land"),
        "{v}"
    );
    let (st, v) = api
        .post(
            "/tasks",
            &json!({"name": "fits", "image": "busybox", "stop_after_disconnect": "700ms"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    run.stop().await;
}
