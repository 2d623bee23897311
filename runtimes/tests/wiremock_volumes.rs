//! Contract tests for mounts and pulls with credentials: wiremock stands in for the Docker daemon and
//! each test checks the exact `HostConfig.Mounts` of a create and the `X-Registry-Auth` header (or its
//! absence) of a pull.

// A failed unwrap is how a test reports a broken expectation.
#![allow(clippy::unwrap_used)]

use poseidon_runtimes::docker::DockerRuntime;
use poseidon_runtimes::registry::RegistryAuth;
use poseidon_runtimes::{ContainerSpec, MountKind, MountSpec, Runtime, RuntimeError};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A mock daemon that answers `/_ping` with `Api-Version: 1.41`.
async fn daemon() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/_ping"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("Api-Version", "1.41")
                .set_body_string("OK"),
        )
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> DockerRuntime {
    DockerRuntime::new(Some(&format!("tcp://{}", server.address()))).unwrap()
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

fn credentials() -> Vec<RegistryAuth> {
    vec![RegistryAuth {
        registry: "registry.example:5000".into(),
        username: "deploy".into(),
        password: "hunter2".into(),
    }]
}

/// Answers a pull of `repo:tag` with a short successful progress stream.
async fn pullable(server: &MockServer, repo: &str, tag: &str) {
    let body = format!(
        "{}\r\n",
        json!({"status": format!("Status: Downloaded newer image for {repo}:{tag}")})
    );
    Mock::given(method("POST"))
        .and(path("/v1.41/images/create"))
        .and(query_param("fromImage", repo))
        .and(query_param("tag", tag))
        .respond_with(ResponseTemplate::new(200).set_body_string(body))
        .mount(server)
        .await;
}

#[tokio::test]
async fn create_sends_named_volumes_and_binds_as_host_config_mounts() {
    let server = daemon().await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/create"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"Id": "c0ffee", "Warnings": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let spec = ContainerSpec {
        name: "db".into(),
        image: "postgres:16".into(),
        mounts: vec![
            MountSpec {
                kind: MountKind::Volume,
                source: "pgdata".into(),
                target: "/var/lib/postgresql/data".into(),
                read_only: false,
            },
            MountSpec {
                kind: MountKind::Bind,
                source: "/var/log/app".into(),
                target: "/logs".into(),
                read_only: true,
            },
        ],
        ..ContainerSpec::default()
    };
    assert_eq!(client(&server).create(&spec).await.unwrap(), "c0ffee");
    let body: Value = serde_json::from_slice(&requests(&server).await[0].body).unwrap();
    assert_eq!(
        body["HostConfig"]["Mounts"],
        json!([
            {"Type": "volume", "Source": "pgdata", "Target": "/var/lib/postgresql/data", "ReadOnly": false},
            {"Type": "bind", "Source": "/var/log/app", "Target": "/logs", "ReadOnly": true}
        ])
    );
    // Binds through Mounts only: the legacy `Binds` list would create a missing host directory.
    assert!(body["HostConfig"].get("Binds").is_none());
}

