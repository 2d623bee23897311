//! Tests of `MockRuntime`: its Docker-like semantics and every fault it can inject.
//!
//! Time-dependent tests run under `tokio::time::pause()`, so container lifetimes and delays of
//! minutes cost no wall time.

// A failed unwrap is how a test reports a broken expectation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poseidon_runtimes::mock::{
    Call, MockRuntime, Op, CALL_LOG, SIGKILL_EXIT_CODE, SIGTERM_EXIT_CODE,
};
use poseidon_runtimes::{
    ContainerSpec, ContainerStatus, ExecOutput, Logs, PortSpec, Runtime, RuntimeError,
    RuntimeEvent, StatsSample,
};

fn spec(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: image.to_string(),
        labels: BTreeMap::from([
            ("io.poseidon.managed".to_string(), "true".to_string()),
            ("io.poseidon.node".to_string(), "w1".to_string()),
        ]),
        ..ContainerSpec::default()
    }
}

fn no_progress(_: poseidon_runtimes::PullProgress) {}

#[tokio::test]
async fn every_call_is_recorded_with_its_arguments() {
    let rt = MockRuntime::new();
    let s = spec("web", "nginx");
    let id = rt.create(&s).await.unwrap();
    rt.start(&id).await.unwrap();
    rt.stop(&id, Duration::from_secs(7)).await.unwrap();
    rt.remove(&id, true).await.unwrap();
    assert_eq!(
        rt.calls(),
        vec![
            Call::Create(Arc::new(s)),
            Call::Start(id.clone()),
            Call::Stop(id.clone(), Duration::from_secs(7)),
            Call::Remove(id, true),
        ]
    );
    assert_eq!(rt.count(Op::Start), 1);
    rt.clear_calls();
    assert!(rt.calls().is_empty());
}

#[tokio::test]
async fn the_call_log_keeps_the_latest_calls_and_counts_every_call() {
    let rt = MockRuntime::new();
    let s = spec("web", "nginx");
    let id = rt.create(&s).await.unwrap();
    for _ in 0..CALL_LOG + 10 {
        rt.inspect(&id).await.unwrap();
    }
    let calls = rt.calls();
    assert_eq!(calls.len(), 10_000, "a bounded log");
    assert!(calls.iter().all(|c| *c == Call::Inspect(id.clone())));
    assert_eq!(rt.count(Op::Create), 1, "counts outlive the log");
    assert_eq!(rt.count(Op::Inspect), 10_010);
    assert!(rt.calls_of(Op::Create).is_empty());
}

#[tokio::test]
async fn container_names_are_unique_like_docker() {
    let rt = MockRuntime::new();
    rt.create(&spec("web", "nginx")).await.unwrap();
    let err = rt.create(&spec("web", "nginx")).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Conflict(ref m) if m.contains("already in use")),
        "{err}"
    );
    // The name is found by name, and free again once its container is removed.
    let id = rt.inspect("web").await.unwrap().id;
    assert_eq!(rt.inspect("/web").await.unwrap().id, id);
    rt.remove("web", true).await.unwrap();
    assert!(rt.inspect("web").await.is_err());
    let again = rt.create(&spec("web", "nginx")).await.unwrap();
    assert_ne!(again, id);
    assert_eq!(rt.inspect("web").await.unwrap().id, again);
}

#[tokio::test]
async fn unknown_containers_are_no_such_container() {
    let rt = MockRuntime::new();
    for err in [
        rt.start("nope").await.unwrap_err(),
        rt.stop("nope", Duration::ZERO).await.unwrap_err(),
        rt.kill("nope").await.unwrap_err(),
        rt.remove("nope", true).await.unwrap_err(),
        rt.inspect("nope").await.unwrap_err(),
        rt.wait("nope").await.unwrap_err(),
        rt.logs("nope", None).await.unwrap_err(),
        rt.stats("nope").await.unwrap_err(),
    ] {
        assert!(matches!(err, RuntimeError::NoSuchContainer(_)), "{err}");
    }
}

