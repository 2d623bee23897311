//! The shell around the service reconciler: the user's service calls (create, update, rollback,
//! delete, list) and [`Manager::services_step`], which runs the pure reconciler
//! ([`super::services::plan`]) over every service and applies the plans.
//!
//! Services are stored whole, one record each, in the store's `meta` space under `service/NAME`.
//! Every write follows the manager's rule: memory and the store change in one critical section,
//! the answer (or the dispatch of a created task, or a stop order) waits for the synced write, and
//! a failed write is undone in memory (tasks by [`State::settle`], services here). Service writes
//! are serialised by one async lock, so at most one service write is in flight and undoing one
//! puts back exactly what the store holds. A step is level-triggered: after a manager restart in
//! the middle of a rolling update the first step sees the tasks where they are and goes on.

use std::collections::HashSet;
use std::time::Duration;

use super::services::{self, ServicePlan};
use super::state::{Batch, Staged, State};
use super::{check_at_most_one, lock, Manager, ManagerError, NodeState};
use crate::service::{Service, ServiceSpec, ServiceState};
use crate::store::{decode, encode, Op, Space, Store, StoreError};
use crate::task::{Desired, State as TaskState, Task, TaskId};
use crate::util::now_ms;
use crate::wire::ServiceView;

/// How often every service is reconciled even when no task of it changed (health that comes
/// with time, deadlines, replacement delays).
pub const SERVICE_TICK: Duration = Duration::from_millis(250);

/// The key prefix of service records in the `meta` space.
const KEY_PREFIX: &str = "service/";

fn put_op(svc: &Service) -> Result<Op, StoreError> {
    Ok(Op::Put(
        Space::Meta,
        format!("{KEY_PREFIX}{}", svc.name).into_bytes(),
        encode(svc)?,
    ))
}

fn delete_op(name: &str) -> Op {
    Op::Delete(Space::Meta, format!("{KEY_PREFIX}{name}").into_bytes())
}

/// Loads every service record. A record whose current version is missing is refused: it cannot
/// have been written by this code.
pub fn load_services(store: &dyn Store) -> Result<Vec<Service>, StoreError> {
    let mut out = Vec::new();
    for (k, v) in store.scan(Space::Meta)? {
        if !k.starts_with(KEY_PREFIX.as_bytes()) {
            continue;
        }
        let svc: Service = decode(&v)?;
        if svc.get(svc.version).is_none() {
            return Err(StoreError::Record(format!(
                "service {} has no record of its current version {}",
                svc.name, svc.version
            )));
        }
        out.push(svc);
    }
    Ok(out)
}

/// The names of draining nodes (`POST /nodes/{name}/drain`), whose service tasks the reconciler
/// moves off, `max_parallel` at a time.
fn draining_nodes(st: &State) -> HashSet<String> {
    st.nodes
        .values()
        .filter(|n| n.record.draining)
        .map(|n| n.record.name.clone())
        .collect()
}

