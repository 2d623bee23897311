//! Every body that crosses HTTP, as one type used by both sides: what workers and the manager say
//! to each other (ARCHITECTURE.md, "Protocol", describes the flow), and the replies users and the CLI
//! read (node views, logs, errors, health). The servers encode these types and the typed clients in
//! `client.rs` decode them, so a field renamed on one side fails to compile on the other instead of
//! silently reading as zero.
//!
//! - Manager -> worker, at once on each decision: `POST /assignments` with a batch of [`Assignment`]s,
//!   and `DELETE /tasks/{id}` to stop (`?purge=true` also forgets).
//! - Worker -> manager: `POST /nodes/{name}/reports` with the [`TaskStatus`] of every task that changed,
//!   sent at once; and `POST /nodes/{name}/heartbeat` every interval with a [`Heartbeat`] carrying the
//!   status of every task it holds. The [`HeartbeatReply`] names what the worker lacks and what it holds
//!   but should not, so either side repairs what a lost message broke.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::task::{Desired, HostPort, State, Task, TaskId, TaskSpec};

/// The body of every error answer: `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, in one lower-case line.
    pub error: String,
}

/// One placement of a task on a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task.
    pub id: TaskId,
    /// The placement's generation; a worker holding an older one of the same task gives it up.
    pub generation: u64,
    /// What to run.
    pub spec: TaskSpec,
    /// Run or stop.
    pub desired: Desired,
}

/// A batch of assignments (one request carries all placements for one worker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentBatch {
    /// The assignments.
    pub assignments: Vec<Assignment>,
}

/// An assignment a worker took: it holds the task at this generation, durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedAssignment {
    /// The task.
    pub id: TaskId,
    /// The generation held.
    pub generation: u64,
}

/// An assignment a worker refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedAssignment {
    /// The task.
    pub id: TaskId,
    /// Why (an invalid spec, a newer generation held, a store failure, a missed deadline).
    pub error: String,
}

/// A worker's answer to `POST /assignments`: every assignment of the batch is in one of the lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AssignmentReply {
    /// Taken, and durable.
    pub accepted: Vec<AcceptedAssignment>,
    /// Refused; the worker holds nothing new for these.
    pub rejected: Vec<RejectedAssignment>,
}

/// The worker's view of one task, as reported to the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub id: TaskId,
    /// The generation the worker holds.
    pub generation: u64,
    /// The state on the worker.
    pub state: State,
    /// Whether the worker will still act on it (run it, restart it).
    pub desired: Desired,
    /// The container, if any.
    #[serde(default)]
    pub container_id: Option<String>,
    /// Bound host ports.
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
    /// The last exit code.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// Restarts done by the worker.
    #[serde(default)]
    pub restart_count: u32,
    /// Health, when checked.
    #[serde(default)]
    pub health: Option<String>,
    /// Why it is in its state.
    #[serde(default)]
    pub reason: Option<String>,
    /// When it last started running (ms since the epoch).
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// When it last ended (ms since the epoch).
    #[serde(default)]
    pub finished_ms: Option<u64>,
}

impl TaskStatus {
    /// The status of a task as a worker holds it.
    pub fn of(task: &Task) -> Self {
        TaskStatus {
            id: task.id,
            generation: task.generation,
            state: task.state,
            desired: task.desired,
            container_id: task.container_id.clone(),
            host_ports: task.host_ports.clone(),
            exit_code: task.exit_code,
            restart_count: task.restart_count,
            health: task.health.clone(),
            reason: task.reason.clone(),
            started_ms: task.started_ms,
            finished_ms: task.finished_ms,
        }
    }
}

/// Resources of a node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Capacity {
    /// CPU cores.
    pub cpus: f64,
    /// Memory in bytes.
    pub memory: u64,
}

/// Live figures of a node, from sysinfo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NodeStats {
    /// Host CPU use in percent of all cores.
    pub cpu_percent: f64,
    /// One-minute load average.
    pub load_one: f64,
    /// Memory in use, bytes.
    pub memory_used: u64,
    /// Total memory, bytes.
    pub memory_total: u64,
    /// Disk space available, bytes.
    pub disk_available: u64,
    /// Total disk space, bytes.
    pub disk_total: u64,
    /// Tasks held (any state).
    pub tasks: usize,
}

