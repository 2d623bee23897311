//! The per-task supervisor: a thin driver around the phase machine in [`super::phase`].
//!
//! One supervisor runs per active task. Each turn it observes what its phase waits for (an adoption
//! inspect, a start, a container's end, a backoff, a stop), hands the observation to
//! [`phase::next`], carries out the actions it returns, and moves to the next phase. A stop request
//! or a forgotten task is checked before every observation, so it is seen in every phase.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use poseidon_runtimes::{
    labels, ContainerSpec, ContainerStatus, MountKind, MountSpec, PortSpec, RuntimeError,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::phase::{self, Action, Ctx, Event, Phase};
use super::{health, lock, Worker};
use crate::task::{Desired, HostPort, PullPolicy, State, Task, TaskId, VolumeSource};

/// How a supervisor begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A fresh assignment: start a container.
    Assigned,
    /// A task loaded from the store after a restart, with the container found for it, if any.
    Resumed(Option<String>),
}

/// Runs a task's supervisor until it ends or the worker shuts down. Shutting down leaves the
/// container as it is (as a process exit would), and the next start adopts it.
pub(crate) fn spawn(w: Worker, id: TaskId, origin: Origin) {
    let shutdown = w.inner.shutdown.clone();
    w.inner.supervisors.fetch_add(1, Ordering::SeqCst);
    let alive = Alive(w.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = supervise(w, id, origin) => {}
            _ = shutdown.wait() => {}
        }
        drop(alive);
    });
}

/// Counts a supervisor down when it ends, however it ends (a panic included).
struct Alive(Worker);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.inner.supervisors.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) async fn supervise(w: Worker, id: TaskId, origin: Origin) {
    // A turn reads only what it needs of the task, under the lock: a whole copy a turn was a
    // good part of a supervisor's work on a busy worker (issue 17).
    let Some(poke) = lock(&w.inner.tasks).get(&id).map(|e| e.poke.clone()) else {
        return;
    };
    let (mut phase, mut exponent) = match origin {
        Origin::Assigned => (Phase::Start { container: None }, 0),
        // After a restart the exponent is not known; the visible count is a safe upper bound
        // (a run of the reset time brings it back to 0).
        Origin::Resumed(container) => {
            let Some((state, restart_count)) = w.read(id, |t| (t.state, t.restart_count)) else {
                return;
            };
            (
                Phase::Adopt {
                    container,
                    was_running: state == State::Running,
                },
                restart_count,
            )
        }
    };
    let mut running_since: Option<Instant> = None;
    while phase != Phase::Done {
        let event = match w.read(id, |t| t.desired) {
            None => Event::Forgotten,
            Some(Desired::Stop) if !matches!(phase, Phase::Stopping { .. }) => Event::StopRequested,
            Some(_) => observe(&w, id, &phase, &poke).await,
        };
        let Some((policy, restart_count, started_ms)) = w.read(id, |t| {
            (t.spec.restart_policy.clone(), t.restart_count, t.started_ms)
        }) else {
            return;
        };
        let ran = running_since.map(|s| s.elapsed()).unwrap_or_default();
        let ends = matches!(
            event,
            Event::Exited(_) | Event::Unhealthy(_) | Event::Vanished | Event::FoundExited(_)
        );
        let step = phase::next(
            &phase,
            event.clone(),
            Ctx {
                policy: &policy,
                restart_count,
                exponent,
                ran,
                now: Instant::now(),
            },
        );
        if step.phase == phase && step.actions.is_empty() && !matches!(phase, Phase::Done) {
            tracing::debug!(task = %id, ?phase, ?event, "event changes nothing in this phase");
        }
        if ends {
            running_since = None;
        }
        for action in step.actions {
            if let Action::MarkRunning { adopted, .. } = &action {
                running_since = Some(if *adopted {
                    adopted_since(started_ms)
                } else {
                    Instant::now()
                });
            }
            // Boxed, as is each step below that is taken once or twice in a task's life: the
            // supervisor future is then about what waits on a running container, which every
            // running task keeps in memory for as long as it runs (issue 17).
            Box::pin(act(&w, id, action, &poke)).await;
        }
        phase = step.phase;
        exponent = step.exponent;
    }
}

