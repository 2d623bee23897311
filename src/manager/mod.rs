//! The manager: accepts tasks, places them with the configured scheduler, pushes them to workers at
//! once, tracks node liveness, and reschedules the tasks of nodes that are lost.
//!
//! All working state lives in memory behind one short-held lock ([`State`]): tasks by id, tasks by
//! node, node records and the scheduler's node snapshots, which are updated incrementally on every
//! change of a task ([`State::apply`]), so placement never scans anything. Every change is written
//! through to the store; a request is answered only once its write is synced. The only periodic loop
//! is the liveness monitor, which repairs; submissions are placed and dispatched the moment they are
//! stored.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use poseidon_schedulers::{Demand, NodeSnapshot, Scheduler};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::http::{ClientError, HttpClient, Shutdown};
use crate::protocol::{
    Assignment, AssignmentBatch, Capacity, Heartbeat, HeartbeatReply, NodeStats, StopOrder,
    TaskStatus,
};
use crate::store::{self, Op, Pending, Store, StoreError};
use crate::task::{path, Desired, State as TaskState, Task, TaskId, TaskSpec};
use crate::util::now_ms;

pub mod api;

/// The fewest queued tasks one dispatch pass takes; a pass takes [`DISPATCH_PER_NODE`] per node
/// when that is more. A pass holds the state lock while it places and its placements wait for one
/// synced write before they are sent, so bounding it keeps heartbeats and reports from waiting
/// behind a large submission and keeps the records and assignments a pass encodes to tens of
/// megabytes (a queue of 1,000,000 tasks drained in one pass peaked well over that).
const DISPATCH_PASS: usize = 4096;

/// Tasks per node in a dispatch pass: enough that each worker gets its assignments a few at a time
/// in one request (with 2,048 a pass on 5,000 nodes, most requests carried one task, and the
/// reports that answer them came one per task as well).
const DISPATCH_PER_NODE: usize = 8;

/// How a manager is set up.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The scheduler's name (see `poseidon_schedulers::NAMES`).
    pub scheduler: String,
    /// A node that has not sent a heartbeat for this long is down.
    pub heartbeat_ttl: Duration,
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
}

/// Whether a node can take work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Known from the config, never heard from.
    Waiting,
    /// Heartbeating and healthy.
    Up,
    /// Heartbeating, but its container engine is not answering: nothing is placed on it.
    Unhealthy,
    /// Missed its heartbeats past the TTL: its tasks are placed elsewhere.
    Down,
}

/// What the manager stores about a node (the rest is live and comes with each heartbeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The worker's name.
    pub name: String,
    /// How to reach it.
    pub address: String,
    /// What it offers.
    pub capacity: Capacity,
}

/// A node as the manager sees it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The durable part.
    pub record: NodeRecord,
    /// Up, unhealthy, down or waiting.
    pub state: NodeState,
    /// Why it is unhealthy, if it is.
    pub problem: Option<String>,
    /// Its last reported figures.
    pub stats: NodeStats,
    /// When its last heartbeat arrived (monotonic), if ever.
    pub last_heartbeat: Option<Instant>,
    /// When its last heartbeat arrived (wall clock, ms), if ever.
    pub last_heartbeat_ms: Option<u64>,
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
}

/// The manager's working state.
pub struct State {
    /// Tasks by id. Boxed: a `Task` is over 500 bytes, and a hash table keeps up to half of its
    /// slots empty (and two tables alive while it grows), so at a million tasks inline values cost
    /// about a gigabyte more than the tasks themselves; a box costs 8 bytes a slot.
    tasks: HashMap<TaskId, Box<Task>>,
    /// How many tasks are in each state (indexed like `TaskState::ALL`), kept in step by
    /// [`State::apply`] so that `GET /metrics` does not walk every task under the lock.
    counts: [usize; TaskState::ALL.len()],
    by_node: HashMap<String, HashSet<TaskId>>,
    nodes: BTreeMap<String, Node>,
    /// Scheduler snapshots, in node-name order, aligned with `order`.
    snapshots: Vec<NodeSnapshot>,
    order: HashMap<String, usize>,
    scheduler: Box<dyn Scheduler>,
    /// Pending tasks waiting to be placed, in arrival order.
    queue: VecDeque<TaskId>,
    /// Pending tasks that fit nowhere; retried when capacity appears.
    blocked: Vec<TaskId>,
    /// Dispatch attempts per task, for backoff.
    attempts: HashMap<TaskId, u32>,
}

