//! The worker: the agent on each host that runs tasks as containers.
//!
//! It takes assignments (from the manager, or from a user posting to its own API), keeps each task in
//! memory and in its store, and runs one supervisor per task ([`supervise`]). A supervisor drives its
//! task's container towards the desired state: start it, wait for it to exit (a blocking `wait`, so an
//! exit is seen at once), apply the restart policy and its backoff, stop it when asked. Every change is
//! persisted (synced) and reported to the manager at once; heartbeats repeat the whole picture so a lost
//! report is repaired. On start, [`Worker::start`] adopts the containers labelled with its own node name
//! and removes the ones it no longer owns, so a killed worker starts no duplicate and leaves no orphan.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poseidon_runtimes::{labels, ContainerSpec, PortSpec, Runtime, RuntimeError};
use tokio::sync::Notify;

use crate::http::{HttpClient, Shutdown};
use crate::store::{self, Op, Store, StoreError};
use crate::task::{Desired, HostPort, State, Task, TaskId, TaskSpec};
use crate::wire::{Assignment, Capacity, Heartbeat, HeartbeatReply, Report, StopOrder, TaskStatus};

pub mod api;
mod health;
pub mod stats;

/// One heartbeat in this many lists every task held (see `heartbeat_once`).
const FULL_EVERY: u64 = 10;

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The node name, written into container labels.
    pub name: String,
    /// How the manager reaches this worker (`http://host:port`).
    pub advertise: String,
    /// The manager's URL, or `None` for a worker used alone.
    pub manager: Option<String>,
    /// Declared capacity (or what sysinfo read).
    pub capacity: Capacity,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// SIGTERM-to-SIGKILL grace when stopping a container.
    pub stop_grace: Duration,
    /// A container network for task containers.
    pub network: Option<String>,
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
}

