//! Helpers shared by the integration tests: starting clusters on port 0 in a temporary directory,
//! a small JSON client, and waiting for a condition with a generous deadline.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use std::sync::Arc;

use hyper::Method;
use poseidon::cluster::{self, Roles, Running};
use poseidon::config::{self, Config, RuntimeKind};
use poseidon::http::{self, HttpClient, Shutdown};
use poseidon::store::RocksStore;
use poseidon::wire::Capacity;
use poseidon::worker::{self, Worker, WorkerOptions};
use poseidon_runtimes::mock::MockRuntime;
use serde_json::Value;

/// Parses `toml`, moves every listener to port 0 and every data dir under `dir`, and with
/// `force_mock` swaps Docker workers for the mock runtime.
pub fn localize(toml: &str, dir: &Path, force_mock: bool) -> Config {
    let cfg = config::parse(toml, "test.toml").expect("test config parses");
    localize_config(cfg, dir, force_mock)
}

/// [`localize`] for an already parsed config.
pub fn localize_config(mut cfg: Config, dir: &Path, force_mock: bool) -> Config {
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let has_manager = cfg.manager.is_some();
    if let Some(m) = cfg.manager.as_mut() {
        m.listen = any;
        m.data_dir = dir.join("manager");
    }
    for w in &mut cfg.workers {
        w.listen = any;
        w.advertise = "http://127.0.0.1:0".into();
        if has_manager {
            w.manager = Some("http://127.0.0.1:0".into());
        }
        w.data_dir = dir.join(&w.name);
        if force_mock {
            w.runtime = RuntimeKind::Mock;
        }
    }
    cfg
}

/// Starts every role of `cfg`.
pub async fn start(cfg: &Config) -> Running {
    cluster::start(cfg, Roles::All)
        .await
        .expect("cluster starts")
}

/// A JSON client for tests: every call returns the status and the decoded body (`Null` if empty).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    client: HttpClient,
    /// Sent as `Authorization: Bearer` with every call, when set.
    pub token: Option<String>,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Self {
        Api {
            base: base.into(),
            client: HttpClient::new(Duration::from_secs(30)),
            token: None,
        }
    }

    /// An API reached through `client` (a TLS client for clusters with `tls = "auto"`).
    pub fn with_http(base: impl Into<String>, client: HttpClient) -> Self {
        Api {
            base: base.into(),
            client,
            token: None,
        }
    }

    /// The same API with `token` sent as `Authorization: Bearer` (for clusters with `acl = true`).
    pub fn with_token(&self, token: &str) -> Self {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub async fn raw(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let r = self
            .client
            .send_auth(method, &url, body, self.token.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let v = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()))
        };
        (r.status, v)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.raw(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.raw(Method::POST, path, Some(serde_json::to_vec(body).unwrap()))
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.raw(Method::DELETE, path, None).await
    }

    /// `GET path`, asserting 200.
    pub async fn ok(&self, path: &str) -> Value {
        let (s, v) = self.get(path).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// Submits a task, asserting 201, and returns its id.
    pub async fn submit(&self, spec: &Value) -> String {
        let (s, v) = self.post("/tasks", spec).await;
        assert_eq!(s, 201, "POST /tasks {spec}: {v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// Waits until task `id` is in `state` and returns it.
    pub async fn wait_state(&self, id: &str, state: &str, deadline: Duration) -> Value {
        let path = format!("/tasks/{id}");
        wait_for(&format!("task {id} to be {state}"), deadline, || async {
            let (s, v) = self.get(&path).await;
            (s == 200 && v["state"] == state).then_some(v)
        })
        .await
    }
}

/// Polls `f` every 20 ms until it yields `Some`, panicking with `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One worker served over HTTP on port 0, on a runtime and data dir the test keeps, so that it can
/// be stopped and started again as a restarted process would be.
pub struct Standalone {
    pub api: Api,
    pub worker: Worker,
    pub shutdown: Shutdown,
    server: tokio::task::JoinHandle<()>,
}

impl Standalone {
    pub async fn start(mock: &MockRuntime, dir: &Path, manager: Option<String>) -> Standalone {
        let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = Shutdown::new();
        // A worker stopped in this process lets go of its database once its tasks have wound down.
        let store = Arc::new(
            wait_for(
                "the database to be free",
                Duration::from_secs(10),
                || async { RocksStore::open(dir).ok() },
            )
            .await,
        );
        let opts = WorkerOptions {
            name: "solo".into(),
            advertise: format!("http://{addr}"),
            manager,
            managers: Vec::new(),
            capacity: Capacity {
                cpus: 4.0,
                memory: 8 << 30,
            },
            heartbeat_interval: Duration::from_millis(200),
            stop_grace: Duration::from_secs(2),
            network: None,
            host_volumes: Default::default(),
            labels: Default::default(),
            endpoint_address: None,
        };
        let w = Worker::start(opts, Arc::new(mock.clone()), store, shutdown.clone())
            .await
            .unwrap();
        let hw = w.clone();
        let server = tokio::spawn(http::serve(
            listener,
            move |req| worker::api::handle(hw.clone(), req),
            shutdown.clone(),
        ));
        Standalone {
            api: Api::new(format!("http://{addr}")),
            worker: w,
            shutdown,
            server,
        }
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.server.await;
        self.worker.close().await;
    }
}

/// Removes, when dropped (a passing test, or a panicking one), every container that a worker of
/// node `name` made on the real engine, found by Poseidon's node label.
pub struct NodeContainers(pub String);

impl Drop for NodeContainers {
    fn drop(&mut self) {
        let filter = format!("label=io.poseidon.node={}", self.0);
        let Ok(out) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        else {
            return;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
    }
}

/// A loopback port free at the moment of asking (for processes that must be told their port),
/// and never handed out before in this test process: the kernel gives a port just released to
/// the next asker, so two tests running at once (say, two etcd clusters) could otherwise be
/// told the same port, and one would reach the other's server.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Sends `POST path` with headers only, declaring a body of `len` bytes, and returns the status
/// and JSON body of the answer. A server that refuses by `Content-Length` answers before reading
/// the body; sending the body as well could meet a connection it has already closed.
pub async fn post_declaring(base: &str, path: &str, len: usize) -> (u16, Value) {
    let addr = base.trim_start_matches("http://").to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        // The server closes after its answer (it will not read the body it refused).
        let _ = conn.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        // A chunked answer wraps the JSON in a size line; take the JSON object itself.
        let json = body
            .find('{')
            .and_then(|i| body.rfind('}').map(|j| &body[i..=j]))
            .unwrap_or("null");
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}