/// When an adopted container started, on tokio's clock, from the wall-clock time the task records.
fn adopted_since(started_ms: Option<u64>) -> Instant {
    let ago = started_ms
        .map(|s| Duration::from_millis(crate::util::now_ms().saturating_sub(s)))
        .unwrap_or_default();
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

/// Does what the phase waits for and says what happened.
async fn observe(w: &Worker, id: TaskId, phase: &Phase, poke: &Notify) -> Event {
    let rt = &w.inner.runtime;
    match phase {
        Phase::Adopt {
            container: None, ..
        } => Event::FoundNothing,
        Phase::Adopt {
            container: Some(cid),
            ..
        } => match rt.inspect(cid).await {
            Ok(info) => {
                w.engine_answered();
                match info.status {
                    ContainerStatus::Running => Event::FoundRunning,
                    ContainerStatus::Exited => Event::FoundExited(info.exit_code.unwrap_or(-1)),
                    _ => Event::FoundCreated,
                }
            }
            Err(RuntimeError::NoSuchContainer(_)) => Event::FoundNothing,
            Err(e) if e.is_engine_down() => {
                w.engine_failed(&e);
                Event::EngineDown(e.to_string())
            }
            Err(e) => {
                tracing::warn!(task = %id, container = %cid, error = %e, "cannot inspect the adopted container; starting anew");
                Event::FoundNothing
            }
        },
        Phase::Start {
            container: Some(cid),
        } => {
            store_update(w, id, "record the adopted container", |t| {
                t.container_id = Some(cid.clone())
            })
            .await;
            match rt.start(cid).await {
                Ok(()) => Event::Started(cid.clone()),
                Err(e) => {
                    tracing::warn!(task = %id, container = %cid, error = %e, "cannot start the created container");
                    if e.is_engine_down() {
                        w.engine_failed(&e);
                        return Event::EngineDown(e.to_string());
                    }
                    Event::StartFailed(e.to_string())
                }
            }
        }
        Phase::Start { container: None } => match Box::pin(start_container(w, id)).await {
            Started::Running(cid) => Event::Started(cid),
            Started::Failed(msg) => Event::StartFailed(msg),
            Started::EngineDown(msg) => Event::EngineDown(msg),
        },
        Phase::Watch { container } => watch(w, id, container, poke).await,
        Phase::Backoff { until } => loop {
            tokio::select! {
                _ = tokio::time::sleep_until(*until) => return Event::BackoffElapsed,
                _ = poke.notified() => match w.read(id, |t| t.desired) {
                    None => return Event::Forgotten,
                    Some(Desired::Stop) => return Event::StopRequested,
                    Some(_) => {}
                },
            }
        },
        Phase::Stopping { container } => {
            let cid = container
                .clone()
                .or_else(|| w.read(id, |t| t.container_id.clone()).flatten());
            Box::pin(finish_stop(w, id, cid)).await;
            Event::Stopped
        }
        Phase::Done => Event::Forgotten,
    }
}

/// Carries out one action of a step.
async fn act(w: &Worker, id: TaskId, action: Action, poke: &Notify) {
    let node = w.name().to_string();
    match action {
        Action::MarkRunning { container, adopted } => {
            mark_running(w, id, &container, adopted).await;
            if adopted {
                tracing::info!(task = %id, node = %node, container = %container, "adopted a running container");
            }
        }
        Action::RecordEnd {
            failed,
            exit_code,
            reason,
        } => {
            let to = if failed {
                State::Failed
            } else {
                State::Completed
            };
            store_update(w, id, "record the end of a run", |t| {
                t.exit_code = exit_code;
                let steps = crate::task::path(t.state, to).unwrap_or_default();
                for s in steps {
                    if let Err(e) = t.set_state(s, &reason) {
                        tracing::warn!(task = %t.id, error = %e, "illegal transition skipped");
                    }
                }
            })
            .await;
            tracing::info!(task = %id, node = %node, exit_code = ?exit_code, %reason, "task ended");
        }
        Action::AnnounceRestart { delay, restart } => {
            let updated = store_update(w, id, "announce a restart", |t| {
                // The reason keeps why it ended: reports carry only a task's latest state and
                // reason, so a separate "restarting" event would hide the exit from the manager.
                let why = t.reason.clone().unwrap_or_default();
                t.record(
                    t.state,
                    &format!("{why}; restarting in {:.1} s", delay.as_secs_f64()),
                );
                (t.generation, t.exit_code)
            })
            .await;
            let (generation, exit_code) = updated.unwrap_or_default();
            tracing::info!(task = %id, node = %node, generation, exit_code = ?exit_code, restart, delay_ms = delay.as_millis() as u64, "restarting by policy");
        }
        Action::BeginRestart => {
            // A restart first removes the old container, so the new one never collides with it;
            // its last output is kept for `logs --previous`.
            if let Some(cid) = w.read(id, |t| t.container_id.clone()).flatten() {
                super::ops::keep_previous_logs(w, id, &cid).await;
                remove_container(w, id, &cid).await;
            }
            w.inner
                .ops
                .restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            store_update(w, id, "begin a restart", |t| {
                t.container_id = None;
                t.host_ports.clear();
                t.restart_count += 1;
                let n = t.restart_count;
                if let Err(e) = t.set_state(State::Scheduled, &format!("restart {n} by policy")) {
                    tracing::warn!(task = %t.id, error = %e, "illegal transition skipped");
                }
            })
            .await;
        }
        Action::Note(note) => {
            store_update(w, id, "note a problem", |t| t.record(t.state, &note)).await;
        }
        Action::Pause(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = poke.notified() => {}
            }
        }
    }
}

