//! The cluster path against its manager, with an outside load generator (issue 17): Debian's
//! `wrk -t2 -c64` POSTing one task per request to the `poseidon` binary (a child process, run as
//! a user runs it), side by side in one run, in turn each round:
//!
//! - `manager alone`: a manager with no workers; its tasks stay Pending. What the manager accepts.
//! - `mock cluster`: `config/mock-cluster.toml` as shipped (the manager and its three mock-runtime
//!   workers in one process), ports and data directories moved. What the cluster delivers: every
//!   task is placed, sent to a worker, started there and reported Running.
//!
//! Beside them, the ceilings the manager alone is measured against (issue 17), each a child process
//! too (this bench binary started again with `--serve-ceiling KIND PORT DIR`):
//!
//! - `bare hyper`: hyper's HTTP/1.1 server on a two-thread tokio runtime (the manager's), reading
//!   each body and answering 201 with a new id; HTTP alone.
//! - `bare RocksDB`: the same, and each body written under its id through the manager's own store
//!   (`RocksStore`: the writer thread, grouped synced writes) before the answer; HTTP and the
//!   durable write, nothing of the manager.
//!
//! After each cluster run the bench waits until every task the manager holds is Running and
//! prints how long that took after the load ended, and checks that the manager holds at least
//! every task wrk saw acknowledged. `POSEIDON_BENCH_RUNS` rounds (default 3) of
//! `POSEIDON_BENCH_SECS` seconds (default 10); the figures are medians. `POSEIDON_BENCH_TARGETS` (for
//! example `alone cluster`) runs only the targets whose names contain one of its words. Needs wrk
//! and curl.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/load.rs"]
mod load;
#[path = "support/wrk.rs"]
mod wrk;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use poseidon::store::{Op, RocksStore, Space, Store};

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
const POST: &str = r#"wrk.method = "POST"
wrk.body = '{"name":"bench","image":"busybox-local","cmd":["sleep","3600"]}'
wrk.headers["Content-Type"] = "application/json"
"#;