/// A worker's periodic message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The worker's name.
    pub name: String,
    /// How the manager reaches it (`http://host:port`).
    pub address: String,
    /// What it offers.
    pub capacity: Capacity,
    /// How it is doing.
    pub stats: NodeStats,
    /// False when its container engine does not answer: the manager then places nothing on it.
    pub healthy: bool,
    /// Why it is unhealthy, when it is.
    #[serde(default)]
    pub problem: Option<String>,
    /// The status of every task it holds when `full`; otherwise empty (changes travel at once in
    /// reports, so most beats only say "alive" and carry stats).
    pub tasks: Vec<TaskStatus>,
    /// Whether `tasks` lists every task held, so that the manager may re-send what is missing.
    #[serde(default = "yes")]
    pub full: bool,
    /// The names of the host volumes the worker's config allows (`host_volumes`), so that the
    /// manager places a task mounting one only where it is offered (see
    /// `spec::offered_node_attributes`). Empty from workers that predate the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_volumes: Vec<String>,
    /// The node's labels from its worker's config, which constraints test as `node.labels.KEY`;
    /// empty from a worker that predates labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The IP address at which the ports its task containers publish are reached (its config's
    /// `endpoint_address`); absent when that is the host of `address`, and from workers that
    /// predate the field. The catalog, DNS and the routing mesh give a service's endpoints on
    /// this node this address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_address: Option<String>,
}

fn yes() -> bool {
    true
}

/// An order to give up a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopOrder {
    /// The task.
    pub id: TaskId,
    /// Forget it entirely (its container removed), rather than keep it as stopped.
    pub purge: bool,
    /// Why (for logs and the task's history).
    pub reason: String,
}

/// The manager's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HeartbeatReply {
    /// Tasks the worker should hold but did not list.
    pub assign: Vec<Assignment>,
    /// Tasks the worker listed but should give up.
    pub stop: Vec<StopOrder>,
    /// The manager asks for a full heartbeat next (it has just started, or the node was not up).
    #[serde(default)]
    pub want_full: bool,
    /// The shortest interval the manager wants between this worker's heartbeats, so that it
    /// receives at most `max_heartbeats_per_second` in all (`ARCHITECTURE.md`, "Heartbeats sized
    /// by the manager"). Absent from older managers; a worker sends at the longer of this and its
    /// own `heartbeat_interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_ms: Option<u64>,
}

/// Immediate state changes from a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The changed tasks.
    pub tasks: Vec<TaskStatus>,
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

/// A node as `GET /nodes` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Its labels, as its last heartbeat carried them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether new tasks may be placed on it (false when made ineligible or draining).
    #[serde(default = "yes")]
    pub eligible: bool,
    /// Whether it is being drained: ineligible, and its service tasks moved off.
    #[serde(default)]
    pub draining: bool,
    /// The address its tasks' published ports are reached at, when its worker's config sets one
    /// (`endpoint_address`); otherwise they are reached at the host of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_address: Option<String>,
}

/// A task's logs, as `GET /tasks/{id}/logs` answers on the worker and the manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsReply {
    /// The task.
    pub id: TaskId,
    /// What the container wrote to standard output.
    pub stdout: String,
    /// What the container wrote to standard error.
    pub stderr: String,
}

/// The answer to `DELETE /tasks/{id}?purge=true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// The task forgotten.
    pub purged: TaskId,
}

/// The manager's `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerHealth {
    /// Always `ok` when it answers at all.
    pub status: String,
    /// The manager's version (`poseidon version` shows it beside the client's).
    pub version: String,
    /// The configured scheduler.
    pub scheduler: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// The managers in high availability (`store = "etcd"`); absent for a single manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaHealth>,
}

/// What `GET /health` says of the managers in high availability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaHealth {
    /// This manager's URL.
    pub me: String,
    /// `leader` or `follower`.
    pub role: String,
    /// The leader's URL, when one is known.
    pub leader: Option<String>,
    /// Every manager of the cluster, as configured.
    pub managers: Vec<String>,
    /// Times this manager saw the leader change.
    pub leader_changes: u64,
}

