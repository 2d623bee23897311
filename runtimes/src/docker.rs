//! A hand-written Docker Engine API client: [`DockerRuntime`].
//!
//! It speaks HTTP/1.1 with hyper over the daemon's Unix socket (`unix:///var/run/docker.sock`) or plain
//! TCP (`tcp://host:port`, which is also how the wiremock contract tests stand in for the daemon).
//! What it takes care of, and why:
//! - **Version negotiation.** The first call reads `Api-Version` from `GET /_ping` and every path is
//!   then prefixed with `/v{min(ours, theirs)}`: Debian's Docker 20.10 speaks at most 1.41, while
//!   Docker 29 refuses clients below 1.44, so no fixed pin works everywhere.
//! - **A timeout on every call**, which becomes [`RuntimeError::Timeout`]. `stop` waits up to its grace
//!   period inside the daemon, so its timeout is the grace plus a margin. `wait` and `events` are long
//!   polls; they instead ping the daemon every [`Timeouts::liveness`] and give up when it stops answering.
//! - **Typed errors** that keep the daemon's own message: 404 is a missing container or image
//!   (depending on the call), 409 a conflict, 304 on start and stop is success, anything else is
//!   [`RuntimeError::Daemon`]; a refused connection or a missing socket is
//!   [`RuntimeError::Unreachable`].
//! - **Streams.** Image pulls and imports answer 200 and report failures as a JSON line with
//!   `errorDetail`, so every line is scanned. Logs and exec output of a container without a TTY are
//!   multiplexed in frames with an 8-byte header that can straddle body chunks, so they are buffered
//!   ([`Demuxer`]). Event lines can straddle chunks too ([`LineSplitter`]).
//! - **Percent-encoded queries**: label filters are JSON, which is not a valid URI as it stands.
//! - **Registry credentials** given with [`DockerRuntime::with_registry_auth`] go with each pull of an
//!   image from their registry as `X-Registry-Auth` (see [`crate::registry`]), and nowhere else.
//!
//! Over the house's ~700 lines: the whole hand-written Engine API client (negotiation, every
//! endpoint the trait needs, typed errors). Reading the answers into domain types is in
//! `docker/answers.rs`, the byte-level streams in `docker/stream.rs`; a split along endpoints is the
//! next step when it grows again.

mod answers;
mod stream;

use answers::{non_empty, parse_event, parse_summary};
pub use answers::{parse_inspect, parse_stats};
pub use stream::{demux_logs, Demuxer, LineSplitter, StreamKind};

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyperlocal::UnixConnector;
use serde_json::{json, Value};
use tokio::sync::{mpsc, OnceCell};

use crate::image_ref::ImageRef;
use crate::registry::{self, RegistryAuth};
use crate::{
    ContainerInfo, ContainerSpec, ContainerSummary, EventStream, ExecOutput, LogChunk, LogOptions,
    LogStream, Logs, MountKind, OutputStream, ProgressFn, PullProgress, Runtime, RuntimeError,
    StatsSample,
};

/// The newest Engine API version this client speaks; an older daemon gets its own version instead.
pub const API_VERSION: &str = "1.47";

/// The version assumed when a daemon's `/_ping` carries no `Api-Version` header (Docker 19.03's),
/// old enough for any daemon this client can work with (`Init` needs 1.25, `condition` on wait 1.30).
const FALLBACK_API_VERSION: &str = "1.40";

/// Where the daemon listens when neither the caller nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The most exec output kept; a health check that prints more is cut short rather than let fill memory.
const MAX_EXEC_OUTPUT: usize = 1 << 20;

/// How long each kind of call may take before it fails with [`RuntimeError::Timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Any call without a more specific limit below (create, start, inspect, list, logs, stats...).
    pub call: Duration,
    /// `GET /_ping`, used by `ping`, version negotiation and the liveness checks of long polls.
    pub ping: Duration,
    /// Added to the grace period of `stop`, since the daemon itself waits up to the grace.
    pub stop_margin: Duration,
    /// A whole image pull or import, streamed progress included.
    pub pull: Duration,
    /// The longest a single `wait` may block before it fails with `Timeout`; callers wait again.
    pub wait: Duration,
    /// How often `wait` and an event stream check that the daemon still answers, since a long poll
    /// on a hung daemon would otherwise block forever without a word.
    pub liveness: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            call: Duration::from_secs(30),
            ping: Duration::from_secs(5),
            stop_margin: Duration::from_secs(15),
            pull: Duration::from_secs(600),
            wait: Duration::from_secs(3600),
            liveness: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// The same limit for everything; handy in tests that want a hung daemon noticed quickly.
    pub fn uniform(limit: Duration) -> Self {
        Timeouts {
            call: limit,
            ping: limit,
            stop_margin: limit,
            pull: limit,
            wait: limit,
            liveness: limit,
        }
    }
}

