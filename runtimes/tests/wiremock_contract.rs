//! Contract tests: wiremock stands in for the Docker daemon over `tcp://`, and each test checks the
//! exact requests `DockerRuntime` sends (paths with the negotiated version prefix, query strings,
//! JSON bodies) and how each answer, error status or silence is turned into a result.
//!
//! The JSON answers under `tests/fixtures/` were recorded from the Docker 20.10 engine of this
//! machine, so the parsing is checked against what the engine really says.

// A failed unwrap is how a test reports a broken expectation.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use poseidon_runtimes::docker::{DockerRuntime, Timeouts};
use poseidon_runtimes::{
    ContainerSpec, ContainerStatus, PortBinding, PortSpec, Runtime, RuntimeError, RuntimeEvent,
};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A mock daemon that answers `/_ping` with `Api-Version: version`.
async fn daemon(version: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/_ping"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Api-Version", version)
                .set_body_string("OK"),
        )
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> DockerRuntime {
    DockerRuntime::new(Some(&format!("tcp://{}", server.address()))).unwrap()
}

fn fixture(name: &str) -> Value {
    let file = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
}

/// The requests the daemon saw, apart from pings.
async fn requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() != "/_ping")
        .collect()
}

fn error(message: &str) -> Value {
    json!({ "message": message })
}

#[tokio::test]
async fn paths_carry_the_daemons_version_when_it_is_older_than_ours() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/start"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let rt = client(&server);
    rt.start("abc").await.unwrap();
    assert_eq!(rt.api_version().await.unwrap(), "1.41");
}

#[tokio::test]
async fn a_newer_daemon_is_spoken_to_in_our_version() {
    let server = daemon("1.50").await;
    Mock::given(method("POST"))
        .and(path("/v1.47/containers/abc/start"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let rt = client(&server);
    rt.start("abc").await.unwrap();
    assert_eq!(rt.api_version().await.unwrap(), "1.47");
}

#[tokio::test]
async fn the_version_is_negotiated_once_and_cached() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let rt = client(&server);
    for _ in 0..3 {
        rt.start("abc").await.unwrap();
    }
    let all = server.received_requests().await.unwrap();
    let pings = all.iter().filter(|r| r.url.path() == "/_ping").count();
    assert_eq!(pings, 1);
}

#[tokio::test]
async fn create_sends_the_exact_body_and_name() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/create"))
        .and(query_param("name", "poseidon-web-1a2b"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"Id": "c0ffee", "Warnings": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let spec = ContainerSpec {
        name: "poseidon-web-1a2b".into(),
        image: "nginx".into(),
        cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
        env: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "x=y".into())]),
        labels: BTreeMap::from([
            ("io.poseidon.task".into(), "t1".into()),
            ("io.poseidon.generation".into(), "3".into()),
        ]),
        cpus: Some(1.5),
        memory: Some(256 << 20),
        ports: vec![
            PortSpec {
                container_port: 80,
                host_port: Some(8080),
                protocol: "tcp".into(),
            },
            PortSpec {
                container_port: 53,
                host_port: None,
                protocol: "udp".into(),
            },
        ],
        network: Some("poseidon-net".into()),
        mounts: Vec::new(),
    };
    let rt = client(&server);
    assert_eq!(rt.create(&spec).await.unwrap(), "c0ffee");
    let sent = &requests(&server).await[0];
    assert_eq!(
        sent.headers.get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        body,
        json!({
            "Image": "nginx:latest",
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Env": ["A=1", "B=x=y"],
            "Labels": {"io.poseidon.task": "t1", "io.poseidon.generation": "3"},
            "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
            "HostConfig": {
                "PortBindings": {
                    "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                    "53/udp": [{"HostIp": "", "HostPort": ""}]
                },
                "NanoCpus": 1_500_000_000i64,
                "Memory": 268_435_456u64,
                "RestartPolicy": {"Name": "no"},
                "Init": true,
                "NetworkMode": "poseidon-net"
            }
        })
    );
}

