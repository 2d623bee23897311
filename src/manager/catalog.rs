//! The service catalog: the endpoints of every service, kept in the same critical section as the
//! task state, and numbered by an index that grows on every change of an endpoint set.
//!
//! An endpoint is a running task of a service that is healthy (or has no health check) and has a
//! published container port bound on its node: the node's endpoint host (its worker's
//! `endpoint_address`, else the host of its advertised address) and the host port Docker bound for
//! the `publish` entry's `target`. [`endpoints_of`] decides that for one task (pure, table
//! tested); [`Catalog`] holds the sets, and [`State::apply`](super::State) calls
//! [`Catalog::set_task`] for every change of a service task, so the catalog is never behind the
//! state the API answers from. Blocking queries (`?index=N`) wait on a [`watch`] channel that
//! carries the index, so a waiting request costs one receiver and no polling.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;

use crate::service::Publish;
use crate::task::{Desired, State as TaskState, Task, TaskId};
use crate::wire::{CatalogEndpoint, CatalogService, MeshEntry, MeshService};

/// The host part of a node's advertised address (`http://10.0.0.5:5556` -> `10.0.0.5`,
/// `http://[::1]:5556` -> `::1`); `None` when the address has no host.
pub fn address_host(address: &str) -> Option<&str> {
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then_some(host)
}

/// The endpoints a task gives its service: one per `publish` entry whose `target` its container
/// has bound on the host (TCP), if the task runs, is wanted, and passes its health check (or has
/// none). `host` is where the node it runs on has its published ports reached
/// ([`NodeRecord::endpoint_host`](super::state::NodeRecord::endpoint_host)).
pub fn endpoints_of(task: &Task, publish: &[Publish], host: Option<&str>) -> Vec<CatalogEndpoint> {
    if task.service.is_none() || task.state != TaskState::Running || task.desired != Desired::Run {
        return Vec::new();
    }
    if task.spec.health_check.is_some() && task.health.as_deref() != Some("healthy") {
        return Vec::new();
    }
    let (Some(node), Some(host)) = (task.node.as_ref(), host) else {
        return Vec::new();
    };
    let mut out: Vec<CatalogEndpoint> = Vec::new();
    for p in publish {
        let bound = task
            .host_ports
            .iter()
            .find(|hp| hp.container_port == p.target && hp.protocol.eq_ignore_ascii_case("tcp"));
        if let Some(hp) = bound {
            let ep = CatalogEndpoint {
                task: task.id,
                node: node.clone(),
                address: host.to_string(),
                port: hp.host_port,
                healthy: true,
            };
            // Two entries publishing the same target are one endpoint.
            if !out.contains(&ep) {
                out.push(ep);
            }
        }
    }
    out
}

/// The endpoint sets of all services, and the index that numbers their changes.
#[derive(Debug)]
pub struct Catalog {
    /// Endpoints by service, each list sorted; a service without endpoints has no entry.
    services: BTreeMap<String, Vec<CatalogEndpoint>>,
    /// Raised by one on every change of any endpoint set; starts at 1 (Nomad's index is never 0).
    index: u64,
    /// Carries `index` to blocking queries.
    tx: watch::Sender<u64>,
    /// The `publish` entries of every service that is not stopped: the routing mesh follows
    /// them, so a change of them raises the index too.
    publish: BTreeMap<String, Vec<Publish>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            services: BTreeMap::new(),
            index: 1,
            tx: watch::Sender::new(1),
            publish: BTreeMap::new(),
        }
    }
}

impl Catalog {
    /// The current index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// A receiver of the index, for a blocking query to wait on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// The endpoints of a service (empty when it has none).
    pub fn endpoints(&self, service: &str) -> &[CatalogEndpoint] {
        self.services.get(service).map_or(&[], Vec::as_slice)
    }

    /// How many endpoints a service has.
    pub fn count(&self, service: &str) -> usize {
        self.endpoints(service).len()
    }

