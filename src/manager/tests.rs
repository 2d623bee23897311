//! Tests of the manager against a store that fails or holds writes on demand: what was
//! acknowledged and what memory holds must never disagree (holes 2 and 3 of issue 11), and tasks
//! that did not fit are retried when a node grows (hole 6). They use the public API only.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::store::{KeyValue, MemStore, Op, Pending, Space, StoreStats};
use crate::wire::{Heartbeat, HeartbeatReply, NodeStats, TaskStatus};

/// A held write and how to complete it.
type Held = (
    Vec<Op>,
    tokio::sync::oneshot::Sender<Result<(), StoreError>>,
);

/// A [`MemStore`] that fails the next writes, or holds writes until released, on demand.
#[derive(Default)]
pub(super) struct TestStore {
    inner: MemStore,
    /// Writes still to fail.
    fail: AtomicUsize,
    /// Writes still to let through before holding every later one (`usize::MAX`: never hold).
    pass_before_hold: AtomicUsize,
    held: Mutex<VecDeque<Held>>,
    /// Operations submitted so far (records written or deleted), failed ones included.
    ops: AtomicUsize,
}

impl TestStore {
    pub(super) fn new() -> Arc<Self> {
        let s = TestStore::default();
        s.pass_before_hold.store(usize::MAX, Ordering::SeqCst);
        Arc::new(s)
    }

    fn fail_next(&self, n: usize) {
        self.fail.store(n, Ordering::SeqCst);
    }

    fn hold_after(&self, n: usize) {
        self.pass_before_hold.store(n, Ordering::SeqCst);
    }

    /// Completes every held write, in order, and stops holding.
    async fn release(&self) {
        self.pass_before_hold.store(usize::MAX, Ordering::SeqCst);
        let held: Vec<_> = self.held.lock().unwrap().drain(..).collect();
        for (ops, tx) in held {
            let r = self.inner.write(ops).await;
            tx.send(r).ok();
        }
    }

    fn tasks(&self) -> Vec<Task> {
        store::load_tasks(&self.inner).unwrap()
    }

    fn ops(&self) -> usize {
        self.ops.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Store for TestStore {
    fn submit(&self, ops: Vec<Op>) -> Pending {
        self.ops.fetch_add(ops.len(), Ordering::SeqCst);
        if self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Pending::ready(Err(StoreError::Db("injected failure".into())));
        }
        let pass = self
            .pass_before_hold
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                usize::MAX => Some(n),
                0 => None,
                n => Some(n - 1),
            })
            .is_ok();
        if pass {
            return self.inner.submit(ops);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.held.lock().unwrap().push_back((ops, tx));
        Pending::from_receiver(rx)
    }

    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(space)
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

pub(super) fn options() -> ManagerOptions {
    ManagerOptions {
        scheduler: "round-robin".into(),
        // Long enough that no node is counted down during a test.
        heartbeat_ttl: Duration::from_secs(60),
        dispatch_backoff: Duration::from_secs(10),
        max_heartbeats_per_second: 50,
        known_workers: Vec::new(),
    }
}

pub(super) async fn manager(store: &Arc<TestStore>) -> Manager {
    Manager::start(options(), store.clone(), Shutdown::new())
        .await
        .unwrap()
}

/// A heartbeat from `name` at an address nothing listens on (dispatches to it fail).
pub(super) fn beat(name: &str, cpus: f64, tasks: Vec<TaskStatus>, full: bool) -> Heartbeat {
    Heartbeat {
        name: name.into(),
        address: "http://127.0.0.1:9".into(),
        capacity: Capacity {
            cpus,
            memory: 8 << 30,
        },
        stats: NodeStats::default(),
        healthy: true,
        problem: None,
        tasks,
        full,
        host_volumes: Vec::new(),
        labels: Default::default(),
        endpoint_address: None,
    }
}

/// Registers (or re-registers) `n1` with `cpus` and no tasks, by a full heartbeat.
async fn n1_with(m: &Manager, cpus: f64) {
    m.heartbeat("n1", beat("n1", cpus, Vec::new(), true))
        .await
        .unwrap();
}

pub(super) fn spec(cpus: f64) -> TaskSpec {
    serde_json::from_value(serde_json::json!({"name": "t", "image": "busybox", "cpus": cpus}))
        .unwrap()
}

pub(super) async fn wait_until(what: &str, mut ok: impl FnMut() -> bool, deadline: Duration) {
    let until = Instant::now() + deadline;
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_retried_stop_after_a_failed_write_writes_again_and_survives_a_restart() {
    let store = TestStore::new();
    let m = manager(&store).await;
    let id = m.submit(vec![(None, spec(0.1))]).await.unwrap()[0].id;
    // No node: the task stays Pending, with its reason written once.
    wait_until(
        "the no-node reason",
        || {
            m.task(id)
                .and_then(|t| t.reason)
                .is_some_and(|r| r.contains("no node"))
        },
        Duration::from_secs(10),
    )
    .await;

    store.fail_next(1);
    let err = m.stop(id, false).await.expect_err("the write failed");
    assert!(matches!(err, ManagerError::Store(_)), "{err}");
    let t = m.task(id).unwrap();
    assert_eq!(
        (t.desired, t.state),
        (Desired::Run, TaskState::Pending),
        "nothing acknowledged, nothing kept"
    );

    let t = m
        .stop(id, false)
        .await
        .expect("the retry succeeds")
        .unwrap();
    assert_eq!((t.desired, t.state), (Desired::Stop, TaskState::Completed));
    let stored = store.tasks();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].desired, stored[0].state),
        (Desired::Stop, TaskState::Completed),
        "the retried stop is on disk"
    );
    // A manager started on the same store does not run it again.
    let again = manager(&store).await;
    let t = again.task(id).unwrap();
    assert_eq!((t.desired, t.state), (Desired::Stop, TaskState::Completed));
}

