//! An in-memory [`Runtime`] that records every call and breaks things on request.
//!
//! `MockRuntime` follows Docker's semantics where a caller could tell the difference (names are
//! unique, stopping a stopped container succeeds, removing a running one without `force` is a
//! conflict, `wait` on a never-started container returns at once), so that worker and manager tests
//! written against it hold against the real engine too. On top of that it lets a test:
//! - read back every call made ([`MockRuntime::calls`]);
//! - make images present, pullable or unpullable ([`MockRuntime::add_image`],
//!   [`MockRuntime::remove_image`], [`MockRuntime::missing_image`]);
//! - fail the next calls of an operation, or all of them ([`MockRuntime::fail_next`],
//!   [`MockRuntime::fail_always`]), slow them down ([`MockRuntime::set_delay`]) or hang them until
//!   released ([`MockRuntime::hang`]), or take the whole engine down ([`MockRuntime::set_unreachable`]);
//! - make containers of an image or name exit with a code some time after they start
//!   ([`MockRuntime::exit_after`]), fail to start ([`MockRuntime::fail_start`]), or die from outside
//!   ([`MockRuntime::kill_externally`]);
//! - choose what `exec`, `logs` and `stats` answer.
//!
//! Timers use tokio's clock, so a test under `tokio::time::pause()` runs a container's whole life in
//! no wall time. The mock is `Clone`: clones share one engine, so a test keeps a handle while the code
//! under test owns another.
//!
//! Over the house's ~700 lines: an in-memory engine that mirrors every method of the `Runtime`
//! trait with Docker's semantics and fault injection; splitting it per method would scatter one
//! state machine.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{broadcast, mpsc, watch};

use crate::image_ref::ImageRef;
use crate::{
    ContainerInfo, ContainerSpec, ContainerStatus, ContainerSummary, EventStream, ExecOutput,
    LogChunk, LogOptions, LogStream, Logs, OutputStream, PortBinding, ProgressFn, PullProgress,
    Runtime, RuntimeError, RuntimeEvent, StatsSample,
};

/// The exit code of a process ended by SIGTERM (128 + 15), as Docker reports after `stop`.
pub const SIGTERM_EXIT_CODE: i64 = 143;
/// The exit code of a process ended by SIGKILL (128 + 9), as Docker reports after `kill`.
pub const SIGKILL_EXIT_CODE: i64 = 137;

/// The first host port handed out when a port binding leaves the choice to the engine; Docker's
/// ephemeral range starts here too.
const FIRST_EPHEMERAL_PORT: u16 = 32768;

/// One operation of the [`Runtime`] trait, to aim fault injection at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`Runtime::ping`].
    Ping,
    /// [`Runtime::ensure_image`].
    EnsureImage,
    /// [`Runtime::pull_image`].
    PullImage,
    /// [`Runtime::create`].
    Create,
    /// [`Runtime::start`].
    Start,
    /// [`Runtime::stop`].
    Stop,
    /// [`Runtime::kill`].
    Kill,
    /// [`Runtime::remove`].
    Remove,
    /// [`Runtime::inspect`].
    Inspect,
    /// [`Runtime::wait`].
    Wait,
    /// [`Runtime::events`].
    Events,
    /// [`Runtime::exec`].
    Exec,
    /// [`Runtime::list`].
    List,
    /// [`Runtime::logs`].
    Logs,
    /// [`Runtime::stats`].
    Stats,
}

/// One recorded call, with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `ping()`.
    Ping,
    /// `ensure_image(image)`.
    EnsureImage(String),
    /// `pull_image(image)`.
    PullImage(String),
    /// `create(spec)`; the spec is shared with the container's record (a mock cluster makes
    /// millions of creates, and a copy each was a good part of its work).
    Create(Arc<ContainerSpec>),
    /// `start(id)`.
    Start(String),
    /// `stop(id, grace)`.
    Stop(String, Duration),
    /// `kill(id)`.
    Kill(String),
    /// `remove(id, force)`.
    Remove(String, bool),
    /// `inspect(id)`.
    Inspect(String),
    /// `wait(id)`.
    Wait(String),
    /// `events(label)`.
    Events(String),
    /// `exec(id, cmd, timeout)`.
    Exec(String, Vec<String>, Duration),
    /// `list(label)`.
    List(String),
    /// `logs(id, tail)`.
    Logs(String, Option<usize>),
    /// `stats(id)`.
    Stats(String),
}

impl Call {
    /// The operation this call was.
    pub fn op(&self) -> Op {
        match self {
            Call::Ping => Op::Ping,
            Call::EnsureImage(_) => Op::EnsureImage,
            Call::PullImage(_) => Op::PullImage,
            Call::Create(_) => Op::Create,
            Call::Start(_) => Op::Start,
            Call::Stop(..) => Op::Stop,
            Call::Kill(_) => Op::Kill,
            Call::Remove(..) => Op::Remove,
            Call::Inspect(_) => Op::Inspect,
            Call::Wait(_) => Op::Wait,
            Call::Events(_) => Op::Events,
            Call::Exec(..) => Op::Exec,
            Call::List(_) => Op::List,
            Call::Logs(..) => Op::Logs,
            Call::Stats(_) => Op::Stats,
        }
    }
}

