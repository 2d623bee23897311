//! Surviving failure, with `MockRuntime` fault injection: restart policies and their backoff, health
//! checks, a worker lost and come back (stale copies stopped), at-most-one across a cut, a manager
//! restart that moves nothing, and an engine that blips.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{localize, wait_for, Api, Standalone};
use poseidon::cluster::{self, Roles};
use poseidon_runtimes::mock::{MockRuntime, Op};
use poseidon_runtimes::{ExecOutput, RuntimeError};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn reasons(t: &Value) -> Vec<String> {
    t["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap().to_string())
        .collect()
}

fn creates_of(mock: &MockRuntime, image: &str) -> Vec<String> {
    mock.calls_of(Op::Create)
        .iter()
        .filter_map(|c| match c {
            poseidon_runtimes::mock::Call::Create(spec) if spec.image == image => {
                Some(spec.name.clone())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn on_failure_restarts_up_to_its_maximum_with_doubling_backoff_and_new_containers() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    mock.exit_after("crash:1", Duration::from_millis(20), 1);
    let s = Standalone::start(&mock, dir.path(), None).await;
    let id = s
        .api
        .submit(&json!({"name": "crash", "image": "crash:1",
            "restart_policy": {"policy": "on-failure", "max_restarts": 2, "backoff": "100ms"}}))
        .await;
    let t = wait_for("two restarts, then failed for good", WAIT, || async {
        let t = s.api.ok(&format!("/tasks/{id}")).await;
        (t["state"] == "failed"
            && t["restart_count"] == 2
            && creates_of(&mock, "crash:1").len() == 3)
            .then_some(t)
    })
    .await;
    assert_eq!(t["exit_code"], 1);
    let r = reasons(&t);
    assert!(
        r.iter()
            .any(|x| x == "exited with code 1; restarting in 0.1 s"),
        "{r:?}"
    );
    assert!(
        r.iter()
            .any(|x| x == "exited with code 1; restarting in 0.2 s"),
        "the backoff doubles: {r:?}"
    );
    assert!(r.iter().any(|x| x == "exited with code 1"), "{r:?}");
    // Each restart made a fresh container with its own name (the Go original collided on the name),
    // and removed the one before it.
    let names = creates_of(&mock, "crash:1");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{names:?}");
    assert_eq!(
        mock.containers()
            .iter()
            .filter(|c| c.image == "crash:1")
            .count(),
        1,
        "old containers removed"
    );
    // Once the task's supervisor has ended nothing can start another container for it.
    wait_for("the supervisor to give up", WAIT, || async {
        (s.worker.supervisors() == 0).then_some(())
    })
    .await;
    assert_eq!(
        creates_of(&mock, "crash:1").len(),
        3,
        "no restart past the maximum"
    );
    s.stop().await;
}

#[tokio::test]
async fn never_does_not_restart_always_restarts_even_on_success_and_a_stopped_task_never_restarts()
{
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    mock.exit_after("fail:1", Duration::from_millis(20), 2);
    mock.exit_after("ok:1", Duration::from_millis(20), 0);
    let s = Standalone::start(&mock, dir.path(), None).await;
    let never = s
        .api
        .submit(&json!({"name": "never", "image": "fail:1", "restart_policy": "never"}))
        .await;
    let always = s
        .api
        .submit(&json!({"name": "always", "image": "ok:1", "restart_policy": {"policy": "always", "backoff": "100ms"}}))
        .await;
    let t = s.api.wait_state(&never, "failed", WAIT).await;
    assert_eq!(t["restart_count"], 0);
    wait_for("always to restart after exit 0", WAIT, || async {
        let t = s.api.ok(&format!("/tasks/{always}")).await;
        (t["restart_count"].as_u64().unwrap() >= 2).then_some(())
    })
    .await;
    let (st, v) = s.api.delete(&format!("/tasks/{always}")).await;
    assert_eq!(st, 200, "{v}");
    // An `always` task passes through completed between its runs, so wait for the stop itself.
    let t = wait_for("the stop to complete", WAIT, || async {
        let t = s.api.ok(&format!("/tasks/{always}")).await;
        (t["state"] == "completed" && t["reason"] == "stopped").then_some(t)
    })
    .await;
    assert_eq!(t["desired"], "stop");
    let count = creates_of(&mock, "ok:1").len();
    // A stopped task's supervisor ends (one that kept restarting would never end), and nothing
    // was created between the stop and its end.
    wait_for("every supervisor to end", WAIT, || async {
        (s.worker.supervisors() == 0).then_some(())
    })
    .await;
    assert_eq!(
        creates_of(&mock, "ok:1").len(),
        count,
        "a stopped task is never restarted"
    );
    assert_eq!(creates_of(&mock, "fail:1").len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn health_checks_show_healthy_and_an_unhealthy_task_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    mock.set_exec_result("good:1", ExecOutput::new(0, "ok", ""));
    mock.set_exec_result("sick:1", ExecOutput::new(1, "not ready", ""));
    let s = Standalone::start(&mock, dir.path(), None).await;
    let check = json!({"type": "exec", "cmd": ["check"], "interval": "100ms", "timeout": "100ms", "retries": 2});
    let good = s
        .api
        .submit(&json!({"name": "good", "image": "good:1", "health_check": check}))
        .await;
    let sick = s
        .api
        .submit(
            &json!({"name": "sick", "image": "sick:1", "health_check": check,
            "restart_policy": {"policy": "on-failure", "max_restarts": 1, "backoff": "100ms"}}),
        )
        .await;
    wait_for("good to be healthy", WAIT, || async {
        (s.api.ok(&format!("/tasks/{good}")).await["health"] == "healthy").then_some(())
    })
    .await;
    let t = wait_for("sick to be restarted once and then fail", WAIT, || async {
        let t = s.api.ok(&format!("/tasks/{sick}")).await;
        (t["state"] == "failed" && t["restart_count"] == 1).then_some(t)
    })
    .await;
    assert_eq!(t["health"], "unhealthy");
    assert!(t["reason"].as_str().unwrap().contains("unhealthy"), "{t}");
    assert!(
        t["reason"].as_str().unwrap().contains("not ready"),
        "the probe's output is kept: {t}"
    );
    assert_eq!(creates_of(&mock, "sick:1").len(), 2);
    assert_eq!(
        s.api.ok(&format!("/tasks/{good}")).await["state"],
        "running"
    );
    s.stop().await;
}

const TWO: &str = r#"
[manager]
scheduler = "round-robin"
heartbeat_ttl = "1s"

[[worker]]
name = "a"
listen = "127.0.0.1:0"
runtime = "mock"
heartbeat_interval = "200ms"

[[worker]]
name = "b"
listen = "127.0.0.1:0"
runtime = "mock"
heartbeat_interval = "200ms"
"#;

/// The manager of [`TWO`] alone, and a standalone worker "solo" reporting to it on a mock engine
/// the test keeps.
async fn manager_and_solo(
    dir: &std::path::Path,
) -> (cluster::Running, Api, MockRuntime, Standalone) {
    let cfg = localize(TWO, dir, false);
    let manager = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let url = manager.manager_url().unwrap();
    let mock = MockRuntime::new();
    let solo = Standalone::start(&mock, &dir.join("solo"), Some(url.clone())).await;
    (manager, Api::new(url), mock, solo)
}

#[tokio::test]
async fn a_lost_worker_comes_back_and_its_stale_copies_are_stopped_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(TWO, dir.path(), false);
    let manager = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let url = manager.manager_url().unwrap();
    let api = Api::new(url.clone());
    let mut wcfg = cfg.clone();
    for w in &mut wcfg.workers {
        w.manager = Some(url.clone());
        w.heartbeat_interval = Duration::from_millis(200);
    }
    let a = cluster::start(&wcfg, Roles::Worker("a".into()))
        .await
        .unwrap();
    let a_mock = a.workers[0].mock.clone().unwrap();
    // Worker "solo" plays the part that goes away: the test keeps its engine and its data.
    let solo_mock = MockRuntime::new();
    let solo_dir = dir.path().join("solo");
    let solo = Standalone::start(&solo_mock, &solo_dir, Some(url.clone())).await;
    wait_for("both workers up", WAIT, || async {
        let n = api.ok("/nodes").await;
        (n.as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "up")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            api.submit(&json!({"name": format!("t{i}"), "image": "busybox"}))
                .await,
        );
    }
    let mut on_solo = Vec::new();
    for id in &ids {
        if api.wait_state(id, "running", WAIT).await["node"] == "solo" {
            on_solo.push(id.clone());
        }
    }
    assert_eq!(on_solo.len(), 2);
    assert_eq!(solo_mock.running_count(), 2);

    // Cut off: it stops heartbeating, its containers keep running.
    solo.stop().await;
    let lost_at = wait_for("solo marked down", WAIT, || async {
        let n = api.ok("/nodes").await;
        n.as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "solo" && n["state"] == "down")
            .then(Instant::now)
    })
    .await;
    for id in &on_solo {
        let t = wait_for("the task to run on a", WAIT, || async {
            let t = api.ok(&format!("/tasks/{id}")).await;
            (t["state"] == "running" && t["node"] == "a").then_some(t)
        })
        .await;
        assert_eq!(t["generation"], 2, "{t}");
    }
    eprintln!(
        "moved and running {:?} after the node was marked down",
        lost_at.elapsed()
    );
    assert_eq!(a_mock.running_count(), 4);
    assert_eq!(
        solo_mock.running_count(),
        2,
        "the cut-off node still runs its stale copies"
    );

    // It comes back: the first heartbeat's reply stops the copies whose generation moved on.
    let solo = Standalone::start(&solo_mock, &solo_dir, Some(url.clone())).await;
    wait_for("stale copies stopped", WAIT, || async {
        (solo_mock.running_count() == 0).then_some(())
    })
    .await;
    for id in &on_solo {
        let t = api.ok(&format!("/tasks/{id}")).await;
        assert_eq!(
            (
                t["node"].as_str(),
                t["state"].as_str(),
                t["generation"].as_u64()
            ),
            (Some("a"), Some("running"), Some(2))
        );
    }
    assert_eq!(a_mock.running_count(), 4, "each task runs exactly once");
    solo.stop().await;
    a.stop().await;
    manager.stop().await;
}

#[tokio::test]
async fn an_at_most_one_task_is_stopped_by_its_worker_when_the_manager_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, api, mock, solo) = manager_and_solo(dir.path()).await;
    let once = api
        .submit(&json!({"name": "once", "image": "busybox", "stop_after_disconnect": "500ms"}))
        .await;
    let plain = api
        .submit(&json!({"name": "plain", "image": "busybox"}))
        .await;
    let c_once = api.wait_state(&once, "running", WAIT).await["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let c_plain = api.wait_state(&plain, "running", WAIT).await["container_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Kept past the stop: its state then holds the last heartbeat that actually reached it.
    let handle = manager.manager.as_ref().unwrap().manager.clone();
    manager.stop().await; // the worker can no longer reach its manager
    wait_for("the at-most-one task to be stopped", WAIT, || async {
        mock.container(&c_once)
            .is_none_or(|c| c.status != poseidon_runtimes::ContainerStatus::Running)
            .then_some(())
    })
    .await;
    let stopped_ms = poseidon::util::now_ms();
    // The silence is counted from the last heartbeat the manager answered, not from the cut: a
    // heartbeat sent every 200 ms may have landed up to 200 ms before the cut. The worker's own
    // last contact is at or after this heartbeat, so this duration is at least the worker's.
    // The worker begins the stop 1.5 heartbeat intervals (300 ms) after its last contact at the
    // earliest, early enough that it ends by the 500 ms the task allows even with a grace
    // (`worker::report::at_most_one_plan`; the deadline itself is shown with paused time in
    // `worker::tests`), so a correct worker never stops after less than 300 ms of silence.
    let last_beat_ms = handle
        .nodes()
        .iter()
        .find(|n| n.name == "solo")
        .and_then(|n| n.last_heartbeat_ms)
        .unwrap();
    let silence = Duration::from_millis(stopped_ms.saturating_sub(last_beat_ms));
    assert!(
        silence >= Duration::from_millis(300),
        "stopped after {silence:?} of silence, while the worker could still hear its manager"
    );
    assert_eq!(
        mock.container(&c_plain).unwrap().status,
        poseidon_runtimes::ContainerStatus::Running,
        "a task that did not opt in keeps running"
    );
    let t = solo.worker.task(once.parse().unwrap()).unwrap();
    assert!(
        t.reason.as_deref().unwrap_or("").contains("manager"),
        "{t:?}"
    );
    solo.stop().await;
}

#[tokio::test]
async fn an_engine_blip_makes_the_worker_unhealthy_without_losing_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (manager, api, mock, solo) = manager_and_solo(dir.path()).await;
    let id = api
        .submit(&json!({"name": "keep", "image": "busybox"}))
        .await;
    api.wait_state(&id, "running", WAIT).await;

    mock.set_unreachable(true);
    wait_for("the node to be unhealthy", WAIT, || async {
        let n = api.ok("/nodes").await;
        n.as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "solo" && n["state"] == "unhealthy")
            .then_some(())
    })
    .await;
    let (st, h) = solo.api.get("/health").await;
    assert_eq!(st, 503, "{h}");
    let later = api
        .submit(&json!({"name": "later", "image": "busybox"}))
        .await;
    // Three more heartbeats while the engine is away, counted on the manager rather than slept for.
    let beats_seen = || async {
        api.ok("/nodes")
            .await
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "solo")
            .and_then(|n| n["last_heartbeat_ms"].as_u64())
            .unwrap()
    };
    let mut last = beats_seen().await;
    for beat in 0..3 {
        last = wait_for(
            &format!("heartbeat {beat} while unhealthy"),
            WAIT,
            || async {
                let now = beats_seen().await;
                (now > last).then_some(now)
            },
        )
        .await;
    }
    assert_eq!(
        api.ok(&format!("/tasks/{id}")).await["state"],
        "running",
        "not lost on a blip"
    );
    assert_eq!(
        api.ok(&format!("/tasks/{later}")).await["state"],
        "pending",
        "nothing placed on an unhealthy node"
    );

    mock.set_unreachable(false);
    api.wait_state(&later, "running", WAIT).await;
    assert_eq!(api.ok(&format!("/tasks/{id}")).await["state"], "running");
    assert_eq!(mock.running_count(), 2);
    solo.stop().await;
    manager.stop().await;
}

