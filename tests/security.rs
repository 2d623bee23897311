//! Security, black-box over HTTP: ACL tokens (401 without or with an unknown or revoked token, 403
//! without the scope), node identity (a forged heartbeat is 403), joining (no join token, no
//! identity), a worker with a manager refusing direct `POST /tasks`, the rate limit on failed
//! authentication, body limits decided after authentication, and the refusal to start on a
//! non-loopback address without security.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{localize, wait_for, Api};
use hyper::Method;
use poseidon::cluster::{self, Roles, Running};
use serde_json::{json, Value};

const ACL_CLUSTER: &str = r#"
[manager]
heartbeat_ttl = "3s"

[[worker]]
name = "w1"
runtime = "mock"
heartbeat_interval = "100ms"

[security]
acl = true
"#;

struct Secured {
    running: Running,
    api: Api,
    manage: String,
    _dir: tempfile::TempDir,
}

async fn secured() -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(ACL_CLUSTER, dir.path(), true);
    let running = cluster::start(&cfg, Roles::All).await.unwrap();
    let api = Api::new(running.manager_url().unwrap());
    let (s, t) = api.post("/acl/bootstrap", &Value::Null).await;
    assert_eq!(s, 201, "{t}");
    let manage = t["token"].as_str().unwrap().to_string();
    Secured {
        running,
        api,
        manage,
        _dir: dir,
    }
}

async fn token(api: &Api, manage: &str, policy: &str) -> Value {
    let (s, t) = api
        .with_token(manage)
        .post("/acl/tokens", &json!({ "policy": policy }))
        .await;
    assert_eq!(s, 201, "{t}");
    t
}

