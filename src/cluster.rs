//! Starting the roles a config file declares (a manager, workers) in one process, and stopping them.
//!
//! `poseidon -c cluster.toml` starts every role; `poseidon manager` and `poseidon worker --name N`
//! start one. Listeners are bound first, so a config may use port 0 (tests do): the addresses that
//! workers advertise and the manager URL they use are then taken from the bound sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poseidon_runtimes::docker::DockerRuntime;
use poseidon_runtimes::mock::MockRuntime;
use poseidon_runtimes::Runtime;
use tokio::task::JoinHandle;

use crate::config::{Config, RuntimeKind, StoreKind, TlsMode, WorkerConfig};
use crate::http::{self, Shutdown};
use crate::manager::{self, Manager, ManagerOptions};
use crate::security::secrets::SecretsKey;
use crate::security::{self, Acl, ManagerSecurity, Policy, WorkerSecurity};
use crate::store::etcd::EtcdStore;
use crate::store::{RocksStore, Store};
use crate::worker::{self, Worker, WorkerOptions};

/// Which roles of the file to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roles {
    /// Every role the file declares.
    All,
    /// The manager only.
    Manager,
    /// One worker, by name.
    Worker(String),
}

/// A running manager.
#[derive(Debug)]
pub struct RunningManager {
    /// Its handle.
    pub manager: Manager,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its DNS server listens (UDP and TCP), unless `dns_listen = "off"`.
    pub dns_addr: Option<SocketAddr>,
    /// Its URL: `https://addr` with TLS, `http://addr` without.
    pub url: String,
}

/// A running worker.
#[derive(Debug)]
pub struct RunningWorker {
    /// Its handle.
    pub worker: Worker,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its runtime, when it is the mock (so tests can inject faults).
    pub mock: Option<MockRuntime>,
}

/// Everything started from one config.
#[derive(Debug)]
pub struct Running {
    /// The manager, if started.
    pub manager: Option<RunningManager>,
    /// The workers started.
    pub workers: Vec<RunningWorker>,
    /// The shared shutdown signal.
    pub shutdown: Shutdown,
    servers: Vec<JoinHandle<()>>,
}

impl Running {
    /// The manager's URL (`http://addr`), if a manager runs here.
    pub fn manager_url(&self) -> Option<String> {
        self.manager.as_ref().map(|m| m.url.clone())
    }

    /// Stops serving, lets requests in flight finish and flushes the stores. Containers keep running.
    pub async fn stop(self) {
        self.shutdown.trigger();
        for h in self.servers {
            if let Err(e) = h.await {
                tracing::error!(error = %e, "an HTTP server task ended abnormally");
            }
        }
        if let Some(m) = &self.manager {
            m.manager.close().await;
        }
        for w in &self.workers {
            w.worker.close().await;
        }
    }
}

fn fix_port_zero(url: &str, bound: SocketAddr, scheme: &str) -> String {
    // A URL derived from a `:0` listen address means "wherever we ended up bound".
    match url.strip_suffix(":0") {
        Some(_) => format!("{scheme}://{bound}"),
        None => with_scheme(url, scheme),
    }
}

/// `url` with its scheme set to `scheme`: with TLS on, every cluster URL is `https://`, whatever
/// the file wrote (the config's defaults are derived as `http://`).
fn with_scheme(url: &str, scheme: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => url.to_string(),
    }
}

/// The manager's TLS material with `tls = "auto"`: the cluster CA (made on first start), the
/// manager's certificate (renewed by a loop), and the server and client configurations.
struct ManagerTls {
    ca: Arc<security::ca::ClusterCa>,
    certs: Arc<security::tls::CertStore>,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn manager_tls(ca: security::ca::ClusterCa) -> Result<ManagerTls, String> {
    let ca = Arc::new(ca);
    let certs = security::tls::CertStore::new(&ca.issue_manager()?)?;
    let server = security::tls::server_config(ca.cert_pem(), certs.clone())?;
    let client =
        security::tls::client_config(ca.cert_pem(), security::ca::NODE_NAME, Some(certs.clone()))?;
    Ok(ManagerTls {
        ca,
        certs,
        server,
        client,
    })
}

/// Renews the manager's own certificate every [`security::ca::RENEW_AFTER`].
async fn renew_manager_cert(tls: ManagerTls, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(security::ca::RENEW_AFTER) => {}
            _ = shutdown.wait() => return,
        }
        match tls.ca.issue_manager().and_then(|c| tls.certs.set(&c)) {
            Ok(()) => tracing::info!("manager certificate renewed"),
            Err(e) => {
                tracing::error!(error = %e, "cannot renew the manager certificate; it expires 8 h after renewal was due")
            }
        }
    }
}