#[tokio::test]
async fn a_retried_report_after_a_failed_write_writes_again() {
    let store = TestStore::new();
    // A task placed on n1 at generation 1, as a manager before a restart left it.
    let mut t = Task::new(TaskId::new(), spec(0.1), TaskState::Pending);
    t.node = Some("n1".into());
    t.generation = 1;
    t.set_state(TaskState::Scheduled, "placed on n1").unwrap();
    let record = NodeRecord::new(
        "n1",
        "http://127.0.0.1:9",
        Capacity {
            cpus: 4.0,
            memory: 8 << 30,
        },
    );
    store
        .write(vec![
            Op::put_task(&t).unwrap(),
            Op::put_node("n1", &record).unwrap(),
        ])
        .await
        .unwrap();
    let m = manager(&store).await;
    let mut running = TaskStatus::of(&t);
    running.state = TaskState::Running;
    running.container_id = Some("c1".into());

    store.fail_next(1);
    let err = m
        .report("n1", vec![running.clone()])
        .await
        .expect_err("the write failed");
    assert!(matches!(err, ManagerError::Store(_)), "{err}");
    assert_eq!(m.task(t.id).unwrap().state, TaskState::Scheduled);

    m.report("n1", vec![running])
        .await
        .expect("the retry succeeds");
    let stored = store.tasks();
    assert_eq!(
        (stored[0].state, stored[0].container_id.as_deref()),
        (TaskState::Running, Some("c1")),
        "the retried report is on disk"
    );
}

#[tokio::test]
async fn a_full_heartbeat_never_carries_a_placement_whose_write_is_not_synced() {
    let store = TestStore::new();
    let m = manager(&store).await;
    n1_with(&m, 4.0).await;
    let unsent = |reply: HeartbeatReply, id: TaskId| {
        let sent: Vec<TaskId> = reply.assign.iter().map(|a| a.id).collect();
        assert!(
            !sent.contains(&id),
            "a placement not yet durable was sent: {sent:?}"
        );
    };

    // Placed by its submission: the one write that carries the placement is held.
    store.hold_after(0);
    let submitting = {
        let m = m.clone();
        tokio::spawn(async move { m.submit(vec![(None, spec(0.1))]).await })
    };
    let mut held = None;
    wait_until(
        "the placement in memory",
        || {
            held = m.tasks(None, None).first().map(|t| (t.id, t.generation));
            held.is_some_and(|(_, g)| g == 1)
        },
        Duration::from_secs(10),
    )
    .await;
    let (id, _) = held.unwrap();
    let reply = m.heartbeat("n1", beat("n1", 4.0, Vec::new(), true));
    unsent(reply.await.unwrap(), id);
    store.release().await;
    let placed = submitting.await.unwrap().unwrap();
    assert_eq!((placed[0].id, placed[0].generation), (id, 1));

    // Placed by the dispatcher (queued behind a task that fits nowhere): the submission's write
    // goes through, the dispatcher's is held.
    store.hold_after(1);
    let subs = vec![(None, spec(64.0)), (None, spec(0.1))];
    let id = m.submit(subs).await.unwrap()[1].id;
    wait_until(
        "the dispatcher's placement",
        || m.task(id).is_some_and(|t| t.generation == 1),
        Duration::from_secs(10),
    )
    .await;
    let reply = m.heartbeat("n1", beat("n1", 4.0, Vec::new(), true));
    unsent(reply.await.unwrap(), id);
    store.release().await;
}