pub(crate) struct Inner {
    opts: WorkerOptions,
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    tasks: Mutex<HashMap<TaskId, Entry>>,
    /// Tasks changed since the last successful report.
    dirty: Mutex<HashSet<TaskId>>,
    report_now: Notify,
    client: HttpClient,
    /// When the manager last answered a heartbeat.
    last_contact: Mutex<Instant>,
    /// Heartbeats sent, to make every FULL_EVERY-th one full.
    beats: AtomicU64,
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
        let tasks = store::load_tasks(store.as_ref())?;
        let mut map = HashMap::new();
        for task in tasks {
            map.insert(
                task.id,
                Entry {
                    task,
                    poke: Arc::new(Notify::new()),
                    supervised: false,
                },
            );
        }
        let inner = Arc::new(Inner {
            opts,
            runtime,
            store,
            tasks: Mutex::new(map),
            dirty: Mutex::new(HashSet::new()),
            report_now: Notify::new(),
            client: HttpClient::new(Duration::from_secs(5)),
            last_contact: Mutex::new(Instant::now()),
            beats: AtomicU64::new(0),
            need_full: AtomicBool::new(true),
            engine_ok: AtomicBool::new(true),
            engine_problem: Mutex::new(None),
            ready: AtomicBool::new(false),
            ready_notify: Notify::new(),
            sys: stats::SysSampler::new(),
            shutdown,
        });
        let worker = Worker { inner };
        // Adoption needs the engine. If it is down, keep trying in the background: the API serves
        // what the store holds meanwhile, and assignments wait for adoption to finish.
        match worker.adopt().await {
            Ok(()) => worker.set_ready(),
            Err(e) => {
                worker.engine_failed(&e);
                let w = worker.clone();
                tokio::spawn(async move {
                    let mut delay = Duration::from_millis(200);
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = w.inner.shutdown.wait() => return,
                        }
                        match w.adopt().await {
                            Ok(()) => {
                                w.set_ready();
                                return;
                            }
                            Err(e) => w.engine_failed(&e),
                        }
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                });
            }
        }
        if worker.inner.opts.manager.is_some() {
            tokio::spawn(worker.clone().heartbeat_loop());
            tokio::spawn(worker.clone().report_loop());
        }
        tokio::spawn(worker.clone().disconnect_guard());
        tokio::spawn(worker.clone().engine_watch_loop());
        Ok(worker)
    }

    fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::SeqCst);
        self.inner.ready_notify.notify_waiters();
    }

    /// The node name.
    pub fn name(&self) -> &str {
        &self.inner.opts.name
    }

    /// The runtime this worker drives.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    fn engine_failed(&self, e: &RuntimeError) {
        if e.is_engine_down() {
            self.inner.engine_ok.store(false, Ordering::SeqCst);
            *lock(&self.inner.engine_problem) = Some(e.to_string());
        }
    }

    fn engine_answered(&self) {
        if !self.inner.engine_ok.swap(true, Ordering::SeqCst) {
            *lock(&self.inner.engine_problem) = None;
        }
    }

    /// Whether the container engine answered its last call.
    pub fn engine_ok(&self) -> bool {
        self.inner.engine_ok.load(Ordering::SeqCst)
    }

    /// Reconciles the store with the engine once: adopts our containers, removes the ones we do not
    /// own any more, and starts a supervisor for every task that should be acted on.
    async fn adopt(&self) -> Result<(), RuntimeError> {
        let label = format!("{}={}", labels::NODE, self.inner.opts.name);
        let containers = self.inner.runtime.list(&label).await?;
        self.engine_answered();
        // Group our containers by task; keep the one matching the task's generation.
        let mut keep: HashMap<TaskId, String> = HashMap::new();
        let mut remove: Vec<String> = Vec::new();
        {
            let tasks = lock(&self.inner.tasks);
            for c in &containers {
                let task_id = c
                    .labels
                    .get(labels::TASK)
                    .and_then(|t| t.parse::<TaskId>().ok());
                let generation = c
                    .labels
                    .get(labels::GENERATION)
                    .and_then(|g| g.parse::<u64>().ok());
                let owned = match (task_id, generation) {
                    (Some(id), Some(g)) => tasks.get(&id).and_then(|e| {
                        let t = &e.task;
                        let current = t.container_id.as_deref() == Some(c.id.as_str());
                        // A finished task keeps its last container (for its logs); an active task
                        // adopts the container of its generation, even one created just before a
                        // crash whose id never reached the store.
                        let wanted = t.generation == g
                            && if t.is_finished() {
                                current
                            } else {
                                !keep.contains_key(&id) || current
                            };
                        wanted.then_some(id)
                    }),
                    _ => None,
                };
                match owned {
                    Some(id) => {
                        if let Some(previous) = keep.insert(id, c.id.clone()) {
                            remove.push(previous);
                        }
                    }
                    None => remove.push(c.id.clone()),
                }
            }
        }
        for id in remove {
            match self.inner.runtime.remove(&id, true).await {
                Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let ids: Vec<TaskId> = lock(&self.inner.tasks).keys().copied().collect();
        for id in ids {
            let adopted = keep.get(&id).cloned();
            let spawn = {
                let mut tasks = lock(&self.inner.tasks);
                match tasks.get_mut(&id) {
                    Some(e) if !e.supervised && !e.task.is_finished() => {
                        e.supervised = true;
                        true
                    }
                    _ => false,
                }
            };
            if spawn {
                spawn_supervisor(self.clone(), id, adopted, true);
            }
        }
        Ok(())
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
        lock(&self.inner.tasks).get(&id).map(|e| e.task.clone())
    }

    /// Accepts a task submitted directly to this worker (generation 1 unless given).
    pub async fn submit(&self, id: Option<TaskId>, spec: TaskSpec) -> Result<Task, WorkerError> {
        let id = id.unwrap_or_default();
        if lock(&self.inner.tasks).contains_key(&id) {
            return Err(WorkerError::Conflict(format!(
                "a task with id {id} already exists"
            )));
        }
        self.accept(Assignment {
            id,
            generation: 1,
            spec,
            desired: Desired::Run,
        })
        .await
    }

    /// Accepts an assignment: stores it, then starts its supervisor at once.
    ///
    /// The same generation again is a no-op (a retried dispatch); a newer generation of a task held
    /// here replaces the old one; an older one is refused.
    pub async fn accept(&self, a: Assignment) -> Result<Task, WorkerError> {
        if !self.inner.ready.load(Ordering::SeqCst) {
            // Until adoption has run we cannot tell a new task from one whose container exists.
            let wait = self.inner.ready_notify.notified();
            if !self.inner.ready.load(Ordering::SeqCst) {
                tokio::time::timeout(Duration::from_secs(30), wait)
                    .await
                    .map_err(|_| {
                        WorkerError::Runtime(RuntimeError::Unreachable(
                            "the container engine has not answered since start".into(),
                        ))
                    })?;
            }
        }
        let existing = self.task(a.id);
        if let Some(old) = &existing {
            if a.generation < old.generation {
                return Err(WorkerError::Conflict(format!(
                    "task {} is held here at generation {}, newer than {}",
                    a.id, old.generation, a.generation
                )));
            }
            if a.generation == old.generation {
                if a.desired == Desired::Stop && old.desired == Desired::Run {
                    return self.stop(a.id, "stopped").await;
                }
                return Ok(old.clone());
            }
            // A newer placement on this same node: give up the old container first.
            self.forget(a.id, "replaced by a newer assignment").await?;
        }
        let mut task = Task::new(a.id, a.spec, State::Scheduled);
        task.generation = a.generation;
        task.desired = a.desired;
        task.node = Some(self.inner.opts.name.clone());
        task.record(State::Scheduled, "accepted by worker");
        let pending = {
            let mut tasks = lock(&self.inner.tasks);
            if let Some(e) = tasks.get(&a.id) {
                // The same assignment twice at once (a dispatch and a heartbeat's re-send): the
                // first one does the work, the second is answered as accepted.
                if e.task.generation == a.generation {
                    return Ok(e.task.clone());
                }
                return Err(WorkerError::Conflict(format!(
                    "task {} was submitted twice at once",
                    a.id
                )));
            }
            let op = Op::put_task(&task)?;
            let pending = self.inner.store.submit(vec![op]);
            tasks.insert(
                a.id,
                Entry {
                    task: task.clone(),
                    poke: Arc::new(Notify::new()),
                    supervised: true,
                },
            );
            pending
        };
        if let Err(e) = pending.wait().await {
            lock(&self.inner.tasks).remove(&a.id);
            return Err(e.into());
        }
        self.mark_dirty(a.id);
        spawn_supervisor(self.clone(), a.id, None, false);
        Ok(task)
    }

    /// Applies `f` to a task, persists the result (synced) and reports it. Returns the new task, or
    /// `None` when the task is gone.
    async fn update<R>(
        &self,
        id: TaskId,
        f: impl FnOnce(&mut Task) -> R,
    ) -> Result<Option<(Task, R)>, WorkerError> {
        let (task, r, pending) = {
            let mut tasks = lock(&self.inner.tasks);
            let Some(entry) = tasks.get_mut(&id) else {
                return Ok(None);
            };
            let mut copy = entry.task.clone();
            let r = f(&mut copy);
            if copy == entry.task {
                return Ok(Some((copy, r)));
            }
            let op = Op::put_task(&copy)?;
            let pending = self.inner.store.submit(vec![op]);
            entry.task = copy.clone();
            (copy, r, pending)
        };
        pending.wait().await?;
        self.mark_dirty(id);
        Ok(Some((task, r)))
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
        if !task.is_finished() {
            // Let the supervisor stop it cleanly first.
            let _ = self.stop(id, reason).await;
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
            self.inner.store.submit(vec![Op::delete_task(id)])
        };
        pending.wait().await?;
        lock(&self.inner.dirty).remove(&id);
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
            Err(e) => eprintln!("worker {}: cannot stop {}: {e}", self.name(), order.id),
        }
    }

    /// Builds a full heartbeat: capacity, stats, health, and the status of every task held.
    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat_of(true)
    }

    /// Builds a heartbeat; a partial one carries no task statuses (changes go in reports).
    fn heartbeat_of(&self, full: bool) -> Heartbeat {
        let tasks: Vec<TaskStatus> = if full {
            lock(&self.inner.tasks)
                .values()
                .map(|e| TaskStatus::of(&e.task))
                .collect()
        } else {
            Vec::new()
        };
        let mut stats = self.inner.sys.sample();
        stats.tasks = tasks.len();
        Heartbeat {
            name: self.inner.opts.name.clone(),
            address: self.inner.opts.advertise.clone(),
            capacity: self.inner.opts.capacity,
            stats,
            healthy: self.engine_ok(),
            problem: lock(&self.inner.engine_problem).clone(),
            tasks,
            full,
        }
    }

    /// Sends one heartbeat and applies the reply; returns whether the manager answered.
    pub async fn heartbeat_once(&self) -> bool {
        let Some(manager) = self.inner.opts.manager.clone() else {
            return false;
        };
        // The engine's health comes from `engine_watch_loop`, never from a ping made here: a hung
        // engine must make the node unhealthy, not late with its heartbeats (and so counted down).
        // Every task's status in every beat would make a beat cost what the node holds (the
        // submission benchmark's p99 rose by a third with 40,000 tasks on three workers). Changes
        // travel in reports at once; a full beat, which lets the manager re-send what a worker
        // lacks and stop stale copies, goes first, every FULL_EVERY beats, after any failed
        // beat, and when the manager asks.
        let n = self.inner.beats.fetch_add(1, Ordering::SeqCst);
        let full =
            self.inner.need_full.swap(false, Ordering::SeqCst) || n.is_multiple_of(FULL_EVERY);
        let hb = self.heartbeat_of(full);
        let url = format!("{manager}/nodes/{}/heartbeat", self.inner.opts.name);
        match self.inner.client.post::<_, HeartbeatReply>(&url, &hb).await {
            Ok(reply) => {
                *lock(&self.inner.last_contact) = Instant::now();
                if reply.want_full {
                    self.inner.need_full.store(true, Ordering::SeqCst);
                }
                // Accepting waits for adoption (and so for the engine): never hold the beat for it.
                for a in reply.assign {
                    let w = self.clone();
                    tokio::spawn(async move {
                        let id = a.id;
                        if let Err(e) = w.accept(a).await {
                            eprintln!("worker {}: cannot accept {id}: {e}", w.name());
                        }
                    });
                }
                for order in reply.stop {
                    let w = self.clone();
                    tokio::spawn(async move { w.obey(order).await });
                }
                true
            }
            Err(_) => {
                self.inner.need_full.store(true, Ordering::SeqCst);
                false
            }
        }
    }

    /// Pings the engine every heartbeat interval (each ping bounded), so that the node's health
    /// is known even when no task is starting, and recovers by itself when the engine returns.
    async fn engine_watch_loop(self) {
        loop {
            let timeout = self
                .inner
                .opts
                .heartbeat_interval
                .clamp(Duration::from_millis(500), Duration::from_secs(3));
            match tokio::time::timeout(timeout, self.inner.runtime.ping()).await {
                Ok(Ok(())) => self.engine_answered(),
                Ok(Err(e)) => self.engine_failed(&e),
                Err(_) => self.engine_failed(&RuntimeError::Timeout(format!(
                    "ping did not answer within {} ms",
                    timeout.as_millis()
                ))),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.opts.heartbeat_interval) => {}
                _ = self.inner.shutdown.wait() => return,
            }
        }
    }

    async fn heartbeat_loop(self) {
        loop {
            self.heartbeat_once().await;
            // A little jitter spreads many workers' beats over the interval.
            let base = self.inner.opts.heartbeat_interval;
            let jitter = base.mul_f64(0.1 * (crate::util::now_ms() % 100) as f64 / 100.0);
            tokio::select! {
                _ = tokio::time::sleep(base - jitter) => {}
                _ = self.inner.shutdown.wait() => return,
            }
        }
    }

    /// Sends the status of every changed task to the manager; returns whether it was delivered.
    pub async fn report_once(&self) -> bool {
        let Some(manager) = self.inner.opts.manager.clone() else {
            return false;
        };
        let ids: Vec<TaskId> = lock(&self.inner.dirty).drain().collect();
        if ids.is_empty() {
            return true;
        }
        let tasks: Vec<TaskStatus> = {
            let map = lock(&self.inner.tasks);
            ids.iter()
                .filter_map(|id| map.get(id).map(|e| TaskStatus::of(&e.task)))
                .collect()
        };
        let url = format!("{manager}/nodes/{}/reports", self.inner.opts.name);
        match self
            .inner
            .client
            .post::<_, HeartbeatReply>(&url, &Report { tasks })
            .await
        {
            Ok(reply) => {
                *lock(&self.inner.last_contact) = Instant::now();
                // A report can learn that a copy is stale as well as a heartbeat can.
                for order in reply.stop {
                    let w = self.clone();
                    tokio::spawn(async move { w.obey(order).await });
                }
                true
            }
            Err(_) => {
                // Put them back; the next report or heartbeat carries them.
                lock(&self.inner.dirty).extend(ids);
                false
            }
        }
    }

    async fn report_loop(self) {
        loop {
            tokio::select! {
                _ = self.inner.report_now.notified() => {}
                _ = self.inner.shutdown.wait() => return,
            }
            if !self.report_once().await {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = self.inner.shutdown.wait() => return,
                }
                self.inner.report_now.notify_one();
            }
        }
    }

    /// Stops tasks that opted in to at-most-one semantics once the manager has been out of reach
    /// for longer than they allow, so that a replacement elsewhere never runs beside them.
    async fn disconnect_guard(self) {
        if self.inner.opts.manager.is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = self.inner.shutdown.wait() => return,
            }
            let silent = lock(&self.inner.last_contact).elapsed();
            let due: Vec<TaskId> = lock(&self.inner.tasks)
                .values()
                .filter(|e| {
                    e.task.desired == Desired::Run
                        && !e.task.is_finished()
                        && e.task
                            .spec
                            .stop_after_disconnect_ms
                            .is_some_and(|ms| silent >= Duration::from_millis(ms))
                })
                .map(|e| e.task.id)
                .collect();
            for id in due {
                let w = self.clone();
                tokio::spawn(async move {
                    let _ = w.stop(id, "lost contact with the manager").await;
                });
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
        // Every acknowledged write is already synced; an empty synced write makes sure the queue
        // has drained before the process exits.
        let _ = self.inner.store.write(Vec::new()).await;
    }
}

