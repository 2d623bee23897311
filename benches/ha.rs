//! High-availability benchmarks, a bench binary (`harness = false`); they need `/usr/bin/etcd`
//! (Debian's `etcd-server`).
//!
//! - `submit`: durable `POST /tasks` at 1, 16 and 64 keep-alive clients on a manager whose store is a
//!   three-member etcd cluster (loopback, data in a temporary directory; acknowledged = committed by
//!   etcd's quorum), beside the same manager on RocksDB (synced group commit), in the same run,
//!   alternating: submissions/s, p50/p99 latency. Three mock workers in this process run every task.
//! - `failover`: three `poseidon manager` processes on that etcd cluster; the leader is killed with
//!   SIGKILL ten times (brought back each time as a follower): the time from the kill until another
//!   manager's `GET /health` says it leads, median and max.
//!
//! `cargo bench --bench ha [-- submit|failover]`; `POSEIDON_BENCH_SECS` (default 5) per submit level,
//! `POSEIDON_BENCH_KILLS` (default 10).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use poseidon::cluster::{self, Roles};
use poseidon::http::HttpClient;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
#[path = "../tests/common/etcd.rs"]
mod etcd;

use etcd::ETCD;

#[path = "support/load.rs"]
mod load;

use load::{env_u64, pct};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A three-member etcd cluster on loopback; returns its processes and client URLs.
fn etcd_cluster(dir: &Path) -> (Vec<Proc>, Vec<String>) {
    let names: Vec<String> = ["e0", "e1", "e2"].map(String::from).to_vec();
    let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut procs = Vec::new();
    for i in 0..3 {
        procs.push(Proc(
            etcd::member(dir, &names, &clients, &peers, i)
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
    }
    let eps = clients
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    (procs, eps)
}

async fn wait_etcd(eps: &[String]) {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = etcd_client::Client::connect(eps, None).await {
            if c.put("/bench/ready", "1", None).await.is_ok() {
                return;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "etcd did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A manager (RocksDB, or etcd at `eps`) and three mock workers, from a config file, in this process.
fn cluster_file(dir: &Path, eps: Option<&[String]>) -> PathBuf {
    let store = match eps {
        Some(eps) => {
            let list: Vec<String> = eps.iter().map(|e| format!("\"{e}\"")).collect();
            format!("store = \"etcd\"\netcd_endpoints = [{}]\n", list.join(", "))
        }
        None => String::new(),
    };
    let mut text = format!(
        "[manager]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{d}/manager\"\ndns_listen = \"off\"\nheartbeat_ttl = \"30s\"\n{store}\n",
        d = dir.display()
    );
    for i in 1..=3 {
        text.push_str(&format!(
            "[[worker]]\nname = \"m{i}\"\nlisten = \"127.0.0.1:0\"\nruntime = \"mock\"\ndata_dir = \"{d}/m{i}\"\ncapacity = {{ cpus = 10000.0, memory = \"10000g\" }}\n\n",
            d = dir.display()
        ));
    }
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// One level: `clients` keep-alive clients submitting for `secs`: (submissions/s, p50 ms, p99 ms, n).
async fn submit_level(eps: Option<&[String]>, clients: usize, secs: u64) -> (f64, f64, f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(eps) = eps {
        // A fresh key space for each level.
        let mut c = etcd_client::Client::connect(eps, None).await.unwrap();
        c.delete(
            "/poseidon/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    }
    let cfg = poseidon::config::load(&cluster_file(dir.path(), eps)).unwrap();
    let run = cluster::start(&cfg, Roles::All).await.unwrap();
    let base = run.manager_url().unwrap();
    // The HA manager leads once it holds the lease.
    let start = Instant::now();
    loop {
        let h: Value = HttpClient::new(Duration::from_secs(2))
            .get(&format!("{base}/health"))
            .await
            .unwrap();
        if h.get("ha").is_none() || h["ha"]["role"] == "leader" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no leader: {h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warm = HttpClient::new(Duration::from_secs(30));
    for i in 0..50 {
        let body =
            serde_json::to_vec(&json!({"name": format!("warm{i}"), "image": "busybox"})).unwrap();
        let r = warm
            .send(Method::POST, &format!("{base}/tasks"), Some(body))
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let client = || HttpClient::new(Duration::from_secs(30));
    let load = load::submit(&base, clients, secs, stop, client, None).await;
    run.stop().await;
    (
        load.rate(),
        load.pct(0.5),
        load.pct(0.99),
        load.latencies_ms.len(),
    )
}

async fn bench_submit(eps: &[String]) {
    let secs = env_u64("POSEIDON_BENCH_SECS", 5);
    println!(
        "## ha submit: durable POST /tasks, {secs} s per level, 3 mock workers running every task"
    );
    println!("| store | clients | submissions/s | p50 ms | p99 ms | submissions |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for clients in [1usize, 16, 64] {
        for etcd in [true, false] {
            let (rate, p50, p99, n) = submit_level(etcd.then_some(eps), clients, secs).await;
            println!(
                "| {} | {clients} | {rate:.0} | {p50:.2} | {p99:.2} | {n} |",
                if etcd {
                    "etcd, 3 members"
                } else {
                    "RocksDB (baseline)"
                }
            );
        }
    }
}

async fn leader_among(bases: &[String], skip: usize) -> Option<usize> {
    for (i, b) in bases.iter().enumerate() {
        if i == skip {
            continue;
        }
        let h: Option<Value> = HttpClient::new(Duration::from_millis(300))
            .get(&format!("{b}/health"))
            .await
            .ok();
        if h.is_some_and(|h| h["ha"]["role"] == "leader") {
            return Some(i);
        }
    }
    None
}

async fn bench_failover(dir: &Path, eps: &[String]) {
    let kills = env_u64("POSEIDON_BENCH_KILLS", 10);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let list: Vec<String> = eps.iter().map(|e| format!("\"{e}\"")).collect();
    let murls: Vec<String> = bases.iter().map(|b| format!("\"{b}\"")).collect();
    let files: Vec<PathBuf> = (0..3)
        .map(|i| {
            let f = dir.join(format!("m{i}.toml"));
            std::fs::write(
                &f,
                format!(
                    "[manager]\nlisten = \"127.0.0.1:{}\"\ndata_dir = \"{}/fm{i}\"\ndns_listen = \"off\"\nstore = \"etcd\"\netcd_endpoints = [{}]\nmanagers = [{}]\n",
                    ports[i],
                    dir.display(),
                    list.join(", "),
                    murls.join(", ")
                ),
            )
            .unwrap();
            f
        })
        .collect();
    let spawn = |i: usize| {
        Proc(
            Command::new(BIN)
                .args(["manager", "-c", files[i].to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut procs: Vec<Proc> = (0..3).map(spawn).collect();
    let mut times = Vec::new();
    for _ in 0..kills {
        let start = Instant::now();
        let leader = loop {
            if let Some(l) = leader_among(&bases, usize::MAX).await {
                break l;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no leader");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Let the followers settle on it.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let killed = Instant::now();
        procs[leader].0.kill().unwrap();
        procs[leader].0.wait().unwrap();
        loop {
            if leader_among(&bases, leader).await.is_some() {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(30), "no new leader");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.push(killed.elapsed().as_secs_f64() * 1000.0);
        procs[leader] = spawn(leader);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("## ha failover: kill -9 of the leading manager, {kills} times, 3 managers on 3 etcd members");
    println!("| kills | median ms | max ms | min ms |");
    println!("| ---: | ---: | ---: | ---: |");
    println!(
        "| {kills} | {:.0} | {:.0} | {:.0} |",
        pct(&times, 0.5),
        times.last().unwrap(),
        times[0]
    );
    println!("<!-- every failover, ms: {times:.0?} -->");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    if !Path::new(ETCD).exists() {
        eprintln!("skipping: {ETCD} is missing (apt-get install etcd-server)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (_etcd, eps) = etcd_cluster(dir.path());
        wait_etcd(&eps).await;
        if want("submit") {
            bench_submit(&eps).await;
        }
        if want("failover") {
            bench_failover(dir.path(), &eps).await;
        }
    });
}