#[tokio::test]
async fn create_omits_an_empty_command_and_unset_limits() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/create"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"Id": "c1"})))
        .mount(&server)
        .await;
    let rt = client(&server);
    rt.create(&ContainerSpec {
        name: "plain".into(),
        image: "localhost:5000/app".into(),
        ..ContainerSpec::default()
    })
    .await
    .unwrap();
    let body: Value = serde_json::from_slice(&requests(&server).await[0].body).unwrap();
    assert_eq!(body["Image"], "localhost:5000/app:latest");
    assert!(body.get("Cmd").is_none());
    let host = body["HostConfig"].as_object().unwrap();
    assert!(!host.contains_key("NanoCpus") && !host.contains_key("Memory"));
    assert!(!host.contains_key("NetworkMode"));
    assert_eq!(host["RestartPolicy"], json!({"Name": "no"}));
    assert_eq!(host["Init"], json!(true));
}

#[tokio::test]
async fn create_with_a_missing_image_is_no_such_image_and_a_taken_name_is_a_conflict() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(query_param("name", "missing"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(error("No such image: ghost:latest")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(query_param("name", "taken"))
        .respond_with(ResponseTemplate::new(409).set_body_json(error(
            "Conflict. The container name \"/taken\" is already in use by container \"abc\".",
        )))
        .mount(&server)
        .await;
    let rt = client(&server);
    let spec = |name: &str| ContainerSpec {
        name: name.into(),
        image: "ghost".into(),
        ..ContainerSpec::default()
    };
    assert_eq!(
        rt.create(&spec("missing")).await.unwrap_err(),
        RuntimeError::NoSuchImage("No such image: ghost:latest".into())
    );
    assert!(matches!(
        rt.create(&spec("taken")).await.unwrap_err(),
        RuntimeError::Conflict(m) if m.contains("already in use")
    ));
}

#[tokio::test]
async fn invalid_specs_are_refused_before_anything_is_sent() {
    let server = daemon("1.41").await;
    let rt = client(&server);
    for spec in [
        ContainerSpec {
            image: "".into(),
            ..ContainerSpec::default()
        },
        ContainerSpec {
            image: "a".into(),
            cpus: Some(f64::NAN),
            ..ContainerSpec::default()
        },
        ContainerSpec {
            image: "a".into(),
            ports: vec![PortSpec {
                container_port: 1,
                host_port: None,
                protocol: "icmp".into(),
            }],
            ..ContainerSpec::default()
        },
    ] {
        assert!(matches!(
            rt.create(&spec).await,
            Err(RuntimeError::Invalid(_))
        ));
    }
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn start_and_stop_treat_304_as_success() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/start"))
        .respond_with(ResponseTemplate::new(304))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/stop"))
        .and(query_param("t", "10"))
        .respond_with(ResponseTemplate::new(304))
        .expect(1)
        .mount(&server)
        .await;
    let rt = client(&server);
    rt.start("abc").await.unwrap();
    rt.stop("abc", Duration::from_secs(10)).await.unwrap();
}

#[tokio::test]
async fn stop_rounds_the_grace_up_to_whole_seconds() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/stop"))
        .and(query_param("t", "3"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .stop("abc", Duration::from_millis(2500))
        .await
        .unwrap();
}

#[tokio::test]
async fn stops_client_timeout_exceeds_the_grace_period() {
    // The daemon takes 1.5 s, within a 1 s grace plus a 1 s margin, though past the 1 s call limit.
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/stop"))
        .respond_with(ResponseTemplate::new(204).set_delay(Duration::from_millis(1500)))
        .mount(&server)
        .await;
    let rt = client(&server).with_timeouts(Timeouts {
        call: Duration::from_secs(1),
        stop_margin: Duration::from_secs(1),
        ..Timeouts::default()
    });
    rt.stop("abc", Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn remove_and_kill_send_the_right_requests() {
    let server = daemon("1.41").await;
    Mock::given(method("DELETE"))
        .and(path("/v1.41/containers/abc"))
        .and(query_param("force", "true"))
        .and(query_param("v", "true"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/kill"))
        .respond_with(ResponseTemplate::new(409).set_body_json(error(
            "Cannot kill container: abc: Container abc is not running",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let rt = client(&server);
    rt.remove("abc", true).await.unwrap();
    assert!(matches!(
        rt.kill("abc").await.unwrap_err(),
        RuntimeError::Conflict(m) if m.contains("is not running")
    ));
}

#[tokio::test]
async fn a_404_is_no_such_container_with_the_daemons_message() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error("No such container: nope")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error("No such container: nope")))
        .mount(&server)
        .await;
    let rt = client(&server);
    let expected = RuntimeError::NoSuchContainer("No such container: nope".into());
    assert_eq!(rt.start("nope").await.unwrap_err(), expected);
    assert_eq!(rt.inspect("nope").await.unwrap_err(), expected);
    assert_eq!(rt.wait("nope").await.unwrap_err(), expected);
    assert_eq!(rt.logs("nope", None).await.unwrap_err(), expected);
}

#[tokio::test]
async fn a_500_is_a_daemon_error_that_keeps_status_and_message() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(error(
            "driver failed programming external connectivity: port is already allocated",
        )))
        .mount(&server)
        .await;
    let err = client(&server).start("abc").await.unwrap_err();
    assert_eq!(
        err,
        RuntimeError::Daemon {
            status: 500,
            message: "driver failed programming external connectivity: port is already allocated"
                .into()
        }
    );
    assert_eq!(
        err.to_string(),
        "container engine error 500: driver failed programming external connectivity: port is already allocated"
    );
}

#[tokio::test]
async fn an_error_without_json_keeps_the_plain_text_body() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway from a proxy\n"))
        .mount(&server)
        .await;
    assert_eq!(
        client(&server).start("abc").await.unwrap_err(),
        RuntimeError::Daemon {
            status: 502,
            message: "bad gateway from a proxy".into()
        }
    );
}

#[tokio::test]
async fn a_hung_daemon_is_a_timeout() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .and(path("/v1.41/containers/abc/json"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let rt = client(&server).with_timeouts(Timeouts {
        call: Duration::from_millis(200),
        ..Timeouts::default()
    });
    let t = std::time::Instant::now();
    let err = rt.inspect("abc").await.unwrap_err();
    assert_eq!(err, RuntimeError::Timeout("inspect after 200ms".into()));
    assert!(err.is_engine_down());
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_daemon_that_hangs_on_ping_times_out_at_the_ping_limit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/_ping"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let rt = client(&server).with_timeouts(Timeouts {
        ping: Duration::from_millis(200),
        ..Timeouts::default()
    });
    assert_eq!(
        rt.ping().await.unwrap_err(),
        RuntimeError::Timeout("ping after 200ms".into())
    );
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let rt = DockerRuntime::new(Some(&format!("tcp://{address}"))).unwrap();
    let err = rt.ping().await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Unreachable(ref m) if m.contains("refused")),
        "{err}"
    );
    let err = rt.start("abc").await.unwrap_err();
    assert!(matches!(err, RuntimeError::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn a_missing_socket_is_unreachable() {
    let rt = DockerRuntime::new(Some("unix:///nonexistent/poseidon/docker.sock")).unwrap();
    let err = rt.ping().await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Unreachable(ref m) if m.contains("No such file")),
        "{err}"
    );
}

#[tokio::test]
async fn inspect_reads_a_running_container_as_docker_20_10_reports_it() {
    let server = daemon("1.41").await;
    let doc = fixture("inspect_running_20.10.json");
    let id = doc["Id"].as_str().unwrap().to_string();
    Mock::given(method("GET"))
        .and(path(format!("/v1.41/containers/{id}/json")))
        .respond_with(ResponseTemplate::new(200).set_body_json(&doc))
        .mount(&server)
        .await;
    let info = client(&server).inspect(&id).await.unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.name, "poseidon-fixture");
    assert_eq!(info.image, "poseidon-test/busybox:latest");
    assert_eq!(info.status, ContainerStatus::Running);
    assert_eq!(info.exit_code, None);
    assert!(info.started_at.is_some());
    assert_eq!(info.finished_at, None, "the zero time means never");
    assert_eq!(info.error, None);
    assert!(!info.oom_killed);
    assert_eq!(info.health, None);
    assert_eq!(info.ip_address.as_deref(), Some("172.17.0.2"));
    assert_eq!(
        info.labels.get("io.poseidon.task").map(String::as_str),
        Some("t1")
    );
    assert_eq!(
        info.ports,
        vec![
            PortBinding {
                container_port: 8080,
                protocol: "tcp".into(),
                host_ip: "0.0.0.0".into(),
                host_port: 32772
            },
            PortBinding {
                container_port: 8080,
                protocol: "tcp".into(),
                host_ip: "::".into(),
                host_port: 32772
            },
        ]
    );
}

#[tokio::test]
async fn inspect_reads_an_exited_container_and_a_health_status() {
    let server = daemon("1.41").await;
    let mut doc = fixture("inspect_exited_20.10.json");
    doc["State"]["Health"] = json!({"Status": "unhealthy", "FailingStreak": 3, "Log": []});
    doc["State"]["OOMKilled"] = json!(true);
    doc["NetworkSettings"]["IPAddress"] = json!("");
    doc["NetworkSettings"]["Networks"] = json!({"poseidon-net": {"IPAddress": "10.1.0.7"}});
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&doc))
        .mount(&server)
        .await;
    let info = client(&server).inspect("x").await.unwrap();
    assert_eq!(info.status, ContainerStatus::Exited);
    assert_eq!(info.exit_code, Some(143));
    assert!(info.finished_at.is_some());
    assert!(info.ports.is_empty());
    assert_eq!(info.health.as_deref(), Some("unhealthy"));
    assert!(info.oom_killed);
    assert_eq!(info.ip_address.as_deref(), Some("10.1.0.7"));
}