/// An in-memory container engine for tests. See the module documentation.
#[derive(Clone, Default)]
pub struct MockRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MockRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("MockRuntime")
            .field("containers", &st.containers.len())
            .field("calls", &st.calls.len())
            .finish()
    }
}

struct Inner {
    state: Mutex<State>,
    /// Every event goes out here; each `events()` subscription filters it by label.
    feed: broadcast::Sender<Feed>,
    /// The operations currently hung; a call of one waits until it leaves the set.
    hung: watch::Sender<HashSet<Op>>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            state: Mutex::new(State::default()),
            feed: broadcast::channel(4096).0,
            hung: watch::channel(HashSet::new()).0,
        }
    }
}

#[derive(Clone)]
enum Feed {
    Event(RuntimeEvent),
    Disconnect(RuntimeError),
}

/// How many of the latest calls [`MockRuntime::calls`] keeps: a mock cluster runs for days and
/// makes millions of calls (each create's record holds a copy of its spec); counts stay exact.
pub const CALL_LOG: usize = 10_000;

#[derive(Default)]
struct State {
    /// The latest [`CALL_LOG`] calls.
    calls: VecDeque<Call>,
    /// Every call made, by operation.
    counts: HashMap<Op, usize>,
    /// Normalised image references that cannot be pulled, with the daemon-like message to fail with.
    missing_images: HashMap<String, String>,
    /// Normalised image references that are absent but pull fine.
    absent_images: HashSet<String>,
    failures: HashMap<Op, VecDeque<RuntimeError>>,
    persistent_failures: HashMap<Op, RuntimeError>,
    delays: HashMap<Op, Duration>,
    unreachable: bool,
    /// Behaviours keyed by container name or image reference.
    exits: HashMap<String, (Duration, i64)>,
    start_failures: HashMap<String, RuntimeError>,
    /// Names or images whose containers ignore SIGTERM: `stop` ends them only by SIGKILL at the
    /// end of the grace period.
    ignore_term: HashSet<String>,
    exec_results: HashMap<String, ExecOutput>,
    logs: HashMap<String, Logs>,
    /// Output written since creation by [`MockRuntime::write_log`], by container id.
    written: HashMap<String, Vec<LogChunk>>,
    /// Live output for followers: (container id, chunk).
    followers: Option<tokio::sync::broadcast::Sender<(String, LogChunk)>>,
    /// Log streams open now (a follower that was not closed is a leak).
    open_log_streams: usize,
    stats: HashMap<String, StatsSample>,
    /// Boxed, so that growing the map moves pointers, not containers.
    containers: HashMap<String, Box<Container>>,
    /// Container ids by name: a create checks the name and a lookup by name finds it without
    /// scanning every container (the mock cluster runs hundreds of thousands).
    names: HashMap<String, String>,
    created: u64,
    started: u64,
    next_port: u16,
}

struct Container {
    id: String,
    name: String,
    spec: Arc<ContainerSpec>,
    seq: u64,
    status: ContainerStatus,
    exit_code: Option<i64>,
    started_at: Option<String>,
    finished_at: Option<String>,
    error: Option<String>,
    ports: Vec<PortBinding>,
    ip_address: Option<String>,
    /// Counts starts, so that an exit timer armed by an earlier run does not end a later one.
    run: u64,
    /// Whether the container runs, and its last exit code; `wait` watches it.
    run_state: watch::Sender<RunState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunState {
    running: bool,
    exit_code: i64,
}

impl MockRuntime {
    /// A fresh engine: no containers, every image present, nothing failing.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not turn every later call into a second panic.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ----- Reading back what happened -----

    /// The calls made so far, in order (including calls that failed or are still hanging); only
    /// the latest [`CALL_LOG`] are kept.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.iter().cloned().collect()
    }

    /// The calls of one operation, in order (of the latest [`CALL_LOG`] calls).
    pub fn calls_of(&self, op: Op) -> Vec<Call> {
        self.state()
            .calls
            .iter()
            .filter(|c| c.op() == op)
            .cloned()
            .collect()
    }

    /// How many calls of `op` were made.
    pub fn count(&self, op: Op) -> usize {
        self.state().counts.get(&op).copied().unwrap_or(0)
    }

    /// Forgets the calls recorded so far (containers and settings stay).
    pub fn clear_calls(&self) {
        let mut st = self.state();
        st.calls.clear();
        st.counts.clear();
    }

