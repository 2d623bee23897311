//! The TOML cluster file: which roles (a manager, workers) this process runs, and how.
//!
//! ```toml
//! [manager]
//! listen = "127.0.0.1:5555"
//! scheduler = "epvm"
//!
//! [[worker]]
//! name = "w1"
//! listen = "127.0.0.1:5556"
//! runtime = "docker"
//! labels = { disk = "ssd", zone = "a" }
//! ```
//!
//! The file is read into a plain TOML table and walked by hand rather than deserialised into mirror
//! structs, because every mistake must be reported with the file, the key and the valid choices
//! (`cluster.toml: worker[1].runtime: unknown runtime "podman" (valid: docker, mock)`), which serde's
//! derived messages do not do. Relative paths (`data_dir`) are relative to the working directory, as
//! the embedded default's `./poseidon-data` is.
//!
//! This file holds the types and the entry points (`load`, `parse`, `embedded_default`); the walk
//! over the table is in `walk.rs` (with `host_volumes` and `registry_auth` in `volumes.rs`), the
//! tests in `tests.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use toml::{Table, Value};

use crate::util::{parse_duration, parse_size};

/// What [`Config::source`] says for the built-in configuration.
pub const EMBEDDED_SOURCE: &str = "<embedded default>";
/// Where the manager listens unless the file says otherwise.
pub const DEFAULT_MANAGER_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5555);
/// Where the manager's DNS server listens unless the file says otherwise (UDP and TCP).
pub const DEFAULT_DNS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8600);
/// Where a worker listens unless the file says otherwise.
pub const DEFAULT_WORKER_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5556);
/// Where a worker's routing mesh opens published ports unless the file says otherwise.
pub const DEFAULT_INGRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The scheduler used unless the file names another.
pub const DEFAULT_SCHEDULER: &str = "epvm";
/// How long the manager waits for a heartbeat before it counts a worker down.
pub const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// At most this many heartbeats a second reach the manager: it stretches its workers' intervals.
pub const DEFAULT_MAX_HEARTBEATS_PER_SECOND: u32 = 50;
/// The first retry delay after a worker could not be reached.
pub const DEFAULT_DISPATCH_BACKOFF: Duration = Duration::from_millis(500);
/// How often a worker sends a heartbeat.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a container is given to stop before it is killed.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// The directory under which the default data directories live.
pub const DEFAULT_DATA_ROOT: &str = "poseidon-data";

const TOP_KEYS: &[&str] = &["manager", "worker", "security"];
const SECURITY_KEYS: &[&str] = &["acl", "tls", "insecure", "join_token"];
const TLS_KEYS: &[&str] = &["ca", "cert", "key"];
const MANAGER_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "scheduler",
    "heartbeat_ttl",
    "dispatch_backoff",
    "dns_listen",
    "max_heartbeats_per_second",
    "store",
    "etcd_endpoints",
    "managers",
    "advertise",
];
const WORKER_KEYS: &[&str] = &[
    "name",
    "listen",
    "advertise",
    "manager",
    "managers",
    "runtime",
    "docker_host",
    "data_dir",
    "capacity",
    "heartbeat_interval",
    "stop_grace",
    "network",
    "host_volumes",
    "registry_auth",
    "labels",
    "ingress_listen",
    "endpoint_address",
];
const CAPACITY_KEYS: &[&str] = &["cpus", "memory"];

/// A whole cluster file: the roles it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The manager, when the file has a `[manager]` table.
    pub manager: Option<ManagerConfig>,
    /// The workers, one per `[[worker]]` table, in file order.
    pub workers: Vec<WorkerConfig>,
    /// The `[security]` table (every role of the file shares it).
    pub security: SecurityConfig,
    /// The file it came from, or [`EMBEDDED_SOURCE`].
    pub source: String,
}