/// True when applying status `s` to task `t` would change nothing: the fast path of
/// `Manager::apply_status`, which must agree with its slow path finding the task unchanged.
fn status_matches(t: &Task, s: &TaskStatus) -> bool {
    t.state == s.state
        && t.container_id == s.container_id
        && t.host_ports == s.host_ports
        && t.exit_code == s.exit_code
        && t.restart_count == s.restart_count
        && t.health == s.health
        && s.started_ms.is_none_or(|v| t.started_ms == Some(v))
        && s.finished_ms.is_none_or(|v| t.finished_ms == Some(v))
        && s.reason
            .as_deref()
            .is_none_or(|r| r.is_empty() || t.reason.as_deref() == Some(r))
}

/// True when the user stopped a task that the worker still means to run.
fn stop_wanted(t: &Task, s: &TaskStatus) -> bool {
    t.desired == Desired::Stop && s.desired == Desired::Run && !s.state.is_terminal()
}

/// The position of a state in `TaskState::ALL` (and in `State::counts`).
fn state_index(s: TaskState) -> usize {
    TaskState::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

fn demand_of(spec: &TaskSpec) -> Demand {
    Demand {
        cpus: spec.cpus,
        memory: spec.memory,
        host_ports: spec.ports.iter().filter_map(|p| p.host_port).collect(),
    }
}

/// The node a task holds resources on: placed there and not finished.
fn holding(task: &Task) -> Option<&str> {
    match task.state {
        TaskState::Pending => None,
        _ if task.is_finished() => None,
        _ => task.node.as_deref(),
    }
}

impl State {
    /// Applies the resource and index consequences of a task changing from `old` to `new`.
    fn apply(&mut self, old: Option<&Task>, new: Option<&Task>) {
        if let Some(o) = old {
            let c = &mut self.counts[state_index(o.state)];
            *c = c.saturating_sub(1);
            if let Some(n) = holding(o) {
                if let Some(&i) = self.order.get(n) {
                    self.snapshots[i].release(&demand_of(&o.spec));
                }
            }
            if let Some(n) = &o.node {
                if new.is_none_or(|t| t.node.as_ref() != Some(n)) {
                    if let Some(set) = self.by_node.get_mut(n) {
                        set.remove(&o.id);
                    }
                }
            }
        }
        if let Some(t) = new {
            self.counts[state_index(t.state)] += 1;
            if let Some(n) = holding(t) {
                if let Some(&i) = self.order.get(n) {
                    self.snapshots[i].place(&demand_of(&t.spec));
                }
            }
            if let Some(n) = &t.node {
                self.by_node.entry(n.clone()).or_default().insert(t.id);
            }
        }
    }

    /// Replaces a task, keeping indexes and snapshots in step, and returns the store op.
    fn put(&mut self, task: Task) -> Result<Op, StoreError> {
        let op = Op::put_task(&task)?;
        let old = self.tasks.remove(&task.id);
        self.apply(old.as_deref(), Some(&task));
        self.tasks.insert(task.id, Box::new(task));
        Ok(op)
    }

    fn remove(&mut self, id: TaskId) -> Option<Op> {
        let old = self.tasks.remove(&id)?;
        self.apply(Some(&*old), None);
        Some(Op::delete_task(id))
    }

    /// Rebuilds the snapshot vector after the set of nodes changed (rare: registration).
    fn rebuild_snapshots(&mut self) {
        self.order.clear();
        self.snapshots.clear();
        for (i, (name, node)) in self.nodes.iter().enumerate() {
            self.order.insert(name.clone(), i);
            let mut s = NodeSnapshot::new(
                name.clone(),
                node.record.capacity.cpus,
                node.record.capacity.memory,
            );
            s.up = node.state == NodeState::Up;
            s.used_memory = node.stats.memory_used;
            self.snapshots.push(s);
        }
        // Split borrows instead of cloning every placed task (a node that registers late would
        // otherwise copy the whole task table, a gigabyte at a million tasks).
        let State {
            tasks,
            order,
            snapshots,
            ..
        } = self;
        for t in tasks.values() {
            if let Some(n) = holding(t) {
                if let Some(&i) = order.get(n) {
                    snapshots[i].place(&demand_of(&t.spec));
                }
            }
        }
    }

    fn set_node_up(&mut self, name: &str, up: bool) {
        if let Some(&i) = self.order.get(name) {
            self.snapshots[i].up = up;
        }
    }

    fn unblock(&mut self) {
        if !self.blocked.is_empty() {
            let blocked = std::mem::take(&mut self.blocked);
            self.queue.extend(blocked);
        }
    }
}

struct Inner {
    opts: ManagerOptions,
    store: Arc<dyn Store>,
    state: Mutex<State>,
    wake_dispatch: Notify,
    client: HttpClient,
    metrics: Metrics,
    shutdown: Shutdown,
    started: Instant,
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

/// A task as `GET /nodes` would show its node's share.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The worker's name.
    pub name: String,
    /// How to reach it.
    pub address: String,
    /// Up, unhealthy, down or waiting.
    pub state: NodeState,
    /// Why it is unhealthy, if it is.
    pub problem: Option<String>,
    /// What it offers.
    pub capacity: Capacity,
    /// CPU reserved by its tasks.
    pub reserved_cpus: f64,
    /// Memory reserved by its tasks.
    pub reserved_memory: u64,
    /// Tasks placed on it and not finished.
    pub tasks: u32,
    /// Its last reported figures.
    pub stats: NodeStats,
    /// When its last heartbeat arrived (ms since the epoch).
    pub last_heartbeat_ms: Option<u64>,
    /// Seconds since then.
    pub seconds_since_heartbeat: Option<f64>,
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
        let scheduler = poseidon_schedulers::by_name(&opts.scheduler)
            .map_err(|e| ManagerError::Invalid(e.to_string()))?;
        let tasks = store::load_tasks(store.as_ref())?;
        let records: Vec<NodeRecord> = store::load_nodes(store.as_ref())?;
        let now = Instant::now();
        let mut nodes = BTreeMap::new();
        for r in records {
            nodes.insert(
                r.name.clone(),
                // Not schedulable until it heartbeats (it may have died while the manager was
                // down), but with a full TTL from now before it can be counted down.
                Node {
                    record: r,
                    state: NodeState::Waiting,
                    problem: None,
                    stats: NodeStats::default(),
                    last_heartbeat: Some(now),
                    last_heartbeat_ms: None,
                },
            );
        }
        for (name, address) in &opts.known_workers {
            nodes.entry(name.clone()).or_insert_with(|| Node {
                record: NodeRecord {
                    name: name.clone(),
                    address: address.clone(),
                    capacity: Capacity::default(),
                },
                state: NodeState::Waiting,
                problem: None,
                stats: NodeStats::default(),
                last_heartbeat: None,
                last_heartbeat_ms: None,
            });
        }
        let mut state = State {
            tasks: HashMap::new(),
            counts: [0; TaskState::ALL.len()],
            by_node: HashMap::new(),
            nodes,
            snapshots: Vec::new(),
            order: HashMap::new(),
            scheduler,
            queue: VecDeque::new(),
            blocked: Vec::new(),
            attempts: HashMap::new(),
        };
        let mut pending: Vec<(u64, TaskId)> = Vec::new();
        for t in tasks {
            if t.state == TaskState::Pending && t.desired == Desired::Run {
                pending.push((t.created_ms, t.id));
            }
            if let Some(n) = &t.node {
                state.by_node.entry(n.clone()).or_default().insert(t.id);
            }
            state.counts[state_index(t.state)] += 1;
            state.tasks.insert(t.id, Box::new(t));
        }
        pending.sort();
        state.queue.extend(pending.into_iter().map(|(_, id)| id));
        state.rebuild_snapshots();
        let manager = Manager {
            inner: Arc::new(Inner {
                opts,
                store,
                state: Mutex::new(state),
                wake_dispatch: Notify::new(),
                client: HttpClient::new(Duration::from_secs(5)),
                metrics: Metrics::default(),
                shutdown,
                started: now,
            }),
        };
        tokio::spawn(manager.clone().dispatch_loop());
        tokio::spawn(manager.clone().monitor_loop());
        manager.inner.wake_dispatch.notify_one();
        Ok(manager)
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

    /// Stores new tasks durably and queues them for placement; answers once they are synced.
    pub async fn submit(
        &self,
        subs: Vec<(Option<TaskId>, TaskSpec)>,
    ) -> Result<Vec<Task>, ManagerError> {
        // At-most-one only holds if the old copy stops before the manager counts its node down.
        let ttl = self.inner.opts.heartbeat_ttl;
        for (_, spec) in &subs {
            if let Some(ms) = spec.stop_after_disconnect_ms {
                if Duration::from_millis(ms) >= ttl {
                    return Err(ManagerError::Invalid(format!(
                        "stop_after_disconnect ({ms} ms) must be shorter than the manager's heartbeat_ttl ({} ms), \
                         or the old copy could still run when the task is placed elsewhere",
                        ttl.as_millis()
                    )));
                }
            }
        }
        let mut created = Vec::with_capacity(subs.len());
        let pending: Pending = {
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
            let mut ops = Vec::with_capacity(subs.len());
            for (id, spec) in subs {
                let task = Task::new(id.unwrap_or_default(), spec, TaskState::Pending);
                ops.push(st.put(task.clone())?);
                created.push(task);
            }
            self.inner.store.submit(ops)
        };
        if let Err(e) = pending.wait().await {
            // Not acknowledged: forget what was reserved in memory.
            let mut st = lock(&self.inner.state);
            for t in &created {
                st.remove(t.id);
            }
            return Err(e.into());
        }
        {
            let mut st = lock(&self.inner.state);
            st.queue.extend(created.iter().map(|t| t.id));
        }
        self.inner
            .metrics
            .submissions
            .fetch_add(created.len() as u64, Ordering::Relaxed);
        self.inner.wake_dispatch.notify_one();
        Ok(created)
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
                }
            })
            .collect()
    }

    /// Mutates one task under the lock with `f` (which returns false to leave it unchanged) and
    /// returns the queued write.
    fn mutate(
        &self,
        id: TaskId,
        f: impl FnOnce(&mut Task) -> Result<bool, ManagerError>,
    ) -> Result<(Task, Option<Pending>), ManagerError> {
        let mut st = lock(&self.inner.state);
        let mut task = st
            .tasks
            .get(&id)
            .map(|t| Task::clone(t))
            .ok_or(ManagerError::NotFound(id))?;
        if !f(&mut task)? {
            return Ok((task, None));
        }
        let op = st.put(task.clone())?;
        Ok((task, Some(self.inner.store.submit(vec![op]))))
    }

    /// Stops a task: it ends Completed with reason `stopped` and is never restarted. With `purge`,
    /// a finished task is forgotten instead.
    pub async fn stop(&self, id: TaskId, purge: bool) -> Result<Option<Task>, ManagerError> {
        if purge {
            let (node, pending) = {
                let mut st = lock(&self.inner.state);
                let task = st.tasks.get(&id).ok_or(ManagerError::NotFound(id))?;
                if !task.is_finished() {
                    return Err(ManagerError::Conflict(format!(
                        "task {id} is {} and must be stopped before it is purged",
                        task.state
                    )));
                }
                let node = task.node.clone();
                let op = st.remove(id).ok_or(ManagerError::NotFound(id))?;
                (node, self.inner.store.submit(vec![op]))
            };
            pending.wait().await?;
            if let Some(node) = node {
                self.send_stop(&node, id, true);
            }
            return Ok(None);
        }
        let node_up = {
            let st = lock(&self.inner.state);
            st.tasks
                .get(&id)
                .and_then(|t| t.node.as_ref())
                .and_then(|n| st.nodes.get(n))
                .is_some_and(|n| n.state != NodeState::Down)
        };
        let (task, pending) = self.mutate(id, |t| {
            if t.is_finished() {
                return Err(ManagerError::Conflict(format!(
                    "task {id} is already {} and cannot be stopped",
                    t.state
                )));
            }
            if t.desired == Desired::Stop {
                return Ok(false);
            }
            t.desired = Desired::Stop;
            if t.state == TaskState::Pending || (!node_up && !t.state.is_terminal()) {
                // Nothing runs it (or its node is gone): it ends here.
                t.set_state(TaskState::Completed, "stopped")
                    .map_err(|e| ManagerError::Conflict(e.to_string()))?;
            } else {
                t.record(t.state, "stop requested");
            }
            Ok(true)
        })?;
        if let Some(p) = pending {
            p.wait().await?;
        }
        if let Some(node) = &task.node {
            if task.state != TaskState::Completed || task.desired == Desired::Stop {
                self.send_stop(node, id, false);
            }
        }
        self.inner.wake_dispatch.notify_one();
        Ok(Some(task))
    }

    fn node_address(&self, node: &str) -> Option<String> {
        lock(&self.inner.state)
            .nodes
            .get(node)
            .map(|n| n.record.address.clone())
    }

    /// Tells a worker to stop (or forget) a task, in the background; the heartbeat repairs a loss.
    fn send_stop(&self, node: &str, id: TaskId, purge: bool) {
        let Some(addr) = self.node_address(node) else {
            return;
        };
        let client = self.inner.client.with_timeout(Duration::from_secs(30));
        tokio::spawn(async move {
            let url = format!(
                "{addr}/tasks/{id}{}",
                if purge { "?purge=true" } else { "" }
            );
            let _ = client.send(Method::DELETE, &url, None).await;
        });
    }

    /// Relays a task's logs from its worker.
    pub async fn logs(
        &self,
        id: TaskId,
        tail: Option<&str>,
    ) -> Result<serde_json::Value, ManagerError> {
        let task = self.task(id).ok_or(ManagerError::NotFound(id))?;
        let node = task.node.ok_or_else(|| {
            ManagerError::Conflict(format!("task {id} has not been placed on a node yet"))
        })?;
        let addr = self
            .node_address(&node)
            .ok_or_else(|| ManagerError::Worker(format!("node {node} is unknown")))?;
        let url = match tail {
            Some(t) => format!("{addr}/tasks/{id}/logs?tail={t}"),
            None => format!("{addr}/tasks/{id}/logs"),
        };
        self.inner
            .client
            .get::<serde_json::Value>(&url)
            .await
            .map_err(|e| match e {
                ClientError::Status { status: 404, .. }
                | ClientError::Status { status: 409, .. } => ManagerError::Conflict(e.to_string()),
                other => ManagerError::Worker(format!("node {node}: {other}")),
            })
    }

    /// Handles a heartbeat: updates liveness and stats, applies every task status, and answers with
    /// what the worker lacks and what it should give up.
    pub async fn heartbeat(
        &self,
        name: &str,
        hb: Heartbeat,
    ) -> Result<HeartbeatReply, ManagerError> {
        self.inner
            .metrics
            .heartbeats
            .fetch_add(1, Ordering::Relaxed);
        let mut ops = Vec::new();
        let mut reply = HeartbeatReply::default();
        let pending = {
            let mut st = lock(&self.inner.state);
            let record = NodeRecord {
                name: name.to_string(),
                address: hb.address.clone(),
                capacity: hb.capacity,
            };
            let is_new = !st.nodes.contains_key(name);
            let changed = st.nodes.get(name).is_none_or(|n| n.record != record);
            if changed {
                ops.push(Op::put_node(name, &record)?);
            }
            let new_state = if hb.healthy {
                NodeState::Up
            } else {
                NodeState::Unhealthy
            };
            let node = st.nodes.entry(name.to_string()).or_insert_with(|| Node {
                record: record.clone(),
                state: NodeState::Waiting,
                problem: None,
                stats: NodeStats::default(),
                last_heartbeat: None,
                last_heartbeat_ms: None,
            });
            let was = node.state;
            node.record = record;
            node.state = new_state;
            node.problem = hb.problem.clone();
            node.stats = hb.stats.clone();
            node.last_heartbeat = Some(Instant::now());
            node.last_heartbeat_ms = Some(now_ms());
            if is_new || changed {
                st.rebuild_snapshots();
            }
            st.set_node_up(name, new_state == NodeState::Up);
            if let Some(&i) = st.order.get(name) {
                st.snapshots[i].used_memory = hb.stats.memory_used;
            }
            if was != NodeState::Up && new_state == NodeState::Up {
                st.unblock();
            }
            let mut held = HashSet::with_capacity(hb.tasks.len());
            for status in &hb.tasks {
                held.insert(status.id);
                self.apply_status(&mut st, name, status, &mut ops, &mut reply.stop)?;
            }
            // A partial beat after the node was away: ask for everything it holds.
            reply.want_full = !hb.full && was != NodeState::Up;
            // What it should hold but did not list: send again (a dispatch was lost). Only a
            // full beat lists everything held.
            if let Some(ids) = st.by_node.get(name).filter(|_| hb.full) {
                for id in ids {
                    if held.contains(id) {
                        continue;
                    }
                    if let Some(t) = st.tasks.get(id) {
                        let active = matches!(t.state, TaskState::Scheduled | TaskState::Running);
                        if active && t.desired == Desired::Run {
                            reply.assign.push(Assignment {
                                id: t.id,
                                generation: t.generation,
                                spec: t.spec.clone(),
                                desired: t.desired,
                            });
                        }
                    }
                }
            }
            (!ops.is_empty()).then(|| self.inner.store.submit(std::mem::take(&mut ops)))
        };
        if let Some(p) = pending {
            p.wait().await?;
        }
        self.inner.wake_dispatch.notify_one();
        Ok(reply)
    }

    /// Handles an immediate report of changed tasks.
    pub async fn report(
        &self,
        name: &str,
        statuses: Vec<TaskStatus>,
    ) -> Result<HeartbeatReply, ManagerError> {
        self.inner.metrics.reports.fetch_add(1, Ordering::Relaxed);
        let mut reply = HeartbeatReply::default();
        let pending = {
            let mut st = lock(&self.inner.state);
            let mut ops = Vec::new();
            for s in &statuses {
                self.apply_status(&mut st, name, s, &mut ops, &mut reply.stop)?;
            }
            (!ops.is_empty()).then(|| self.inner.store.submit(ops))
        };
        if let Some(p) = pending {
            p.wait().await?;
        }
        self.inner.wake_dispatch.notify_one();
        Ok(reply)
    }

    /// Applies one worker status to the task it names. A status of a task that is not assigned to
    /// that node at that generation becomes an order to give it up.
    fn apply_status(
        &self,
        st: &mut State,
        node: &str,
        s: &TaskStatus,
        ops: &mut Vec<Op>,
        stop: &mut Vec<StopOrder>,
    ) -> Result<(), ManagerError> {
        let Some(current) = st.tasks.get(&s.id) else {
            stop.push(StopOrder {
                id: s.id,
                purge: true,
                reason: "the manager does not know this task".into(),
            });
            return Ok(());
        };
        if current.node.as_deref() != Some(node) || current.generation != s.generation {
            // The assignment generation decides who owns a task: this copy is stale.
            stop.push(StopOrder {
                id: s.id,
                purge: true,
                reason: format!(
                    "task is now assigned to {} at generation {}",
                    current.node.as_deref().unwrap_or("no node"),
                    current.generation
                ),
            });
            return Ok(());
        }
        if stop_wanted(current, s) {
            stop.push(StopOrder {
                id: s.id,
                purge: false,
                reason: "stopped".into(),
            });
        }
        // A heartbeat repeats the status of every task the worker holds, and almost all of them
        // are what the manager already has: answer those without copying the task, so that a
        // heartbeat costs in proportion to what changed, not to what the node holds.
        if status_matches(current, s) {
            return Ok(());
        }
        let mut t = Task::clone(current);
        t.container_id = s.container_id.clone();
        t.host_ports = s.host_ports.clone();
        t.exit_code = s.exit_code;
        t.restart_count = s.restart_count;
        t.health = s.health.clone();
        let reason = s.reason.clone().unwrap_or_default();
        if t.state != s.state {
            match path(t.state, s.state) {
                Some(steps) => {
                    for step in steps {
                        let _ = t.set_state(step, &reason);
                    }
                }
                None => t.record(t.state, &format!("worker reports {}: {reason}", s.state)),
            }
        } else if t.reason.as_deref() != Some(reason.as_str()) && !reason.is_empty() {
            t.record(t.state, &reason);
        }
        // After the transition, which stamps the manager's clock: the worker saw the container
        // start and end, so its times win. (Set before it, they were overwritten, and the next
        // heartbeat rewrote every running task once more to put the worker's times back.)
        t.started_ms = s.started_ms.or(t.started_ms);
        t.finished_ms = s.finished_ms.or(t.finished_ms);
        // The worker ended it on its own, with nobody asking: at-most-one after losing the manager
        // (possibly for less than the TTL, so the node was never counted down). The user still
        // wants it to run, so it is placed again, whatever its restart policy: it did not end by
        // itself. Its node is cleared, so the dispatcher takes it and the old copy is purged.
        let abandoned =
            s.desired == Desired::Stop && t.desired == Desired::Run && s.state.is_terminal();
        if abandoned {
            t.node = None;
            t.record(t.state, &format!("{reason}; to be placed again"));
        }
        if t != **current {
            // Timestamps of notes are the only noise; compare what matters before writing.
            let freed = holding(current).is_some() && holding(&t).is_none();
            ops.push(st.put(t)?);
            if freed {
                st.unblock();
            }
        }
        if abandoned {
            st.queue.push_back(s.id);
        }
        Ok(())
    }

    /// Places up to [`DISPATCH_PASS`] (or [`DISPATCH_PER_NODE`] per node) queued tasks and dispatches the placements, one batch per
    /// worker; when more are queued it wakes the dispatcher again for the next pass.
    pub async fn dispatch_once(&self) -> usize {
        let (batches, pending, more) = {
            let mut st = lock(&self.inner.state);
            let mut batches: BTreeMap<String, Vec<Assignment>> = BTreeMap::new();
            let mut ops = Vec::new();
            let mut taken = 0;
            let pass = DISPATCH_PASS.max(DISPATCH_PER_NODE * st.snapshots.len());
            while taken < pass {
                let Some(id) = st.queue.pop_front() else {
                    break;
                };
                taken += 1;
                let Some(task) = st.tasks.get(&id) else {
                    continue;
                };
                // Pending tasks, tasks waiting for a restart on a node that is gone, and tasks
                // their worker gave up (node cleared by `apply_status`).
                let stranded = task.state.is_terminal()
                    && (task.node.is_none()
                        || (!task.is_finished()
                            && task
                                .node
                                .as_ref()
                                .and_then(|n| st.nodes.get(n))
                                .is_none_or(|n| n.state == NodeState::Down)));
                if !(task.state == TaskState::Pending || stranded) || task.desired != Desired::Run {
                    continue;
                }
                let demand = demand_of(&task.spec);
                let State {
                    scheduler,
                    snapshots,
                    ..
                } = &mut *st;
                let picked = scheduler.pick(snapshots, &demand);
                match picked {
                    Ok(i) => {
                        let node = st.snapshots[i].id.clone();
                        let mut t = Task::clone(&st.tasks[&id]);
                        t.generation += 1;
                        t.node = Some(node.clone());
                        let _ = t.set_state(TaskState::Scheduled, &format!("placed on {node}"));
                        batches.entry(node).or_default().push(Assignment {
                            id,
                            generation: t.generation,
                            spec: t.spec.clone(),
                            desired: Desired::Run,
                        });
                        match st.put(t) {
                            Ok(op) => ops.push(op),
                            Err(e) => eprintln!("manager: cannot encode task {id}: {e}"),
                        }
                        self.inner
                            .metrics
                            .placements
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(nofit) => {
                        let reason = nofit.to_string();
                        let mut t = Task::clone(&st.tasks[&id]);
                        if t.reason.as_deref() != Some(reason.as_str()) {
                            t.record(TaskState::Pending, &reason);
                            if let Ok(op) = st.put(t) {
                                ops.push(op);
                            }
                        }
                        st.blocked.push(id);
                        self.inner
                            .metrics
                            .unplaceable
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let pending = (!ops.is_empty()).then(|| self.inner.store.submit(ops));
            (batches, pending, !st.queue.is_empty())
        };
        if let Some(p) = pending {
            if let Err(e) = p.wait().await {
                // Not on disk: do not send what a restart would not know; undo and retry later.
                eprintln!("manager: store write failed while placing: {e}");
                for (node, assignments) in batches {
                    let failed = assignments
                        .iter()
                        .map(|a| (a.id, a.generation, format!("store write failed: {e}")))
                        .collect();
                    self.requeue(&node, failed).await;
                }
                return 0;
            }
        }
        let placed = batches.values().map(Vec::len).sum();
        for (node, assignments) in batches {
            let m = self.clone();
            tokio::spawn(async move { m.send_batch(node, assignments).await });
        }
        if more {
            self.inner.wake_dispatch.notify_one();
        }
        placed
    }

    /// Sends one batch to a worker; what it does not take goes back to the queue with backoff.
    async fn send_batch(&self, node: String, assignments: Vec<Assignment>) {
        let Some(addr) = self.node_address(&node) else {
            return;
        };
        let url = format!("{addr}/assignments");
        let batch = AssignmentBatch { assignments };
        let result = self
            .inner
            .client
            .with_timeout(Duration::from_secs(30))
            .post::<_, serde_json::Value>(&url, &batch)
            .await;
        let failed: Vec<(TaskId, u64, String)> = match result {
            Ok(v) => v
                .get("rejected")
                .and_then(|r| r.as_array())
                .map(|arr| {
                    arr.iter()
                        .filter_map(|x| {
                            let id = x.get("id")?.as_str()?.parse::<TaskId>().ok()?;
                            let gen = batch.assignments.iter().find(|a| a.id == id)?.generation;
                            let err = x.get("error")?.as_str().unwrap_or("rejected").to_string();
                            Some((id, gen, err))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => batch
                .assignments
                .iter()
                .map(|a| (a.id, a.generation, e.to_string()))
                .collect(),
        };
        self.requeue(&node, failed).await;
    }

    /// Undoes placements that did not reach their worker (or the disk): back to Pending, and
    /// queued again after a backoff that grows with the attempts.
    async fn requeue(&self, node: &str, failed: Vec<(TaskId, u64, String)>) {
        if failed.is_empty() {
            return;
        }
        self.inner
            .metrics
            .dispatch_failures
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        let mut retry = Vec::new();
        let pending = {
            let mut st = lock(&self.inner.state);
            let mut ops = Vec::new();
            for (id, gen, err) in failed {
                let Some(t) = st.tasks.get(&id) else { continue };
                // Only undo what is still this placement; a report may already have moved it on.
                if t.generation != gen || t.state != TaskState::Scheduled {
                    continue;
                }
                let mut t = Task::clone(t);
                let _ = t.set_state(
                    TaskState::Pending,
                    &format!("dispatch to {node} failed: {err}"),
                );
                if let Ok(op) = st.put(t) {
                    ops.push(op);
                }
                let n = st.attempts.entry(id).or_insert(0);
                *n += 1;
                retry.push((id, *n));
            }
            (!ops.is_empty()).then(|| self.inner.store.submit(ops))
        };
        if let Some(p) = pending {
            let _ = p.wait().await;
        }
        for (id, attempt) in retry {
            let delay = self
                .inner
                .opts
                .dispatch_backoff
                .saturating_mul(1u32 << attempt.min(5).saturating_sub(1))
                .min(Duration::from_secs(10));
            let m = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                lock(&m.inner.state).queue.push_back(id);
                m.inner.wake_dispatch.notify_one();
            });
        }
    }

    async fn dispatch_loop(self) {
        loop {
            tokio::select! {
                _ = self.inner.wake_dispatch.notified() => {}
                _ = self.inner.shutdown.wait() => return,
            }
            self.dispatch_once().await;
        }
    }

    /// Marks nodes whose heartbeats stopped as down and moves their tasks back to the queue.
    /// Returns the names of the nodes it marked down.
    pub async fn check_nodes_once(&self) -> Vec<String> {
        let ttl = self.inner.opts.heartbeat_ttl;
        let mut lost = Vec::new();
        let pending = {
            let mut st = lock(&self.inner.state);
            let now = Instant::now();
            let names: Vec<String> = st
                .nodes
                .values()
                .filter(|n| {
                    // A node restored from the store waits with a heartbeat time of the start.
                    let watched = matches!(n.state, NodeState::Up | NodeState::Unhealthy)
                        || (n.state == NodeState::Waiting && n.last_heartbeat.is_some());
                    watched && n.last_heartbeat.is_none_or(|t| now.duration_since(t) > ttl)
                })
                .map(|n| n.record.name.clone())
                .collect();
            let mut ops = Vec::new();
            for name in &names {
                if let Some(n) = st.nodes.get_mut(name) {
                    n.state = NodeState::Down;
                }
                st.set_node_up(name, false);
                self.inner
                    .metrics
                    .nodes_lost
                    .fetch_add(1, Ordering::Relaxed);
                let ids: Vec<TaskId> = st
                    .by_node
                    .get(name)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                for id in ids {
                    let Some(t) = st.tasks.get(&id) else { continue };
                    if t.is_finished() || t.node.as_deref() != Some(name.as_str()) {
                        continue;
                    }
                    let mut t = Task::clone(t);
                    let why = format!(
                        "node {name} is down (no heartbeat for {:.1} s)",
                        ttl.as_secs_f64()
                    );
                    if t.desired == Desired::Stop {
                        for s in path(t.state, TaskState::Completed).unwrap_or_default() {
                            let _ = t.set_state(s, "stopped (its node is down)");
                        }
                    } else if matches!(t.state, TaskState::Scheduled | TaskState::Running) {
                        let _ = t.set_state(TaskState::Pending, &why);
                        st.queue.push_back(id);
                        self.inner
                            .metrics
                            .rescheduled
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        // Failed or completed while waiting for a restart on that node: place
                        // it again elsewhere.
                        for s in path(t.state, TaskState::Pending).unwrap_or_default() {
                            let _ = t.set_state(s, &why);
                        }
                        if t.state != TaskState::Pending {
                            // Completed/Failed -> Pending is not a legal move; it is rescheduled
                            // through Scheduled by the next placement instead.
                            t.record(t.state, &why);
                        }
                        st.queue.push_back(id);
                        self.inner
                            .metrics
                            .rescheduled
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(op) = st.put(t) {
                        ops.push(op);
                    }
                }
                lost.push(name.clone());
            }
            (!ops.is_empty()).then(|| self.inner.store.submit(ops))
        };
        if let Some(p) = pending {
            let _ = p.wait().await;
        }
        if !lost.is_empty() {
            self.inner.wake_dispatch.notify_one();
        }
        lost
    }

    async fn monitor_loop(self) {
        let period = (self.inner.opts.heartbeat_ttl / 10).max(Duration::from_millis(50));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.inner.shutdown.wait() => return,
            }
            self.check_nodes_once().await;
        }
    }

    /// Waits for queued writes to finish (called on shutdown).
    pub async fn close(&self) {
        let _ = self.inner.store.write(Vec::new()).await;
    }
}