/// A worker's `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerHealth {
    /// `ok`, or `engine unavailable` (with HTTP 503).
    pub status: String,
    /// The worker's name.
    pub node: String,
    /// Its runtime (`docker` or `mock`).
    pub runtime: String,
}

/// Resource use of one task's container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// The task.
    pub task_id: TaskId,
    /// Its container.
    pub container_id: String,
    /// CPU in use, in cores.
    pub cpu_cores: f64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
}

/// Load averages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// One minute.
    pub one: f64,
    /// Five minutes.
    pub five: f64,
    /// Fifteen minutes.
    pub fifteen: f64,
}

/// The answer of `GET /stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// The node name.
    pub node: String,
    /// The runtime kind (`docker`, `mock`).
    pub runtime: String,
    /// Whether the engine answered its last call.
    pub engine_ok: bool,
    /// What the node offers.
    pub capacity: Capacity,
    /// Host figures.
    pub host: NodeStats,
    /// Load averages.
    pub load: Load,
    /// Tasks held, any state.
    pub tasks: usize,
    /// Tasks running.
    pub running: usize,
    /// Per-container samples of running tasks.
    pub containers: Vec<ContainerStats>,
}

/// The body of `POST /nodes/{name}/eligibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EligibilityRequest {
    /// True lets new tasks go to the node again (and ends a drain); false stops new placements.
    pub eligible: bool,
}

/// The answer to `POST /nodes/{name}/drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReply {
    /// The node.
    pub node: String,
    /// Always false after a drain: nothing new is placed on it.
    pub eligible: bool,
    /// Always true after a drain.
    pub draining: bool,
    /// Service tasks still on the node, which the service reconciler moves off `max_parallel` at
    /// a time.
    pub service_tasks_left: usize,
    /// Plain tasks still on the node, which stay where they are.
    pub plain_tasks_left: usize,
    /// What happens to the plain tasks, in words.
    pub note: String,
}

/// One line of `GET /events`: a change with its position in the manager's event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's index: one more than the previous event's, since the manager started.
    pub index: u64,
    /// When the change happened (ms since the epoch).
    pub at_ms: u64,
    /// What changed.
    #[serde(flatten)]
    pub body: EventBody,
}

/// What an [`Event`] is about, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A task changed (or was forgotten: `removed`).
    Task {
        /// The task.
        id: crate::task::TaskId,
        /// Its name.
        name: String,
        /// Its state after the change.
        state: crate::task::State,
        /// What the user wants of it.
        desired: crate::task::Desired,
        /// The node it is placed on.
        node: Option<String>,
        /// Its assignment generation.
        generation: u64,
        /// Why it is in this state.
        reason: Option<String>,
        /// Its exit code, once it exited.
        exit_code: Option<i64>,
        /// Restarts so far.
        restart_count: u32,
        /// True when the task was purged (the other fields show its last value).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        removed: bool,
    },
    /// A node changed state.
    Node {
        /// The node.
        name: String,
        /// Its state after the change.
        state: NodeState,
        /// Why it is unhealthy, if it is.
        problem: Option<String>,
    },
    /// A service changed (reserved for services; not produced yet).
    Service {
        /// The service.
        name: String,
        /// Its state after the change.
        state: String,
    },
}

/// A line of `GET /events` that ends the stream: why it ended (the subscriber fell behind, or
/// the manager is shutting down) and the index to resume after, when resuming is possible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventStreamEnd {
    /// Why the stream ends.
    pub error: String,
    /// The last index delivered on this stream (resume with `?index=` this), if any.
    pub last_index: Option<u64>,
}

/// The body of `POST /tasks/{id}/exec` (manager and worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// How long it may run (`10s`, `2m`; default 30 s, at most 10 minutes).
    #[serde(default)]
    pub timeout: Option<String>,
}

/// The answer of `POST /tasks/{id}/exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReply {
    /// What the command wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// Its exit code.
    pub exit_code: i64,
}

