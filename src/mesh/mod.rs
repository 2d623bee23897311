//! The routing mesh: every worker opens each service's `publish` ports on its `ingress_listen`
//! address and proxies what arrives to the service's healthy endpoints anywhere in the cluster
//! (DESIGN.md section 12, "Load balancing"). One concern a file:
//!
//! - [`table`]: the endpoint table, built (pure) from the manager's mesh answer;
//! - [`balance`]: round-robin and least-connections (pure);
//! - [`tcp`]: TCP mode (bytes both ways, half-close honoured) and the connect-with-retry both
//!   modes share;
//! - [`http`]: HTTP/1.1 mode (keep-alive, `X-Forwarded-For`, `hosts`, retries, 503 JSON);
//! - [`pool`]: HTTP mode's keep-alive connections to each endpoint;
//! - [`listeners`]: opens and closes the listeners as the table's ports come and go;
//! - [`watch`]: the worker's blocking query on `GET /nodes/{name}/mesh`, which keeps the last
//!   table while the manager is unreachable;
//! - [`metrics`]: counters per service and endpoint for the worker's `/metrics`.
//!
//! A new table replaces the old one whole; connections already made keep their endpoint, so an
//! endpoint leaving the catalog drops no established connection. The table carries each route's
//! and endpoint's live state (turn, counters, idle connections), so the hot path takes one
//! read lock (the table's `Arc`) and no map lookup per request.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::client::ManagerClient;
use crate::http::Shutdown;
use crate::wire::MeshService;

pub mod balance;
pub mod http;
pub mod listeners;
pub mod metrics;
pub mod pool;
pub mod table;
pub mod tcp;
pub mod watch;

pub use table::Table;

/// How long a connect to an endpoint may take before the next endpoint is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How a worker's mesh is set up.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The worker's node name (the mesh reads the catalog as this node).
    pub node: String,
    /// The address the published ports are opened on.
    pub ingress: IpAddr,
    /// The worker's own API port, which no service may take.
    pub api_port: u16,
}

/// The state the listeners, proxies and watch share.
pub(crate) struct Shared {
    opts: MeshOptions,
    table: RwLock<Arc<Table>>,
    metrics: metrics::Metrics,
    /// Wakes the listener supervisor when the table changed.
    changed: Notify,
}

impl Shared {
    /// The current table (a cheap clone of its `Arc`).
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Closes idle connections to endpoints that have waited past [`pool::IDLE_TIMEOUT`] (a pool in
/// use also does it when it is used), until shut down.
async fn sweep_idle(shared: Arc<Shared>, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(pool::IDLE_TIMEOUT / 2) => shared.table().sweep_idle(),
        }
    }
}

/// A handle to a worker's routing mesh (cheap to clone).
#[derive(Clone)]
pub struct Mesh {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("ingress", &self.shared.opts.ingress)
            .finish()
    }
}

impl Mesh {
    /// Starts the mesh: its listener supervisor, and (with a manager) the watch that feeds it the
    /// catalog. Everything stops with `shutdown`.
    pub fn start(opts: MeshOptions, manager: Option<ManagerClient>, shutdown: Shutdown) -> Mesh {
        let shared = Arc::new(Shared {
            opts,
            table: RwLock::new(Arc::new(Table::default())),
            metrics: metrics::Metrics::default(),
            changed: Notify::new(),
        });
        let mesh = Mesh { shared };
        tokio::spawn(listeners::run(mesh.shared.clone(), shutdown.clone()));
        tokio::spawn(sweep_idle(mesh.shared.clone(), shutdown.clone()));
        if let Some(client) = manager {
            tokio::spawn(watch::run(mesh.clone(), client, shutdown));
        }
        mesh
    }

    /// Replaces the table with the one of a mesh answer; returns whether it changed.
    pub fn set_services(&self, services: &[MeshService]) -> bool {
        let (mut table, conflicts) = Table::build(services);
        for c in conflicts {
            tracing::error!(node = %self.shared.opts.node, "routing mesh: {c}");
        }
        let (old, new) = {
            let mut slot = self.shared.table.write().unwrap_or_else(|p| p.into_inner());
            if **slot == table {
                return false;
            }
            table.adopt(&self.shared.metrics, &slot);
            let new = Arc::new(table);
            (std::mem::replace(&mut *slot, new.clone()), new)
        };
        // Without the old table, the counters of endpoints that left are held only by requests
        // still in progress (kept until a later prune) or by nothing (folded now).
        drop(old);
        self.shared.metrics.prune(&new);
        self.shared.changed.notify_one();
        true
    }

    /// The current table.
    pub fn table(&self) -> Arc<Table> {
        self.shared.table()
    }

    /// The mesh's counters in the Prometheus text format (appended to the worker's `/metrics`).
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        self.shared.metrics.render(&mut out);
        out.push_str("# HELP poseidon_mesh_routed Endpoints the mesh routes each published port to now (1 each).\n# TYPE poseidon_mesh_routed gauge\n");
        for (port, plan) in &self.table().ports {
            for r in &plan.routes {
                for b in &r.backends {
                    out.push_str(&format!(
                        "poseidon_mesh_routed{{service=\"{}\",port=\"{port}\",endpoint=\"{}\"}} 1\n",
                        r.service, b.addr
                    ));
                }
            }
        }
        out
    }

    /// The node name the mesh runs for.
    pub fn node(&self) -> &str {
        &self.shared.opts.node
    }
}
