//! Worker tests that need paused time or a store double: the at-most-one deadline, assignment
//! batches (one write, a budget, idempotence), and the backoff reset after a long run.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use poseidon_runtimes::mock::{MockRuntime, Op as MockOp};
use poseidon_runtimes::ContainerStatus;
use tokio::time::Instant;

use super::{api, Worker, WorkerOptions};
use crate::http::{Req, Shutdown};
use crate::store::{self, KeyValue, MemStore, Op, Pending, Space, Store, StoreError, StoreStats};
use crate::task::{Desired, State, TaskId, TaskSpec};
use crate::wire::{Assignment, AssignmentBatch, Capacity};

/// A manager address where nothing answers.
const NO_MANAGER: &str = "http://127.0.0.1:9";

fn opts(manager: Option<&str>) -> WorkerOptions {
    WorkerOptions {
        name: "solo".into(),
        advertise: "http://127.0.0.1:1".into(),
        manager: manager.map(str::to_string),
        managers: Vec::new(),
        capacity: Capacity {
            cpus: 4.0,
            memory: 8 << 30,
        },
        heartbeat_interval: Duration::from_millis(200),
        // The default: longer than the manager's default TTL of 5 s.
        stop_grace: Duration::from_secs(10),
        network: None,
        host_volumes: BTreeMap::new(),
        labels: Default::default(),
        endpoint_address: None,
    }
}

async fn start(mock: &MockRuntime, store: Arc<dyn Store>, manager: Option<&str>) -> Worker {
    Worker::start(
        opts(manager),
        Arc::new(mock.clone()),
        store,
        Shutdown::new(),
    )
    .await
    .unwrap()
}

fn spec(json: &str) -> TaskSpec {
    crate::spec::parse_submission(json.as_bytes()).unwrap().spec
}

