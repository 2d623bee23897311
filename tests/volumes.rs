//! Volumes, the pull policy and registry credentials, without Docker: a worker on `MockRuntime`
//! refusing a host volume it does not list, mounting the ones it does and pulling `always`; the
//! manager refusing host paths and `privileged` at submit; and a Docker worker whose engine is a
//! wiremock stand-in, to show that registry credentials reach the pull and nothing else (not the
//! logs, not any API answer).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use poseidon::client::WorkerClient;
use poseidon::task::{Desired, TaskId};
use poseidon::wire::{Assignment, AssignmentBatch};
use poseidon_runtimes::mock::{Call, Op};
use poseidon_runtimes::{MountKind, MountSpec};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(10);

/// The password of the credentials test; it must appear nowhere but in the pull's header.
const PASSWORD: &str = "pw-Zq8-never-shown";

fn spec(json: serde_json::Value) -> poseidon::task::TaskSpec {
    poseidon::spec::parse_submission(json.to_string().as_bytes())
        .unwrap()
        .spec
}

#[tokio::test]
async fn a_worker_rejects_a_host_volume_it_does_not_list_and_mounts_the_ones_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        r#"
[[worker]]
name = "vol-mock"
runtime = "mock"
host_volumes = { logs = "/var/log/app" }
"#,
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let w = &run.workers[0];
    let mock = w.mock.clone().unwrap();
    // The worker tells the manager which host volumes it offers.
    assert_eq!(w.worker.heartbeat().host_volumes, vec!["logs".to_string()]);

    let client = WorkerClient::new(&format!("http://{}", w.addr), WAIT);
    let denied = TaskId::default();
    let allowed = TaskId::default();
    let reply = client
        .assign(&AssignmentBatch {
            assignments: vec![
                Assignment {
                    id: denied,
                    generation: 1,
                    spec: spec(json!({"name": "bad", "image": "busybox",
                        "volumes": [{"host_volume": "secrets", "target": "/s"}]})),
                    desired: Desired::Run,
                },
                Assignment {
                    id: allowed,
                    generation: 1,
                    spec: spec(json!({"name": "good", "image": "busybox", "pull": "always",
                        "volumes": [{"host_volume": "logs", "target": "/var/log/app", "read_only": true},
                                    {"source": "data", "target": "/data"}]})),
                    desired: Desired::Run,
                },
            ],
        })
        .await
        .unwrap();
    assert_eq!(reply.rejected.len(), 1, "{reply:?}");
    assert_eq!(reply.rejected[0].id, denied);
    assert_eq!(
        reply.rejected[0].error,
        r#"host volume "secrets" is not allowed on node vol-mock (its host_volumes: logs)"#
    );
    assert_eq!(reply.accepted.len(), 1, "{reply:?}");
    assert_eq!(reply.accepted[0].id, allowed);
    assert!(w.worker.task(denied).is_none(), "nothing is held for it");

    wait_for("the allowed task to run", WAIT, || async {
        (w.worker.task(allowed)?.state == poseidon::task::State::Running).then_some(())
    })
    .await;
    let creates = mock.calls_of(Op::Create);
    let [Call::Create(created)] = creates.as_slice() else {
        panic!("one create expected, got {creates:?}");
    };
    assert_eq!(
        created.mounts,
        vec![
            MountSpec {
                kind: MountKind::Bind,
                source: "/var/log/app".into(),
                target: "/var/log/app".into(),
                read_only: true,
            },
            MountSpec {
                kind: MountKind::Volume,
                source: "data".into(),
                target: "/data".into(),
                read_only: false,
            },
        ]
    );
    // `pull = "always"` pulls although the mock has the image, and does not merely ensure it.
    assert_eq!(mock.count(Op::PullImage), 1);
    assert_eq!(mock.count(Op::EnsureImage), 0);
    run.stop().await;
}

#[tokio::test]
async fn the_default_pull_policy_only_ensures_the_image_and_a_failed_always_pull_fails_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\n[[worker]]\nname = \"pull-mock\"\nruntime = \"mock\"\nheartbeat_interval = \"200ms\"\n",
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let mock = run.workers[0].mock.clone().unwrap();
    let id = api.submit(&json!({"image": "busybox"})).await;
    api.wait_state(&id, "running", WAIT).await;
    assert_eq!(
        (mock.count(Op::EnsureImage), mock.count(Op::PullImage)),
        (1, 0)
    );
    mock.missing_image("ghost:1");
    let id = api
        .submit(&json!({"image": "ghost:1", "pull": "always"}))
        .await;
    let failed = api.wait_state(&id, "failed", WAIT).await;
    let reason = failed["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("no such image"), "{failed}");
    run.stop().await;
}

