//! Health checks: HTTP, TCP and exec probes, run by the worker beside each running container.
//!
//! A probe reaches the container at its own address on its network when the engine reports one (that
//! works on the host and from a worker container on the same network), else through the published
//! host port on 127.0.0.1. Failures within the start period do not count; `retries` consecutive
//! failures make the task unhealthy, and the supervisor then kills and (by policy) restarts it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Worker;
use crate::task::{HealthCheck, Probe, TaskId};

/// Probes the task's container until it becomes unhealthy, then returns why. Never returns for a
/// task without a health check.
pub(super) async fn run(w: Worker, id: TaskId, cid: String) -> String {
    let Some(check) = w.read(id, |t| t.spec.health_check.clone()).flatten() else {
        return std::future::pending().await;
    };
    let started = Instant::now();
    let interval = Duration::from_millis(check.interval_ms.max(100));
    // The first probe comes soon after start so that "healthy" shows without a full interval.
    let mut next = interval.min(Duration::from_secs(1));
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(next).await;
        next = interval;
        let outcome = probe(&w, &cid, &check).await;
        let health = match &outcome {
            Ok(()) => {
                failures = 0;
                "healthy"
            }
            Err(_) if started.elapsed() < Duration::from_millis(check.start_period_ms) => {
                "starting"
            }
            Err(msg) => {
                failures += 1;
                if failures >= check.retries.max(1) {
                    if let Err(e) = w
                        .update(id, |t| t.health = Some("unhealthy".to_string()))
                        .await
                    {
                        tracing::error!(task = %id, error = %e, "store write failed: record unhealthy");
                    }
                    return format!("{failures} health checks failed, last: {msg}");
                }
                continue;
            }
        };
        if let Err(e) = w
            .update(id, |t| {
                if t.health.as_deref() != Some(health) {
                    t.health = Some(health.to_string());
                }
            })
            .await
        {
            tracing::error!(task = %id, error = %e, "store write failed: record health");
        }
    }
}

/// Runs one probe within its timeout.
async fn probe(w: &Worker, cid: &str, check: &HealthCheck) -> Result<(), String> {
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    let run = async {
        match &check.probe {
            Probe::Exec { cmd } => {
                let out = w
                    .runtime()
                    .exec(cid, cmd, timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                if out.exit_code == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "command exited with code {}: {}",
                        out.exit_code,
                        out.output.trim().chars().take(200).collect::<String>()
                    ))
                }
            }
            Probe::Tcp { port } => {
                let addr = target(w, cid, *port).await?;
                TcpStream::connect(&addr)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("tcp connect to {addr}: {e}"))
            }
            Probe::Http { port, path } => {
                let addr = target(w, cid, *port).await?;
                http_get(&addr, path).await
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| format!("probe timed out after {} ms", timeout.as_millis()))?
}

/// Where to reach `port` of the container.
async fn target(w: &Worker, cid: &str, port: u16) -> Result<String, String> {
    let info = w.runtime().inspect(cid).await.map_err(|e| e.to_string())?;
    if let Some(ip) = info.ip_address.filter(|ip| !ip.is_empty()) {
        return Ok(format!("{ip}:{port}"));
    }
    info.ports
        .iter()
        .find(|p| p.container_port == port && p.host_port != 0)
        .map(|p| format!("127.0.0.1:{}", p.host_port))
        .ok_or_else(|| format!("container port {port} is neither reachable nor published"))
}

/// A minimal HTTP/1.0 GET: 2xx and 3xx are healthy.
async fn http_get(addr: &str, path: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("http connect to {addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: poseidon-health\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("http write to {addr}: {e}"))?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let r = s
            .read(&mut buf[n..])
            .await
            .map_err(|e| format!("http read from {addr}: {e}"))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status from {addr}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("GET {path} answered {code}"))
    }
}
