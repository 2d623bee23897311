//! The routing mesh against a direct connection and haproxy, a bench binary (`harness = false`),
//! all measured with wrk against the same backend, side by side in one run:
//!
//! - the backend: a small keep-alive HTTP/1.1 server (hyper, 12-byte answer) on its own
//!   one-thread runtime in this process;
//! - `direct`: wrk to the backend;
//! - `mesh tcp` and `mesh http`: wrk through the mesh (the code a worker runs, its table set by
//!   hand, no manager) on a second one-thread runtime;
//! - `haproxy tcp` and `haproxy http`: wrk through Debian's haproxy (`mode tcp` and `mode http`,
//!   one thread), the stock anchors of the two modes.
//!
//! Each of `POSEIDON_BENCH_RUNS` rounds (default 3) runs every target once, in turn, for
//! `POSEIDON_BENCH_SECS` (default 5) with `wrk -t1 -c16 --latency`; the figures are medians.
//! Besides throughput and p99, each run reports the CPU time per request of the proxy (the mesh
//! thread, or haproxy), of the backend thread and of wrk, from `/proc` (10 ms ticks over some
//! hundred thousand requests): what a proxy costs, which a busy machine blurs less than req/s.
//! `POSEIDON_BENCH_TARGETS` (names joined by commas, e.g. `mesh http`) runs only those, for a
//! profile (`perf record -e cpu-clock -g -t TID` on the thread named `mesh` or `backend`).
//! wrk must be installed (haproxy is skipped when absent, except under CI=true).
//! `cargo bench --bench mesh`.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/load.rs"]
mod load;
#[path = "support/wrk.rs"]
mod wrk;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper_util::rt::TokioIo;
use poseidon::http::Shutdown;
use poseidon::mesh::{Mesh, MeshOptions};
use poseidon::service::Publish;
use poseidon::task::TaskId;
use poseidon::wire::{CatalogEndpoint, MeshEntry, MeshService};

/// Starts the backend on its own runtime thread; returns its port.
fn backend() -> u16 {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    std_listener.set_nonblocking(true).unwrap();
    let thread = std::thread::Builder::new().name("backend".into());
    thread
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (s, _) = listener.accept().await.unwrap();
                    let _ = s.set_nodelay(true);
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(|_req| async {
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"hello world\n",
                            ))))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(s), svc)
                            .await;
                    });
                }
            });
        })
        .unwrap();
    port
}

/// Starts a mesh publishing `tcp_port` (TCP) and `http_port` (HTTP) to the backend, on its own
/// one-thread runtime.
fn mesh(backend: u16, tcp_port: u16, http_port: u16) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("mesh".into());
    thread
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let m = Mesh::start(
                    MeshOptions {
                        node: "bench".into(),
                        ingress: IpAddr::from([127, 0, 0, 1]),
                        api_port: 1,
                    },
                    None,
                    Shutdown::new(),
                );
                let entry = |port: u16, mode: &str| MeshEntry {
                    publish: Publish {
                        port,
                        target: 80,
                        mode: mode.into(),
                        hosts: Vec::new(),
                        balance: "round_robin".into(),
                    },
                    endpoints: vec![CatalogEndpoint {
                        task: TaskId::new(),
                        node: "bench".into(),
                        address: "127.0.0.1".into(),
                        port: backend,
                        healthy: true,
                    }],
                };
                m.set_services(&[MeshService {
                    name: "bench".into(),
                    entries: vec![entry(tcp_port, "tcp"), entry(http_port, "http")],
                }]);
                tx.send(()).unwrap();
                std::future::pending::<()>().await;
            });
        })
        .unwrap();
    rx.recv().unwrap();
    for port in [tcp_port, http_port] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Starts haproxy in front of the backend, in TCP mode on `tcp_port` and in HTTP mode on