    /// Every container, in creation order, as `inspect` would describe it.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        let st = self.state();
        let mut all: Vec<&Container> = st.containers.values().map(|c| &**c).collect();
        all.sort_by_key(|c| c.seq);
        all.into_iter().map(Container::info).collect()
    }

    /// One container by id, unique id prefix or name, as `inspect` would describe it.
    pub fn container(&self, id_or_name: &str) -> Option<ContainerInfo> {
        let st = self.state();
        let id = st.resolve(id_or_name)?;
        st.containers.get(&id).map(|c| c.info())
    }

    /// How many containers are running now.
    pub fn running_count(&self) -> usize {
        self.state()
            .containers
            .values()
            .filter(|c| c.status == ContainerStatus::Running)
            .count()
    }

    // ----- Images -----

    /// Marks `image` present (images are present by default; this undoes [`Self::missing_image`]
    /// and [`Self::remove_image`]).
    pub fn add_image(&self, image: &str) {
        let key = ImageRef::normalized(image);
        let mut st = self.state();
        st.missing_images.remove(&key);
        st.absent_images.remove(&key);
    }

    /// Marks `image` absent but pullable: `ensure_image` reports a few progress lines and then has it,
    /// and `create` fails with `NoSuchImage` until then.
    pub fn remove_image(&self, image: &str) {
        let key = ImageRef::normalized(image);
        let mut st = self.state();
        st.missing_images.remove(&key);
        st.absent_images.insert(key);
    }

    /// Marks `image` absent and impossible to pull: `ensure_image` fails with `NoSuchImage` and the
    /// message Docker gives for a repository it cannot find.
    pub fn missing_image(&self, image: &str) {
        let key = ImageRef::normalized(image);
        let repo = ImageRef::parse(image).map_or_else(|_| image.to_string(), |r| r.repo);
        let message = format!(
            "pull access denied for {repo}, repository does not exist or may require \
             'docker login': denied: requested access to the resource is denied"
        );
        let mut st = self.state();
        st.absent_images.remove(&key);
        st.missing_images.insert(key, message);
    }

    /// True when `image` is present locally.
    pub fn has_image(&self, image: &str) -> bool {
        let key = ImageRef::normalized(image);
        let st = self.state();
        !st.missing_images.contains_key(&key) && !st.absent_images.contains(&key)
    }

    // ----- Faults -----

    /// Makes the next call of `op` fail with `error` (queued behind earlier `fail_next` errors).
    pub fn fail_next(&self, op: Op, error: RuntimeError) {
        self.fail_next_n(op, 1, error);
    }

    /// Makes the next `n` calls of `op` fail with `error`.
    pub fn fail_next_n(&self, op: Op, n: usize, error: RuntimeError) {
        let mut st = self.state();
        let queue = st.failures.entry(op).or_default();
        for _ in 0..n {
            queue.push_back(error.clone());
        }
    }

    /// Makes every call of `op` fail with `error` until [`Self::clear_failures`].
    pub fn fail_always(&self, op: Op, error: RuntimeError) {
        self.state().persistent_failures.insert(op, error);
    }

    /// Forgets every failure queued or set for `op`.
    pub fn clear_failures(&self, op: Op) {
        let mut st = self.state();
        st.failures.remove(&op);
        st.persistent_failures.remove(&op);
    }

    /// Delays every call of `op` by `delay` (on tokio's clock) before it does anything;
    /// `Duration::ZERO` removes the delay.
    pub fn set_delay(&self, op: Op, delay: Duration) {
        let mut st = self.state();
        if delay.is_zero() {
            st.delays.remove(&op);
        } else {
            st.delays.insert(op, delay);
        }
    }

    /// Makes calls of `op` hang until [`Self::unhang`]; calls already waiting are held too. An
    /// `exec` still ends at its own timeout, as a real hung exec would.
    pub fn hang(&self, op: Op) {
        self.inner.hung.send_modify(|set| {
            set.insert(op);
        });
    }

    /// Releases the calls of `op` held by [`Self::hang`].
    pub fn unhang(&self, op: Op) {
        self.inner.hung.send_modify(|set| {
            set.remove(&op);
        });
    }

    /// Takes the whole engine down (every call fails with `Unreachable`, and open event streams end
    /// with an error) or brings it back. Containers keep their state, as they would across a
    /// daemon restart with live restore.
    pub fn set_unreachable(&self, down: bool) {
        self.state().unreachable = down;
        if down {
            self.disconnect_events(RuntimeError::Unreachable(
                "mock engine is unreachable".into(),
            ));
        }
    }

    /// Ends every open event stream with `error`, as a daemon restart would.
    pub fn disconnect_events(&self, error: RuntimeError) {
        // No subscriber is not an error: there is simply nobody to tell.
        let _ = self.inner.feed.send(Feed::Disconnect(error));
    }

    // ----- Container behaviour -----

    /// Makes containers whose name or image is `name_or_image` exit with `code` once they have run
    /// for `after` (each start arms a new timer). Without this, containers run until stopped.
    pub fn exit_after(&self, name_or_image: &str, after: Duration, code: i64) {
        self.state()
            .exits
            .insert(name_or_image.to_string(), (after, code));
    }

    /// Makes every start of containers whose name or image is `name_or_image` fail with `error`;
    /// the container stays created, with the error in `inspect`.
    pub fn fail_start(&self, name_or_image: &str, error: RuntimeError) {
        self.state()
            .start_failures
            .insert(name_or_image.to_string(), error);
    }

    /// Makes containers whose name or image is `name_or_image` ignore SIGTERM, as a process that
    /// installs its own handler can: `stop` then waits its whole grace period (on tokio's clock) and
    /// ends them with SIGKILL (exit code 137), as Docker does.
    pub fn ignore_sigterm(&self, name_or_image: &str) {
        self.state().ignore_term.insert(name_or_image.to_string());
    }

    /// Sets what `exec` answers in containers whose name or image is `name_or_image` (by default
    /// exit code 0 and no output).
    pub fn set_exec_result(&self, name_or_image: &str, result: ExecOutput) {
        self.state()
            .exec_results
            .insert(name_or_image.to_string(), result);
    }

    /// Makes the container `id_or_name` write `data` to `stream` now: followers of its logs
    /// receive it, and later reads of its logs include it.
    pub fn write_log(&self, id_or_name: &str, stream: OutputStream, data: &str) {
        let mut st = self.state();
        let Some(id) = st.resolve(id_or_name) else {
            return;
        };
        let chunk = LogChunk {
            stream,
            data: data.to_string(),
        };
        st.written
            .entry(id.clone())
            .or_default()
            .push(chunk.clone());
        if let Some(tx) = &st.followers {
            // No follower is fine: the chunk is kept above for later reads.
            let _ = tx.send((id, chunk));
        }
    }

    /// How many log streams are open now (each one ends when its receiver is dropped, or when
    /// a followed container stops).
    pub fn open_log_streams(&self) -> usize {
        self.state().open_log_streams
    }

    /// Sets what `logs` answers for containers whose name or image is `name_or_image` (by default
    /// `mock logs for <name>\n` on stdout).
    pub fn set_logs(&self, name_or_image: &str, logs: Logs) {
        self.state().logs.insert(name_or_image.to_string(), logs);
    }

    /// Sets what `stats` answers for running containers whose name or image is `name_or_image`.
    pub fn set_stats(&self, name_or_image: &str, sample: StatsSample) {
        self.state().stats.insert(name_or_image.to_string(), sample);
    }

    /// Ends a running container from outside Poseidon (an OOM kill, `docker kill`, a crash) with
    /// `code`. Returns false when there is no such running container.
    pub fn kill_externally(&self, id_or_name: &str, code: i64) -> bool {
        let mut st = self.state();
        match st.resolve(id_or_name) {
            Some(id) => st.finish(&self.inner.feed, &id, None, code),
            None => false,
        }
    }

    // ----- The common part of every call -----

    /// Records the call, then applies hang, delay, outage and injected failures, in that order.
    async fn enter(&self, call: Call) -> Result<(), RuntimeError> {
        let op = call.op();
        {
            let mut st = self.state();
            *st.counts.entry(op).or_insert(0) += 1;
            if st.calls.len() == CALL_LOG {
                st.calls.pop_front();
            }
            st.calls.push_back(call);
        }
        let mut hung = self.inner.hung.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = hung.wait_for(|set| !set.contains(&op)).await;
        let delay = self.state().delays.get(&op).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.state();
        if st.unreachable {
            return Err(RuntimeError::Unreachable(
                "mock engine is unreachable".into(),
            ));
        }
        if let Some(err) = st.failures.get_mut(&op).and_then(VecDeque::pop_front) {
            return Err(err);
        }
        if let Some(err) = st.persistent_failures.get(&op) {
            return Err(err.clone());
        }
        Ok(())
    }

    /// Arms the timer that ends run number `run` of container `id` with `code` after `after`.
    fn arm_exit(&self, id: String, run: u64, after: Duration, code: i64) {
        // A weak handle lets a dropped mock drop its containers even while timers are pending.
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(inner) = weak.upgrade() {
                let mock = MockRuntime { inner };
                let mut st = mock.state();
                st.finish(&mock.inner.feed, &id, Some(run), code);
            }
        });
    }
}