#[tokio::test]
async fn list_percent_encodes_the_label_filter_and_reads_the_answer() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .and(path("/v1.41/containers/json"))
        .and(query_param("all", "true"))
        .and(query_param("filters", r#"{"label":["fixture=yes"]}"#))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("list_20.10.json")))
        .expect(1)
        .mount(&server)
        .await;
    let found = client(&server).list("fixture=yes").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, "poseidon-fixture");
    assert_eq!(found[0].status, ContainerStatus::Running);
    assert_eq!(found[0].image, "poseidon-test/busybox:latest");
    let raw = requests(&server).await[0].url.query().unwrap().to_string();
    assert_eq!(
        raw,
        "all=true&filters=%7B%22label%22%3A%5B%22fixture%3Dyes%22%5D%7D"
    );
}

#[tokio::test]
async fn wait_asks_for_not_running_and_returns_the_status_code() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/wait"))
        .and(query_param("condition", "not-running"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"StatusCode": 3, "Error": null})),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client(&server).wait("abc").await.unwrap(), 3);
}

#[tokio::test]
async fn a_long_wait_ends_when_the_daemon_stops_answering_pings() {
    let server = MockServer::start().await;
    // The first ping (version negotiation) answers; later ones, the liveness checks, fail.
    Mock::given(method("GET"))
        .and(path("/_ping"))
        .respond_with(ResponseTemplate::new(200).insert_header("Api-Version", "1.41"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/_ping"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/wait"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let rt = client(&server).with_timeouts(Timeouts {
        ping: Duration::from_millis(200),
        liveness: Duration::from_millis(200),
        ..Timeouts::default()
    });
    let t = std::time::Instant::now();
    let err = rt.wait("abc").await.unwrap_err();
    assert!(err.is_engine_down(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn ensure_image_does_not_pull_a_present_image() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .and(path("/v1.41/images/localhost:5000/app:v2/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Id": "sha256:1"})))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .ensure_image("localhost:5000/app:v2", &|_| panic!("no pull expected"))
        .await
        .unwrap();
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn ensure_image_pulls_a_missing_image_with_an_explicit_tag() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .and(path("/v1.41/images/localhost:5000/app:latest/json"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error("no such image")))
        .mount(&server)
        .await;
    let progress = [
        json!({"status": "Pulling from app", "id": "latest"}),
        json!({"status": "Downloading", "id": "abc", "progressDetail": {"current": 10, "total": 100}}),
        json!({"status": "Status: Downloaded newer image for localhost:5000/app:latest"}),
    ]
    .iter()
    .map(|v| format!("{v}\r\n"))
    .collect::<String>();
    Mock::given(method("POST"))
        .and(path("/v1.41/images/create"))
        .and(query_param("fromImage", "localhost:5000/app"))
        .and(query_param("tag", "latest"))
        .respond_with(ResponseTemplate::new(200).set_body_string(progress))
        .expect(1)
        .mount(&server)
        .await;
    let seen = std::sync::Mutex::new(Vec::new());
    let report = |p: poseidon_runtimes::PullProgress| seen.lock().unwrap().push(p);
    client(&server)
        .ensure_image("localhost:5000/app", &report)
        .await
        .unwrap();
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].layer.as_deref(), Some("abc"));
    assert_eq!((seen[1].current, seen[1].total), (Some(10), Some(100)));
}