/// Applies `f` through [`Worker::update`], logging a store failure (the supervisor goes on: the
/// state is in memory and the next successful write carries it).
async fn store_update<R>(
    w: &Worker,
    id: TaskId,
    what: &str,
    f: impl FnOnce(&mut Task) -> R,
) -> Option<R> {
    match w.update(id, f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(task = %id, node = %w.name(), error = %e, "store write failed: {what}");
            None
        }
    }
}

/// Removes a container, logging a failure other than "already gone".
async fn remove_container(w: &Worker, id: TaskId, cid: &str) {
    match w.inner.runtime.remove(cid, true).await {
        Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
        Err(e) => {
            tracing::warn!(task = %id, container = %cid, error = %e, "cannot remove the container")
        }
    }
}

/// The mounts of a task's container: named volumes as they are, host volumes resolved through the
/// worker's allow-list. A host volume the list lacks is an error (the assignment was checked when it
/// arrived, so this happens only when the config changed under a task held across a restart).
fn mounts(w: &Worker, task: &Task) -> Result<Vec<MountSpec>, String> {
    task.spec
        .volumes
        .iter()
        .map(|v| {
            let (kind, source) = match &v.source {
                VolumeSource::Named(name) => (MountKind::Volume, name.clone()),
                VolumeSource::HostVolume(name) => {
                    let path = w.inner.opts.host_volumes.get(name).ok_or_else(|| {
                        format!(
                            "host volume {name:?} is not offered by node {} any more",
                            w.name()
                        )
                    })?;
                    (MountKind::Bind, path.display().to_string())
                }
            };
            Ok(MountSpec {
                kind,
                source,
                target: v.target.clone(),
                read_only: v.read_only,
            })
        })
        .collect()
}

/// The task's environment with `POSEIDON_TASK_ID` and its secrets opened. A secret that cannot be opened (no key, or
/// sealed with another cluster's key) is left out and logged by name, never by value.
fn env_with_secrets(w: &Worker, task: &Task) -> BTreeMap<String, String> {
    let mut env = task.spec.env.clone();
    // Every container knows which task it is (a backend can say who answered, logs can name it).
    env.insert("POSEIDON_TASK_ID".into(), task.id.to_string());
    if task.spec.secrets.is_empty() {
        return env;
    }
    match &w.inner.security.secrets {
        Some(key) => {
            for (name, sealed) in &task.spec.secrets {
                match key.open(name, sealed) {
                    Ok(value) => {
                        env.insert(name.clone(), value);
                    }
                    Err(e) => {
                        tracing::error!(task = %task.id, secret = %name, error = %e, "cannot open a secret; the container starts without it")
                    }
                }
            }
        }
        None => {
            tracing::error!(task = %task.id, "the task has secrets but this worker has no secrets key (it gets one when it joins with acl = true); the container starts without them")
        }
    }
    env
}