/// The CPUs reserved on n1, rounded to a thousandth.
fn reserved(m: &Manager) -> f64 {
    let n = m.nodes().into_iter().find(|n| n.name == "n1").unwrap();
    (n.reserved_cpus * 1000.0).round() / 1000.0
}

#[tokio::test]
async fn a_submission_that_fits_is_placed_in_its_one_write_unless_a_task_waits_ahead() {
    let store = TestStore::new();
    let m = manager(&store).await;
    n1_with(&m, 4.0).await;
    let before = store.ops();
    let t = m.submit(vec![(None, spec(0.1))]).await.unwrap().remove(0);
    assert_eq!(store.ops() - before, 1, "one record written for the task");
    assert_eq!(
        (t.state, t.generation, t.node.as_deref()),
        (TaskState::Scheduled, 1, Some("n1"))
    );
    let history: Vec<(TaskState, &str)> = t.events.iter().map(|e| (e.state, &*e.reason)).collect();
    assert_eq!(
        history,
        [
            (TaskState::Pending, "submitted"),
            (TaskState::Scheduled, "placed on n1")
        ]
    );
    let stored = store.tasks();
    assert_eq!(
        (stored.len(), stored[0].state, stored[0].generation),
        (1, TaskState::Scheduled, 1),
        "the placement is what was written"
    );
    assert_eq!(reserved(&m), 0.1, "the node's reservation counts it");

    // First come, first placed: within one request, a task that fits nowhere goes to the queue
    // and so does every task after it; the dispatcher then places what fits.
    let subs = vec![(None, spec(64.0)), (None, spec(0.1))];
    let ts = m.submit(subs).await.unwrap();
    assert_eq!(
        ts.iter()
            .map(|t| (t.state, t.generation))
            .collect::<Vec<_>>(),
        [(TaskState::Pending, 0), (TaskState::Pending, 0)]
    );
    let second = ts[1].id;
    wait_until(
        "the dispatcher's placement of the task behind the big one",
        || m.task(second).is_some_and(|t| t.generation == 1),
        Duration::from_secs(10),
    )
    .await;

    // A failed write forgets the task and gives its reservation back: the same task fits again
    // (the others hold at most 0.2 of n1's 4 cpus; their dispatches to nowhere fail).
    store.fail_next(1);
    m.submit(vec![(None, spec(3.5))])
        .await
        .expect_err("the write failed");
    assert_eq!(m.tasks(None, None).len(), 3);
    let t = m.submit(vec![(None, spec(3.5))]).await.unwrap().remove(0);
    assert_eq!(
        (t.state, t.node.as_deref()),
        (TaskState::Scheduled, Some("n1"))
    );
}