    /// Replaces task `id`'s endpoints: removed from `old_service`, `new` put in `new_service`.
    /// Raises the index only when an endpoint set changed. Returns whether one did.
    pub fn set_task(
        &mut self,
        id: TaskId,
        old_service: Option<&str>,
        new_service: Option<&str>,
        new: Vec<CatalogEndpoint>,
    ) -> bool {
        let mut changed = false;
        if let Some(s) = old_service.filter(|s| Some(*s) != new_service) {
            changed |= self.edit(s, |list| list.retain(|e| e.task != id));
        }
        if let Some(s) = new_service {
            changed |= self.edit(s, |list| {
                list.retain(|e| e.task != id);
                list.extend(new);
                list.sort();
            });
        }
        if changed {
            self.bump();
        }
        changed
    }

    /// Replaces a whole service's endpoints (after its `publish` entries changed).
    pub fn set_service(&mut self, service: &str, mut new: Vec<CatalogEndpoint>) -> bool {
        new.sort();
        let changed = self.edit(service, |list| *list = new);
        if changed {
            self.bump();
        }
        changed
    }

    /// Records a service's `publish` entries (empty for a stopped or forgotten service); raises
    /// the index when they changed. Returns whether they did.
    pub fn set_publish(&mut self, service: &str, publish: Vec<Publish>) -> bool {
        let old = if publish.is_empty() {
            self.publish.remove(service)
        } else {
            self.publish.insert(service.to_string(), publish.clone())
        };
        let changed = old.unwrap_or_default() != publish;
        if changed {
            self.bump();
        }
        changed
    }

    /// Every service's `publish` entries (services without any are left out).
    pub fn published(&self) -> &BTreeMap<String, Vec<Publish>> {
        &self.publish
    }

    /// Applies `f` to a service's list, dropping an empty list; true when the list changed.
    fn edit(&mut self, service: &str, f: impl FnOnce(&mut Vec<CatalogEndpoint>)) -> bool {
        let mut list = self.services.remove(service).unwrap_or_default();
        let before = list.clone();
        f(&mut list);
        let changed = list != before;
        if !list.is_empty() {
            self.services.insert(service.to_string(), list);
        }
        changed
    }

    fn bump(&mut self) {
        self.index += 1;
        self.tx.send_replace(self.index);
    }
}

impl super::State {
    /// Keeps the catalog in step with one task change; called by `State::apply`, under the lock.
    pub(super) fn catalog_apply(&mut self, old: Option<&Task>, new: Option<&Task>) {
        let old_service = old.and_then(|t| t.service.as_deref());
        let new_service = new.and_then(|t| t.service.as_deref());
        if old_service.is_none() && new_service.is_none() {
            return;
        }
        let new_eps = new.map(|t| self.task_endpoints(t)).unwrap_or_default();
        // A change that neither had nor gives an endpoint (most changes of a starting task) leaves
        // the catalog alone without touching its lists.
        if new_eps.is_empty() && old_service == new_service {
            if let Some(t) = old.filter(|t| self.task_endpoints(t).is_empty()) {
                if self
                    .catalog
                    .endpoints(old_service.unwrap_or_default())
                    .iter()
                    .all(|e| e.task != t.id)
                {
                    return;
                }
            }
        }
        let id = match (old, new) {
            (_, Some(t)) | (Some(t), None) => t.id,
            (None, None) => return,
        };
        self.catalog.set_task(id, old_service, new_service, new_eps);
    }

    /// A task's endpoints under its service's current `publish` entries and its node's endpoint
    /// host.
    fn task_endpoints(&self, t: &Task) -> Vec<CatalogEndpoint> {
        let Some(svc) = t.service.as_ref().and_then(|s| self.services.get(s)) else {
            return Vec::new();
        };
        endpoints_of(t, &svc.spec().publish, self.endpoint_host_of(t))
    }

