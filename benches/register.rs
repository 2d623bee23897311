//! Registration and placement through the manager at many nodes (issue 17), a bench binary
//! (`harness = false`) that uses only the public API, so that the same file builds against older
//! code for a side-by-side run.
//!
//! ```text
//! cargo bench --bench register -- register 5000      # seconds to register 5,000 nodes
//! cargo bench --bench register -- place 10000 5000   # 10,000 nodes, then 5,000 tasks placed
//! POSEIDON_BENCH_SCHEDULER=binpack cargo bench --bench register -- place 10000 5000
//! ```
//!
//! A manager (`cluster::start`, RocksDB in a temporary directory, synced writes, E-PVM or the
//! scheduler `POSEIDON_BENCH_SCHEDULER` names) in this
//! process; nodes register by calling `Manager::heartbeat` directly (32 at a time, as the scale
//! bench's agents do over HTTP), so the figure is the manager's work, not HTTP's. Node shapes:
//! 4, 8, 16 or 32 cores with 2 GiB a core, some memory in use. `place` then submits tasks of
//! 0.01 core and 16 MiB in requests of 100, and reads the manager's own timing of each pick
//! (`poseidon_placement_seconds`, the scheduler call alone): mean = sum / count. Nodes advertise an
//! address where nothing listens, so dispatches fail and come back later (more picks, same cost).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use poseidon::cluster::{self, Roles};
use poseidon::manager::Manager;
use poseidon::task::TaskSpec;
use poseidon::wire::{Capacity, Heartbeat, NodeStats};
use tokio::sync::Semaphore;

fn beat(i: usize) -> Heartbeat {
    let cpus = [4.0, 8.0, 16.0, 32.0][i % 4];
    Heartbeat {
        name: format!("n{i:06}"),
        address: "http://127.0.0.1:9".into(),
        capacity: Capacity {
            cpus,
            memory: (cpus as u64) << 31,
        },
        stats: NodeStats {
            memory_used: ((i % 7) as u64) << 28,
            ..NodeStats::default()
        },
        healthy: true,
        problem: None,
        tasks: Vec::new(),
        full: true,
        host_volumes: Vec::new(),
        labels: Default::default(),
        endpoint_address: None,
    }
}

async fn register(m: &Manager, n: usize) -> f64 {
    let gate = Arc::new(Semaphore::new(32));
    let t0 = Instant::now();
    let mut hs = Vec::with_capacity(n);
    for i in 0..n {
        let (m, gate) = (m.clone(), gate.clone());
        hs.push(tokio::spawn(async move {
            let _p = gate.acquire().await.unwrap();
            let hb = beat(i);
            m.heartbeat(&hb.name.clone(), hb).await.unwrap();
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    t0.elapsed().as_secs_f64()
}

/// The mean of a histogram in the manager's `/metrics` text: (sum, count).
fn mean_of(m: &Manager) -> (f64, u64) {
    let mut out = String::new();
    m.metrics().placement.render(&mut out, "p", "");
    let field = |k: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    };
    (field("p_sum "), field("p_count ") as u64)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let what = args.first().map_or("register", String::as_str).to_string();
    let nodes: usize = args.get(1).map_or(5_000, |a| a.parse().unwrap());
    let tasks: usize = args.get(2).map_or(5_000, |a| a.parse().unwrap());
    let scheduler = std::env::var("POSEIDON_BENCH_SCHEDULER").unwrap_or_else(|_| "epvm".into());
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[manager]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nscheduler = \"{scheduler}\"\n\
         heartbeat_ttl = \"1h\"\ndns_listen = \"off\"\n",
        dir.path().join("m").display()
    );
    let cfg = poseidon::config::parse(&text, "register.toml").unwrap();
    let run = cluster::start(&cfg, Roles::Manager).await.unwrap();
    let m = run.manager.as_ref().unwrap().manager.clone();
    let secs = register(&m, nodes).await;
    println!(
        "register: {nodes} nodes in {secs:.3} s ({:.1} us a node)",
        secs * 1e6 / nodes as f64
    );
    if what == "place" {
        let spec: TaskSpec = serde_json::from_str(
            r#"{"name": "t", "image": "busybox", "cpus": 0.01, "memory": 16777216}"#,
        )
        .unwrap();
        let t0 = Instant::now();
        for _ in 0..tasks.div_ceil(100) {
            m.submit((0..100).map(|_| (None, spec.clone())).collect())
                .await
                .unwrap();
        }
        let placed = || {
            m.metrics()
                .placements
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        while placed() < tasks as u64 && t0.elapsed() < Duration::from_secs(600) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (sum, count) = mean_of(&m);
        println!(
            "place ({scheduler}): {nodes} nodes, {} placements in {:.2} s; {count} picks timed, mean {:.2} us a pick",
            placed(),
            t0.elapsed().as_secs_f64(),
            sum * 1e6 / count.max(1) as f64
        );
    }
    run.shutdown.trigger();
}