/// A copy of every task of `name`, oldest first.
fn tasks_of(st: &State, name: &str) -> Vec<Task> {
    let mut v: Vec<Task> = st
        .by_service
        .get(name)
        .map(|ids| {
            ids.iter()
                .filter_map(|id| st.tasks.get(id))
                .map(|t| Task::clone(t))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|t| (t.created_ms, t.id));
    v
}

fn view(st: &State, svc: &Service, with_tasks: bool, now: u64) -> ServiceView {
    let tasks = tasks_of(st, &svc.name);
    let refs: Vec<&Task> = tasks.iter().collect();
    ServiceView {
        name: svc.name.clone(),
        version: svc.version,
        state: svc.state,
        count: svc.spec().count,
        healthy: services::healthy_count(svc, &refs, now),
        since_ms: svc.since_ms,
        created_ms: svc.created_ms,
        updated_ms: svc.updated_ms,
        spec: svc.spec().clone(),
        versions: svc.versions.clone(),
        tasks: if with_tasks { tasks } else { Vec::new() },
    }
}

fn missing(name: &str) -> ManagerError {
    ManagerError::Missing(format!("no service named {name:?}"))
}

/// Marks `t` stopped for `reason`, as `Manager::stop` does: ended at once when nothing runs it,
/// else asked of its worker. Returns the node to send the stop to.
fn stop_task(t: &mut Task, node_up: bool, reason: &str, now: u64) -> Option<String> {
    t.desired = Desired::Stop;
    if t.state == TaskState::Pending || (!node_up && !t.state.is_terminal()) {
        if t.set_state_at(TaskState::Completed, &format!("stopped: {reason}"), now)
            .is_err()
        {
            t.record_at(t.state, &format!("stopped: {reason}"), now);
        }
        return None;
    }
    t.record_at(t.state, &format!("stop requested: {reason}"), now);
    t.node.clone()
}

/// What a step did, to act on once its write is synced.
#[derive(Default)]
struct Applied {
    created: Vec<TaskId>,
    stops: Vec<(String, TaskId)>,
    /// The services changed, with their earlier values (for undo).
    before: Vec<(String, Service)>,
    changes: usize,
}

impl Manager {
    /// Waits for a write that may carry a service change; on failure puts `before` back (or
    /// forgets the service when it is `None`) for each service named.
    async fn settle_services(
        &self,
        staged: Option<Staged>,
        before: Vec<(String, Option<Service>)>,
    ) -> Result<(), ManagerError> {
        if let Err(e) = self.commit(staged).await {
            let mut st = lock(&self.inner.state);
            for (name, old) in before {
                match old {
                    Some(svc) => st.services.insert(name.clone(), svc),
                    None => st.services.remove(&name),
                };
                st.refresh_catalog(&name);
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Writes one service (a user's change), answering once it is synced.
    async fn write_service(
        &self,
        name: &str,
        change: impl FnOnce(&mut State) -> Result<Option<Service>, ManagerError>,
    ) -> Result<ServiceView, ManagerError> {
        let _one_writer = self.inner.service_writes.lock().await;
        let (before, staged) = {
            let mut st = lock(&self.inner.state);
            let before = st.services.get(name).cloned();
            let Some(svc) = change(&mut st)? else {
                return Err(missing(name));
            };
            let mut batch = Batch::default();
            batch.push(put_op(&svc)?);
            st.services.insert(name.to_string(), svc);
            st.refresh_catalog(name);
            (before, st.stage(batch, self.inner.store.as_ref()))
        };
        self.settle_services(staged, vec![(name.to_string(), before)])
            .await?;
        self.inner.wake_services.notify_one();
        let st = lock(&self.inner.state);
        let svc = st.services.get(name).ok_or_else(|| missing(name))?;
        Ok(view(&st, svc, true, now_ms()))
    }

    /// `POST /services`: stores a new service (409 if the name is taken); its tasks follow.
    pub async fn create_service(&self, mut spec: ServiceSpec) -> Result<ServiceView, ManagerError> {
        check_at_most_one(&spec.task, self.inner.opts.heartbeat_ttl)?;
        self.seal_secrets(&mut spec.task, None)?;
        let name = spec.name.clone();
        let view = self
            .write_service(&name, |st| {
                if st.services.contains_key(&spec.name) {
                    return Err(ManagerError::Conflict(format!(
                        "a service named {:?} already exists (PUT /services/{} updates it)",
                        spec.name, spec.name
                    )));
                }
                check_ports(st, &spec)?;
                Ok(Some(Service::new(spec, now_ms())))
            })
            .await?;
        tracing::info!(service = %name, count = view.count, "service created");
        Ok(view)
    }

    /// `PUT /services/{name}`: a new version. A change of `count` (or `update`, `publish`) alone
    /// keeps every task; a changed template rolls.
    pub async fn update_service(
        &self,
        name: &str,
        mut spec: ServiceSpec,
    ) -> Result<ServiceView, ManagerError> {
        check_at_most_one(&spec.task, self.inner.opts.heartbeat_ttl)?;
        let current = lock(&self.inner.state)
            .services
            .get(name)
            .map(|s| s.spec().task.clone());
        self.seal_secrets(&mut spec.task, current.as_ref())?;
        let view = self
            .write_service(name, |st| {
                let Some(mut svc) = st.services.get(name).cloned() else {
                    return Ok(None);
                };
                check_ports(st, &spec)?;
                let cause = if svc.spec().same_template(&spec) {
                    "scaled"
                } else {
                    "updated"
                };
                svc.push(spec, cause, now_ms());
                Ok(Some(svc))
            })
            .await?;
        tracing::info!(service = %name, version = view.version, state = %view.state, "service updated");
        Ok(view)
    }

    /// `POST /services/{name}/rollback`: a new version with the template of the latest earlier
    /// one that was healthy (else the latest earlier one), keeping the current `count`.
    pub async fn rollback_service(&self, name: &str) -> Result<ServiceView, ManagerError> {
        let view = self
            .write_service(name, |st| {
                let Some(mut svc) = st.services.get(name).cloned() else {
                    return Ok(None);
                };
                let Some(target) = svc.rollback_target(true) else {
                    return Err(ManagerError::Conflict(format!(
                        "service {name:?} has no earlier version with another template to roll back to"
                    )));
                };
                let to = target.version;
                let mut spec = target.spec.clone();
                spec.count = svc.spec().count;
                svc.push(spec, &format!("rollback to {to}"), now_ms());
                Ok(Some(svc))
            })
            .await?;
        tracing::info!(service = %name, version = view.version, "service rolled back");
        Ok(view)
    }

    /// `DELETE /services/{name}`: stops its tasks (state `stopped`); with `purge`, forgets a
    /// stopped service whose tasks have all ended, and their records.
    pub async fn delete_service(
        &self,
        name: &str,
        purge: bool,
    ) -> Result<Option<ServiceView>, ManagerError> {
        if !purge {
            let view = self
                .write_service(name, |st| {
                    let Some(mut svc) = st.services.get(name).cloned() else {
                        return Ok(None);
                    };
                    svc.state = ServiceState::Stopped;
                    svc.updated_ms = now_ms();
                    Ok(Some(svc))
                })
                .await?;
            tracing::info!(service = %name, "service stopped");
            return Ok(Some(view));
        }
        let _one_writer = self.inner.service_writes.lock().await;
        let (before, staged) = {
            let mut st = lock(&self.inner.state);
            let svc = st
                .services
                .get(name)
                .cloned()
                .ok_or_else(|| missing(name))?;
            let tasks = tasks_of(&st, name);
            let running = tasks.iter().filter(|t| !t.is_finished()).count();
            if svc.state != ServiceState::Stopped || running > 0 {
                return Err(ManagerError::Conflict(format!(
                    "service {name:?} must be stopped (DELETE without purge) and its tasks ended \
                     before it is purged; {running} have not ended"
                )));
            }
            let mut batch = Batch::default();
            for t in &tasks {
                st.remove(&mut batch, t.id);
            }
            batch.push(delete_op(name));
            st.services.remove(name);
            (svc, st.stage(batch, self.inner.store.as_ref()))
        };
        self.settle_services(staged, vec![(name.to_string(), Some(before))])
            .await?;
        tracing::info!(service = %name, "service purged");
        Ok(None)
    }

    /// Every service, by name (without their tasks).
    pub fn services(&self) -> Vec<ServiceView> {
        let st = lock(&self.inner.state);
        let now = now_ms();
        st.services
            .values()
            .map(|s| view(&st, s, false, now))
            .collect()
    }

    /// One service, with its tasks.
    pub fn service(&self, name: &str) -> Option<ServiceView> {
        let st = lock(&self.inner.state);
        st.services.get(name).map(|s| view(&st, s, true, now_ms()))
    }

    /// Reconciles every service once: plans, applies the plans with one synced write, then
    /// queues the created tasks and sends the stops. Returns how many tasks and services changed.
    pub async fn services_step(&self) -> Result<usize, ManagerError> {
        let _one_writer = self.inner.service_writes.lock().await;
        let now = now_ms();
        let (applied, staged) = {
            let mut st = lock(&self.inner.state);
            let draining = draining_nodes(&st);
            let names: Vec<String> = st.services.keys().cloned().collect();
            let mut batch = Batch::default();
            let mut applied = Applied::default();
            for name in names {
                let Some(svc) = st.services.get(&name).cloned() else {
                    continue;
                };
                let tasks = tasks_of(&st, &name);
                let refs: Vec<&Task> = tasks.iter().collect();
                let plan = services::plan(&svc, &refs, &draining, now);
                if plan.is_empty() {
                    continue;
                }
                if let Err(e) = apply(&mut st, &mut batch, &mut applied, svc, &plan, now) {
                    tracing::error!(service = %name, error = %e, "cannot encode a service change; nothing of this step is written");
                    st.abort(batch);
                    for (name, old) in applied.before {
                        st.services.insert(name.clone(), old);
                        st.refresh_catalog(&name);
                    }
                    return Err(e.into());
                }
            }
            let staged = st.stage(batch, self.inner.store.as_ref());
            (applied, staged)
        };
        let before = applied
            .before
            .iter()
            .map(|(n, s)| (n.clone(), Some(s.clone())))
            .collect();
        if let Err(e) = self.settle_services(staged, before).await {
            tracing::warn!(error = %e, "a service step's write failed; it was undone and the next step tries again");
            return Err(e);
        }
        if !applied.created.is_empty() {
            lock(&self.inner.state).queue.extend(applied.created.iter());
            self.inner.wake_dispatch.notify_one();
        }
        for (node, id) in &applied.stops {
            self.send_stop(node, *id, false);
        }
        Ok(applied.changes)
    }

    /// Runs [`Manager::services_step`] on every task change of a service and every
    /// [`SERVICE_TICK`].
    pub(super) async fn service_loop(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SERVICE_TICK) => {}
                _ = self.inner.wake_services.notified() => {}
                _ = self.inner.shutdown.wait() => return,
            }
            // Failures are logged by the step and retried by the next one.
            if let Err(e) = self.services_step().await {
                tracing::debug!(error = %e, "service step failed");
            }
        }
    }
}

/// Applies one service's plan to memory and `batch`.
fn apply(
    st: &mut State,
    batch: &mut Batch,
    applied: &mut Applied,
    svc: Service,
    plan: &ServicePlan,
    now: u64,
) -> Result<(), StoreError> {
    let name = svc.name.clone();
    for id in &plan.forget {
        if st.remove(batch, *id) {
            applied.changes += 1;
        }
    }
    for id in &plan.adopt {
        let Some(mut t) = st.tasks.get(id).map(|t| Task::clone(t)) else {
            continue;
        };
        t.version = Some(svc.version);
        t.record_at(
            t.state,
            &format!("now version {} (same template, kept running)", svc.version),
            now,
        );
        st.put(batch, t)?;
        applied.changes += 1;
    }
    for s in &plan.stop {
        let Some(mut t) = st.tasks.get(&s.id).map(|t| Task::clone(t)) else {
            continue;
        };
        let node_up = t
            .node
            .as_ref()
            .and_then(|n| st.nodes.get(n))
            .is_some_and(|n| n.state != NodeState::Down);
        let send = stop_task(&mut t, node_up, &s.reason, now);
        tracing::info!(service = %name, task = %s.id, reason = %s.reason, "service task stopped");
        st.put(batch, t)?;
        if let Some(node) = send {
            applied.stops.push((node, s.id));
        }
        applied.changes += 1;
    }
    let mut next = svc.clone();
    if plan.stable {
        let v = next.version;
        if let Some(cur) = next.versions.iter_mut().find(|x| x.version == v) {
            cur.stable = true;
        }
        tracing::info!(service = %name, version = v, "every copy of the version is healthy");
    }
    if let Some(state) = plan.state {
        if state == ServiceState::Failed {
            tracing::warn!(service = %name, version = next.version, "the version did not become healthy within its deadline: failed");
        }
        next.state = state;
    }
    let mut create = plan.create;
    if let Some(to) = plan.revert_to {
        if let Some(target) = next.get(to) {
            let mut spec = target.spec.clone();
            spec.count = next.spec().count;
            let failed = next.version;
            next.push(
                spec,
                &format!("reverted to {to}: version {failed} was not healthy in time"),
                now,
            );
            next.state = ServiceState::Reverted;
            tracing::warn!(service = %name, failed, to, version = next.version, "version failed; rolling back");
            // The plan's creations were for the failed version; the next step plans anew.
            create = 0;
        }
    }
    for _ in 0..create {
        // The service's constraints join the template's own; distinct_hosts then groups the
        // copies by service (`placement::group_key`).
        let mut spec = next.spec().task.clone();
        for c in &next.spec().constraints {
            if !spec.constraints.contains(c) {
                spec.constraints.push(c.clone());
            }
        }
        let mut t = Task::new(TaskId::new(), spec, TaskState::Pending);
        t.service = Some(name.clone());
        t.version = Some(next.version);
        t.record_at(
            TaskState::Pending,
            &format!("created for service {name} version {}", next.version),
            now,
        );
        applied.created.push(t.id);
        st.put(batch, t)?;
        applied.changes += 1;
    }
    if next != svc {
        next.updated_ms = now;
        batch.push(put_op(&next)?);
        st.services.insert(name.clone(), next);
        st.refresh_catalog(&name);
        applied.before.push((name, svc));
        applied.changes += 1;
    }
    Ok(())
}

/// Refuses a `publish` port that another service (not stopped) already publishes, unless both
/// entries route by distinct `hosts` in `http` mode; the 409 names the field.
fn check_ports(st: &State, spec: &ServiceSpec) -> Result<(), ManagerError> {
    for (i, p) in spec.publish.iter().enumerate() {
        for (name, svc) in &st.services {
            if *name == spec.name || svc.state == ServiceState::Stopped {
                continue;
            }
            if let Some(q) = svc
                .spec()
                .publish
                .iter()
                .find(|q| q.port == p.port && !p.can_share_port_with(q))
            {
                return Err(ManagerError::Conflict(format!(
                    "publish[{i}].port: port {} is already published by service {name:?} (mode {}); \
                     two services share a port only in http mode with distinct hosts",
                    p.port, q.mode
                )));
            }
        }
    }
    Ok(())
}