#[tokio::test]
async fn lifecycle_follows_docker_semantics() {
    let rt = MockRuntime::new();
    let id = rt.create(&spec("web", "nginx")).await.unwrap();
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Created
    );
    rt.start(&id).await.unwrap();
    // Starting a running container is success, as Docker's 304 is.
    rt.start(&id).await.unwrap();
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.status, ContainerStatus::Running);
    assert_eq!(info.name, "web");
    assert!(info.started_at.is_some());
    assert!(info.ip_address.is_some());
    // Removing a running container without force is a conflict.
    let err = rt.remove(&id, false).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Conflict(_)), "{err}");
    rt.stop(&id, Duration::from_secs(10)).await.unwrap();
    // Stopping a stopped container is success; killing one is a conflict.
    rt.stop(&id, Duration::from_secs(10)).await.unwrap();
    assert!(matches!(
        rt.kill(&id).await.unwrap_err(),
        RuntimeError::Conflict(_)
    ));
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.status, ContainerStatus::Exited);
    assert_eq!(info.exit_code, Some(SIGTERM_EXIT_CODE));
    assert!(info.finished_at.is_some());
    rt.remove(&id, false).await.unwrap();
    assert!(rt.list("io.poseidon.managed").await.unwrap().is_empty());
    // The name is free again once the container is gone.
    rt.create(&spec("web", "nginx")).await.unwrap();
}

#[tokio::test]
async fn containers_are_found_by_name_and_unique_id_prefix() {
    let rt = MockRuntime::new();
    let id = rt.create(&spec("web", "nginx")).await.unwrap();
    assert_eq!(rt.inspect("web").await.unwrap().id, id);
    assert_eq!(rt.inspect(&id[..12]).await.unwrap().id, id);
    assert_eq!(rt.container("/web").unwrap().id, id);
}

#[tokio::test]
async fn kill_and_forced_remove_end_with_sigkill_codes() {
    let rt = MockRuntime::new();
    let a = rt.create(&spec("aa", "img")).await.unwrap();
    let b = rt.create(&spec("bb", "img")).await.unwrap();
    rt.start(&a).await.unwrap();
    rt.start(&b).await.unwrap();
    rt.kill(&a).await.unwrap();
    assert_eq!(rt.wait(&a).await.unwrap(), SIGKILL_EXIT_CODE);
    let waiter = tokio::spawn({
        let rt = rt.clone();
        let b = b.clone();
        async move { rt.wait(&b).await }
    });
    tokio::task::yield_now().await;
    rt.remove(&b, true).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), SIGKILL_EXIT_CODE);
}

