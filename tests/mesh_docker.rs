//! The routing mesh on the real Docker Engine, with a manager and two workers as child processes
//! of the real binary (each worker's mesh on a loopback address of its own, 127.0.0.2 and
//! 127.0.0.3, since they share a host): a service of three busybox HTTP servers, each answering
//! its own task id (`POSEIDON_TASK_ID`), published in HTTP mode on one port and in TCP mode on
//! another. In sequence on one cluster:
//!
//! 1. each worker's published port reaches all three endpoints, and `dig` against the manager's
//!    DNS answers 3 SRV records with their host ports;
//! 2. one container is killed with `docker kill` while a client sends a request every 20 ms
//!    through the mesh: no request fails (retries), the dead endpoint leaves DNS and both meshes
//!    within one heartbeat interval plus 1 s, and of six TCP connections opened before the kill only the
//!    two the mesh had joined to the dead endpoint fail;
//! 3. a rolling update with a client at 50 requests/s: no request fails;
//! 4. a service with no copies answers 503 with a JSON body;
//! 5. the manager killed with SIGKILL: both meshes keep routing to the last known endpoints.
//!
//! The README's routing mesh block runs as written on the same cluster after step 1. Under
//! `CI=true` an unreachable engine fails the test.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/readme.rs"]
mod readme;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_for, Api};
use hyper::Method;
use poseidon::http::HttpClient;
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);
/// The workers' heartbeat interval; an endpoint must leave the mesh within it plus 1 s.
const HEARTBEAT: Duration = Duration::from_millis(500);
const INGRESS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], dir: &std::path::Path, log: &str) -> Proc {
    let log = std::fs::File::create(dir.join(log)).unwrap();
    Proc(
        Command::new(env!("CARGO_BIN_EXE_poseidon"))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

fn body(version: &str, http: u16, tcp: u16) -> Value {
    json!({
        "name": "web",
        "count": 3,
        "task": {
            "image": TEST_IMAGE,
            "cmd": ["sh", "-c", "echo $POSEIDON_TASK_ID > /tmp/index.html && exec httpd -f -p 80 -h /tmp"],
            "env": {"VERSION": version},
            "ports": ["80"],
            "health_check": {"type": "tcp", "port": 80, "interval": "200ms", "retries": 1}
        },
        "update": {"max_parallel": 1, "min_healthy": "300ms", "healthy_deadline": "60s"},
        "publish": [
            {"port": http, "target": 80, "mode": "http"},
            {"port": tcp, "target": 80, "mode": "tcp", "balance": "round_robin"}
        ]
    })
}

/// The service's endpoints in the catalog: (task id, `address:port`).
async fn endpoints(api: &Api) -> Vec<(String, String)> {
    api.ok("/catalog/services/web")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["task"].as_str().unwrap().to_string(),
                format!("{}:{}", e["address"].as_str().unwrap(), e["port"]),
            )
        })
        .collect()
}

