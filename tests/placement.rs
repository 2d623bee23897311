//! Node labels, task constraints, `distinct_hosts`, eligibility and drain, on a manager and three
//! mock workers in one process, driven over real HTTP; and the README's placement examples run
//! against such a cluster (the config, the task and the shell commands, CLI included).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
const README: &str = include_str!("../README.md");

/// Three mock workers: a (ssd, zone a), b (hdd, zone b), c (ssd, zone b).
const CLUSTER: &str = r#"
[manager]
scheduler = "round-robin"
heartbeat_ttl = "2s"

[[worker]]
name = "pa"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "100ms"
labels = { disk = "ssd", zone = "a" }

[[worker]]
name = "pb"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "100ms"
labels = { disk = "hdd", zone = "b" }

[[worker]]
name = "pc"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "100ms"
labels = { disk = "ssd", zone = "b" }
"#;

/// Waits until the manager sees `n` nodes up.
async fn all_up(api: &Api, n: usize) {
    wait_for("every node to be up", WAIT, || async {
        let nodes = api.ok("/nodes").await;
        let up = nodes
            .as_array()?
            .iter()
            .filter(|n| n["state"] == "up")
            .count();
        (up == n).then_some(())
    })
    .await;
}

fn task(name: &str, constraints: Value) -> Value {
    json!({"name": name, "image": "busybox", "cmd": ["sleep", "600"], "constraints": constraints})
}

async fn node_of_running(api: &Api, id: &str) -> String {
    let t = api.wait_state(id, "running", WAIT).await;
    t["node"].as_str().unwrap().to_string()
}

/// Waits until a pending task's reason contains `fragment`, and returns the reason.
async fn pending_reason(api: &Api, id: &str, fragment: &str) -> String {
    let path = format!("/tasks/{id}");
    wait_for(
        &format!("task {id} to be pending with {fragment:?}"),
        WAIT,
        || async {
            let t = api.ok(&path).await;
            let reason = t["reason"].as_str().unwrap_or_default().to_string();
            (t["state"] == "pending" && reason.contains(fragment)).then_some(reason)
        },
    )
    .await
}

#[tokio::test]
async fn labels_from_the_config_show_in_get_nodes_with_eligibility() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    all_up(&api, 3).await;
    let nodes = api.ok("/nodes").await;
    let seen: Vec<Value> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| json!([n["name"], n["labels"], n["eligible"], n["draining"]]))
        .collect();
    assert_eq!(
        seen,
        vec![
            json!(["pa", {"disk": "ssd", "zone": "a"}, true, false]),
            json!(["pb", {"disk": "hdd", "zone": "b"}, true, false]),
            json!(["pc", {"disk": "ssd", "zone": "b"}, true, false]),
        ]
    );
    run.stop().await;
}

#[tokio::test]
async fn constrained_tasks_land_only_on_matching_nodes_and_no_fit_names_each_rule() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    all_up(&api, 3).await;

    let ssd = json!([{"attribute": "node.labels.disk", "operator": "=", "value": "ssd"}]);
    let mut on_ssd = BTreeSet::new();
    for i in 0..6 {
        let id = api.submit(&task(&format!("ssd{i}"), ssd.clone())).await;
        on_ssd.insert(node_of_running(&api, &id).await);
    }
    // Round-robin over the two ssd nodes: both used, the hdd node never.
    assert_eq!(on_ssd, BTreeSet::from(["pa".to_string(), "pc".to_string()]));

    let rules: &[(Value, &str)] = &[
        (
            json!([{"attribute": "node.labels.zone", "operator": "in", "value": "b"},
                   {"attribute": "node.name", "operator": "!=", "value": "pc"}]),
            "pb",
        ),
        (
            json!([{"attribute": "node.labels.zone", "operator": "!=", "value": "b"}]),
            "pa",
        ),
        (
            json!([{"attribute": "node.name", "operator": "=", "value": "pc"}]),
            "pc",
        ),
    ];
    for (constraints, want) in rules {
        let id = api.submit(&task("ruled", constraints.clone())).await;
        assert_eq!(node_of_running(&api, &id).await, *want, "{constraints}");
    }

    let nvme = json!([{"attribute": "node.labels.disk", "operator": "=", "value": "nvme"}]);
    let id = api.submit(&task("nowhere", nvme)).await;
    let reason = pending_reason(&api, &id, "no node can take this task").await;
    assert_eq!(
        reason,
        "no node can take this task: pa: node.labels.disk is ssd, wanted = nvme; \
         pb: node.labels.disk is hdd, wanted = nvme; pc: node.labels.disk is ssd, wanted = nvme"
    );
    run.stop().await;
}

