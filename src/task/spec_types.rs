//! What the user asks to run: [`TaskSpec`] (a name and a shared [`SpecBody`]) and the types it
//! is made of (ports, restart policy, health check, volumes, pull policy). Parsing the user's JSON
//! and validating it live in `crate::spec`; this is the model, and the encoding the store and the
//! wire use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A port to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// The port inside the container.
    pub container_port: u16,
    /// The port on the host; unset lets Docker choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// `tcp` (default) or `udp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "tcp".to_string()
}

/// When a task that ended is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartKind {
    /// Never restart.
    #[default]
    Never,
    /// Restart after a failure (non-zero exit, unhealthy), up to `max_restarts`.
    OnFailure,
    /// Restart whenever it ends, unless the user stopped it.
    Always,
}

/// A restart policy with its backoff (Kubernetes' CrashLoopBackOff shape by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// When to restart.
    pub policy: RestartKind,
    /// For `on-failure`: the most restarts allowed (`None` = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// The first backoff delay, in milliseconds (default 10 s).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// The largest backoff delay, in milliseconds (default 5 min).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Running this long (milliseconds) resets the backoff (default 10 min).
    #[serde(default = "default_reset_after_ms")]
    pub reset_after_ms: u64,
}

fn default_backoff_ms() -> u64 {
    10_000
}
fn default_max_backoff_ms() -> u64 {
    300_000
}
fn default_reset_after_ms() -> u64 {
    600_000
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::of(RestartKind::Never)
    }
}

impl RestartPolicy {
    /// A policy of the given kind with the default backoff.
    pub fn of(policy: RestartKind) -> Self {
        RestartPolicy {
            policy,
            max_restarts: None,
            backoff_ms: default_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            reset_after_ms: default_reset_after_ms(),
        }
    }

    /// Whether a task that ended with `exit_code` (`failed` true for a failure) and has been restarted
    /// `restarts` times should start again.
    pub fn should_restart(&self, failed: bool, restarts: u32) -> bool {
        match self.policy {
            RestartKind::Never => false,
            RestartKind::Always => true,
            RestartKind::OnFailure => failed && self.max_restarts.is_none_or(|max| restarts < max),
        }
    }

    /// The delay before restart number `restarts + 1`: `backoff` doubling per restart, capped.
    pub fn backoff(&self, restarts: u32) -> Duration {
        let factor = 1u64.checked_shl(restarts.min(32)).unwrap_or(u64::MAX);
        Duration::from_millis(
            self.backoff_ms
                .saturating_mul(factor)
                .min(self.max_backoff_ms),
        )
    }
}

/// What a health check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Probe {
    /// An HTTP GET of `path` on a container port; 2xx and 3xx are healthy.
    Http {
        /// The container port.
        port: u16,
        /// The path, starting with `/`.
        #[serde(default = "default_path")]
        path: String,
    },
    /// A TCP connect to a container port.
    Tcp {
        /// The container port.
        port: u16,
    },
    /// A command run inside the container; exit 0 is healthy.
    Exec {
        /// The command and its arguments.
        cmd: Vec<String>,
    },
}

fn default_path() -> String {
    "/".to_string()
}

/// A health check with Kubernetes' probe defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to probe.
    #[serde(flatten)]
    pub probe: Probe,
    /// Time between probes, in milliseconds (default 10 s).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Time allowed for one probe, in milliseconds (default 1 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures that make the task unhealthy (default 3).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Time after start during which failures do not count, in milliseconds (default 0).
    #[serde(default)]
    pub start_period_ms: u64,
}

fn default_interval_ms() -> u64 {
    10_000
}
fn default_timeout_ms() -> u64 {
    1_000
}
fn default_retries() -> u32 {
    3
}

/// What the user asks to run: its name, and the rest of the spec behind a shared pointer.
///
/// The body is shared because most tasks in a large cluster are copies of a few specs (a
/// service's replicas, a batch of the same job): the manager gives tasks with equal bodies one
/// copy ([`TaskInterner`](crate::manager::interner::TaskInterner)), so a task in memory holds 32 bytes of spec instead of about 300 and
/// its strings. The name stays apart, since it often differs from task to task (`job-1`,
/// `job-2`...). Fields of the body read as fields of the spec (`spec.image`, through `Deref`), and
/// writing one (`DerefMut`) copies a shared body first. The JSON is the one flat object it always
/// was.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// A human name; the container is called `poseidon-<name>-<short id>`.
    pub name: String,
    /// Everything else, shared between tasks whose bodies are equal.
    pub body: Arc<SpecBody>,
}

impl TaskSpec {
    /// A spec of this name and body.
    pub fn new(name: impl Into<String>, body: SpecBody) -> TaskSpec {
        TaskSpec {
            name: name.into(),
            body: Arc::new(body),
        }
    }
}

impl std::ops::Deref for TaskSpec {
    type Target = SpecBody;
    fn deref(&self) -> &SpecBody {
        &self.body
    }
}

impl std::ops::DerefMut for TaskSpec {
    fn deref_mut(&mut self) -> &mut SpecBody {
        let body = Arc::make_mut(&mut self.body);
        // The caller may change any field: the JSON made from them is no longer the spec's.
        body.encoded = EncodedSpec::default();
        body
    }
}

/// The flat object: the name, then the body's fields.
#[derive(Serialize)]
struct Flat<'a> {
    name: &'a str,
    #[serde(flatten)]
    body: &'a SpecBody,
}

