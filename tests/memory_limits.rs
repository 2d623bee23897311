//! Strangers cannot make the server hold memory: 16 clients each send a 200 MiB body, without a
//! token, to a manager with `acl = true` (the real binary, a child process), and its resident
//! memory is read from `/proc/PID/status` before, during and after. Bodies are refused after the
//! request head (401, or 429 once the failed-authentication limiter trips), so whatever the
//! clients push, the server buffers at most a socket's worth of it per connection.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
const CLIENTS: usize = 16;
const BODY: u64 = 200 << 20;
/// The most the manager's peak resident memory may grow over its idle size during the storm.
/// 16 buffered bodies would be 3.2 GiB; 16 connections' worth of socket buffers and tasks is a
/// few MiB.
const MAX_GROWTH_KIB: u64 = 48 << 10;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// Sends a `BODY`-byte POST without a token, as fast as the server takes it, and returns how
/// many body bytes the socket accepted and the status line the server answered (empty if none).
fn storm_one(port: u16, path: &str) -> (u64, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {BODY}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    while sent < BODY {
        match s.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n as u64,
        }
    }
    let mut buf = [0u8; 512];
    let line = match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        Err(_) => String::new(),
    };
    (sent, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_strangers_sending_200_mib_bodies_do_not_grow_the_managers_memory() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "[manager]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndns_listen = \"off\"\n\
             [security]\nacl = true\n",
            dir.path().join("manager").display()
        ),
    )
    .unwrap();
    let child = Command::new(BIN)
        .args(["manager", "-c", file.to_str().unwrap()])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let manager = Proc(child);
    let pid = manager.0.id();
    let health = format!("http://127.0.0.1:{port}/health");
    wait_for("the manager to serve", Duration::from_secs(20), || async {
        poseidon::http::HttpClient::new(Duration::from_millis(500))
            .get::<serde_json::Value>(&health)
            .await
            .ok()
    })
    .await;
    assert_memory_holds(pid, port).await;
}

async fn assert_memory_holds(pid: u32, port: u16) {
    let idle_kib = status_kib(pid, "VmRSS");
    // Sample the resident size while the storm runs too: the peak (VmHWM) is the verdict, the
    // samples show the curve in the log.
    let running = Arc::new(AtomicBool::new(true));
    let highest = Arc::new(AtomicU64::new(idle_kib));
    let sampler = {
        let (running, highest) = (running.clone(), highest.clone());
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                highest.fetch_max(status_kib(pid, "VmRSS"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    // Half on a user route, half on the cluster protocol's large-body route.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let path = if i % 2 == 0 {
                "/tasks"
            } else {
                "/nodes/w1/heartbeat"
            };
            std::thread::spawn(move || storm_one(port, path))
        })
        .collect();
    let results: Vec<(u64, String)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    running.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak_kib = status_kib(pid, "VmHWM");
    let sent_mib: u64 = results.iter().map(|(s, _)| s).sum::<u64>() >> 20;
    eprintln!(
        "{CLIENTS} clients x {} MiB in {:.2} s: the sockets took {sent_mib} MiB in all; manager RSS idle {} MiB, highest sampled {} MiB, peak (VmHWM) {} MiB",
        BODY >> 20,
        started.elapsed().as_secs_f64(),
        idle_kib >> 10,
        highest.load(Ordering::Relaxed) >> 10,
        peak_kib >> 10,
    );
    for (sent, line) in &results {
        assert!(
            line.contains(" 401 ") || line.contains(" 429 ") || line.is_empty(),
            "a stranger's body must be refused, got {line:?} after {sent} bytes"
        );
        assert!(
            *sent < BODY,
            "the server read a whole 200 MiB body from a stranger ({line:?})"
        );
    }
    assert!(
        results.iter().any(|(_, l)| !l.is_empty()),
        "no client got an answer at all: {results:?}"
    );
    assert!(
        peak_kib.saturating_sub(idle_kib) < MAX_GROWTH_KIB,
        "the manager's peak RSS grew from {} MiB to {} MiB under the storm",
        idle_kib >> 10,
        peak_kib >> 10
    );
    // And it still serves.
    let health = format!("http://127.0.0.1:{port}/health");
    let h: serde_json::Value = poseidon::http::HttpClient::new(Duration::from_secs(2))
        .get(&health)
        .await
        .unwrap();
    assert!(h.is_object(), "{h}");
}