#[tokio::test]
async fn a_pull_that_fails_midstream_is_an_error_with_the_daemons_message() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error("no such image")))
        .mount(&server)
        .await;
    let body = concat!(
        "{\"status\":\"Pulling from library/ghost\",\"id\":\"1\"}\n",
        "{\"errorDetail\":{\"message\":\"manifest for ghost:1 not found: manifest unknown\"},",
        "\"error\":\"manifest for ghost:1 not found: manifest unknown\"}\n"
    );
    Mock::given(method("POST"))
        .and(path("/v1.41/images/create"))
        .and(query_param("fromImage", "ghost"))
        .and(query_param("tag", "1"))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(&server)
        .await;
    assert_eq!(
        client(&server)
            .ensure_image("ghost:1", &|_| {})
            .await
            .unwrap_err(),
        RuntimeError::NoSuchImage("manifest for ghost:1 not found: manifest unknown".into())
    );
}

#[tokio::test]
async fn a_pull_refused_by_status_keeps_the_message_and_tells_missing_from_unreachable() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error("no such image")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(query_param("fromImage", "nosuch/thing"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error(
            "pull access denied for nosuch/thing, repository does not exist or may require 'docker login'",
        )))
        .mount(&server)
        .await;
    // What this machine's daemon answers with no registry in reach.
    let offline = "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host";
    Mock::given(method("POST"))
        .and(query_param("fromImage", "busybox"))
        .respond_with(ResponseTemplate::new(500).set_body_json(error(offline)))
        .mount(&server)
        .await;
    let rt = client(&server);
    assert!(matches!(
        rt.ensure_image("nosuch/thing", &|_| {}).await.unwrap_err(),
        RuntimeError::NoSuchImage(m) if m.starts_with("pull access denied")
    ));
    assert_eq!(
        rt.ensure_image("busybox", &|_| {}).await.unwrap_err(),
        RuntimeError::Daemon {
            status: 500,
            message: offline.into()
        }
    );
}

