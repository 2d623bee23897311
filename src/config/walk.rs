//! Walking the TOML table by hand: each reader takes a key, checks its type and value, and fails with
//! an error that names the file, the key and the valid choices.

use super::*;

/// The parsing context: the file name every error carries.
pub(super) struct Cx<'a> {
    pub(super) file: &'a str,
}

impl Cx<'_> {
    pub(super) fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn deny_unknown(
        &self,
        t: &Table,
        table: &str,
        valid: &[&str],
    ) -> Result<(), ConfigError> {
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

    pub(super) fn string<'t>(
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

    pub(super) fn addr(
        &self,
        t: &Table,
        prefix: &str,
        key: &str,
    ) -> Result<Option<SocketAddr>, ConfigError> {
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

    pub(super) fn duration(
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

    /// A list of URLs (`["http://a:2379", ...]`); missing is empty.
    pub(super) fn urls(
        &self,
        t: &Table,
        prefix: &str,
        key: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let path = format!("{prefix}.{key}");
        let items = match t.get(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(self.invalid(
                    &path,
                    format!("must be a list of URLs, got {}", other.type_str()),
                ))
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let mut one = Table::new();
            one.insert("url".to_string(), item.clone());
            let url = self
                .url(&one, &format!("{path}[{i}]"), "url")
                .map_err(|_| {
                    self.invalid(
                        &format!("{path}[{i}]"),
                        format!("invalid URL {item} (expected http://host:port)"),
                    )
                })?
                .unwrap_or_default();
            out.push(url);
        }
        Ok(out)
    }

    pub(super) fn url(
        &self,
        t: &Table,
        prefix: &str,
        key: &str,
    ) -> Result<Option<String>, ConfigError> {
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

    pub(super) fn manager(&self, t: &Table) -> Result<ManagerConfig, ConfigError> {
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
        match t.get("max_heartbeats_per_second") {
            None => {}
            Some(Value::Integer(n)) if (1..=1_000_000).contains(n) => {
                m.max_heartbeats_per_second = *n as u32;
            }
            Some(other) => {
                return Err(self.invalid(
                    "manager.max_heartbeats_per_second",
                    format!("must be a whole number from 1 to 1000000, got {other}"),
                ))
            }
        }
        if self.string(t, P, "dns_listen")? == Some("off") {
            m.dns_listen = None;
        } else if let Some(dns) = self.addr(t, P, "dns_listen")? {
            m.dns_listen = Some(dns);
        }
        m.advertise = match self.url(t, P, "advertise")? {
            Some(url) => url,
            None => url_of(m.listen),
        };
        match self.string(t, P, "store")? {
            None | Some("rocksdb") => {}
            Some("etcd") => m.store = StoreKind::Etcd,
            Some(other) => {
                return Err(self.invalid(
                    "manager.store",
                    format!("unknown store {other:?} (valid: rocksdb, etcd)"),
                ))
            }
        }
        m.etcd_endpoints = self.urls(t, P, "etcd_endpoints")?;
        m.managers = self.urls(t, P, "managers")?;
        if m.store == StoreKind::Etcd && m.etcd_endpoints.is_empty() {
            return Err(self.invalid(
                "manager.etcd_endpoints",
                "missing: store = \"etcd\" needs the etcd cluster's client URLs, e.g. [\"http://127.0.0.1:2379\"]",
            ));
        }
        if m.store == StoreKind::Rocksdb && m.managers.len() > 1 {
            return Err(self.invalid(
                "manager.managers",
                "several managers need store = \"etcd\": the embedded RocksDB store belongs to one manager",
            ));
        }
        Ok(m)
    }

    pub(super) fn data_dir(&self, dir: &str, key: &str) -> Result<PathBuf, ConfigError> {
        if dir.trim().is_empty() {
            Err(self.invalid(key, "must not be empty"))
        } else {
            Ok(PathBuf::from(dir))
        }
    }

    pub(super) fn worker(
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
        let explicit = self.url(t, p, "manager")?;
        if let Some(url) = &explicit {
            w.manager = Some(url.clone());
        }
        w.managers = self.urls(t, p, "managers")?;
        if let Some(first) = w.managers.first() {
            if explicit.is_some() {
                return Err(self.invalid(
                    &format!("{p}.managers"),
                    "give either manager or managers, not both",
                ));
            }
            w.manager = Some(first.clone());
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
        match self.string(t, p, "ingress_listen")? {
            None => {}
            Some("off") => w.ingress_listen = None,
            Some(ip) => {
                w.ingress_listen = Some(ip.parse::<std::net::IpAddr>().map_err(|_| {
                    self.invalid(
                        &format!("{p}.ingress_listen"),
                        format!("invalid address {ip:?} (expected an IP address such as 127.0.0.1 or 0.0.0.0, or \"off\")"),
                    )
                })?);
            }
        }
        if let Some(ip) = self.string(t, p, "endpoint_address")? {
            let parsed = ip.parse::<std::net::IpAddr>().ok();
            // An unspecified address reaches nothing: it is a bind address, not a destination.
            w.endpoint_address = Some(parsed.filter(|a| !a.is_unspecified()).ok_or_else(|| {
                self.invalid(
                    &format!("{p}.endpoint_address"),
                    format!("invalid address {ip:?} (expected the IP address at which this host's published ports are reached, such as 10.0.0.5; not a name, a port or 0.0.0.0)"),
                )
            })?);
        }
        w.host_volumes = self.host_volumes(t, p)?;
        w.registry_auth = self.registry_auth(t, p)?;
        match t.get("labels") {
            None => {}
            Some(Value::Table(labels)) => w.labels = self.labels(labels, &format!("{p}.labels"))?,
            Some(other) => {
                return Err(self.invalid(
                    &format!("{p}.labels"),
                    format!(
                        "must be a table such as {{ disk = \"ssd\", zone = \"a\" }}, got {}",
                        other.type_str()
                    ),
                ))
            }
        }
        Ok(w)
    }

    /// Node labels: keys as task constraints can name them (`node.labels.KEY`), string values.
    pub(super) fn labels(
        &self,
        t: &Table,
        p: &str,
    ) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut labels = BTreeMap::new();
        for (key, value) in t {
            let path = format!("{p}.{key}");
            crate::placement::check_label_key(key)
                .map_err(|e| self.invalid(&path, format!("invalid label key: {e}")))?;
            let Value::String(value) = value else {
                return Err(self.invalid(
                    &path,
                    format!(
                        "must be a string (write {key} = \"...\"), got {}",
                        value.type_str()
                    ),
                ));
            };
            crate::placement::check_label_value(value)
                .map_err(|e| self.invalid(&path, format!("invalid label value: {e}")))?;
            labels.insert(key.clone(), value.clone());
        }
        Ok(labels)
    }

    pub(super) fn capacity(&self, t: &Table, p: &str) -> Result<Capacity, ConfigError> {
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

    /// The `[security]` table.
    pub(super) fn security(&self, t: &Table) -> Result<SecurityConfig, ConfigError> {
        const P: &str = "security";
        self.deny_unknown(t, "[security]", SECURITY_KEYS)?;
        let mut s = SecurityConfig::default();
        for (key, slot) in [("acl", &mut s.acl), ("insecure", &mut s.insecure)] {
            match t.get(key) {
                None => {}
                Some(Value::Boolean(b)) => *slot = *b,
                Some(other) => {
                    return Err(self.invalid(
                        &format!("{P}.{key}"),
                        format!("must be true or false, got {}", other.type_str()),
                    ))
                }
            }
        }
        s.tls = match t.get("tls") {
            None => TlsMode::Off,
            Some(Value::String(v)) if v == "off" => TlsMode::Off,
            Some(Value::String(v)) if v == "auto" => TlsMode::Auto,
            Some(Value::Table(files)) => {
                self.deny_unknown(files, "security.tls", TLS_KEYS)?;
                let path = |key: &str| -> Result<PathBuf, ConfigError> {
                    match self.string(files, "security.tls", key)? {
                        Some(p) if !p.trim().is_empty() => Ok(PathBuf::from(p)),
                        _ => Err(self.invalid(
                            &format!("security.tls.{key}"),
                            "missing (tls = { ca, cert, key } needs all three PEM files)",
                        )),
                    }
                };
                TlsMode::Files {
                    ca: path("ca")?,
                    cert: path("cert")?,
                    key: path("key")?,
                }
            }
            Some(other) => {
                return Err(self.invalid(
                    "security.tls",
                    format!(
                        "must be \"off\", \"auto\" or {{ ca = \"...\", cert = \"...\", key = \"...\" }}, got {}",
                        match other {
                            Value::String(v) => format!("{v:?}"),
                            o => o.type_str().to_string(),
                        }
                    ),
                ))
            }
        };
        s.join_token = self.string(t, P, "join_token")?.map(str::to_string);
        Ok(s)
    }

    /// Checks that involve more than one role.
    pub(super) fn check_cluster(
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
