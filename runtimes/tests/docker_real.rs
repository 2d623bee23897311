//! `DockerRuntime` against the real engine on this machine.
//!
//! Every test starts with `docker_or_skip` (a loud skip without Docker, a failure under `CI=true`) and
//! `ensure_test_image` (a busybox image built here, since no registry is reachable). Containers get
//! names unique to the process and are force-removed by a `Cleanup` guard even when a test fails.

// A failed unwrap is how a test reports a broken expectation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use poseidon_runtimes::docker::DockerRuntime;
use poseidon_runtimes::testing::{
    docker_or_skip, ensure_test_image, unique_name, Cleanup, TEST_IMAGE, TEST_PAGE,
};
use poseidon_runtimes::{
    labels, ContainerSpec, ContainerStatus, PortSpec, Runtime, RuntimeError, RuntimeEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The engine and the test image, or `None` when the test is skipped.
async fn setup(test: &str) -> Option<DockerRuntime> {
    let rt = docker_or_skip(test).await?;
    ensure_test_image(&rt).await.unwrap();
    Some(rt)
}

fn spec(name: &str, cmd: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: TEST_IMAGE.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        labels: BTreeMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            ("io.poseidon.test".to_string(), name.to_string()),
        ]),
        ..ContainerSpec::default()
    }
}

#[tokio::test]
async fn the_api_version_is_negotiated_down_to_the_engines() {
    let Some(rt) = setup("the_api_version_is_negotiated_down_to_the_engines").await else {
        return;
    };
    let v = rt.api_version().await.unwrap();
    let (major, minor) = v.split_once('.').unwrap();
    assert_eq!(major, "1");
    assert!(minor.parse::<u32>().unwrap() <= 47, "{v}");
}

#[tokio::test]
async fn a_container_that_exits_reports_its_code_through_wait_inspect_and_logs() {
    let Some(rt) = setup("a_container_that_exits_reports_its_code").await else {
        return;
    };
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("exit"));
    let s = spec(
        &name,
        &["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"],
    );
    let id = rt.create(&s).await.unwrap();
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Created
    );
    rt.start(&id).await.unwrap();
    assert_eq!(rt.wait(&id).await.unwrap(), 3);
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.status, ContainerStatus::Exited);
    assert_eq!(info.exit_code, Some(3));
    assert_eq!(info.name, name);
    assert_eq!(info.image, TEST_IMAGE);
    assert!(info.started_at.is_some() && info.finished_at.is_some());
    assert_eq!(
        info.labels.get(labels::MANAGED).map(String::as_str),
        Some("true")
    );
    let logs = rt.logs(&id, None).await.unwrap();
    assert_eq!(logs.stdout, "to-stdout\n");
    assert_eq!(logs.stderr, "to-stderr\n");
    let tail = rt.logs(&id, Some(0)).await.unwrap();
    assert_eq!(tail.stdout, "");
}

