//! The endpoint table: what every published port of this worker routes to, built from the
//! manager's mesh answer (`GET /nodes/{name}/mesh`). Pure: a new answer builds a new table, which
//! replaces the old one whole, so a connection in progress keeps the endpoint it was given.
//!
//! Each route and endpoint also carries its live state (the round-robin turn, the counters, the
//! idle connections of HTTP mode), so a request reaches them without a lookup. `build` gives
//! fresh ones; the mesh swaps in the kept ones before it installs a table ([`Table::adopt`]).
//! They are left out of equality, which compares what the manager said.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use super::balance::Balance;
use super::metrics::{EndpointStats, Metrics};
use super::pool::Pool;
use crate::wire::MeshService;

/// How a published port is proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes both ways.
    Tcp,
    /// HTTP/1.1 requests.
    Http,
}

impl Mode {
    /// The mode named `s`; TCP for anything but `http` (the manager validated the name).
    pub fn parse(s: &str) -> Mode {
        if s == "http" {
            Mode::Http
        } else {
            Mode::Tcp
        }
    }
}

/// One endpoint a route may send to.
#[derive(Debug, Clone)]
pub struct Backend {
    /// `host:port` to connect to (`[v6]:port` for an IPv6 address).
    pub addr: String,
    /// The task behind it, for logs.
    pub task: String,
    /// Its counters (the ones `/metrics` shows once adopted).
    pub stats: Arc<EndpointStats>,
    /// Its idle keep-alive connections (HTTP mode).
    pub pool: Arc<Pool>,
}

impl Backend {
    /// An endpoint with fresh counters and an empty pool.
    pub fn new(addr: String, task: String) -> Backend {
        Backend {
            stats: Arc::default(),
            pool: Arc::new(Pool::new(&addr)),
            addr,
            task,
        }
    }
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        (&self.addr, &self.task) == (&other.addr, &other.task)
    }
}

impl Eq for Backend {}

/// One service's entry on a port.
#[derive(Debug, Clone)]
pub struct Route {
    /// The service.
    pub service: String,
    /// The `Host` names it answers in HTTP mode (any when empty).
    pub hosts: Vec<String>,
    /// How it picks an endpoint.
    pub balance: Balance,
    /// Its endpoints, sorted.
    pub backends: Vec<Backend>,
    /// Its round-robin position (raised at every pick).
    pub turn: Arc<AtomicUsize>,
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        (&self.service, &self.hosts, self.balance, &self.backends)
            == (&other.service, &other.hosts, other.balance, &other.backends)
    }
}

impl Eq for Route {}

/// What one published port does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPlan {
    /// TCP or HTTP.
    pub mode: Mode,
    /// The services on it: one, or several routing by distinct hosts in HTTP mode.
    pub routes: Vec<Route>,
}

impl PortPlan {
    /// The route for a request's `Host` header (its port, if any, ignored): the route naming
    /// that host, else the one naming no hosts; `None` when neither exists.
    pub fn route_for(&self, host: Option<&str>) -> Option<&Route> {
        if let Some(name) = host.map(host_name) {
            if let Some(r) = self
                .routes
                .iter()
                .find(|r| r.hosts.iter().any(|h| h.eq_ignore_ascii_case(name)))
            {
                return Some(r);
            }
        }
        self.routes.iter().find(|r| r.hosts.is_empty())
    }
}

/// A `Host` header's name without its port (`Web.Example:8080` -> `Web.Example`), compared
/// without regard to case.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    }
}

/// Every published port of the cluster and what it routes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// By port.
    pub ports: BTreeMap<u16, PortPlan>,
}