/// The container spec for a task.
fn container_spec(w: &Worker, task: &Task) -> ContainerSpec {
    let mut labels_map: BTreeMap<String, String> = task.spec.labels.clone();
    labels_map.insert(labels::MANAGED.into(), "true".into());
    labels_map.insert(labels::TASK.into(), task.id.to_string());
    labels_map.insert(labels::NODE.into(), w.inner.opts.name.clone());
    labels_map.insert(labels::GENERATION.into(), task.generation.to_string());
    ContainerSpec {
        name: format!("{}-g{}", task.container_name(), task.generation)
            + &if task.restart_count > 0 {
                format!("-r{}", task.restart_count)
            } else {
                String::new()
            },
        image: task.spec.image.clone(),
        cmd: task.spec.cmd.clone(),
        env: task.spec.env.clone(),
        labels: labels_map,
        cpus: (task.spec.cpus > 0.0).then_some(task.spec.cpus),
        memory: (task.spec.memory > 0).then_some(task.spec.memory),
        ports: task
            .spec
            .ports
            .iter()
            .map(|p| PortSpec {
                container_port: p.container_port,
                host_port: p.host_port,
                protocol: p.protocol.clone(),
            })
            .collect(),
        network: w.inner.opts.network.clone(),
    }
}

/// How a start attempt ended.
enum Started {
    /// The container runs.
    Running(String),
    /// The start failed for this task (bad image, bad spec): the task fails.
    Failed(String),
    /// The engine is down: try again later without failing the task.
    EngineDown(String),
}