#[tokio::test]
async fn distinct_hosts_spreads_a_group_and_refuses_a_fourth() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    all_up(&api, 3).await;
    let distinct = json!([{"operator": "distinct_hosts"}]);
    // Submitted in one request, so that one dispatch pass places them all: the group index must
    // see each placement before the next.
    let batch: Vec<Value> = (0..4).map(|_| task("web", distinct.clone())).collect();
    let (status, created) = api.post("/tasks", &json!(batch)).await;
    assert_eq!(status, 201, "{created}");
    let ids: Vec<String> = created
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let mut placed = Vec::new();
    let mut left = Vec::new();
    for id in &ids {
        let path = format!("/tasks/{id}");
        let t = wait_for("each task to be running or blocked", WAIT, || async {
            let t = api.ok(&path).await;
            let blocked = t["state"] == "pending"
                && t["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("no node can take this task"));
            (t["state"] == "running" || blocked).then_some(t)
        })
        .await;
        match t["node"].as_str() {
            Some(node) if t["state"] == "running" => placed.push(node.to_string()),
            _ => left.push(t["reason"].as_str().unwrap().to_string()),
        }
    }
    placed.sort();
    assert_eq!(placed, ["pa", "pb", "pc"]);
    assert_eq!(
        left,
        ["no node can take this task: pa: already holds a task of the same group (distinct_hosts); \
          pb: already holds a task of the same group (distinct_hosts); \
          pc: already holds a task of the same group (distinct_hosts)"]
    );
    // Another name is another group, and is not held back.
    let id = api.submit(&task("api", distinct)).await;
    node_of_running(&api, &id).await;
    run.stop().await;
}

#[tokio::test]
async fn an_ineligible_node_gets_nothing_new_until_enabled_and_a_restart_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(CLUSTER, dir.path(), false);
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    all_up(&api, 3).await;

    let (status, view) = api
        .post("/nodes/pa/eligibility", &json!({"eligible": false}))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (&view["name"], &view["eligible"]),
        (&json!("pa"), &json!(false))
    );
    let mut used = BTreeSet::new();
    for i in 0..6 {
        let id = api.submit(&task(&format!("t{i}"), json!([]))).await;
        used.insert(node_of_running(&api, &id).await);
    }
    assert_eq!(used, BTreeSet::from(["pb".to_string(), "pc".to_string()]));
    let pinned = json!([{"attribute": "node.name", "operator": "=", "value": "pa"}]);
    let id = api.submit(&task("pinned", pinned)).await;
    let reason = pending_reason(&api, &id, "pa: ineligible").await;
    assert_eq!(
        reason,
        "no node can take this task: pa: ineligible; pb: node.name is pb, wanted = pa; \
         pc: node.name is pc, wanted = pa"
    );
    run.stop().await;

    // A restart (same data) keeps the decision: the node is ineligible before and after its
    // first heartbeat.
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let pa = |nodes: Value| nodes.as_array().unwrap()[0].clone();
    assert_eq!(pa(api.ok("/nodes").await)["eligible"], json!(false));
    all_up(&api, 3).await;
    assert_eq!(pa(api.ok("/nodes").await)["eligible"], json!(false));
    // Enabling it lets the blocked task in at once.
    let (status, view) = api
        .post("/nodes/pa/eligibility", &json!({"eligible": true}))
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["eligible"], json!(true));
    assert_eq!(node_of_running(&api, &id).await, "pa");
    run.stop().await;
}

