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
//! ```
//!
//! The file is read into a plain TOML table and walked by hand rather than deserialised into mirror
//! structs, because every mistake must be reported with the file, the key and the valid choices
//! (`cluster.toml: worker[1].runtime: unknown runtime "podman" (valid: docker, mock)`), which serde's
//! derived messages do not do. Relative paths (`data_dir`) are relative to the working directory, as
//! the embedded default's `./poseidon-data` is.

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
/// Where a worker listens unless the file says otherwise.
pub const DEFAULT_WORKER_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5556);
/// The scheduler used unless the file names another.
pub const DEFAULT_SCHEDULER: &str = "epvm";
/// How long the manager waits for a heartbeat before it counts a worker down.
pub const DEFAULT_HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// The first retry delay after a worker could not be reached.
pub const DEFAULT_DISPATCH_BACKOFF: Duration = Duration::from_millis(500);
/// How often a worker sends a heartbeat.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// How long a container is given to stop before it is killed.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// The directory under which the default data directories live.
pub const DEFAULT_DATA_ROOT: &str = "poseidon-data";

const TOP_KEYS: &[&str] = &["manager", "worker"];
const MANAGER_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "scheduler",
    "heartbeat_ttl",
    "dispatch_backoff",
];
const WORKER_KEYS: &[&str] = &[
    "name",
    "listen",
    "advertise",
    "manager",
    "runtime",
    "docker_host",
    "data_dir",
    "capacity",
    "heartbeat_interval",
    "stop_grace",
    "network",
];
const CAPACITY_KEYS: &[&str] = &["cpus", "memory"];

/// A whole cluster file: the roles it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The manager, when the file has a `[manager]` table.
    pub manager: Option<ManagerConfig>,
    /// The workers, one per `[[worker]]` table, in file order.
    pub workers: Vec<WorkerConfig>,
    /// The file it came from, or [`EMBEDDED_SOURCE`].
    pub source: String,
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
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            listen: DEFAULT_MANAGER_LISTEN,
            data_dir: Path::new(DEFAULT_DATA_ROOT).join("manager"),
            scheduler: DEFAULT_SCHEDULER.to_string(),
            heartbeat_ttl: DEFAULT_HEARTBEAT_TTL,
            dispatch_backoff: DEFAULT_DISPATCH_BACKOFF,
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
}