async fn start_container(w: &Worker, id: TaskId) -> Started {
    let Some(task) = w.task(id) else {
        return Started::Failed("task forgotten".into());
    };
    let rt = &w.inner.runtime;
    let wc = w.clone();
    // Progress notes go to the task's history and, at most every 300 ms, to the manager (so that
    // `poseidon run` can show the pull); they are not persisted, being notes within a state.
    let last_sent: Mutex<Option<Instant>> = Mutex::new(None);
    let progress = move |p: poseidon_runtimes::PullProgress| {
        let mut note = format!("pulling {}", p.status);
        if let (Some(c), Some(t)) = (p.current, p.total) {
            note.push_str(&format!(" {}/{}", c, t));
        }
        if let Some(e) = lock(&wc.inner.tasks).get_mut(&id) {
            let state = e.task.state;
            e.task.record(state, &note);
        }
        let mut last = lock(&last_sent);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(300)) {
            *last = Some(Instant::now());
            wc.mark_dirty(id);
        }
    };
    let classify = |e: RuntimeError| {
        if e.is_engine_down() {
            w.engine_failed(&e);
            Started::EngineDown(e.to_string())
        } else {
            Started::Failed(e.to_string())
        }
    };
    if let Err(e) = rt.ensure_image(&task.spec.image, &progress).await {
        return classify(e);
    }
    let spec = container_spec(w, &task);
    let cid = match rt.create(&spec).await {
        Ok(cid) => cid,
        Err(RuntimeError::Conflict(_)) => {
            // A container of this exact name exists: left from a crash between create and store.
            // It carries our labels (the name embeds id, generation and restart count), so take it.
            match rt.inspect(&spec.name).await {
                Ok(info) => info.id,
                Err(e) => return classify(e),
            }
        }
        Err(e) => return classify(e),
    };
    w.engine_answered();
    // Record the container before starting it, so a crash now leaves a container we know.
    match w.update(id, |t| t.container_id = Some(cid.clone())).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            // Forgotten (purged) while the image was pulled or the container made: nobody
            // tracks this container, so it must not run.
            let _ = rt.remove(&cid, true).await;
            return Started::Failed("task forgotten".into());
        }
        Err(_) => return Started::EngineDown("store write failed".into()),
    }
    // Docker picks a host port for a binding without one, and may pick a port that some other
    // process has bound meanwhile ("address already in use"); each start picks again, so retry a
    // few times rather than fail the task on bad luck.
    let docker_chosen = task.spec.ports.iter().any(|p| p.host_port.is_none());
    let mut attempts = 0;
    loop {
        match rt.start(&cid).await {
            Ok(()) => return Started::Running(cid),
            Err(RuntimeError::Daemon { message, .. })
                if docker_chosen && attempts < 3 && message.contains("address already in use") =>
            {
                attempts += 1;
            }
            Err(e) => return classify(e),
        }
    }
}