fn heartbeat(name: &str) -> Value {
    json!({
        "name": name, "address": "http://127.0.0.1:9", "capacity": {"cpus": 64.0, "memory": 1_000_000_000_000u64},
        "stats": {"cpu_percent": 0.0, "load_one": 0.0, "memory_used": 0, "memory_total": 0,
                  "disk_available": 0, "disk_total": 0, "tasks": 0},
        "healthy": true, "problem": null, "tasks": [], "full": true
    })
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_with_401_and_health_stays_open() {
    let c = secured().await;
    for (method, path) in [
        (Method::GET, "/tasks"),
        (Method::GET, "/nodes"),
        (Method::GET, "/metrics"),
        (Method::POST, "/tasks"),
        (Method::GET, "/acl/tokens"),
        (Method::POST, "/nodes/w1/heartbeat"),
    ] {
        let (s, v) = c.api.raw(method.clone(), path, Some(b"{}".to_vec())).await;
        assert_eq!(s, 401, "{method} {path}: {v}");
        assert!(v["error"].as_str().unwrap().contains("token"), "{v}");
    }
    let (s, v) = c.api.with_token("0123.bogus").get("/tasks").await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = c.api.get("/health").await;
    assert_eq!(s, 200, "{v}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_token_without_the_scope_is_refused_with_403_and_with_it_is_served() {
    let c = secured().await;
    let read = token(&c.api, &c.manage, "read").await;
    let submit = token(&c.api, &c.manage, "submit").await;
    let r = c.api.with_token(read["token"].as_str().unwrap());
    let s = c.api.with_token(submit["token"].as_str().unwrap());
    let task = json!({"name": "t", "image": "busybox"});
    // (api, method, path, expected status)
    let cases: Vec<(&Api, Method, &str, u16)> = vec![
        (&r, Method::GET, "/tasks", 200),
        (&r, Method::GET, "/nodes", 200),
        (&r, Method::POST, "/tasks", 403),
        (&r, Method::GET, "/acl/tokens", 403),
        (&s, Method::POST, "/acl/tokens", 403),
        (&s, Method::POST, "/acl/join-token", 403),
        (&s, Method::POST, "/nodes/w1/heartbeat", 403),
        (&s, Method::POST, "/tasks", 201),
    ];
    for (api, method, path, want) in cases {
        let (status, v) = api
            .raw(
                method.clone(),
                path,
                Some(serde_json::to_vec(&task).unwrap()),
            )
            .await;
        assert_eq!(status, want, "{method} {path}: {v}");
    }
    // A task submitted with a submit token reaches Running on the worker: the manager's own
    // credential is accepted by the worker.
    let id = s.submit(&task).await;
    s.wait_state(&id, "running", Duration::from_secs(20)).await;
    c.running.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_with_401_and_lists_never_show_secrets() {
    let c = secured().await;
    let read = token(&c.api, &c.manage, "read").await;
    let secret = read["token"].as_str().unwrap().to_string();
    let r = c.api.with_token(&secret);
    assert_eq!(r.get("/tasks").await.0, 200);
    let m = c.api.with_token(&c.manage);
    let (s, list) = m.get("/acl/tokens").await;
    assert_eq!(s, 200);
    let text = list.to_string();
    assert!(text.contains(read["accessor"].as_str().unwrap()), "{text}");
    assert!(!text.contains(secret.split_once('.').unwrap().1), "{text}");
    assert!(
        !text.contains(c.manage.split_once('.').unwrap().1),
        "{text}"
    );
    let (s, v) = m
        .delete(&format!(
            "/acl/tokens/{}",
            read["accessor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = r.get("/tasks").await;
    assert_eq!(s, 401, "{v}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_second_bootstrap_is_refused() {
    let c = secured().await;
    let (s, v) = c.api.post("/acl/bootstrap", &Value::Null).await;
    assert_eq!(s, 409, "{v}");
    assert!(!v.to_string().contains("token\":"), "{v}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_forged_heartbeat_for_an_existing_node_is_refused_with_403() {
    let c = secured().await;
    let m = c.api.with_token(&c.manage);
    // w1 joined at start and is up.
    let nodes = m.ok("/nodes").await;
    assert_eq!(nodes[0]["name"], "w1", "{nodes}");
    // An intruder with a valid join token gets an identity, but for its own name only.
    let (s, join) = m.post("/acl/join-token", &Value::Null).await;
    assert_eq!(s, 201, "{join}");
    let j = c.api.with_token(join["token"].as_str().unwrap());
    let (s, v) = j
        .post(
            "/acl/join",
            &json!({"name": "w1", "advertise": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(s, 409, "joining under a taken name: {v}");
    let (s, id) = j
        .post(
            "/acl/join",
            &json!({"name": "intruder", "advertise": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(s, 201, "{id}");
    let intruder = c.api.with_token(id["node_token"].as_str().unwrap());
    let (s, v) = intruder.post("/nodes/w1/heartbeat", &heartbeat("w1")).await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = intruder
        .post("/nodes/w1/reports", &json!({"tasks": []}))
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = m.post("/nodes/w1/heartbeat", &heartbeat("w1")).await;
    assert_eq!(s, 403, "a manage token is no node identity: {v}");
    let (s, v) = c.api.post("/nodes/w1/heartbeat", &heartbeat("w1")).await;
    assert_eq!(s, 401, "{v}");
    // The node's record is untouched: still w1's address, not the forged one.
    let nodes = m.ok("/nodes").await;
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    assert_ne!(nodes[0]["address"], "http://127.0.0.1:9", "{nodes}");
    // The intruder's own name works (it is a real identity), so the refusal above is about the name.
    let (s, v) = intruder
        .post("/nodes/intruder/heartbeat", &heartbeat("intruder"))
        .await;
    assert_eq!(s, 200, "{v}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_worker_without_a_join_token_cannot_join() {
    let c = secured().await;
    // The join route itself: no token 401, a token of another policy 403.
    let body = json!({"name": "w9", "advertise": "http://127.0.0.1:9"});
    assert_eq!(c.api.post("/acl/join", &body).await.0, 401);
    let read = token(&c.api, &c.manage, "read").await;
    let (s, v) = c
        .api
        .with_token(read["token"].as_str().unwrap())
        .post("/acl/join", &body)
        .await;
    assert_eq!(s, 403, "{v}");
    // A worker process of its own, with no identity and no join token, refuses to start.
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[worker]]\nname = \"w9\"\nlisten = \"127.0.0.1:0\"\nruntime = \"mock\"\nmanager = \"{}\"\ndata_dir = \"{}\"\n[security]\nacl = true\n",
        c.running.manager_url().unwrap(),
        dir.path().join("w9").display()
    );
    let cfg = poseidon::config::parse(&text, "w9.toml").unwrap();
    let err = cluster::start(&cfg, Roles::Worker("w9".into()))
        .await
        .map(|_| ())
        .expect_err("a worker without identity or join token must not start");
    assert!(err.contains("no join token"), "{err}");
    // With a bogus join token it does not start either.
    let text = text.replace("acl = true", "acl = true\njoin_token = \"abc.def\"");
    let cfg = poseidon::config::parse(&text, "w9.toml").unwrap();
    let err = cluster::start(&cfg, Roles::Worker("w9".into()))
        .await
        .map(|_| ())
        .expect_err("a bogus join token is refused");
    assert!(err.contains("HTTP 401"), "{err}");
    let nodes = c.api.with_token(&c.manage).ok("/nodes").await;
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_worker_with_a_manager_refuses_direct_post_tasks_and_strangers() {
    let c = secured().await;
    let w = Api::new(format!("http://{}", c.running.workers[0].addr));
    let (s, v) = w
        .post("/tasks", &json!({"name": "t", "image": "busybox"}))
        .await;
    assert_eq!(s, 403, "{v}");
    // Even with the manager's own management token, a user cannot submit to the worker.
    let (s, v) = w
        .with_token(&c.manage)
        .post("/tasks", &json!({"name": "t", "image": "busybox"}))
        .await;
    assert_eq!(s, 403, "{v}");
    let (s, v) = w.get("/tasks").await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = w
        .with_token(&c.manage)
        .post("/assignments", &json!({"assignments": []}))
        .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(w.get("/health").await.0, 200);
    c.running.stop().await;
}

#[tokio::test]
async fn repeated_failed_authentications_from_one_address_are_rate_limited() {
    let c = secured().await;
    let bad = c.api.with_token("0000.1111");
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(bad.get("/tasks").await.0);
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // A valid token from the same address is also held back until the window ends.
    let (s, _) = c.api.with_token(&c.manage).get("/tasks").await;
    assert_eq!(s, 429);
    c.running.stop().await;
}

/// Sends a request head announcing a `declared`-byte body and no body, and returns the status line.
fn status_of_announced_body(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    declared: u64,
) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn an_unauthenticated_request_is_refused_before_its_body_is_read() {
    let c = secured().await;
    let addr = c.running.manager.as_ref().unwrap().addr;
    // 100 MiB announced on the large-body route: refused at once (the body is never sent, so an
    // answer at all shows that the server did not wait for it).
    let line = tokio::task::spawn_blocking(move || {
        status_of_announced_body(addr, "/nodes/w1/heartbeat", None, 100 << 20)
    })
    .await
    .unwrap();
    assert!(line.contains(" 401 "), "{line}");
    // An authenticated user on a user route gets the small limit: 413 at once.
    let manage = c.manage.clone();
    let line = tokio::task::spawn_blocking(move || {
        status_of_announced_body(addr, "/tasks", Some(&manage), 100 << 20)
    })
    .await
    .unwrap();
    assert!(line.contains(" 413 "), "{line}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_non_loopback_listen_address_without_security_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (security, refused) in [
        ("", true),
        ("[security]\nacl = true\n", true),
        ("[security]\ntls = \"auto\"\n", true),
        ("[security]\ninsecure = true\n", false),
    ] {
        let text = format!(
            "[manager]\nlisten = \"0.0.0.0:0\"\ndata_dir = \"{}\"\n{security}",
            dir.path().join(format!("m{}", security.len())).display()
        );
        let cfg = poseidon::config::parse(&text, "open.toml").unwrap();
        match cluster::start(&cfg, Roles::Manager).await {
            Err(e) => {
                assert!(refused, "{security:?} was refused: {e}");
                assert!(e.contains("0.0.0.0:0 is not a loopback address"), "{e}");
                assert!(e.contains("insecure = true"), "{e}");
            }
            Ok(r) => {
                assert!(!refused, "{security:?} was accepted");
                r.stop().await;
            }
        }
    }
}

#[test]
fn the_binary_exits_2_with_a_clear_message_on_an_open_non_loopback_listen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.toml");
    std::fs::write(
        &path,
        format!(
            "[manager]\nlisten = \"0.0.0.0:0\"\ndata_dir = \"{}\"\n",
            dir.path().join("m").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_poseidon"))
        .args(["manager", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a loopback address"), "{stderr}");
}

/// The README's "Security" block, run verbatim by bash with the binary on `PATH`, in a temporary
/// directory (it uses the fixed ports 5655 and 5656).
#[test]
fn the_readme_security_example_bootstraps_a_secure_cluster() {
    const README: &str = include_str!("../README.md");
    let marker = "<!-- readme-test: security -->";
    let start = README
        .find(marker)
        .expect("README.md has the security block");
    let rest = &README[start + marker.len()..];
    let open = rest.find("```sh\n").unwrap() + "```sh\n".len();
    let close = rest[open..].find("\n```\n").unwrap();
    let script = &rest[open..open + close];
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_poseidon"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", script])
        .current_dir(dir.path())
        .env("PATH", path)
        .env_remove("POSEIDON_TOKEN")
        .env_remove("POSEIDON_MANAGER")
        .env_remove("POSEIDON_JOIN_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    for line in [
        "a second bootstrap is refused",
        "read cannot submit",
        "a revoked token is refused",
    ] {
        assert!(
            stdout.contains(line),
            "{line}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    assert!(stdout.contains("w1"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typed_client_sends_its_token_on_streams_catalog_metrics_and_relays() {
    let c = secured().await;
    let wait = Duration::from_secs(10);
    let m = poseidon::client::ManagerClient::new(&c.running.manager_url().unwrap(), wait)
        .with_token(Some(c.manage.clone()));
    let id = m
        .submit(br#"{"name": "t", "image": "busybox", "cmd": ["sleep", "600"]}"#.to_vec())
        .await
        .unwrap()[0]
        .id;
    wait_for("the task to run", wait, || async {
        m.task(id)
            .await
            .ok()
            .filter(|t| t.state == poseidon::task::State::Running)
    })
    .await;
    // Every route below once went out without the token and was refused with 401.
    // A stream counts once its 2xx headers arrive (a refused one is an error at open).
    let events = m.events(None).await.expect("GET /events with the token");
    drop(events);
    m.catalog_services(None)
        .await
        .expect("GET /catalog/services with the token");
    let text = m.metrics().await.expect("GET /metrics with the token");
    assert!(text.contains("poseidon_tasks"), "{text}");
    // The manager relays a followed log to the worker with its own credential.
    let logs = m
        .follow_logs(id, "")
        .await
        .expect("GET /tasks/{id}/logs?follow=true with the token");
    drop(logs);
    c.running.stop().await;
}
