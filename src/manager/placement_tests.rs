//! Tests of placement through the manager: E-PVM's index is told of every snapshot change, and
//! the dispatcher sends a slow worker one request at a time with bigger batches under load. They
//! share the store and helpers of `tests.rs`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::tests::{beat, manager, options, spec, wait_until, TestStore};
use super::*;
use crate::wire::TaskStatus;

/// E-PVM through the manager reads only the snapshots changed since its last pick
/// (`Scheduler::pick_changed`); every way a snapshot changes must be listed, which debug builds
/// check at every pick (the index panics on an unlisted change). This drives each of them with
/// placements in between: registrations, re-registration with more capacity, used memory from
/// heartbeats, placements, failed dispatches (released), reports, eligibility, a node lost. At the
/// end the incrementally kept snapshots equal a rebuild from scratch.
#[tokio::test(start_paused = true)]
async fn every_snapshot_change_reaches_the_epvm_index() {
    let store = TestStore::new();
    let mut opts = options();
    opts.scheduler = "epvm".into();
    opts.heartbeat_ttl = Duration::from_secs(5);
    let m = Manager::start(opts, store.clone(), Shutdown::new())
        .await
        .unwrap();
    let beat_of = |name: &str, cpus: f64, used: u64| {
        let mut hb = beat(name, cpus, Vec::new(), true);
        hb.stats.memory_used = used;
        hb
    };
    for i in 0..12u64 {
        let name = format!("n{i:02}");
        m.heartbeat(
            &name,
            beat_of(&name, [4.0, 8.0, 16.0][i as usize % 3], i << 28),
        )
        .await
        .unwrap();
    }
    let spec = |i: usize| -> TaskSpec {
        let (cpus, memory) = [(0.25, 64u64 << 20), (0.5, 256 << 20), (1.0, 1 << 30)][i % 3];
        serde_json::from_value(serde_json::json!({
            "name": format!("t{i}"), "image": "busybox", "cpus": cpus, "memory": memory
        }))
        .unwrap()
    };
    let settle = || async {
        for _ in 0..20 {
            m.dispatch_once().await;
            tokio::task::yield_now().await;
        }
    };
    let mut n = 0;
    let mut submit = |k: usize| {
        let subs: Vec<_> = (n..n + k).map(|i| (None, spec(i))).collect();
        n += k;
        subs
    };
    m.submit(submit(40)).await.unwrap();
    settle().await;
    // A new node comes; used memory moves; a node grows.
    m.heartbeat("n99", beat_of("n99", 16.0, 0)).await.unwrap();
    m.submit(submit(10)).await.unwrap();
    settle().await;
    // Only the used memory moves (the same capacity as at registration).
    m.heartbeat("n03", beat_of("n03", 4.0, 7 << 30))
        .await
        .unwrap();
    m.submit(submit(10)).await.unwrap();
    settle().await;
    m.heartbeat("n04", beat_of("n04", 32.0, 0)).await.unwrap();
    m.submit(submit(40)).await.unwrap();
    settle().await;
    // Reports: some placed tasks run.
    let placed: Vec<Task> = m
        .tasks(Some(TaskState::Scheduled), None)
        .into_iter()
        .take(10)
        .collect();
    for t in &placed {
        let mut s = TaskStatus::of(t);
        s.state = TaskState::Running;
        m.report(t.node.as_deref().unwrap(), vec![s]).await.unwrap();
    }
    m.set_eligibility("n05", false).await.unwrap();
    m.submit(submit(40)).await.unwrap();
    settle().await;
    // Failed dispatches come back after their backoff and are placed again.
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    // All but n00 keep beating (their used memory moving); n00 is lost after its TTL.
    for used in [1u64 << 30, 2 << 30] {
        for i in 1..12u64 {
            let name = format!("n{i:02}");
            m.heartbeat(&name, beat_of(&name, 16.0, used))
                .await
                .unwrap();
        }
        m.heartbeat("n99", beat_of("n99", 16.0, 0)).await.unwrap();
        m.submit(submit(10)).await.unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(3)).await;
    }
    assert!(
        m.check_nodes_once().await.contains(&"n00".to_string()) || {
            lock(&m.inner.state).nodes["n00"].state == NodeState::Down
        }
    );
    m.submit(submit(40)).await.unwrap();
    settle().await;
    assert!(m.metrics().placements.load(Ordering::Relaxed) >= 160);
    // The snapshots kept change by change equal a rebuild from the tasks.
    let mut st = lock(&m.inner.state);
    let kept: std::collections::BTreeMap<String, poseidon_schedulers::NodeSnapshot> = st
        .snapshots
        .iter()
        .map(|s| (s.id.clone(), s.clone()))
        .collect();
    st.rebuild_snapshots();
    assert_eq!(kept.len(), st.snapshots.len());
    for s in &st.snapshots {
        let k = &kept[&s.id];
        assert!((k.reserved_cpus - s.reserved_cpus).abs() < 1e-9, "{}", s.id);
        let same = (
            k.up,
            k.cpus,
            k.memory,
            k.reserved_memory,
            k.used_memory,
            k.tasks,
        ) == (
            s.up,
            s.cpus,
            s.memory,
            s.reserved_memory,
            s.used_memory,
            s.tasks,
        );
        assert!(same && k.eligibility == s.eligibility, "{k:?} != {s:?}");
    }
}

