//! Service benchmarks, a bench binary (`harness = false`), each on a manager and workers started in
//! this process (RocksDB in a temporary directory, synced writes):
//!
//! - `mock`: a service of 100 copies on four mock workers, from `POST /services` to 100 healthy
//!   (no health check, `min_healthy = 0s`); then a rolling update of a service of 10 with
//!   `max_parallel = 2` and `min_healthy = 1s`, against its lower bound: 10 / 2 waves of 1 s each.
//! - `docker`: the same with 10 copies on the real engine (the busybox test image running `sleep`),
//!   and the rolling update of 10 from one command to another.
//!
//! Every figure is the median of `POSEIDON_BENCH_RUNS` (default 3) runs, each on a fresh
//! cluster; the client polls `GET /services/{name}` every 10 ms.
//! `cargo bench --bench services [-- mock|docker]`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use poseidon::client::ManagerClient;
use poseidon::cluster::{self, Running};
use poseidon::config::{self, RuntimeKind};
use poseidon::wire::ServiceView;
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};
use serde_json::{json, Value};

const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(120);

fn runs() -> usize {
    std::env::var("POSEIDON_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A cluster of `workers` workers of `kind` on port 0 under `dir`.
async fn cluster(dir: &std::path::Path, workers: usize, kind: RuntimeKind) -> Running {
    let mut toml = String::from("[manager]\nheartbeat_ttl = \"5s\"\n");
    for i in 0..workers {
        toml.push_str(&format!(
            "[[worker]]\nname = \"bench-svc-{}-{i}\"\nlisten = \"127.0.0.1:0\"\nheartbeat_interval = \"200ms\"\nstop_grace = \"1s\"\ncapacity = {{ cpus = 64.0, memory = \"64g\" }}\n",
            std::process::id()
        ));
    }
    let mut cfg = config::parse(&toml, "bench.toml").unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    if let Some(m) = cfg.manager.as_mut() {
        m.listen = any;
        m.data_dir = dir.join("manager");
    }
    for w in &mut cfg.workers {
        w.listen = any;
        w.advertise = "http://127.0.0.1:0".into();
        w.manager = Some("http://127.0.0.1:0".into());
        w.data_dir = dir.join(&w.name);
        w.runtime = kind;
    }
    cluster::start(&cfg, cluster::Roles::All).await.unwrap()
}

fn service(name: &str, count: u32, image: &str, cmd: &[&str], min_healthy: &str) -> Value {
    json!({
        "name": name, "count": count,
        "task": {"image": image, "cmd": cmd},
        "update": {"max_parallel": 2, "min_healthy": min_healthy, "healthy_deadline": "120s"}
    })
}

/// Polls until the service runs `count` healthy copies of `version` and nothing older.
async fn settled(m: &ManagerClient, name: &str, version: u64, count: usize) -> ServiceView {
    let start = Instant::now();
    loop {
        let s = m.service(name).await.unwrap();
        let old = s
            .tasks
            .iter()
            .filter(|t| services_live(t) && t.version != Some(version))
            .count();
        if s.version == version && s.healthy >= count && old == 0 {
            return s;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{name} did not settle: {} healthy",
            s.healthy
        );
        tokio::time::sleep(POLL).await;
    }
}

fn services_live(t: &poseidon::task::Task) -> bool {
    t.desired == poseidon::task::Desired::Run && !t.is_finished()
}

/// Time from `POST /services` to `count` healthy copies.
async fn time_to_healthy(kind: RuntimeKind, workers: usize, count: u32, image: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let run = cluster(dir.path(), workers, kind).await;
    let m = ManagerClient::new(&run.manager_url().unwrap(), Duration::from_secs(30));
    let body = service("up", count, image, &["sleep", "3600"], "0s");
    let start = Instant::now();
    m.create_service(serde_json::to_vec(&body).unwrap())
        .await
        .unwrap();
    settled(&m, "up", 1, count as usize).await;
    let secs = start.elapsed().as_secs_f64();
    cleanup(&m, "up").await;
    run.stop().await;
    secs
}

/// Time for a rolling update of 10 copies with `max_parallel = 2`, `min_healthy = 1s`.
async fn time_to_roll(kind: RuntimeKind, image: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let run = cluster(dir.path(), 2, kind).await;
    let m = ManagerClient::new(&run.manager_url().unwrap(), Duration::from_secs(30));
    let v1 = service("roll", 10, image, &["sleep", "3600"], "1s");
    m.create_service(serde_json::to_vec(&v1).unwrap())
        .await
        .unwrap();
    settled(&m, "roll", 1, 10).await;
    let v2 = service("roll", 10, image, &["sleep", "7200"], "1s");
    let start = Instant::now();
    m.update_service("roll", serde_json::to_vec(&v2).unwrap())
        .await
        .unwrap();
    settled(&m, "roll", 2, 10).await;
    let secs = start.elapsed().as_secs_f64();
    cleanup(&m, "roll").await;
    run.stop().await;
    secs
}

/// Stops a service and waits for its tasks to end (so Docker containers are removed).
async fn cleanup(m: &ManagerClient, name: &str) {
    if let Err(e) = m.stop_service(name).await {
        eprintln!("cannot stop {name}: {e}");
        return;
    }
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        let tasks = m.service_tasks(name).await.unwrap_or_default();
        if tasks.iter().all(|t| t.is_finished()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn report(label: &str, kind: RuntimeKind, workers: usize, count: u32, image: &str) {
    let mut up = Vec::new();
    let mut roll = Vec::new();
    for _ in 0..runs() {
        up.push(time_to_healthy(kind, workers, count, image).await);
        roll.push(time_to_roll(kind, image).await);
    }
    println!(
        "{label}: service of {count} all healthy in {:.3} s (median of {}: {up:.3?})",
        median(up.clone()),
        up.len()
    );
    println!(
        "{label}: rolling update of 10, max_parallel 2, min_healthy 1 s: {:.3} s \
         (lower bound 5 waves x 1 s = 5.000 s; median of {}: {roll:.3?})",
        median(roll.clone()),
        roll.len()
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
        if want("mock") {
            report("mock", RuntimeKind::Mock, 4, 100, "app:1").await;
        }
        if want("docker") {
            let Some(rt) = docker_or_skip("services docker bench").await else {
                return;
            };
            ensure_test_image(&rt).await.unwrap();
            report("docker", RuntimeKind::Docker, 1, 10, TEST_IMAGE).await;
        }
    });
}