/// The key material of managers on etcd: what etcd holds, or a new set that this manager puts
/// there first (see `security::shared`).
async fn shared_keys(endpoints: &[String]) -> Result<security::shared::SharedKeys, String> {
    let mut client = crate::store::etcd::connect(endpoints)
        .await
        .map_err(|e| format!("manager: {e}"))?;
    let fresh = security::shared::SharedKeys::generate()
        .and_then(|k| k.encode())
        .map_err(|e| format!("manager: {e}"))?;
    let held = crate::store::etcd::create_once(
        &mut client,
        crate::store::etcd::SHARED_KEYS_KEY,
        fresh.clone(),
    )
    .await
    .map_err(|e| format!("manager: {e}"))?;
    if held == fresh {
        tracing::info!(
            "made the cluster's keys and CA, shared with the other managers through etcd"
        );
    }
    security::shared::SharedKeys::decode(&held).map_err(|e| format!("manager: {e}"))
}

/// Writes the shared CA's certificate (public; the key stays in etcd) to `ca.pem` in a manager's
/// data directory, where a single manager keeps its own, so that `POSEIDON_CA` names the same file
/// on every manager's host.
fn keep_ca_cert(dir: &std::path::Path, cert_pem: &str) -> Result<(), String> {
    let path = dir.join("ca.pem");
    if std::fs::read_to_string(&path).is_ok_and(|held| held == cert_pem) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, cert_pem))
        .map_err(|e| format!("manager: cannot write {}: {e}", path.display()))
}

