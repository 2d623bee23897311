//! The manager: accepts tasks, places them with the configured scheduler, pushes them to workers at
//! once, tracks node liveness, and reschedules the tasks of nodes that are lost.
//!
//! This file is the facade, [`Manager`]: the user calls (submit, stop, list, logs) and the worker
//! calls (heartbeat, report). The parts:
//! - [`state`]: the index behind one short-held lock ([`State`]): tasks by id and node, counts,
//!   nodes, scheduler snapshots, the queue, and the writes in flight with what to undo.
//! - [`reconcile`]: the pure node reconciler, statuses + index -> [`reconcile::Plan`].
//! - [`dispatch`]: placing queued tasks and sending them, backoff, retrying tasks that did not fit.
//! - [`liveness`]: marking silent nodes down and moving their tasks.
//! - [`eligibility`]: node eligibility and drain, kept in the node record.
//! - [`services`]: the pure service reconciler; [`service_ops`]: the service calls and the step
//!   that applies its plans.
//! - [`api`]: the REST API.
//! - [`interner`]: one copy of each distinct spec body and history string in memory.
//!
//! Every change is applied to memory and queued to the store in one critical section (so writes
//! keep memory's order) and answered, sent or acted on only once its write is synced; a failed
//! write is undone in memory, so what was acknowledged and what memory holds never disagree.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::client::WorkerClient;
use crate::http::{ClientError, HttpClient, Shutdown};
use crate::store::{self, Store, StoreError};
use crate::task::{Desired, State as TaskState, Task, TaskId, TaskSpec};
use crate::wire::{Assignment, Capacity, LogsReply};

pub mod api;
pub mod catalog;
pub mod dispatch;
pub mod eligibility;
pub mod events;
pub mod interner;
pub mod leader;
pub mod liveness;
pub mod protocol;
pub mod reconcile;
pub mod service_ops;
pub mod services;
mod snapshots;
pub mod state;

pub use state::{Node, NodeRecord, NodeState, State};

use poseidon_schedulers::NoFit;
use state::{placement_demand, Batch, Staged};

/// The time allowed, beyond `stop_after_disconnect`, for an at-most-one task's container to be
/// gone before the manager may count its node down and place the task elsewhere.
///
/// The worker finishes its stop within `stop_after_disconnect` (it starts early enough and kills
/// after a short grace), so this margin only covers what follows the worker's decision: the kill
/// reaching the engine and the process (milliseconds on a healthy engine, whose calls are bounded
/// by timeouts), and the gap between the worker's clock and the manager's (the worker counts its
/// silence from the last reply it received, the manager from the last heartbeat it received; they
/// differ by one reply's latency). A quarter of a second is well above both on a LAN, and keeps
/// the common pairing of a one-second TTL with a half-second `stop_after_disconnect` valid.
pub const STOP_KILL_MARGIN: Duration = Duration::from_millis(250);

/// How a manager is set up.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The scheduler's name (see `poseidon_schedulers::NAMES`).
    pub scheduler: String,
    /// A node that has not sent a heartbeat for this long is down (the least TTL; larger clusters
    /// get longer ones, see `liveness::heartbeat_plan`).
    pub heartbeat_ttl: Duration,
    /// At most this many heartbeats a second in all: the manager stretches its workers' intervals.
    pub max_heartbeats_per_second: u32,
    /// The first delay before re-sending a task to a worker that could not be reached.
    pub dispatch_backoff: Duration,
    /// Workers named in the config, known (as waiting) before their first heartbeat.
    pub known_workers: Vec<(String, String)>,
}

/// Manager errors, mapped to HTTP statuses by the API.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No such task.
    #[error("no task with id {0}")]
    NotFound(TaskId),
    /// No such node.
    #[error("no node named {0:?}")]
    UnknownNode(String),
    /// A duplicate id or an illegal transition.
    #[error("{0}")]
    Conflict(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A worker could not be reached or refused.
    #[error("{0}")]
    Worker(String),
    /// No such resource other than a task (a service); the message names it.
    #[error("{0}")]
    Missing(String),
}