/// Waits until version `v` runs 3 healthy copies, nothing else runs, and the catalog has them.
async fn settled(api: &Api, v: u64) -> Vec<(String, String)> {
    wait_for(&format!("web v{v} with 3 endpoints"), WAIT, || async {
        let s = api.ok("/services/web").await;
        let live_old = s["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["desired"] == "run" && t["state"] == "running" && t["version"] != v)
            .count();
        let eps = endpoints(api).await;
        (s["version"] == v && s["healthy"] == 3 && live_old == 0 && eps.len() == 3).then_some(eps)
    })
    .await
}

/// One request through a mesh: the body (a task id) or why it failed.
async fn through(client: &HttpClient, ingress: &str, port: u16) -> Result<String, String> {
    let url = format!("http://{ingress}:{port}/");
    match client.send_auth(Method::GET, &url, None, None).await {
        Ok(r) if r.status == 200 => Ok(String::from_utf8_lossy(&r.body).trim().to_string()),
        Ok(r) => Err(format!(
            "{url}: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

/// A client sending one request every `every` through both meshes in turn until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<Result<String, String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(port: u16, every: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), results.clone());
        let task = tokio::spawn(async move {
            let client = HttpClient::new(Duration::from_secs(5));
            let mut tick = tokio::time::interval(every);
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let got = through(&client, INGRESS[i % 2], port).await;
                r.lock().unwrap().push(got);
                i += 1;
            }
        });
        Load {
            stop,
            results,
            task,
        }
    }

    async fn finish(self) -> Vec<Result<String, String>> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let r = self.results.lock().unwrap().clone();
        r
    }
}

/// Whether worker `api`'s mesh routes `endpoint` now (its `/metrics`).
async fn routed(worker: &Api, endpoint: &str) -> bool {
    let (s, v) = worker.get("/metrics").await;
    assert_eq!(s, 200);
    v.as_str()
        .unwrap()
        .lines()
        .any(|l| l.starts_with("poseidon_mesh_routed{service=\"web\"") && l.contains(endpoint))
}

/// Sends an HTTP/1.0 request on an open TCP connection and reads the answer's body.
async fn ask(mut s: TcpStream) -> Result<String, String> {
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut raw))
        .await
        .map_err(|_| "no answer in 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    match raw.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(format!("answer {raw:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mesh_routes_retries_follows_the_catalog_and_outlives_the_manager() {
    let Some(rt) =
        docker_or_skip("the_mesh_routes_retries_follows_the_catalog_and_outlives_the_manager")
            .await
    else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let tag = std::process::id();
    let nodes = [format!("mesh1-{tag}"), format!("mesh2-{tag}")];
    let _cleanup = nodes.clone().map(common::NodeContainers);
    let mport = common::free_port();
    let dport = common::free_port();
    let wports = [common::free_port(), common::free_port()];
    let (http, tcp, empty) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let mut file = format!(
        "[manager]\nlisten = \"127.0.0.1:{mport}\"\ndata_dir = \"{d}/manager\"\nheartbeat_ttl = \"3s\"\ndns_listen = \"127.0.0.1:{dport}\"\n",
        d = dir.path().display()
    );
    for i in 0..2 {
        file.push_str(&format!(
            "\n[[worker]]\nname = \"{n}\"\nlisten = \"127.0.0.1:{p}\"\nruntime = \"docker\"\ndata_dir = \"{d}/w{i}\"\nheartbeat_interval = \"{hb}ms\"\nstop_grace = \"1s\"\ningress_listen = \"{ing}\"\n",
            n = nodes[i],
            p = wports[i],
            d = dir.path().display(),
            hb = HEARTBEAT.as_millis(),
            ing = INGRESS[i],
        ));
    }
    let cfg = dir.path().join("cluster.toml");
    std::fs::write(&cfg, file).unwrap();
    let cfg = cfg.to_str().unwrap();
    let mut manager = spawn(&["manager", "-c", cfg], dir.path(), "manager.log");
    let _w1 = spawn(
        &["worker", "--name", &nodes[0], "-c", cfg],
        dir.path(),
        "w1.log",
    );
    let _w2 = spawn(
        &["worker", "--name", &nodes[1], "-c", cfg],
        dir.path(),
        "w2.log",
    );
    let api = Api::new(format!("http://127.0.0.1:{mport}"));
    let workers = wports.map(|p| Api::new(format!("http://127.0.0.1:{p}")));
    wait_for("two nodes up", WAIT, || async {
        // The manager may not listen yet: a refused connect is one more wait.
        let v: Value = HttpClient::new(Duration::from_millis(500))
            .get(&format!("{}/nodes", api.base))
            .await
            .ok()?;
        let ready = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|n| n["state"] == "up")
            .count();
        (ready == 2).then_some(())
    })
    .await;

    // 1. Each worker's published port reaches all three endpoints.
    let (s, v) = api.post("/services", &body("1", http, tcp)).await;
    assert_eq!(s, 201, "{v}");
    let eps = settled(&api, 1).await;
    let ids: BTreeSet<String> = eps.iter().map(|(t, _)| t.clone()).collect();
    let client = HttpClient::new(Duration::from_secs(5));
    for ingress in INGRESS {
        let seen = wait_for(
            &format!("{ingress}:{http} to reach all 3"),
            WAIT,
            || async {
                let mut seen = BTreeSet::new();
                for _ in 0..30 {
                    seen.insert(through(&client, ingress, http).await.ok()?);
                }
                (seen == ids).then_some(seen)
            },
        )
        .await;
        assert_eq!(seen, ids);
    }
    eprintln!(
        "[{:?}] 3 endpoints reached through both meshes",
        started.elapsed()
    );
    // DNS answers the same endpoints: 3 SRV records with the host ports the meshes route to.
    let mut ports: Vec<String> = eps
        .iter()
        .map(|(_, a)| a.rsplit(':').next().unwrap().to_string())
        .collect();
    ports.sort();
    if let Some(got) = dig_srv_ports(dport) {
        assert_eq!(got, ports, "dig SRV");
    }

    // The README's mesh block as written, through worker 1's mesh.
    readme_block(mport, wports[0], dir.path()).await;
    eprintln!("[{:?}] the README block ran", started.elapsed());

    // 2. docker kill of one endpoint under a client every 20 ms, and six open TCP connections.
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(
            TcpStream::connect(SocketAddr::new(INGRESS[0].parse().unwrap(), tcp))
                .await
                .unwrap(),
        );
    }
    let load = Load::start(http, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (victim, victim_ep) = eps[0].clone();
    let tasks = api.ok("/tasks?service=web").await;
    let cid = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == victim.as_str())
        .unwrap()["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let killed = Instant::now();
    let out = Command::new("docker")
        .args(["kill", &cid])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker kill: {out:?}");
    let victim_port = victim_ep.rsplit(':').next().unwrap().to_string();
    if dig_srv_ports(dport).is_some() {
        wait_for(
            "the killed endpoint to leave DNS",
            (HEARTBEAT + Duration::from_secs(1)) * 5,
            || async {
                let got = dig_srv_ports(dport).unwrap();
                (got.len() == 2 && !got.contains(&victim_port)).then_some(())
            },
        )
        .await;
        let left = killed.elapsed();
        eprintln!("the killed endpoint left DNS after {left:?}");
        assert!(
            left <= HEARTBEAT + Duration::from_secs(1),
            "left DNS after {left:?}"
        );
    }
    for (i, w) in workers.iter().enumerate() {
        wait_for(
            &format!("{victim_ep} to leave mesh {i}"),
            (HEARTBEAT + Duration::from_secs(1)) * 5,
            || async { (!routed(w, &victim_ep).await).then_some(()) },
        )
        .await;
        let left = killed.elapsed();
        eprintln!("the killed endpoint left mesh {i} after {left:?}");
        assert!(
            left <= HEARTBEAT + Duration::from_secs(1),
            "the dead endpoint left mesh {i} after {left:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = load.finish().await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    eprintln!(
        "HTTP through the kill: {} requests, {} failed",
        results.len(),
        failed.len()
    );
    let mut retried = 0u64;
    for w in &workers {
        let text = w.ok("/metrics").await;
        retried += text
            .as_str()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("poseidon_mesh_failures_total{service=\"web\""))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum::<u64>();
    }
    // The dead endpoint's counters are folded into `retired` once it has left the table.
    eprintln!("failed attempts the meshes counted (HTTP ones retried elsewhere): {retried}");
    assert!(results.len() >= 40, "{}", results.len());
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let mut answers = Vec::new();
    for c in conns {
        answers.push(ask(c).await);
    }
    let ok: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    eprintln!("TCP connections open across the kill: {answers:?}");
    assert_eq!(
        ok.len(),
        4,
        "round-robin joined 2 of 6 connections to each endpoint; only the dead one's fail: {answers:?}"
    );
    assert!(
        ok.iter().all(|id| **id != victim && ids.contains(*id)),
        "{answers:?}"
    );
    let eps = settled(&api, 1).await;

    // 3. A rolling update at 50 requests/s: no request fails.
    let load = Load::start(http, Duration::from_millis(20));
    let (s, v) = api
        .raw(
            Method::PUT,
            "/services/web",
            Some(serde_json::to_vec(&body("2", http, tcp)).unwrap()),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let new_eps = settled(&api, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let results = load.finish().await;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    eprintln!(
        "HTTP through the rolling update: {} requests, {} failed",
        results.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    let new_ids: BTreeSet<String> = new_eps.iter().map(|(t, _)| t.clone()).collect();
    assert!(new_ids.iter().all(|id| !eps.iter().any(|(t, _)| t == id)));

    // 4. No copies: 503 with a JSON body.
    let none = json!({"name": "idle", "count": 0, "task": {"image": TEST_IMAGE, "ports": ["80"]},
                      "publish": [{"port": empty, "target": 80, "mode": "http"}]});
    assert_eq!(api.post("/services", &none).await.0, 201);
    let answer = wait_for("the idle service's port to answer", WAIT, || async {
        client
            .send_auth(
                Method::GET,
                &format!("http://{}:{empty}/", INGRESS[1]),
                None,
                None,
            )
            .await
            .ok()
    })
    .await;
    assert_eq!(answer.status, 503);
    let v: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(v["error"], "no healthy endpoint for service \"idle\"");

    // 5. The manager killed: both meshes go on routing to the last known endpoints.
    manager.0.kill().unwrap(); // SIGKILL
    manager.0.wait().unwrap();
    for ingress in INGRESS {
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            seen.insert(through(&client, ingress, http).await.unwrap());
        }
        assert_eq!(seen, new_ids, "{ingress} without a manager");
    }
    eprintln!("[{:?}] done", started.elapsed());
}

/// Runs the README's `mesh` block with bash against the cluster, through worker 1's mesh.
async fn readme_block(mport: u16, wport: u16, dir: &std::path::Path) {
    let script = readme::block("mesh", "sh");
    let port = common::free_port().to_string();
    let (manager, worker) = (
        format!("http://127.0.0.1:{mport}"),
        format!("http://127.0.0.1:{wport}"),
    );
    let env = [
        ("POSEIDON_MANAGER", manager.as_str()),
        ("POSEIDON_WORKER", worker.as_str()),
        ("POSEIDON_MESH", INGRESS[0]),
        ("POSEIDON_MESH_PORT", port.as_str()),
        ("POSEIDON_IMAGE", TEST_IMAGE),
    ];
    let (stdout, log) = tokio::task::block_in_place(|| {
        readme::run_script_with(
            &script,
            dir,
            std::path::Path::new(env!("CARGO_BIN_EXE_poseidon"))
                .parent()
                .unwrap(),
            &env,
            60,
        )
    });
    let hellos: BTreeSet<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("hello from "))
        .collect();
    let count = stdout
        .lines()
        .filter(|l| l.starts_with("hello from "))
        .count();
    assert_eq!((count, hellos.len()), (4, 2), "both copies answer:\n{log}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("poseidon_mesh_requests_total{service=\"hello\"")),
        "{log}"
    );
}

/// The ports of `dig @127.0.0.1 -p PORT +short _web._tcp.service.poseidon SRV`, sorted; `None`
/// when dig is missing (a failure under CI=true, where `.ci/run` installs dnsutils).
fn dig_srv_ports(dns_port: u16) -> Option<Vec<String>> {
    let out = match Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &dns_port.to_string(),
            "+short",
            "+tries=1",
            "+time=2",
            "_web._tcp.service.poseidon",
            "SRV",
        ])
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI: dig (Debian's dnsutils) must be installed by .ci/run: {e}")
        }
        Err(_) => return None,
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // `1 1 PORT TARGET.`
    let mut ports: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect();
    ports.sort();
    Some(ports)
}