    /// Where the ports of task `t`'s container are reached: its node's endpoint host.
    fn endpoint_host_of(&self, t: &Task) -> Option<&str> {
        t.node
            .as_ref()
            .and_then(|n| self.nodes.get(n))
            .and_then(|n| n.record.endpoint_host())
    }

    /// Recomputes the endpoints of every service with a task on `node`; called when the node's
    /// endpoint host changes.
    pub(super) fn refresh_node_endpoints(&mut self, node: &str) {
        let services: std::collections::BTreeSet<String> = self
            .by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id)?.service.clone())
            .collect();
        for s in services {
            self.refresh_catalog(&s);
        }
    }

    /// Recomputes a service's endpoints from its tasks; called where a service's spec (its
    /// `publish` entries) is put in memory or taken out.
    pub(crate) fn refresh_catalog(&mut self, service: &str) {
        let eps: Vec<CatalogEndpoint> = self
            .by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
            .flat_map(|t| self.task_endpoints(t))
            .collect();
        self.catalog.set_service(service, eps);
        let publish = self
            .services
            .get(service)
            .filter(|s| s.state != crate::service::ServiceState::Stopped)
            .map(|s| s.spec().publish.clone())
            .unwrap_or_default();
        self.catalog.set_publish(service, publish);
    }

    /// What the routing mesh needs: every published service's entries, each with the endpoints
    /// of its own `target` (a service may publish several container ports).
    fn mesh_services(&self) -> Vec<MeshService> {
        self.catalog
            .published()
            .iter()
            .map(|(name, publish)| {
                let tasks: Vec<&Task> = self
                    .by_service
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| self.tasks.get(id).map(|t| &**t))
                    .collect();
                let entries = publish
                    .iter()
                    .map(|p| {
                        let mut endpoints: Vec<CatalogEndpoint> = tasks
                            .iter()
                            .flat_map(|t| {
                                endpoints_of(t, std::slice::from_ref(p), self.endpoint_host_of(t))
                            })
                            .collect();
                        endpoints.sort();
                        MeshEntry {
                            publish: p.clone(),
                            endpoints,
                        }
                    })
                    .collect();
                MeshService {
                    name: name.clone(),
                    entries,
                }
            })
            .collect()
    }
}

impl super::Manager {
    /// `GET /catalog/services`: every known service with its endpoint count, and the index.
    pub fn catalog_services(&self) -> (u64, Vec<CatalogService>) {
        let st = super::lock(&self.inner.state);
        let list = st
            .services
            .keys()
            .map(|name| CatalogService {
                name: name.clone(),
                endpoints: st.catalog.count(name),
            })
            .collect();
        (st.catalog.index(), list)
    }

    /// `GET /catalog/services/{name}`: a service's endpoints and the index; `None` for a service
    /// the manager does not know.
    pub fn catalog_service(&self, name: &str) -> Option<(u64, Vec<CatalogEndpoint>)> {
        let st = super::lock(&self.inner.state);
        st.services.get(name)?;
        Some((st.catalog.index(), st.catalog.endpoints(name).to_vec()))
    }

    /// `GET /catalog/mesh`: every published service's entries with their endpoints, and the
    /// index, for the workers' routing mesh.
    pub fn catalog_mesh(&self) -> (u64, Vec<MeshService>) {
        let st = super::lock(&self.inner.state);
        (st.catalog.index(), st.mesh_services())
    }

    /// Waits until the catalog index passes `after`, at most `wait` (or until the manager shuts
    /// down); returns at once when it already has. A blocking query's whole cost is this wait on
    /// one watch receiver.
    pub async fn wait_catalog(&self, after: u64, wait: Duration) {
        let mut rx = super::lock(&self.inner.state).catalog.subscribe();
        tokio::select! {
            // The sender lives in the state, as long as the manager: an error cannot happen
            // while we hold the manager, and would only end the wait early.
            _ = rx.wait_for(|i| *i > after) => {}
            _ = tokio::time::sleep(wait) => {}
            _ = self.shutdown_signal().wait() => {}
        }
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
