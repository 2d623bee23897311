//! Services over HTTP on a mock cluster (a manager and two mock workers in one process): create,
//! scale without restarting survivors, a rolling update that keeps `count - 1` healthy, an
//! automatic revert, bad input, mutated bodies. The binary's tests (SIGKILL mid-update, the README
//! block) are in `services_binary.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use hyper::Method;
use poseidon_runtimes::mock::Op;
use poseidon_runtimes::ExecOutput;
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

/// A service body: `count` copies of `image`, checked by an exec probe every 100 ms.
fn web(count: u64, image: &str, max_parallel: u64) -> Value {
    json!({
        "name": "web",
        "count": count,
        "task": {
            "image": image,
            "health_check": {"type": "exec", "cmd": ["true"], "interval": "100ms", "retries": 1}
        },
        "update": {"max_parallel": max_parallel, "min_healthy": "200ms", "healthy_deadline": "3s", "auto_revert": true}
    })
}

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

/// Healthy copies of any version, as a client of the service's endpoints would count them.
fn healthy_any(tasks: &Value) -> usize {
    tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "running" && t["desired"] == "run" && t["health"] == "healthy")
        .count()
}

fn ids(tasks: &[Value]) -> BTreeSet<String> {
    tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_three_scales_to_five_and_back_to_two_without_restarting_survivors() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let body = serde_json::to_vec(&web(3, "app:1", 1)).unwrap();
    let (status, created) = api.raw(Method::POST, "/services", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["name"].as_str(), created["version"].as_u64()),
        (Some("web"), Some(1))
    );
    let s = settled(&api, "running", 3).await;
    let first = live(&s);
    assert_eq!(first.len(), 3);
    let filtered = api.ok("/tasks?service=web").await;
    assert_eq!(ids(filtered.as_array().unwrap()), ids(&first));
    assert!(api
        .ok("/tasks?service=other")
        .await
        .as_array()
        .unwrap()
        .is_empty());

    let (status, v) = put(&api, "/services/web", &web(5, "app:1", 1)).await;
    assert_eq!((status, v["version"].as_u64()), (200, Some(2)), "{v}");
    let s = settled(&api, "running", 5).await;
    let five = live(&s);
    assert!(
        ids(&first).is_subset(&ids(&five)),
        "the first three survive scaling up"
    );
    for t in &five {
        assert_eq!(
            t["version"], 2,
            "every copy is relabelled to version 2: {t}"
        );
    }
    let creates = || -> usize {
        run.workers
            .iter()
            .map(|w| w.mock.as_ref().unwrap().count(Op::Create))
            .sum()
    };
    let after_up = creates();
    assert!(after_up >= 5, "five copies were made: {after_up}");
    let (status, _) = put(&api, "/services/web", &web(2, "app:1", 1)).await;
    assert_eq!(status, 200);
    let s = settled(&api, "running", 2).await;
    let two = live(&s);
    assert_eq!(two.len(), 2);
    assert!(
        ids(&two).is_subset(&ids(&first)),
        "the oldest copies are kept"
    );
    for t in &two {
        let before = first.iter().find(|f| f["id"] == t["id"]).unwrap();
        assert_eq!(
            (&t["container_id"], &t["restart_count"], &t["generation"]),
            (
                &before["container_id"],
                &before["restart_count"],
                &before["generation"]
            ),
            "a survivor was never restarted or moved"
        );
    }
    // Scaling down made no container (creates are counted by the engine, not listed, since a
    // stopped copy's container may be removed meanwhile).
    assert_eq!(creates(), after_up, "scaling down made no container");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_with_max_parallel_one_keeps_count_minus_one_healthy_at_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let (status, _) = api.post("/services", &web(3, "app:1", 1)).await;
    assert_eq!(status, 201);
    settled(&api, "running", 3).await;
    let (status, v) = put(&api, "/services/web", &web(3, "app:2", 1)).await;
    assert_eq!(
        (status, v["state"].as_str()),
        (200, Some("updating")),
        "{v}"
    );
    let mut samples = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let tasks = api.ok("/tasks?service=web").await;
        samples.push(healthy_any(&tasks));
        let s = api.ok("/services/web").await;
        if s["state"] == "running" && s["healthy"] == 3 {
            break;
        }
        assert!(start.elapsed() < WAIT, "the update did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = settled(&api, "running", 3).await;
    for t in live(&s) {
        assert_eq!(t["spec"]["image"], "app:2", "{t}");
    }
    let low = samples.iter().min().copied().unwrap();
    eprintln!("{} samples, lowest healthy {low}", samples.len());
    assert!(samples.len() >= 5, "the update was sampled: {samples:?}");
    assert!(low >= 2, "healthy fell below count - 1: {samples:?}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_health_check_never_passes_is_reverted_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    for w in &run.workers {
        w.mock.as_ref().unwrap().set_exec_result(
            "app:bad",
            ExecOutput {
                exit_code: 1,
                output: "not ready".into(),
                ..ExecOutput::default()
            },
        );
    }
    let api = Api::new(run.manager_url().unwrap());
    assert_eq!(api.post("/services", &web(3, "app:good", 1)).await.0, 201);
    settled(&api, "running", 3).await;
    assert_eq!(
        put(&api, "/services/web", &web(3, "app:bad", 1)).await.0,
        200
    );
    let s = settled(&api, "reverted", 3).await;
    assert_eq!(s["version"], 3, "{s}");
    let causes: Vec<&str> = s["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes[..2], ["created", "updated"]);
    assert!(causes[2].starts_with("reverted to 1"), "{causes:?}");
    for t in live(&s) {
        assert_eq!(t["spec"]["image"], "app:good", "{t}");
    }
    // The bad version is kept, so it can be inspected (and rolled forward to again).
    assert_eq!(s["versions"][1]["spec"]["task"]["image"], "app:bad");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_delete_and_purge_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let body = serde_json::to_vec(&web(2, "app:1", 1)).unwrap();
    let resp = poseidon::http::HttpClient::new(WAIT)
        .send(Method::POST, &format!("{}/services", api.base), Some(body))
        .await
        .unwrap();
    assert_eq!(resp.status, 201);
    assert_eq!(resp.location.as_deref(), Some("/services/web"));
    let (status, v) = api.post("/services", &web(2, "app:1", 1)).await;
    assert_eq!(status, 409, "{v}");
    settled(&api, "running", 2).await;
    // Nothing to roll back to yet.
    assert_eq!(api.post("/services/web/rollback", &json!({})).await.0, 409);
    assert_eq!(put(&api, "/services/web", &web(2, "app:2", 1)).await.0, 200);
    settled(&api, "running", 2).await;
    let (status, v) = api.post("/services/web/rollback", &json!({})).await;
    assert_eq!((status, v["version"].as_u64()), (200, Some(3)), "{v}");
    let s = settled(&api, "running", 2).await;
    for t in live(&s) {
        assert_eq!(t["spec"]["image"], "app:1", "{t}");
    }
    let listed = api.ok("/services").await;
    assert_eq!(listed[0]["name"], "web");
    assert!(
        listed[0].get("tasks").is_none(),
        "the list leaves tasks out"
    );
    // Purging a running service is refused; stopping ends every task; then purge forgets it.
    assert_eq!(api.delete("/services/web?purge=true").await.0, 409);
    let (status, v) = api.delete("/services/web").await;
    assert_eq!((status, v["state"].as_str()), (200, Some("stopped")), "{v}");
    wait_for("every task of web to end", WAIT, || async {
        let tasks = api.ok("/tasks?service=web").await;
        tasks
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "completed" || t["state"] == "failed")
            .then_some(())
    })
    .await;
    let (status, v) = api.delete("/services/web?purge=true").await;
    assert_eq!((status, v["purged"].as_str()), (200, Some("web")), "{v}");
    assert_eq!(api.get("/services/web").await.0, 404);
    assert!(api
        .ok("/tasks?service=web")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_service_input_is_a_4xx_naming_the_field_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let task = json!({"image": "app:1"});
    // (body, status, a word the error must contain)
    let rows: Vec<(Value, u16, &str)> = vec![
        (
            json!({"name": "web", "count": -1, "task": task}),
            400,
            "count",
        ),
        (
            json!({"name": "web", "count": 10_001, "task": task}),
            400,
            "count",
        ),
        (
            json!({"name": "web", "count": "3", "task": task}),
            400,
            "count",
        ),
        (json!({"name": "web", "task": task}), 400, "count"),
        (
            json!({"name": "web", "count": 1, "task": task, "update": {"max_parallel": 0}}),
            400,
            "update.max_parallel",
        ),
        (
            json!({"name": "web", "count": 1, "task": task, "update": {"paralel": 1}}),
            400,
            "paralel",
        ),
        (
            json!({"name": "web", "count": 1, "task": task, "replicas": 3}),
            400,
            "replicas",
        ),
        (
            json!({"name": "Web_1", "count": 1, "task": task}),
            400,
            "name",
        ),
        (
            json!({"name": "-web", "count": 1, "task": task}),
            400,
            "name",
        ),
        (json!({"name": "web", "count": 1}), 400, "task"),
        (
            json!({"name": "web", "count": 1, "task": {"cmd": "x"}}),
            400,
            "task",
        ),
        (
            json!({"name": "web", "count": 1, "task": {"image": "app", "memory": "lots"}}),
            400,
            "memory",
        ),
        (
            json!({"name": "web", "count": 1, "task": {"image": "app", "id": "21b23589-5d2d-4731-b5c9-a97e9832d021"}}),
            400,
            "task.id",
        ),
        (
            json!({"name": "web", "count": 1, "task": task, "constraints": [{"attribute": "node.labels.disk", "operator": "~", "value": "ssd"}]}),
            400,
            "constraints[0].operator",
        ),
        (
            json!({"name": "web", "count": 1, "task": task, "constraints": [{"attribute": "node.cpu", "operator": "=", "value": "x"}]}),
            400,
            "constraints[0].attribute",
        ),
        (
            json!({"name": "web", "count": 1, "task": task, "publish": [{"port": 0, "target": 80}]}),
            400,
            "publish[0].port",
        ),
        (
            json!({"name": "web", "count": 1, "task": task, "publish": [{"port": 80, "target": 80, "mode": "udp"}]}),
            400,
            "publish[0].mode",
        ),
        (
            json!({"name": "web", "count": 1, "task": task, "update": {"min_healthy": "10s", "healthy_deadline": "5s"}}),
            400,
            "update.healthy_deadline",
        ),
    ];
    for (body, status, word) in &rows {
        let (got, v) = api.post("/services", body).await;
        let message = v["error"].as_str().unwrap_or_default();
        assert_eq!(got, *status, "{body}: {v}");
        assert!(
            message.contains(word),
            "{body}: {message:?} should name {word}"
        );
    }
    assert!(
        api.ok("/services").await.as_array().unwrap().is_empty(),
        "nothing was stored"
    );
    let ok = json!({"name": "web", "count": 1, "task": task,
        "constraints": [{"attribute": "node.labels.disk", "operator": "=", "value": "ssd"}, {"operator": "distinct_hosts"}],
        "publish": [{"port": 8080, "target": 80, "mode": "tcp"}]});
    // Updates: a missing service, a bad name in the URL, a name that differs from the URL.
    assert_eq!(
        put(&api, "/services/nope", &ok).await.0,
        400,
        "the body names web"
    );
    let (status, v) = put(&api, "/services/nope", &json!({"count": 1, "task": task})).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = put(&api, "/services/BAD", &json!({"count": 1, "task": task})).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("name"), "{v}");
    let (status, v) = api.post("/services", &ok).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["spec"]["constraints"][1]["operator"], "distinct_hosts");
    assert_eq!(v["spec"]["publish"][0]["port"], 8080);
    // A bad update leaves the stored version as it was.
    let (status, _) = put(
        &api,
        "/services/web",
        &json!({"count": 1, "task": task, "update": {"max_parallel": 0}}),
    )
    .await;
    assert_eq!(status, 400);
    let s = api.ok("/services/web").await;
    assert_eq!(
        (
            s["version"].as_u64(),
            s["versions"].as_array().unwrap().len()
        ),
        (Some(1), 1)
    );
    run.stop().await;
}

