//! The service model: a named, versioned desired state, `count` copies of one task template.
//!
//! A [`Service`] keeps every version the user made (up to [`VERSIONS_KEPT`]), so a rollback has
//! something to go back to and a manager restart loses none of them. The manager stores it whole,
//! as one record, and its pure reconciler (`manager::services`) turns it and the tasks that carry
//! its name into a plan. Parsing a request body into a [`ServiceSpec`] lives in `spec::service`,
//! beside the task spec parser whose errors it shares.

use serde::{Deserialize, Serialize};

use crate::task::TaskSpec;

/// The most copies a service may ask for: more is taken for a typo, not a wish.
pub const MAX_COUNT: u32 = 10_000;

/// How many versions a service keeps; older ones are dropped (never the current one).
pub const VERSIONS_KEPT: usize = 32;

/// How a service rolls from one version to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePolicy {
    /// At most this many tasks down or unhealthy because of the update at any moment (at least 1).
    pub max_parallel: u32,
    /// A new task without a health check counts as healthy once it has run this long (ms).
    pub min_healthy_ms: u64,
    /// A version whose tasks are not all healthy this long after its rollout began fails (ms).
    pub healthy_deadline_ms: u64,
    /// Whether a failed version is rolled back to the last version that was healthy.
    pub auto_revert: bool,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        UpdatePolicy {
            max_parallel: 1,
            min_healthy_ms: 2_000,
            healthy_deadline_ms: 60_000,
            auto_revert: false,
        }
    }
}

pub use crate::placement::Constraint;

/// A port published by the routing mesh: every worker opens `port` on its `ingress_listen`
/// address and proxies to the service's endpoints (the host ports bound for `target`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The port opened on every worker.
    pub port: u16,
    /// The container port it reaches.
    pub target: u16,
    /// `tcp` or `http`.
    pub mode: String,
    /// In `http` mode, the `Host` names this entry answers (any when empty); several services
    /// may share a port when each names its own hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// How an endpoint is chosen: `round_robin` (the default) or `least_conn`.
    #[serde(
        default = "default_balance",
        skip_serializing_if = "is_default_balance"
    )]
    pub balance: String,
}

/// The balancing used when a `publish` entry names none.
pub const DEFAULT_BALANCE: &str = "round_robin";

fn default_balance() -> String {
    DEFAULT_BALANCE.to_string()
}

fn is_default_balance(b: &String) -> bool {
    b == DEFAULT_BALANCE
}

impl Publish {
    /// Whether `self` and `other` (of two services) may share a port: both in `http` mode, each
    /// naming hosts, and no host named by both.
    pub fn can_share_port_with(&self, other: &Publish) -> bool {
        self.mode == "http"
            && other.mode == "http"
            && !self.hosts.is_empty()
            && !other.hosts.is_empty()
            && self.hosts.iter().all(|h| !other.hosts.contains(h))
    }
}

/// What the user asks of a service: one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// A DNS label: lower-case letters, digits and `-`, at most 63, not starting or ending with `-`.
    pub name: String,
    /// How many healthy copies to run.
    pub count: u32,
    /// The template of every copy (its `name` is the service's).
    pub task: TaskSpec,
    /// How to roll to this version.
    pub update: UpdatePolicy,
    /// Where its tasks may run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Ports for the routing mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
}

impl ServiceSpec {
    /// True when tasks made from `self` and from `other` are the same: same task template and
    /// same constraints. Only such a change (of `count`, `update` or `publish`) keeps tasks.
    pub fn same_template(&self, other: &ServiceSpec) -> bool {
        self.task == other.task && self.constraints == other.constraints
    }
}

/// The state a service reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// `count` healthy tasks of the current version run.
    Running,
    /// A version is being rolled out (or the first one started).
    Updating,
    /// A version failed and the previous healthy one was rolled back automatically.
    Reverted,
    /// A version did not become healthy within its deadline and nothing was rolled back.
    Failed,
    /// The user deleted it without purging: its tasks are stopped.
    Stopped,
}

impl ServiceState {
    /// The lower-case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Updating => "updating",
            ServiceState::Reverted => "reverted",
            ServiceState::Failed => "failed",
            ServiceState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored version of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceVersion {
    /// Its number, from 1, increasing.
    pub version: u64,
    /// What it asked for.
    pub spec: ServiceSpec,
    /// When it was made, ms since the epoch.
    pub created_ms: u64,
    /// Whether all its `count` tasks were once healthy together (a rollback target).
    pub stable: bool,
    /// Why it was made: `created`, `updated`, `scaled`, `rollback to 2`, `reverted to 2`.
    pub cause: String,
}

/// A service as the manager stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// The current version's number.
    pub version: u64,
    /// Its state.
    pub state: ServiceState,
    /// When the current version's rollout began (ms since the epoch): its deadline counts from here.
    pub since_ms: u64,
    /// Versions, oldest first, the current one always among them.
    pub versions: Vec<ServiceVersion>,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// Last changed, ms since the epoch.
    pub updated_ms: u64,
}

impl Service {
    /// A new service at version 1.
    pub fn new(spec: ServiceSpec, now: u64) -> Service {
        Service {
            name: spec.name.clone(),
            version: 1,
            state: ServiceState::Updating,
            since_ms: now,
            versions: vec![ServiceVersion {
                version: 1,
                spec,
                created_ms: now,
                stable: false,
                cause: "created".into(),
            }],
            created_ms: now,
            updated_ms: now,
        }
    }

    /// The current version.
    pub fn current(&self) -> &ServiceVersion {
        self.versions
            .iter()
            .find(|v| v.version == self.version)
            .or(self.versions.last())
            .expect("a service always holds its current version")
    }

    /// The current spec.
    pub fn spec(&self) -> &ServiceSpec {
        &self.current().spec
    }

    /// A version by number, if it is still kept.
    pub fn get(&self, version: u64) -> Option<&ServiceVersion> {
        self.versions.iter().find(|v| v.version == version)
    }

    /// Makes `spec` the new current version; its rollout begins at `now`. A spec whose template is
    /// the current one's only scales, so the service stays `running` if it was.
    pub fn push(&mut self, spec: ServiceSpec, cause: &str, now: u64) -> u64 {
        let same = self.spec().same_template(&spec);
        let stable = same && self.current().stable && spec.count <= self.spec().count;
        let version = self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        self.versions.push(ServiceVersion {
            version,
            spec,
            created_ms: now,
            stable,
            cause: cause.to_string(),
        });
        if self.versions.len() > VERSIONS_KEPT {
            let drop = self.versions.len() - VERSIONS_KEPT;
            self.versions.drain(..drop);
        }
        self.version = version;
        self.since_ms = now;
        self.updated_ms = now;
        self.state = if stable {
            ServiceState::Running
        } else {
            ServiceState::Updating
        };
        version
    }

    /// The version a rollback goes to: the latest earlier version with another template that
    /// was once healthy, or (with `any`) the latest earlier one with another template.
    pub fn rollback_target(&self, any: bool) -> Option<&ServiceVersion> {
        let current = self.spec();
        let earlier = || {
            self.versions
                .iter()
                .rev()
                .filter(|v| v.version < self.version && !v.spec.same_template(current))
        };
        earlier()
            .find(|v| v.stable)
            .or_else(|| if any { earlier().next() } else { None })
    }
}