#[tokio::test(start_paused = true)]
async fn exit_after_ends_the_container_with_the_code_and_wakes_waiters() {
    let rt = MockRuntime::new();
    rt.exit_after("job:latest", Duration::from_secs(60), 3);
    let id = rt.create(&spec("job", "job")).await.unwrap();
    rt.start(&id).await.unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(rt.wait(&id).await.unwrap(), 3);
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.status, ContainerStatus::Exited);
    assert_eq!(info.exit_code, Some(3));
    // Waiting on an exited container returns at once.
    assert_eq!(rt.wait(&id).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn exit_after_by_name_wins_over_by_image() {
    let rt = MockRuntime::new();
    rt.exit_after("img", Duration::from_secs(5), 1);
    rt.exit_after("special", Duration::from_secs(1), 0);
    let a = rt.create(&spec("special", "img")).await.unwrap();
    let b = rt.create(&spec("plain", "img")).await.unwrap();
    rt.start(&a).await.unwrap();
    rt.start(&b).await.unwrap();
    assert_eq!(rt.wait(&a).await.unwrap(), 0);
    assert_eq!(rt.wait(&b).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stale_exit_timer_does_not_end_a_restarted_container() {
    let rt = MockRuntime::new();
    rt.exit_after("img", Duration::from_secs(10), 9);
    let id = rt.create(&spec("cc", "img")).await.unwrap();
    rt.start(&id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    rt.stop(&id, Duration::ZERO).await.unwrap();
    rt.start(&id).await.unwrap();
    // The first run's timer fires at 10 s; the second run must live until 15 s.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Running
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rt.inspect(&id).await.unwrap().exit_code, Some(9));
}

#[tokio::test]
async fn wait_on_a_never_started_container_returns_zero_at_once() {
    let rt = MockRuntime::new();
    let id = rt.create(&spec("cc", "img")).await.unwrap();
    assert_eq!(rt.wait(&id).await.unwrap(), 0);
}

#[tokio::test]
async fn external_kills_wake_waiters_and_report_a_die_event() {
    let rt = MockRuntime::new();
    let mut events = rt.events("io.poseidon.node=w1").await.unwrap();
    let id = rt.create(&spec("cc", "img")).await.unwrap();
    rt.start(&id).await.unwrap();
    let waiter = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move { rt.wait(&id).await }
    });
    tokio::task::yield_now().await;
    assert!(rt.kill_externally(&id, 137));
    assert!(
        !rt.kill_externally(&id, 1),
        "a stopped container cannot be killed again"
    );
    assert_eq!(waiter.await.unwrap().unwrap(), 137);
    let started = events.recv().await.unwrap().unwrap();
    assert!(matches!(started, RuntimeEvent::Started { id: ref i, .. } if *i == id));
    let died = events.recv().await.unwrap().unwrap();
    assert!(
        matches!(died, RuntimeEvent::Died { id: ref i, exit_code: Some(137), .. } if *i == id),
        "{died:?}"
    );
}

#[tokio::test]
async fn events_are_filtered_by_label() {
    let rt = MockRuntime::new();
    let mut mine = rt.events("io.poseidon.node=w1").await.unwrap();
    let mut other = spec("other", "img");
    other.labels = BTreeMap::from([("io.poseidon.node".to_string(), "w2".to_string())]);
    let o = rt.create(&other).await.unwrap();
    rt.start(&o).await.unwrap();
    let m = rt.create(&spec("mine", "img")).await.unwrap();
    rt.start(&m).await.unwrap();
    match mine.recv().await.unwrap().unwrap() {
        RuntimeEvent::Started { id, .. } => assert_eq!(id, m),
        e => panic!("unexpected {e:?}"),
    }
}

#[tokio::test]
async fn disconnecting_events_ends_every_stream_with_an_error() {
    let rt = MockRuntime::new();
    let mut events = rt.events("io.poseidon.managed").await.unwrap();
    rt.disconnect_events(RuntimeError::Unreachable("daemon restarted".into()));
    assert!(matches!(
        events.recv().await,
        Some(Err(RuntimeError::Unreachable(_)))
    ));
    assert!(
        events.recv().await.is_none(),
        "the stream closes after the error"
    );
}

#[tokio::test]
async fn fail_next_fails_exactly_the_next_n_calls_of_that_operation() {
    let rt = MockRuntime::new();
    let id = rt.create(&spec("cc", "img")).await.unwrap();
    rt.fail_next_n(
        Op::Start,
        2,
        RuntimeError::Daemon {
            status: 500,
            message: "boom".into(),
        },
    );
    for _ in 0..2 {
        let err = rt.start(&id).await.unwrap_err();
        assert_eq!(
            err,
            RuntimeError::Daemon {
                status: 500,
                message: "boom".into()
            }
        );
    }
    // Other operations were not affected, and the third start works.
    rt.inspect(&id).await.unwrap();
    rt.start(&id).await.unwrap();
    assert_eq!(rt.count(Op::Start), 3, "failed calls are recorded too");
}

#[tokio::test]
async fn fail_always_lasts_until_cleared() {
    let rt = MockRuntime::new();
    rt.fail_always(Op::Ping, RuntimeError::Unreachable("down".into()));
    assert!(rt.ping().await.is_err());
    assert!(rt.ping().await.is_err());
    rt.clear_failures(Op::Ping);
    rt.ping().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn delays_hold_a_call_on_tokios_clock() {
    let rt = MockRuntime::new();
    rt.set_delay(Op::Create, Duration::from_secs(30));
    let t = tokio::time::Instant::now();
    rt.create(&spec("cc", "img")).await.unwrap();
    assert_eq!(t.elapsed(), Duration::from_secs(30));
    rt.set_delay(Op::Create, Duration::ZERO);
    let t = tokio::time::Instant::now();
    rt.create(&spec("dd", "img")).await.unwrap();
    assert_eq!(t.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_hung_operation_returns_only_after_unhang() {
    let rt = MockRuntime::new();
    let id = rt.create(&spec("cc", "img")).await.unwrap();
    rt.hang(Op::Start);
    let call = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move { rt.start(&id).await }
    });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!call.is_finished());
    assert_eq!(rt.count(Op::Start), 1, "a hanging call is already recorded");
    // Other operations still answer while starts hang.
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Created
    );
    rt.unhang(Op::Start);
    call.await.unwrap().unwrap();
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Running
    );
}