fn host_ports(info: &poseidon_runtimes::ContainerInfo) -> Vec<HostPort> {
    info.ports
        .iter()
        .filter(|p| p.host_port != 0)
        // Docker lists an IPv4 and an IPv6 binding for each port; one is enough for users.
        .fold(Vec::<HostPort>::new(), |mut acc, p| {
            if !acc
                .iter()
                .any(|h| h.container_port == p.container_port && h.protocol == p.protocol)
            {
                acc.push(HostPort {
                    container_port: p.container_port,
                    host_port: p.host_port,
                    protocol: p.protocol.clone(),
                });
            }
            acc
        })
}

/// How a running container ended.
enum Ended {
    Exited(i64),
    Unhealthy(String),
    Vanished,
    StopRequested,
    Forgotten,
}

/// Drives one task's container towards its desired state until the task is finished.
///
/// `adopted` is a container found at start-up for this task; `resume` says the task came from the
/// store (so its container may already run) rather than from a fresh assignment.
/// Runs a task's supervisor until it ends or the worker shuts down. Shutting down leaves the
/// container as it is (as a process exit would), and the next start adopts it.
fn spawn_supervisor(w: Worker, id: TaskId, adopted: Option<String>, resume: bool) {
    let shutdown = w.inner.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = supervise(w, id, adopted, resume) => {}
            _ = shutdown.wait() => {}
        }
    });
}