impl WorkerConfig {
    /// A worker called `name` with every default, reporting to `manager`.
    pub fn new(name: &str, manager: Option<String>) -> Self {
        WorkerConfig {
            name: name.to_string(),
            listen: DEFAULT_WORKER_LISTEN,
            advertise: url_of(DEFAULT_WORKER_LISTEN),
            manager,
            runtime: RuntimeKind::Docker,
            docker_host: None,
            data_dir: Path::new(DEFAULT_DATA_ROOT).join(name),
            capacity: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            stop_grace: DEFAULT_STOP_GRACE,
            network: None,
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
    Ok(Config {
        manager,
        workers,
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

/// The parsing context: the file name every error carries.
struct Cx<'a> {
    file: &'a str,
}

impl Cx<'_> {
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn deny_unknown(&self, t: &Table, table: &str, valid: &[&str]) -> Result<(), ConfigError> {
        match t.keys().find(|k| !valid.contains(&k.as_str())) {
            Some(key) => Err(ConfigError::UnknownKey {
                file: self.file.to_string(),
                key: key.clone(),
                table: table.to_string(),
                valid: valid.join(", "),
            }),
            None => Ok(()),
        }
    }

    fn string<'t>(
        &self,
        t: &'t Table,
        prefix: &str,
        key: &str,
    ) -> Result<Option<&'t str>, ConfigError> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.invalid(
                &format!("{prefix}.{key}"),
                format!("must be a string, got {}", other.type_str()),
            )),
        }
    }

    fn addr(&self, t: &Table, prefix: &str, key: &str) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(text) = self.string(t, prefix, key)? else {
            return Ok(None);
        };
        // `localhost` is the one host name accepted: resolving others would make parsing do I/O.
        let parsed = match text.strip_prefix("localhost:") {
            Some(port) => port
                .parse::<u16>()
                .ok()
                .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)),
            None => text.parse::<SocketAddr>().ok(),
        };
        parsed.map(Some).ok_or_else(|| {
            self.invalid(
                &format!("{prefix}.{key}"),
                format!(
                    "invalid address {text:?} (expected an IP address and a port, e.g. 127.0.0.1:5555 or 0.0.0.0:5555)"
                ),
            )
        })
    }

    fn duration(
        &self,
        t: &Table,
        prefix: &str,
        key: &str,
        min: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        let path = format!("{prefix}.{key}");
        let text = match t.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) => s,
            // A bare number could mean seconds or milliseconds; asking for a unit is kinder than
            // guessing wrong.
            Some(other) => {
                return Err(self.invalid(
                    &path,
                    format!(
                        "must be a duration string such as \"5s\" or \"500ms\", got {}",
                        other.type_str()
                    ),
                ))
            }
        };
        let d = parse_duration(text).map_err(|e| self.invalid(&path, e))?;
        if d < min {
            return Err(self.invalid(
                &path,
                format!("must be at least {}, got {text:?}", human(min)),
            ));
        }
        Ok(Some(d))
    }

    fn url(&self, t: &Table, prefix: &str, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(text) = self.string(t, prefix, key)? else {
            return Ok(None);
        };
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"));
        let trimmed = text.trim_end_matches('/');
        match rest {
            Some(rest)
                if !rest.trim_end_matches('/').is_empty()
                    && !text.contains(char::is_whitespace) =>
            {
                Ok(Some(trimmed.to_string()))
            }
            _ => Err(self.invalid(
                &format!("{prefix}.{key}"),
                format!(
                    "invalid URL {text:?} (expected http://host:port, e.g. http://127.0.0.1:5555)"
                ),
            )),
        }
    }

    fn manager(&self, t: &Table) -> Result<ManagerConfig, ConfigError> {
        const P: &str = "manager";
        self.deny_unknown(t, "[manager]", MANAGER_KEYS)?;
        let mut m = ManagerConfig::default();
        if let Some(listen) = self.addr(t, P, "listen")? {
            m.listen = listen;
        }
        if let Some(dir) = self.string(t, P, "data_dir")? {
            m.data_dir = self.data_dir(dir, "manager.data_dir")?;
        }
        if let Some(name) = self.string(t, P, "scheduler")? {
            if !poseidon_schedulers::NAMES.contains(&name) {
                return Err(self.invalid(
                    "manager.scheduler",
                    format!(
                        "unknown scheduler {name:?} (valid: {})",
                        poseidon_schedulers::NAMES.join(", ")
                    ),
                ));
            }
            m.scheduler = name.to_string();
        }
        // Below 100 ms a heartbeat TTL is shorter than a busy machine's scheduling hiccup, and every
        // worker would flap between up and down.
        if let Some(ttl) = self.duration(t, P, "heartbeat_ttl", Duration::from_millis(100))? {
            m.heartbeat_ttl = ttl;
        }
        if let Some(b) = self.duration(t, P, "dispatch_backoff", Duration::from_millis(1))? {
            m.dispatch_backoff = b;
        }
        Ok(m)
    }

    fn data_dir(&self, dir: &str, key: &str) -> Result<PathBuf, ConfigError> {
        if dir.trim().is_empty() {
            Err(self.invalid(key, "must not be empty"))
        } else {
            Ok(PathBuf::from(dir))
        }
    }

    fn worker(
        &self,
        i: usize,
        t: &Table,
        manager: Option<&ManagerConfig>,
    ) -> Result<WorkerConfig, ConfigError> {
        let p = format!("worker[{i}]");
        let p = p.as_str();
        self.deny_unknown(t, p, WORKER_KEYS)?;
        let name = self.string(t, p, "name")?.ok_or_else(|| {
            self.invalid(
                &format!("{p}.name"),
                "missing (every worker needs a unique name)",
            )
        })?;
        let name_ok = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !name_ok {
            return Err(self.invalid(
                &format!("{p}.name"),
                format!("invalid worker name {name:?} (1 to 63 letters, digits, '_', '.' or '-')"),
            ));
        }
        let mut w = WorkerConfig::new(name, manager.map(|m| url_of(m.listen)));
        if let Some(listen) = self.addr(t, p, "listen")? {
            w.listen = listen;
        }
        w.advertise = match self.url(t, p, "advertise")? {
            Some(url) => url,
            None => url_of(w.listen),
        };
        if let Some(url) = self.url(t, p, "manager")? {
            w.manager = Some(url);
        }
        if let Some(runtime) = self.string(t, p, "runtime")? {
            w.runtime = runtime
                .parse()
                .map_err(|e: String| self.invalid(&format!("{p}.runtime"), e))?;
        }
        if let Some(host) = self.string(t, p, "docker_host")? {
            let ok = host
                .strip_prefix("unix://")
                .or_else(|| host.strip_prefix("tcp://"))
                .is_some_and(|rest| !rest.is_empty());
            if !ok {
                return Err(self.invalid(
                    &format!("{p}.docker_host"),
                    format!("unsupported Docker host {host:?} (valid: unix:///path/to/docker.sock, tcp://host:port)"),
                ));
            }
            w.docker_host = Some(host.to_string());
        }
        if let Some(dir) = self.string(t, p, "data_dir")? {
            w.data_dir = self.data_dir(dir, &format!("{p}.data_dir"))?;
        }
        match t.get("capacity") {
            None => {}
            Some(Value::Table(c)) => w.capacity = Some(self.capacity(c, &format!("{p}.capacity"))?),
            Some(other) => {
                return Err(self.invalid(
                    &format!("{p}.capacity"),
                    format!(
                        "must be a table such as {{ cpus = 2.0, memory = \"4g\" }}, got {}",
                        other.type_str()
                    ),
                ))
            }
        }
        if let Some(d) = self.duration(t, p, "heartbeat_interval", Duration::from_millis(10))? {
            w.heartbeat_interval = d;
        }
        if let Some(d) = self.duration(t, p, "stop_grace", Duration::ZERO)? {
            w.stop_grace = d;
        }
        if let Some(network) = self.string(t, p, "network")? {
            // Docker's own rule for network names.
            let ok = network
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
                && network
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return Err(self.invalid(
                    &format!("{p}.network"),
                    format!("invalid Docker network name {network:?} (a letter or digit, then letters, digits, '_', '.' or '-')"),
                ));
            }
            w.network = Some(network.to_string());
        }
        Ok(w)
    }

    fn capacity(&self, t: &Table, p: &str) -> Result<Capacity, ConfigError> {
        self.deny_unknown(t, p, CAPACITY_KEYS)?;
        let cpus = match t.get("cpus") {
            Some(Value::Float(x)) => *x,
            Some(Value::Integer(n)) => *n as f64,
            Some(other) => {
                return Err(self.invalid(
                    &format!("{p}.cpus"),
                    format!("must be a number, got {}", other.type_str()),
                ))
            }
            None => {
                return Err(self.invalid(
                    &format!("{p}.cpus"),
                    "missing (a declared capacity needs both cpus and memory)",
                ))
            }
        };
        if !(cpus.is_finite() && cpus > 0.0) {
            return Err(self.invalid(
                &format!("{p}.cpus"),
                format!("must be more than 0, got {cpus}"),
            ));
        }
        let key = format!("{p}.memory");
        let memory = match t.get("memory") {
            Some(Value::String(s)) => parse_size(s).map_err(|e| self.invalid(&key, e))?,
            Some(Value::Integer(n)) => u64::try_from(*n).unwrap_or(0),
            Some(other) => {
                return Err(self.invalid(
                    &key,
                    format!(
                        "must be a size such as \"4g\" or a number of bytes, got {}",
                        other.type_str()
                    ),
                ))
            }
            None => {
                return Err(self.invalid(
                    &key,
                    "missing (a declared capacity needs both cpus and memory)",
                ))
            }
        };
        if memory == 0 {
            return Err(self.invalid(&key, "must be more than 0"));
        }
        Ok(Capacity { cpus, memory })
    }

    /// Checks that involve more than one role.
    fn check_cluster(
        &self,
        manager: Option<&ManagerConfig>,
        workers: &[WorkerConfig],
    ) -> Result<(), ConfigError> {
        for (i, w) in workers.iter().enumerate() {
            if let Some(j) = workers[..i].iter().position(|o| o.name == w.name) {
                return Err(self.invalid(
                    &format!("worker[{i}].name"),
                    format!("{:?} is already the name of worker[{j}]", w.name),
                ));
            }
        }
        // Port 0 asks the system for a free port, so two roles asking for it never collide; tests
        // rely on that.
        let mut listens: Vec<(String, SocketAddr)> = Vec::new();
        if let Some(m) = manager {
            listens.push(("manager.listen".to_string(), m.listen));
        }
        for (i, w) in workers.iter().enumerate() {
            listens.push((format!("worker[{i}].listen"), w.listen));
        }
        for (i, (key, addr)) in listens.iter().enumerate() {
            if addr.port() == 0 {
                continue;
            }
            if let Some((other, _)) = listens[..i].iter().find(|(_, a)| a == addr) {
                return Err(self.invalid(key, format!("{addr} is also {other}")));
            }
        }
        if let Some(m) = manager {
            for (i, w) in workers.iter().enumerate() {
                if w.heartbeat_interval >= m.heartbeat_ttl {
                    return Err(self.invalid(
                        &format!("worker[{i}].heartbeat_interval"),
                        format!(
                            "{} must be shorter than manager.heartbeat_ttl ({}), or the manager would count the worker down between two heartbeats",
                            human(w.heartbeat_interval),
                            human(m.heartbeat_ttl)
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse(text, "cluster.toml").unwrap_or_else(|e| panic!("{text}\n{e}"))
    }

    #[test]
    fn every_example_under_config_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        let mut seen = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{dir}: {e}")).path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                config.manager.is_some() || !config.workers.is_empty(),
                "{}",
                path.display()
            );
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                text.starts_with('#'),
                "{} must open with a comment saying what it is for",
                path.display()
            );
            seen.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
        }
        for name in [
            "single.toml",
            "three-workers.toml",
            "mock-cluster.toml",
            "round-robin.toml",
            "epvm.toml",
            "binpack.toml",
            "spread.toml",
        ] {
            assert!(
                seen.contains(&Some(name.to_string())),
                "config/{name} is missing"
            );
        }
    }

    #[test]
    fn each_scheduler_example_uses_its_scheduler() {
        for name in poseidon_schedulers::NAMES {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(format!("{name}.toml"));
            let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                config.manager.map(|m| m.scheduler).as_deref(),
                Some(*name),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn single_toml_spells_out_the_embedded_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/single.toml");
        let mut from_file = load(&path).unwrap_or_else(|e| panic!("{e}"));
        from_file.source = EMBEDDED_SOURCE.to_string();
        assert_eq!(from_file, embedded_default());
    }

    #[test]
    fn the_embedded_default_is_a_manager_and_one_local_docker_worker() {
        let c = embedded_default();
        assert_eq!(c.source, "<embedded default>");
        let m = c.manager.clone().unwrap_or_else(|| panic!("no manager"));
        assert_eq!(
            m,
            ManagerConfig {
                listen: "127.0.0.1:5555".parse().unwrap_or_else(|e| panic!("{e}")),
                data_dir: PathBuf::from("poseidon-data/manager"),
                scheduler: "epvm".into(),
                heartbeat_ttl: Duration::from_secs(5),
                dispatch_backoff: Duration::from_millis(500),
            }
        );
        let w = c.worker("local").unwrap_or_else(|| panic!("no worker"));
        assert_eq!(
            *w,
            WorkerConfig {
                name: "local".into(),
                listen: "127.0.0.1:5556".parse().unwrap_or_else(|e| panic!("{e}")),
                advertise: "http://127.0.0.1:5556".into(),
                manager: Some("http://127.0.0.1:5555".into()),
                runtime: RuntimeKind::Docker,
                docker_host: None,
                data_dir: PathBuf::from("poseidon-data/local"),
                capacity: None,
                heartbeat_interval: Duration::from_secs(1),
                stop_grace: Duration::from_secs(10),
                network: None,
            }
        );
        assert!(c.worker("nope").is_none());
    }

    #[test]
    fn every_key_is_read_into_the_config() {
        let c = parse_ok(
            r#"
            [manager]
            listen = "0.0.0.0:7000"
            data_dir = "/var/lib/poseidon"
            scheduler = "binpack"
            heartbeat_ttl = "10s"
            dispatch_backoff = "250ms"

            [[worker]]
            name = "w1"
            listen = "0.0.0.0:7001"
            advertise = "http://10.0.0.5:7001/"
            manager = "https://manager.example:7000"
            runtime = "mock"
            docker_host = "tcp://127.0.0.1:2375"
            data_dir = "/srv/w1"
            capacity = { cpus = 4, memory = 8589934592 }
            heartbeat_interval = "2s"
            stop_grace = "0s"
            network = "poseidon_net"

            [[worker]]
            name = "w2"
            listen = "localhost:7002"
            capacity = { cpus = 0.5, memory = "512m" }
            "#,
        );
        let m = c.manager.clone().unwrap_or_else(|| panic!("no manager"));
        assert_eq!(
            m,
            ManagerConfig {
                listen: "0.0.0.0:7000".parse().unwrap_or_else(|e| panic!("{e}")),
                data_dir: PathBuf::from("/var/lib/poseidon"),
                scheduler: "binpack".into(),
                heartbeat_ttl: Duration::from_secs(10),
                dispatch_backoff: Duration::from_millis(250),
            }
        );
        assert_eq!(
            c.workers,
            vec![
                WorkerConfig {
                    name: "w1".into(),
                    listen: "0.0.0.0:7001".parse().unwrap_or_else(|e| panic!("{e}")),
                    advertise: "http://10.0.0.5:7001".into(),
                    manager: Some("https://manager.example:7000".into()),
                    runtime: RuntimeKind::Mock,
                    docker_host: Some("tcp://127.0.0.1:2375".into()),
                    data_dir: PathBuf::from("/srv/w1"),
                    capacity: Some(Capacity {
                        cpus: 4.0,
                        memory: 8_589_934_592
                    }),
                    heartbeat_interval: Duration::from_secs(2),
                    stop_grace: Duration::ZERO,
                    network: Some("poseidon_net".into()),
                },
                WorkerConfig {
                    name: "w2".into(),
                    listen: "127.0.0.1:7002".parse().unwrap_or_else(|e| panic!("{e}")),
                    advertise: "http://127.0.0.1:7002".into(),
                    // The manager listens on every address; its workers reach it on the loopback.
                    manager: Some("http://127.0.0.1:7000".into()),
                    runtime: RuntimeKind::Docker,
                    docker_host: None,
                    data_dir: PathBuf::from("poseidon-data/w2"),
                    capacity: Some(Capacity {
                        cpus: 0.5,
                        memory: 536_870_912
                    }),
                    heartbeat_interval: Duration::from_secs(1),
                    stop_grace: Duration::from_secs(10),
                    network: None,
                },
            ]
        );
    }

    #[test]
    fn a_worker_alone_has_no_manager_unless_it_names_one() {
        let c = parse_ok("[[worker]]\nname = \"solo\"\n");
        assert_eq!(c.manager, None);
        assert_eq!(c.workers[0].manager, None);
        let c = parse_ok("[[worker]]\nname = \"w\"\nmanager = \"http://10.0.0.1:5555\"\n");
        assert_eq!(
            c.workers[0].manager.as_deref(),
            Some("http://10.0.0.1:5555")
        );
        let c = parse_ok("[manager]\n");
        assert_eq!(c.manager, Some(ManagerConfig::default()));
        assert!(c.workers.is_empty());
    }

    #[test]
    fn roles_on_port_zero_may_share_an_address() {
        let c = parse_ok(
            "[manager]\nlisten = \"127.0.0.1:0\"\n[[worker]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n[[worker]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\n",
        );
        assert_eq!(c.workers.len(), 2);
    }

    #[test]
    fn bad_files_are_refused_with_the_file_the_key_and_the_valid_choices() {
        let cases: &[(&str, &str)] = &[
            (
                "[manager]\nscheduler = \"fifo\"\n",
                "cluster.toml: manager.scheduler: unknown scheduler \"fifo\" (valid: round-robin, epvm, binpack, spread)",
            ),
            (
                "[[worker]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n[[worker]]\nname = \"b\"\nruntime = \"podman\"\n",
                "cluster.toml: worker[1].runtime: unknown runtime \"podman\" (valid: docker, mock)",
            ),
            (
                "[manager]\nshceduler = \"epvm\"\n",
                "cluster.toml: unknown key \"shceduler\" in [manager] (valid: listen, data_dir, scheduler, heartbeat_ttl, dispatch_backoff)",
            ),
            (
                "[manager]\nheartbeat_ttl = \"5 parsecs\"\n",
                "cluster.toml: manager.heartbeat_ttl: invalid duration \"5 parsecs\" (examples: 500ms, 5s, 2m, 1h)",
            ),
            (
                "[manager]\nheartbeat_ttl = 5\n",
                "cluster.toml: manager.heartbeat_ttl: must be a duration string such as \"5s\" or \"500ms\", got integer",
            ),
            (
                "[manager]\nheartbeat_ttl = \"50ms\"\n",
                "cluster.toml: manager.heartbeat_ttl: must be at least 100ms, got \"50ms\"",
            ),
            (
                "[manager]\ndispatch_backoff = \"0s\"\n",
                "cluster.toml: manager.dispatch_backoff: must be at least 1ms, got \"0s\"",
            ),
            (
                "[manager]\nlisten = \"nowhere\"\n",
                "cluster.toml: manager.listen: invalid address \"nowhere\" (expected an IP address and a port, e.g. 127.0.0.1:5555 or 0.0.0.0:5555)",
            ),
            (
                "[manager]\nlisten = 5555\n",
                "cluster.toml: manager.listen: must be a string, got integer",
            ),
            (
                "[manager]\ndata_dir = \"\"\n",
                "cluster.toml: manager.data_dir: must not be empty",
            ),
            (
                "manager = \"yes\"\n",
                "cluster.toml: manager: must be a table ([manager]), got string",
            ),
            (
                "[worker]\nname = \"w1\"\n",
                "cluster.toml: worker: must be an array of tables (write [[worker]], not [worker]), got table",
            ),
            (
                "worker = [1]\n",
                "cluster.toml: worker[0]: must be a table ([[worker]]), got integer",
            ),
            (
                "[managr]\n",
                "cluster.toml: unknown key \"managr\" at the top level (valid: manager, worker)",
            ),
            ("# nothing\n", "cluster.toml: no [manager] and no [[worker]] table, so there is nothing to run"),
            ("", "cluster.toml: no [manager] and no [[worker]] table, so there is nothing to run"),
            (
                "[[worker]]\nlisten = \"127.0.0.1:5556\"\n",
                "cluster.toml: worker[0].name: missing (every worker needs a unique name)",
            ),
            (
                "[[worker]]\nname = \"\"\n",
                "cluster.toml: worker[0].name: invalid worker name \"\" (1 to 63 letters, digits, '_', '.' or '-')",
            ),
            (
                "[[worker]]\nname = \"my worker\"\n",
                "cluster.toml: worker[0].name: invalid worker name \"my worker\" (1 to 63 letters, digits, '_', '.' or '-')",
            ),
            (
                "[[worker]]\nname = \"w\"\nlisten = \"127.0.0.1:1\"\n[[worker]]\nname = \"w\"\nlisten = \"127.0.0.1:2\"\n",
                "cluster.toml: worker[1].name: \"w\" is already the name of worker[0]",
            ),
            (
                "[manager]\n[[worker]]\nname = \"a\"\n[[worker]]\nname = \"b\"\n",
                "cluster.toml: worker[1].listen: 127.0.0.1:5556 is also worker[0].listen",
            ),
            (
                "[manager]\n[[worker]]\nname = \"a\"\nlisten = \"127.0.0.1:5555\"\n",
                "cluster.toml: worker[0].listen: 127.0.0.1:5555 is also manager.listen",
            ),
            (
                "[[worker]]\nname = \"a\"\nnmae = \"b\"\n",
                "cluster.toml: unknown key \"nmae\" in worker[0] (valid: name, listen, advertise, manager, runtime, docker_host, data_dir, capacity, heartbeat_interval, stop_grace, network)",
            ),
            (
                "[[worker]]\nname = \"a\"\nadvertise = \"127.0.0.1:5556\"\n",
                "cluster.toml: worker[0].advertise: invalid URL \"127.0.0.1:5556\" (expected http://host:port, e.g. http://127.0.0.1:5555)",
            ),
            (
                "[[worker]]\nname = \"a\"\nmanager = \"http://\"\n",
                "cluster.toml: worker[0].manager: invalid URL \"http://\" (expected http://host:port, e.g. http://127.0.0.1:5555)",
            ),
            (
                "[[worker]]\nname = \"a\"\ndocker_host = \"ssh://me@box\"\n",
                "cluster.toml: worker[0].docker_host: unsupported Docker host \"ssh://me@box\" (valid: unix:///path/to/docker.sock, tcp://host:port)",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = { cpus = 0, memory = \"1g\" }\n",
                "cluster.toml: worker[0].capacity.cpus: must be more than 0, got 0",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1, memory = 0 }\n",
                "cluster.toml: worker[0].capacity.memory: must be more than 0",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1, memory = -4 }\n",
                "cluster.toml: worker[0].capacity.memory: must be more than 0",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1, memory = \"lots\" }\n",
                "cluster.toml: worker[0].capacity.memory: invalid size \"lots\" (examples: 268435456, 256m, 1g)",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1 }\n",
                "cluster.toml: worker[0].capacity.memory: missing (a declared capacity needs both cpus and memory)",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = { cpus = \"2\", memory = \"1g\" }\n",
                "cluster.toml: worker[0].capacity.cpus: must be a number, got string",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = { cpu = 2, memory = \"1g\" }\n",
                "cluster.toml: unknown key \"cpu\" in worker[0].capacity (valid: cpus, memory)",
            ),
            (
                "[[worker]]\nname = \"a\"\ncapacity = \"big\"\n",
                "cluster.toml: worker[0].capacity: must be a table such as { cpus = 2.0, memory = \"4g\" }, got string",
            ),
            (
                "[[worker]]\nname = \"a\"\nnetwork = \"-net\"\n",
                "cluster.toml: worker[0].network: invalid Docker network name \"-net\" (a letter or digit, then letters, digits, '_', '.' or '-')",
            ),
            (
                "[manager]\nheartbeat_ttl = \"1s\"\n[[worker]]\nname = \"a\"\n",
                "cluster.toml: worker[0].heartbeat_interval: 1s must be shorter than manager.heartbeat_ttl (1s), or the manager would count the worker down between two heartbeats",
            ),
            (
                "[manager]\n[[worker]]\nname = \"a\"\nheartbeat_interval = \"7500ms\"\n",
                "cluster.toml: worker[0].heartbeat_interval: 7500ms must be shorter than manager.heartbeat_ttl (5s), or the manager would count the worker down between two heartbeats",
            ),
            (
                "[manager]\nlisten = \"127.0.0.1:5555\"\nlisten = \"127.0.0.1:5556\"\n",
                "cluster.toml: invalid TOML: line 3, column 1: duplicate key",
            ),
            (
                "[manager\n",
                "cluster.toml: invalid TOML: line 1, column ",
            ),
        ];
        for (text, expected) in cases {
            match parse(text, "cluster.toml") {
                Ok(c) => panic!("{text}\nwas accepted as {c:?}"),
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        message.starts_with(expected),
                        "{text}\n  gave: {message}\n  want: {expected}"
                    );
                    assert!(!message.contains('\n'), "{message}");
                    assert!(!message.ends_with('.'), "{message}");
                }
            }
        }
    }

    #[test]
    fn an_unreadable_file_names_the_path_and_the_reason() {
        let err = load(Path::new("/nonexistent/cluster.toml"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("cannot read /nonexistent/cluster.toml: No such file or directory")
        );
    }

    #[test]
    fn load_names_the_file_in_errors_and_in_the_config() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("cluster.toml");
        std::fs::write(&path, "[manager]\nscheduler = \"fifo\"\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = load(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.starts_with(&format!("{}: manager.scheduler: ", path.display())),
            "{err}"
        );
        std::fs::write(&path, "[manager]\n").unwrap_or_else(|e| panic!("{e}"));
        let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.source, path.display().to_string());
    }
}