/// `host:port`, with brackets around an IPv6 address.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Table {
    /// The table for a mesh answer. A port claimed in two modes (which the manager refuses) keeps
    /// the first service by name, and the other is left out with its reason in `conflicts`.
    pub fn build(services: &[MeshService]) -> (Table, Vec<String>) {
        let mut sorted: Vec<&MeshService> = services.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut ports: BTreeMap<u16, PortPlan> = BTreeMap::new();
        let mut conflicts = Vec::new();
        for svc in sorted {
            for entry in &svc.entries {
                let p = &entry.publish;
                let mode = Mode::parse(&p.mode);
                let mut backends: Vec<Backend> = entry
                    .endpoints
                    .iter()
                    .filter(|e| e.healthy)
                    .map(|e| Backend::new(join_host_port(&e.address, e.port), e.task.to_string()))
                    .collect();
                backends.sort_by(|a, b| a.addr.cmp(&b.addr));
                backends.dedup_by(|a, b| a.addr == b.addr);
                let route = Route {
                    service: svc.name.clone(),
                    hosts: p.hosts.clone(),
                    balance: Balance::parse(&p.balance),
                    backends,
                    turn: Arc::default(),
                };
                let plan = ports.entry(p.port).or_insert_with(|| PortPlan {
                    mode,
                    routes: Vec::new(),
                });
                let shared_ok = plan.mode == mode
                    && plan.routes.iter().all(|r| {
                        mode == Mode::Http
                            && !r.hosts.is_empty()
                            && !route.hosts.is_empty()
                            && r.hosts.iter().all(|h| !route.hosts.contains(h))
                    });
                if shared_ok {
                    plan.routes.push(route);
                } else {
                    conflicts.push(format!(
                        "port {} of service {:?} is already taken by service {:?}",
                        p.port, svc.name, plan.routes[0].service
                    ));
                }
            }
        }
        (Table { ports }, conflicts)
    }

    /// Gives this (new) table the live state it shares with the running mesh: each endpoint's
    /// counters and each route's turn from `metrics` (which outlive tables), and each endpoint's
    /// idle connections from `old` when the same service had the same endpoint there.
    pub fn adopt(&mut self, metrics: &Metrics, old: &Table) {
        for (port, plan) in &mut self.ports {
            for route in &mut plan.routes {
                route.turn = metrics.turn_counter(&route.service, *port);
                let before = old
                    .ports
                    .values()
                    .flat_map(|p| &p.routes)
                    .filter(|r| r.service == route.service)
                    .flat_map(|r| &r.backends);
                for b in &mut route.backends {
                    b.stats = metrics.endpoint(&route.service, &b.addr);
                    if let Some(prev) = before.clone().find(|p| p.addr == b.addr) {
                        b.pool = prev.pool.clone();
                    }
                }
            }
        }
    }

    /// Closes the idle connections of every endpoint that are too old to reuse.
    pub fn sweep_idle(&self) {
        for plan in self.ports.values() {
            for r in &plan.routes {
                for b in &r.backends {
                    b.pool.sweep();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Publish;
    use crate::task::TaskId;
    use crate::wire::{CatalogEndpoint, MeshEntry};

    fn entry(port: u16, mode: &str, hosts: &[&str], eps: &[(&str, u16)]) -> MeshEntry {
        MeshEntry {
            publish: Publish {
                port,
                target: 80,
                mode: mode.into(),
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
                balance: "least_conn".into(),
            },
            endpoints: eps
                .iter()
                .enumerate()
                .map(|(i, (a, p))| CatalogEndpoint {
                    task: TaskId(uuid::Uuid::from_u128(i as u128 + 1)),
                    node: "w1".into(),
                    address: a.to_string(),
                    port: *p,
                    healthy: true,
                })
                .collect(),
        }
    }

    fn svc(name: &str, entries: Vec<MeshEntry>) -> MeshService {
        MeshService {
            name: name.into(),
            entries,
        }
    }

    #[test]
    fn each_port_routes_to_its_services_endpoints_by_address() {
        let (t, conflicts) = Table::build(&[
            svc(
                "web",
                vec![entry(
                    8080,
                    "http",
                    &[],
                    &[("10.0.0.2", 32001), ("::1", 32000)],
                )],
            ),
            svc("db", vec![entry(5432, "tcp", &[], &[("10.0.0.3", 32002)])]),
        ]);
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert_eq!(
            t.ports.keys().copied().collect::<Vec<_>>(),
            vec![5432, 8080]
        );
        let web = &t.ports[&8080];
        assert_eq!(web.mode, Mode::Http);
        assert_eq!(web.routes[0].balance, Balance::LeastConn);
        let addrs: Vec<&str> = web.routes[0]
            .backends
            .iter()
            .map(|b| b.addr.as_str())
            .collect();
        assert_eq!(addrs, vec!["10.0.0.2:32001", "[::1]:32000"]);
        assert_eq!(t.ports[&5432].mode, Mode::Tcp);
    }

    #[test]
    fn hosts_share_a_port_and_a_clash_keeps_the_first_service_by_name() {
        let (t, conflicts) = Table::build(&[
            svc("b", vec![entry(80, "http", &["b.example"], &[("h", 2)])]),
            svc("a", vec![entry(80, "http", &["a.example"], &[("h", 1)])]),
            svc("c", vec![entry(80, "tcp", &[], &[("h", 3)])]),
            svc("d", vec![entry(80, "http", &["a.example"], &[("h", 4)])]),
        ]);
        let plan = &t.ports[&80];
        let names: Vec<&str> = plan.routes.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(conflicts.len(), 2, "{conflicts:?}");
        // (Host header, the service it reaches)
        let rows: &[(Option<&str>, Option<&str>)] = &[
            (Some("a.example"), Some("a")),
            (Some("B.Example:80"), Some("b")),
            (Some("other.example"), None),
            (None, None),
        ];
        for (host, want) in rows {
            assert_eq!(
                plan.route_for(*host).map(|r| r.service.as_str()),
                *want,
                "{host:?}"
            );
        }
    }

    #[test]
    fn a_route_without_hosts_takes_the_hosts_no_other_route_names() {
        let (t, _) = Table::build(&[svc("web", vec![entry(80, "http", &[], &[])])]);
        let plan = &t.ports[&80];
        assert_eq!(
            plan.route_for(Some("anything:80"))
                .map(|r| r.service.as_str()),
            Some("web")
        );
        assert_eq!(
            plan.route_for(None).map(|r| r.service.as_str()),
            Some("web")
        );
        assert!(plan.routes[0].backends.is_empty());
    }
}