#[tokio::test]
async fn a_published_port_chosen_by_docker_serves_http_to_the_host() {
    let Some(rt) = setup("a_published_port_chosen_by_docker_serves_http").await else {
        return;
    };
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("http"));
    let mut s = spec(&name, &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    s.ports = vec![PortSpec {
        container_port: 8080,
        host_port: None,
        protocol: "tcp".into(),
    }];
    s.memory = Some(64 << 20);
    s.cpus = Some(0.5);
    let id = rt.create(&s).await.unwrap();
    rt.start(&id).await.unwrap();
    let info = rt.inspect(&id).await.unwrap();
    assert_eq!(info.status, ContainerStatus::Running);
    assert!(info.ip_address.is_some());
    let port = info
        .ports
        .iter()
        .find(|p| p.container_port == 8080 && p.protocol == "tcp")
        .unwrap_or_else(|| panic!("no binding for 8080/tcp in {:?}", info.ports))
        .host_port;
    // httpd needs a moment to listen; retry for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        match http_get(port).await {
            Ok(text) if text.contains(TEST_PAGE) => break text,
            other if Instant::now() > deadline => panic!("no page from port {port}: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert!(page.starts_with("HTTP/1."), "{page}");
    let stats = rt.stats(&id).await.unwrap();
    assert_eq!(stats.memory_limit_bytes, 64 << 20);
    assert!(stats.memory_bytes > 0);
    assert!(stats.cpu_cores >= 0.0);
}

/// A plain HTTP/1.0 GET over TCP from the host, returning the whole answer.
async fn http_get(port: u16) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn a_stopped_container_stops_fast_and_once_removed_is_gone() {
    let Some(rt) = setup("a_stopped_container_stops_fast_and_once_removed_is_gone").await else {
        return;
    };
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("stop"));
    let s = spec(&name, &["sleep", "300"]);
    let id = rt.create(&s).await.unwrap();
    rt.start(&id).await.unwrap();
    // Starting a running container is success (the engine's 304).
    rt.start(&id).await.unwrap();
    let waiter = tokio::spawn({
        let rt = rt.clone();
        let id = id.clone();
        async move { rt.wait(&id).await }
    });
    // Removing a running container without force is a conflict.
    assert!(matches!(
        rt.remove(&id, false).await,
        Err(RuntimeError::Conflict(_))
    ));
    let t = Instant::now();
    rt.stop(&id, Duration::from_secs(20)).await.unwrap();
    // With an init as PID 1, SIGTERM ends `sleep` at once instead of after the grace period.
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(waiter.await.unwrap().unwrap(), 143);
    // Stopping a stopped container is success (304); killing one is a conflict (409).
    rt.stop(&id, Duration::from_secs(1)).await.unwrap();
    assert!(matches!(rt.kill(&id).await, Err(RuntimeError::Conflict(_))));
    assert_eq!(
        rt.inspect(&id).await.unwrap().status,
        ContainerStatus::Exited
    );
    let label = format!("io.poseidon.test={name}");
    assert_eq!(rt.list(&label).await.unwrap().len(), 1);
    rt.remove(&id, false).await.unwrap();
    assert!(rt.list(&label).await.unwrap().is_empty());
    assert!(matches!(
        rt.inspect(&id).await,
        Err(RuntimeError::NoSuchContainer(ref m)) if m.contains("No such container")
    ));
    assert!(matches!(
        rt.remove(&id, true).await,
        Err(RuntimeError::NoSuchContainer(_))
    ));
}

#[tokio::test]
async fn list_reports_our_labelled_containers_with_their_state() {
    let Some(rt) = setup("list_reports_our_labelled_containers").await else {
        return;
    };
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("list"));
    let id = rt.create(&spec(&name, &["sleep", "300"])).await.unwrap();
    rt.start(&id).await.unwrap();
    let found = rt.list(&format!("io.poseidon.test={name}")).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
    assert_eq!(found[0].name, name);
    assert_eq!(found[0].status, ContainerStatus::Running);
    assert_eq!(found[0].labels.get("io.poseidon.test"), Some(&name));
    rt.kill(&id).await.unwrap();
    assert_eq!(rt.wait(&id).await.unwrap(), 137);
}

#[tokio::test]
async fn a_duplicate_name_is_a_conflict() {
    let Some(rt) = setup("a_duplicate_name_is_a_conflict").await else {
        return;
    };
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("dup"));
    rt.create(&spec(&name, &["true"])).await.unwrap();
    let err = rt.create(&spec(&name, &["true"])).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Conflict(ref m) if m.contains("already in use")),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_image_fails_promptly_with_the_daemons_message() {
    let Some(rt) = setup("a_missing_image_fails_promptly").await else {
        return;
    };
    let image = "poseidon-test/does-not-exist:never";
    let t = Instant::now();
    let err = rt.ensure_image(image, &|_| {}).await.unwrap_err();
    // Without a registry the daemon says why it could not pull (a DNS failure here); with one, that
    // the repository does not exist. Either way its own words come through.
    match &err {
        RuntimeError::NoSuchImage(m) | RuntimeError::Daemon { message: m, .. } => {
            assert!(!m.is_empty());
            assert!(
                !m.contains("{\""),
                "the message is unwrapped from JSON: {m}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(t.elapsed() < rt.timeouts().pull, "{:?}", t.elapsed());
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("noimage"));
    let mut s = spec(&name, &["true"]);
    s.image = image.into();
    let err = rt.create(&s).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::NoSuchImage(ref m) if m.contains("No such image")),
        "{err}"
    );
    // A present image needs no pull.
    rt.ensure_image(TEST_IMAGE, &|_| panic!("no progress expected"))
        .await
        .unwrap();
}