impl Serialize for TaskSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.body.encoded.get(&self.name, &self.body) {
            Some(json) => json.serialize(s),
            None => Flat {
                name: &self.name,
                body: &self.body,
            }
            .serialize(s),
        }
    }
}

/// A spec's JSON, kept with its body for the name it was first encoded with, so that the tasks
/// sharing one body (the manager interns them: a service's replicas, a burst of one job) encode
/// it once, not once a record, answer and assignment (issue 17). A clone starts empty, and every
/// change through [`TaskSpec`]'s `DerefMut` empties it, so it never outlives the fields it was
/// made from; it compares equal to every other, so it never makes two bodies differ.
///
/// It is written as serde_json's raw value: `to_string_pretty` prints it on one line (the CLI
/// lays its JSON out itself), and other formats would see serde_json's private struct (none is
/// used).
#[derive(Default)]
pub struct EncodedSpec(Mutex<Option<(Box<str>, Arc<RawValue>)>>);

impl EncodedSpec {
    /// The JSON of the spec named `name` with this body: the kept one, or encoded now and kept
    /// when none is. `None` for a body kept under another name (copies named apart, `job-1`,
    /// `job-2`: the caller encodes the fields as before, rather than each replacing the other's),
    /// or if it cannot be encoded as JSON.
    fn get(&self, name: &str, body: &SpecBody) -> Option<Arc<RawValue>> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match kept.as_ref() {
            Some((n, json)) => (**n == *name).then(|| json.clone()),
            None => {
                // Made from the text serde_json wrote, so it is not parsed again.
                let json: Arc<RawValue> = serde_json::value::to_raw_value(&Flat { name, body })
                    .ok()?
                    .into();
                *kept = Some((name.into(), json.clone()));
                Some(json)
            }
        }
    }
}

impl Clone for EncodedSpec {
    fn clone(&self) -> Self {
        EncodedSpec::default()
    }
}

impl PartialEq for EncodedSpec {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for EncodedSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncodedSpec")
    }
}

impl<'de> Deserialize<'de> for TaskSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The body reads the name too (`decoded_name`), so decoding needs no buffering; it is
        // moved out at once.
        let mut body = SpecBody::deserialize(d)?;
        let name = std::mem::take(&mut body.decoded_name);
        Ok(TaskSpec {
            name,
            body: Arc::new(body),
        })
    }
}

/// The part of a [`TaskSpec`] that tasks share: all of it but the name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SpecBody {
    /// Only while decoding: the spec's `name`, which [`TaskSpec`]'s decoder moves out at once.
    /// Always empty in a body a `TaskSpec` holds (the name is [`TaskSpec::name`]).
    #[serde(rename = "name", skip_serializing)]
    pub(crate) decoded_name: String,
    /// The image, with a tag (`latest` when none is given).
    pub image: String,
    /// The command; empty means the image's default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: plain text only between parsing and acceptance, then
    /// sealed (see `security::secrets`), and opened only to build the container's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// CPU cores reserved and enforced as a limit (0 = none).
    #[serde(default)]
    pub cpus: f64,
    /// Memory in bytes reserved and enforced as a limit (0 = none).
    #[serde(default)]
    pub memory: u64,
    /// Ports to publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    /// When to restart it.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// How to tell it is healthy. Boxed: most tasks have none, and inline it made every `Task`
    /// (a million of them in memory at scale) 72 bytes larger, past an allocator size class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Box<HealthCheck>>,
    /// Free-form labels, copied onto the container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// At-most-one semantics: the worker stops this task after losing the manager for this many
    /// milliseconds (Nomad's `stop_after_client_disconnect`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_after_disconnect_ms: Option<u64>,
    /// Where it may run: rules on node attributes, and `distinct_hosts` (see `crate::placement`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<crate::placement::Constraint>,
    /// Named Docker volumes and host volumes from the worker's allow-list, mounted into the
    /// container. A raw host path is never part of a spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// When to pull the image (default: only when it is missing).
    #[serde(default, skip_serializing_if = "PullPolicy::is_default")]
    pub pull: PullPolicy,
    /// The spec's JSON, once encoded (not a field of it).
    #[serde(skip)]
    pub encoded: EncodedSpec,
}

/// Where a volume's data comes from; serialised as the spec writes it (`"source": "data"` or
/// `"host_volume": "logs"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeSource {
    /// A named Docker volume, created by the engine on first use and kept across containers.
    #[serde(rename = "source")]
    Named(String),
    /// A host directory the worker's config lists under this name (`host_volumes = { logs =
    /// "/var/log/app" }`); the path itself is known only to the worker.
    HostVolume(String),
}

/// One mount of a task's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// A named volume or a host volume name.
    #[serde(flatten)]
    pub source: VolumeSource,
    /// The absolute path inside the container.
    pub target: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// When the worker pulls a task's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull only when the image is not present on the node.
    #[default]
    Missing,
    /// Pull before every container create, even when the image is present (a moving tag).
    Always,
}

impl PullPolicy {
    /// The name used in the task spec.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
        }
    }

    fn is_default(&self) -> bool {
        *self == PullPolicy::Missing
    }
}

impl SpecBody {
    /// The names of the host volumes the spec mounts, in spec order: a node must offer each of them
    /// (see [`crate::spec::required_node_attributes`]).
    pub fn host_volumes(&self) -> impl Iterator<Item = &str> {
        self.volumes.iter().filter_map(|v| match &v.source {
            VolumeSource::HostVolume(name) => Some(name.as_str()),
            VolumeSource::Named(_) => None,
        })
    }
}
