//! Debian's `wrk`, as the benches run it (`benches/mesh.rs`, `benches/cluster_wrk.rs`): one run
//! and what its report says, and the median the benches quote.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Command;

/// What one wrk run reports.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rps: f64,
    pub p99_ms: f64,
    /// Requests completed in the run.
    pub requests: u64,
    /// Of those, answers that were not 2xx or 3xx (wrk's "Non-2xx or 3xx responses").
    pub non_2xx: u64,
}

/// A free port on the loopback, for a server the bench starts and loads.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `cmd` is on the PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `wrk --latency ARGS URL`, parsed; panics with wrk's output if it is not a report.
pub fn run(args: &[&str], url: &str) -> Run {
    let out = Command::new("wrk")
        .arg("--latency")
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99_ms = field("99%")
        .map(|v| millis(&v))
        .unwrap_or_else(|| panic!("no 99% line in wrk's output:\n{text}"));
    // `12345 requests in 5.00s, 1.23MB read`
    let requests = text
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.to_string())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    let non_2xx = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Run {
        rps,
        p99_ms,
        requests,
        non_2xx,
    }
}

/// wrk's latency (`812.00us`, `1.23ms`, `2.00s`) in ms.
pub fn millis(v: &str) -> f64 {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().unwrap() * scale
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