/// A tiny deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Replaces one value somewhere in `v` with something of another shape.
fn mutate(v: &mut Value, r: &mut Rng) {
    let junk = [
        json!(null),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!("x"),
        json!(""),
        json!([]),
        json!({}),
        json!(true),
        json!([{"a": 1}]),
        json!("-1s"),
        json!("99999999999999999999h"),
    ];
    match v {
        Value::Object(map) if !map.is_empty() && r.below(4) != 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let k = &keys[r.below(keys.len())];
            match r.below(5) {
                0 => {
                    map.remove(k);
                }
                1 => {
                    map.insert(format!("{k}_"), json!(1));
                }
                _ => mutate(map.get_mut(k).unwrap(), r),
            }
        }
        Value::Array(items) if !items.is_empty() && r.below(4) != 0 => {
            let i = r.below(items.len());
            mutate(&mut items[i], r);
        }
        other => *other = junk[r.below(junk.len())].clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_service_bodies_are_answered_with_a_json_4xx_or_a_success_never_a_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let base = json!({
        "name": "fz", "count": 1,
        "task": {"image": "app:1", "cmd": ["sleep", "1"], "ports": ["8080:80"],
                 "health_check": {"type": "http", "port": 80, "interval": "1s"}},
        "update": {"max_parallel": 1, "min_healthy": "1s", "healthy_deadline": "10s", "auto_revert": false},
        "constraints": [{"attribute": "node.name", "operator": "in", "value": "s1,s2"}],
        "publish": [{"port": 8080, "target": 80, "mode": "http"}]
    });
    let mut r = Rng(0x5eed_cafe_f00d_d00d);
    for i in 0..400 {
        let mut body = base.clone();
        for _ in 0..1 + r.below(3) {
            mutate(&mut body, &mut r);
        }
        let mut bytes = serde_json::to_vec(&body).unwrap();
        if r.below(10) == 0 {
            let cut = r.below(bytes.len());
            bytes.truncate(cut);
        }
        let (method, path) = match r.below(4) {
            0 | 1 => (Method::POST, "/services".to_string()),
            2 => (Method::PUT, "/services/fz".to_string()),
            _ => (
                Method::PUT,
                format!(
                    "/services/{}",
                    ["fz", "Fz", "-", "a.b", "x%2Fy"][r.below(5)]
                ),
            ),
        };
        let (status, v) = api.raw(method.clone(), &path, Some(bytes.clone())).await;
        assert!(
            (200..300).contains(&status)
                || ((400..500).contains(&status) && v["error"].is_string()),
            "request {i}: {method} {path} {} -> {status} {v}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // Still serving, and whatever was stored reads back.
    assert_eq!(api.get("/health").await.0, 200);
    for s in api.ok("/services").await.as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        assert_eq!(api.get(&format!("/services/{name}")).await.0, 200);
    }
    run.stop().await;
}
