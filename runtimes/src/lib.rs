//! The container runtime layer of Poseidon.
//!
//! Everything Poseidon does ends in a container that is created, started, watched, stopped and removed.
//! This crate owns that boundary and nothing else: it knows the Docker Engine API, but nothing of tasks,
//! schedulers, stores or HTTP servers. The rest of Poseidon talks to a container engine only through the
//! narrow [`Runtime`] trait defined here.
//!
//! Parts:
//! - [`Runtime`]: the async trait, with its input ([`ContainerSpec`]) and output types.
//! - [`docker::DockerRuntime`]: a hand-written Docker Engine API client (hyper 1.x over the Unix socket, or
//!   `tcp://`), with API version negotiation, a timeout on every call and typed errors.
//! - [`mock::MockRuntime`]: an in-memory runtime that records every call and can inject failures, exit
//!   codes, delays and hangs, so that worker and manager tests can break things on purpose.
//! - [`labels`]: the label keys every Poseidon container carries.
//! - [`image_ref::ImageRef`]: splitting `repo:tag` references the way the engine's API wants them.
//! - [`registry`]: registry credentials ([`registry::RegistryAuth`]) and Docker's `X-Registry-Auth`.
//! - [`testing`]: helpers for tests that need a real engine (skip or fail loudly, a tiny local image).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod docker;
pub mod image_ref;
pub mod mock;
pub mod registry;
pub mod testing;

/// The label keys written on every container Poseidon creates.
///
/// A worker adopts only containers whose [`NODE`](labels::NODE) label names itself, and stops one whose
/// [`GENERATION`](labels::GENERATION) the manager no longer assigns to it.
pub mod labels {
    /// Marks a container as Poseidon's; its value is always `"true"`.
    pub const MANAGED: &str = "io.poseidon.managed";
    /// The task id (a UUID) the container runs.
    pub const TASK: &str = "io.poseidon.task";
    /// The name of the worker node that created the container.
    pub const NODE: &str = "io.poseidon.node";
    /// The assignment generation of the placement that created the container.
    pub const GENERATION: &str = "io.poseidon.generation";
}

/// A port to publish: the container port, and the host port to bind (`None` lets the engine choose).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The port inside the container.
    pub container_port: u16,
    /// The port on the host; `None` means the engine picks a free one.
    pub host_port: Option<u16>,
    /// `"tcp"` or `"udp"`.
    pub protocol: String,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The container name (Poseidon uses `poseidon-<task name>-<short id>`).
    pub name: String,
    /// The image reference, with a tag or digest (`busybox:latest`); a missing tag means `latest`.
    pub image: String,
    /// The command; empty means the image's default.
    pub cmd: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Labels, including Poseidon's own (see [`labels`]).
    pub labels: BTreeMap<String, String>,
    /// CPU limit in cores (Docker's `NanoCpus` = cores x 1e9); `None` is unlimited.
    pub cpus: Option<f64>,
    /// Memory limit in bytes; `None` is unlimited.
    pub memory: Option<u64>,
    /// Ports to publish.
    pub ports: Vec<PortSpec>,
    /// A network to attach the container to (`None` is the engine's default bridge).
    pub network: Option<String>,
    /// Volumes and bind mounts (Docker's `HostConfig.Mounts`).
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
}

/// What a mount's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A named volume the engine manages (created on first use); the source is its name.
    Volume,
    /// A host directory; the source is its absolute path.
    Bind,
}

/// One mount of a container (an entry of Docker's `HostConfig.Mounts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// A named volume or a host path.
    pub kind: MountKind,
    /// The volume's name, or the host path.
    pub source: String,
    /// The absolute path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The coarse state of a container as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    /// Created but never started.
    Created,
    /// Running (or paused, or restarting: Poseidon treats those as running).
    Running,
    /// Exited; see the exit code.
    Exited,
    /// Being removed or dead; treat as gone.
    Dead,
}

/// A published port as bound by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// The port inside the container.
    pub container_port: u16,
    /// `"tcp"` or `"udp"`.
    pub protocol: String,
    /// The host address bound (`0.0.0.0` for all).
    pub host_ip: String,
    /// The host port bound.
    pub host_port: u16,
}

