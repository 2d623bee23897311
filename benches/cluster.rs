//! Cluster benchmarks, a bench binary (`harness = false`):
//!
//! - `submit`: durable task submissions through `POST /tasks` on a real manager (RocksDB in a
//!   temporary directory, synced writes) with three simulated workers (mock runtime, in-memory
//!   store, in this process) running every task, at
//!   1, 16 and 64 concurrent keep-alive clients: submissions/s, p50/p99 latency, fsyncs/s. The baseline
//!   beside it, in the same run, is the same manager with group commit off (one fsync per write).
//! - `docker`: submit-to-Running on the real Docker Engine (a manager and one Docker worker in this
//!   process, the client polling the manager every 2 ms) against a bare create+start of the same
//!   container through `DockerRuntime`, interleaved ABAB; and exit detection: from the container's
//!   `FinishedAt` to the task showing `completed` on the manager.
//!
//! - `failover`: a worker holding 100 tasks falls silent; the time until the manager marks it down
//!   and from then until all its tasks run on the other worker (the mock runtime, in this process).
//!
//! - `events`: the `submit` load at 64 clients with 0 and 100 `GET /events` subscribers, ABAB.
//! - `submit-secure`: the same submissions against a cluster started from a config file, with
//!   `[security] acl = true, tls = "auto"` beside the same cluster with security off.
//! - `dashboard`: the `submit` load at 64 clients with and without one idle dashboard (what the
//!   page at `GET /ui` asks of the manager while nobody touches it), ABAB.
//!
//! `cargo bench --bench cluster [-- submit|submit-secure|events|dashboard|docker|failover]`; `POSEIDON_BENCH_SECS` (default 5) per submit
//! level, `POSEIDON_BENCH_CYCLES` (default 30) per docker side.
//!
//! Over the house's ~700 lines: one bench binary with several independent sections sharing the same
//! cluster starters and timing helpers; each section reads alone.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use poseidon::client::ManagerClient;
use poseidon::cluster::{self, Roles};
use poseidon::config;
use poseidon::http::{self, HttpClient, Shutdown};
use poseidon::manager::{self, Manager, ManagerOptions};
use poseidon::store::rocks::GroupCommit;
use poseidon::store::{MemStore, RocksStore, Store};
use poseidon::task::{State, TaskId};
use poseidon::wire::{Capacity, NodeState};
use poseidon::worker::{self, Worker, WorkerOptions};
use poseidon_runtimes::mock::MockRuntime;
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, unique_name, TEST_IMAGE};
use poseidon_runtimes::{ContainerSpec, Runtime};
use serde_json::{json, Value};

#[path = "support/load.rs"]
mod load;

use load::{env_u64, pct};

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    pct(v, 0.5)
}

struct Bench {
    manager: Manager,
    url: String,
    shutdown: Shutdown,
    workers: Vec<Worker>,
    _dir: tempfile::TempDir,
}

/// A simulated remote worker in this process: the mock runtime and an in-memory store, served on
/// loopback, reporting to `manager`, stopped by `shutdown`; registered by one heartbeat.
async fn sim_worker(name: &str, manager: &str, heartbeat: Duration, shutdown: &Shutdown) -> Worker {
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = WorkerOptions {
        name: name.into(),
        advertise: format!("http://{addr}"),
        manager: Some(manager.to_string()),
        managers: Vec::new(),
        capacity: Capacity {
            cpus: 64.0,
            memory: 256 << 30,
        },
        heartbeat_interval: heartbeat,
        stop_grace: Duration::from_secs(1),
        network: None,
        host_volumes: Default::default(),
        labels: Default::default(),
        endpoint_address: None,
    };
    let w = Worker::start(
        opts,
        Arc::new(MockRuntime::new()),
        Arc::new(MemStore::new()),
        shutdown.clone(),
    )
    .await
    .unwrap();
    let hw = w.clone();
    tokio::spawn(http::serve(
        listener,
        move |r| worker::api::handle(hw.clone(), r),
        shutdown.clone(),
    ));
    w.heartbeat_once().await;
    w
}