/// The `[security]` table: `acl = true|false`, `tls = "off" | "auto" | { ca, cert, key }`,
/// `insecure = true` to allow a non-loopback listen address without both, and `join_token` (or
/// `$POSEIDON_JOIN_TOKEN`) for a worker that has no identity yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityConfig {
    /// Whether every route but `GET /health` needs a token.
    pub acl: bool,
    /// TLS on every listener and client.
    pub tls: TlsMode,
    /// Start on a non-loopback address without ACL and TLS (warned about at every start).
    pub insecure: bool,
    /// The token a worker joins with when it has no identity in its data directory.
    pub join_token: Option<String>,
}

impl SecurityConfig {
    /// Whether both ACL and TLS are on.
    pub fn is_secure(&self) -> bool {
        self.acl && self.tls != TlsMode::Off
    }
}

/// How TLS is set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP.
    #[default]
    Off,
    /// The manager makes a cluster CA in its data directory; workers get certificates at join.
    Auto,
    /// Files the operator provides (PEM): the CA that signs every node, and this process's
    /// certificate and key.
    Files {
        /// The CA certificate.
        ca: PathBuf,
        /// This process's certificate.
        cert: PathBuf,
        /// Its private key.
        key: PathBuf,
    },
}

impl Config {
    /// The worker called `name`, if the file declares one.
    pub fn worker(&self, name: &str) -> Option<&WorkerConfig> {
        self.workers.iter().find(|w| w.name == name)
    }
}

/// The `[manager]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// Where its REST API listens (default `127.0.0.1:5555`).
    pub listen: SocketAddr,
    /// Where it keeps its database (default `poseidon-data/manager`).
    pub data_dir: PathBuf,
    /// The placement policy, one of `poseidon_schedulers::NAMES` (default `epvm`).
    pub scheduler: String,
    /// A worker without a heartbeat for this long is counted down (default 5 s).
    pub heartbeat_ttl: Duration,
    /// The first retry delay after a worker could not be reached (default 500 ms).
    pub dispatch_backoff: Duration,
    /// Where the DNS server for `service.poseidon.` listens, UDP and TCP (default
    /// `127.0.0.1:8600`; `"off"` in the file: `None`, no DNS server). Left at its default while
    /// the manager listens on port 0 (as tests do), it takes an ephemeral port too.
    pub dns_listen: Option<SocketAddr>,
    /// At most this many heartbeats a second in all (default 50): the manager tells each worker
    /// its interval, and each node's TTL follows from it (`ARCHITECTURE.md`).
    pub max_heartbeats_per_second: u32,
    /// Where the state lives: the embedded RocksDB (default) or an etcd cluster (high availability).
    pub store: StoreKind,
    /// The etcd cluster's client URLs (`http://host:2379`), with `store = "etcd"`.
    pub etcd_endpoints: Vec<String>,
    /// Every manager of the cluster, this one included, by the URL its API is reached at (shown by
    /// `GET /health`); more than one needs `store = "etcd"`.
    pub managers: Vec<String>,
    /// How the other managers, workers and clients reach this manager's API (default
    /// `http://{listen}`); a follower redirects writes to the leader's.
    pub advertise: String,
}

/// Where a manager keeps its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded RocksDB in `data_dir`: one manager.
    Rocksdb,
    /// An etcd cluster: several managers, one leader by lease (see `manager::leader`).
    Etcd,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            listen: DEFAULT_MANAGER_LISTEN,
            data_dir: Path::new(DEFAULT_DATA_ROOT).join("manager"),
            scheduler: DEFAULT_SCHEDULER.to_string(),
            heartbeat_ttl: DEFAULT_HEARTBEAT_TTL,
            dispatch_backoff: DEFAULT_DISPATCH_BACKOFF,
            dns_listen: Some(DEFAULT_DNS_LISTEN),
            max_heartbeats_per_second: DEFAULT_MAX_HEARTBEATS_PER_SECOND,
            store: StoreKind::Rocksdb,
            etcd_endpoints: Vec::new(),
            managers: Vec::new(),
            advertise: url_of(DEFAULT_MANAGER_LISTEN),
        }
    }
}