#[tokio::test]
async fn host_paths_and_privileged_are_refused_at_submit_with_a_400_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\n[[worker]]\nname = \"submit-mock\"\nruntime = \"mock\"\n",
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let cases = [
        (
            json!({"image": "busybox", "volumes": [{"source": "/var/run/docker.sock", "target": "/s"}]}),
            "volumes[0].source \"/var/run/docker.sock\" is a host path",
        ),
        (
            json!({"image": "busybox", "volumes": ["/etc:/host-etc:ro"]}),
            "volumes[0].source \"/etc\" is a host path",
        ),
        (
            json!({"image": "busybox", "volumes": [{"host_volume": "/srv", "target": "/srv"}]}),
            "volumes[0].host_volume \"/srv\" is a host path",
        ),
        (
            json!({"image": "busybox", "privileged": true}),
            "unknown field \"privileged\"",
        ),
    ];
    for (body, want) in cases {
        let (status, reply) = api.post("/tasks", &body).await;
        assert_eq!(status, 400, "{body}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{body}: {error}");
    }
    let (_, tasks) = api.get("/tasks").await;
    assert_eq!(tasks, json!([]), "nothing was stored");
    run.stop().await;
}

/// Everything every test of this binary logs, at debug level, to search for the password.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn registry_credentials_go_with_the_pull_and_never_into_logs_or_answers() {
    let logs = captured_logs();
    // A stand-in engine: it answers pings and the adoption list, and refuses the pull the way a
    // registry without these credentials would.
    let engine = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/_ping"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Api-Version", "1.41")
                .set_body_string("OK"),
        )
        .mount(&engine)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.41/containers/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&engine)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1.41/images/create"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "message": "Get \"https://registry.example:5000/v2/app/manifests/v1\": unauthorized: authentication required"
        })))
        .mount(&engine)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[manager]
[[worker]]
name = "cred-wire"
docker_host = "tcp://{}"
heartbeat_interval = "200ms"
registry_auth = [{{ registry = "registry.example:5000", username = "deploy", password = "{PASSWORD}" }}]
"#,
        engine.address()
    );
    let cfg = localize(&text, dir.path(), false);
    let shown = format!("{cfg:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let id = api
        .submit(
            &json!({"name": "private", "image": "registry.example:5000/app:v1", "pull": "always"}),
        )
        .await;
    let failed = api.wait_state(&id, "failed", WAIT).await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("unauthorized: authentication required"),
        "{failed}"
    );
    // The credentials did go with the pull: base64url of
    // {"password":PASSWORD,"serveraddress":"registry.example:5000","username":"deploy"}.
    let pulls: Vec<_> = engine
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/v1.41/images/create")
        .collect();
    assert!(!pulls.is_empty());
    for pull in &pulls {
        assert_eq!(
            pull.headers.get("x-registry-auth").unwrap().to_str().unwrap(),
            "eyJwYXNzd29yZCI6InB3LVpxOC1uZXZlci1zaG93biIsInNlcnZlcmFkZHJlc3MiOiJyZWdpc3RyeS5leGFtcGxlOjUwMDAiLCJ1c2VybmFtZSI6ImRlcGxveSJ9"
        );
    }
    // ...and nowhere else: not in an answer of either API...
    let worker = Api::new(format!("http://{}", run.workers[0].addr));
    for (api, path) in [
        (&api, "/tasks".to_string()),
        (&api, format!("/tasks/{id}")),
        (&api, "/nodes".to_string()),
        (&api, "/health".to_string()),
        (&worker, "/tasks".to_string()),
        (&worker, "/health".to_string()),
        (&worker, "/stats".to_string()),
    ] {
        let (_, body) = api.get(&path).await;
        assert!(!body.to_string().contains(PASSWORD), "{path}: {body}");
    }
    run.stop().await;
    // ...nor in the logs, which did record the start-up and the failed pull.
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(text.contains("cred-wire"), "the capture works: {text}");
    assert!(text.contains("authentication required"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_mounting_a_host_volume_is_placed_only_on_a_node_that_offers_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        r#"
[manager]
scheduler = "round-robin"

[[worker]]
name = "plain"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"

[[worker]]
name = "logger"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
host_volumes = { logs = "/var/log" }
"#,
        dir.path(),
        true,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    wait_for("both nodes up", WAIT, || async {
        let nodes = api.ok("/nodes").await;
        (nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "up")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    // Round-robin alone would put every other task on "plain".
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            api.submit(&json!({"name": format!("l{i}"), "image": "busybox",
                "volumes": [{"host_volume": "logs", "target": "/logs", "read_only": true}]}))
                .await,
        );
    }
    for id in &ids {
        let t = api.wait_state(id, "running", WAIT).await;
        assert_eq!(t["node"], "logger", "{t}");
    }
    // Placed there at once, not refused by "plain" and retried until it happened to fit.
    let (_, metrics) = api.get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("poseidon_dispatch_failures_total 0"),
        "{metrics}"
    );
    // A host volume no node offers: nothing fits, and the reason names the attribute.
    let id = api
        .submit(&json!({"name": "nowhere", "image": "busybox",
            "volumes": [{"host_volume": "secrets", "target": "/s"}]}))
        .await;
    let t = wait_for("the reason", WAIT, || async {
        let t = api.ok(&format!("/tasks/{id}")).await;
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("node.host_volume.secrets"))
            .then_some(t)
    })
    .await;
    assert_eq!(t["state"], "pending", "{t}");
    run.stop().await;
}