/// A service as `GET /services` and `GET /services/{name}` show it (and as the writes answer it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Its name.
    pub name: String,
    /// The current version.
    pub version: u64,
    /// `running`, `updating`, `reverted`, `failed` or `stopped`.
    pub state: crate::service::ServiceState,
    /// The copies wanted.
    pub count: u32,
    /// The copies of the current version that are healthy now.
    pub healthy: usize,
    /// When the current version's rollout began, ms since the epoch.
    pub since_ms: u64,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// Last changed, ms since the epoch.
    pub updated_ms: u64,
    /// The current version's spec.
    pub spec: crate::service::ServiceSpec,
    /// Every version kept, oldest first.
    pub versions: Vec<crate::service::ServiceVersion>,
    /// Its tasks, oldest first (only in `GET /services/{name}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<Task>,
}

/// The answer to `DELETE /services/{name}?purge=true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePurged {
    /// The service forgotten.
    pub purged: String,
}

/// One endpoint of a service in `GET /catalog/services/{name}`: a running task that is healthy (or
/// has no health check) with a published container port bound on its node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CatalogEndpoint {
    /// The task.
    pub task: TaskId,
    /// The node it runs on.
    pub node: String,
    /// The node's endpoint address: its worker's `endpoint_address`, else the host of its
    /// advertised address (an IP address, or the name the worker advertised).
    pub address: String,
    /// The host port Docker bound for the published container port.
    pub port: u16,
    /// True when its health check passes, or it has none.
    pub healthy: bool,
}

/// One service in `GET /catalog/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogService {
    /// The service's name.
    pub name: String,
    /// How many endpoints it has now.
    pub endpoints: usize,
}

/// One service as the routing mesh sees it (`GET /catalog/mesh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshService {
    /// The service's name.
    pub name: String,
    /// Its `publish` entries, each with its endpoints.
    pub entries: Vec<MeshEntry>,
}

/// One `publish` entry of a service and the endpoints that serve its `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshEntry {
    /// The entry as the user wrote it.
    pub publish: crate::service::Publish,
    /// The running, healthy tasks' host ports for its `target`.
    pub endpoints: Vec<CatalogEndpoint>,
}

/// A token as made by `POST /acl/bootstrap`, `POST /acl/tokens` or `POST /acl/join-token`: the only
/// answer that ever holds its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    /// The token's public name (for `poseidon acl token revoke`).
    pub accessor: String,
    /// The token to send as `Authorization: Bearer TOKEN`; shown once.
    pub token: String,
    /// Its policy (`read`, `submit`, `manage`, `node`, `join`).
    pub policy: String,
    /// For a node token, the node name it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A token as `GET /acl/tokens` lists it: never its secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    /// The token's public name.
    pub accessor: String,
    /// Its policy.
    pub policy: String,
    /// For a node token, the node name it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// When it was made (ms since the epoch).
    pub created_ms: u64,
}

/// The body of `POST /acl/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// `read`, `submit` or `manage`.
    pub policy: String,
}

/// The body of `POST /acl/join` (sent with a join token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The node name the worker will use.
    pub name: String,
    /// Where the manager will reach it (`http://` or `https://HOST:PORT`); with TLS, its host goes
    /// into the node certificate.
    pub advertise: String,
}

/// The answer of `POST /acl/join`: the worker's identity, kept in its data directory (0600).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReply {
    /// The node token for heartbeats and reports.
    pub node_token: String,
    /// What the manager presents to this worker (`Authorization: Bearer`).
    pub manager_secret: String,
    /// With TLS: the cluster CA, and this node's certificate and private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NodeCertificate>,
    /// The cluster's secrets key (hex), with which the worker opens task secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_key: Option<String>,
}

impl std::fmt::Debug for JoinReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field is a secret: none may reach a log line through a `{:?}`.
        f.debug_struct("JoinReply").finish_non_exhaustive()
    }
}

/// A node's certificate as the manager issues it (PEM).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// The cluster CA's certificate.
    pub ca: String,
    /// The node's certificate, signed by the CA.
    pub cert: String,
    /// The node's private key.
    pub key: String,
}

impl std::fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key must not reach a log line through a `{:?}`.
        f.debug_struct("NodeCertificate").finish_non_exhaustive()
    }
}

/// The answer of `GET /acl/ca` (open): the cluster CA, which a joining worker checks against the
/// fingerprint in its join token before it trusts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaReply {
    /// The CA certificate (PEM).
    pub ca: String,
    /// SHA-256 of its DER, hex.
    pub fingerprint: String,
}
