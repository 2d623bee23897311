//! The worker: the agent on each host that runs tasks as containers. This file is the thin
//! [`Worker`] facade; each loop lives in its own file:
//!
//! - [`accept`]: assignments, idempotent by (id, generation), validated, one grouped write per batch;
//! - [`supervisor`] around the pure phase machine in [`phase`]: one supervisor per task drives its
//!   container towards the desired state (start, wait for the exit, restart by policy with backoff,
//!   stop when asked);
//! - [`adopt`]: after a restart, adopt the containers labelled with this node and remove the others;
//! - [`report`]: heartbeats, reports, the engine watch, and the at-most-one disconnect guard;
//! - `health`, [`stats`], [`api`].
//!
//! Every change is persisted (synced) and reported to the manager at once, a container's start by
//! the report that carries it ([`Worker::defer`]); heartbeats repeat the whole picture so a lost
//! report is repaired.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poseidon_runtimes::{Runtime, RuntimeError};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::ManagerClient;
use crate::http::Shutdown;
use crate::store::{self, Op, Pending, Store, StoreError};
use crate::task::{Desired, Task, TaskId};
use crate::wire::{Capacity, StopOrder, TaskStatus};

pub mod accept;
mod adopt;
pub mod api;
mod health;
mod managers;
pub mod ops;
mod phase;
pub mod report;
pub mod stats;
mod supervisor;
#[cfg(test)]
mod tests;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The node name, written into container labels.
    pub name: String,
    /// How the manager reaches this worker (`http://host:port`).
    pub advertise: String,
    /// The manager's URL, or `None` for a worker used alone.
    pub manager: Option<String>,
    /// Further managers to try in turn when `manager` cannot be reached (high availability).
    pub managers: Vec<String>,
    /// Declared capacity (or what sysinfo read).
    pub capacity: Capacity,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// SIGTERM-to-SIGKILL grace when stopping a container.
    pub stop_grace: Duration,
    /// A container network for task containers.
    pub network: Option<String>,
    /// The host directories tasks may mount, by name (`host_volumes = { logs = "/var/log/app" }`):
    /// an assignment naming another host volume is refused, and the names go in each heartbeat.
    pub host_volumes: BTreeMap<String, PathBuf>,
    /// Node labels from the config, sent with every heartbeat.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Where the ports its task containers publish are reached (the config's `endpoint_address`),
    /// sent with every heartbeat; `None`: the host of `advertise`.
    pub endpoint_address: Option<std::net::IpAddr>,
}

/// Worker errors, mapped to HTTP statuses by the API.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No such task.
    #[error("no task with id {0}")]
    NotFound(TaskId),
    /// The request conflicts with the task's state (or a newer assignment).
    #[error("{0}")]
    Conflict(String),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The request could not be done within its deadline; nothing of it was acknowledged.
    #[error("{0}")]
    Late(String),
    /// The store failed; nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The container engine failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// One task as the worker holds it.
struct Entry {
    task: Task,
    /// Wakes the task's supervisor when its desired state changes.
    poke: Arc<Notify>,
    /// Whether a supervisor is running for it.
    supervised: bool,
    /// The grace for stopping its container when not the worker's `stop_grace`: an at-most-one
    /// stop sets a short one so that the stop ends in time (see [`report`]).
    stop_grace: Option<Duration>,
}

impl Entry {
    /// Boxed: the map then moves a pointer, not the whole entry, each time it grows (a busy worker
    /// holds a hundred thousand tasks, and the copies were a good part of taking one; issue 17).
    fn new(task: Task, supervised: bool) -> Box<Entry> {
        Box::new(Entry {
            task,
            poke: Arc::new(Notify::new()),
            supervised,
            stop_grace: None,
        })
    }
}