async fn supervise(w: Worker, id: TaskId, mut adopted: Option<String>, resume: bool) {
    let mut container: Option<String> = None;
    let mut first = true;
    loop {
        let Some(task) = w.task(id) else { return };
        let poke = match lock(&w.inner.tasks).get(&id) {
            Some(e) => e.poke.clone(),
            None => return,
        };
        if task.desired == Desired::Stop {
            finish_stop(&w, id, container.or(adopted.take()).or(task.container_id)).await;
            return;
        }
        // Resuming after a restart of the worker: take over what the engine already has.
        if first && resume {
            first = false;
            if let Some(cid) = adopted.take() {
                match w.inner.runtime.inspect(&cid).await {
                    Ok(info) if info.status == poseidon_runtimes::ContainerStatus::Running => {
                        let ports = host_ports(&info);
                        let _ = w
                            .update(id, |t| {
                                t.container_id = Some(cid.clone());
                                t.host_ports = ports;
                                if t.state != State::Running {
                                    for s in crate::task::path(t.state, State::Running)
                                        .unwrap_or_default()
                                    {
                                        let _ = t.set_state(s, "adopted running container");
                                    }
                                }
                            })
                            .await;
                        container = Some(cid);
                    }
                    Ok(info) if info.status == poseidon_runtimes::ContainerStatus::Exited => {
                        let code = info.exit_code.unwrap_or(-1);
                        let _ = w.update(id, |t| t.container_id = Some(cid.clone())).await;
                        if !after_exit(&w, id, Ended::Exited(code), &poke).await {
                            return;
                        }
                        continue;
                    }
                    Ok(_) => {
                        // Created but never started: start it now.
                        let _ = w.update(id, |t| t.container_id = Some(cid.clone())).await;
                        if let Err(e) = w.inner.runtime.start(&cid).await {
                            let _ = w.inner.runtime.remove(&cid, true).await;
                            let _ = w
                                .update(id, |t| {
                                    t.container_id = None;
                                    t.record(t.state, &format!("restarting after: {e}"));
                                })
                                .await;
                            continue;
                        }
                        container = Some(cid);
                        mark_running(&w, id).await;
                    }
                    Err(e) => {
                        if e.is_engine_down() {
                            w.engine_failed(&e);
                            adopted = Some(cid);
                            first = true;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        continue;
                    }
                }
            } else if task.state == State::Running {
                // It ran before the crash and its container is gone: that is a failure.
                if !after_exit(&w, id, Ended::Vanished, &poke).await {
                    return;
                }
                continue;
            }
        }
        if container.is_none() {
            match start_container(&w, id).await {
                Started::Running(cid) => {
                    container = Some(cid);
                    mark_running(&w, id).await;
                }
                Started::Failed(msg) => {
                    let _ = w
                        .update(id, |t| {
                            t.exit_code = None;
                            let _ = t.set_state(State::Failed, &msg);
                        })
                        .await;
                    if !restart_or_end(&w, id, true, &poke).await {
                        return;
                    }
                    continue;
                }
                Started::EngineDown(msg) => {
                    let _ = w
                        .update(id, |t| {
                            t.record(t.state, &format!("waiting for the engine: {msg}"))
                        })
                        .await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = poke.notified() => {}
                    }
                    continue;
                }
            }
        }
        let Some(cid) = container.clone() else {
            continue;
        };
        let ended = watch(&w, id, &cid, &poke).await;
        match ended {
            Ended::StopRequested => continue,
            Ended::Forgotten => return,
            other => {
                container = None;
                if !after_exit(&w, id, other, &poke).await {
                    return;
                }
            }
        }
    }
}