/// One `[[worker]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Its unique name, used as the node name.
    pub name: String,
    /// Where its REST API listens (default `127.0.0.1:5556`).
    pub listen: SocketAddr,
    /// How the manager reaches it, without a trailing slash (default `http://{listen}`, with an
    /// unspecified address such as `0.0.0.0` replaced by the loopback address).
    pub advertise: String,
    /// The manager's URL, without a trailing slash; by default the file's own manager, or `None`
    /// (the worker runs alone) when the file has no `[manager]`.
    pub manager: Option<String>,
    /// Every manager to try, in order, when there are several (`managers = [...]`, high
    /// availability); the first is `manager`. Empty with a single manager.
    pub managers: Vec<String>,
    /// The container runtime (default Docker).
    pub runtime: RuntimeKind,
    /// The Docker endpoint (`unix:///var/run/docker.sock`, `tcp://host:2375`); `None` lets the runtime
    /// use `$DOCKER_HOST`, then the default socket.
    pub docker_host: Option<String>,
    /// Where it keeps its state (default `poseidon-data/{name}`).
    pub data_dir: PathBuf,
    /// Declared capacity; `None` means what the host reports.
    pub capacity: Option<Capacity>,
    /// How often it sends a heartbeat (default 1 s).
    pub heartbeat_interval: Duration,
    /// How long a container is given to stop before it is killed (default 10 s).
    pub stop_grace: Duration,
    /// The Docker network task containers join; `None` for Docker's default bridge.
    pub network: Option<String>,
    /// The host directories tasks may mount, by name (`host_volumes = { logs = "/var/log/app" }`).
    pub host_volumes: std::collections::BTreeMap<String, PathBuf>,
    /// Credentials for image pulls, one per registry; their `Debug` hides the password.
    pub registry_auth: Vec<poseidon_runtimes::registry::RegistryAuth>,
    /// Node labels (`labels = { disk = "ssd", zone = "a" }`), which task constraints test as
    /// `node.labels.KEY`; sent to the manager with every heartbeat.
    pub labels: BTreeMap<String, String>,
    /// The address the routing mesh opens services' published ports on (default `127.0.0.1`);
    /// `None` (`ingress_listen = "off"`) runs the worker without a mesh.
    pub ingress_listen: Option<IpAddr>,
    /// The address at which the ports the task containers of this worker publish are reached
    /// from the other workers and from DNS clients (`endpoint_address = "172.18.0.1"`); `None`
    /// means the host of `advertise`. Set it when the worker's API and its engine's published
    /// ports are not at one address, as when the worker runs in a container that drives the
    /// host's engine.
    pub endpoint_address: Option<IpAddr>,
}

impl WorkerConfig {
    /// A worker called `name` with every default, reporting to `manager`.
    pub fn new(name: &str, manager: Option<String>) -> Self {
        WorkerConfig {
            name: name.to_string(),
            listen: DEFAULT_WORKER_LISTEN,
            advertise: url_of(DEFAULT_WORKER_LISTEN),
            manager,
            managers: Vec::new(),
            runtime: RuntimeKind::Docker,
            docker_host: None,
            data_dir: Path::new(DEFAULT_DATA_ROOT).join(name),
            capacity: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            stop_grace: DEFAULT_STOP_GRACE,
            network: None,
            host_volumes: std::collections::BTreeMap::new(),
            registry_auth: Vec::new(),
            labels: BTreeMap::new(),
            ingress_listen: Some(DEFAULT_INGRESS),
            endpoint_address: None,
        }
    }
}

/// Which container runtime a worker drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// The Docker Engine API.
    Docker,
    /// The in-memory mock, for trying Poseidon and for tests.
    Mock,
}

impl RuntimeKind {
    /// Every valid name, in the order error messages list them.
    pub const NAMES: &'static [&'static str] = &["docker", "mock"];

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Mock => "mock",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docker" => Ok(RuntimeKind::Docker),
            "mock" => Ok(RuntimeKind::Mock),
            _ => Err(format!(
                "unknown runtime {s:?} (valid: {})",
                RuntimeKind::NAMES.join(", ")
            )),
        }
    }
}

