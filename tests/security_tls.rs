//! Security over TLS (`tls = "auto"`), black-box: the cluster runs tasks over mutual TLS both ways,
//! plain HTTP to a TLS port is refused, a client certificate from another CA is refused, a
//! heartbeat needs the node's own certificate, a worker takes assignments only from the manager's
//! certificate, and a worker checks the CA against its join token's fingerprint.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{localize, Api};
use poseidon::cluster::{self, Roles, Running};
use poseidon::http::HttpClient;
use poseidon::security::ca::{ClusterCa, MANAGER_NAME, NODE_NAME};
use poseidon::security::tls::{client_config, CertStore};
use serde_json::{json, Value};

const TLS_CLUSTER: &str = r#"
[manager]
heartbeat_ttl = "3s"

[[worker]]
name = "w1"
runtime = "mock"
heartbeat_interval = "100ms"

[security]
acl = true
tls = "auto"
"#;

struct Secured {
    running: Running,
    /// The manager's API over TLS, trusting the cluster CA, with the management token.
    api: Api,
    ca: ClusterCa,
    dir: tempfile::TempDir,
}

fn tls_client(ca: &ClusterCa, name: &str, cert: Option<std::sync::Arc<CertStore>>) -> HttpClient {
    HttpClient::with_tls(
        Duration::from_secs(10),
        client_config(ca.cert_pem(), name, cert).unwrap(),
    )
}

async fn secured() -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(TLS_CLUSTER, dir.path(), true);
    let running = cluster::start(&cfg, Roles::All).await.unwrap();
    let url = running.manager_url().unwrap();
    assert!(url.starts_with("https://"), "{url}");
    // The CA the manager made in its data directory on first start.
    let ca = ClusterCa::load_or_create(&dir.path().join("manager")).unwrap();
    let api = Api::with_http(url, tls_client(&ca, MANAGER_NAME, None));
    let (s, t) = api.post("/acl/bootstrap", &Value::Null).await;
    assert_eq!(s, 201, "{t}");
    let api = api.with_token(t["token"].as_str().unwrap());
    Secured {
        running,
        api,
        ca,
        dir,
    }
}