/// `http_port`; the child and its config directory.
fn haproxy(
    backend: u16,
    tcp_port: u16,
    http_port: u16,
) -> (std::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  nbthread 1\n  maxconn 1000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  option http-keep-alive\nfrontend f\n  bind 127.0.0.1:{http_port}\n  default_backend b\nbackend b\n  server s1 127.0.0.1:{backend}\nfrontend ft\n  mode tcp\n  bind 127.0.0.1:{tcp_port}\n  default_backend bt\nbackend bt\n  mode tcp\n  server s1 127.0.0.1:{backend}\n"
        ),
    )
    .unwrap();
    let child = Command::new("haproxy")
        .args(["-f", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for port in [tcp_port, http_port] {
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    (child, dir)
}

/// One wrk run of `-t1 -c16`.
fn wrk(port: u16, secs: u64) -> wrk::Run {
    wrk::run(
        &["-t1", "-c16", &format!("-d{secs}s")],
        &format!("http://127.0.0.1:{port}/"),
    )
}

/// CPU time (user and system, in clock ticks of 10 ms) a `/proc/.../stat` file reports: its
/// own, and with `children` that of its waited-for children (wrk, once it has exited).
fn cpu_ticks(stat: &str, children: bool) -> u64 {
    let text = std::fs::read_to_string(stat).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces, from the
    // state letter (field 3) on; some (tpgid) may be -1.
    let fields: Vec<i64> = text
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(1)
                .map(|f| f.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    // utime, stime, cutime, cstime are fields 14-17 of stat(5); here 10-13 (from field 4).
    let at = |i: usize| fields.get(i).copied().unwrap_or(0).max(0) as u64;
    if children {
        at(12) + at(13)
    } else {
        at(10) + at(11)
    }
}

/// The `/proc` stat file of this process's thread named `name`.
fn thread_stat(name: &str) -> String {
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            return t.path().join("stat").display().to_string();
        }
    }
    panic!("no thread named {name}");
}

/// Microseconds of CPU per request from a tick count (USER_HZ is 100 on Linux).
fn us_per_request(ticks: u64, requests: u64) -> f64 {
    ticks as f64 * 10_000.0 / requests.max(1) as f64
}

fn main() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !wrk::have("wrk") {
        assert!(!ci, "wrk is missing and CI=true");
        eprintln!("SKIPPED the mesh bench: wrk is not installed (apt-get install wrk)");
        return;
    }
    let runs = load::env_u64("POSEIDON_BENCH_RUNS", 3);
    let secs = load::env_u64("POSEIDON_BENCH_SECS", 5);
    let backend = backend();
    let (tcp_port, http_port) = (wrk::free_port(), wrk::free_port());
    let (ha_tcp, ha_http) = (wrk::free_port(), wrk::free_port());
    mesh(backend, tcp_port, http_port);
    let ha = if wrk::have("haproxy") {
        Some(haproxy(backend, ha_tcp, ha_http))
    } else {
        assert!(!ci, "haproxy is missing and CI=true");
        eprintln!("haproxy is not installed: no anchor");
        None
    };
    let mut targets = vec![
        ("direct", backend),
        ("mesh tcp", tcp_port),
        ("mesh http", http_port),
    ];
    if ha.is_some() {
        targets.push(("haproxy tcp", ha_tcp));
        targets.push(("haproxy http", ha_http));
    }
    // Where each target's proxy runs, for its CPU time: none, the mesh thread, or haproxy.
    let mesh_stat = thread_stat("mesh");
    let ha_stat = ha
        .as_ref()
        .map(|(child, _)| format!("/proc/{}/stat", child.id()))
        .unwrap_or_default();
    let proxy_stat = |name: &str| match name {
        "direct" => None,
        n if n.starts_with("mesh") => Some(mesh_stat.clone()),
        _ => Some(ha_stat.clone()),
    };
    let backend_stat = thread_stat("backend");
    if let Ok(only) = std::env::var("POSEIDON_BENCH_TARGETS") {
        let only: Vec<&str> = only.split(',').map(str::trim).collect();
        targets.retain(|(name, _)| only.contains(name));
        assert!(
            !targets.is_empty(),
            "POSEIDON_BENCH_TARGETS names no target"
        );
    }
    // Warm every path (pools, caches) before measuring.
    for (_, port) in &targets {
        wrk(*port, 1);
    }
    // Per target: req/s, p99, and CPU microseconds per request of the proxy, the backend, wrk.
    let mut figures: Vec<[Vec<f64>; 5]> = vec![Default::default(); targets.len()];
    for round in 0..runs {
        for (i, (name, port)) in targets.iter().enumerate() {
            let proxy = proxy_stat(name);
            let ticks = || {
                (
                    proxy.as_deref().map_or(0, |p| cpu_ticks(p, false)),
                    cpu_ticks(&backend_stat, false),
                    cpu_ticks("/proc/self/stat", true),
                )
            };
            let before = ticks();
            let r = wrk(*port, secs);
            let after = ticks();
            let cpu = [
                us_per_request(after.0 - before.0, r.requests),
                us_per_request(after.1 - before.1, r.requests),
                us_per_request(after.2 - before.2, r.requests),
            ];
            eprintln!(
                "round {round} {name}: {:.0} req/s, p99 {:.3} ms, CPU us/request: proxy {:.1}, backend {:.1}, wrk {:.1}",
                r.rps, r.p99_ms, cpu[0], cpu[1], cpu[2]
            );
            for (k, v) in [r.rps, r.p99_ms, cpu[0], cpu[1], cpu[2]]
                .into_iter()
                .enumerate()
            {
                figures[i][k].push(v);
            }
        }
    }
    // The ratios are against direct when it ran (else against the first target).
    let median = |i: usize, k: usize| wrk::median(figures[i][k].clone());
    let direct = (median(0, 0), median(0, 1));
    println!(
        "| target | req/s (median) | vs direct | p99 ms (median) | added p99 ms | CPU us/req: proxy | backend | wrk |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, (name, _)) in targets.iter().enumerate() {
        let (rps, p99) = (median(i, 0), median(i, 1));
        println!(
            "| {name} | {rps:.0} | {:.0} % | {p99:.3} | {:+.3} | {:.1} | {:.1} | {:.1} |",
            100.0 * rps / direct.0,
            p99 - direct.1,
            median(i, 2),
            median(i, 3),
            median(i, 4),
        );
    }
    if let Some((mut child, _dir)) = ha {
        let _ = child.kill();
        let _ = child.wait();
    }
}