/// Counters for `GET /metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Tasks accepted.
    pub submissions: AtomicU64,
    /// Placements made.
    pub placements: AtomicU64,
    /// Placements that found no node.
    pub unplaceable: AtomicU64,
    /// Dispatches a worker did not take.
    pub dispatch_failures: AtomicU64,
    /// Heartbeats received.
    pub heartbeats: AtomicU64,
    /// Reports received.
    pub reports: AtomicU64,
    /// Times a node was marked down.
    pub nodes_lost: AtomicU64,
    /// Tasks moved off a lost node.
    pub rescheduled: AtomicU64,
    /// From a task's submission to its first report as running.
    pub submit_to_running: crate::histogram::Histogram,
    /// The scheduler's pick of a node for one task.
    pub placement: crate::histogram::Histogram,
    /// The round trip of one `POST /assignments` to a worker.
    pub dispatch: crate::histogram::Histogram,
}

struct Inner {
    opts: ManagerOptions,
    store: Arc<dyn Store>,
    state: Mutex<State>,
    wake_dispatch: Notify,
    /// Placements waiting for their worker, one request in flight per node.
    outboxes: dispatch::Outboxes,
    /// Wakes the service loop (a task of a service changed, or a service did).
    wake_services: Notify,
    /// Serialises service writes, so that undoing a failed one restores what the store holds.
    service_writes: tokio::sync::Mutex<()>,
    client: HttpClient,
    metrics: Metrics,
    shutdown: Shutdown,
    started: Instant,
    security: crate::security::ManagerSecurity,
}

/// A handle to a running manager (cheap to clone).
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Sections under this lock are short and leave consistent data; a poisoned lock is reused.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub use crate::wire::NodeView;

/// Checks a spec's `stop_after_disconnect` against the TTL: the old copy must be gone, kill
/// included ([`STOP_KILL_MARGIN`]), before the manager counts its node down.
fn check_at_most_one(spec: &TaskSpec, ttl: Duration) -> Result<(), ManagerError> {
    let Some(ms) = spec.stop_after_disconnect_ms else {
        return Ok(());
    };
    if Duration::from_millis(ms).saturating_add(STOP_KILL_MARGIN) >= ttl {
        return Err(ManagerError::Invalid(format!(
            "stop_after_disconnect ({ms} ms) plus {} ms for the kill to land must be shorter than the \
             manager's heartbeat_ttl ({} ms), or the old copy could still run when the task is placed \
             elsewhere; use at most {} ms",
            STOP_KILL_MARGIN.as_millis(),
            ttl.as_millis(),
            ttl.saturating_sub(STOP_KILL_MARGIN)
                .as_millis()
                .saturating_sub(1)
        )));
    }
    Ok(())
}

impl Manager {
    /// Loads every task and node from `store`, then starts the dispatcher and the liveness monitor.
    ///
    /// After a restart every known node gets a full TTL to heartbeat before it can be marked down,
    /// so a manager restart never moves a task.
    pub async fn start(
        opts: ManagerOptions,
        store: Arc<dyn Store>,
        shutdown: Shutdown,
    ) -> Result<Manager, ManagerError> {
        Self::start_with(
            opts,
            crate::security::ManagerSecurity::default(),
            store,
            shutdown,
        )
        .await
    }

    /// [`Manager::start`] with security: ACL tokens, the secrets presented to workers, TLS towards
    /// them (see [`crate::security`]).
    pub async fn start_with(
        opts: ManagerOptions,
        security: crate::security::ManagerSecurity,
        store: Arc<dyn Store>,
        shutdown: Shutdown,
    ) -> Result<Manager, ManagerError> {
        let manager = Self::load(opts, security, store, shutdown)?;
        tracing::info!(
            tasks = lock(&manager.inner.state).tasks.len(),
            scheduler = %manager.inner.opts.scheduler,
            "manager loaded its state"
        );
        tokio::spawn(manager.clone().dispatch_loop());
        tokio::spawn(manager.clone().monitor_loop());
        tokio::spawn(manager.clone().service_loop());
        manager.inner.wake_dispatch.notify_one();
        Ok(manager)
    }

