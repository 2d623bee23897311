//! The typed clients against the real servers: every route of `ManagerClient` and `WorkerClient`
//! is called on a manager and a mock worker over HTTP, so a body whose shape drifted from its
//! `wire` type fails here (as a decode error) instead of reading as a default in the CLI.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{localize, start, wait_for};
use poseidon::client::{ManagerClient, WorkerClient};
use poseidon::http::ClientError;
use poseidon::task::{Desired, State, TaskId};
use poseidon::wire::{Assignment, AssignmentBatch, NodeState};

const WAIT: Duration = Duration::from_secs(10);

const CLUSTER: &str = r#"
[manager]
heartbeat_ttl = "2s"

[[worker]]
name = "m1"
runtime = "mock"
heartbeat_interval = "200ms"
capacity = { cpus = 2.0, memory = "4g" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manager_route_decodes_into_its_wire_type() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let m = ManagerClient::new(&run.manager_url().unwrap(), Duration::from_secs(10));

    let health = m.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.scheduler, "epvm");

    let stored = m
        .submit(br#"{"name": "typed", "image": "busybox", "cpus": 0.5, "memory": "64m"}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    let id = stored[0].id;
    assert_eq!(stored[0].spec.name, "typed");

    let two = m
        .submit(br#"[{"image": "busybox"}, {"image": "busybox"}]"#.to_vec())
        .await
        .unwrap();
    assert_eq!(two.len(), 2, "an array answers an array");

    let t = wait_for("the task to run", WAIT, || async {
        m.task(id).await.ok().filter(|t| t.state == State::Running)
    })
    .await;
    assert_eq!(t.node.as_deref(), Some("m1"));
    let running = m.tasks(Some("running"), Some("m1")).await.unwrap();
    assert!(running.iter().any(|t| t.id == id));

    let nodes = m.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].name, "m1");
    assert_eq!(nodes[0].state, NodeState::Up);
    assert_eq!(nodes[0].capacity.cpus, 2.0);
    // The reservation is the task's, read as a typed field (the CLI once read it by string).
    assert!(nodes[0].reserved_cpus >= 0.5, "{:?}", nodes[0]);
    assert!(nodes[0].reserved_memory >= 64 << 20, "{:?}", nodes[0]);

    let logs = m.logs(id, Some(10)).await.unwrap();
    assert_eq!(logs.id, id);

    let metrics = m.metrics().await.unwrap();
    assert!(metrics.contains("poseidon_tasks"), "{metrics}");

    let stopping = m.stop(id).await.unwrap();
    assert_eq!(stopping.desired, Desired::Stop);
    wait_for("the task to complete", WAIT, || async {
        m.task(id)
            .await
            .ok()
            .filter(|t| t.state == State::Completed)
    })
    .await;
    let purged = m.purge(id).await.unwrap();
    assert_eq!(purged.purged, id);
    match m.task(id).await {
        Err(ClientError::Status { status: 404, .. }) => {}
        other => panic!("a purged task should be 404, got {other:?}"),
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_route_decodes_into_its_wire_type() {
    let dir = tempfile::tempdir().unwrap();
    let toml = r#"
[[worker]]
name = "solo"
runtime = "mock"
"#;
    let run = start(&localize(toml, dir.path(), true)).await;
    let w = WorkerClient::new(
        &format!("http://{}", run.workers[0].addr),
        Duration::from_secs(10),
    );
    let health = w.health().await.unwrap();
    assert_eq!(
        (health.status.as_str(), health.node.as_str()),
        ("ok", "solo")
    );
    assert_eq!(health.runtime, "mock");

    let id = w
        .submit(br#"{"name": "job", "image": "busybox", "cmd": ["echo", "hi"]}"#.to_vec())
        .await
        .unwrap()[0]
        .id;
    assert_eq!(w.task(id).await.unwrap().id, id);
    assert!(w.tasks().await.unwrap().iter().any(|t| t.id == id));
    let logs = w.logs(id, None).await.unwrap();
    assert_eq!(logs.id, id);
    let stats = w.stats().await.unwrap();
    assert_eq!(
        (stats.node.as_str(), stats.runtime.as_str()),
        ("solo", "mock")
    );
    assert!(stats.tasks >= 1, "{stats:?}");

    // An assignment batch answers which were taken; a fresh id with generation 1 is taken.
    let spec = poseidon::spec::parse_submissions(br#"{"image": "busybox"}"#).unwrap()[0]
        .spec
        .clone();
    let fresh = TaskId::new();
    let reply = w
        .assign(&AssignmentBatch {
            assignments: vec![Assignment {
                id: fresh,
                generation: 1,
                spec,
                desired: Desired::Run,
            }],
        })
        .await
        .unwrap();
    assert_eq!(reply.accepted.len(), 1, "{reply:?}");
    assert_eq!(
        (reply.accepted[0].id, reply.accepted[0].generation),
        (fresh, 1)
    );
    assert!(reply.rejected.is_empty(), "{reply:?}");

    let stopped = w.stop(id).await;
    // A task that already exited cannot be stopped: the worker says so with a 409.
    match stopped {
        Ok(t) => assert_eq!(t.desired, Desired::Stop),
        Err(ClientError::Status { status: 409, .. }) => {}
        Err(e) => panic!("unexpected {e}"),
    }
    wait_for("the job to finish", WAIT, || async {
        w.task(id).await.ok().filter(|t| t.is_finished())
    })
    .await;
    assert_eq!(w.purge(id).await.unwrap().purged, id);
    run.stop().await;
}