fn identity(dir: &std::path::Path, node: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(node).join("identity.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn a_tls_cluster_places_and_runs_tasks_over_mutual_tls() {
    let c = secured().await;
    let nodes = c.api.ok("/nodes").await;
    assert_eq!(nodes[0]["state"], "up", "{nodes}");
    assert!(
        nodes[0]["address"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{nodes}"
    );
    let id = c
        .api
        .submit(&json!({"name": "t", "image": "busybox"}))
        .await;
    c.api
        .wait_state(&id, "running", Duration::from_secs(20))
        .await;
    // The key files are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["ca.key", "ca.pem", "acl.key"] {
        let mode = std::fs::metadata(c.dir.path().join("manager").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let mode = std::fs::metadata(c.dir.path().join("w1").join("identity.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    c.running.stop().await;
}

#[tokio::test]
async fn plain_http_to_a_tls_port_is_refused() {
    let c = secured().await;
    let plain = HttpClient::new(Duration::from_secs(5));
    for addr in [
        c.running.manager.as_ref().unwrap().addr,
        c.running.workers[0].addr,
    ] {
        let r = plain
            .send(hyper::Method::GET, &format!("http://{addr}/health"), None)
            .await;
        assert!(r.is_err(), "plain HTTP to {addr} was answered: {r:?}");
    }
    // The same port over TLS answers.
    assert_eq!(c.api.get("/health").await.0, 200);
    c.running.stop().await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let c = secured().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = ClusterCa::load_or_create(other_dir.path()).unwrap();
    let foreign = CertStore::new(&other.issue_node("w1").unwrap()).unwrap();
    // Trusting the real CA (so the server is accepted) but presenting a foreign certificate.
    let client = tls_client(&c.ca, MANAGER_NAME, Some(foreign));
    let url = format!("{}/health", c.running.manager_url().unwrap());
    let r = client.send(hyper::Method::GET, &url, None).await;
    assert!(
        r.is_err(),
        "a foreign client certificate was accepted: {r:?}"
    );
    let worker_url = format!("https://{}/health", c.running.workers[0].addr);
    let foreign = CertStore::new(&other.issue_manager().unwrap()).unwrap();
    let r = tls_client(&c.ca, NODE_NAME, Some(foreign))
        .send(hyper::Method::GET, &worker_url, None)
        .await;
    assert!(
        r.is_err(),
        "a foreign manager certificate was accepted by the worker: {r:?}"
    );
    // The control: a certificate of the cluster's own CA is accepted.
    let own = CertStore::new(&c.ca.issue_node("w1").unwrap()).unwrap();
    let r = tls_client(&c.ca, MANAGER_NAME, Some(own))
        .send(hyper::Method::GET, &url, None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    c.running.stop().await;
}

#[tokio::test]
async fn a_heartbeat_needs_the_nodes_own_certificate_as_well_as_its_token() {
    let c = secured().await;
    let id = identity(c.dir.path(), "w1");
    let token = id["node_token"].as_str().unwrap();
    let beat = serde_json::to_value(c.running.workers[0].worker.heartbeat()).unwrap();
    let url = c.running.manager_url().unwrap();
    // w1's token without a client certificate, and with another node's certificate.
    let bare = Api::with_http(url.clone(), tls_client(&c.ca, MANAGER_NAME, None)).with_token(token);
    let (s, v) = bare.post("/nodes/w1/heartbeat", &beat).await;
    assert_eq!(s, 403, "{v}");
    let other = CertStore::new(&c.ca.issue_node("w2").unwrap()).unwrap();
    let wrong =
        Api::with_http(url.clone(), tls_client(&c.ca, MANAGER_NAME, Some(other))).with_token(token);
    let (s, v) = wrong.post("/nodes/w1/heartbeat", &beat).await;
    assert_eq!(s, 403, "{v}");
    // Token and certificate of w1 together: accepted.
    let own = CertStore::new(&c.ca.issue_node("w1").unwrap()).unwrap();
    let right = Api::with_http(url, tls_client(&c.ca, MANAGER_NAME, Some(own))).with_token(token);
    let (s, v) = right.post("/nodes/w1/heartbeat", &beat).await;
    assert_eq!(s, 200, "{v}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_worker_takes_assignments_only_from_the_managers_certificate() {
    let c = secured().await;
    let id = identity(c.dir.path(), "w1");
    let secret = id["manager_secret"].as_str().unwrap();
    let url = format!("https://{}", c.running.workers[0].addr);
    let empty = json!({"assignments": []});
    // The manager's secret with a node's certificate, or with none: refused.
    let node = CertStore::new(&c.ca.issue_node("w2").unwrap()).unwrap();
    let as_node =
        Api::with_http(url.clone(), tls_client(&c.ca, NODE_NAME, Some(node))).with_token(secret);
    let (s, v) = as_node.post("/assignments", &empty).await;
    assert_eq!(s, 403, "{v}");
    let bare = Api::with_http(url.clone(), tls_client(&c.ca, NODE_NAME, None)).with_token(secret);
    let (s, v) = bare.post("/assignments", &empty).await;
    assert_eq!(s, 403, "{v}");
    // Direct POST /tasks is refused whoever sends it.
    let (s, v) = bare
        .post("/tasks", &json!({"name": "t", "image": "busybox"}))
        .await;
    assert_eq!(s, 403, "{v}");
    // The manager's certificate and secret: accepted.
    let mgr = CertStore::new(&c.ca.issue_manager().unwrap()).unwrap();
    let as_manager =
        Api::with_http(url, tls_client(&c.ca, NODE_NAME, Some(mgr))).with_token(secret);
    let (s, v) = as_manager.post("/assignments", &empty).await;
    assert_eq!(s, 200, "{v}");
    c.running.stop().await;
}

#[tokio::test]
async fn a_worker_joins_over_tls_only_with_a_join_token_whose_fingerprint_matches_the_ca() {
    let c = secured().await;
    let (s, join) = c.api.post("/acl/join-token", &Value::Null).await;
    assert_eq!(s, 201, "{join}");
    let token = join["token"].as_str().unwrap().to_string();
    assert!(token.ends_with(&c.ca.fingerprint()), "{token}");
    let start = |token: String, name: &str| {
        let text = format!(
            "[[worker]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nruntime = \"mock\"\nheartbeat_interval = \"100ms\"\nmanager = \"{}\"\ndata_dir = \"{}\"\n[security]\nacl = true\ntls = \"auto\"\njoin_token = \"{token}\"\n",
            c.running.manager_url().unwrap(),
            c.dir.path().join(name).display()
        );
        let cfg = poseidon::config::parse(&text, "w.toml").unwrap();
        let name = name.to_string();
        async move { cluster::start(&cfg, Roles::Worker(name)).await }
    };
    // A forged fingerprint: the worker refuses before sending the token.
    let forged = format!("{}.{}", token.rsplit_once('.').unwrap().0, "0".repeat(64));
    let err = start(forged, "w2")
        .await
        .map(|_| ())
        .expect_err("forged fingerprint");
    assert!(
        err.contains("does not match the join token's fingerprint"),
        "{err}"
    );
    // The real token: it joins and comes up over mutual TLS.
    let w2 = start(token, "w2").await.unwrap();
    common::wait_for("w2 to be up", Duration::from_secs(20), || async {
        let nodes = c.api.ok("/nodes").await;
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == "w2" && n["state"] == "up")
            .then_some(())
    })
    .await;
    w2.stop().await;
    c.running.stop().await;
}

#[tokio::test]
async fn a_node_renews_its_certificate_over_mutual_tls_and_the_renewed_one_is_accepted() {
    let c = secured().await;
    let id = identity(c.dir.path(), "w1");
    let token = id["node_token"].as_str().unwrap();
    let old: poseidon::wire::NodeCertificate = serde_json::from_value(id["tls"].clone()).unwrap();
    let url = c.running.manager_url().unwrap();
    let node = |cert: &poseidon::wire::NodeCertificate| {
        let store = CertStore::new(cert).unwrap();
        Api::with_http(url.clone(), tls_client(&c.ca, MANAGER_NAME, Some(store))).with_token(token)
    };
    // Renewal needs the node's token and its current certificate, for its own name only.
    let (s, v) = node(&old)
        .post("/acl/nodes/w2/certificate", &Value::Null)
        .await;
    assert_eq!(s, 403, "w1 renewing w2's certificate: {v}");
    let bare = Api::with_http(url.clone(), tls_client(&c.ca, MANAGER_NAME, None)).with_token(token);
    let (s, v) = bare.post("/acl/nodes/w1/certificate", &Value::Null).await;
    assert_eq!(s, 403, "renewal without the node's certificate: {v}");
    let (s, v) = node(&old)
        .post("/acl/nodes/w1/certificate", &Value::Null)
        .await;
    assert!(s == 200 || s == 201, "{s} {v}");
    let renewed: poseidon::wire::NodeCertificate = serde_json::from_value(v).unwrap();
    assert_ne!(renewed.cert, old.cert, "a renewal issues a new certificate");
    assert_ne!(renewed.key, old.key, "and a new key");
    assert_eq!(renewed.ca, old.ca, "signed by the same cluster CA");
    // The renewed certificate is the node's: a heartbeat with it is accepted.
    let beat = serde_json::to_value(c.running.workers[0].worker.heartbeat()).unwrap();
    let (s, v) = node(&renewed).post("/nodes/w1/heartbeat", &beat).await;
    assert_eq!(s, 200, "{v}");
    c.running.stop().await;
}

#[tokio::test]
async fn the_routing_mesh_reads_the_catalog_with_the_nodes_token_over_tls() {
    let c = secured().await;
    let port = common::free_port();
    let body = json!({"name": "web", "count": 2, "task": {"image": "app:1", "ports": ["80"]},
                      "publish": [{"port": port, "target": 80, "mode": "http"}]});
    let (s, v) = c.api.post("/services", &body).await;
    assert_eq!(s, 201, "{v}");
    let mesh = c.running.workers[0].worker.mesh().unwrap().clone();
    // Only a watch that passed the manager's gate (node token, node certificate) fills the table.
    common::wait_for(
        "the mesh to route both copies",
        Duration::from_secs(20),
        || {
            let mesh = mesh.clone();
            async move {
                let t = mesh.table();
                (t.ports.get(&port)?.routes[0].backends.len() == 2).then_some(())
            }
        },
    )
    .await;
    c.running.stop().await;
}