/// The container spec for a task.
fn container_spec(w: &Worker, task: &Task) -> Result<ContainerSpec, String> {
    let mut labels_map: BTreeMap<String, String> = task.spec.labels.clone();
    labels_map.insert(labels::MANAGED.into(), "true".into());
    labels_map.insert(labels::TASK.into(), task.id.to_string());
    labels_map.insert(labels::NODE.into(), w.inner.opts.name.clone());
    labels_map.insert(labels::GENERATION.into(), task.generation.to_string());
    Ok(ContainerSpec {
        name: format!("{}-g{}", task.container_name(), task.generation)
            + &if task.restart_count > 0 {
                format!("-r{}", task.restart_count)
            } else {
                String::new()
            },
        image: task.spec.image.clone(),
        cmd: task.spec.cmd.clone(),
        env: env_with_secrets(w, task),
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
        mounts: mounts(w, task)?,
    })
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
    let classify = |what: &str, e: RuntimeError| {
        tracing::warn!(task = %id, node = %w.name(), generation = task.generation, error = %e, "container {what} failed");
        if e.is_engine_down() {
            w.engine_failed(&e);
            Started::EngineDown(e.to_string())
        } else {
            Started::Failed(e.to_string())
        }
    };
    let spec = match container_spec(w, &task) {
        Ok(spec) => spec,
        Err(why) => {
            tracing::warn!(task = %id, node = %w.name(), generation = task.generation, error = %why, "cannot build the container spec");
            return Started::Failed(why);
        }
    };
    let pulled = match task.spec.pull {
        PullPolicy::Missing => rt.ensure_image(&task.spec.image, &progress).await,
        PullPolicy::Always => rt.pull_image(&task.spec.image, &progress).await,
    };
    if let Err(e) = pulled {
        return classify("image pull", e);
    }
    let create_started = Instant::now();
    let cid = match rt.create(&spec).await {
        Ok(cid) => cid,
        Err(RuntimeError::Conflict(_)) => {
            // A container of this exact name exists: left from a crash between create and store.
            // It carries our labels (the name embeds id, generation and restart count), so take it.
            match rt.inspect(&spec.name).await {
                Ok(info) => info.id,
                Err(e) => return classify("inspect", e),
            }
        }
        Err(e) => return classify("create", e),
    };
    w.engine_answered();
    // The container's id goes into memory only; the synced write of the Running (or failed)
    // state that follows carries it to the store. A crash in between loses nothing: adoption
    // finds the container by its task and generation labels ("even one created just before a
    // crash whose id never reached the store", `adopt::plan`). A synced write of its own here was
    // one of the five per task on the cluster path (issue 17).
    if !w.remember(id, |t| t.container_id = Some(cid.clone())) {
        // Forgotten (purged) while the image was pulled or the container made: nobody tracks
        // this container, so it must not run.
        remove_container(w, id, &cid).await;
        return Started::Failed("task forgotten".into());
    }
    // Docker picks a host port for a binding without one, and may pick a port that some other
    // process has bound meanwhile ("address already in use"); each start picks again, so retry a
    // few times rather than fail the task on bad luck.
    let docker_chosen = task.spec.ports.iter().any(|p| p.host_port.is_none());
    let mut attempts = 0;
    loop {
        match rt.start(&cid).await {
            Ok(()) => {
                w.inner.ops.create_start.observe(create_started.elapsed());
                return Started::Running(cid);
            }
            Err(RuntimeError::Daemon { message, .. })
                if docker_chosen && attempts < 3 && message.contains("address already in use") =>
            {
                attempts += 1;
            }
            Err(e) => return classify("start", e),
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

/// Records that `cid` runs: its ports, health "starting" when checked, and the state Running.
async fn mark_running(w: &Worker, id: TaskId, cid: &str, adopted: bool) {
    // Only a task that publishes ports has host ports to read: the others are spared a round
    // trip to the engine on every start (issue 17).
    let publishes = lock(&w.inner.tasks)
        .get(&id)
        .is_some_and(|e| !e.task.spec.ports.is_empty());
    let ports = if !publishes {
        Vec::new()
    } else {
        match w.inner.runtime.inspect(cid).await {
            Ok(info) => host_ports(&info),
            Err(e) => {
                tracing::warn!(task = %id, container = %cid, error = %e, "cannot read the container's ports");
                Vec::new()
            }
        }
    };
    let reason = if adopted {
        "adopted running container"
    } else {
        "container started"
    };
    // Deferred: the next report writes it, with the other starts of the moment, before it tells
    // the manager (a synced write a start was most of a worker's store work; issue 17). A crash
    // before that loses nothing: adoption finds the container by its labels.
    w.defer(id, |t| {
        t.container_id = Some(cid.to_string());
        t.host_ports = ports;
        // An adopted container that the store does not hold Running (a crash before its start
        // was written) is a new run too: the last run's exit code and health are not its own.
        if !adopted || t.state != State::Running {
            t.exit_code = None;
            if t.spec.health_check.is_some() {
                t.health = Some("starting".into());
            }
        }
        if t.state != State::Running {
            for s in crate::task::path(t.state, State::Running).unwrap_or_default() {
                if let Err(e) = t.set_state(s, reason) {
                    tracing::warn!(task = %t.id, error = %e, "illegal transition skipped");
                }
            }
        }
    });
}

/// Waits for the container to end, for a stop request, or for its health check to give up.
async fn watch(w: &Worker, id: TaskId, cid: &str, poke: &Notify) -> Event {
    // A task without checks waits on a future that never ends and takes no memory (a box of a
    // zero-sized future allocates nothing).
    let has_check = w
        .read(id, |t| t.spec.health_check.is_some())
        .unwrap_or(false);
    let mut health: Pin<Box<dyn Future<Output = String> + Send>> = if has_check {
        Box::pin(health::run(w.clone(), id, cid.to_string()))
    } else {
        Box::pin(std::future::pending())
    };
    loop {
        let waited = tokio::select! {
            r = w.inner.runtime.wait(cid) => r,
            _ = poke.notified() => {
                match w.read(id, |t| t.desired) {
                    None => return Event::Forgotten,
                    Some(Desired::Stop) => return Event::StopRequested,
                    Some(_) => continue,
                }
            }
            reason = &mut health => {
                // The probe gave up: kill the container and treat it as a failure.
                if let Err(e) = w.inner.runtime.kill(cid).await {
                    tracing::warn!(task = %id, container = %cid, error = %e, "cannot kill the unhealthy container");
                }
                return Event::Unhealthy(reason);
            }
        };
        match waited {
            Ok(code) => {
                w.engine_answered();
                return Event::Exited(code);
            }
            Err(RuntimeError::NoSuchContainer(_)) => return Event::Vanished,
            Err(e) => {
                // The engine blipped: do not fail the task, wait for the engine to come back.
                w.engine_failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = poke.notified() => match w.read(id, |t| t.desired) {
                        None => return Event::Forgotten,
                        Some(Desired::Stop) => return Event::StopRequested,
                        Some(_) => {}
                    },
                }
            }
        }
    }
}

/// Stops and removes the task's container and marks it Completed with the stop's reason.
///
/// The grace is the task's own when one is set (an at-most-one stop sets a short one, see
/// [`super::report`]), else the worker's `stop_grace`.
async fn finish_stop(w: &Worker, id: TaskId, container: Option<String>) {
    if let Some(cid) = container {
        let rt = &w.inner.runtime;
        let grace = lock(&w.inner.tasks)
            .get(&id)
            .and_then(|e| e.stop_grace)
            .unwrap_or(w.inner.opts.stop_grace);
        match rt.stop(&cid, grace).await {
            Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
            Err(e) => {
                tracing::warn!(task = %id, container = %cid, error = %e, "stop failed; killing");
                if e.is_engine_down() {
                    w.engine_failed(&e);
                }
                match rt.kill(&cid).await {
                    Ok(()) | Err(RuntimeError::NoSuchContainer(_)) => {}
                    Err(e) => {
                        tracing::warn!(task = %id, container = %cid, error = %e, "kill failed")
                    }
                }
            }
        }
        remove_container(w, id, &cid).await;
        tracing::info!(task = %id, node = %w.name(), container = %cid, grace_ms = grace.as_millis() as u64, "stopped");
    }
    let reason = w
        .read(id, |t| {
            t.events.iter().rev().find_map(|e| {
                e.reason
                    .strip_prefix("stop requested: ")
                    .map(str::to_string)
            })
        })
        .flatten()
        .unwrap_or_else(|| "stopped".to_string());
    store_update(w, id, "record the stop", |t| {
        t.container_id = None;
        t.host_ports.clear();
        t.health = None;
        if !t.state.is_terminal() {
            if let Err(e) = t.set_state(State::Completed, &reason) {
                tracing::warn!(task = %t.id, error = %e, "illegal transition skipped");
            }
        } else {
            t.record(t.state, &reason);
        }
    })
    .await;
}