#[tokio::test]
async fn a_node_that_re_registers_with_more_capacity_gets_the_blocked_task() {
    let store = TestStore::new();
    let m = manager(&store).await;
    n1_with(&m, 1.0).await;
    let id = m.submit(vec![(None, spec(2.0))]).await.unwrap()[0].id;
    wait_until(
        "the no-fit reason",
        || {
            m.task(id)
                .and_then(|t| t.reason)
                .is_some_and(|r| r.contains("n1: needs 2 cpus"))
        },
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(m.task(id).unwrap().generation, 0);
    n1_with(&m, 4.0).await;
    // Well under the periodic retry (2 s): the growth itself must trigger the retry.
    wait_until(
        "the placement on the grown node",
        || {
            m.task(id)
                .is_some_and(|t| t.generation == 1 && t.node.as_deref() == Some("n1"))
        },
        Duration::from_millis(1500),
    )
    .await;
}

#[tokio::test]
async fn at_most_one_leaves_room_for_the_kill_before_the_ttl() {
    let store = TestStore::new();
    let mut opts = options();
    opts.heartbeat_ttl = Duration::from_secs(1);
    let m = Manager::start(opts, store.clone(), Shutdown::new())
        .await
        .unwrap();
    let mut late = spec(0.1);
    late.stop_after_disconnect_ms = Some(800);
    let err = m.submit(vec![(None, late)]).await.expect_err("refused");
    let msg = err.to_string();
    assert!(matches!(err, ManagerError::Invalid(_)), "{msg}");
    assert!(
        msg.contains("heartbeat_ttl (1000 ms)") && msg.contains("for the kill to land"),
        "{msg}"
    );
    let mut fits = spec(0.1);
    fits.stop_after_disconnect_ms = Some(700);
    m.submit(vec![(None, fits)])
        .await
        .expect("700 ms + 250 ms fits in 1 s");
}

/// A submission that no node fits is written once, with why, in its own write: the dispatcher,
/// which takes it next, finds the same reason and writes nothing more. Before, the dispatcher wrote
/// the reason in a second write, so a manager with no room (or no workers) wrote every task of a
/// one-task request twice.
#[tokio::test]
async fn a_submission_that_fits_nowhere_is_written_once_with_why() {
    let store = TestStore::new();
    let m = manager(&store).await;
    let blocked = |m: &Manager| lock(&m.inner.state).blocked.len();
    let history = |t: &Task| -> Vec<(TaskState, String)> {
        t.events
            .iter()
            .map(|e| (e.state, e.reason.to_string()))
            .collect()
    };

    // No worker at all: the manager alone.
    let before = store.ops();
    let first = m.submit(vec![(None, spec(0.1))]).await.unwrap().remove(0);
    assert_eq!(
        history(&first),
        [
            (TaskState::Pending, "submitted".to_string()),
            (TaskState::Pending, "no nodes are registered".to_string())
        ]
    );
    wait_until(
        "one blocked task",
        || blocked(&m) == 1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(store.ops() - before, 1, "one record written for the task");
    assert_eq!(
        store.tasks()[0].reason.as_deref(),
        Some("no nodes are registered")
    );

    // A node too small (a manager of its own: the first task's dispatches to nowhere would
    // rewrite it meanwhile): the reason is written with the task, and only once.
    let store = TestStore::new();
    let m = manager(&store).await;
    n1_with(&m, 1.0).await;
    let before = store.ops();
    let t = m.submit(vec![(None, spec(2.0))]).await.unwrap().remove(0);
    let reason = t.reason.clone().unwrap();
    assert!(reason.contains("n1: needs 2 cpus"), "{reason}");
    wait_until(
        "the big task blocked",
        || blocked(&m) == 1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(store.ops() - before, 1, "the dispatcher wrote nothing more");
    let stored = store.tasks();
    let stored = stored.iter().find(|s| s.id == t.id).unwrap();
    assert_eq!(stored.reason.as_deref(), Some(reason.as_str()));
}

/// Tasks submitted behind others (here, later in the same request; under load, behind the
/// dispatch queue) are tried too: when nothing fits, each is written once, with why. Before, they
/// queued untried and the dispatcher wrote each a second time with its reason (5 records here).
#[tokio::test]
async fn tasks_submitted_behind_others_that_fit_nowhere_are_written_once_with_why() {
    let store = TestStore::new();
    let m = manager(&store).await;
    let before = store.ops();
    let tasks = m
        .submit((0..3).map(|_| (None, spec(0.1))).collect())
        .await
        .unwrap();
    for t in &tasks {
        assert_eq!(t.reason.as_deref(), Some("no nodes are registered"));
    }
    wait_until(
        "three blocked tasks",
        || lock(&m.inner.state).blocked.len() == 3,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(store.ops() - before, 3, "one record written for each task");

    // One that fits, behind one that does not, keeps its turn: it is queued untried and the
    // dispatcher places it.
    n1_with(&m, 1.0).await;
    let both = m
        .submit(vec![(None, spec(2.0)), (None, spec(0.5))])
        .await
        .unwrap();
    assert!(both[0]
        .reason
        .as_deref()
        .unwrap_or_default()
        .contains("needs 2 cpus"));
    assert_eq!(both[1].state, TaskState::Pending);
    assert_eq!(both[1].reason.as_deref(), Some("submitted"));
    let small = both[1].id;
    wait_until(
        "the small task placed by the dispatcher",
        || {
            m.task(small)
                .is_some_and(|t| t.events.iter().any(|e| &*e.reason == "placed on n1"))
        },
        Duration::from_secs(10),
    )
    .await;
}

/// Submits `n` tasks of `cpus` in one request; their ids.
async fn submit_ids(m: &Manager, n: usize, cpus: f64) -> Vec<TaskId> {
    let tasks = m.submit((0..n).map(|_| (None, spec(cpus))).collect()).await;
    tasks.unwrap().iter().map(|t| t.id).collect()
}

/// The no-fit reason a blocked task's retries compare against is forgotten once the task is
/// stopped or purged (the map grew with every task ever blocked).
#[tokio::test]
async fn a_stopped_or_purged_blocked_task_leaves_no_reason_behind() {
    let store = TestStore::new();
    let m = manager(&store).await;
    let ids = submit_ids(&m, 2, 0.1).await;
    let shapes = |m: &Manager| lock(&m.inner.state).blocked_shape.len();
    wait_until(
        "two blocked reasons noted",
        || shapes(&m) == 2,
        Duration::from_secs(10),
    )
    .await;
    m.stop(ids[0], false).await.unwrap();
    assert!(!lock(&m.inner.state).blocked_shape.contains_key(&ids[0]));
    m.stop(ids[1], false).await.unwrap();
    m.stop(ids[1], true).await.unwrap();
    assert_eq!(shapes(&m), 0);
}

#[tokio::test]
async fn a_retry_of_blocked_tasks_does_not_rewrite_an_unchanged_reason() {
    let store = TestStore::new();
    let m = manager(&store).await;
    n1_with(&m, 1.0).await;
    let ids = submit_ids(&m, 3, 2.0).await;
    let blocked = |m: &Manager| lock(&m.inner.state).blocked.len();
    wait_until(
        "three blocked tasks",
        || blocked(&m) == 3,
        Duration::from_secs(10),
    )
    .await;
    let writes = store.stats().writes;
    assert_eq!(m.retry_blocked_once(), 3);
    m.dispatch_once().await;
    wait_until(
        "the tasks blocked again",
        || blocked(&m) == 3,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        store.stats().writes,
        writes,
        "the same rejections: no task was rewritten"
    );
    for id in ids {
        let reason = m.task(id).unwrap().reason.unwrap();
        assert!(reason.contains("n1: needs 2 cpus, 1 free"), "{reason}");
    }
}

/// 100 nodes register at once with at most 10 beats a second: the first were told the short
/// interval (and TTL, 5 s) of a small cluster. Silent for 6 s (a manager busy with everyone's
/// registration answers late), none is counted down, as the TTL the manager chooses for 100 nodes
/// is 20 s; silent past that, all are (paused time). Before, half of them went down at 5 s.
#[tokio::test(start_paused = true)]
async fn nodes_told_a_short_ttl_while_the_cluster_was_small_get_the_ttl_of_the_cluster_as_it_is() {
    let store = TestStore::new();
    let mut opts = options();
    opts.heartbeat_ttl = Duration::from_secs(5);
    opts.max_heartbeats_per_second = 10;
    let m = Manager::start(opts, store.clone(), Shutdown::new())
        .await
        .unwrap();
    for i in 0..100 {
        let n = format!("n{i:03}");
        let r = m
            .heartbeat(&n, beat(&n, 4.0, Vec::new(), true))
            .await
            .unwrap();
        if i == 0 {
            assert_eq!(
                r.heartbeat_interval_ms,
                Some(100),
                "the first is told 0.1 s"
            );
        }
    }
    let down = |m: &Manager| {
        lock(&m.inner.state)
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Down)
            .count()
    };
    tokio::time::advance(Duration::from_secs(6)).await;
    m.check_nodes_once().await;
    assert_eq!(down(&m), 0, "counted down before the cluster's TTL");
    tokio::time::advance(Duration::from_millis(14_100)).await;
    m.check_nodes_once().await;
    assert_eq!(down(&m), 100, "every silent node down after 20 s");
}

/// Heartbeats sized by the manager: with 100 nodes and at most 10 heartbeats a second, each worker
/// is told 10 s and its TTL is 20 s (`liveness::heartbeat_plan`); nodes that keep the told interval
/// stay up, the manager receives at most 10 a second, and the one that falls silent is counted down
/// within the TTL the manager chose (paused time, checked every 100 ms).
#[tokio::test(start_paused = true)]
async fn a_silent_node_is_counted_down_within_the_ttl_the_manager_chose() {
    let store = TestStore::new();
    let mut opts = options();
    opts.heartbeat_ttl = Duration::from_secs(5);
    opts.max_heartbeats_per_second = 10;
    let m = Manager::start(opts, store.clone(), Shutdown::new())
        .await
        .unwrap();
    let names: Vec<String> = (0..100).map(|i| format!("n{i:03}")).collect();
    let beat_all = |skip: Option<&'static str>| {
        let (m, names) = (m.clone(), names.clone());
        async move {
            let mut told = Vec::new();
            for n in names.iter().filter(|n| Some(n.as_str()) != skip) {
                let r = m
                    .heartbeat(n, beat(n, 4.0, Vec::new(), true))
                    .await
                    .unwrap();
                told.push(r.heartbeat_interval_ms);
            }
            told
        }
    };
    // Registration: the told interval grows with the count, 0.1 s per node at 10 a second.
    let first = beat_all(None).await;
    assert_eq!(first[0], Some(100));
    assert_eq!(first[99], Some(10_000));
    // Everyone once more at the full size: all told 10 s, TTL 20 s.
    let told = beat_all(None).await;
    assert!(told.iter().all(|t| *t == Some(10_000)), "{told:?}");
    let ttl = Duration::from_secs(20);
    let silent = "n042";
    let start = tokio::time::Instant::now();
    let step = Duration::from_millis(100);
    let mut next_round = start + Duration::from_secs(10);
    let mut sent = 0usize;
    let detected = loop {
        tokio::time::advance(step).await;
        let now = tokio::time::Instant::now();
        if now >= next_round {
            sent += beat_all(Some(silent)).await.len();
            next_round += Duration::from_secs(10);
        }
        m.check_nodes_once().await;
        let down: Vec<String> = lock(&m.inner.state)
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Down)
            .map(|n| n.record.name.clone())
            .collect();
        if !down.is_empty() {
            assert_eq!(down, vec![silent.to_string()]);
            break now - start;
        }
        assert!(now - start < ttl * 5, "not detected within 5 TTLs");
    };
    assert!(
        detected > ttl && detected <= ttl + step,
        "detected after {detected:?}, TTL {ttl:?}"
    );
    // Two rounds of 99 beats in 20 s: under 10 a second.
    let rate = sent as f64 / detected.as_secs_f64();
    assert!(rate <= 10.0, "{rate} heartbeats a second");
    // The others, beating every told interval, stay up for ten more TTLs.
    let until = tokio::time::Instant::now() + ttl * 10;
    while tokio::time::Instant::now() < until {
        tokio::time::advance(Duration::from_secs(1)).await;
        if tokio::time::Instant::now() >= next_round {
            beat_all(Some(silent)).await;
            next_round += Duration::from_secs(10);
        }
        m.check_nodes_once().await;
    }
    let down = lock(&m.inner.state)
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Down)
        .count();
    assert_eq!(down, 1);
}