impl State {
    /// Finds a container's id from its id, a unique id prefix, or its name (with or without `/`).
    fn resolve(&self, key: &str) -> Option<String> {
        if self.containers.contains_key(key) {
            return Some(key.to_string());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(id) = self.names.get(name) {
            return Some(id.clone());
        }
        if key.is_empty() {
            return None;
        }
        let mut prefixed = self.containers.keys().filter(|id| id.starts_with(key));
        match (prefixed.next(), prefixed.next()) {
            (Some(id), None) => Some(id.clone()),
            _ => None,
        }
    }

    fn resolve_or_404(&self, key: &str) -> Result<String, RuntimeError> {
        self.resolve(key)
            .ok_or_else(|| RuntimeError::NoSuchContainer(format!("No such container: {key}")))
    }

    /// Looks a behaviour up by the container's name first, then by its image.
    fn behaviour<'a, T>(map: &'a HashMap<String, T>, c: &Container) -> Option<&'a T> {
        map.get(&c.name).or_else(|| {
            let image = ImageRef::normalized(&c.spec.image);
            map.iter()
                .find(|(k, _)| ImageRef::normalized(k) == image)
                .map(|(_, v)| v)
        })
    }

    /// Ends container `id` with `code` if it runs (and, given `run`, is still in that run).
    /// Returns whether it did.
    fn finish(
        &mut self,
        feed: &broadcast::Sender<Feed>,
        id: &str,
        run: Option<u64>,
        code: i64,
    ) -> bool {
        let Some(c) = self.containers.get_mut(id) else {
            return false;
        };
        if c.status != ContainerStatus::Running || run.is_some_and(|r| r != c.run) {
            return false;
        }
        c.status = ContainerStatus::Exited;
        c.exit_code = Some(code);
        c.finished_at = Some(rfc3339(SystemTime::now()));
        // Docker drops the published ports and the address once the container stops.
        c.ports.clear();
        c.ip_address = None;
        c.run_state.send_replace(RunState {
            running: false,
            exit_code: code,
        });
        let _ = feed.send(Feed::Event(RuntimeEvent::Died {
            id: c.id.clone(),
            exit_code: Some(code),
            labels: c.spec.labels.clone(),
        }));
        true
    }
}