#[tokio::test]
async fn exec_returns_the_commands_output_and_exit_code() {
    let Some(rt) = setup("exec_returns_the_commands_output_and_exit_code").await else {
        return;
    };
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("exec"));
    let id = rt.create(&spec(&name, &["sleep", "300"])).await.unwrap();
    rt.start(&id).await.unwrap();
    let cmd: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 4"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = rt.exec(&id, &cmd, Duration::from_secs(10)).await.unwrap();
    assert_eq!(out.exit_code, 4);
    assert!(
        out.output.contains("out\n") && out.output.contains("err\n"),
        "{out:?}"
    );
    let ok = rt
        .exec(
            &id,
            &["cat".into(), "/www/index.html".into()],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!((ok.exit_code, ok.output.trim()), (0, TEST_PAGE));
    // A command that outlives its timeout is cut short.
    let slow = rt
        .exec(
            &id,
            &["sleep".into(), "5".into()],
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(slow, Err(RuntimeError::Timeout(_))), "{slow:?}");
}

#[tokio::test]
async fn events_report_start_and_die_with_our_label() {
    let Some(rt) = setup("events_report_start_and_die_with_our_label").await else {
        return;
    };
    let mut cleanup = Cleanup::new(&rt);
    let name = cleanup.track(unique_name("events"));
    let mut events = rt
        .events(&format!("io.poseidon.test={name}"))
        .await
        .unwrap();
    let id = rt
        .create(&spec(&name, &["sh", "-c", "sleep 0.2; exit 2"]))
        .await
        .unwrap();
    rt.start(&id).await.unwrap();
    match next_event(&mut events).await {
        RuntimeEvent::Started { id: got, labels } => {
            assert_eq!(got, id);
            assert_eq!(labels.get("io.poseidon.test"), Some(&name));
        }
        other => panic!("expected a start, got {other:?}"),
    }
    match next_event(&mut events).await {
        RuntimeEvent::Died {
            id: got,
            exit_code,
            labels,
        } => {
            assert_eq!(got, id);
            assert_eq!(exit_code, Some(2));
            assert_eq!(
                labels.get(labels::MANAGED).map(String::as_str),
                Some("true")
            );
        }
        other => panic!("expected a die, got {other:?}"),
    }
}

/// The next event, failing the test after 10 s or on an error.
async fn next_event(events: &mut poseidon_runtimes::EventStream) -> RuntimeEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("an open stream")
        .expect("an event, not an error")
}

#[tokio::test]
async fn an_unknown_container_is_no_such_container_for_every_call() {
    let Some(rt) = setup("an_unknown_container_is_no_such_container").await else {
        return;
    };
    let id = "poseidon-test-no-such-container";
    for r in [
        rt.start(id).await.map(drop),
        rt.stop(id, Duration::from_secs(1)).await.map(drop),
        rt.kill(id).await.map(drop),
        rt.inspect(id).await.map(drop),
        rt.wait(id).await.map(drop),
        rt.logs(id, None).await.map(drop),
        rt.stats(id).await.map(drop),
    ] {
        assert!(matches!(r, Err(RuntimeError::NoSuchContainer(_))), "{r:?}");
    }
}