#[tokio::test]
async fn a_drain_leaves_plain_tasks_says_so_and_places_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    all_up(&api, 3).await;
    let on_pb = json!([{"attribute": "node.name", "operator": "=", "value": "pb"}]);
    let mut ids = Vec::new();
    for i in 0..2 {
        let id = api.submit(&task(&format!("p{i}"), on_pb.clone())).await;
        assert_eq!(node_of_running(&api, &id).await, "pb");
        ids.push(id);
    }
    let (status, reply) = api.post("/nodes/pb/drain", &Value::Null).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply,
        json!({"node": "pb", "eligible": false, "draining": true, "service_tasks_left": 0,
               "plain_tasks_left": 2,
               "note": "plain tasks are left to the user: stop them, or submit them again elsewhere"})
    );
    let nodes = api.ok("/nodes").await;
    assert_eq!(
        (
            &nodes[1]["name"],
            &nodes[1]["eligible"],
            &nodes[1]["draining"]
        ),
        (&json!("pb"), &json!(false), &json!(true))
    );
    // The plain tasks stay where they are.
    for id in &ids {
        let t = api.ok(&format!("/tasks/{id}")).await;
        assert_eq!((&t["state"], &t["node"]), (&json!("running"), &json!("pb")));
    }
    let id = api.submit(&task("late", on_pb)).await;
    let reason = pending_reason(&api, &id, "pb: draining").await;
    assert!(
        reason.starts_with("no node can take this task: pa: node.name is pa"),
        "{reason}"
    );
    // Disabling eligibility does not end a drain; enabling does.
    let (_, view) = api
        .post("/nodes/pb/eligibility", &json!({"eligible": false}))
        .await;
    assert_eq!(
        (&view["eligible"], &view["draining"]),
        (&json!(false), &json!(true))
    );
    let (_, view) = api
        .post("/nodes/pb/eligibility", &json!({"eligible": true}))
        .await;
    assert_eq!(
        (&view["eligible"], &view["draining"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(node_of_running(&api, &id).await, "pb");
    run.stop().await;
}

#[tokio::test]
async fn bad_placement_input_is_a_400_naming_the_field_and_an_unknown_node_a_404() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    all_up(&api, 3).await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/tasks",
            task("x", json!([{"attribute": "node.labels.disk", "operator": "~", "value": "ssd"}])),
            400,
            "constraints[0].operator: unknown operator \"~\" (valid: =, !=, in, distinct_hosts)",
        ),
        (
            "/tasks",
            task("x", json!([{"attribute": "node.memory", "operator": "=", "value": "1"}])),
            400,
            "constraints[0].attribute: unknown attribute \"node.memory\" (valid: node.name, node.labels.KEY)",
        ),
        (
            "/nodes/pa/eligibility",
            json!({"eligible": "no"}),
            400,
            "eligible must be true or false, got \"no\"",
        ),
        (
            "/nodes/pa/eligibility",
            json!({}),
            400,
            "eligible is required (true or false)",
        ),
        (
            "/nodes/pa/eligibility",
            json!({"eligible": true, "drain": true}),
            400,
            "unknown field \"drain\" (valid: eligible)",
        ),
        (
            "/nodes/nope/eligibility",
            json!({"eligible": false}),
            404,
            "no node named \"nope\"",
        ),
        ("/nodes/nope/drain", Value::Null, 404, "no node named \"nope\""),
        (
            "/nodes/pa/heartbeat",
            json!({"name": "pa", "address": "http://127.0.0.1:9", "capacity": {"cpus": 1.0, "memory": 1},
                   "stats": serde_json::to_value(poseidon::wire::NodeStats::default()).unwrap(), "healthy": true, "tasks": [], "labels": {"disk type": "ssd"}}),
            400,
            "labels: invalid label key: \"disk type\" is not 1 to 63 letters, digits, '_', '.' or '-'",
        ),
    ];
    for (path, body, status, error) in cases {
        let (got, reply) = api.post(path, &body).await;
        assert_eq!(
            (got, reply["error"].as_str()),
            (status, Some(error)),
            "{path} {body}"
        );
    }
    // Nothing was half-applied: every node is still eligible, and no task was created.
    let nodes = api.ok("/nodes").await;
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["eligible"] == true),
        "{nodes}"
    );
    assert_eq!(api.ok("/tasks").await, json!([]));
    run.stop().await;
}

/// The fenced block after `<!-- readme-test: NAME -->`.
fn readme_block(name: &str) -> String {
    let marker = format!("<!-- readme-test: {name} -->");
    let start = README
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &README[start + marker.len()..];
    let open = rest.find("```").unwrap();
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("\n```").unwrap()].to_string()
}