/// The real manager in this process, RocksDB under `dir`, served on loopback; returns it and its URL.
async fn serve_manager(
    dir: &std::path::Path,
    mode: GroupCommit,
    scheduler: &str,
    ttl: Duration,
    shutdown: &Shutdown,
) -> (Manager, String) {
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let store: Arc<dyn Store> = Arc::new(RocksStore::open_with(dir, mode).unwrap());
    let opts = ManagerOptions {
        scheduler: scheduler.into(),
        heartbeat_ttl: ttl,
        dispatch_backoff: Duration::from_millis(500),
        max_heartbeats_per_second: poseidon::config::DEFAULT_MAX_HEARTBEATS_PER_SECOND,
        known_workers: Vec::new(),
    };
    let manager = Manager::start(opts, store, shutdown.clone()).await.unwrap();
    let m = manager.clone();
    tokio::spawn(http::serve(
        listener,
        move |r| manager::api::handle(m.clone(), r),
        shutdown.clone(),
    ));
    (manager, url)
}

async fn start_cluster(mode: GroupCommit) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Shutdown::new();
    let (manager, url) = serve_manager(
        &dir.path().join("manager"),
        mode,
        "epvm",
        Duration::from_secs(30),
        &shutdown,
    )
    .await;
    // Simulated remote hosts: mock runtime and an in-memory store, so that the two cores measure
    // the manager's durable path rather than three workers' own fsyncs.
    let mut workers = Vec::new();
    for i in 1..=3 {
        workers.push(sim_worker(&format!("m{i}"), &url, Duration::from_secs(1), &shutdown).await);
    }
    Bench {
        manager,
        url,
        shutdown,
        workers,
        _dir: dir,
    }
}

async fn submit_level(mode: GroupCommit, clients: usize, secs: u64) -> (f64, f64, f64, f64, usize) {
    let (out, _) = submit_with_subscribers(mode, clients, secs, 0, false).await;
    out
}

/// [`submit_level`] with `subscribers` clients following `GET /events` the whole time (reading
/// every line), and with `dashboard` one idle dashboard ([`idle_dashboard`]); also returns the
/// lines the subscriber that got the fewest received.
async fn submit_with_subscribers(
    mode: GroupCommit,
    clients: usize,
    secs: u64,
    subscribers: usize,
    dashboard: bool,
) -> ((f64, f64, f64, f64, usize), u64) {
    let b = start_cluster(mode).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut followers = Vec::new();
    for _ in 0..subscribers {
        // Raw chunks, lines counted: the subscribers share this process's two cores with the
        // manager, so they do no more than a remote dashboard would cost the manager (reading).
        let mut stream = HttpClient::new(Duration::from_secs(30))
            .open(Method::GET, &format!("{}/events", b.url), None)
            .await
            .unwrap();
        followers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok(Some(chunk)) = stream.chunk().await {
                n += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            }
            n
        }));
    }
    assert_eq!(b.manager.event_subscribers(), subscribers);
    let page = dashboard.then(|| tokio::spawn(idle_dashboard(b.url.clone(), stop.clone())));
    // Warm up the connections and the store.
    let warm = HttpClient::new(Duration::from_secs(30));
    for i in 0..50 {
        let body =
            serde_json::to_vec(&json!({"name": format!("warm{i}"), "image": "busybox"})).unwrap();
        let r = warm
            .send(Method::POST, &format!("{}/tasks", b.url), Some(body))
            .await
            .unwrap();
        assert_eq!(r.status, 201);
    }
    let syncs0 = b.manager.store_stats().syncs;
    let load = load::submit(
        &b.url,
        clients,
        secs,
        stop.clone(),
        || HttpClient::new(Duration::from_secs(30)),
        None,
    )
    .await;
    let elapsed = load.elapsed_s;
    let syncs = b.manager.store_stats().syncs - syncs0;
    let out = (
        load.rate(),
        load.pct(0.5),
        load.pct(0.99),
        syncs as f64 / elapsed,
        load.latencies_ms.len(),
    );
    if let Some(page) = page {
        let (lines, node_loads) = page.await.unwrap();
        println!(
            "<!-- the dashboard read {lines} event lines and loaded /nodes {node_loads} times -->"
        );
    }
    b.shutdown.trigger();
    drop(b.workers);
    b.manager.close().await;
    let mut fewest = u64::MAX;
    for f in followers {
        fewest = fewest.min(f.await.unwrap_or(0));
    }
    (out, if subscribers == 0 { 0 } else { fewest })
}