/// A worker's `endpoint_address` (a worker in a container that publishes its tasks' ports on the
/// host's engine) is what the catalog gives its endpoints; without one, the host of its advertised
/// address; a change moves them at once; a value that is not an IP address is refused.
#[tokio::test]
async fn a_nodes_endpoint_address_is_where_the_catalog_sends_its_endpoints() {
    let store = TestStore::new();
    let m = manager(&store).await;
    let mut hb = beat("n1", 2.0, Vec::new(), true);
    hb.endpoint_address = Some("fd00:0:0::1".into());
    m.heartbeat("n1", hb.clone()).await.unwrap();
    let view = m.nodes().into_iter().find(|n| n.name == "n1").unwrap();
    assert_eq!(view.endpoint_address.as_deref(), Some("fd00::1"));
    let body = serde_json::json!({
        "name": "web", "count": 1, "task": {"image": "busybox", "ports": ["80"]},
        "publish": [{"port": 8080, "target": 80}]});
    let spec = crate::spec::parse_service(body.to_string().as_bytes(), None).unwrap();
    m.create_service(spec).await.unwrap();
    let mut placed = None;
    wait_until(
        "the service's copy to be placed on n1",
        || {
            placed = m
                .tasks(None, None)
                .into_iter()
                .find(|t| t.service.as_deref() == Some("web") && t.node.as_deref() == Some("n1"));
            placed.is_some()
        },
        Duration::from_secs(10),
    )
    .await;
    let mut status = TaskStatus::of(&placed.unwrap());
    status.state = TaskState::Running;
    status.container_id = Some("c1".into());
    status.host_ports = vec![crate::task::HostPort {
        container_port: 80,
        host_port: 32768,
        protocol: "tcp".into(),
    }];
    m.report("n1", vec![status]).await.unwrap();
    let where_ = |m: &Manager| {
        let (_, eps) = m.catalog_service("web").unwrap();
        eps.iter()
            .map(|e| (e.address.clone(), e.port))
            .collect::<Vec<_>>()
    };
    assert_eq!(where_(&m), [("fd00::1".to_string(), 32768)]);
    let (_, mesh) = m.catalog_mesh();
    assert_eq!(mesh[0].entries[0].endpoints[0].address, "fd00::1");

    // The worker drops the key: its endpoints are at its advertised host again, at once.
    hb.endpoint_address = None;
    hb.full = false;
    m.heartbeat("n1", hb.clone()).await.unwrap();
    assert_eq!(where_(&m), [("127.0.0.1".to_string(), 32768)]);

    for bad in ["worker-1", "0.0.0.0", "::", "10.0.0.5:80", ""] {
        hb.endpoint_address = Some(bad.into());
        let e = m.heartbeat("n1", hb.clone()).await.unwrap_err();
        assert!(
            matches!(&e, ManagerError::Invalid(s) if s.contains("endpoint_address")),
            "{bad:?}: {e}"
        );
    }
    assert_eq!(where_(&m), [("127.0.0.1".to_string(), 32768)]);
}