async fn mark_running(w: &Worker, id: TaskId) {
    let Some(cid) = w.task(id).and_then(|t| t.container_id) else {
        return;
    };
    let ports = match w.inner.runtime.inspect(&cid).await {
        Ok(info) => host_ports(&info),
        Err(_) => Vec::new(),
    };
    let has_check = w.task(id).is_some_and(|t| t.spec.health_check.is_some());
    let _ = w
        .update(id, |t| {
            t.host_ports = ports;
            t.exit_code = None;
            if has_check {
                t.health = Some("starting".into());
            }
            let _ = t.set_state(State::Running, "container started");
        })
        .await;
}

/// Waits for the container to end, for a stop request, or for its health check to give up.
async fn watch(w: &Worker, id: TaskId, cid: &str, poke: &Notify) -> Ended {
    let health = health::run(w.clone(), id, cid.to_string());
    tokio::pin!(health);
    loop {
        let waited = tokio::select! {
            r = w.inner.runtime.wait(cid) => r,
            _ = poke.notified() => {
                return match w.task(id) {
                    None => Ended::Forgotten,
                    Some(t) if t.desired == Desired::Stop => Ended::StopRequested,
                    Some(_) => continue,
                };
            }
            reason = &mut health => {
                // The probe gave up: kill the container and treat it as a failure.
                let _ = w.inner.runtime.kill(cid).await;
                return Ended::Unhealthy(reason);
            }
        };
        match waited {
            Ok(code) => {
                w.engine_answered();
                return Ended::Exited(code);
            }
            Err(RuntimeError::NoSuchContainer(_)) => return Ended::Vanished,
            Err(e) => {
                // The engine blipped: do not fail the task, wait for the engine to come back.
                w.engine_failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = poke.notified() => {
                        if w.task(id).is_none_or(|t| t.desired == Desired::Stop) {
                            return if w.task(id).is_none() { Ended::Forgotten } else { Ended::StopRequested };
                        }
                    }
                }
            }
        }
    }
}