pub(crate) struct Inner {
    opts: WorkerOptions,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    tasks: Mutex<HashMap<TaskId, Box<Entry>>>,
    /// Tasks changed since the last successful report.
    dirty: Mutex<HashSet<TaskId>>,
    /// Tasks changed in memory only ([`Worker::defer`]), written in one synced batch queued with
    /// the statuses the next report or full heartbeat takes. Lock order: `tasks`, then this.
    unstored: Mutex<HashSet<TaskId>>,
    /// Writes of [`Worker::update`] queued and not yet synced (changed under `tasks`, with the
    /// memory change): statuses taken while one is in flight wait for a write queued after it.
    updating: AtomicU64,
    report_now: Notify,
    /// Held from building a message that carries task statuses (a report, a full heartbeat) until
    /// the manager has answered it, so that the manager applies them in the order they were taken:
    /// a full heartbeat built before a task started, answered after the report that it runs,
    /// would otherwise set the manager's copy back to Scheduled until the next full beat.
    speaking: tokio::sync::Mutex<()>,
    /// The managers' APIs (none for a worker used alone).
    managers: managers::Managers,
    /// When the manager last answered a heartbeat or a report (tokio's clock, so tests can pause it).
    last_contact: Mutex<Instant>,
    /// Whether the last heartbeat reached the manager: failures are logged on the change only.
    contact_ok: AtomicBool,
    /// Serialises assignment batches, so that each is checked and written as one (see [`accept`]).
    accepting: tokio::sync::Mutex<()>,
    /// Heartbeats sent, to make every FULL_EVERY-th one full.
    beats: AtomicU64,
    /// The interval the manager last told this worker (ms; 0 before it told any).
    told_interval_ms: AtomicU64,
    /// Supervisors alive: when it is zero, nothing can create or restart a container any more.
    supervisors: AtomicU64,
    /// The next heartbeat must be full (at start, after a failed beat, on the manager's request).
    need_full: AtomicBool,
    /// Whether the container engine answered its last call.
    engine_ok: AtomicBool,
    engine_problem: Mutex<Option<String>>,
    /// Set once adoption is done: before that, assignments wait.
    ready: AtomicBool,
    ready_notify: Notify,
    sys: stats::SysSampler,
    shutdown: Shutdown,
    /// Logs of the runs before restarts, exec and the worker's `/metrics` figures.
    ops: ops::Ops,
    security: crate::security::WorkerSecurity,
    /// Failed authentications per peer address (when only the manager is admitted).
    limiter: crate::security::FailureLimiter,
    /// The routing mesh beside this worker, whose figures join the worker's `/metrics`.
    mesh: std::sync::OnceLock<crate::mesh::Mesh>,
}

/// Counts a write of [`Worker::update`] in `Inner::updating` while it lives (dropped once the
/// write is answered, or when its caller gives up waiting).
/// A write that failed, or whose caller gave up before it was answered, leaves its task deferred
/// and dirty: memory already holds the change, so the next report writes it before telling of it.
struct Updating<'a> {
    inner: &'a Inner,
    id: TaskId,
    synced: bool,
}