/// Polls (on tokio's clock) until task `id` is Running with `restarts` restarts; its container.
async fn running(w: &Worker, id: TaskId, restarts: u32) -> String {
    for _ in 0..2_000 {
        if let Some(t) = w.task(id) {
            if t.state == State::Running && t.restart_count == restarts {
                if let Some(c) = t.container_id {
                    return c;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "task {id} never ran with {restarts} restarts: {:?}",
        w.task(id)
    );
}

/// A store whose writes take `delay` (on tokio's clock) to be synced, a slow disk, and fail while
/// `failing` is set, a full one.
struct SlowStore {
    inner: Arc<MemStore>,
    delay: Mutex<Duration>,
    failing: std::sync::atomic::AtomicBool,
}

impl SlowStore {
    fn new(inner: Arc<MemStore>, delay: Duration) -> SlowStore {
        SlowStore {
            inner,
            delay: Mutex::new(delay),
            failing: false.into(),
        }
    }
}

#[async_trait::async_trait]
impl Store for SlowStore {
    fn submit(&self, ops: Vec<Op>) -> Pending {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Pending::ready(Err(StoreError::Db("disk full".into())));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let delay = *self.delay.lock().unwrap();
        let inner = self.inner.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The waiter may have given up; the write is applied all the same, as a disk would.
            if tx.send(inner.write(ops).await).is_err() {}
        });
        Pending::from_receiver(rx)
    }

    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(space)
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

async fn post_assignments(w: &Worker, batch: &AssignmentBatch) -> (u16, serde_json::Value) {
    let req = Req {
        method: Method::POST,
        path: vec!["assignments".into()],
        query: Vec::new(),
        body: Bytes::from(serde_json::to_vec(batch).unwrap()),
        principal: crate::security::Principal::Open,
    };
    let resp = api::handle(w.clone(), req).await;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn batch(n: usize) -> AssignmentBatch {
    AssignmentBatch {
        assignments: (0..n)
            .map(|i| Assignment {
                id: TaskId::new(),
                generation: 3,
                spec: spec(&format!(r#"{{"name": "t{i}", "image": "busybox"}}"#)),
                desired: Desired::Run,
            })
            .collect(),
    }
}

#[tokio::test(start_paused = true)]
async fn an_at_most_one_task_that_ignores_sigterm_is_dead_by_stop_after_disconnect() {
    let mock = MockRuntime::new();
    mock.ignore_sigterm("stubborn:1");
    let w = start(&mock, Arc::new(MemStore::new()), Some(NO_MANAGER)).await;
    // No heartbeat ever reaches a manager: the worker's start is the last contact.
    let contact = Instant::now();
    let t = w
        .submit(
            None,
            spec(r#"{"name": "one", "image": "stubborn:1", "stop_after_disconnect": "3s"}"#),
        )
        .await
        .unwrap();
    let cid = running(&w, t.id, 0).await;
    tokio::time::sleep_until(contact + Duration::from_millis(3_000)).await;
    let c = mock.container(&cid);
    assert!(
        c.as_ref()
            .is_none_or(|c| c.status != ContainerStatus::Running),
        "3 s after the last contact the old copy must be dead, but it is {c:?}"
    );
    // It was stopped with the short grace, not the worker's 10 s.
    let stops = mock.calls_of(MockOp::Stop);
    assert_eq!(
        stops,
        vec![poseidon_runtimes::mock::Call::Stop(
            cid,
            Duration::from_millis(750)
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_one_write_answered_within_the_budget_and_a_repeat_changes_nothing() {
    let mock = MockRuntime::new();
    let mem = Arc::new(MemStore::new());
    let slow = Arc::new(SlowStore::new(mem.clone(), Duration::from_secs(1)));
    let w = start(&mock, slow, None).await;
    let b = batch(40);
    let writes = mem.stats().writes;
    let t0 = Instant::now();
    let (status, reply) = post_assignments(&w, &b).await;
    let took = t0.elapsed();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"].as_array().unwrap().len(), 40, "{reply}");
    assert_eq!(reply["rejected"], serde_json::json!([]), "{reply}");
    // One synced write of one second, not forty: well within the manager's 30 s.
    assert!(took < super::accept::ACCEPT_BUDGET, "took {took:?}");
    assert_eq!(mem.stats().writes, writes + 1);
    for a in &b.assignments {
        running(&w, a.id, 0).await;
    }
    let creates = mock.count(MockOp::Create);
    assert_eq!(creates, 40);

    // The same batch again (a retried dispatch), once the supervisors' own writes have landed:
    // accepted, and nothing new written or started.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let writes = mem.stats().writes;
    let (status, reply) = post_assignments(&w, &b).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"].as_array().unwrap().len(), 40, "{reply}");
    assert_eq!(reply["accepted"][0]["generation"], 3, "{reply}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(mem.stats().writes, writes);
    assert_eq!(mock.count(MockOp::Create), creates);
}

/// The tasks `store` holds Running with a container.
fn stored_running(store: &dyn Store) -> usize {
    store::load_tasks(store)
        .unwrap()
        .iter()
        .filter(|t| t.state == State::Running && t.container_id.is_some())
        .count()
}

/// A burst of starts is written in a few batches, not one write a start: a container's start is
/// written by the report that carries it, with every other start of the moment (issue 17). Before,
/// the forty starts below were forty writes.
#[tokio::test(start_paused = true)]
async fn a_burst_of_starts_is_written_in_a_few_batches() {
    let mock = MockRuntime::new();
    let mem = Arc::new(MemStore::new());
    // No manager: the worker used alone writes its starts all the same.
    let w = start(&mock, mem.clone(), None).await;
    let b = batch(40);
    let writes = mem.stats().writes;
    let (status, reply) = post_assignments(&w, &b).await;
    assert_eq!(status, 200, "{reply}");
    for a in &b.assignments {
        running(&w, a.id, 0).await;
    }
    for _ in 0..2_000 {
        if stored_running(mem.as_ref()) == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(stored_running(mem.as_ref()), 40);
    let burst = mem.stats().writes - writes;
    // The batch's own write, then the starts.
    assert!((2..=5).contains(&burst), "{burst} writes for 40 starts");
}

/// A change whose write failed is not left in memory alone: the worker writes it again once the
/// store takes writes (before, it stayed unwritten until the task's next change, and a full
/// heartbeat could report it meanwhile).
#[tokio::test(start_paused = true)]
async fn a_change_whose_write_failed_is_written_once_the_store_recovers() {
    let mock = MockRuntime::new();
    let mem = Arc::new(MemStore::new());
    let store = Arc::new(SlowStore::new(mem.clone(), Duration::ZERO));
    let w = start(&mock, store.clone(), None).await;
    let task = w
        .submit(None, spec(r#"{"name": "a", "image": "busybox"}"#))
        .await
        .unwrap();
    running(&w, task.id, 0).await;
    let noted = |note: &str| {
        store::load_tasks(mem.as_ref())
            .unwrap()
            .iter()
            .any(|t| t.events.iter().any(|e| &*e.reason == note))
    };
    store
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let failed = w.update(task.id, |t| t.record(t.state, "a note")).await;
    assert!(failed.is_err(), "{failed:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!noted("a note"));
    store
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2_000 {
        if noted("a note") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(noted("a note"), "{:?}", store::load_tasks(mem.as_ref()));
}

/// The manager hears of a start only once it is on disk: with a slow disk, every report and
/// heartbeat that says a task runs arrives when the worker's store already holds it Running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_is_on_disk_before_the_manager_hears_of_it() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    /// For each message: its path, the tasks it says run, and how many of those the store held
    /// Running when it arrived.
    type Log = Arc<Mutex<Vec<(String, Vec<String>, usize)>>>;
    struct Checker {
        log: Log,
        store: Arc<MemStore>,
    }
    impl Respond for Checker {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let said: Vec<String> = body["tasks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["state"] == "running")
                .map(|t| t["id"].as_str().unwrap().to_string())
                .collect();
            let stored = store::load_tasks(self.store.as_ref()).unwrap();
            let held = said
                .iter()
                .filter(|id| {
                    stored
                        .iter()
                        .any(|t| t.id.to_string() == **id && t.state == State::Running)
                })
                .count();
            self.log
                .lock()
                .unwrap()
                .push((req.url.path().to_string(), said, held));
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"assign": [], "stop": []}))
        }
    }

    let server = MockServer::start().await;
    let mem = Arc::new(MemStore::new());
    let log: Log = Arc::default();
    Mock::given(method("POST"))
        .respond_with(Checker {
            log: log.clone(),
            store: mem.clone(),
        })
        .mount(&server)
        .await;
    let slow = Arc::new(SlowStore::new(mem.clone(), Duration::from_millis(150)));
    let mock = MockRuntime::new();
    let w = start(&mock, slow, Some(&server.uri())).await;
    let (status, reply) = post_assignments(&w, &batch(10)).await;
    assert_eq!(status, 200, "{reply}");
    // Until every start has been heard of, and a full heartbeat (every tenth beat of 200 ms) has
    // carried them too.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let heard = {
            let log = log.lock().unwrap();
            let ids: HashSet<&String> = log.iter().flat_map(|(_, said, _)| said).collect();
            let full_beat = log
                .iter()
                .any(|(path, said, _)| path.ends_with("/heartbeat") && said.len() == 10);
            ids.len() == 10 && full_beat
        };
        if heard {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not heard of: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = log.lock().unwrap().clone();
    for (path, said, held) in &log {
        assert_eq!(
            said.len(),
            *held,
            "{path} said {} tasks run when the store held {held}: {log:?}",
            said.len()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_not_durable_within_its_budget_is_refused_and_never_runs() {
    let mock = MockRuntime::new();
    let mem = Arc::new(MemStore::new());
    let slow = Arc::new(SlowStore::new(mem.clone(), Duration::from_secs(45)));
    let w = start(&mock, slow, None).await;
    let b = batch(3);
    let t0 = Instant::now();
    let (status, reply) = post_assignments(&w, &b).await;
    let took = t0.elapsed();
    // The manager gives up after 30 s and places the tasks again: the worker must have answered,
    // and refused, before that.
    assert!(took <= super::accept::ACCEPT_BUDGET, "took {took:?}");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"], serde_json::json!([]), "{reply}");
    let rejected = reply["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 3, "{reply}");
    for r in rejected {
        assert!(
            r["error"]
                .as_str()
                .unwrap()
                .contains("not accepted in time"),
            "{reply}"
        );
    }
    // Long after the slow write landed: nothing ran, nothing is held, and the record was undone.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(mock.count(MockOp::Create), 0);
    assert!(w.tasks().is_empty(), "{:?}", w.tasks());
    assert!(store::load_tasks(mem.as_ref()).unwrap().is_empty());
}

/// The restart delays a task announced, in seconds, read from its reason.
fn announced_delay(w: &Worker, id: TaskId) -> Option<f64> {
    let reason = w.task(id)?.reason?;
    let (_, rest) = reason.split_once("restarting in ")?;
    rest.trim_end_matches(" s").parse().ok()
}

#[tokio::test]
async fn after_a_long_run_the_backoff_starts_over_and_stays_short() {
    // Real time: the run's length is measured as the worker measures it, whatever its clock.
    let mock = MockRuntime::new();
    let w = start(&mock, Arc::new(MemStore::new()), None).await;
    let mut s = spec(r#"{"name": "crashy", "image": "busybox", "restart_policy": "always"}"#);
    s.restart_policy.backoff_ms = 100;
    s.restart_policy.max_backoff_ms = 10_000;
    s.restart_policy.reset_after_ms = 500;
    let id = w.submit(None, s).await.unwrap().id;
    let mut delays = Vec::new();
    for k in 0..5u32 {
        let cid = running(&w, id, k).await;
        if k == 3 {
            // A healthy run longer than the reset time.
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
        assert!(mock.kill_externally(&cid, 1));
        let mut delay = None;
        for _ in 0..1_000 {
            delay = announced_delay(&w, id).filter(|_| {
                w.task(id)
                    .is_some_and(|t| t.restart_count == k && t.state == State::Failed)
            });
            if delay.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delays.push(delay.unwrap());
    }
    // Doubling from 0.1 s; the long run resets it to 0.1 s, and the next quick crash waits 0.2 s
    // (not 0.1 s doubled four times, as when only one delay was reset).
    // Each delay was read at restart count k, so the visible counter went on through the reset.
    assert_eq!(delays, vec![0.1, 0.2, 0.4, 0.1, 0.2]);
}

/// The worker waits the longer of its own interval and the one the manager told it (jitter added
/// to the told one, taken off its own), except while it holds an at-most-one task.
#[tokio::test(start_paused = true)]
async fn the_worker_waits_the_interval_the_manager_told_it() {
    use std::sync::atomic::Ordering;
    let mock = MockRuntime::new();
    let w = start(&mock, Arc::new(MemStore::new()), None).await;
    // Own interval 200 ms; nothing told yet.
    assert_eq!(w.next_beat(0.0), Duration::from_millis(200));
    assert_eq!(w.next_beat(0.5), Duration::from_millis(190));
    // Told less than its own: its own stays.
    w.inner.told_interval_ms.store(100, Ordering::SeqCst);
    assert_eq!(w.next_beat(0.0), Duration::from_millis(200));
    // Told 100 s: 100 s plus up to a tenth.
    w.inner.told_interval_ms.store(100_000, Ordering::SeqCst);
    assert_eq!(w.next_beat(0.0), Duration::from_secs(100));
    assert_eq!(w.next_beat(0.5), Duration::from_secs(105));
    // Holding an at-most-one task: back to its own interval.
    let t = w
        .submit(
            None,
            spec(r#"{"name": "one", "image": "busybox", "stop_after_disconnect": "3s"}"#),
        )
        .await
        .unwrap();
    running(&w, t.id, 0).await;
    assert_eq!(w.next_beat(0.0), Duration::from_millis(200));
}

/// A full heartbeat and a report reach the manager in the order their statuses were taken: while
/// a full beat is on its way, no report leaves. (A report sent beside it was answered first, and
/// the beat's older statuses then set the manager's copy of a running task back to Scheduled until
/// the next full beat: found under wrk against the mock cluster, 72 tasks held back for 10 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_waits_until_the_full_heartbeat_in_flight_is_answered() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

    /// How long the fake manager takes to answer a full heartbeat.
    const SLOW: Duration = Duration::from_millis(800);
    type Log = Arc<Mutex<Vec<(String, std::time::Instant, bool)>>>;
    struct Recorder(Log);
    impl Respond for Recorder {
        fn respond(&self, req: &Request) -> ResponseTemplate {
            let path = req.url.path().to_string();
            let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let full = path.ends_with("/heartbeat") && body["full"] == true;
            self.0
                .lock()
                .unwrap()
                .push((path, std::time::Instant::now(), full));
            let reply = ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"assign": [], "stop": []}));
            if full {
                reply.set_delay(SLOW)
            } else {
                reply
            }
        }
    }

    let server = MockServer::start().await;
    let log: Log = Arc::default();
    Mock::given(method("POST"))
        .respond_with(Recorder(log.clone()))
        .mount(&server)
        .await;
    let mock = MockRuntime::new();
    let w = start(&mock, Arc::new(MemStore::new()), Some(&server.uri())).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let seen = |want: &str| {
        log.lock()
            .unwrap()
            .iter()
            .any(|(p, _, _)| p.ends_with(want))
    };
    // The worker's first beat is full: once it has arrived, start a task, whose start is reported
    // while that beat is still unanswered.
    while !seen("/heartbeat") {
        assert!(std::time::Instant::now() < deadline, "no heartbeat arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w.submit(None, spec(r#"{"name": "a", "image": "busybox"}"#))
        .await
        .unwrap();
    while !seen("/reports") {
        assert!(std::time::Instant::now() < deadline, "no report arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let log = log.lock().unwrap().clone();
    for (path, at, _) in log.iter().filter(|(p, _, _)| p.ends_with("/reports")) {
        for (_, beat, _) in log.iter().filter(|(_, _, full)| *full) {
            assert!(
                *at < *beat || *at >= *beat + SLOW,
                "{path} arrived {:?} after a full heartbeat, before its answer ({SLOW:?}): {log:?}",
                at.duration_since(*beat)
            );
        }
    }
}

/// Every running task keeps its supervisor's future in memory for as long as it runs. The steps
/// taken once or twice in a task's life (the start, each action, the stop) are boxed, so the
/// future holds little more than what waits on the container: 712 bytes in a debug build, where
/// it was 2,096 before they were boxed (issue 17). The bound leaves room for another compiler.
#[tokio::test]
async fn a_supervisor_future_stays_small() {
    let mock = MockRuntime::new();
    let w = start(&mock, Arc::new(MemStore::new()), None).await;
    let fut = super::supervisor::supervise(w, TaskId::new(), super::supervisor::Origin::Assigned);
    let size = std::mem::size_of_val(&fut);
    assert!(size <= 1024, "a supervisor future is {size} bytes");
}