#[tokio::test]
async fn tasks_with_equal_specs_share_one_body_in_memory_after_submission_and_after_a_restart() {
    let named = |name: &str, cpus: f64| -> TaskSpec {
        serde_json::from_value(serde_json::json!({"name": name, "image": "busybox", "cpus": cpus}))
            .expect("a spec")
    };
    let store = TestStore::new();
    let m = manager(&store).await;
    let mut ids = Vec::new();
    // One request each, so every body is decoded apart.
    for (name, cpus) in [("job-1", 0.1), ("job-2", 0.1), ("job-3", 0.2)] {
        ids.push(
            m.submit(vec![(None, named(name, cpus))])
                .await
                .expect("accepted")[0]
                .id,
        );
    }
    let check = |m: &Manager| {
        let t: Vec<Task> = ids.iter().map(|id| m.task(*id).expect("known")).collect();
        assert_eq!(
            t.iter().map(|t| t.spec.name.as_str()).collect::<Vec<_>>(),
            ["job-1", "job-2", "job-3"]
        );
        assert!(
            Arc::ptr_eq(&t[0].spec.body, &t[1].spec.body),
            "equal bodies share"
        );
        assert!(
            !Arc::ptr_eq(&t[0].spec.body, &t[2].spec.body),
            "cpus differ"
        );
        assert_eq!(t[2].spec.cpus, 0.2);
    };
    check(&m);
    drop(m);
    let m = manager(&store).await;
    check(&m);
}

#[tokio::test]
async fn a_large_request_places_at_most_a_dispatch_pass_under_the_lock() {
    let store = TestStore::new();
    let m = manager(&store).await;
    n1_with(&m, 4.0).await;
    let subs: Vec<_> = (0..4097).map(|_| (None, spec(0.0))).collect();
    let ts = m.submit(subs).await.unwrap();
    let scheduled = ts
        .iter()
        .filter(|t| t.state == TaskState::Scheduled)
        .count();
    assert_eq!(scheduled, 4096, "one dispatch pass placed by the request");
    assert_eq!(ts[4096].state, TaskState::Pending, "the rest queued");
}