#[tokio::test]
async fn the_readme_placement_examples_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(
        &readme_block("placement-config"),
        dir.path(),
        false,
    ))
    .await;
    let url = run.manager_url().unwrap();
    let api = Api::new(url.clone());
    all_up(&api, 3).await;
    std::fs::write(
        dir.path().join("cache.json"),
        readme_block("placement-task"),
    )
    .unwrap();
    // The README talks to the default address; this cluster listens on a free port.
    let script = readme_block("placement-commands").replace("localhost:5555", &url);
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || {
            Command::new("timeout")
                .args(["60", "bash", "-euo", "pipefail", "-c", &script])
                .current_dir(dir)
                .env("PATH", path)
                .env("POSEIDON_MANAGER", &url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "README block failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        r#"{"name":"w1","labels":{"disk":"ssd","zone":"a"},"eligible":true,"draining":false}"#,
        r#"{"node":"w1","eligible":false,"draining":true,"service_tasks_left":0,"plain_tasks_left":1,"#,
        "node w3 is ineligible: nothing new is placed on it",
        r#""draining": true"#,
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The drained then re-enabled w1 is eligible; w3 is draining.
    let nodes = api.ok("/nodes").await;
    let flags: Vec<Value> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| json!([n["name"], n["eligible"], n["draining"]]))
        .collect();
    assert_eq!(
        flags,
        vec![
            json!(["w1", true, false]),
            json!(["w2", true, false]),
            json!(["w3", false, true]),
        ]
    );
    run.stop().await;
}

#[test]
fn the_cli_exits_2_for_a_usage_error() {
    let usage = Command::new(BIN)
        .args([
            "node",
            "eligibility",
            "w1",
            "--manager",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&usage.stderr).trim(),
        "poseidon: give exactly one of --enable and --disable"
    );
    let both = Command::new(BIN)
        .args(["node", "eligibility", "w1", "--enable", "--disable"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
}

#[tokio::test]
async fn the_cli_drains_and_reports_an_unknown_node_with_exit_code_1() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), false)).await;
    let url = run.manager_url().unwrap();
    all_up(&Api::new(url.clone()), 3).await;
    let cli = |args: Vec<String>| async move {
        tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().unwrap())
            .await
            .unwrap()
    };
    let args = |list: &[&str]| -> Vec<String> {
        list.iter()
            .map(|s| s.to_string())
            .chain(["--manager".to_string(), url.clone()])
            .collect()
    };
    let out = cli(args(&["node", "drain", "pc", "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&reply["node"], &reply["draining"]),
        (&json!("pc"), &json!(true))
    );
    let out = cli(args(&["node", "drain", "nope"])).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        r#"poseidon: no node named "nope" (HTTP 404)"#
    );
    run.stop().await;
}

/// The nodes of a service's running copies that it still wants.
async fn service_nodes(api: &Api, name: &str) -> Vec<String> {
    let s = api.ok(&format!("/services/{name}")).await;
    let mut nodes: Vec<String> = s["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| t["state"] == "running" && t["desired"] == "run")
        .map(|t| t["node"].as_str().unwrap_or_default().to_string())
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_keeps_its_constraints_spreads_by_distinct_hosts_and_moves_off_a_drained_node() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    all_up(&api, 3).await;
    let body = |count: u64| {
        json!({
            "name": "db",
            "count": count,
            "task": {"image": "busybox", "cmd": ["sleep", "600"]},
            "update": {"max_parallel": 1, "min_healthy": "100ms", "healthy_deadline": "5s"},
            "constraints": [
                {"attribute": "node.labels.disk", "operator": "=", "value": "ssd"},
                {"operator": "distinct_hosts"}
            ]
        })
    };
    let (status, v) = api.post("/services", &body(2)).await;
    assert_eq!(status, 201, "{v}");
    // Two copies, one on each ssd node (never the hdd node "pb", never both on one node).
    wait_for("two copies on the two ssd nodes", WAIT, || async {
        (service_nodes(&api, "db").await == ["pa", "pc"]).then_some(())
    })
    .await;
    // Scale to one, then drain the node that copy runs on: it moves to the other ssd node.
    let (status, v) = api
        .raw(
            hyper::Method::PUT,
            "/services/db",
            Some(serde_json::to_vec(&body(1)).unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let from = wait_for("one copy left", WAIT, || async {
        let nodes = service_nodes(&api, "db").await;
        (nodes.len() == 1).then(|| nodes[0].clone())
    })
    .await;
    let to = if from == "pa" { "pc" } else { "pa" };
    let (status, v) = api.post(&format!("/nodes/{from}/drain"), &json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["service_tasks_left"], 1, "{v}");
    wait_for("the copy to move off the drained node", WAIT, || async {
        (service_nodes(&api, "db").await == [to]).then_some(())
    })
    .await;
    run.stop().await;
}