/// What `inspect` tells about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The engine's container id.
    pub id: String,
    /// The container name, without the leading `/`.
    pub name: String,
    /// The image it was created from.
    pub image: String,
    /// Created, running, exited or dead.
    pub status: ContainerStatus,
    /// The exit code once exited.
    pub exit_code: Option<i64>,
    /// When it last started (RFC 3339), if ever.
    pub started_at: Option<String>,
    /// When it last finished (RFC 3339), if ever.
    pub finished_at: Option<String>,
    /// The engine's own error for the last start, if any.
    pub error: Option<String>,
    /// Killed by the kernel's out-of-memory killer.
    pub oom_killed: bool,
    /// Published ports as bound.
    pub ports: Vec<PortBinding>,
    /// The engine's health status (`healthy`, `unhealthy`, `starting`) when the image defines one.
    pub health: Option<String>,
    /// The container's address on its first network, if any.
    pub ip_address: Option<String>,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSummary {
    /// The engine's container id.
    pub id: String,
    /// The container name, without the leading `/`.
    pub name: String,
    /// The image it was created from.
    pub image: String,
    /// Created, running, exited or dead.
    pub status: ContainerStatus,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
}

/// A change the engine reports about a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RuntimeEvent {
    /// The container started.
    Started {
        /// Container id.
        id: String,
        /// The container's labels.
        labels: BTreeMap<String, String>,
    },
    /// The container's process exited.
    Died {
        /// Container id.
        id: String,
        /// The exit code (`None` when the engine did not say).
        exit_code: Option<i64>,
        /// The container's labels.
        labels: BTreeMap<String, String>,
    },
}

/// One progress line of an image pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullProgress {
    /// The engine's status text (`Pulling fs layer`, `Downloading`, ...).
    pub status: String,
    /// The layer id, when the line is about a layer.
    pub layer: Option<String>,
    /// Bytes done so far for that layer, when known.
    pub current: Option<u64>,
    /// Total bytes for that layer, when known.
    pub total: Option<u64>,
}

/// The result of running a command inside a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecOutput {
    /// The command's exit code.
    pub exit_code: i64,
    /// What it wrote to stdout and stderr, in order.
    pub output: String,
    /// What it wrote to stdout alone.
    #[serde(default)]
    pub stdout: String,
    /// What it wrote to stderr alone.
    #[serde(default)]
    pub stderr: String,
}

impl ExecOutput {
    /// An output from its two streams (`output` is stdout then stderr).
    pub fn new(exit_code: i64, stdout: impl Into<String>, stderr: impl Into<String>) -> Self {
        let (stdout, stderr) = (stdout.into(), stderr.into());
        ExecOutput {
            exit_code,
            output: format!("{stdout}{stderr}"),
            stdout,
            stderr,
        }
    }
}

/// What a log stream ([`Runtime::log_stream`]) reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    /// Keep the stream open and send new output as the container writes it, until it stops.
    pub follow: bool,
    /// Only output written at or after this time (seconds since the epoch, fractions allowed).
    pub since: Option<f64>,
    /// Prefix each line with its RFC 3339 timestamp (Docker's `timestamps=1`).
    pub timestamps: bool,
    /// Only the last N lines (of each stream) written before the call.
    pub tail: Option<usize>,
}

/// Which stream output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a container's output, as the engine sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogChunk {
    /// Which stream.
    pub stream: OutputStream,
    /// The text (invalid UTF-8 replaced).
    pub data: String,
}

/// The receiving end of a log stream; dropping it ends the engine's stream.
pub type LogStream = tokio::sync::mpsc::Receiver<Result<LogChunk, RuntimeError>>;

/// A container's logs, demultiplexed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Logs {
    /// What the container wrote to stdout.
    pub stdout: String,
    /// What the container wrote to stderr.
    pub stderr: String,
}

/// One sample of a container's resource usage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatsSample {
    /// CPU use in cores (1.0 = one core fully busy), from the engine's two samples.
    pub cpu_cores: f64,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// The memory limit, in bytes.
    pub memory_limit_bytes: u64,
}

