//! The worker alone, over real HTTP on port 0, with `MockRuntime` and a temporary RocksDB.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{wait_for, Standalone};
use hyper::Method;
use poseidon_runtimes::mock::MockRuntime;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// A task that publishes no port runs without the engine being asked for its ports: create and
/// start are the only calls a start makes.
#[tokio::test]
async fn a_task_without_ports_starts_with_create_and_start_alone() {
    use poseidon_runtimes::mock::Op;
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    let s = Standalone::start(&mock, dir.path(), None).await;
    let (status, t) = s
        .api
        .post("/tasks", &json!({"name": "quiet", "image": "busybox"}))
        .await;
    assert_eq!(status, 201, "{t}");
    let running = s
        .api
        .wait_state(t["id"].as_str().unwrap(), "running", WAIT)
        .await;
    assert_eq!(running["host_ports"], json!([]), "{running}");
    assert_eq!(
        (
            mock.count(Op::Create),
            mock.count(Op::Start),
            mock.count(Op::Inspect)
        ),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn submit_inspect_list_logs_stop_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    let s = Standalone::start(&mock, dir.path(), None).await;
    let api = &s.api;

    assert_eq!(api.ok("/health").await["status"], "ok");

    let (status, t) = api
        .post("/tasks", &json!({"name": "web", "image": "nginx:1.27", "cmd": ["nginx", "-g", "daemon off;"],
                                "env": {"A": "1"}, "cpus": 0.5, "memory": "64m", "ports": ["8080:80"]}))
        .await;
    assert_eq!(status, 201, "{t}");
    let id = t["id"].as_str().unwrap().to_string();
    // Started at once, not on a tick.
    let running = api.wait_state(&id, "running", WAIT).await;
    assert_eq!(running["node"], "solo");
    let cid = running["container_id"].as_str().unwrap().to_string();
    let c = mock
        .container(&cid)
        .expect("container exists in the engine");
    assert_eq!(
        c.status,
        poseidon_runtimes::ContainerStatus::Running,
        "{c:?}"
    );
    assert_eq!(
        c.labels.get("io.poseidon.task").map(String::as_str),
        Some(id.as_str())
    );
    assert_eq!(
        c.labels.get("io.poseidon.node").map(String::as_str),
        Some("solo")
    );
    assert_eq!(running["host_ports"][0]["host_port"], 8080);
    assert_eq!(running["host_ports"][0]["container_port"], 80);
    assert_eq!(mock.count(poseidon_runtimes::mock::Op::Inspect), 1);

    let list = api.ok("/tasks").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    mock.set_logs(
        "nginx:1.27",
        poseidon_runtimes::Logs {
            stdout: "hello\n".into(),
            stderr: "warn\n".into(),
        },
    );
    let logs = api.ok(&format!("/tasks/{id}/logs")).await;
    assert_eq!(logs["stdout"], "hello\n");
    assert_eq!(logs["stderr"], "warn\n");

    let stats = api.ok("/stats").await;
    assert_eq!(stats["running"], 1, "{stats}");
    assert_eq!(stats["tasks"], 1, "{stats}");

    // A running task cannot be purged before it is stopped.
    let (st, e) = api.delete(&format!("/tasks/{id}?purge=true")).await;
    assert_eq!(st, 409, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("must be stopped"),
        "{e}"
    );

    let (st, stopped) = api.delete(&format!("/tasks/{id}")).await;
    assert_eq!(st, 200, "{stopped}");
    let done = api.wait_state(&id, "completed", WAIT).await;
    assert_eq!(done["reason"], "stopped");
    assert!(
        mock.container(&cid).is_none(),
        "the stopped task's container is removed"
    );

    let (st, _) = api.delete(&format!("/tasks/{id}?purge=true")).await;
    assert_eq!(st, 200);
    let (st, e) = api.get(&format!("/tasks/{id}")).await;
    assert_eq!(st, 404, "{e}");
    s.stop().await;
}

#[tokio::test]
async fn exit_codes_end_completed_or_failed_and_a_missing_image_fails_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    // The mock keys behaviour by container name or image; container names carry the task id, so images.
    mock.exit_after("job-ok:1", Duration::from_millis(50), 0);
    mock.exit_after("job-bad:1", Duration::from_millis(50), 3);
    mock.missing_image("ghost:1");
    let s = Standalone::start(&mock, dir.path(), None).await;
    let ok = s
        .api
        .submit(&json!({"name": "ok-job", "image": "job-ok:1"}))
        .await;
    let bad = s
        .api
        .submit(&json!({"name": "bad-job", "image": "job-bad:1"}))
        .await;
    let ghost = s
        .api
        .submit(&json!({"name": "ghost", "image": "ghost:1"}))
        .await;

    let t = s.api.wait_state(&ok, "completed", WAIT).await;
    assert_eq!(t["exit_code"], 0);
    let t = s.api.wait_state(&bad, "failed", WAIT).await;
    assert_eq!(t["exit_code"], 3);
    assert!(t["reason"].as_str().unwrap().contains('3'), "{t}");
    let t = s.api.wait_state(&ghost, "failed", WAIT).await;
    assert!(t["reason"].as_str().unwrap().contains("ghost"), "{t}");
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    let s = Standalone::start(&mock, dir.path(), None).await;
    let api = &s.api;
    // (method, path, body, expected status, a word the error must contain)
    type Case = (Method, &'static str, Option<Vec<u8>>, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/tasks",
            Some(b"{\"name\": \"x\", \"image\":".to_vec()),
            400,
            "malformed JSON",
        ),
        (
            Method::POST,
            "/tasks",
            Some(b"[1,2".to_vec()),
            400,
            "malformed JSON",
        ),
        (
            Method::POST,
            "/tasks",
            Some(br#"{"name":"x","image":"busybox","cpus":"two"}"#.to_vec()),
            400,
            "cpus",
        ),
        (
            Method::POST,
            "/tasks",
            Some(br#"{"name":"x","image":"busybox","cpus":-1}"#.to_vec()),
            400,
            "cpus",
        ),
        (
            Method::POST,
            "/tasks",
            Some(br#"{"name":"x","image":"busybox","colour":"red"}"#.to_vec()),
            400,
            "colour",
        ),
        (
            Method::POST,
            "/tasks",
            Some(br#"{"name":"x","image":"Not An Image!"}"#.to_vec()),
            400,
            "image",
        ),
        (Method::GET, "/tasks/not-a-uuid", None, 400, "not-a-uuid"),
        (
            Method::GET,
            "/tasks/3f2c1a7e-0000-4000-8000-000000000000",
            None,
            404,
            "no task",
        ),
        (
            Method::DELETE,
            "/tasks/3f2c1a7e-0000-4000-8000-000000000000",
            None,
            404,
            "no task",
        ),
        (Method::GET, "/nope", None, 404, "no route"),
        (Method::PUT, "/tasks", None, 405, "not allowed"),
    ];
    for (m, path, body, want, needle) in cases {
        let (st, v) = api.raw(m.clone(), path, body).await;
        assert_eq!(st, want, "{m} {path}: {v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{m} {path}: no error field in {v}"));
        assert!(
            msg.contains(needle),
            "{m} {path}: {msg:?} should mention {needle:?}"
        );
    }
    // Over the 1 MiB limit: 413 before the body is read.
    let (st, v) = common::post_declaring(&api.base, "/tasks", 2 << 20).await;
    assert_eq!(st, 413, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("body")),
        "{v}"
    );
    assert_eq!(api.ok("/tasks").await, json!([]));
    assert_eq!(mock.count(poseidon_runtimes::mock::Op::Create), 0);

    // A duplicate id is a conflict.
    let id = "3f2c1a7e-1111-4000-8000-000000000000";
    let spec = json!({"id": id, "name": "dup", "image": "busybox"});
    assert_eq!(api.post("/tasks", &spec).await.0, 201);
    let (st, v) = api.post("/tasks", &spec).await;
    assert_eq!(st, 409, "{v}");
    api.wait_state(id, "running", WAIT).await;
    assert_eq!(api.ok("/tasks").await.as_array().unwrap().len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_restarted_worker_adopts_its_containers_and_starts_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    let s = Standalone::start(&mock, dir.path(), None).await;
    let a = s
        .api
        .submit(&json!({"name": "a", "image": "busybox"}))
        .await;
    let b = s
        .api
        .submit(&json!({"name": "b", "image": "busybox"}))
        .await;
    let ca = s.api.wait_state(&a, "running", WAIT).await["container_id"].clone();
    let cb = s.api.wait_state(&b, "running", WAIT).await["container_id"].clone();
    s.stop().await;

    // While it was away: b's container exited, and two strangers appeared: one labelled as ours
    // for a task we do not hold, and one of another node, which is none of our business.
    assert!(mock.kill_externally(cb.as_str().unwrap(), 7));
    let ours = plant(&mock, "solo", "stray-ours").await;
    let theirs = plant(&mock, "elsewhere", "stray-theirs").await;
    let creates = mock.count(poseidon_runtimes::mock::Op::Create);

    let s = Standalone::start(&mock, dir.path(), None).await;
    let t = s.api.wait_state(&a, "running", WAIT).await;
    assert_eq!(
        t["container_id"], ca,
        "the running container is adopted, not replaced"
    );
    let t = s.api.wait_state(&b, "failed", WAIT).await;
    assert_eq!(t["exit_code"], 7);
    assert_eq!(
        mock.count(poseidon_runtimes::mock::Op::Create),
        creates,
        "no duplicate container"
    );
    assert!(
        mock.container(&ours).is_none(),
        "the container labelled with this node but owned by no task is removed"
    );
    let other = mock
        .container(&theirs)
        .expect("another node's container is left alone");
    assert_eq!(other.status, poseidon_runtimes::ContainerStatus::Running);
    // Ours (a) and theirs run; b's container exited and the stray was removed.
    assert_eq!(mock.running_count(), 2);
    wait_for("list to settle", WAIT, || async {
        (s.api.ok("/tasks").await.as_array().unwrap().len() == 2).then_some(())
    })
    .await;
    s.stop().await;
}

/// Creates and starts a container labelled as Poseidon's, for `node`, for a task nobody holds.
async fn plant(mock: &MockRuntime, node: &str, name: &str) -> String {
    use poseidon_runtimes::{labels, ContainerSpec, Runtime};
    let spec = ContainerSpec {
        name: name.into(),
        image: "busybox".into(),
        labels: [
            (labels::MANAGED.to_string(), "true".to_string()),
            (
                labels::TASK.to_string(),
                "3f2c1a7e-9999-4000-8000-000000000000".to_string(),
            ),
            (labels::NODE.to_string(), node.to_string()),
            (labels::GENERATION.to_string(), "1".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let id = mock.create(&spec).await.unwrap();
    mock.start(&id).await.unwrap();
    id
}

#[tokio::test]
async fn assignments_with_invalid_specs_are_rejected_with_the_error_and_the_rest_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    let s = Standalone::start(&mock, dir.path(), None).await;
    let good = poseidon::spec::parse_submission(br#"{"name": "good", "image": "busybox"}"#)
        .unwrap()
        .spec;
    let mut bad_cpus = good.clone();
    bad_cpus.cpus = -1.0;
    let mut bad_image = good.clone();
    bad_image.image = "Not An Image!".into();
    let ids = [
        "3f2c1a7e-0001-4000-8000-000000000000",
        "3f2c1a7e-0002-4000-8000-000000000000",
        "3f2c1a7e-0003-4000-8000-000000000000",
    ];
    let batch = poseidon::wire::AssignmentBatch {
        assignments: [good, bad_cpus, bad_image]
            .into_iter()
            .zip(ids)
            .map(|(spec, id)| poseidon::wire::Assignment {
                id: id.parse().unwrap(),
                generation: 2,
                spec,
                desired: poseidon::task::Desired::Run,
            })
            .collect(),
    };
    let (st, v) = s
        .api
        .post("/assignments", &serde_json::to_value(&batch).unwrap())
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["accepted"],
        json!([{"id": ids[0], "generation": 2}]),
        "{v}"
    );
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{v}");
    assert_eq!(rejected[0]["id"], ids[1], "{v}");
    assert!(
        rejected[0]["error"].as_str().unwrap().contains("cpus"),
        "{v}"
    );
    assert_eq!(rejected[1]["id"], ids[2], "{v}");
    assert!(
        rejected[1]["error"].as_str().unwrap().contains("image"),
        "{v}"
    );
    s.api.wait_state(ids[0], "running", WAIT).await;
    assert_eq!(s.api.ok("/tasks").await.as_array().unwrap().len(), 1);
    assert_eq!(mock.count(poseidon_runtimes::mock::Op::Create), 1);
    s.stop().await;
}