#[tokio::test]
async fn a_failing_engine_call_fails_only_that_task_and_a_missing_image_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    mock.fail_start(
        "broken:1",
        RuntimeError::Daemon {
            status: 500,
            message: "oci runtime error: boom".into(),
        },
    );
    let s = Standalone::start(&mock, dir.path(), None).await;
    let bad = s
        .api
        .submit(&json!({"name": "bad", "image": "broken:1"}))
        .await;
    let good = s
        .api
        .submit(&json!({"name": "good", "image": "busybox"}))
        .await;
    let t = s.api.wait_state(&bad, "failed", WAIT).await;
    assert!(t["reason"].as_str().unwrap().contains("boom"), "{t}");
    s.api.wait_state(&good, "running", WAIT).await;
    s.stop().await;
}

#[tokio::test]
async fn a_docker_chosen_port_that_is_taken_is_retried_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    let taken = RuntimeError::Daemon {
        status: 500,
        message: "driver failed programming external connectivity: listen tcp4 0.0.0.0:32831: bind: address already in use".into(),
    };
    mock.fail_next(Op::Start, taken.clone());
    let s = Standalone::start(&mock, dir.path(), None).await;
    let id = s
        .api
        .submit(&json!({"name": "web", "image": "busybox", "ports": ["80"]}))
        .await;
    let t = s.api.wait_state(&id, "running", WAIT).await;
    assert_eq!(t["restart_count"], 0, "{t}");
    assert_eq!(
        mock.count(Op::Start),
        2,
        "started again after the collision"
    );
    // With a fixed host port the same error is the user's conflict: the task fails and says so.
    mock.fail_next(Op::Start, taken);
    let fixed = s
        .api
        .submit(&json!({"name": "fixed", "image": "busybox", "ports": ["8080:80"]}))
        .await;
    let t = s.api.wait_state(&fixed, "failed", WAIT).await;
    assert!(
        t["reason"]
            .as_str()
            .unwrap()
            .contains("address already in use"),
        "{t}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holding_thousands_of_tasks_keeps_heartbeating() {
    // A heartbeat lists every task its worker holds (about 320 bytes each): 4,500 tasks make it
    // larger than the 1 MiB a user's request may be, and the node must stay up regardless.
    let dir = tempfile::tempdir().unwrap();
    let one = "[manager]\nheartbeat_ttl = \"1s\"\n[[worker]]\nname = \"big\"\nruntime = \"mock\"\nheartbeat_interval = \"200ms\"\ncapacity = { cpus = 100000.0, memory = \"100000g\" }\n";
    let run = common::start(&localize(one, dir.path(), false)).await;
    let api = Api::new(run.manager_url().unwrap());
    for b in 0..5 {
        let specs: Vec<Value> = (0..900)
            .map(|i| json!({"name": format!("t{b}-{i}"), "image": "busybox"}))
            .collect();
        let (st, v) = api.post("/tasks", &Value::Array(specs)).await;
        assert_eq!(st, 201, "{v}");
    }
    wait_for("4,500 tasks running", Duration::from_secs(60), || async {
        (api.ok("/tasks?state=running")
            .await
            .as_array()
            .unwrap()
            .len()
            == 4_500)
            .then_some(())
    })
    .await;
    let hb = serde_json::to_vec(&run.workers[0].worker.heartbeat()).unwrap();
    assert!(
        hb.len() > poseidon::http::MAX_BODY,
        "the heartbeat is {} bytes",
        hb.len()
    );
    // Three TTLs of heartbeats: the node never goes down.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let nodes = api.ok("/nodes").await;
        assert_eq!(nodes[0]["state"], "up", "{}", nodes[0]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    run.stop().await;
}

#[tokio::test]
async fn an_at_most_one_task_stopped_by_a_short_cut_is_placed_again_when_contact_returns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(TWO, dir.path(), false);
    let manager = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let addr = manager.manager.as_ref().unwrap().addr;
    let url = manager.manager_url().unwrap();
    let api = Api::new(url.clone());
    let mock = MockRuntime::new();
    let solo = Standalone::start(&mock, &dir.path().join("solo"), Some(url.clone())).await;
    let once = api
        .submit(&json!({"name": "once", "image": "busybox", "stop_after_disconnect": "300ms"}))
        .await;
    api.wait_state(&once, "running", WAIT).await;
    // A cut shorter than the TTL would leave the node up; here the manager restarts instead.
    manager.stop().await;
    wait_for("the worker to stop it", WAIT, || async {
        (mock.running_count() == 0).then_some(())
    })
    .await;
    let mut mcfg = cfg.clone();
    mcfg.manager.as_mut().unwrap().listen = addr;
    let manager = cluster::start(&mcfg, Roles::Manager).await.unwrap();
    let t = wait_for("the task to run again", WAIT, || async {
        let t = api.ok(&format!("/tasks/{once}")).await;
        (t["state"] == "running" && t["generation"] == 2).then_some(t)
    })
    .await;
    assert_eq!(t["node"], "solo");
    assert_eq!(mock.running_count(), 1, "exactly one copy runs");
    solo.stop().await;
    manager.stop().await;
}

#[tokio::test]
async fn a_task_forgotten_during_a_slow_pull_leaves_no_container_running() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    // Longer than the worker's stop grace (2 s) plus the 10 s that forgetting waits for a stop.
    mock.set_delay(Op::EnsureImage, Duration::from_secs(13));
    let s = Standalone::start(&mock, dir.path(), None).await;
    let id = s
        .api
        .submit(&json!({"name": "slow", "image": "busybox"}))
        .await;
    s.worker
        .forget(id.parse().unwrap(), "purged")
        .await
        .unwrap();
    assert!(s.worker.task(id.parse().unwrap()).is_none());
    wait_for(
        "the pull to finish and be acted on",
        Duration::from_secs(30),
        || async { (mock.count(Op::Create) == 1 && mock.containers().is_empty()).then_some(()) },
    )
    .await;
    wait_for("the forgotten task's supervisor to end", WAIT, || async {
        (s.worker.supervisors() == 0).then_some(())
    })
    .await;
    assert_eq!(mock.running_count(), 0, "no untracked container runs");
    s.stop().await;
}