/// A worker's TLS material: its certificate (renewed by a loop), and its server and client
/// configurations.
struct WorkerTls {
    certs: Arc<security::tls::CertStore>,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// A worker's security: with the ACL on, its identity, kept in its data directory or obtained by
/// joining with the configured join token (`$POSEIDON_JOIN_TOKEN` wins over the file). A worker
/// started in the same process as its manager joins with a join token made for it on the spot.
/// With TLS, the identity holds its node certificate.
async fn worker_security(
    cfg: &Config,
    wc: &WorkerConfig,
    opts: &WorkerOptions,
    local_acl: Option<&Acl>,
    local_ca: Option<&security::ca::ClusterCa>,
) -> Result<(WorkerSecurity, Option<WorkerTls>), String> {
    if !cfg.security.acl {
        return Ok((WorkerSecurity::default(), None));
    }
    let Some(manager) = &opts.manager else {
        return Err(format!(
            "worker {}: acl = true needs a manager (a worker alone has no one to issue its identity)",
            wc.name
        ));
    };
    let mut join_token = std::env::var("POSEIDON_JOIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| cfg.security.join_token.clone());
    if join_token.is_none() && security::identity::load(&wc.data_dir)?.is_none() {
        if let Some(acl) = local_acl {
            let t = acl
                .create(Policy::Join, None)
                .await
                .map_err(|e| format!("worker {}: {e}", wc.name))?;
            join_token = Some(match local_ca {
                Some(ca) => format!("{}.{}", t.token, ca.fingerprint()),
                None => t.token,
            });
        }
    }
    let id = security::identity::load_or_join(
        &wc.data_dir,
        &wc.name,
        &opts.advertise,
        manager,
        join_token.as_deref(),
    )
    .await?;
    let tls_on = cfg.security.tls == TlsMode::Auto;
    let tls = match (&id.tls, tls_on) {
        (Some(c), true) => {
            let certs = security::tls::CertStore::new(c)?;
            Some(WorkerTls {
                server: security::tls::server_config(&c.ca, certs.clone())?,
                client: security::tls::client_config(
                    &c.ca,
                    security::ca::MANAGER_NAME,
                    Some(certs.clone()),
                )?,
                certs,
            })
        }
        (None, true) => {
            return Err(format!(
                "worker {}: tls = \"auto\" but the identity in {} has no certificate (it was made without TLS); remove it and join again",
                wc.name,
                wc.data_dir.display()
            ))
        }
        (_, false) => None,
    };
    Ok((
        WorkerSecurity {
            node_token: Some(id.node_token),
            manager_secret: Some(id.manager_secret),
            manager_cert_required: tls_on,
            secrets: match &id.secrets_key {
                Some(hex) => Some(Arc::new(
                    SecretsKey::from_hex(hex).map_err(|e| format!("worker {}: {e}", wc.name))?,
                )),
                None => None,
            },
        },
        tls,
    ))
}

fn make_runtime(wc: &WorkerConfig) -> Result<(Arc<dyn Runtime>, Option<MockRuntime>), String> {
    match wc.runtime {
        RuntimeKind::Docker => {
            let rt = DockerRuntime::new(wc.docker_host.as_deref())
                .map_err(|e| format!("worker {}: {e}", wc.name))?
                .with_registry_auth(wc.registry_auth.clone());
            Ok((Arc::new(rt), None))
        }
        RuntimeKind::Mock => {
            let rt = MockRuntime::new();
            Ok((Arc::new(rt.clone()), Some(rt)))
        }
    }
}

/// Refuses a role whose listen address is not loopback unless ACL and TLS are both on, or the file
/// says `insecure = true` (then it warns, at every start).
fn check_exposure(cfg: &Config, roles: &Roles) -> Result<(), String> {
    let mut exposed = Vec::new();
    if let (Some(m), Roles::All | Roles::Manager) = (&cfg.manager, roles) {
        if !m.listen.ip().is_loopback() {
            exposed.push(format!("manager.listen = {}", m.listen));
        }
    }
    for (i, w) in cfg.workers.iter().enumerate() {
        let wanted = match roles {
            Roles::All => true,
            Roles::Manager => false,
            Roles::Worker(n) => *n == w.name,
        };
        if wanted && !w.listen.ip().is_loopback() {
            exposed.push(format!("worker[{i}].listen = {}", w.listen));
        }
    }
    if exposed.is_empty() || cfg.security.is_secure() {
        return Ok(());
    }
    if cfg.security.insecure {
        tracing::warn!(
            listen = %exposed.join(", "),
            acl = cfg.security.acl,
            tls = cfg.security.tls != TlsMode::Off,
            "INSECURE: listening beyond loopback without ACL and TLS because [security] insecure = true; anyone who can reach these addresses controls the cluster"
        );
        return Ok(());
    }
    Err(format!(
        "{}: {} is not a loopback address, and [security] does not have both acl = true and tls = \"auto\" (or tls files); refusing to start an open cluster. Turn both on, or set insecure = true in [security] to accept the risk",
        cfg.source,
        exposed.join(", ")
    ))
}

/// Starts the chosen roles of `cfg` and returns once they serve.
pub async fn start(cfg: &Config, roles: Roles) -> Result<Running, String> {
    check_exposure(cfg, &roles)?;
    match &cfg.security.tls {
        TlsMode::Auto if !cfg.security.acl => {
            return Err(format!(
            "{}: tls = \"auto\" needs acl = true in [security] (workers join with ACL join tokens)",
            cfg.source
        ))
        }
        TlsMode::Files { .. } => {
            return Err(format!(
                "{}: tls = {{ ca, cert, key }} is not supported yet; use tls = \"auto\"",
                cfg.source
            ))
        }
        _ => {}
    }
    let tls_on = cfg.security.tls == TlsMode::Auto;
    let scheme = if tls_on { "https" } else { "http" };
    let shutdown = Shutdown::new();
    let mut local_acl: Option<Acl> = None;
    let mut local_ca: Option<Arc<security::ca::ClusterCa>> = None;
    let mut local_secrets: Option<Arc<SecretsKey>> = None;
    let mut servers = Vec::new();
    let mut running_manager = None;
    let mut manager_url: Option<String> = None;
    // `All` starts whatever the file declares (a file of workers only is fine); `Manager` insists.
    let start_manager = match roles {
        Roles::All => cfg.manager.is_some(),
        Roles::Manager => true,
        Roles::Worker(_) => false,
    };
    if let Roles::Worker(name) = &roles {
        if cfg.worker(name).is_none() {
            let names: Vec<&str> = cfg.workers.iter().map(|w| w.name.as_str()).collect();
            return Err(format!(
                "{}: no worker named {name:?} (workers: {})",
                cfg.source,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
    }
    if start_manager {
        let mc = cfg
            .manager
            .as_ref()
            .ok_or_else(|| format!("{}: the file declares no [manager]", cfg.source))?;
        let ha_store = match mc.store {
            StoreKind::Rocksdb => None,
            StoreKind::Etcd => {
                let eps = mc.etcd_endpoints.clone();
                let opened = tokio::task::spawn_blocking(move || EtcdStore::open(&eps))
                    .await
                    .map_err(|e| format!("manager: {e}"))?;
                Some(Arc::new(opened.map_err(|e| format!("manager: {e}"))?))
            }
        };
        let listener = http::bind(mc.listen).await?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let store: Arc<dyn Store> = match &ha_store {
            Some(etcd) => Arc::new(crate::store::etcd::ReadOnlyStore::new(etcd.clone())),
            None => Arc::new(
                RocksStore::open(&mc.data_dir)
                    .map_err(|e| format!("manager: cannot open {}: {e}", mc.data_dir.display()))?,
            ),
        };
        let known = cfg
            .workers
            .iter()
            .filter(|w| !w.advertise.ends_with(":0"))
            .map(|w| (w.name.clone(), w.advertise.clone()))
            .collect();
        let opts = ManagerOptions {
            scheduler: mc.scheduler.clone(),
            heartbeat_ttl: mc.heartbeat_ttl,
            dispatch_backoff: mc.dispatch_backoff,
            max_heartbeats_per_second: mc.max_heartbeats_per_second,
            known_workers: known,
        };
        // One manager keeps its keys in its data directory; managers on etcd share one set there.
        let shared = match &ha_store {
            Some(_) => Some(shared_keys(&mc.etcd_endpoints).await?),
            None => None,
        };
        let mut sec = ManagerSecurity::default();
        let secrets = Arc::new(
            match &shared {
                Some(k) => k.secrets(),
                None => SecretsKey::load_or_create(&mc.data_dir),
            }
            .map_err(|e| format!("manager: {e}"))?,
        );
        local_secrets = Some(secrets.clone());
        sec.secrets = Some(secrets);
        let mut server_tls = None;
        if tls_on {
            let ca = match &shared {
                Some(k) => {
                    keep_ca_cert(&mc.data_dir, &k.ca_cert)?;
                    k.ca()
                }
                None => security::ca::ClusterCa::load_or_create(&mc.data_dir),
            }
            .map_err(|e| format!("manager: {e}"))?;
            let tls = manager_tls(ca)?;
            sec.ca = Some(tls.ca.clone());
            local_ca = Some(tls.ca.clone());
            sec.client_tls = Some(tls.client.clone());
            server_tls = Some(tls.server.clone());
            tokio::spawn(renew_manager_cert(tls, shutdown.clone()));
        }
        if cfg.security.acl {
            // With etcd this is a first copy: each term of a leader and each reload of a
            // follower's copy loads the table again (`manager::leader`).
            let acl = Acl::load(store.clone()).map_err(|e| format!("manager: {e}"))?;
            sec.worker_key = Some(
                match &shared {
                    Some(k) => k.acl_key(),
                    None => security::keys::load_or_create_key(&mc.data_dir, "acl.key"),
                }
                .map_err(|e| format!("manager: {e}"))?,
            );
            // A worker in the same process makes its join token with this table; on etcd only
            // the leader writes, so such a worker joins with a token given to it instead.
            if ha_store.is_none() {
                local_acl = Some(acl.clone());
            }
            sec.acl = Some(acl);
        }
        let mut ha = None;
        let m = match &ha_store {
            Some(etcd) => {
                let me = fix_port_zero(&mc.advertise, addr, scheme);
                let h = manager::leader::Ha::start(
                    opts,
                    sec,
                    etcd.clone(),
                    mc.etcd_endpoints.clone(),
                    me,
                    mc.managers.clone(),
                    shutdown.clone(),
                )
                .await?;
                let m = h.manager();
                let handler_h = h.clone();
                servers.push(tokio::spawn(http::serve_with(
                    listener,
                    move |req| manager::leader::handle(handler_h.clone(), req),
                    shutdown.clone(),
                    http::ServeOptions {
                        gate: Some(manager::leader::gate(h.clone())),
                        tls: server_tls,
                        ..http::ServeOptions::with_body_limit(http::manager_body_limit)
                    },
                )));
                ha = Some(h);
                m
            }
            None => {
                let m = Manager::start_with(opts, sec, store, shutdown.clone())
                    .await
                    .map_err(|e| format!("manager: {e}"))?;
                let handler_m = m.clone();
                servers.push(tokio::spawn(http::serve_with(
                    listener,
                    move |req| manager::api::handle(handler_m.clone(), req),
                    shutdown.clone(),
                    http::ServeOptions {
                        gate: Some(manager::api::gate(m.clone())),
                        tls: server_tls,
                        ..http::ServeOptions::with_body_limit(http::manager_body_limit)
                    },
                )));
                m
            }
        };
        tracing::info!(
            url = %format!("{scheme}://{addr}"),
            acl = cfg.security.acl,
            tls = tls_on,
            scheduler = %mc.scheduler,
            data_dir = %mc.data_dir.display(),
            heartbeat_ttl = ?mc.heartbeat_ttl,
            "manager listening"
        );
        let dns_addr = match mc.dns_listen {
            Some(dns) => {
                // The default port beside an ephemeral API port (tests, several managers on one
                // machine) is ephemeral too, so that they do not fight over 8600.
                let dns = if mc.listen.port() == 0 && dns == crate::config::DEFAULT_DNS_LISTEN {
                    SocketAddr::new(dns.ip(), 0)
                } else {
                    dns
                };
                match crate::dns::bind(dns).await {
                    Ok((udp, tcp)) => {
                        let bound = udp.local_addr().map_err(|e| format!("manager: DNS: {e}"))?;
                        let catalog: Arc<dyn crate::dns::Endpoints> = match &ha {
                            Some(h) => Arc::new(h.clone()),
                            None => Arc::new(m.clone()),
                        };
                        servers.push(tokio::spawn(crate::dns::serve(
                            udp,
                            tcp,
                            catalog,
                            shutdown.clone(),
                        )));
                        tracing::info!(address = %bound, zone = crate::dns::ZONE, "manager DNS listening (UDP and TCP)");
                        Some(bound)
                    }
                    // The default address is a convenience that a second manager on the machine
                    // cannot have: it runs without DNS and says so. An address the file chose
                    // is a promise, so failing to bind it stops the start.
                    Err(e) if dns == crate::config::DEFAULT_DNS_LISTEN => {
                        tracing::error!(address = %dns, error = %e, "manager: cannot listen for DNS on the default address; running without DNS (set [manager] dns_listen)");
                        None
                    }
                    Err(e) => return Err(format!("manager: cannot listen for DNS on {dns}: {e}")),
                }
            }
            None => None,
        };
        manager_url = Some(format!("{scheme}://{addr}"));
        running_manager = Some(RunningManager {
            manager: m,
            addr,
            url: format!("{scheme}://{addr}"),
            dns_addr,
        });
    }
    let mut workers = Vec::new();
    let mut with_manager = Vec::new();
    for wc in &cfg.workers {
        let wanted = match &roles {
            Roles::All => true,
            Roles::Manager => false,
            Roles::Worker(n) => *n == wc.name,
        };
        if !wanted {
            continue;
        }
        let listener = http::bind(wc.listen).await?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (runtime, mock) = make_runtime(wc)?;
        let store: Arc<dyn Store> = Arc::new(RocksStore::open(&wc.data_dir).map_err(|e| {
            format!(
                "worker {}: cannot open {}: {e}",
                wc.name,
                wc.data_dir.display()
            )
        })?);
        let manager = match (&wc.manager, &manager_url) {
            (Some(url), Some(bound)) if url.ends_with(":0") => Some(bound.clone()),
            (Some(url), _) => Some(with_scheme(url, scheme)),
            (None, _) => None,
        };
        let advertise = fix_port_zero(&wc.advertise, addr, scheme);
        tracing::info!(
            url = %format!("{scheme}://{addr}"),
            worker = %wc.name,
            runtime = %wc.runtime,
            data_dir = %wc.data_dir.display(),
            advertise = %advertise,
            manager = manager.as_deref().unwrap_or("none"),
            host_volumes = ?wc.host_volumes.keys().collect::<Vec<_>>(),
            registries = ?wc.registry_auth.iter().map(|a| a.registry.as_str()).collect::<Vec<_>>(),
            "worker listening"
        );
        let opts = WorkerOptions {
            name: wc.name.clone(),
            advertise,
            manager,
            managers: wc.managers.clone(),
            capacity: wc
                .capacity
                .map(|c| crate::wire::Capacity {
                    cpus: c.cpus,
                    memory: c.memory,
                })
                .unwrap_or_else(worker::stats::host_capacity),
            heartbeat_interval: wc.heartbeat_interval,
            stop_grace: wc.stop_grace,
            network: wc.network.clone(),
            host_volumes: wc.host_volumes.clone(),
            labels: wc.labels.clone(),
            endpoint_address: wc.endpoint_address,
        };
        with_manager.push(opts.manager.is_some());
        let (mut sec, tls) =
            worker_security(cfg, wc, &opts, local_acl.as_ref(), local_ca.as_deref()).await?;
        if sec.secrets.is_none() {
            // Without the ACL there is no join to hand the key over: a worker beside its manager
            // shares the manager's, a worker alone keeps its own; any other has none (and says so
            // when a task with secrets reaches it).
            sec.secrets = match (&opts.manager, &local_secrets) {
                (Some(_), Some(k)) => Some(k.clone()),
                (Some(_), None) => None,
                (None, _) => Some(Arc::new(
                    SecretsKey::load_or_create(&wc.data_dir)
                        .map_err(|e| format!("worker {}: {e}", wc.name))?,
                )),
            };
        }
        let manager_url = opts.manager.clone();
        let client_tls = tls.as_ref().map(|t| t.client.clone());
        let server_tls = tls.as_ref().map(|t| t.server.clone());
        let node_token = sec.node_token.clone();
        let w = Worker::start_with(
            opts,
            sec,
            client_tls.clone(),
            runtime,
            store,
            shutdown.clone(),
        )
        .await
        .map_err(|e| format!("worker {}: {e}", wc.name))?;
        if let (Some(t), Some(manager)) = (tls, &manager_url) {
            let client = crate::client::ManagerClient::with_http(
                http::HttpClient::with_tls(Duration::from_secs(10), t.client.clone()),
                manager,
            )
            .with_token(node_token.clone());
            tokio::spawn(security::identity::renew_loop(
                client,
                wc.name.clone(),
                wc.data_dir.clone(),
                t.certs,
                shutdown.clone(),
            ));
        }
        if let Some(ingress) = wc.ingress_listen {
            // The mesh reads the catalog as this node: its token, and its TLS when on.
            let client = manager_url.as_deref().map(|m| {
                let http = match &client_tls {
                    Some(tls) => http::HttpClient::with_tls(Duration::from_secs(10), tls.clone()),
                    None => http::HttpClient::new(Duration::from_secs(10)),
                };
                crate::client::ManagerClient::with_http(http, m).with_token(node_token.clone())
            });
            let opts = crate::mesh::MeshOptions {
                node: wc.name.clone(),
                ingress,
                api_port: addr.port(),
            };
            w.attach_mesh(crate::mesh::Mesh::start(opts, client, shutdown.clone()));
        }
        let handler_w = w.clone();
        servers.push(tokio::spawn(http::serve_with(
            listener,
            move |req| worker::api::handle(handler_w.clone(), req),
            shutdown.clone(),
            http::ServeOptions {
                gate: Some(worker::api::gate(w.clone())),
                tls: server_tls,
                ..http::ServeOptions::with_body_limit(http::worker_body_limit)
            },
        )));
        workers.push(RunningWorker {
            worker: w,
            addr,
            mock,
        });
    }
    // Give first heartbeats a moment so that a cluster is usable as soon as `start` returns.
    for (w, has_manager) in workers.iter().zip(with_manager) {
        if !has_manager {
            continue;
        }
        let first = tokio::time::timeout(Duration::from_secs(2), w.worker.heartbeat_once()).await;
        if first != Ok(true) {
            // Routine when the manager runs elsewhere and is not up yet: the heartbeat loop retries.
            tracing::info!(worker = %w.worker.name(), "first heartbeat not answered yet; the heartbeat loop keeps trying");
        }
    }
    Ok(Running {
        manager: running_manager,
        workers,
        shutdown,
        servers,
    })
}