#[tokio::test]
async fn a_pull_that_outlasts_its_timeout_is_a_timeout() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_json(error("no such image")))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let rt = client(&server).with_timeouts(Timeouts {
        pull: Duration::from_millis(300),
        ..Timeouts::default()
    });
    assert_eq!(
        rt.ensure_image("slow", &|_| {}).await.unwrap_err(),
        RuntimeError::Timeout("pull after 300ms".into())
    );
}

#[tokio::test]
async fn import_sends_the_tarball_and_scans_the_answer() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/images/create"))
        .and(query_param("fromSrc", "-"))
        .and(query_param("repo", "poseidon-test/busybox"))
        .and(query_param("tag", "latest"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"status\":\"sha256:abc\"}\r\n"))
        .expect(1)
        .mount(&server)
        .await;
    let rt = client(&server);
    rt.import_image(b"tar bytes".to_vec(), "poseidon-test/busybox", "latest")
        .await
        .unwrap();
    let sent = &requests(&server).await[0];
    assert_eq!(sent.body, b"tar bytes");
    assert_eq!(
        sent.headers.get("content-type").unwrap().to_str().unwrap(),
        "application/x-tar"
    );
}

#[tokio::test]
async fn logs_ask_for_both_streams_and_the_tail_and_demultiplex_them() {
    let server = daemon("1.41").await;
    let mut body = Vec::new();
    for (stream, text) in [(1u8, "out 1\n"), (2, "err 1\n"), (1, "out 2\n")] {
        body.extend_from_slice(&[stream, 0, 0, 0]);
        body.extend_from_slice(&(text.len() as u32).to_be_bytes());
        body.extend_from_slice(text.as_bytes());
    }
    Mock::given(method("GET"))
        .and(path("/v1.41/containers/abc/logs"))
        .and(query_param("stdout", "1"))
        .and(query_param("stderr", "1"))
        .and(query_param("tail", "50"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.41/containers/abc/logs"))
        .and(query_param("tail", "all"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(Vec::new()))
        .expect(1)
        .mount(&server)
        .await;
    let rt = client(&server);
    let logs = rt.logs("abc", Some(50)).await.unwrap();
    assert_eq!(logs.stdout, "out 1\nout 2\n");
    assert_eq!(logs.stderr, "err 1\n");
    assert_eq!(rt.logs("abc", None).await.unwrap(), Default::default());
}

#[tokio::test]
async fn stats_are_computed_from_a_docker_20_10_sample() {
    let server = daemon("1.41").await;
    Mock::given(method("GET"))
        .and(path("/v1.41/containers/abc/stats"))
        .and(query_param("stream", "false"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("stats_20.10.json")))
        .mount(&server)
        .await;
    let s = client(&server).stats("abc").await.unwrap();
    // (30259473 - 30209339) / (4291750000000 - 4289760000000) * 2 cores.
    let expected = 50_134.0 / 1_990_000_000.0 * 2.0;
    assert!((s.cpu_cores - expected).abs() < 1e-12, "{}", s.cpu_cores);
    // usage 2068480 minus inactive_file 1425408.
    assert_eq!(s.memory_bytes, 643_072);
    assert_eq!(s.memory_limit_bytes, 64 << 20);
}

#[tokio::test]
async fn exec_creates_starts_and_inspects_and_returns_output_and_code() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/abc/exec"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"Id": "e1"})))
        .expect(1)
        .mount(&server)
        .await;
    let mut output = vec![1u8, 0, 0, 0, 0, 0, 0, 3];
    output.extend_from_slice(b"ok\n");
    Mock::given(method("POST"))
        .and(path("/v1.41/exec/e1/start"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(output))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.41/exec/e1/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"Running": false, "ExitCode": 7})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let rt = client(&server);
    let out = rt
        .exec(
            "abc",
            &["check".into(), "--now".into()],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((out.exit_code, out.output.as_str()), (7, "ok\n"));
    let sent = requests(&server).await;
    let create: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        create,
        json!({"AttachStdout": true, "AttachStderr": true, "Tty": false, "Cmd": ["check", "--now"]})
    );
    let start: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_eq!(start, json!({"Detach": false, "Tty": false}));
}

#[tokio::test]
async fn exec_in_a_stopped_container_is_a_conflict_and_a_slow_one_times_out() {
    let server = daemon("1.41").await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/stopped/exec"))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(error("Container stopped is not running")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/slow/exec"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(10)))
        .mount(&server)
        .await;
    let rt = client(&server);
    assert!(matches!(
        rt.exec("stopped", &[], Duration::from_secs(5)).await,
        Err(RuntimeError::Conflict(_))
    ));
    assert_eq!(
        rt.exec("slow", &[], Duration::from_millis(200))
            .await
            .unwrap_err(),
        RuntimeError::Timeout("exec after 200ms".into())
    );
}