#[tokio::test]
async fn create_without_mounts_sends_no_mounts_key_and_a_relative_target_is_refused_unsent() {
    let server = daemon().await;
    Mock::given(method("POST"))
        .and(path("/v1.41/containers/create"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"Id": "c1", "Warnings": []})))
        .mount(&server)
        .await;
    let rt = client(&server);
    rt.create(&ContainerSpec {
        image: "busybox".into(),
        ..ContainerSpec::default()
    })
    .await
    .unwrap();
    let body: Value = serde_json::from_slice(&requests(&server).await[0].body).unwrap();
    assert!(body["HostConfig"].get("Mounts").is_none(), "{body}");
    let relative = ContainerSpec {
        image: "busybox".into(),
        mounts: vec![MountSpec {
            kind: MountKind::Volume,
            source: "data".into(),
            target: "data".into(),
            read_only: false,
        }],
        ..ContainerSpec::default()
    };
    assert!(matches!(
        rt.create(&relative).await.unwrap_err(),
        RuntimeError::Invalid(m) if m.contains("\"data\" is not an absolute path")
    ));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_pull_from_a_registry_with_credentials_carries_x_registry_auth() {
    let server = daemon().await;
    pullable(&server, "registry.example:5000/app", "v1").await;
    let rt = client(&server).with_registry_auth(credentials());
    rt.pull_image("registry.example:5000/app:v1", &|_| {})
        .await
        .unwrap();
    let sent = &requests(&server).await[0];
    let header = sent
        .headers
        .get("x-registry-auth")
        .expect("the pull carries X-Registry-Auth")
        .to_str()
        .unwrap()
        .to_string();
    // {"password":"hunter2","serveraddress":"registry.example:5000","username":"deploy"},
    // base64url-encoded (computed with coreutils: base64 | tr '+/' '-_').
    assert_eq!(
        header,
        "eyJwYXNzd29yZCI6Imh1bnRlcjIiLCJzZXJ2ZXJhZGRyZXNzIjoicmVnaXN0cnkuZXhhbXBsZTo1MDAwIiwidXNlcm5hbWUiOiJkZXBsb3kifQ=="
    );
    // The credentials are not in the URL either.
    assert!(!sent.url.as_str().contains("hunter2"));
}

#[tokio::test]
async fn a_pull_from_another_registry_is_anonymous() {
    let server = daemon().await;
    pullable(&server, "ghcr.io/org/app", "v1").await;
    pullable(&server, "busybox", "latest").await;
    let rt = client(&server).with_registry_auth(credentials());
    rt.pull_image("ghcr.io/org/app:v1", &|_| {}).await.unwrap();
    rt.pull_image("busybox", &|_| {}).await.unwrap();
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    for r in sent {
        assert!(r.headers.get("x-registry-auth").is_none(), "{}", r.url);
    }
}

#[tokio::test]
async fn pull_image_pulls_even_a_present_image_and_ensure_image_sends_credentials_too() {
    let server = daemon().await;
    // The image is present: ensure_image would not pull it, pull_image does.
    Mock::given(method("GET"))
        .and(path("/v1.41/images/registry.example:5000/app:v1/json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Id": "sha256:1"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.41/images/registry.example:5000/app:v2/json"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "no such image"})))
        .mount(&server)
        .await;
    pullable(&server, "registry.example:5000/app", "v1").await;
    pullable(&server, "registry.example:5000/app", "v2").await;
    let rt = client(&server).with_registry_auth(credentials());
    rt.ensure_image("registry.example:5000/app:v1", &|_| {})
        .await
        .unwrap();
    let pulls = |rs: &[Request]| {
        rs.iter()
            .filter(|r| r.url.path() == "/v1.41/images/create")
            .count()
    };
    assert_eq!(pulls(&requests(&server).await), 0);
    rt.pull_image("registry.example:5000/app:v1", &|_| {})
        .await
        .unwrap();
    assert_eq!(pulls(&requests(&server).await), 1);
    rt.ensure_image("registry.example:5000/app:v2", &|_| {})
        .await
        .unwrap();
    let sent = requests(&server).await;
    let last = sent.last().unwrap();
    assert_eq!(
        last.url.query(),
        Some("fromImage=registry.example%3A5000%2Fapp&tag=v2")
    );
    assert!(last.headers.get("x-registry-auth").is_some());
}

#[tokio::test]
async fn a_refused_pull_keeps_the_daemons_message_and_never_the_password() {
    let server = daemon().await;
    Mock::given(method("POST"))
        .and(path("/v1.41/images/create"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "message": "Get \"https://registry.example:5000/v2/app/manifests/v1\": unauthorized: authentication required"
        })))
        .mount(&server)
        .await;
    let rt = client(&server).with_registry_auth(credentials());
    let err = rt
        .pull_image("registry.example:5000/app:v1", &|_| {})
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("unauthorized: authentication required"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    let shown = format!("{rt:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("deploy"), "{shown}");
}