    /// Loads the state from `store` without starting the loops: a copy that answers reads and
    /// never places, dispatches or counts nodes down (a follower's, see [`leader`]).
    pub fn load(
        opts: ManagerOptions,
        security: crate::security::ManagerSecurity,
        store: Arc<dyn Store>,
        shutdown: Shutdown,
    ) -> Result<Manager, ManagerError> {
        let scheduler = poseidon_schedulers::by_name(&opts.scheduler)
            .map_err(|e| ManagerError::Invalid(e.to_string()))?;
        let tasks = store::load_tasks(store.as_ref())?;
        let records: Vec<NodeRecord> = store::load_nodes(store.as_ref())?;
        let now = Instant::now();
        let mut nodes = BTreeMap::new();
        for r in records {
            // Not schedulable until it heartbeats (it may have died while the manager was down),
            // but with a full TTL from now before it can be counted down.
            nodes.insert(r.name.clone(), Node::waiting(r, true, Some(now.into())));
        }
        for (name, address) in &opts.known_workers {
            nodes.entry(name.clone()).or_insert_with(|| {
                let record = NodeRecord::new(name, address, Capacity::default());
                Node::waiting(record, false, None)
            });
        }
        let (_, ttl) = liveness::heartbeat_plan(
            nodes.len(),
            opts.max_heartbeats_per_second,
            opts.heartbeat_ttl,
        );
        for n in nodes.values_mut() {
            n.ttl = ttl;
        }
        // A follower reloads its copy often (see `leader`): only the leader's load is news.
        tracing::debug!(
            tasks = tasks.len(),
            nodes = nodes.len(),
            scheduler = %opts.scheduler,
            "manager loaded its state"
        );
        let services = service_ops::load_services(store.as_ref())?;
        let mut state = State::new(scheduler, tasks, nodes);
        for svc in services {
            let name = svc.name.clone();
            state.services.insert(name.clone(), svc);
            state.refresh_catalog(&name);
        }
        let manager = Manager {
            inner: Arc::new(Inner {
                opts,
                store,
                state: Mutex::new(state),
                wake_dispatch: Notify::new(),
                outboxes: dispatch::Outboxes::default(),
                wake_services: Notify::new(),
                service_writes: tokio::sync::Mutex::new(()),
                client: match &security.client_tls {
                    Some(tls) => HttpClient::with_tls(Duration::from_secs(5), tls.clone()),
                    None => HttpClient::new(Duration::from_secs(5)),
                },
                metrics: Metrics::default(),
                shutdown,
                started: now,
                security,
            }),
        };
        Ok(manager)
    }

    /// The security this manager runs with.
    pub fn security(&self) -> &crate::security::ManagerSecurity {
        &self.inner.security
    }

    /// The metric counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Store counters.
    pub fn store_stats(&self) -> crate::store::StoreStats {
        self.inner.store.stats()
    }