/// Records how a container ended and decides on a restart. Returns false when the task is finished.
async fn after_exit(w: &Worker, id: TaskId, ended: Ended, poke: &Notify) -> bool {
    let Some(task) = w.task(id) else { return false };
    if task.desired == Desired::Stop {
        finish_stop(w, id, task.container_id).await;
        return false;
    }
    let (failed, code, reason) = match ended {
        Ended::Exited(0) => (false, Some(0), "exited with code 0".to_string()),
        Ended::Exited(c) => (true, Some(c), format!("exited with code {c}")),
        Ended::Unhealthy(r) => (true, None, format!("unhealthy: {r}")),
        Ended::Vanished => (
            true,
            None,
            "its container disappeared from the engine".to_string(),
        ),
        Ended::StopRequested | Ended::Forgotten => return false,
    };
    let to = if failed {
        State::Failed
    } else {
        State::Completed
    };
    let _ = w
        .update(id, |t| {
            t.exit_code = code;
            if t.state == State::Scheduled || t.state == State::Running {
                let _ = t.set_state(to, &reason);
            } else {
                for s in crate::task::path(t.state, to).unwrap_or_default() {
                    let _ = t.set_state(s, &reason);
                }
            }
        })
        .await;
    restart_or_end(w, id, failed, poke).await
}

/// Applies the restart policy after the task ended: waits the backoff (a stop request cuts it
/// short), removes the old container and loops. Returns false when the task is finished.
async fn restart_or_end(w: &Worker, id: TaskId, failed: bool, poke: &Notify) -> bool {
    let Some(task) = w.task(id) else { return false };
    let policy = &task.spec.restart_policy;
    if task.desired == Desired::Stop || !policy.should_restart(failed, task.restart_count) {
        return false;
    }
    // A task that ran long enough starts its backoff over (CrashLoopBackOff's reset).
    let ran_ms = match (task.started_ms, task.finished_ms) {
        (Some(s), Some(f)) if f >= s => f - s,
        _ => 0,
    };
    let restarts_for_backoff = if ran_ms >= policy.reset_after_ms {
        0
    } else {
        task.restart_count
    };
    let delay = policy.backoff(restarts_for_backoff);
    // The reason keeps why it ended: reports carry only a task's latest state and reason, so a
    // separate "restarting" event would hide the exit from the manager.
    let _ = w
        .update(id, |t| {
            let why = t.reason.clone().unwrap_or_default();
            t.record(
                t.state,
                &format!("{why}; restarting in {:.1} s", delay.as_secs_f64()),
            )
        })
        .await;
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = poke.notified() => {}
    }
    let Some(task) = w.task(id) else { return false };
    if task.desired == Desired::Stop {
        return false;
    }
    // A restart first removes the old container, so the new one never collides with it.
    if let Some(cid) = &task.container_id {
        let _ = w.inner.runtime.remove(cid, true).await;
    }
    let _ = w
        .update(id, |t| {
            t.container_id = None;
            t.host_ports.clear();
            t.restart_count += 1;
            let n = t.restart_count;
            let _ = t.set_state(State::Scheduled, &format!("restart {n} by policy"));
        })
        .await;
    true
}

/// Stops and removes the task's container and marks it Completed with reason `stopped`.
async fn finish_stop(w: &Worker, id: TaskId, container: Option<String>) {
    if let Some(cid) = container {
        let rt = &w.inner.runtime;
        match rt.stop(&cid, w.inner.opts.stop_grace).await {
            Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
            Err(e) => {
                if e.is_engine_down() {
                    w.engine_failed(&e);
                }
                let _ = rt.kill(&cid).await;
            }
        }
        let _ = rt.remove(&cid, true).await;
    }
    let reason = w
        .task(id)
        .and_then(|t| {
            t.events.iter().rev().find_map(|e| {
                e.reason
                    .strip_prefix("stop requested: ")
                    .map(str::to_string)
            })
        })
        .unwrap_or_else(|| "stopped".to_string());
    let _ = w
        .update(id, |t| {
            t.container_id = None;
            t.host_ports.clear();
            t.health = None;
            if !t.state.is_terminal() {
                let _ = t.set_state(State::Completed, &reason);
            } else {
                t.record(t.state, &reason);
            }
        })
        .await;
}
