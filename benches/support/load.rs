//! The submission load the cluster and HA benches share: keep-alive clients, each `POST /tasks`
//! one task a request as fast as the answers come, for a fixed time; latencies in milliseconds.
//! The wrk benches take only `env_u64` from here.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use poseidon::http::HttpClient;
use serde_json::json;

/// What a load measured.
pub struct Load {
    /// Every request's latency in milliseconds, sorted.
    pub latencies_ms: Vec<f64>,
    /// Seconds from the first request to the last answer.
    pub elapsed_s: f64,
}

impl Load {
    /// Answers a second.
    pub fn rate(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.elapsed_s
    }

    /// The `p` quantile of the latencies (0.5, 0.99), in milliseconds.
    pub fn pct(&self, p: f64) -> f64 {
        pct(&self.latencies_ms, p)
    }
}

/// The `p` quantile of `sorted`; NaN when it is empty.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// `key` from the environment as a number, or `default`.
pub fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `clients` submitters against `base` (the manager's URL) for `secs`, each with a client
/// of its own from `client` (so each has its own connection, and its own TLS handshake), sending
/// `token` when given; sets `stop` at the end (others may watch it too). Every answer must be 201.
pub async fn submit(
    base: &str,
    clients: usize,
    secs: u64,
    stop: Arc<AtomicBool>,
    client: impl Fn() -> HttpClient,
    token: Option<String>,
) -> Load {
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let url = format!("{base}/tasks");
        let stop = stop.clone();
        let http = client();
        let token = token.clone();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body =
                    serde_json::to_vec(&json!({"name": format!("c{c}-{i}"), "image": "busybox"}))
                        .unwrap();
                let s = Instant::now();
                let r = http
                    .send_auth(Method::POST, &url, Some(body), token.as_deref())
                    .await
                    .unwrap();
                assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
                lat.push(s.elapsed().as_secs_f64() * 1000.0);
                i += 1;
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies_ms = Vec::new();
    for h in handles {
        latencies_ms.extend(h.await.unwrap());
    }
    let elapsed_s = t0.elapsed().as_secs_f64();
    latencies_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Load {
        latencies_ms,
        elapsed_s,
    }
}
