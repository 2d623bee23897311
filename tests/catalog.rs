//! The service catalog over HTTP on a mock cluster: endpoints join when healthy and leave when
//! their check fails, `X-Poseidon-Index` moves with them, a blocking query is answered at the
//! change (not at its wait), and bad parameters are 400s naming the parameter.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{localize, start, wait_for, Api};
use poseidon::client::ManagerClient;
use poseidon_runtimes::ExecOutput;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

const CLUSTER: &str = r#"
[manager]
heartbeat_ttl = "2s"

[[worker]]
name = "c1"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = { cpus = 64.0, memory = "64g" }

[[worker]]
name = "c2"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = { cpus = 64.0, memory = "64g" }
# Its tasks' ports are reached elsewhere than its API (TEST-NET-1, nothing is dialled).
endpoint_address = "192.0.2.7"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_copies_with_a_published_port_are_endpoints_and_a_blocking_query_sees_one_leave() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let base = run.manager_url().unwrap();
    let api = Api::new(base.clone());
    let client = ManagerClient::new(&base, Duration::from_secs(30));
    let body = json!({
        "name": "web",
        "count": 3,
        "task": {
            "image": "app:1",
            "ports": ["80", "9000"],
            "health_check": {"type": "exec", "cmd": ["true"], "interval": "100ms", "retries": 1}
        },
        "publish": [{"port": 8080, "target": 80, "mode": "tcp"}]
    });
    assert_eq!(api.post("/services", &body).await.0, 201);
    // A service without endpoints is listed with 0; a plain task with the port is never one.
    api.submit(&json!({"name": "plain", "image": "app:1", "ports": ["80"]}))
        .await;

    let eps = wait_for("3 endpoints of web", WAIT, || async {
        let got = client.catalog_service("web", None).await.unwrap();
        (got.value.len() == 3).then_some(got)
    })
    .await;
    let tasks = api.ok("/tasks?service=web").await;
    for e in &eps.value {
        let t = tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == e.task.to_string())
            .expect("an endpoint is a task of the service");
        assert_eq!(t["state"], "running");
        assert_eq!(t["node"], e.node.as_str());
        // c1 advertises loopback; c2 names where its tasks' ports are reached.
        let want = if e.node == "c2" {
            "192.0.2.7"
        } else {
            "127.0.0.1"
        };
        assert_eq!(
            e.address, want,
            "the endpoint address of a task on {}",
            e.node
        );
        // The host port Docker bound for container port 80, not the one for 9000.
        let bound = t["host_ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["container_port"] == 80)
            .unwrap();
        assert_eq!(bound["host_port"].as_u64(), Some(u64::from(e.port)));
        assert!(e.healthy);
    }
    let nodes = api.ok("/nodes").await;
    let node = |name: &str| {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(node("c2")["endpoint_address"], "192.0.2.7");
    assert!(node("c1").get("endpoint_address").is_none(), "{nodes}");
    let list = client.catalog_services(None).await.unwrap();
    assert_eq!(list.value.len(), 1);
    assert_eq!(
        (list.value[0].name.as_str(), list.value[0].endpoints),
        ("web", 3)
    );
    assert_eq!(
        list.index, eps.index,
        "both routes answer the one catalog index"
    );

    // Nothing changes: a blocking query at the current index waits its whole `wait`.
    let t0 = Instant::now();
    let same = client
        .catalog_service("web", Some((eps.index, Duration::from_millis(400))))
        .await
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert_eq!(same.index, eps.index);

    // One copy's check starts failing: a blocking query with a long wait is answered at the
    // change, without that copy.
    let watcher = {
        let client = client.clone();
        let index = eps.index;
        tokio::spawn(async move {
            let t0 = Instant::now();
            let got = client
                .catalog_service("web", Some((index, Duration::from_secs(25))))
                .await
                .unwrap();
            (got, t0.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    for w in &run.workers {
        w.mock.as_ref().unwrap().set_exec_result(
            "app:1",
            ExecOutput {
                exit_code: 1,
                output: "sick".into(),
                ..ExecOutput::default()
            },
        );
    }
    let (changed, took) = watcher.await.unwrap();
    assert!(changed.index > eps.index);
    assert!(
        took < Duration::from_secs(10),
        "answered at the change, after {took:?}"
    );
    assert!(changed.value.len() < 3, "a copy left: {changed:?}");
    // Every copy fails its check now: all of them leave (their replacements fail too).
    wait_for("web to have no endpoint", WAIT, || async {
        let got = client.catalog_service("web", None).await.unwrap();
        got.value.is_empty().then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_bad_input_is_a_400_naming_the_parameter_and_an_unknown_service_a_404() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let rows: &[(&str, u16, &str)] = &[
        ("/catalog/services?index=abc", 400, "index"),
        ("/catalog/services?index=-3&wait=1s", 400, "index"),
        ("/catalog/services?index=1&wait=forever", 400, "wait"),
        ("/catalog/services/web?index=1&wait=1h", 400, "wait"),
        ("/catalog/services/Not_A_Label", 400, "name"),
        ("/catalog/services/nosuch", 404, "nosuch"),
        ("/catalog/nothing", 404, "no route"),
    ];
    for (path, status, word) in rows {
        let (got, body) = api.get(path).await;
        assert_eq!(got, *status, "{path}: {body}");
        let msg = body["error"].as_str().unwrap();
        assert!(msg.contains(word), "{path}: {msg}");
    }
    let (got, _) = api
        .raw(
            hyper::Method::POST,
            "/catalog/services",
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(got, 405);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_port_another_service_holds_is_a_409_naming_the_field_unless_hosts_split_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let port = common::free_port();
    let svc = |name: &str, publish: serde_json::Value| {
        json!({"name": name, "count": 0, "task": {"image": "app:1", "ports": ["80"]},
               "publish": publish})
    };
    let tcp = json!([{"port": port, "target": 80}]);
    let www = json!([{"port": port, "target": 80, "mode": "http", "hosts": ["www.example"]}]);
    let api_host = json!([{"port": port, "target": 80, "mode": "http", "hosts": ["api.example"]}]);
    assert_eq!(api.post("/services", &svc("one", tcp.clone())).await.0, 201);
    // (service, publish, status); the 409 names the field.
    let rows = [
        ("two", tcp.clone(), 409),
        ("two", www.clone(), 409),
        (
            "two",
            json!([{"port": port + 1, "target": 80}, {"port": port, "target": 80}]),
            409,
        ),
    ];
    for (name, publish, status) in rows {
        let (s, v) = api.post("/services", &svc(name, publish.clone())).await;
        assert_eq!(s, status, "{publish}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(
            e.contains("publish[") && e.contains(".port") && e.contains("\"one\""),
            "{e}"
        );
    }
    // Once "one" is stopped its port is free; two http services with distinct hosts share it.
    assert_eq!(api.delete("/services/one").await.0, 200);
    assert_eq!(api.post("/services", &svc("www", www)).await.0, 201);
    assert_eq!(api.post("/services", &svc("api", api_host)).await.0, 201);
    let (s, v) = api
        .post(
            "/services",
            &svc(
                "dup",
                json!([{"port": port, "target": 80, "mode": "http", "hosts": ["api.example"]}]),
            ),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    // The mesh table shows both host routes on the port.
    let mesh = api.ok("/catalog/mesh").await;
    let names: Vec<&str> = mesh
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["api", "www"], "{mesh}");
    run.stop().await;
}