/// Errors from a runtime, typed so that callers can react (a missing image fails the task; an
/// unreachable daemon marks the node unhealthy without failing anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not present and could not be pulled; holds the daemon's message.
    #[error("no such image: {0}")]
    NoSuchImage(String),
    /// The container does not exist; holds the daemon's message.
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    /// A name conflict, or an operation that conflicts with the container's state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The daemon could not be reached at all.
    #[error("container engine unreachable: {0}")]
    Unreachable(String),
    /// The call did not finish within its timeout; holds the operation.
    #[error("container engine timed out: {0}")]
    Timeout(String),
    /// The daemon refused the request for another reason; holds its status and message.
    #[error("container engine error {status}: {message}")]
    Daemon {
        /// HTTP status from the daemon.
        status: u16,
        /// The daemon's own message.
        message: String,
    },
    /// The request could not even be formed (a bad image name, a bad argument).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl RuntimeError {
    /// True for errors that say the engine itself is sick (unreachable, hanging) rather than that
    /// this one request was wrong. Such errors must not fail a task; the node is unhealthy instead.
    pub fn is_engine_down(&self) -> bool {
        matches!(
            self,
            RuntimeError::Unreachable(_) | RuntimeError::Timeout(_)
        )
    }
}

/// The receiving end of an event subscription.
pub type EventStream = tokio::sync::mpsc::Receiver<Result<RuntimeEvent, RuntimeError>>;

/// A progress callback for image pulls.
pub type ProgressFn<'a> = &'a (dyn Fn(PullProgress) + Send + Sync);

/// What an orchestrator needs from a container engine.
///
/// Every method has a bounded duration except [`Runtime::wait`] and [`Runtime::events`], which are
/// long polls by nature; implementations must still notice a dead engine on those.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// A short name for logs and `GET /stats` (`docker`, `mock`).
    fn kind(&self) -> &'static str;

    /// Checks that the engine answers.
    async fn ping(&self) -> Result<(), RuntimeError>;

    /// Makes sure `image` is present locally, pulling it when missing and reporting each progress line
    /// (with the registry's credentials, when the runtime holds some).
    async fn ensure_image(&self, image: &str, progress: ProgressFn<'_>)
        -> Result<(), RuntimeError>;

    /// Pulls `image` even when it is present (the `always` pull policy), reporting each progress
    /// line. Credentials for the image's registry, when the runtime holds some, go with the pull.
    async fn pull_image(&self, image: &str, progress: ProgressFn<'_>) -> Result<(), RuntimeError>;

    /// Creates a container (with the engine's own restart policy `no`) and returns its id.
    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;

    /// Starts a created container; starting a running one is success.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;

    /// Stops a container: SIGTERM, then SIGKILL after `grace`. Stopping a stopped one is success.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Kills a container at once with SIGKILL.
    async fn kill(&self, id: &str) -> Result<(), RuntimeError>;

    /// Removes a container (`force` also kills a running one).
    async fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError>;

    /// Reads a container's state.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;

    /// Waits until the container is not running and returns its exit code. Returns at once if it has
    /// already exited.
    async fn wait(&self, id: &str) -> Result<i64, RuntimeError>;

    /// Subscribes to start and die events of containers carrying the label `label` (a key, or
    /// `key=value`).
    async fn events(&self, label: &str) -> Result<EventStream, RuntimeError>;

    /// Runs `cmd` inside a running container and returns its exit code and output, within `timeout`.
    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError>;

    /// Lists all containers (running or not) carrying the label `label` (a key, or `key=value`).
    async fn list(&self, label: &str) -> Result<Vec<ContainerSummary>, RuntimeError>;

    /// Fetches a container's logs (the last `tail` lines of each stream, or all).
    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<Logs, RuntimeError>;

    /// Reads one sample of a running container's resource usage.
    async fn stats(&self, id: &str) -> Result<StatsSample, RuntimeError>;

    /// Streams a container's output as [`LogOptions`] asks (following it when `follow`). The
    /// call itself is bounded; the stream then runs until the output ends, the container stops
    /// (when following) or the receiver is dropped, which closes the engine's stream.
    async fn log_stream(&self, id: &str, opts: &LogOptions) -> Result<LogStream, RuntimeError>;
}