#[tokio::test]
async fn events_percent_encode_their_filters() {
    let server = daemon("1.41").await;
    let lines = std::fs::read_to_string(format!(
        "{}/tests/fixtures/events_20.10.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    Mock::given(method("GET"))
        .and(path("/v1.41/events"))
        .and(query_param(
            "filters",
            r#"{"event":["start","die"],"label":["fixture=yes"],"type":["container"]}"#,
        ))
        .respond_with(ResponseTemplate::new(200).set_body_string(lines))
        .expect(1)
        .mount(&server)
        .await;
    let mut events = client(&server).events("fixture=yes").await.unwrap();
    let started = events.recv().await.unwrap().unwrap();
    assert!(
        matches!(started, RuntimeEvent::Started { ref labels, .. } if labels.get("io.poseidon.task").map(String::as_str) == Some("t1"))
    );
    let died = events.recv().await.unwrap().unwrap();
    assert!(
        matches!(died, RuntimeEvent::Died { exit_code: Some(3), ref labels, .. } if !labels.contains_key("exitCode") && !labels.contains_key("name"))
    );
    // wiremock closes the body, which to a subscriber is a lost daemon: one error, then the end.
    assert!(matches!(
        events.recv().await,
        Some(Err(RuntimeError::Unreachable(_)))
    ));
    assert!(events.recv().await.is_none());
}