impl Container {
    fn info(&self) -> ContainerInfo {
        ContainerInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            image: self.spec.image.clone(),
            status: self.status,
            exit_code: self.exit_code,
            started_at: self.started_at.clone(),
            finished_at: self.finished_at.clone(),
            error: self.error.clone(),
            oom_killed: false,
            ports: self.ports.clone(),
            health: None,
            ip_address: self.ip_address.clone(),
            labels: self.spec.labels.clone(),
        }
    }
}

/// True when `labels` carry `filter`, which is a key or `key=value` (Docker's label filter syntax).
fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// A 64-hex-digit id like Docker's, unique per `n`, whose 12-character short form is unique too.
fn container_id(n: u64) -> String {
    // The splitmix64 finaliser is a bijection, so distinct counters give distinct ids.
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("{z:016x}").repeat(4)
}

/// True for names Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Formats a time as RFC 3339 in UTC with nanoseconds, as Docker does.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Keeps the last `tail` lines of `text` (all of it when `tail` is `None`).
fn tail_lines(text: &str, tail: Option<usize>) -> String {
    let Some(n) = tail else {
        return text.to_string();
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines[lines.len().saturating_sub(n)..].concat()
}

#[async_trait::async_trait]
impl Runtime for MockRuntime {
    fn kind(&self) -> &'static str {
        "mock"
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        self.enter(Call::Ping).await
    }

    async fn ensure_image(
        &self,
        image: &str,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        self.enter(Call::EnsureImage(image.to_string())).await?;
        let r = ImageRef::parse(image)?;
        let key = r.to_string();
        let pulled = {
            let mut st = self.state();
            if let Some(message) = st.missing_images.get(&key) {
                return Err(RuntimeError::NoSuchImage(message.clone()));
            }
            st.absent_images.remove(&key)
        };
        if pulled {
            // Called outside the lock: the callback is the caller's code and may call back in.
            let lines = [
                (format!("Pulling from {}", r.repo), Some(r.tag.clone())),
                (
                    "Pulling fs layer".to_string(),
                    Some("0123456789ab".to_string()),
                ),
                (
                    "Download complete".to_string(),
                    Some("0123456789ab".to_string()),
                ),
                (
                    "Pull complete".to_string(),
                    Some("0123456789ab".to_string()),
                ),
                (format!("Status: Downloaded newer image for {key}"), None),
            ];
            for (status, layer) in lines {
                progress(PullProgress {
                    status,
                    layer,
                    current: None,
                    total: None,
                });
            }
        }
        Ok(())
    }

    async fn pull_image(&self, image: &str, progress: ProgressFn<'_>) -> Result<(), RuntimeError> {
        self.enter(Call::PullImage(image.to_string())).await?;
        let r = ImageRef::parse(image)?;
        let key = r.to_string();
        {
            let mut st = self.state();
            if let Some(message) = st.missing_images.get(&key) {
                return Err(RuntimeError::NoSuchImage(message.clone()));
            }
            st.absent_images.remove(&key);
        }
        // A pull of a present image still asks the registry; the engine then says it is up to date.
        progress(PullProgress {
            status: format!("Status: Image is up to date for {key}"),
            layer: None,
            current: None,
            total: None,
        });
        Ok(())
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let spec = Arc::new(spec.clone());
        self.enter(Call::Create(spec.clone())).await?;
        let image = ImageRef::parse(&spec.image)?.to_string();
        let mut st = self.state();
        if st.missing_images.contains_key(&image) || st.absent_images.contains(&image) {
            return Err(RuntimeError::NoSuchImage(format!("No such image: {image}")));
        }
        st.created += 1;
        let seq = st.created;
        let id = container_id(seq);
        let name = if spec.name.is_empty() {
            format!("mock_{seq}")
        } else {
            spec.name
                .strip_prefix('/')
                .unwrap_or(&spec.name)
                .to_string()
        };
        if !valid_name(&name) {
            return Err(RuntimeError::Daemon {
                status: 400,
                message: format!(
                    "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                ),
            });
        }
        if let Some(other) = st.names.get(&name) {
            return Err(RuntimeError::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". \
                 You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let container = Container {
            id: id.clone(),
            name,
            spec,
            seq,
            status: ContainerStatus::Created,
            exit_code: None,
            started_at: None,
            finished_at: None,
            error: None,
            ports: Vec::new(),
            ip_address: None,
            run: 0,
            run_state: watch::channel(RunState {
                running: false,
                exit_code: 0,
            })
            .0,
        };
        st.names.insert(container.name.clone(), id.clone());
        st.containers.insert(id.clone(), Box::new(container));
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.enter(Call::Start(id.to_string())).await?;
        let mut st = self.state();
        let id = st.resolve_or_404(id)?;
        let (start_failure, exit, ports_wanted, name) = {
            let c = &st.containers[&id];
            if c.status == ContainerStatus::Running {
                // Docker answers 304 Not Modified: success.
                return Ok(());
            }
            (
                State::behaviour(&st.start_failures, c).cloned(),
                State::behaviour(&st.exits, c).copied(),
                c.spec.ports.clone(),
                c.name.clone(),
            )
        };
        if let Some(err) = start_failure {
            if let Some(c) = st.containers.get_mut(&id) {
                c.error = Some(err.to_string());
            }
            return Err(err);
        }
        // An explicit host port already bound by a running container fails the start, as in Docker.
        for p in ports_wanted.iter() {
            let Some(host_port) = p.host_port else {
                continue;
            };
            let taken = st.containers.values().any(|c| {
                c.status == ContainerStatus::Running
                    && c.ports
                        .iter()
                        .any(|b| b.host_port == host_port && b.protocol == p.protocol)
            });
            if taken {
                let message = format!(
                    "driver failed programming external connectivity on endpoint {name}: \
                     Bind for 0.0.0.0:{host_port} failed: port is already allocated"
                );
                if let Some(c) = st.containers.get_mut(&id) {
                    c.error = Some(message.clone());
                }
                return Err(RuntimeError::Daemon {
                    status: 500,
                    message,
                });
            }
        }
        let mut ports = Vec::new();
        for p in ports_wanted {
            let host_port = match p.host_port {
                Some(port) => port,
                None => {
                    if st.next_port < FIRST_EPHEMERAL_PORT {
                        st.next_port = FIRST_EPHEMERAL_PORT;
                    }
                    let port = st.next_port;
                    st.next_port = st.next_port.checked_add(1).unwrap_or(FIRST_EPHEMERAL_PORT);
                    port
                }
            };
            ports.push(PortBinding {
                container_port: p.container_port,
                protocol: p.protocol.clone(),
                host_ip: "0.0.0.0".into(),
                host_port,
            });
        }
        st.started += 1;
        let address = format!(
            "172.17.{}.{}",
            (st.started / 250) % 256,
            st.started % 250 + 2
        );
        let Some(c) = st.containers.get_mut(&id) else {
            return Err(RuntimeError::NoSuchContainer(format!(
                "No such container: {id}"
            )));
        };
        c.status = ContainerStatus::Running;
        c.exit_code = None;
        c.error = None;
        c.started_at = Some(rfc3339(SystemTime::now()));
        c.ports = ports;
        c.ip_address = Some(address);
        c.run += 1;
        let run = c.run;
        c.run_state.send_replace(RunState {
            running: true,
            exit_code: 0,
        });
        let _ = self.inner.feed.send(Feed::Event(RuntimeEvent::Started {
            id: id.clone(),
            labels: c.spec.labels.clone(),
        }));
        drop(st);
        if let Some((after, code)) = exit {
            self.arm_exit(id, run, after, code);
        }
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.enter(Call::Stop(id.to_string(), grace)).await?;
        let (id, deaf) = {
            let st = self.state();
            let id = st.resolve_or_404(id)?;
            let c = &st.containers[&id];
            let deaf = c.status == ContainerStatus::Running
                && (st.ignore_term.contains(&c.name)
                    || st
                        .ignore_term
                        .iter()
                        .any(|k| ImageRef::normalized(k) == ImageRef::normalized(&c.spec.image)));
            (id, deaf)
        };
        if deaf {
            // The process ignores SIGTERM: Docker waits out the grace period, then kills it.
            tokio::time::sleep(grace).await;
            self.state()
                .finish(&self.inner.feed, &id, None, SIGKILL_EXIT_CODE);
            return Ok(());
        }
        // Stopping a stopped container is success (Docker's 304).
        self.state()
            .finish(&self.inner.feed, &id, None, SIGTERM_EXIT_CODE);
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        self.enter(Call::Kill(id.to_string())).await?;
        let mut st = self.state();
        let id = st.resolve_or_404(id)?;
        if st.finish(&self.inner.feed, &id, None, SIGKILL_EXIT_CODE) {
            Ok(())
        } else {
            Err(RuntimeError::Conflict(format!(
                "Cannot kill container: {id}: Container {id} is not running"
            )))
        }
    }

    async fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        self.enter(Call::Remove(id.to_string(), force)).await?;
        let mut st = self.state();
        let id = st.resolve_or_404(id)?;
        let running = st
            .containers
            .get(&id)
            .is_some_and(|c| c.status == ContainerStatus::Running);
        if running {
            if !force {
                return Err(RuntimeError::Conflict(format!(
                    "You cannot remove a running container {id}. Stop the container before \
                     attempting removal or force remove"
                )));
            }
            st.finish(&self.inner.feed, &id, None, SIGKILL_EXIT_CODE);
        }
        if let Some(c) = st.containers.remove(&id) {
            st.names.remove(&c.name);
        }
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.enter(Call::Inspect(id.to_string())).await?;
        let st = self.state();
        let id = st.resolve_or_404(id)?;
        st.containers
            .get(&id)
            .map(|c| c.info())
            .ok_or_else(|| RuntimeError::NoSuchContainer(format!("No such container: {id}")))
    }

    async fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        self.enter(Call::Wait(id.to_string())).await?;
        let mut rx = {
            let st = self.state();
            let id = st.resolve_or_404(id)?;
            match st.containers.get(&id) {
                Some(c) => c.run_state.subscribe(),
                None => {
                    return Err(RuntimeError::NoSuchContainer(format!(
                        "No such container: {id}"
                    )))
                }
            }
        };
        // Like Docker's `condition=not-running`, a created container that never ran returns at once
        // with 0: callers must start before they wait.
        let result = rx.wait_for(|s| !s.running).await.map(|s| s.exit_code);
        match result {
            Ok(code) => Ok(code),
            // The container was removed while running, which only `remove(force)` does after
            // recording the kill, so this is rare; report it as Docker would.
            Err(_) => Err(RuntimeError::NoSuchContainer(format!(
                "No such container: {id}"
            ))),
        }
    }

    async fn events(&self, label: &str) -> Result<EventStream, RuntimeError> {
        self.enter(Call::Events(label.to_string())).await?;
        // Subscribing before returning means no event after this call can be missed.
        let mut feed = self.inner.feed.subscribe();
        let (tx, rx) = mpsc::channel(256);
        let label = label.to_string();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = tx.closed() => return,
                    msg = feed.recv() => msg,
                };
                let item = match msg {
                    Ok(Feed::Event(ev)) => {
                        let labels = match &ev {
                            RuntimeEvent::Started { labels, .. } => labels,
                            RuntimeEvent::Died { labels, .. } => labels,
                        };
                        if !label_matches(&label, labels) {
                            continue;
                        }
                        Ok(ev)
                    }
                    Ok(Feed::Disconnect(err)) => Err(err),
                    // A subscriber that fell behind has lost events: end the stream so that the
                    // consumer resubscribes and resynchronises, as after a daemon disconnect.
                    Err(broadcast::error::RecvError::Lagged(n)) => Err(RuntimeError::Unreachable(
                        format!("mock event stream fell behind by {n} events"),
                    )),
                    Err(broadcast::error::RecvError::Closed) => {
                        Err(RuntimeError::Unreachable("mock engine went away".into()))
                    }
                };
                let last = item.is_err();
                if tx.send(item).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let call = Call::Exec(id.to_string(), cmd.to_vec(), timeout);
        // Hangs and delays count against the exec's own timeout, as they would with Docker.
        let entered = tokio::time::timeout(timeout, self.enter(call)).await;
        match entered {
            Err(_) => {
                return Err(RuntimeError::Timeout(format!(
                    "exec after {}",
                    crate::docker::human(timeout)
                )))
            }
            Ok(r) => r?,
        }
        let st = self.state();
        let id = st.resolve_or_404(id)?;
        let Some(c) = st.containers.get(&id) else {
            return Err(RuntimeError::NoSuchContainer(format!(
                "No such container: {id}"
            )));
        };
        if c.status != ContainerStatus::Running {
            return Err(RuntimeError::Conflict(format!(
                "Container {id} is not running"
            )));
        }
        Ok(State::behaviour(&st.exec_results, c)
            .cloned()
            .unwrap_or_default())
    }

    async fn list(&self, label: &str) -> Result<Vec<ContainerSummary>, RuntimeError> {
        self.enter(Call::List(label.to_string())).await?;
        let st = self.state();
        let mut found: Vec<&Container> = st
            .containers
            .values()
            .map(|c| &**c)
            .filter(|c| label_matches(label, &c.spec.labels))
            .collect();
        // Docker lists the newest first.
        found.sort_by_key(|c| std::cmp::Reverse(c.seq));
        Ok(found
            .into_iter()
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.spec.image.clone(),
                status: c.status,
                labels: c.spec.labels.clone(),
            })
            .collect())
    }

    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<Logs, RuntimeError> {
        self.enter(Call::Logs(id.to_string(), tail)).await?;
        let st = self.state();
        let id = st.resolve_or_404(id)?;
        let Some(c) = st.containers.get(&id) else {
            return Err(RuntimeError::NoSuchContainer(format!(
                "No such container: {id}"
            )));
        };
        let logs = State::behaviour(&st.logs, c)
            .cloned()
            .unwrap_or_else(|| Logs {
                stdout: format!("mock logs for {}\n", c.name),
                stderr: String::new(),
            });
        let (mut stdout, mut stderr) = (logs.stdout, logs.stderr);
        for chunk in st.written.get(&id).into_iter().flatten() {
            match chunk.stream {
                OutputStream::Stdout => stdout.push_str(&chunk.data),
                OutputStream::Stderr => stderr.push_str(&chunk.data),
            }
        }
        Ok(Logs {
            stdout: tail_lines(&stdout, tail),
            stderr: tail_lines(&stderr, tail),
        })
    }

    /// The logs as [`Runtime::logs`] gives them (`since` and `timestamps` are ignored: the mock
    /// keeps no times), then, when following, every [`MockRuntime::write_log`] until the
    /// container stops or the receiver is dropped.
    async fn log_stream(&self, id: &str, opts: &LogOptions) -> Result<LogStream, RuntimeError> {
        let logs = self.logs(id, opts.tail).await?;
        let (live, mut running, cid) = {
            let mut st = self.state();
            let cid = st.resolve_or_404(id)?;
            let running = st
                .containers
                .get(&cid)
                .map(|c| c.run_state.subscribe())
                .ok_or_else(|| RuntimeError::NoSuchContainer(format!("No such container: {id}")))?;
            let live = st
                .followers
                .get_or_insert_with(|| tokio::sync::broadcast::channel(1024).0)
                .subscribe();
            st.open_log_streams += 1;
            (live, running, cid)
        };
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        let follow = opts.follow;
        tokio::spawn(async move {
            let mut live = live;
            let past = [
                (OutputStream::Stdout, logs.stdout),
                (OutputStream::Stderr, logs.stderr),
            ];
            'stream: {
                for (stream, data) in past {
                    if !data.is_empty() && tx.send(Ok(LogChunk { stream, data })).await.is_err() {
                        break 'stream;
                    }
                }
                if !follow {
                    break 'stream;
                }
                loop {
                    if !running.borrow().running {
                        break 'stream;
                    }
                    tokio::select! {
                        _ = tx.closed() => break 'stream,
                        changed = running.changed() => if changed.is_err() { break 'stream },
                        got = live.recv() => match got {
                            Ok((from, chunk)) if from == cid => {
                                if tx.send(Ok(chunk)).await.is_err() {
                                    break 'stream;
                                }
                            }
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break 'stream,
                        },
                    }
                }
            }
            this.state().open_log_streams -= 1;
        });
        Ok(rx)
    }

    async fn stats(&self, id: &str) -> Result<StatsSample, RuntimeError> {
        self.enter(Call::Stats(id.to_string())).await?;
        let st = self.state();
        let id = st.resolve_or_404(id)?;
        let Some(c) = st.containers.get(&id) else {
            return Err(RuntimeError::NoSuchContainer(format!(
                "No such container: {id}"
            )));
        };
        let limit = c.spec.memory.unwrap_or(8 << 30);
        if c.status != ContainerStatus::Running {
            // Docker answers a stopped container's stats with zeros rather than an error.
            return Ok(StatsSample {
                cpu_cores: 0.0,
                memory_bytes: 0,
                memory_limit_bytes: 0,
            });
        }
        Ok(State::behaviour(&st.stats, c)
            .cloned()
            .unwrap_or(StatsSample {
                cpu_cores: 0.01,
                memory_bytes: 4 << 20,
                memory_limit_bytes: limit,
            }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.000000005Z");
    }

    #[test]
    fn container_ids_are_docker_shaped_and_short_ids_differ() {
        let ids: HashSet<String> = (1..2000)
            .map(|n| container_id(n)[..12].to_string())
            .collect();
        assert_eq!(ids.len(), 1999);
        assert_eq!(container_id(7).len(), 64);
        assert!(container_id(7).chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn label_filters_match_keys_and_key_value_pairs() {
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert!(label_matches("a", &labels));
        assert!(label_matches("a=1", &labels));
        assert!(!label_matches("a=2", &labels));
        assert!(!label_matches("b", &labels));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", Some(2)), "b\nc\n");
        assert_eq!(tail_lines("a\nb\nc\n", Some(0)), "");
        assert_eq!(tail_lines("a\nb", None), "a\nb");
    }
}