/// The two ways of reaching a daemon. Both pool their connections with keep-alive.
#[derive(Clone)]
enum Transport {
    Unix {
        client: Client<UnixConnector, Full<Bytes>>,
        /// The socket path hex-encoded, as hyperlocal's connector expects it in the URI's host.
        socket_hex: String,
    },
    Tcp {
        client: Client<HttpConnector, Full<Bytes>>,
        /// `host:port`.
        authority: String,
    },
}

/// A [`Runtime`] speaking the Docker Engine API. See the module documentation.
///
/// Cheap to clone: clones share the connection pool and the negotiated API version.
///
/// A pooled connection is driven by a task on the tokio runtime that opened it, so use one
/// `DockerRuntime` (and its clones) within one runtime. A clone used from a second runtime while the
/// first is blocked (a `Drop` that waits on a thread, say) can pick such a connection and hang until
/// its timeout; make a fresh one with [`DockerRuntime::new`] there instead.
#[derive(Clone)]
pub struct DockerRuntime {
    transport: Transport,
    /// The host as configured, for messages (`unix:///var/run/docker.sock`).
    host: String,
    timeouts: Timeouts,
    /// The negotiated version (`1.41`), settled by the first call that needs it.
    version: Arc<OnceCell<String>>,
    /// Credentials sent with pulls from their registries.
    registry_auth: Arc<Vec<RegistryAuth>>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("host", &self.host)
            .field("api_version", &self.version.get())
            .field("timeouts", &self.timeouts)
            .field("registry_auth", &self.registry_auth)
            .finish()
    }
}

/// One plain request: what it is for, where it goes, and how to read its status.
struct Req<'a> {
    /// The operation, for timeout messages.
    op: &'a str,
    method: Method,
    path: &'a str,
    body: Option<&'a Value>,
    /// What a 404 means is missing.
    missing: Missing,
    /// Whether 304 Not Modified is success (start and stop of a container already so).
    ok_304: bool,
}

/// Which kind of thing a 404 from a call means is missing.
#[derive(Debug, Clone, Copy)]
enum Missing {
    Container,
    Image,
}