    /// The scheduler's name.
    pub fn scheduler_name(&self) -> String {
        lock(&self.inner.state).scheduler.name().to_string()
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Waits for a staged write and settles it: kept on success, undone on failure.
    async fn commit(&self, staged: Option<Staged>) -> Result<(), StoreError> {
        let Some(s) = staged else {
            return Ok(());
        };
        let result = s.pending.wait().await;
        lock(&self.inner.state).settle(&s.tasks, result.is_ok());
        if let Err(e) = &result {
            tracing::warn!(error = %e, tasks = s.tasks.len(), "store write failed; its changes were undone in memory");
        }
        result
    }

    /// Seals a spec's secrets with the cluster's key. A secret whose plain value is the one `keep`
    /// (a service's current template) already holds sealed keeps that sealed value, and so does a
    /// sealed value sent back as it was (`poseidon service scale` echoes the template), so that
    /// an update changing only `count` does not look like a new template (sealing is randomised).
    pub(crate) fn seal_secrets(
        &self,
        spec: &mut TaskSpec,
        keep: Option<&TaskSpec>,
    ) -> Result<(), ManagerError> {
        if spec.secrets.is_empty() {
            return Ok(());
        }
        let key = self.inner.security.secrets.as_ref().ok_or_else(|| {
            ManagerError::Invalid(
                "this manager has no secrets key, so it cannot take secrets".into(),
            )
        })?;
        for (name, value) in spec.secrets.iter_mut() {
            let kept = keep.and_then(|k| k.secrets.get(name)).filter(|sealed| {
                *sealed == value || key.open(name, sealed).ok().as_deref() == Some(value.as_str())
            });
            *value = match kept {
                Some(sealed) => sealed.clone(),
                None => key.seal(name, value).map_err(ManagerError::Invalid)?,
            };
        }
        Ok(())
    }

    /// Stores new tasks durably and queues them for placement; answers once they are synced.
    pub async fn submit(
        &self,
        subs: Vec<(Option<TaskId>, TaskSpec)>,
    ) -> Result<Vec<Task>, ManagerError> {
        self.submit_with(subs, |task, _| task.clone()).await
    }

    /// [`Manager::submit`] answering each task's id and JSON, taken from the record written for
    /// it (`POST /tasks` answers with it: the task is not cloned, nor encoded a second time).
    pub async fn submit_json(
        &self,
        subs: Vec<(Option<TaskId>, TaskSpec)>,
    ) -> Result<Vec<(TaskId, Vec<u8>)>, ManagerError> {
        self.submit_with(subs, |task, record| {
            let json = match crate::store::record_data(record) {
                Some(data) => data.to_vec(),
                // Not reached with the store's own encoding (a unit test holds it to that).
                None => serde_json::to_vec(task).unwrap_or_default(),
            };
            (task.id, json)
        })
        .await
    }

    /// Submits, keeping for each task what `keep` makes of it and of its record, as written.
    async fn submit_with<R>(
        &self,
        mut subs: Vec<(Option<TaskId>, TaskSpec)>,
        keep: impl Fn(&Task, &[u8]) -> R,
    ) -> Result<Vec<R>, ManagerError> {
        // Secrets are sealed before anything else sees the spec: the store, the answer, the logs.
        for (_, spec) in &mut subs {
            self.seal_secrets(spec, None)?;
        }
        let ttl = self.inner.opts.heartbeat_ttl;
        for (_, spec) in &subs {
            check_at_most_one(spec, ttl)?;
        }
        let mut created = Vec::with_capacity(subs.len());
        let mut placed: BTreeMap<String, Vec<Assignment>> = BTreeMap::new();
        let mut queued = Vec::new();
        // The no-fit shapes recorded with the tasks that fit nowhere (see below).
        let mut shapes = Vec::new();
        let staged = {
            let mut st = lock(&self.inner.state);
            let mut seen = HashSet::new();
            for (id, _) in &subs {
                if let Some(id) = id {
                    if st.tasks.contains_key(id) || !seen.insert(*id) {
                        return Err(ManagerError::Conflict(format!(
                            "a task with id {id} already exists"
                        )));
                    }
                }
            }
            let mut batch = Batch::default();
            let mut tried = 0;
            for (id, spec) in subs {
                let mut task = Task::new(id.unwrap_or_default(), spec, TaskState::Pending);
                let now = task.created_ms;
                // Placed at once when nothing waits ahead of it and a node fits: one synced write
                // instead of two (accepted, then placed), and no trip through the dispatcher. A
                // task that fits nowhere is written with why in that same write, and its no-fit
                // shape is noted once the write is synced, so that the dispatcher, which retries
                // it, writes nothing more unless the reason changes (one write instead of two).
                // A task with others waiting ahead of it (in the dispatch queue, or earlier in
                // this request) is not placed here (first come, first placed), but it is tried:
                // when no node fits, it too is written with why, once; when one fits, it queues
                // untried and the dispatcher places it in its turn. (Under load the queue is
                // seldom empty, and a manager with no room wrote most tasks twice; issue 17.)
                // A large request tries at most a dispatch pass's worth under this lock; the
                // dispatcher takes the rest.
                let placement = if tried < dispatch::DISPATCH_PASS {
                    tried += 1;
                    if st.queue.is_empty() && queued.is_empty() {
                        Some(self.place_new(&mut st, &task, now))
                    } else {
                        Some(Err(st.why_nothing_fits(&placement_demand(&st, &task))))
                    }
                } else {
                    None
                };
                let id = task.id;
                let written = match placement {
                    Some(Ok((node, t, mut assignment))) => {
                        st.put_new_changed(&mut batch, &task, t).map(|()| {
                            // The stored task holds the shared body, whose JSON is kept.
                            if let Some(stored) = st.tasks.get(&id) {
                                assignment.spec = stored.spec.clone();
                            }
                            placed.entry(node).or_default().push(assignment);
                        })
                    }
                    Some(Err(Some(nofit))) => {
                        task.record_at(task.state, &nofit.to_string(), now);
                        st.put(&mut batch, task).map(|()| {
                            queued.push(id);
                            shapes.push((id, dispatch::shape_of(&nofit)));
                        })
                    }
                    Some(Err(None)) | None => st.put(&mut batch, task).map(|()| {
                        queued.push(id);
                    }),
                };
                if let Err(e) = written {
                    st.abort(batch);
                    return Err(e.into());
                }
                // The task as stored and the record just written for it.
                match (st.tasks.get(&id), batch.last_record()) {
                    (Some(task), Some(record)) => created.push(keep(task, record)),
                    _ => {
                        st.abort(batch);
                        return Err(ManagerError::Store(StoreError::Record(format!(
                            "task {id} vanished while it was being submitted"
                        ))));
                    }
                }
            }
            st.stage(batch, self.inner.store.as_ref())
        };
        // On failure the tasks were forgotten again (placements released): nothing was
        // acknowledged or sent.
        self.commit(staged).await?;
        let n_placed: usize = placed.values().map(Vec::len).sum();
        for (node, assignments) in placed {
            self.post(node, assignments);
        }
        self.inner
            .metrics
            .placements
            .fetch_add(n_placed as u64, Ordering::Relaxed);
        self.inner
            .metrics
            .submissions
            .fetch_add(created.len() as u64, Ordering::Relaxed);
        if !queued.is_empty() {
            let mut st = lock(&self.inner.state);
            st.queue.extend(queued);
            st.blocked_shape.extend(shapes);
            drop(st);
            self.inner.wake_dispatch.notify_one();
        }
        Ok(created)
    }

    /// Places a task being submitted, if a node fits it: the node, the task as placed, and its
    /// assignment; else why no node fits (`None` after an illegal transition, logged).
    fn place_new(
        &self,
        st: &mut State,
        task: &Task,
        now: u64,
    ) -> Result<(String, Task, Assignment), Option<NoFit>> {
        let demand = placement_demand(st, task);
        let picking = std::time::Instant::now();
        let picked = st.pick(&demand);
        self.inner.metrics.placement.observe(picking.elapsed());
        let node = picked.map_err(Some)?;
        let mut t = task.clone();
        match dispatch::place_on(&mut t, &node, now) {
            Ok(assignment) => Ok((node, t, assignment)),
            Err(e) => {
                tracing::error!(task = %t.id, node = %node, error = %e, "illegal transition while placing");
                Err(None)
            }
        }
    }

    /// Tasks, optionally filtered by state and node, oldest first.
    pub fn tasks(&self, state: Option<TaskState>, node: Option<&str>) -> Vec<Task> {
        let st = lock(&self.inner.state);
        let mut v: Vec<Task> = match node {
            Some(n) => st
                .by_node
                .get(n)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|id| st.tasks.get(id))
                        .map(|t| Task::clone(t))
                        .collect()
                })
                .unwrap_or_default(),
            None => st.tasks.values().map(|t| Task::clone(t)).collect(),
        };
        if let Some(s) = state {
            v.retain(|t| t.state == s);
        }
        v.sort_by_key(|t| (t.created_ms, t.id));
        v
    }

    /// One task.
    pub fn task(&self, id: TaskId) -> Option<Task> {
        lock(&self.inner.state)
            .tasks
            .get(&id)
            .map(|t| Task::clone(t))
    }

    /// Counts of tasks by state.
    pub fn task_counts(&self) -> BTreeMap<&'static str, usize> {
        let st = lock(&self.inner.state);
        TaskState::ALL
            .iter()
            .zip(st.counts)
            .map(|(s, n)| (s.as_str(), n))
            .collect()
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Vec<NodeView> {
        let st = lock(&self.inner.state);
        st.nodes
            .values()
            .map(|n| {
                let snap = st.order.get(&n.record.name).map(|&i| &st.snapshots[i]);
                NodeView {
                    name: n.record.name.clone(),
                    address: n.record.address.clone(),
                    state: n.state,
                    problem: n.problem.clone(),
                    capacity: n.record.capacity,
                    reserved_cpus: snap.map(|s| s.reserved_cpus).unwrap_or(0.0),
                    reserved_memory: snap.map(|s| s.reserved_memory).unwrap_or(0),
                    tasks: snap.map(|s| s.tasks).unwrap_or(0),
                    stats: n.stats.clone(),
                    last_heartbeat_ms: n.last_heartbeat_ms,
                    seconds_since_heartbeat: n.last_heartbeat.map(|t| t.elapsed().as_secs_f64()),
                    labels: n.record.labels.clone(),
                    eligible: n.record.eligible,
                    draining: n.record.draining,
                    endpoint_address: n.record.endpoint_address.clone(),
                }
            })
            .collect()
    }

    /// Stops a task: it ends Completed with reason `stopped` and is never restarted. With `purge`,
    /// a finished task is forgotten instead.
    ///
    /// A stop whose write fails leaves the task as it was, so a retried stop writes again.
    pub async fn stop(&self, id: TaskId, purge: bool) -> Result<Option<Task>, ManagerError> {
        if purge {
            let (node, staged) = {
                let mut st = lock(&self.inner.state);
                let task = st.tasks.get(&id).ok_or(ManagerError::NotFound(id))?;
                if !task.is_finished() {
                    return Err(ManagerError::Conflict(format!(
                        "task {id} is {} and must be stopped before it is purged",
                        task.state
                    )));
                }
                let node = task.node.clone();
                let mut batch = Batch::default();
                st.remove(&mut batch, id);
                (node, st.stage(batch, self.inner.store.as_ref()))
            };
            self.commit(staged).await?;
            tracing::info!(task = %id, "task purged");
            if let Some(node) = node {
                self.send_stop(&node, id, true);
            }
            return Ok(None);
        }
        let (task, staged) = {
            let mut st = lock(&self.inner.state);
            let mut t = st
                .tasks
                .get(&id)
                .map(|t| Task::clone(t))
                .ok_or(ManagerError::NotFound(id))?;
            if t.is_finished() {
                return Err(ManagerError::Conflict(format!(
                    "task {id} is already {} and cannot be stopped",
                    t.state
                )));
            }
            if t.desired == Desired::Stop {
                // Already stopped, and durably so: a stop whose write failed was undone.
                (t, None)
            } else {
                let node_up = t
                    .node
                    .as_ref()
                    .and_then(|n| st.nodes.get(n))
                    .is_some_and(|n| n.state != NodeState::Down);
                t.desired = Desired::Stop;
                if t.state == TaskState::Pending || (!node_up && !t.state.is_terminal()) {
                    // Nothing runs it (or its node is gone): it ends here.
                    t.set_state(TaskState::Completed, "stopped")
                        .map_err(|e| ManagerError::Conflict(e.to_string()))?;
                } else {
                    t.record(t.state, "stop requested");
                }
                let mut batch = Batch::default();
                st.put(&mut batch, t.clone())?;
                // Never placed again: its no-fit reason need not be remembered.
                st.blocked_shape.remove(&id);
                (t, st.stage(batch, self.inner.store.as_ref()))
            }
        };
        self.commit(staged).await?;
        tracing::info!(task = %id, generation = task.generation, state = %task.state, "stop requested");
        if let Some(node) = &task.node {
            if task.state != TaskState::Completed || task.desired == Desired::Stop {
                self.send_stop(node, id, false);
            }
        }
        self.inner.wake_dispatch.notify_one();
        Ok(Some(task))
    }

    /// A client of a node's worker API, sharing the manager's connection pool.
    fn worker(&self, node: &str) -> Option<WorkerClient> {
        lock(&self.inner.state).nodes.get(node).map(|n| {
            WorkerClient::with_http(self.inner.client.clone(), &n.record.address)
                .with_token(self.inner.security.worker_secret(node))
        })
    }

    /// Tells a worker to stop (or forget) a task, in the background; the heartbeat repairs a loss.
    fn send_stop(&self, node: &str, id: TaskId, purge: bool) {
        let Some(worker) = self.worker(node) else {
            tracing::warn!(task = %id, node = %node, "cannot send a stop: the node is unknown");
            return;
        };
        let worker = worker.with_timeout(Duration::from_secs(30));
        let node = node.to_string();
        tokio::spawn(async move {
            let sent = if purge {
                worker.purge(id).await.map(|_| ())
            } else {
                worker.stop(id).await.map(|_| ())
            };
            match sent {
                // 404: the worker does not hold it (any more); 409: it has already finished.
                Ok(())
                | Err(ClientError::Status {
                    status: 404 | 409, ..
                }) => {}
                Err(e @ ClientError::Status { .. }) => {
                    tracing::warn!(task = %id, node = %node, error = %e, "worker refused a stop; its next heartbeat repairs it")
                }
                Err(e) => {
                    tracing::warn!(task = %id, node = %node, error = %e, "cannot send a stop; the node's next heartbeat repairs it")
                }
            }
        });
    }

    /// Relays a task's logs from its worker.
    pub async fn logs(&self, id: TaskId, tail: Option<usize>) -> Result<LogsReply, ManagerError> {
        let (worker, node) = self.worker_of(id)?;
        worker
            .logs(id, tail)
            .await
            .map_err(|e| relay_error(&node, e))
    }

    /// The worker holding a task, and its node's name.
    pub(crate) fn worker_of(&self, id: TaskId) -> Result<(WorkerClient, String), ManagerError> {
        let task = self.task(id).ok_or(ManagerError::NotFound(id))?;
        let node = task.node.ok_or_else(|| {
            ManagerError::Conflict(format!("task {id} has not been placed on a node yet"))
        })?;
        let worker = self
            .worker(&node)
            .ok_or_else(|| ManagerError::Worker(format!("node {node} is unknown")))?;
        Ok((worker, node))
    }

    /// Subscribes to the event stream (see [`events`]): replaying the events after `after` when
    /// given, then the live ones.
    pub fn subscribe(&self, after: Option<u64>) -> Result<events::Subscription, events::Gone> {
        lock(&self.inner.state).events.subscribe(after)
    }

    /// How many `/events` subscriptions are open.
    pub fn event_subscribers(&self) -> usize {
        lock(&self.inner.state).events.subscribers()
    }

    /// The process's shutdown signal (streams end on it).
    pub fn shutdown_signal(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    /// Waits for queued writes to finish (called on shutdown).
    pub async fn close(&self) {
        if let Err(e) = self.inner.store.write(Vec::new()).await {
            tracing::warn!(error = %e, "store did not flush on shutdown");
        }
    }
}

/// A worker's answer to a relayed call as the manager's error: its refusals (404, 409) are the
/// user's conflict, a 400 is bad input, anything else is the worker's failure (502).
pub(crate) fn relay_error(node: &str, e: ClientError) -> ManagerError {
    match e {
        ClientError::Status {
            status: 404 | 409, ..
        } => ManagerError::Conflict(e.to_string()),
        ClientError::Status {
            status: 400,
            message,
        } => ManagerError::Invalid(message),
        other => ManagerError::Worker(format!("node {node}: {other}")),
    }
}

#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod tests;