impl<'a> Updating<'a> {
    fn new(inner: &'a Inner, id: TaskId) -> Updating<'a> {
        inner.updating.fetch_add(1, Ordering::SeqCst);
        Updating {
            inner,
            id,
            synced: false,
        }
    }
}

impl Drop for Updating<'_> {
    fn drop(&mut self) {
        if !self.synced {
            lock(&self.inner.unstored).insert(self.id);
            lock(&self.inner.dirty).insert(self.id);
            self.inner.report_now.notify_one();
        }
        self.inner.updating.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A handle to a running worker (cheap to clone).
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.inner.opts.name)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind (every section
    // is a few assignments), so a poisoned lock is used as it is rather than cascading the panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Loads the worker's tasks from `store`, adopts its containers, starts supervisors, and (when a
    /// manager is configured) the heartbeat and report loops. Returns once adoption has been tried.
    pub async fn start(
        opts: WorkerOptions,
        runtime: Arc<dyn Runtime>,
        store: Arc<dyn Store>,
        shutdown: Shutdown,
    ) -> Result<Worker, WorkerError> {
        let security = crate::security::WorkerSecurity::default();
        Self::start_with(opts, security, None, runtime, store, shutdown).await
    }

    /// [`Worker::start`] with security: the node token sent to the manager, the secret only the
    /// manager may present, and the TLS client configuration towards the manager.
    pub async fn start_with(
        opts: WorkerOptions,
        security: crate::security::WorkerSecurity,
        client_tls: Option<Arc<rustls::ClientConfig>>,
        runtime: Arc<dyn Runtime>,
        store: Arc<dyn Store>,
        shutdown: Shutdown,
    ) -> Result<Worker, WorkerError> {
        let tasks = store::load_tasks(store.as_ref())?;
        let map = tasks
            .into_iter()
            .map(|task| (task.id, Entry::new(task, false)))
            .collect();
        let mut urls: Vec<&String> = opts.manager.iter().collect();
        urls.extend(
            opts.managers
                .iter()
                .filter(|u| Some(*u) != opts.manager.as_ref()),
        );
        // With several managers, one that hangs (paused, cut off) must be left in time for the
        // heartbeats to reach the next one before the leader's TTL runs out.
        let timeout = if urls.len() > 1 {
            (opts.heartbeat_interval * 3).clamp(Duration::from_secs(1), Duration::from_secs(5))
        } else {
            Duration::from_secs(5)
        };
        let http = match &client_tls {
            Some(tls) => crate::http::HttpClient::with_tls(timeout, tls.clone()),
            None => crate::http::HttpClient::new(timeout),
        };
        let managers = managers::Managers::new(
            urls.into_iter()
                .map(|m| {
                    ManagerClient::with_http(http.clone(), m)
                        .with_token(security.node_token.clone())
                })
                .collect(),
        );
        let inner = Arc::new(Inner {
            opts,
            runtime,
            store,
            tasks: Mutex::new(map),
            dirty: Mutex::new(HashSet::new()),
            unstored: Mutex::new(HashSet::new()),
            updating: AtomicU64::new(0),
            report_now: Notify::new(),
            speaking: tokio::sync::Mutex::new(()),
            managers,
            last_contact: Mutex::new(Instant::now()),
            contact_ok: AtomicBool::new(true),
            accepting: tokio::sync::Mutex::new(()),
            beats: AtomicU64::new(0),
            told_interval_ms: AtomicU64::new(0),
            supervisors: AtomicU64::new(0),
            need_full: AtomicBool::new(true),
            engine_ok: AtomicBool::new(true),
            engine_problem: Mutex::new(None),
            ready: AtomicBool::new(false),
            ready_notify: Notify::new(),
            sys: stats::SysSampler::new(),
            shutdown,
            ops: ops::Ops::default(),
            security,
            limiter: crate::security::FailureLimiter::default(),
            mesh: std::sync::OnceLock::new(),
        });
        let worker = Worker { inner };
        adopt::adopt_or_retry(&worker).await;
        if worker.inner.opts.manager.is_some() {
            tokio::spawn(worker.clone().heartbeat_loop());
        }
        // Without a manager too: the report loop is what writes deferred changes.
        tokio::spawn(worker.clone().report_loop());
        tokio::spawn(worker.clone().disconnect_guard());
        tokio::spawn(worker.clone().engine_watch_loop());
        Ok(worker)
    }

    fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::SeqCst);
        self.inner.ready_notify.notify_waiters();
    }

    /// How many task supervisors are alive. Tests wait for this to reach zero to show that nothing
    /// more can happen (no restart, no late container) instead of sleeping and hoping.
    pub fn supervisors(&self) -> u64 {
        self.inner.supervisors.load(Ordering::SeqCst)
    }

    /// Attaches the routing mesh that runs beside this worker (its figures join `/metrics`).
    pub fn attach_mesh(&self, mesh: crate::mesh::Mesh) {
        let _ = self.inner.mesh.set(mesh);
    }

    /// The routing mesh beside this worker, when it runs one.
    pub fn mesh(&self) -> Option<&crate::mesh::Mesh> {
        self.inner.mesh.get()
    }

    /// The security this worker runs with.
    pub fn security(&self) -> &crate::security::WorkerSecurity {
        &self.inner.security
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.inner.opts.name
    }

    /// The runtime this worker drives.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    /// Records an engine failure; a change from up to down is logged.
    fn engine_failed(&self, e: &RuntimeError) {
        if e.is_engine_down() {
            *lock(&self.inner.engine_problem) = Some(e.to_string());
            if self.inner.engine_ok.swap(false, Ordering::SeqCst) {
                tracing::warn!(node = %self.name(), error = %e, "container engine down");
            }
        }
    }

    /// Records that the engine answered; a change from down to up is logged.
    fn engine_answered(&self) {
        if !self.inner.engine_ok.swap(true, Ordering::SeqCst) {
            *lock(&self.inner.engine_problem) = None;
            tracing::info!(node = %self.name(), "container engine up again");
        }
    }

    /// Whether the container engine answered its last call.
    pub fn engine_ok(&self) -> bool {
        self.inner.engine_ok.load(Ordering::SeqCst)
    }

    /// A snapshot of every task.
    pub fn tasks(&self) -> Vec<Task> {
        let mut v: Vec<Task> = lock(&self.inner.tasks)
            .values()
            .map(|e| e.task.clone())
            .collect();
        v.sort_by_key(|t| (t.created_ms, t.id));
        v
    }

    /// A snapshot of one task.
    pub fn task(&self, id: TaskId) -> Option<Task> {
        self.read(id, Task::clone)
    }

    /// What `f` reads of a task, without copying the whole task (the supervisors' turns).
    pub(super) fn read<R>(&self, id: TaskId, f: impl FnOnce(&Task) -> R) -> Option<R> {
        lock(&self.inner.tasks).get(&id).map(|e| f(&e.task))
    }

    /// Applies `f` to a task, persists the result (synced) and reports it. Returns what `f`
    /// returned, or `None` when the task is gone.
    async fn update<R>(
        &self,
        id: TaskId,
        f: impl FnOnce(&mut Task) -> R,
    ) -> Result<Option<R>, WorkerError> {
        let (r, pending) = {
            let mut tasks = lock(&self.inner.tasks);
            let Some(entry) = tasks.get_mut(&id) else {
                return Ok(None);
            };
            let mut copy = entry.task.clone();
            let r = f(&mut copy);
            if copy == entry.task {
                return Ok(Some(r));
            }
            let op = Op::put_task(&copy)?;
            let pending = (
                self.inner.store.submit(vec![op]),
                Updating::new(&self.inner, id),
            );
            entry.task = copy;
            // This write carries any deferred change too.
            lock(&self.inner.unstored).remove(&id);
            (r, pending)
        };
        let (pending, mut updating) = pending;
        pending.wait().await?;
        updating.synced = true;
        drop(updating);
        self.mark_dirty(id);
        Ok(Some(r))
    }

    /// Applies `f` to a task in memory only; false when the task is gone. For a change that the
    /// next stored change carries and that a restart recovers without the store.
    pub(super) fn remember(&self, id: TaskId, f: impl FnOnce(&mut Task)) -> bool {
        match lock(&self.inner.tasks).get_mut(&id) {
            Some(entry) => {
                f(&mut entry.task);
                true
            }
            None => false,
        }
    }

    /// Applies `f` to a task in memory and leaves its write to the next report or full heartbeat,
    /// which writes every task so changed in one synced batch before it takes their statuses
    /// ([`Worker::stored_statuses`]): the manager hears only of what is on disk, and a burst of
    /// starts costs one write, not one each (issue 17). Only for a change a restart recovers
    /// without the store: a started container is adopted by its task and generation labels.
    /// False when the task is gone.
    pub(super) fn defer(&self, id: TaskId, f: impl FnOnce(&mut Task)) -> bool {
        {
            let mut tasks = lock(&self.inner.tasks);
            let Some(entry) = tasks.get_mut(&id) else {
                return false;
            };
            f(&mut entry.task);
            lock(&self.inner.unstored).insert(id);
        }
        self.mark_dirty(id);
        true
    }

    /// The statuses of `ids` (of every task when `None`), taken in one critical section with a
    /// synced write of every deferred change ([`Worker::defer`]), and returned once that write is
    /// done; `None` when it failed (the changes stay deferred for the next try).
    pub(super) async fn stored_statuses(&self, ids: Option<&[TaskId]>) -> Option<Vec<TaskStatus>> {
        let (statuses, staged) = self.stage_statuses(ids);
        match staged {
            None => Some(statuses),
            Some(staged) => self.settle_deferred(staged).await.then_some(statuses),
        }
    }

    /// The first half of [`Worker::stored_statuses`]: the statuses, and the write of the deferred
    /// changes (the tasks written and the write's outcome) when one is needed before they may
    /// leave. The order of writes relies on the store applying them in the order submitted, as
    /// `RocksStore`'s writer thread does (the worker's stores all group commits).
    pub(super) fn stage_statuses(
        &self,
        ids: Option<&[TaskId]>,
    ) -> (Vec<TaskStatus>, Option<(Vec<TaskId>, Pending)>) {
        {
            let tasks = lock(&self.inner.tasks);
            let statuses: Vec<TaskStatus> = match ids {
                Some(ids) => ids
                    .iter()
                    .filter_map(|id| tasks.get(id).map(|e| TaskStatus::of(&e.task)))
                    .collect(),
                None => tasks.values().map(|e| TaskStatus::of(&e.task)).collect(),
            };
            let mut unstored = lock(&self.inner.unstored);
            // With nothing deferred and no update in flight, every status taken is on disk.
            // Otherwise the write below, queued after any update in flight, is synced after it.
            if unstored.is_empty() && self.inner.updating.load(Ordering::SeqCst) == 0 {
                return (statuses, None);
            }
            let mut written = Vec::with_capacity(unstored.len());
            let mut ops = Vec::with_capacity(unstored.len());
            for id in unstored.drain() {
                // A task forgotten meanwhile has had its record deleted: nothing to write.
                let Some(entry) = tasks.get(&id) else {
                    continue;
                };
                match Op::put_task(&entry.task) {
                    Ok(op) => {
                        ops.push(op);
                        written.push(id);
                    }
                    Err(e) => {
                        tracing::error!(task = %id, node = %self.name(), error = %e, "cannot encode a task");
                    }
                }
            }
            // Submitted under the lock, so that it is queued after every earlier write of these
            // tasks and before every later one.
            let pending = self.inner.store.submit(ops);
            (statuses, Some((written, pending)))
        }
    }

    /// The second half of [`Worker::stored_statuses`]: waits for the write; when it failed, the
    /// tasks it carried are deferred again. Whether it was synced.
    pub(super) async fn settle_deferred(&self, (written, pending): (Vec<TaskId>, Pending)) -> bool {
        match pending.wait().await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(node = %self.name(), error = %e, tasks = written.len(), "store write failed: deferred task changes");
                let tasks = lock(&self.inner.tasks);
                lock(&self.inner.unstored)
                    .extend(written.into_iter().filter(|id| tasks.contains_key(id)));
                false
            }
        }
    }

    fn mark_dirty(&self, id: TaskId) {
        lock(&self.inner.dirty).insert(id);
        self.inner.report_now.notify_one();
    }

    /// Sets a task's desired state to stop and waits (up to the grace period and a margin) for its
    /// container to be stopped and removed. Stopping a finished task is a conflict.
    pub async fn stop(&self, id: TaskId, reason: &str) -> Result<Task, WorkerError> {
        let task = self.task(id).ok_or(WorkerError::NotFound(id))?;
        if task.is_finished() {
            return Err(WorkerError::Conflict(format!(
                "task {id} is already {} and cannot be stopped",
                task.state
            )));
        }
        tracing::info!(task = %id, node = %self.name(), generation = task.generation, %reason, "stop requested");
        let reason = reason.to_string();
        self.update(id, |t| {
            t.desired = Desired::Stop;
            t.record(t.state, &format!("stop requested: {reason}"));
        })
        .await?;
        self.poke(id);
        let deadline = self.inner.opts.stop_grace + Duration::from_secs(10);
        let done = tokio::time::timeout(deadline, async {
            loop {
                match self.task(id) {
                    Some(t) if !t.is_finished() => {}
                    other => return other,
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        match done {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(WorkerError::NotFound(id)),
            // Still stopping: answer with what we have; the report follows when it ends.
            Err(_) => self.task(id).ok_or(WorkerError::NotFound(id)),
        }
    }

    fn poke(&self, id: TaskId) {
        if let Some(e) = lock(&self.inner.tasks).get(&id) {
            e.poke.notify_one();
        }
    }

    /// Removes a task entirely: stops and removes its container and deletes its record.
    pub async fn forget(&self, id: TaskId, reason: &str) -> Result<(), WorkerError> {
        let task = self.task(id).ok_or(WorkerError::NotFound(id))?;
        self.inner.ops.forget(id);
        if !task.is_finished() {
            // Let the supervisor stop it cleanly first; a failure here is logged and the container
            // is removed by force below all the same.
            if let Err(e) = self.stop(id, reason).await {
                tracing::warn!(task = %id, node = %self.name(), error = %e, "stop before forgetting failed");
            }
        }
        let container = self.task(id).and_then(|t| t.container_id);
        if let Some(cid) = container {
            match self.inner.runtime.remove(&cid, true).await {
                Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let pending = {
            let mut tasks = lock(&self.inner.tasks);
            let Some(entry) = tasks.remove(&id) else {
                return Ok(());
            };
            // Wake a supervisor that may still wait on a backoff so it notices the task is gone.
            entry.poke.notify_one();
            lock(&self.inner.unstored).remove(&id);
            self.inner.store.submit(vec![Op::delete_task(id)])
        };
        if let Err(e) = pending.wait().await {
            tracing::error!(task = %id, node = %self.name(), error = %e, "store write failed: forget a task");
            return Err(e.into());
        }
        lock(&self.inner.dirty).remove(&id);
        tracing::info!(task = %id, node = %self.name(), generation = task.generation, %reason, "forgot task");
        Ok(())
    }

    /// Applies a stop order from the manager.
    async fn obey(&self, order: StopOrder) {
        let result = if order.purge {
            self.forget(order.id, &order.reason).await
        } else {
            self.stop(order.id, &order.reason).await.map(|_| ())
        };
        match result {
            Ok(()) | Err(WorkerError::NotFound(_)) | Err(WorkerError::Conflict(_)) => {}
            Err(e) => {
                tracing::warn!(task = %order.id, node = %self.name(), error = %e, "cannot obey a stop order")
            }
        }
    }

    /// Reads a task's logs from its container.
    pub async fn logs(
        &self,
        id: TaskId,
        tail: Option<usize>,
    ) -> Result<poseidon_runtimes::Logs, WorkerError> {
        let task = self.task(id).ok_or(WorkerError::NotFound(id))?;
        let cid = task.container_id.ok_or_else(|| {
            WorkerError::Conflict(format!("task {id} has no container (it is {})", task.state))
        })?;
        match self.inner.runtime.logs(&cid, tail).await {
            Ok(l) => Ok(l),
            Err(RuntimeError::NoSuchContainer(_)) => Err(WorkerError::Conflict(format!(
                "the container of task {id} was removed, its logs with it"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Host and per-container statistics.
    pub async fn stats(&self) -> stats::WorkerStats {
        stats::collect(self).await
    }

    /// Flushes the store; called on shutdown. Containers keep running.
    pub async fn close(&self) {
        // Every acknowledged write is already synced; deferred changes are written now, and the
        // synced write that carries them (empty when there are none) makes sure the queue has
        // drained before the process exits.
        if self.stored_statuses(Some(&[])).await.is_none() {
            tracing::error!(node = %self.name(), "store flush on close failed");
            return;
        }
        if let Err(e) = self.inner.store.write(Vec::new()).await {
            tracing::error!(node = %self.name(), error = %e, "store flush on close failed");
        }
    }
}