/// `curl -sf URL`, or None.
fn get(url: &str) -> Option<String> {
    let out = Command::new("curl").args(["-sf", url]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The manager's task counts from `/metrics`: (running, all).
fn task_counts(base: &str) -> Option<(u64, u64)> {
    let text = get(&format!("{base}/metrics"))?;
    let (mut running, mut all) = (0, 0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("poseidon_tasks{state=\"") else {
            continue;
        };
        let (state, value) = rest.split_once("\"} ")?;
        let n: u64 = value.trim().parse().ok()?;
        all += n;
        if state == "running" {
            running = n;
        }
    }
    Some((running, all))
}

struct Server {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `toml` (its `{PORT}`s and `{DIR}` filled in), waits until it serves and
/// `workers` nodes are up.
fn start(toml: &str, workers: usize) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut text = toml.replace("{DIR}", dir.path().to_str().unwrap());
    let port = wrk::free_port();
    text = text.replace("{PORT}", &port.to_string());
    while let Some(at) = text.find("{WPORT}") {
        text.replace_range(at..at + "{WPORT}".len(), &wrk::free_port().to_string());
    }
    let cfg = dir.path().join("cluster.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = std::fs::File::create(dir.path().join("poseidon.log")).unwrap();
    let child = Command::new(BIN)
        .arg("-c")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let server = Server {
        child,
        base,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = get(&format!("{}/nodes", server.base))
            .map(|n| n.matches("\"state\":\"up\"").count())
            .unwrap_or(0);
        if get(&format!("{}/health", server.base)).is_some() && up >= workers {
            return server;
        }
        assert!(Instant::now() < deadline, "the cluster did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `config/mock-cluster.toml` as shipped, with its ports and data directories as placeholders.
fn mock_cluster() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/mock-cluster.toml");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("127.0.0.1:5555") && text.contains("poseidon-data/mock"));
    text.replace("127.0.0.1:5555", "127.0.0.1:{PORT}")
        .replace("127.0.0.1:5556", "127.0.0.1:{WPORT}")
        .replace("127.0.0.1:5557", "127.0.0.1:{WPORT}")
        .replace("127.0.0.1:5558", "127.0.0.1:{WPORT}")
        .replace("poseidon-data/mock", "{DIR}")
        .replace(
            "scheduler = \"epvm\"",
            "scheduler = \"epvm\"\ndns_listen = \"off\"",
        )
}

/// Starts this bench binary again as a ceiling server (`bare hyper` or `bare RocksDB`) and waits
/// until its port answers.
fn start_ceiling(kind: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = wrk::free_port();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve-ceiling", kind, &port.to_string()])
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the {kind} ceiling did not come up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// The ceiling server: every request's body read, a new id made, (for `rocksdb`) the body written
/// under the id with a synced, grouped write of the manager's store, then 201 with the id.
fn serve_ceiling(kind: &str, port: u16, dir: &Path) {
    let store = match kind {
        "hyper" => None,
        "rocksdb" => Some(Arc::new(RocksStore::open(dir).unwrap())),
        other => panic!("unknown ceiling {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let store = store.clone();
                    async move {
                        let body = BodyExt::collect(req.into_body()).await?.to_bytes();
                        let id = uuid::Uuid::new_v4();
                        if let Some(s) = &store {
                            let op =
                                Op::Put(Space::Tasks, id.to_string().into_bytes(), body.to_vec());
                            s.write(vec![op]).await.unwrap();
                        }
                        let answer = format!("{{\"id\":\"{id}\"}}");
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(201)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap(),
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
}

const ALONE: &str = "[manager]\nlisten = \"127.0.0.1:{PORT}\"\ndata_dir = \"{DIR}/manager\"\n\
                     scheduler = \"epvm\"\ndns_listen = \"off\"\n";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--serve-ceiling") {
        let port = args[at + 2].parse().unwrap();
        serve_ceiling(&args[at + 1], port, Path::new(&args[at + 3]));
        return;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    for tool in ["wrk", "curl"] {
        if !wrk::have(tool) {
            assert!(!ci, "{tool} is missing and CI=true");
            eprintln!("SKIPPED the cluster_wrk bench: {tool} is not installed");
            return;
        }
    }
    let runs = load::env_u64("POSEIDON_BENCH_RUNS", 3);
    let secs = load::env_u64("POSEIDON_BENCH_SECS", 10);
    let lua = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(lua.path(), POST).unwrap();
    let script = lua.path().to_str().unwrap().to_string();
    let duration = format!("-d{secs}s");
    let args = ["-t2", "-c64", &duration, "-s", &script];
    let cluster = mock_cluster();
    // (name, config or ceiling kind, workers); a ceiling has no config.
    let all: [(&str, &str, usize); 4] = [
        ("bare hyper", "hyper", 0),
        ("bare RocksDB", "rocksdb", 0),
        ("manager alone", ALONE, 0),
        ("mock cluster", &cluster, 3),
    ];
    let wanted = std::env::var("POSEIDON_BENCH_TARGETS").unwrap_or_default();
    let targets: Vec<_> = all
        .iter()
        .filter(|(name, _, _)| {
            wanted.split_whitespace().next().is_none()
                || wanted.split_whitespace().any(|w| name.contains(w))
        })
        .collect();
    let alone_at = targets.iter().position(|t| t.0 == "manager alone");

    let mut rps = vec![Vec::new(); targets.len()];
    let mut p99 = vec![Vec::new(); targets.len()];
    let mut settle = Vec::new();
    for round in 0..runs {
        for (i, (name, toml, workers)) in targets.iter().enumerate() {
            let server = if name.starts_with("bare") {
                start_ceiling(toml)
            } else {
                start(toml, *workers)
            };
            let r = wrk::run(&args, &format!("{}/tasks", server.base));
            let ended = Instant::now();
            assert_eq!(r.non_2xx, 0, "{name}: answers that were not 2xx");
            let mut line = format!(
                "round {round} {name}: {:.0} req/s, p99 {:.2} ms, {} tasks",
                r.rps, r.p99_ms, r.requests
            );
            if *workers > 0 {
                // Every acknowledged task Running, and none lost.
                let deadline = ended + Duration::from_secs(120);
                loop {
                    let (running, all) = task_counts(&server.base).expect("metrics");
                    assert!(
                        all >= r.requests,
                        "{name}: {all} tasks held, {} acknowledged",
                        r.requests
                    );
                    if running == all {
                        let s = ended.elapsed().as_secs_f64();
                        line += &format!(", all {all} Running {s:.2} s after the load");
                        settle.push(s);
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{name}: {running}/{all} Running after 120 s"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            eprintln!("{line}");
            rps[i].push(r.rps);
            p99[i].push(r.p99_ms);
        }
    }
    let alone = alone_at.map(|i| wrk::median(rps[i].clone()));
    println!("| target | req/s (median) | vs alone | p99 ms (median) | all Running after the load (median) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (i, (name, _, workers)) in targets.iter().enumerate() {
        let r = wrk::median(rps[i].clone());
        let settled = if *workers > 0 {
            format!("{:.2} s", wrk::median(settle.clone()))
        } else {
            "-".to_string()
        };
        let share = alone.map_or("-".to_string(), |a| format!("{:.0} %", 100.0 * r / a));
        println!(
            "| {name} | {r:.0} | {share} | {:.2} | {settled} |",
            wrk::median(p99[i].clone())
        );
    }
}