/// A worker's declared capacity: `capacity = { cpus = 2.0, memory = "4g" }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// CPU cores, more than 0.
    pub cpus: f64,
    /// Memory in bytes, more than 0.
    pub memory: u64,
}

/// Why a cluster file was refused; the message always names the file, and the key when there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The path as given.
        path: String,
        /// The operating system's reason.
        message: String,
    },
    /// The file is not valid TOML.
    #[error("{file}: invalid TOML: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// Where and why, on one line.
        message: String,
    },
    /// A key that the table does not have.
    #[error("{file}: unknown key {key:?} {} (valid: {valid})", place(.table))]
    UnknownKey {
        /// The file.
        file: String,
        /// The key as written.
        key: String,
        /// The table it was in (`[manager]`, `worker[1]`), empty at the top level.
        table: String,
        /// The keys allowed there, comma-separated.
        valid: String,
    },
    /// A key with a value that is not allowed; the message says what is.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// The key's path (`manager.scheduler`, `worker[0].capacity.memory`; workers count from 0).
        key: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// The file declares no role at all.
    #[error("{file}: no [manager] and no [[worker]] table, so there is nothing to run")]
    Empty {
        /// The file.
        file: String,
    },
}

fn place(table: &str) -> String {
    if table.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in {table}")
    }
}

/// Reads and checks the cluster file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: shown.clone(),
        message: io_message(&e),
    })?;
    parse(&text, &shown)
}

/// The operating system's message without Rust's ` (os error 2)` suffix, which says nothing to a user.
fn io_message(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_string(),
        _ => text,
    }
}

/// Parses and checks a cluster file's text; `source` names it in errors and in [`Config::source`].
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
    let table: Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        file: source.to_string(),
        message: syntax_message(text, &e),
    })?;
    let cx = Cx { file: source };
    cx.deny_unknown(&table, "", TOP_KEYS)?;

    let manager = match table.get("manager") {
        None => None,
        Some(Value::Table(t)) => Some(cx.manager(t)?),
        Some(other) => {
            return Err(cx.invalid(
                "manager",
                format!("must be a table ([manager]), got {}", other.type_str()),
            ))
        }
    };
    let workers = match table.get("worker") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Table(t) => cx.worker(i, t, manager.as_ref()),
                other => Err(cx.invalid(
                    &format!("worker[{i}]"),
                    format!("must be a table ([[worker]]), got {}", other.type_str()),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(cx.invalid(
                "worker",
                format!(
                    "must be an array of tables (write [[worker]], not [worker]), got {}",
                    other.type_str()
                ),
            ))
        }
    };
    if manager.is_none() && workers.is_empty() {
        return Err(ConfigError::Empty {
            file: source.to_string(),
        });
    }
    cx.check_cluster(manager.as_ref(), &workers)?;
    let security = match table.get("security") {
        None => SecurityConfig::default(),
        Some(Value::Table(t)) => cx.security(t)?,
        Some(other) => {
            return Err(cx.invalid(
                "security",
                format!("must be a table ([security]), got {}", other.type_str()),
            ))
        }
    };
    Ok(Config {
        manager,
        workers,
        security,
        source: source.to_string(),
    })
}

/// The built-in single-machine cluster: a manager on `127.0.0.1:5555` and one Docker worker called
/// `local` on `127.0.0.1:5556`, with data under `./poseidon-data`. `config/single.toml` spells it out.
pub fn embedded_default() -> Config {
    let manager = ManagerConfig::default();
    let worker = WorkerConfig::new("local", Some(url_of(manager.listen)));
    Config {
        manager: Some(manager),
        workers: vec![worker],
        security: SecurityConfig::default(),
        source: EMBEDDED_SOURCE.to_string(),
    }
}

/// toml's own message spans several lines with a drawing of the input; this keeps it to one line.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let what = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}

/// `http://{addr}`, with an unspecified address (`0.0.0.0`, `::`) replaced by the loopback address,
/// since "connect to every address" is not an address another process can reach.
fn url_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

mod volumes;
mod walk;

use walk::Cx;

#[cfg(test)]
mod tests;