#[tokio::test(start_paused = true)]
async fn a_hung_exec_times_out_at_its_own_timeout() {
    let rt = MockRuntime::new();
    let id = rt.create(&spec("cc", "img")).await.unwrap();
    rt.start(&id).await.unwrap();
    rt.hang(Op::Exec);
    let t = tokio::time::Instant::now();
    let err = rt
        .exec(&id, &["true".to_string()], Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(err, RuntimeError::Timeout("exec after 1s".into()));
    assert_eq!(t.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn an_unreachable_engine_fails_every_call_until_it_returns() {
    let rt = MockRuntime::new();
    let mut events = rt.events("io.poseidon.managed").await.unwrap();
    rt.set_unreachable(true);
    let err = rt.ping().await.unwrap_err();
    assert!(err.is_engine_down());
    assert!(rt.list("x").await.unwrap_err().is_engine_down());
    assert!(matches!(events.recv().await, Some(Err(e)) if e.is_engine_down()));
    rt.set_unreachable(false);
    rt.ping().await.unwrap();
}

#[tokio::test]
async fn images_are_present_by_default_and_missing_ones_fail_like_docker() {
    let rt = MockRuntime::new();
    rt.ensure_image("anything:1", &no_progress).await.unwrap();
    rt.missing_image("ghost/app");
    let err = rt
        .ensure_image("ghost/app:latest", &no_progress)
        .await
        .unwrap_err();
    match err {
        RuntimeError::NoSuchImage(m) => {
            assert!(m.contains("pull access denied for ghost/app"), "{m}")
        }
        e => panic!("unexpected {e:?}"),
    }
    let err = rt.create(&spec("cc", "ghost/app")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NoSuchImage(ref m) if m.contains("No such image")));
    rt.add_image("ghost/app");
    rt.create(&spec("cc", "ghost/app")).await.unwrap();
}

#[tokio::test]
async fn an_absent_image_is_pulled_with_progress_lines() {
    let rt = MockRuntime::new();
    rt.remove_image("app:2");
    assert!(!rt.has_image("app:2"));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let progress = move |p: poseidon_runtimes::PullProgress| sink.lock().unwrap().push(p.status);
    rt.ensure_image("app:2", &progress).await.unwrap();
    assert!(rt.has_image("app:2"));
    let lines = lines.lock().unwrap().clone();
    assert!(lines.len() >= 3, "{lines:?}");
    assert!(lines.last().unwrap().contains("Downloaded newer image"));
}

#[tokio::test]
async fn exec_logs_and_stats_answer_what_was_configured() {
    let rt = MockRuntime::new();
    rt.set_exec_result("img", ExecOutput::new(1, "unhealthy\n", ""));
    rt.set_logs(
        "cc",
        Logs {
            stdout: "1\n2\n3\n".into(),
            stderr: "e\n".into(),
        },
    );
    let sample = StatsSample {
        cpu_cores: 0.5,
        memory_bytes: 1 << 20,
        memory_limit_bytes: 1 << 30,
    };
    rt.set_stats("img", sample.clone());
    let id = rt.create(&spec("cc", "img")).await.unwrap();
    // Exec needs a running container, like Docker's 409.
    assert!(matches!(
        rt.exec(&id, &[], Duration::from_secs(1)).await,
        Err(RuntimeError::Conflict(_))
    ));
    rt.start(&id).await.unwrap();
    let out = rt
        .exec(&id, &["check".into()], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 1);
    assert_eq!(rt.stats(&id).await.unwrap(), sample);
    let logs = rt.logs(&id, Some(2)).await.unwrap();
    assert_eq!(logs.stdout, "2\n3\n");
    assert_eq!(logs.stderr, "e\n");
    let other = rt.create(&spec("dd", "other")).await.unwrap();
    assert_eq!(
        rt.logs(&other, None).await.unwrap().stdout,
        "mock logs for dd\n"
    );
}

#[tokio::test]
async fn list_filters_by_label_key_or_key_value() {
    let rt = MockRuntime::new();
    rt.create(&spec("aa", "img")).await.unwrap();
    let mut b = spec("bb", "img");
    b.labels.insert("io.poseidon.node".into(), "w2".into());
    rt.create(&b).await.unwrap();
    rt.create(&ContainerSpec {
        name: "unmanaged".into(),
        image: "img".into(),
        ..ContainerSpec::default()
    })
    .await
    .unwrap();
    assert_eq!(rt.list("io.poseidon.managed").await.unwrap().len(), 2);
    let w1 = rt.list("io.poseidon.node=w1").await.unwrap();
    assert_eq!(w1.len(), 1);
    assert_eq!(w1[0].name, "aa");
}

#[tokio::test]
async fn published_ports_are_bound_and_an_explicit_port_cannot_be_taken_twice() {
    let rt = MockRuntime::new();
    let mut s = spec("aa", "img");
    s.ports = vec![
        PortSpec {
            container_port: 80,
            host_port: Some(8080),
            protocol: "tcp".into(),
        },
        PortSpec {
            container_port: 443,
            host_port: None,
            protocol: "tcp".into(),
        },
    ];
    let a = rt.create(&s).await.unwrap();
    rt.start(&a).await.unwrap();
    let ports = rt.inspect(&a).await.unwrap().ports;
    assert_eq!(ports[0].host_port, 8080);
    assert!(ports[1].host_port >= 32768);
    s.name = "bb".into();
    let b = rt.create(&s).await.unwrap();
    let err = rt.start(&b).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Daemon { status: 500, ref message } if message.contains("port is already allocated")),
        "{err}"
    );
    rt.stop(&a, Duration::ZERO).await.unwrap();
    assert!(rt.inspect(&a).await.unwrap().ports.is_empty());
    rt.start(&b).await.unwrap();
}

#[tokio::test]
async fn fail_start_keeps_the_container_created_with_the_error() {
    let rt = MockRuntime::new();
    rt.fail_start(
        "broken",
        RuntimeError::Daemon {
            status: 400,
            message: "exec: \"nope\": executable file not found in $PATH".into(),
        },
    );
    let id = rt.create(&spec("cc", "broken")).await.unwrap();
    assert!(rt.start(&id).await.is_err());
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.status, ContainerStatus::Created);
    assert!(info.error.unwrap().contains("executable file not found"));
}

#[tokio::test]
async fn clones_share_one_engine() {
    let rt = MockRuntime::new();
    let other = rt.clone();
    let id = other.create(&spec("cc", "img")).await.unwrap();
    assert_eq!(rt.containers()[0].id, id);
    assert_eq!(rt.running_count(), 0);
    rt.start(&id).await.unwrap();
    assert_eq!(other.running_count(), 1);
    assert_eq!(rt.kind(), "mock");
}