impl DockerRuntime {
    /// A client for `host` (`unix:///path` or `tcp://host:port`); `None` takes `$DOCKER_HOST`, then
    /// [`DEFAULT_DOCKER_HOST`]. Nothing is sent until the first call, so a daemon that is down is
    /// reported then, as [`RuntimeError::Unreachable`].
    ///
    /// `tcp://` is plain HTTP: TLS to a remote daemon is not supported.
    pub fn new(host: Option<&str>) -> Result<Self, RuntimeError> {
        let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let host = host
            .map(str::to_string)
            .or(from_env)
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        let transport = if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(RuntimeError::Invalid(format!(
                    "docker host {host:?} names no socket path"
                )));
            }
            Transport::Unix {
                client: Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .build(UnixConnector),
                socket_hex: hex(path.as_bytes()),
            }
        } else if let Some(rest) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(RuntimeError::Invalid(format!(
                    "docker host {host:?} is not tcp://host:port"
                )));
            }
            // The docker CLI's default port for plain TCP.
            let authority = if authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                authority.to_string()
            } else {
                format!("{authority}:2375")
            };
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            Transport::Tcp {
                client: Client::builder(TokioExecutor::new())
                    .pool_timer(TokioTimer::new())
                    .build(connector),
                authority,
            }
        } else {
            return Err(RuntimeError::Invalid(format!(
                "docker host {host:?} is neither unix:///path nor tcp://host:port"
            )));
        };
        Ok(DockerRuntime {
            transport,
            host,
            timeouts: Timeouts::default(),
            version: Arc::new(OnceCell::new()),
            registry_auth: Arc::new(Vec::new()),
        })
    }

    /// Sets the registry credentials: each pull of an image from one of these registries carries its
    /// credentials as `X-Registry-Auth`; pulls from other registries stay anonymous.
    pub fn with_registry_auth(mut self, auth: Vec<RegistryAuth>) -> Self {
        self.registry_auth = Arc::new(auth);
        self
    }

    /// Replaces the timeouts (see [`Timeouts`] for the defaults).
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The daemon address as configured (`unix:///var/run/docker.sock`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The API version in use (`1.41`), negotiating it with the daemon if no call has yet.
    pub async fn api_version(&self) -> Result<String, RuntimeError> {
        let limit = self.timeouts.ping;
        self.bounded("version negotiation", limit, self.version())
            .await
    }

    /// True when the image is present locally.
    pub async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        let r = ImageRef::parse(image)?;
        let path = format!("/images/{}/json", encode_path(&r.to_string(), "/:@"));
        let limit = self.timeouts.call;
        let (status, body) = self
            .bounded(
                "inspect image",
                limit,
                self.exchange(Method::GET, &path, None),
            )
            .await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(daemon_error(s, &body, Missing::Image)),
        }
    }

    /// Imports a root filesystem tarball as the image `repo:tag` (`docker import`), for images built
    /// locally where no registry is reachable.
    pub async fn import_image(
        &self,
        tar: Vec<u8>,
        repo: &str,
        tag: &str,
    ) -> Result<(), RuntimeError> {
        // Parsing `repo:tag` checks both halves at once.
        let r = ImageRef::parse(&format!("{repo}:{tag}"))?;
        let path = format!(
            "/images/create?{}",
            query(&[("fromSrc", "-"), ("repo", &r.repo), ("tag", &r.tag)])
        );
        let limit = self.timeouts.pull;
        self.bounded("import image", limit, async {
            let response = self
                .send(
                    Method::POST,
                    &path,
                    Some(("application/x-tar", Bytes::from(tar))),
                )
                .await?;
            let status = response.status();
            if !status.is_success() {
                let body = read_body(response.into_body()).await?;
                return Err(daemon_error(status, &body, Missing::Image));
            }
            scan_progress(response.into_body(), &|_| {}).await
        })
        .await
    }

    // ----- Plumbing -----

    /// Runs `fut` under `limit`, turning an expiry into `Timeout(op)`.
    async fn bounded<T>(
        &self,
        op: &str,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Timeout(format!(
                "{op} after {}",
                human(limit)
            ))),
        }
    }

    /// The negotiated API version, pinging the daemon the first time.
    async fn version(&self) -> Result<String, RuntimeError> {
        self.version
            .get_or_try_init(|| async {
                let response = self.send_raw(Method::GET, "/_ping", None).await?;
                let status = response.status();
                let theirs = response
                    .headers()
                    .get("api-version")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = read_body(response.into_body()).await?;
                if !status.is_success() {
                    return Err(daemon_error(status, &body, Missing::Container));
                }
                let theirs = theirs.unwrap_or_else(|| FALLBACK_API_VERSION.to_string());
                Ok(negotiate(API_VERSION, &theirs))
            })
            .await
            .cloned()
    }

    /// Builds the request URI for a path that already carries its query.
    fn uri(&self, path_and_query: &str) -> Result<Uri, RuntimeError> {
        let text = match &self.transport {
            Transport::Unix { socket_hex, .. } => format!("unix://{socket_hex}:0{path_and_query}"),
            Transport::Tcp { authority, .. } => format!("http://{authority}{path_and_query}"),
        };
        text.parse::<Uri>()
            .map_err(|e| RuntimeError::Invalid(format!("bad request path {path_and_query:?}: {e}")))
    }

    /// Sends one request to an unversioned path; transport failures become `Unreachable`.
    async fn send_raw(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Response<Incoming>, RuntimeError> {
        self.send_raw_with(method, path_and_query, body, &[]).await
    }

    /// [`Self::send_raw`] with extra request headers (a pull's `X-Registry-Auth`).
    async fn send_raw_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
        headers: &[(&'static str, String)],
    ) -> Result<Response<Incoming>, RuntimeError> {
        let uri = self.uri(path_and_query)?;
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let body = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder
            .body(body)
            .map_err(|e| RuntimeError::Invalid(format!("cannot build request: {e}")))?;
        let result = match &self.transport {
            Transport::Unix { client, .. } => client.request(request).await,
            Transport::Tcp { client, .. } => client.request(request).await,
        };
        result.map_err(|e| {
            RuntimeError::Unreachable(format!(
                "cannot reach docker at {}: {}",
                self.host,
                chain(&e)
            ))
        })
    }

    /// Sends one request to a path under the negotiated version prefix.
    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> Result<Response<Incoming>, RuntimeError> {
        let version = self.version().await?;
        self.send_raw(method, &format!("/v{version}{path_and_query}"), body)
            .await
    }

    /// Sends a request (with an optional JSON body) and reads the whole answer.
    async fn exchange(
        &self,
        method: Method,
        path_and_query: &str,
        json_body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes), RuntimeError> {
        let body = json_body.map(|v| ("application/json", Bytes::from(v.to_string())));
        let response = self.send(method, path_and_query, body).await?;
        let status = response.status();
        let body = read_body(response.into_body()).await?;
        Ok((status, body))
    }

    /// A bounded exchange that succeeds on 2xx (and on 304 when `req.ok_304`), and maps any other
    /// status to a typed error.
    async fn simple(&self, limit: Duration, req: Req<'_>) -> Result<Bytes, RuntimeError> {
        let (status, body) = self
            .bounded(req.op, limit, self.exchange(req.method, req.path, req.body))
            .await?;
        if status.is_success() || (req.ok_304 && status == StatusCode::NOT_MODIFIED) {
            Ok(body)
        } else {
            Err(daemon_error(status, &body, req.missing))
        }
    }

    /// Pings the daemon every `liveness` until one fails, and returns that failure. Long polls race
    /// against this so that a dead or hung daemon ends them.
    async fn until_engine_down(&self) -> RuntimeError {
        loop {
            tokio::time::sleep(self.timeouts.liveness).await;
            if let Err(e) = self.ping().await {
                return e;
            }
        }
    }

    async fn pull(&self, r: &ImageRef, progress: ProgressFn<'_>) -> Result<(), RuntimeError> {
        let path = format!(
            "/images/create?{}",
            query(&[("fromImage", &r.repo), ("tag", &r.tag)])
        );
        // The header is built per pull and never logged; an error message quotes the daemon only.
        let headers: Vec<(&'static str, String)> = registry::auth_for(&self.registry_auth, &r.repo)
            .map(|a| ("X-Registry-Auth", a.header_value()))
            .into_iter()
            .collect();
        let version = self.version().await?;
        let response = self
            .send_raw_with(Method::POST, &format!("/v{version}{path}"), None, &headers)
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = read_body(response.into_body()).await?;
            return Err(pull_error(status.as_u16(), &message_of(status, &body)));
        }
        scan_progress(response.into_body(), progress).await
    }
}

/// The request body `create` sends for `spec`; public so that the benchmark's bare client sends
/// exactly the same bytes.
pub fn create_body(spec: &ContainerSpec) -> Result<Value, RuntimeError> {
    let image = ImageRef::parse(&spec.image)?.to_string();
    let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut exposed = serde_json::Map::new();
    let mut bindings = serde_json::Map::new();
    for p in &spec.ports {
        let protocol = if p.protocol.is_empty() {
            "tcp"
        } else {
            p.protocol.as_str()
        };
        if !matches!(protocol, "tcp" | "udp" | "sctp") {
            return Err(RuntimeError::Invalid(format!(
                "port {} has protocol {protocol:?}; expected tcp, udp or sctp",
                p.container_port
            )));
        }
        let key = format!("{}/{protocol}", p.container_port);
        exposed.insert(key.clone(), json!({}));
        // HostPort is a string, and an empty one lets the engine pick a free port.
        let host_port = p.host_port.map(|h| h.to_string()).unwrap_or_default();
        let entry = bindings.entry(key).or_insert_with(|| json!([]));
        if let Value::Array(list) = entry {
            list.push(json!({"HostIp": "", "HostPort": host_port}));
        }
    }
    let mut host_config = json!({
        "PortBindings": bindings,
        // Poseidon, not Docker, restarts tasks.
        "RestartPolicy": {"Name": "no"},
        // An init as PID 1 forwards SIGTERM, so that `stop` does not wait out the whole grace
        // period on programs (busybox `sleep`) that ignore signals as PID 1.
        "Init": true,
    });
    if let Some(cpus) = spec.cpus {
        if !cpus.is_finite() || cpus < 0.0 {
            return Err(RuntimeError::Invalid(format!(
                "cpu limit {cpus} is not a non-negative number"
            )));
        }
        host_config["NanoCpus"] = json!((cpus * 1e9).round() as i64);
    }
    if let Some(memory) = spec.memory {
        host_config["Memory"] = json!(memory);
    }
    if let Some(network) = &spec.network {
        host_config["NetworkMode"] = json!(network);
    }
    if !spec.mounts.is_empty() {
        let mut mounts = Vec::with_capacity(spec.mounts.len());
        for m in &spec.mounts {
            if !m.target.starts_with('/') {
                return Err(RuntimeError::Invalid(format!(
                    "mount target {:?} is not an absolute path",
                    m.target
                )));
            }
            let kind = match m.kind {
                MountKind::Volume => "volume",
                MountKind::Bind => "bind",
            };
            mounts.push(json!({
                "Type": kind,
                "Source": m.source,
                "Target": m.target,
                "ReadOnly": m.read_only,
            }));
        }
        host_config["Mounts"] = json!(mounts);
    }
    let mut body = json!({
        "Image": image,
        "Env": env,
        "Labels": spec.labels,
        "ExposedPorts": exposed,
        "HostConfig": host_config,
    });
    if !spec.cmd.is_empty() {
        body["Cmd"] = json!(spec.cmd);
    }
    Ok(body)
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        let limit = self.timeouts.ping;
        self.bounded("ping", limit, async {
            let response = self.send_raw(Method::GET, "/_ping", None).await?;
            let status = response.status();
            let body = read_body(response.into_body()).await?;
            if status.is_success() {
                Ok(())
            } else {
                Err(daemon_error(status, &body, Missing::Container))
            }
        })
        .await
    }

    async fn ensure_image(
        &self,
        image: &str,
        progress: ProgressFn<'_>,
    ) -> Result<(), RuntimeError> {
        let r = ImageRef::parse(image)?;
        if self.image_exists(image).await? {
            return Ok(());
        }
        let limit = self.timeouts.pull;
        self.bounded("pull", limit, self.pull(&r, progress)).await
    }

    async fn pull_image(&self, image: &str, progress: ProgressFn<'_>) -> Result<(), RuntimeError> {
        let r = ImageRef::parse(image)?;
        let limit = self.timeouts.pull;
        self.bounded("pull", limit, self.pull(&r, progress)).await
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let body = create_body(spec)?;
        let path = if spec.name.is_empty() {
            "/containers/create".to_string()
        } else {
            format!("/containers/create?{}", query(&[("name", &spec.name)]))
        };
        let limit = self.timeouts.call;
        let body = self
            .simple(
                limit,
                Req {
                    op: "create",
                    method: Method::POST,
                    path: &path,
                    body: Some(&body),
                    missing: Missing::Image,
                    ok_304: false,
                },
            )
            .await?;
        let created: Value = parse_json("create", &body)?;
        created["Id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| bad_answer("create", "no Id"))
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let path = format!("/containers/{}/start", encode_path(id, ""));
        let limit = self.timeouts.call;
        self.simple(
            limit,
            Req {
                op: "start",
                method: Method::POST,
                path: &path,
                body: None,
                missing: Missing::Container,
                ok_304: true,
            },
        )
        .await
        .map(drop)
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        // The API takes whole seconds; round up so that the grace given is never cut short.
        let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let path = format!(
            "/containers/{}/stop?{}",
            encode_path(id, ""),
            query(&[("t", &secs.to_string())])
        );
        let limit = Duration::from_secs(secs) + self.timeouts.stop_margin;
        self.simple(
            limit,
            Req {
                op: "stop",
                method: Method::POST,
                path: &path,
                body: None,
                missing: Missing::Container,
                ok_304: true,
            },
        )
        .await
        .map(drop)
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        let path = format!("/containers/{}/kill", encode_path(id, ""));
        let limit = self.timeouts.call;
        self.simple(
            limit,
            Req {
                op: "kill",
                method: Method::POST,
                path: &path,
                body: None,
                missing: Missing::Container,
                ok_304: false,
            },
        )
        .await
        .map(drop)
    }

    async fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        // `v=true` also removes anonymous volumes an image declared, which would otherwise leak.
        let path = format!(
            "/containers/{}?{}",
            encode_path(id, ""),
            query(&[
                ("force", if force { "true" } else { "false" }),
                ("v", "true")
            ])
        );
        let limit = self.timeouts.call;
        self.simple(
            limit,
            Req {
                op: "remove",
                method: Method::DELETE,
                path: &path,
                body: None,
                missing: Missing::Container,
                ok_304: false,
            },
        )
        .await
        .map(drop)
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let path = format!("/containers/{}/json", encode_path(id, ""));
        let limit = self.timeouts.call;
        let body = self
            .simple(
                limit,
                Req {
                    op: "inspect",
                    method: Method::GET,
                    path: &path,
                    body: None,
                    missing: Missing::Container,
                    ok_304: false,
                },
            )
            .await?;
        parse_inspect(&parse_json("inspect", &body)?)
    }

    /// Blocks in `POST /containers/{id}/wait?condition=not-running`, which returns at once for a
    /// container that is not running, including one never started (with 0). The call may last up to
    /// [`Timeouts::wait`]; meanwhile the daemon is pinged every [`Timeouts::liveness`], and a failed
    /// ping ends the wait with that error, so a dead daemon is not mistaken for a long-running task.
    async fn wait(&self, id: &str) -> Result<i64, RuntimeError> {
        let path = format!(
            "/containers/{}/wait?{}",
            encode_path(id, ""),
            query(&[("condition", "not-running")])
        );
        let limit = self.timeouts.wait;
        let waiting = self.simple(
            limit,
            Req {
                op: "wait",
                method: Method::POST,
                path: &path,
                body: None,
                missing: Missing::Container,
                ok_304: false,
            },
        );
        let body = tokio::select! {
            r = waiting => r?,
            e = self.until_engine_down() => return Err(e),
        };
        let answer: Value = parse_json("wait", &body)?;
        if let Some(message) = answer["Error"]["Message"]
            .as_str()
            .filter(|m| !m.is_empty())
        {
            return Err(RuntimeError::Daemon {
                status: 200,
                message: message.to_string(),
            });
        }
        answer["StatusCode"]
            .as_i64()
            .ok_or_else(|| bad_answer("wait", "no StatusCode"))
    }

    /// Streams `GET /events` filtered to container start and die events carrying `label`. A task
    /// reads the stream; when the daemon closes it, or stops answering pings, the task sends one
    /// `Err` and closes the channel, and the caller subscribes again (and resynchronises with `list`,
    /// since events during the gap are lost). Dropping the receiver ends the task.
    async fn events(&self, label: &str) -> Result<EventStream, RuntimeError> {
        // Keys in sorted order, so the query is the same whether or not serde_json preserves order.
        let filters = json!({
            "event": ["start", "die"],
            "label": [label],
            "type": ["container"],
        });
        let path = format!("/events?{}", query(&[("filters", &filters.to_string())]));
        let limit = self.timeouts.call;
        let response = self
            .bounded("events", limit, async {
                let response = self.send(Method::GET, &path, None).await?;
                let status = response.status();
                if !status.is_success() {
                    let body = read_body(response.into_body()).await?;
                    return Err(daemon_error(status, &body, Missing::Container));
                }
                Ok(response)
            })
            .await?;
        let (tx, rx) = mpsc::channel(256);
        let this = self.clone();
        tokio::spawn(async move {
            let mut body = response.into_body();
            let mut lines = LineSplitter::default();
            let end = loop {
                // The liveness timer restarts with every chunk: data arriving proves the daemon
                // alive, so pings are only sent while the stream is quiet.
                let chunk = tokio::select! {
                    _ = tx.closed() => return,
                    e = this.until_engine_down() => break e,
                    chunk = next_chunk(&mut body) => chunk,
                };
                let chunk = match chunk {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => {
                        break RuntimeError::Unreachable(format!(
                            "docker at {} closed the event stream",
                            this.host
                        ))
                    }
                    Err(e) => break e,
                };
                for line in lines.push(&chunk) {
                    let event = match serde_json::from_slice::<Value>(&line) {
                        Ok(v) => parse_event(&v),
                        Err(_) => None,
                    };
                    if let Some(event) = event {
                        if tx.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                }
            };
            let _ = tx.send(Err(end)).await;
        });
        Ok(rx)
    }

    async fn exec(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let create = json!({
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": false,
            "Cmd": cmd,
        });
        let path = format!("/containers/{}/exec", encode_path(id, ""));
        self.bounded("exec", timeout, async {
            let (status, body) = self.exchange(Method::POST, &path, Some(&create)).await?;
            if !status.is_success() {
                return Err(daemon_error(status, &body, Missing::Container));
            }
            let exec_id = parse_json::<Value>("exec", &body)?["Id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| bad_answer("exec", "no Id"))?;
            let start_path = format!("/exec/{}/start", encode_path(&exec_id, ""));
            let start = json!({"Detach": false, "Tty": false});
            let body = Bytes::from(start.to_string());
            let response = self
                .send(Method::POST, &start_path, Some(("application/json", body)))
                .await?;
            let status = response.status();
            if !status.is_success() {
                let body = read_body(response.into_body()).await?;
                return Err(daemon_error(status, &body, Missing::Container));
            }
            let mut body = response.into_body();
            let mut demux = Demuxer::default();
            let mut output = Vec::new();
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            let mut keep = |kind: StreamKind, payload: &[u8]| {
                let room = MAX_EXEC_OUTPUT.saturating_sub(output.len());
                let kept = &payload[..payload.len().min(room)];
                output.extend_from_slice(kept);
                match kind {
                    StreamKind::Stderr => stderr.extend_from_slice(kept),
                    _ => stdout.extend_from_slice(kept),
                }
            };
            while let Some(chunk) = next_chunk(&mut body).await? {
                for (kind, payload) in demux.push(&chunk) {
                    keep(kind, &payload);
                }
            }
            for (kind, payload) in demux.finish() {
                keep(kind, &payload);
            }
            // The exit code can lag the end of the output stream by a moment: look again briefly.
            let inspect_path = format!("/exec/{}/json", encode_path(&exec_id, ""));
            loop {
                let (status, body) = self.exchange(Method::GET, &inspect_path, None).await?;
                if !status.is_success() {
                    return Err(daemon_error(status, &body, Missing::Container));
                }
                let info: Value = parse_json("exec inspect", &body)?;
                if info["Running"].as_bool() != Some(true) {
                    if let Some(code) = info["ExitCode"].as_i64() {
                        return Ok(ExecOutput {
                            exit_code: code,
                            output: String::from_utf8_lossy(&output).into_owned(),
                            stdout: String::from_utf8_lossy(&stdout).into_owned(),
                            stderr: String::from_utf8_lossy(&stderr).into_owned(),
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }

    async fn list(&self, label: &str) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let filters = json!({"label": [label]});
        let path = format!(
            "/containers/json?{}",
            query(&[("all", "true"), ("filters", &filters.to_string())])
        );
        let limit = self.timeouts.call;
        let body = self
            .simple(
                limit,
                Req {
                    op: "list",
                    method: Method::GET,
                    path: &path,
                    body: None,
                    missing: Missing::Container,
                    ok_304: false,
                },
            )
            .await?;
        let answer: Value = parse_json("list", &body)?;
        let items = answer
            .as_array()
            .ok_or_else(|| bad_answer("list", "not an array"))?;
        items.iter().map(parse_summary).collect()
    }

    async fn logs(&self, id: &str, tail: Option<usize>) -> Result<Logs, RuntimeError> {
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let path = format!(
            "/containers/{}/logs?{}",
            encode_path(id, ""),
            query(&[("stdout", "1"), ("stderr", "1"), ("tail", &tail)])
        );
        let limit = self.timeouts.call;
        let body = self
            .simple(
                limit,
                Req {
                    op: "logs",
                    method: Method::GET,
                    path: &path,
                    body: None,
                    missing: Missing::Container,
                    ok_304: false,
                },
            )
            .await?;
        Ok(demux_logs(&body))
    }

    /// `GET /containers/{id}/logs` with `follow`, `since`, `timestamps` and `tail` as asked; the
    /// headers must come within the call timeout, then a task demultiplexes the body into chunks.
    /// Dropping the receiver drops the response, which closes the connection and ends the
    /// daemon's follow.
    async fn log_stream(&self, id: &str, opts: &LogOptions) -> Result<LogStream, RuntimeError> {
        let tail = opts
            .tail
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let since = opts.since.map(|s| format!("{s:.6}"));
        let mut pairs: Vec<(&str, &str)> = vec![
            ("stdout", "1"),
            ("stderr", "1"),
            ("tail", &tail),
            ("follow", if opts.follow { "1" } else { "0" }),
            ("timestamps", if opts.timestamps { "1" } else { "0" }),
        ];
        if let Some(s) = &since {
            pairs.push(("since", s));
        }
        let path = format!("/containers/{}/logs?{}", encode_path(id, ""), query(&pairs));
        let limit = self.timeouts.call;
        let response = self
            .bounded("logs", limit, async {
                let response = self.send(Method::GET, &path, None).await?;
                let status = response.status();
                if !status.is_success() {
                    let body = read_body(response.into_body()).await?;
                    return Err(daemon_error(status, &body, Missing::Container));
                }
                Ok(response)
            })
            .await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut body = response.into_body();
            let mut demux = Demuxer::default();
            loop {
                let chunk = tokio::select! {
                    _ = tx.closed() => return,
                    chunk = next_chunk(&mut body) => chunk,
                };
                let ended = matches!(chunk, Ok(None));
                let frames = match chunk {
                    Ok(Some(chunk)) => demux.push(&chunk),
                    Ok(None) => demux.finish(),
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for (kind, payload) in frames {
                    let stream = match kind {
                        StreamKind::Stderr => OutputStream::Stderr,
                        _ => OutputStream::Stdout,
                    };
                    let data = String::from_utf8_lossy(&payload).into_owned();
                    if tx.send(Ok(LogChunk { stream, data })).await.is_err() {
                        return;
                    }
                }
                if ended {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn stats(&self, id: &str) -> Result<StatsSample, RuntimeError> {
        // `stream=false` makes the daemon take two samples about a second apart, which fills
        // `precpu_stats` so that the CPU rate can be computed from one answer.
        let path = format!(
            "/containers/{}/stats?{}",
            encode_path(id, ""),
            query(&[("stream", "false")])
        );
        let limit = self.timeouts.call;
        let body = self
            .simple(
                limit,
                Req {
                    op: "stats",
                    method: Method::GET,
                    path: &path,
                    body: None,
                    missing: Missing::Container,
                    ok_304: false,
                },
            )
            .await?;
        Ok(parse_stats(&parse_json("stats", &body)?))
    }
}

// ----- Errors -----

/// The daemon's message from an error body (`{"message": ...}`), else the body, else the status.
fn message_of(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = v["message"].as_str() {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_lowercase()
    } else {
        text
    }
}

/// Maps an unsuccessful status to a typed error that keeps the daemon's message.
fn daemon_error(status: StatusCode, body: &[u8], missing: Missing) -> RuntimeError {
    let message = message_of(status, body);
    match status {
        StatusCode::NOT_FOUND => match missing {
            Missing::Container => RuntimeError::NoSuchContainer(message),
            Missing::Image => RuntimeError::NoSuchImage(message),
        },
        StatusCode::CONFLICT => RuntimeError::Conflict(message),
        _ => RuntimeError::Daemon {
            status: status.as_u16(),
            message,
        },
    }
}

/// Maps a failed pull: an image that does not exist (or that we may not see) is `NoSuchImage`;
/// anything else, such as an unreachable registry, is `Daemon`, since it may pass.
fn pull_error(status: u16, message: &str) -> RuntimeError {
    let lower = message.to_lowercase();
    let missing = [
        "not found",
        "pull access denied",
        "does not exist",
        "manifest unknown",
        "no such image",
    ];
    if status == 404 || missing.iter().any(|m| lower.contains(m)) {
        RuntimeError::NoSuchImage(message.to_string())
    } else {
        RuntimeError::Daemon {
            status,
            message: message.to_string(),
        }
    }
}

fn bad_answer(op: &str, what: &str) -> RuntimeError {
    RuntimeError::Daemon {
        status: 200,
        message: format!("unexpected answer to {op}: {what}"),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(op: &str, body: &[u8]) -> Result<T, RuntimeError> {
    serde_json::from_slice(body).map_err(|e| bad_answer(op, &e.to_string()))
}

/// An error and its sources on one line, since hyper's top-level messages alone ("client error
/// (Connect)") do not say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

// ----- Bodies and streams -----

/// Reads a whole body; a connection lost midway means the daemon went away.
async fn read_body(body: Incoming) -> Result<Bytes, RuntimeError> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| RuntimeError::Unreachable(format!("reading the answer failed: {}", chain(&e))))
}

/// The next data chunk of a streamed body, `None` at its end.
async fn next_chunk(body: &mut Incoming) -> Result<Option<Bytes>, RuntimeError> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => {
                return Err(RuntimeError::Unreachable(format!(
                    "reading the stream failed: {}",
                    chain(&e)
                )))
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads a pull or import progress stream to its end, reporting each line and failing on the first
/// line that carries an error.
async fn scan_progress(mut body: Incoming, progress: ProgressFn<'_>) -> Result<(), RuntimeError> {
    let mut lines = LineSplitter::default();
    loop {
        let chunk = next_chunk(&mut body).await?;
        let batch = match &chunk {
            Some(c) => lines.push(c),
            None => lines.finish().into_iter().collect(),
        };
        for line in batch {
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(message) = v["errorDetail"]["message"]
                .as_str()
                .or_else(|| v["error"].as_str())
            {
                // The HTTP status was 200: the failure arrived mid-stream.
                return Err(pull_error(500, message));
            }
            if let Some(status) = v["status"].as_str() {
                progress(PullProgress {
                    status: status.to_string(),
                    layer: non_empty(&v["id"]),
                    current: v["progressDetail"]["current"].as_u64(),
                    total: v["progressDetail"]["total"].as_u64(),
                });
            }
        }
        if chunk.is_none() {
            return Ok(());
        }
    }
}

// ----- Small helpers -----

/// `min(ours, theirs)` of two `major.minor` versions, compared as numbers (`1.9` < `1.41`).
fn negotiate(ours: &str, theirs: &str) -> String {
    fn parts(v: &str) -> Option<(u32, u32)> {
        let (a, b) = v.trim().split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }
    match (parts(ours), parts(theirs)) {
        (Some(o), Some(t)) if t < o => theirs.trim().to_string(),
        (Some(_), Some(_)) => ours.to_string(),
        _ => FALLBACK_API_VERSION.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Percent-encodes everything but RFC 3986's unreserved characters and those in `keep`.
fn encode_path(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A query string with every value percent-encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_path(k, ""), encode_path(v, "")))
        .collect::<Vec<_>>()
        .join("&")
}

/// A duration as people write it (`30s`, `250ms`).
pub(crate) fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_lower_of_ours_and_theirs_compared_as_numbers() {
        assert_eq!(negotiate("1.47", "1.41"), "1.41");
        assert_eq!(negotiate("1.47", "1.50"), "1.47");
        assert_eq!(negotiate("1.47", "1.9"), "1.9");
        assert_eq!(negotiate("1.47", "garbage"), FALLBACK_API_VERSION);
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query(&[("filters", r#"{"label":["a=b"]}"#)]),
            "filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
        assert_eq!(encode_path("host:5000/app:1", "/:@"), "host:5000/app:1");
        assert_eq!(encode_path("a b/c", ""), "a%20b%2Fc");
    }

    #[test]
    fn hosts_are_parsed_like_the_docker_cli() {
        let rt = DockerRuntime::new(Some("tcp://127.0.0.1")).unwrap();
        assert!(
            matches!(&rt.transport, Transport::Tcp { authority, .. } if authority == "127.0.0.1:2375")
        );
        let rt = DockerRuntime::new(Some("tcp://localhost:1234/")).unwrap();
        assert!(
            matches!(&rt.transport, Transport::Tcp { authority, .. } if authority == "localhost:1234")
        );
        let rt = DockerRuntime::new(Some("unix:///run/x.sock")).unwrap();
        assert_eq!(
            rt.uri("/_ping").unwrap().to_string(),
            format!("unix://{}:0/_ping", hex(b"/run/x.sock"))
        );
        for bad in [
            "ssh://host",
            "npipe:////./pipe/docker_engine",
            "unix://",
            "tcp://",
        ] {
            assert!(
                matches!(DockerRuntime::new(Some(bad)), Err(RuntimeError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn pull_failures_that_say_missing_are_no_such_image() {
        assert!(matches!(
            pull_error(500, "pull access denied for x, repository does not exist"),
            RuntimeError::NoSuchImage(_)
        ));
        assert!(matches!(
            pull_error(500, "manifest for x:1 not found: manifest unknown"),
            RuntimeError::NoSuchImage(_)
        ));
        assert!(matches!(
            pull_error(500, "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host"),
            RuntimeError::Daemon { status: 500, .. }
        ));
    }
}