async fn bench_events() {
    let secs = env_u64("POSEIDON_BENCH_SECS", 5);
    println!(
        "## events: durable POST /tasks with 64 clients, {secs} s per level, with 0 or 100 GET /events subscribers (ABAB)"
    );
    println!("| subscribers | submissions/s | p50 ms | p99 ms | events per subscriber (fewest) |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for subscribers in [0usize, 100, 0, 100] {
        let ((rate, p50, p99, _, _), events) =
            submit_with_subscribers(GroupCommit::On, 64, secs, subscribers, false).await;
        println!("| {subscribers} | {rate:.0} | {p50:.2} | {p99:.2} | {events} |");
    }
}

/// What the dashboard page (`GET /ui`, `src/manager/api/ui.js`) asks of the manager while nobody
/// touches it: the page, its script and the first loads, then it follows `GET /events` and, while
/// task events arrive, reloads `GET /nodes` at most once a second. (Drawing is the browser's cost,
/// not the manager's.) Returns the event lines read and the node reloads done.
async fn idle_dashboard(base: String, stop: Arc<AtomicBool>) -> (u64, u64) {
    let client = HttpClient::new(Duration::from_secs(30));
    for path in [
        "/ui",
        "/ui/app.js",
        "/tasks",
        "/nodes",
        "/health",
        "/services",
    ] {
        let r = client
            .send(Method::GET, &format!("{base}{path}"), None)
            .await
            .unwrap();
        assert!(
            r.status == 200 || path == "/services",
            "{path}: {}",
            r.status
        );
    }
    let mut stream = client
        .open(Method::GET, &format!("{base}/events"), None)
        .await
        .unwrap();
    let (mut lines, mut reloads) = (0u64, 0u64);
    let mut next_reload = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let chunk = tokio::time::timeout(Duration::from_millis(200), stream.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else {
            continue;
        };
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        if Instant::now() >= next_reload {
            let r = client
                .send(Method::GET, &format!("{base}/nodes"), None)
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            reloads += 1;
            next_reload = Instant::now() + Duration::from_secs(1);
        }
    }
    (lines, reloads)
}

async fn bench_dashboard() {
    let secs = env_u64("POSEIDON_BENCH_SECS", 5);
    println!(
        "## dashboard: durable POST /tasks with 64 clients, {secs} s per level, with no dashboard or one idle dashboard (ABABAB)"
    );
    println!("| dashboard | submissions/s | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: |");
    for dashboard in [false, true, false, true, false, true] {
        let ((rate, p50, p99, _, _), _) =
            submit_with_subscribers(GroupCommit::On, 64, secs, 0, dashboard).await;
        let label = if dashboard { "one, idle" } else { "none" };
        println!("| {label} | {rate:.0} | {p50:.2} | {p99:.2} |");
    }
}

