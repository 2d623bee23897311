//! The mesh's figures per service and endpoint (connections, requests, failures, bytes), kept in
//! atomics that the proxies update without a lock, and written in the Prometheus text format on
//! the worker's `GET /metrics`. The open-connection gauge is also what least-connections reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The counters of one endpoint of one service (or of the service itself, endpoint `none`, for
/// the requests that found no endpoint).
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Connections (TCP) or requests (HTTP) open now.
    pub active: AtomicU64,
    /// Connections made to it.
    pub connections: AtomicU64,
    /// HTTP requests answered through it.
    pub requests: AtomicU64,
    /// Connects and requests that failed (each retried on another endpoint when possible).
    pub failures: AtomicU64,
    /// Bytes from clients to it.
    pub bytes_in: AtomicU64,
    /// Bytes from it to clients.
    pub bytes_out: AtomicU64,
}

/// The endpoint label of the counters of endpoints that left the table.
pub const RETIRED: &str = "retired";

/// Holds one open connection or request on an endpoint's gauge until dropped.
#[derive(Debug)]
pub struct ActiveGuard(Arc<EndpointStats>);

impl ActiveGuard {
    /// Counts one more open on `stats`.
    pub fn new(stats: Arc<EndpointStats>) -> Self {
        stats.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(stats)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every service's and endpoint's counters, and each route's round-robin turn.
#[derive(Debug, Default)]
pub struct Metrics {
    endpoints: Mutex<BTreeMap<(String, String), Arc<EndpointStats>>>,
    turns: Mutex<BTreeMap<(String, u16), Arc<AtomicUsize>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each section is one map lookup or insert, so a poisoned lock still holds whole data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// The counters of `endpoint` (`host:port`, or `none`) of `service`, made on first use; once
    /// the endpoint has left the table and closed its connections they are folded into the
    /// service's `retired` line (see [`Metrics::prune`]).
    pub fn endpoint(&self, service: &str, endpoint: &str) -> Arc<EndpointStats> {
        let mut map = lock(&self.endpoints);
        if let Some(s) = map.get(&(service.to_string(), endpoint.to_string())) {
            return s.clone();
        }
        let s = Arc::new(EndpointStats::default());
        map.insert((service.to_string(), endpoint.to_string()), s.clone());
        s
    }

    /// Open connections of an endpoint (0 for one never used).
    pub fn active(&self, service: &str, endpoint: &str) -> u64 {
        lock(&self.endpoints)
            .get(&(service.to_string(), endpoint.to_string()))
            .map_or(0, |s| s.active.load(Ordering::Relaxed))
    }

    /// The next turn of the route of `service` on `port` (its round-robin position), kept across
    /// table changes so a new table does not send everyone to the first endpoint again.
    pub fn turn(&self, service: &str, port: u16) -> usize {
        self.turn_counter(service, port)
            .fetch_add(1, Ordering::Relaxed)
    }

    /// The turn counter of the route of `service` on `port` (made on first use), which a table
    /// holds so that a pick needs no lookup.
    pub fn turn_counter(&self, service: &str, port: u16) -> Arc<AtomicUsize> {
        lock(&self.turns)
            .entry((service.to_string(), port))
            .or_default()
            .clone()
    }

    /// Forgets the counters of endpoints that left `table` and have nothing open, and the turns
    /// of routes that left it, so that a long run of rolling updates (each copy a new host
    /// port) does not grow the figures without bound. Counters still held elsewhere (by an older
    /// table a connection or request in progress still reads) are kept until a later prune, so
    /// that no count is lost.
    pub fn prune(&self, table: &super::Table) {
        let mut live: std::collections::BTreeSet<(&str, &str)> = Default::default();
        let mut routes: std::collections::BTreeSet<(&str, u16)> = Default::default();
        for (port, plan) in &table.ports {
            for r in &plan.routes {
                routes.insert((r.service.as_str(), *port));
                live.insert((r.service.as_str(), "none"));
                for b in &r.backends {
                    live.insert((r.service.as_str(), b.addr.as_str()));
                }
            }
        }
        let mut map = lock(&self.endpoints);
        let gone: Vec<(String, String)> = map
            .iter()
            .filter(|((svc, ep), s)| {
                ep != RETIRED
                    && !live.contains(&(svc.as_str(), ep.as_str()))
                    && s.active.load(Ordering::Relaxed) == 0
                    && Arc::strong_count(s) == 1
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            let Some(old) = map.remove(&key) else {
                continue;
            };
            let service = key.0;
            if !routes.iter().any(|(svc, _)| *svc == service) {
                continue;
            }
            // Folded into the service's `retired` line, so its totals never go down.
            let into = map
                .entry((service, RETIRED.to_string()))
                .or_default()
                .clone();
            for (to, from) in [
                (&into.connections, &old.connections),
                (&into.requests, &old.requests),
                (&into.failures, &old.failures),
                (&into.bytes_in, &old.bytes_in),
                (&into.bytes_out, &old.bytes_out),
            ] {
                to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        map.retain(|(svc, _), _| routes.iter().any(|(s, _)| *s == svc.as_str()));
        drop(map);
        lock(&self.turns).retain(|(svc, port), _| routes.contains(&(svc.as_str(), *port)));
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let map: Vec<((String, String), Arc<EndpointStats>)> = lock(&self.endpoints)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let families: [Family; 6] = [
            (
                "connections_total",
                "counter",
                "Connections made to an endpoint by the routing mesh.",
                |s| &s.connections,
            ),
            (
                "requests_total",
                "counter",
                "HTTP requests answered through an endpoint.",
                |s| &s.requests,
            ),
            (
                "failures_total",
                "counter",
                "Connects and requests that failed (endpoint none: no endpoint could take them).",
                |s| &s.failures,
            ),
            (
                "bytes_in_total",
                "counter",
                "Bytes from clients to an endpoint.",
                |s| &s.bytes_in,
            ),
            (
                "bytes_out_total",
                "counter",
                "Bytes from an endpoint to clients.",
                |s| &s.bytes_out,
            ),
            (
                "active",
                "gauge",
                "Connections (TCP) or requests (HTTP) open on an endpoint now.",
                |s| &s.active,
            ),
        ];
        for (name, kind, help, field) in families {
            out.push_str(&format!(
                "# HELP poseidon_mesh_{name} {help}\n# TYPE poseidon_mesh_{name} {kind}\n"
            ));
            for ((service, endpoint), s) in &map {
                out.push_str(&format!(
                    "poseidon_mesh_{name}{{service=\"{}\",endpoint=\"{}\"}} {}\n",
                    escape(service),
                    escape(endpoint),
                    field(s).load(Ordering::Relaxed)
                ));
            }
        }
    }
}

/// One metric family: its name suffix, its type, its help, and the counter it reads.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&EndpointStats) -> &AtomicU64,
);

/// A label value escaped as the text format asks (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_one_line_per_service_and_endpoint() {
        let m = Metrics::default();
        let s = m.endpoint("web", "10.0.0.2:32000");
        s.connections.fetch_add(2, Ordering::Relaxed);
        s.bytes_out.fetch_add(512, Ordering::Relaxed);
        {
            let _open = ActiveGuard::new(s.clone());
            assert_eq!(m.active("web", "10.0.0.2:32000"), 1);
        }
        assert_eq!(m.active("web", "10.0.0.2:32000"), 0);
        m.endpoint("web", "none")
            .failures
            .fetch_add(1, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "# TYPE poseidon_mesh_connections_total counter",
            "poseidon_mesh_connections_total{service=\"web\",endpoint=\"10.0.0.2:32000\"} 2",
            "poseidon_mesh_bytes_out_total{service=\"web\",endpoint=\"10.0.0.2:32000\"} 512",
            "poseidon_mesh_failures_total{service=\"web\",endpoint=\"none\"} 1",
            "poseidon_mesh_active{service=\"web\",endpoint=\"10.0.0.2:32000\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
    }

    #[test]
    fn counters_of_endpoints_that_left_are_folded_into_retired_and_gone_services_dropped() {
        use crate::mesh::table::{Backend, Mode, PortPlan, Route, Table};
        let m = Metrics::default();
        m.endpoint("web", "h:1")
            .requests
            .fetch_add(3, Ordering::Relaxed);
        m.endpoint("web", "h:2")
            .requests
            .fetch_add(4, Ordering::Relaxed);
        let open = ActiveGuard::new(m.endpoint("web", "h:3"));
        m.endpoint("old", "h:9")
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let mut t = Table::default();
        t.ports.insert(
            80,
            PortPlan {
                mode: Mode::Http,
                routes: vec![Route {
                    service: "web".into(),
                    hosts: Vec::new(),
                    balance: crate::mesh::balance::Balance::RoundRobin,
                    backends: vec![Backend::new("h:1".into(), "t".into())],
                    turn: Default::default(),
                }],
            },
        );
        m.prune(&t);
        let mut out = String::new();
        m.render(&mut out);
        let requests: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("poseidon_mesh_requests_total{"))
            .collect();
        assert_eq!(
            requests,
            vec![
                "poseidon_mesh_requests_total{service=\"web\",endpoint=\"h:1\"} 3",
                "poseidon_mesh_requests_total{service=\"web\",endpoint=\"h:3\"} 0",
                "poseidon_mesh_requests_total{service=\"web\",endpoint=\"retired\"} 4",
            ]
        );
        drop(open);
    }

    #[test]
    fn turns_go_round_per_route() {
        let m = Metrics::default();
        assert_eq!(
            (m.turn("a", 80), m.turn("a", 80), m.turn("b", 80)),
            (0, 1, 0)
        );
    }
}