/// What the worker stand-in of [`slow_worker`] saw.
#[derive(Default)]
struct WorkerSeen {
    requests: AtomicUsize,
    assignments: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

/// A worker stand-in on loopback that takes every `POST /assignments` after `delay`, counting
/// requests, assignments and the most requests it held at once. Returns its URL.
async fn slow_worker(delay: Duration, seen: Arc<WorkerSeen>) -> String {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (io, _) = listener.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let now = seen.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                            seen.most_in_flight.fetch_max(now, Ordering::SeqCst);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let batch: crate::wire::AssignmentBatch =
                                serde_json::from_slice(&body).unwrap();
                            tokio::time::sleep(delay).await;
                            seen.requests.fetch_add(1, Ordering::SeqCst);
                            seen.assignments
                                .fetch_add(batch.assignments.len(), Ordering::SeqCst);
                            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
                            let reply =
                                serde_json::to_vec(&crate::wire::AssignmentReply::default())
                                    .unwrap();
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(reply)),
                            ))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(io);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_worker_gets_one_request_at_a_time_and_bigger_batches_under_load() {
    let store = TestStore::new();
    let m = manager(&store).await;
    let seen = Arc::new(WorkerSeen::default());
    let url = slow_worker(Duration::from_millis(50), seen.clone()).await;
    let mut b = beat("n1", 64.0, Vec::new(), true);
    b.address = url;
    m.heartbeat("n1", b).await.unwrap();
    // 40 submitters at once, 5 tasks each, one task a request.
    let mut submitters = Vec::new();
    for _ in 0..40 {
        let m = m.clone();
        submitters.push(tokio::spawn(async move {
            for _ in 0..5 {
                m.submit(vec![(None, spec(0.01))]).await.unwrap();
            }
        }));
    }
    for s in submitters {
        s.await.unwrap();
    }
    wait_until(
        "the worker to be sent all 200 tasks",
        || seen.assignments.load(Ordering::SeqCst) == 200,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(m.inner.outboxes.waiting(), 0);
    let requests = seen.requests.load(Ordering::SeqCst);
    assert_eq!(
        seen.most_in_flight.load(Ordering::SeqCst),
        1,
        "more than one request in flight to one worker"
    );
    // Each request takes 50 ms, so while one is out the next batch gathers what was placed.
    assert!(
        requests < 100,
        "200 tasks took {requests} requests: the outbox did not batch"
    );
}