async fn bench_submit() {
    let secs = env_u64("POSEIDON_BENCH_SECS", 5);
    println!(
        "## submit: durable POST /tasks, {secs} s per level, 3 mock workers running every task"
    );
    println!(
        "| group commit | clients | submissions/s | p50 ms | p99 ms | fsyncs/s | submissions |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for clients in [1usize, 16, 64] {
        for mode in [GroupCommit::On, GroupCommit::Off] {
            let (rate, p50, p99, fsyncs, n) = submit_level(mode, clients, secs).await;
            println!(
                "| {} | {clients} | {rate:.0} | {p50:.2} | {p99:.2} | {fsyncs:.0} | {n} |",
                if mode == GroupCommit::On {
                    "on"
                } else {
                    "off (baseline)"
                }
            );
        }
    }
}

/// One level of the security comparison: the cluster of a config file (a manager with RocksDB and
/// three mock workers in this process), with ACL and automatic mutual TLS on or off, `clients`
/// keep-alive clients submitting for `secs`: (submissions/s, p50 ms, p99 ms, submissions).
async fn secure_submit_level(secure: bool, clients: usize, secs: u64) -> (f64, f64, f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[manager]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{d}/manager\"\nheartbeat_ttl = \"30s\"\n",
        d = dir.path().display()
    );
    for i in 1..=3 {
        text += &format!(
            "[[worker]]\nname = \"m{i}\"\nlisten = \"127.0.0.1:0\"\nruntime = \"mock\"\ndata_dir = \"{d}/m{i}\"\ncapacity = {{ cpus = 64.0, memory = \"256g\" }}\n",
            d = dir.path().display()
        );
    }
    if secure {
        text += "[security]\nacl = true\ntls = \"auto\"\n";
    }
    let cfg = config::parse(&text, "bench.toml").unwrap();
    let run = cluster::start(&cfg, Roles::All).await.unwrap();
    let url = run.manager_url().unwrap();
    let http = if secure {
        let ca = std::fs::read_to_string(dir.path().join("manager").join("ca.pem")).unwrap();
        HttpClient::with_tls(
            Duration::from_secs(30),
            poseidon::security::tls::client_config(&ca, poseidon::security::ca::MANAGER_NAME, None)
                .unwrap(),
        )
    } else {
        HttpClient::new(Duration::from_secs(30))
    };
    let token = if secure {
        let r = http
            .send(Method::POST, &format!("{url}/acl/bootstrap"), None)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        Some(v["token"].as_str().unwrap().to_string())
    } else {
        None
    };
    for i in 0..50 {
        let body =
            serde_json::to_vec(&json!({"name": format!("warm{i}"), "image": "busybox"})).unwrap();
        let r = http
            .send_auth(
                Method::POST,
                &format!("{url}/tasks"),
                Some(body),
                token.as_deref(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    // Each client has its own connection pool, so each pays its own TLS handshake once.
    let ca_dir = dir.path().join("manager");
    let client = || {
        if secure {
            let ca = std::fs::read_to_string(ca_dir.join("ca.pem")).unwrap();
            HttpClient::with_tls(
                Duration::from_secs(30),
                poseidon::security::tls::client_config(
                    &ca,
                    poseidon::security::ca::MANAGER_NAME,
                    None,
                )
                .unwrap(),
            )
        } else {
            HttpClient::new(Duration::from_secs(30))
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = load::submit(&url, clients, secs, stop, client, token).await;
    run.stop().await;
    (
        load.rate(),
        load.pct(0.5),
        load.pct(0.99),
        load.latencies_ms.len(),
    )
}

/// `submit-secure`: the same durable submissions with ACL and mutual TLS on, beside off, in one
/// run, levels interleaved (off, on) so that load from elsewhere on the machine hits both alike.
async fn bench_submit_secure() {
    let secs = env_u64("POSEIDON_BENCH_SECS", 5);
    println!(
        "## submit-secure: durable POST /tasks with ACL + TLS on and off, {secs} s per level, 3 mock workers (RocksDB) in the process"
    );
    println!("| security | clients | submissions/s | p50 ms | p99 ms | submissions |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for clients in [1usize, 16, 64] {
        for secure in [false, true] {
            let (rate, p50, p99, n) = secure_submit_level(secure, clients, secs).await;
            println!(
                "| {} | {clients} | {rate:.0} | {p50:.2} | {p99:.2} | {n} |",
                if secure { "ACL + mutual TLS" } else { "off" }
            );
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time as Docker writes it.
fn rfc3339_ms(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let time = time.trim_end_matches('Z');
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60) as f64 + sec) * 1000.0)
}

async fn bench_docker() {
    let Some(rt) = docker_or_skip("cluster bench (docker)").await else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let cycles = env_u64("POSEIDON_BENCH_CYCLES", 30) as usize;
    let dir = tempfile::tempdir().unwrap();
    let node = format!("bench-{}", std::process::id());
    let text = format!(
        "[manager]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{d}/manager\"\n[[worker]]\nname = \"{node}\"\nlisten = \"127.0.0.1:0\"\nruntime = \"docker\"\ndata_dir = \"{d}/w\"\nstop_grace = \"1s\"\n",
        d = dir.path().display()
    );
    let cfg = config::parse(&text, "bench.toml").unwrap();
    let run = cluster::start(&cfg, Roles::All).await.unwrap();
    let url = run.manager_url().unwrap();
    let manager = ManagerClient::new(&url, Duration::from_secs(60));
    let get = |id: TaskId| {
        let manager = manager.clone();
        async move { manager.task(id).await.unwrap() }
    };
    let mut ours = Vec::new();
    let mut bare = Vec::new();
    let mut detect = Vec::new();
    for i in 0..cycles + 2 {
        // A: through Poseidon, until the manager shows it running.
        let s = Instant::now();
        let body = serde_json::to_vec(
            &json!({"name": format!("b{i}"), "image": TEST_IMAGE, "cmd": ["sleep", "30"]}),
        )
        .unwrap();
        let id = manager.submit(body).await.unwrap()[0].id;
        loop {
            let t = get(id).await;
            if t.state == State::Running {
                break;
            }
            assert!(t.state != State::Failed, "{t:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let a = s.elapsed().as_secs_f64() * 1000.0;
        // B: the bare create + start of the same container.
        let name = unique_name("bench-bare");
        let spec = ContainerSpec {
            name: name.clone(),
            image: TEST_IMAGE.into(),
            cmd: vec!["sleep".into(), "30".into()],
            ..ContainerSpec::default()
        };
        let s = Instant::now();
        let cid = rt.create(&spec).await.unwrap();
        rt.start(&cid).await.unwrap();
        let b = s.elapsed().as_secs_f64() * 1000.0;
        if i >= 2 {
            ours.push(a);
            bare.push(b);
        }
        rt.remove(&cid, true).await.unwrap();
        manager.stop(id).await.unwrap();
        loop {
            if get(id).await.state == State::Completed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        manager.purge(id).await.unwrap();
    }
    // Exit detection: a container that exits by itself, timed from the engine's FinishedAt.
    for i in 0..cycles.min(10) {
        let body = serde_json::to_vec(
            &json!({"name": format!("x{i}"), "image": TEST_IMAGE, "cmd": ["sleep", "0.3"]}),
        )
        .unwrap();
        let id = manager.submit(body).await.unwrap()[0].id;
        let t = loop {
            let t = get(id).await;
            if t.state == State::Completed {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let seen = poseidon::util::now_ms() as f64;
        let info = rt
            .inspect(t.container_id.as_deref().unwrap())
            .await
            .unwrap();
        let finished = rfc3339_ms(info.finished_at.as_deref().unwrap()).unwrap();
        detect.push(seen - finished);
        manager.purge(id).await.unwrap();
    }
    let (mo, mb) = (median(&mut ours), median(&mut bare));
    let (p90o, p90b) = (pct(&ours, 0.9), pct(&bare, 0.9));
    println!("## docker: submit-to-Running vs bare create+start, {cycles} cycles each, ABAB");
    println!("| path | p50 ms | p90 ms |");
    println!("| --- | ---: | ---: |");
    println!("| POST /tasks until the manager shows running | {mo:.1} | {p90o:.1} |");
    println!("| bare create + start (DockerRuntime) | {mb:.1} | {p90b:.1} |");
    println!(
        "overhead of the p50s: {:+.1} ms ({:+.1} %)",
        mo - mb,
        (mo / mb - 1.0) * 100.0
    );
    let md = median(&mut detect);
    println!("exit seen on the manager after the engine's FinishedAt: p50 {md:.1} ms, max {:.1} ms ({} exits)", detect.last().unwrap(), detect.len());
    run.stop().await;
}

/// Worker loss: a worker holding tasks falls silent; time until the manager marks it down, and from
/// then until every one of its tasks runs on the other worker.
async fn bench_failover() {
    let rounds = env_u64("POSEIDON_BENCH_ROUNDS", 5);
    let per_node = 100;
    let ttl = Duration::from_secs(2);
    println!("## failover: heartbeat TTL {ttl:?}, heartbeat every 250 ms, {per_node} tasks on the lost worker, {rounds} rounds");
    println!("| round | silent -> marked down ms | marked down -> all running elsewhere ms |");
    println!("| ---: | ---: | ---: |");
    let mut downs = Vec::new();
    let mut moves = Vec::new();
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = Shutdown::new();
        let (manager, url) = serve_manager(
            &dir.path().join("m"),
            GroupCommit::On,
            "round-robin",
            ttl,
            &shutdown,
        )
        .await;
        let mut stops = Vec::new();
        for name in ["stays", "goes"] {
            let own = Shutdown::new();
            sim_worker(name, &url, Duration::from_millis(250), &own).await;
            stops.push(own);
        }
        let client = ManagerClient::new(&url, Duration::from_secs(30));
        let specs: Vec<Value> = (0..per_node * 2)
            .map(|i| json!({"name": format!("t{i}"), "image": "busybox"}))
            .collect();
        client
            .submit(serde_json::to_vec(&specs).unwrap())
            .await
            .unwrap();
        let ids: Vec<TaskId> = loop {
            let all = client.tasks(Some("running"), None).await.unwrap();
            if all.len() == per_node * 2 {
                break all
                    .iter()
                    .filter(|t| t.node.as_deref() == Some("goes"))
                    .map(|t| t.id)
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let silent = Instant::now();
        stops[1].trigger();
        loop {
            let nodes = client.nodes().await.unwrap();
            if nodes
                .iter()
                .any(|n| n.name == "goes" && n.state == NodeState::Down)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let down = silent.elapsed();
        let marked = Instant::now();
        loop {
            let all = client.tasks(Some("running"), Some("stays")).await.unwrap();
            let here: std::collections::HashSet<TaskId> = all.iter().map(|t| t.id).collect();
            if ids.iter().all(|id| here.contains(id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let moved = marked.elapsed();
        println!(
            "| {} | {:.0} | {:.0} |",
            round + 1,
            down.as_secs_f64() * 1000.0,
            moved.as_secs_f64() * 1000.0
        );
        downs.push(down.as_secs_f64() * 1000.0);
        moves.push(moved.as_secs_f64() * 1000.0);
        shutdown.trigger();
        stops[0].trigger();
        manager.close().await;
    }
    println!(
        "medians: marked down after {:.0} ms (TTL {} ms), all {per_node} running elsewhere {:.0} ms after that",
        median(&mut downs),
        ttl.as_millis(),
        median(&mut moves)
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if want("submit") {
            bench_submit().await;
        }
        if want("events") {
            bench_events().await;
        }
        if want("submit-secure") {
            bench_submit_secure().await;
        }
        if want("dashboard") {
            bench_dashboard().await;
        }
        if want("docker") {
            bench_docker().await;
        }
        if want("failover") {
            bench_failover().await;
        }
    });
}
