//! High availability: several managers on one etcd cluster, one leader by lease.
//!
//! Every manager runs [`Ha`]: it holds an etcd lease ([`LEASE_TTL_S`] seconds, kept alive every
//! [`KEEPALIVE_EVERY`]) and, while no one leads, tries to create the leader key
//! (`/poseidon/leader`, its value this manager's advertised URL) bound to that lease. The one that
//! creates it leads: it loads the state from etcd (ranged reads), starts a [`Manager`] with its loops
//! (placement, dispatch, liveness, services) over a [`FencedStore`], and answers every request. Every
//! write of that term compares the leader key's create revision ([`Fence`]), so a leader that lost
//! its lease (paused past the TTL, cut off from etcd) cannot write: etcd refuses the transaction.
//!
//! The numbers: the lease lives [`LEASE_TTL_S`] = 2 s (etcd's smallest with its default election
//! timeout of 1 s); the leader renews it every [`KEEPALIVE_EVERY`] = 250 ms, 8 times a TTL, so a
//! lost keep-alive or two changes nothing. The leader counts its lease from when it *sent* the last
//! answered keep-alive, and stops acting as leader as soon as that count runs out, before etcd (which
//! counts from when it received it) can hand the key to another. Followers look at the key every
//! [`FOLLOW_EVERY`] = 100 ms. After a `kill -9` of the leader its lease ends at most 2 s later, etcd
//! deletes expired leases within 500 ms, and a follower sees the key gone within 100 ms: a new
//! leader within about 2.6 s, plus the time it takes to load the state.
//!
//! A follower answers reads from a copy of the state, reloaded from etcd whenever etcd's revision
//! changed, checked every [`RELOAD_EVERY`] = 500 ms: a read on a follower is at most about half a
//! second (plus one load) behind the leader. Writes on a follower are answered `307` to the
//! leader's URL (the same path and query; the CLI, the typed clients and the workers follow it with
//! the same method and body), or `503` while no leader is known. A new leader gives every node a
//! full heartbeat TTL before it can count it down, as after a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn,
    TxnOp,
};
use hyper::Method;

use super::{Manager, ManagerOptions};
use crate::http::{error, json, text, ApiError, Gate, Head, Req, Resp, Shutdown};
use crate::security::ManagerSecurity;
use crate::store::etcd::{self, EtcdStore, Fence, FencedStore, ReadOnlyStore, Trouble};
use crate::store::Store;
use crate::wire::{HaHealth, ManagerHealth};

/// The leader's lease, in seconds.
pub const LEASE_TTL_S: i64 = 2;
/// How often the lease is renewed.
pub const KEEPALIVE_EVERY: Duration = Duration::from_millis(250);
/// How often a follower looks at the leader key.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(100);
/// How often a follower checks whether its copy of the state is behind etcd.
pub const RELOAD_EVERY: Duration = Duration::from_millis(500);
/// The longest one call to etcd made by the election may take.
const CALL_TIMEOUT: Duration = Duration::from_millis(1000);

/// One term of leadership held by this manager.
struct Term {
    fence: Fence,
    /// When the lease may have ended, counted from the last answered keep-alive's sending.
    deadline: Instant,
    /// Stops this term's loops.
    shutdown: Shutdown,
}

struct View {
    /// The leader's live manager, or a follower's copy.
    manager: Manager,
    term: Option<Term>,
    /// The leader's URL as last seen in etcd.
    leader: Option<String>,
    /// etcd's revision when the copy was loaded (followers).
    revision: i64,
}

struct Inner {
    me: String,
    managers: Vec<String>,
    endpoints: Vec<String>,
    store: Arc<EtcdStore>,
    opts: ManagerOptions,
    security: ManagerSecurity,
    shutdown: Shutdown,
    view: Mutex<View>,
    leader_changes: AtomicU64,
    started: Instant,
}

/// A manager in high availability: leader or follower, switching as the lease decides (cheap to
/// clone).
#[derive(Clone)]
pub struct Ha {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ha").field("me", &self.inner.me).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ha {
    /// Loads a follower's copy of the state and starts the election; the manager leads once it
    /// holds the leader key.
    pub async fn start(
        opts: ManagerOptions,
        security: ManagerSecurity,
        store: Arc<EtcdStore>,
        endpoints: Vec<String>,
        me: String,
        managers: Vec<String>,
        shutdown: Shutdown,
    ) -> Result<Ha, String> {
        let copy = load_copy(&opts, &security, &store).await?;
        let ha = Ha {
            inner: Arc::new(Inner {
                me,
                managers,
                endpoints,
                store,
                opts,
                security,
                shutdown,
                view: Mutex::new(View {
                    manager: copy,
                    term: None,
                    leader: None,
                    revision: 0,
                }),
                leader_changes: AtomicU64::new(0),
                started: Instant::now(),
            }),
        };
        tokio::spawn(ha.clone().election_loop());
        tokio::spawn(ha.clone().reload_loop());
        Ok(ha)
    }

    /// The manager that answers now: the leader's, or the follower's copy.
    pub fn manager(&self) -> Manager {
        lock(&self.inner.view).manager.clone()
    }

    /// Whether this manager leads now (its lease is still counted as held).
    pub fn is_leader(&self) -> bool {
        let v = lock(&self.inner.view);
        v.term.as_ref().is_some_and(|t| Instant::now() < t.deadline)
    }

    /// What `GET /health` shows of the managers.
    pub fn health(&self) -> HaHealth {
        let leading = self.is_leader();
        let v = lock(&self.inner.view);
        HaHealth {
            me: self.inner.me.clone(),
            role: if leading { "leader" } else { "follower" }.into(),
            leader: if leading {
                Some(self.inner.me.clone())
            } else {
                v.leader.clone()
            },
            managers: self.inner.managers.clone(),
            leader_changes: self.inner.leader_changes.load(Ordering::Relaxed),
        }
    }

    /// The answer to a write this manager will not act on: `307` to the leader's URL with the same
    /// path and query `target` (the CLI, the typed clients and the workers follow it with the same
    /// method, body and token), or `503` while no leader is known.
    fn not_leader(&self, target: &str) -> ApiError {
        // Itself as the leader: a term whose lease ran out and that has not stepped down yet.
        match lock(&self.inner.view)
            .leader
            .clone()
            .filter(|url| *url != self.inner.me)
        {
            Some(url) => ApiError::redirect(
                format!("{url}{target}"),
                format!("this manager is a follower; the leader is {url}"),
            ),
            None => ApiError::unavailable(
                "no manager leads right now (an election is under way, or etcd has no quorum); nothing was written, retry shortly",
            ),
        }
    }

    fn saw_leader(&self, v: &mut View, leader: Option<String>) {
        if leader.is_some() && leader != v.leader {
            self.inner.leader_changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(leader = ?leader, me = %self.inner.me, "the managers have a new leader");
        }
        v.leader = leader;
    }

    /// Ends this manager's term, if it has one: its loops stop, its manager stays as the read copy.
    fn step_down(&self, why: &str) {
        let mut v = lock(&self.inner.view);
        if let Some(t) = v.term.take() {
            t.shutdown.trigger();
            v.leader = None;
            v.revision = 0;
            tracing::warn!(me = %self.inner.me, reason = why, "stepping down as leader");
        }
    }

    async fn election_loop(self) {
        let mut client = loop {
            match etcd::connect(&self.inner.endpoints).await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "election: cannot reach etcd; retrying");
                    if self.pause(Duration::from_millis(500)).await {
                        return;
                    }
                }
            }
        };
        let mut troubles = self.inner.store.troubles();
        while !self.inner.shutdown.is_triggered() {
            let sent = Instant::now();
            let grant =
                tokio::time::timeout(CALL_TIMEOUT, client.lease_grant(LEASE_TTL_S, None)).await;
            let lease = match grant {
                Ok(Ok(l)) => l,
                other => {
                    let e = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    tracing::warn!(error = %e, "election: cannot get a lease from etcd");
                    lock(&self.inner.view).leader = None;
                    if self.pause(FOLLOW_EVERY * 3).await {
                        return;
                    }
                    continue;
                }
            };
            let ttl = Duration::from_secs(lease.ttl().max(1) as u64);
            self.hold(&mut client, lease.id(), sent + ttl, ttl, &mut troubles)
                .await;
            // The lease is over or given up: let it go (it expires anyway if etcd is away).
            let _ = tokio::time::timeout(CALL_TIMEOUT, client.lease_revoke(lease.id())).await;
        }
        self.step_down("shutting down");
    }

    /// Sleeps `d`; true when the process is shutting down.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => self.inner.shutdown.is_triggered(),
            _ = self.inner.shutdown.wait() => true,
        }
    }

    /// Keeps `lease` alive and campaigns with it until it is lost or given up.
    async fn hold(
        &self,
        client: &mut Client,
        lease: i64,
        mut deadline: Instant,
        ttl: Duration,
        troubles: &mut tokio::sync::broadcast::Receiver<Trouble>,
    ) {
        let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut last_keep = Instant::now();
        loop {
            let now = Instant::now();
            if now >= deadline {
                self.step_down("its lease could not be renewed in time");
                return;
            }
            if now.duration_since(last_keep) >= KEEPALIVE_EVERY {
                last_keep = now;
                match keep_alive(client, lease, &mut keeper).await {
                    Ok(0) => {
                        self.step_down("its lease expired");
                        return;
                    }
                    Ok(secs) => {
                        deadline = now + Duration::from_secs(secs as u64).min(ttl);
                        if let Some(t) = lock(&self.inner.view).term.as_mut() {
                            t.deadline = deadline;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "election: a keep-alive failed");
                        keeper = None;
                    }
                }
            }
            loop {
                match troubles.try_recv() {
                    Ok(t) => {
                        let ours = {
                            let v = lock(&self.inner.view);
                            match (&v.term, t) {
                                (Some(term), Trouble::FenceLost(f))
                                | (Some(term), Trouble::Unavailable(Some(f))) => term.fence == f,
                                _ => false,
                            }
                        };
                        if ours {
                            self.step_down(match t {
                                Trouble::FenceLost(_) => "etcd refused a write: the leader key is no longer this term's",
                                Trouble::Unavailable(_) => "etcd did not commit a write in time, so this manager's state may differ from etcd's",
                            });
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            let leading = lock(&self.inner.view).term.is_some();
            if !leading && !self.campaign(client, lease, deadline).await {
                return;
            }
            let wait = if leading {
                KEEPALIVE_EVERY
            } else {
                FOLLOW_EVERY
            };
            if self.pause(wait).await {
                return;
            }
        }
    }

    /// Looks at the leader key and takes it when it is free; false to give the lease up.
    async fn campaign(&self, client: &mut Client, lease: i64, deadline: Instant) -> bool {
        let seen = tokio::time::timeout(CALL_TIMEOUT, client.get(etcd::LEADER_KEY, None)).await;
        let holder = match seen {
            Ok(Ok(r)) => r
                .kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
            _ => {
                lock(&self.inner.view).leader = None;
                return true;
            }
        };
        if let Some(url) = holder {
            let mut v = lock(&self.inner.view);
            // Our own URL without a term: a key left by this manager's previous run, whose lease
            // runs out soon; no one to redirect to until then.
            let leader = (url != self.inner.me).then_some(url);
            self.saw_leader(&mut v, leader);
            return true;
        }
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                etcd::LEADER_KEY,
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(
                etcd::LEADER_KEY,
                self.inner.me.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let won = match tokio::time::timeout(CALL_TIMEOUT, client.txn(txn)).await {
            Ok(Ok(r)) if r.succeeded() => r.header().map(|h| h.revision()),
            _ => None,
        };
        let Some(revision) = won else {
            return true;
        };
        self.lead(Fence { revision }, deadline).await
    }

    /// Starts a term: loads the state and runs the loops over the fenced store.
    async fn lead(&self, fence: Fence, deadline: Instant) -> bool {
        tracing::info!(me = %self.inner.me, revision = fence.revision, "won the election; loading the state from etcd");
        let shutdown = Shutdown::new();
        let store: Arc<dyn Store> = Arc::new(FencedStore::new(self.inner.store.clone(), fence));
        let started = match with_acl_of(&self.inner.security, &store).await {
            Ok(security) => {
                Manager::start_with(self.inner.opts.clone(), security, store, shutdown.clone())
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(m) => {
                let mut v = lock(&self.inner.view);
                v.manager = m;
                v.term = Some(Term {
                    fence,
                    deadline,
                    shutdown,
                });
                let me = Some(self.inner.me.clone());
                self.saw_leader(&mut v, me);
                drop(v);
                tracing::info!(me = %self.inner.me, "leading");
                // The process's shutdown ends the term's loops too.
                let (ha, term) = (self.clone(), fence);
                tokio::spawn(async move {
                    ha.inner.shutdown.wait().await;
                    let v = lock(&ha.inner.view);
                    if let Some(t) = v.term.as_ref().filter(|t| t.fence == term) {
                        t.shutdown.trigger();
                    }
                });
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot load the state as the new leader; giving the lease up");
                shutdown.trigger();
                false
            }
        }
    }

    async fn reload_loop(self) {
        let mut client = None;
        while !self.pause(RELOAD_EVERY).await {
            if lock(&self.inner.view).term.is_some() {
                continue;
            }
            if client.is_none() {
                client = etcd::connect(&self.inner.endpoints).await.ok();
            }
            let Some(c) = client.as_mut() else { continue };
            let opts = GetOptions::new().with_prefix().with_count_only();
            let rev =
                match tokio::time::timeout(CALL_TIMEOUT, c.get(etcd::PREFIX, Some(opts))).await {
                    Ok(Ok(r)) => r.header().map(|h| h.revision()).unwrap_or(0),
                    // etcd away: keep serving the copy we have.
                    _ => continue,
                };
            if rev == lock(&self.inner.view).revision {
                continue;
            }
            match load_copy(&self.inner.opts, &self.inner.security, &self.inner.store).await {
                Ok(copy) => {
                    let mut v = lock(&self.inner.view);
                    if v.term.is_none() {
                        v.manager = copy;
                        v.revision = rev;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "follower: cannot reload the state"),
            }
        }
    }
}

/// A follower's copy of the state: loaded from etcd, no loops, writes refused.
async fn load_copy(
    opts: &ManagerOptions,
    security: &ManagerSecurity,
    store: &Arc<EtcdStore>,
) -> Result<Manager, String> {
    let store: Arc<dyn Store> = Arc::new(ReadOnlyStore::new(store.clone()));
    let (opts, security) = (opts.clone(), with_acl_of(security, &store).await?);
    tokio::task::spawn_blocking(move || Manager::load(opts, security, store, Shutdown::new()))
        .await
        .map_err(|e| format!("manager: loading the state failed: {e}"))?
        .map_err(|e| format!("manager: {e}"))
}

/// `security` with the token table loaded anew from `store` (when the ACL is on), so that tokens
/// made, bootstrapped or revoked through the leader are what this leader's term or this
/// follower's copy authenticates against, and a leader's token writes go through its fence.
async fn with_acl_of(
    security: &ManagerSecurity,
    store: &Arc<dyn Store>,
) -> Result<ManagerSecurity, String> {
    let mut security = security.clone();
    if security.acl.is_some() {
        let store = store.clone();
        let acl = tokio::task::spawn_blocking(move || crate::security::Acl::load(store))
            .await
            .map_err(|e| format!("manager: loading the tokens failed: {e}"))?
            .map_err(|e| format!("manager: {e}"))?;
        security.acl = Some(acl);
    }
    Ok(security)
}

/// Sends one keep-alive and waits for its answer: the lease's remaining TTL in seconds (0: gone).
async fn keep_alive(
    client: &mut Client,
    lease: i64,
    keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Result<i64, String> {
    let round = async {
        if keeper.is_none() {
            *keeper = Some(
                client
                    .lease_keep_alive(lease)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let Some((k, s)) = keeper.as_mut() else {
            return Err("no keep-alive stream".to_string());
        };
        k.keep_alive().await.map_err(|e| e.to_string())?;
        match s.message().await.map_err(|e| e.to_string())? {
            Some(r) => Ok(r.ttl()),
            None => Err("the keep-alive stream ended".to_string()),
        }
    };
    tokio::time::timeout(KEEPALIVE_EVERY * 2, round)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// The gate of a manager in high availability. A follower acts on no write, so it answers one with
/// a redirect to the leader as soon as it has the head, before reading the body or checking the
/// token (the leader does, against the table it writes; a follower's copy may be a moment behind).
/// Everything else gets one manager's checks, against the token table of the manager that answers
/// now (the leader's, or the follower's copy).
///
/// The nodes' liveness (up, down, last heartbeat, usage) lives in the leader's memory, not in etcd,
/// so a follower sends `GET /nodes` and `GET /nodes/{name}` to the leader too while one is known
/// (and answers from its copy, where every node shows `waiting`, while none is). So it does with a
/// read whose token its copy does not know.
pub fn gate(ha: Ha) -> Gate {
    Arc::new(move |head: &Head<'_>| {
        let read = *head.method == Method::GET || *head.method == Method::HEAD;
        let live = read && matches!(head.path, [n] | [n, _] if n == "nodes");
        let m = ha.manager();
        if !ha.is_leader() {
            // A token whose accessor this follower's copy does not know yet (made a moment ago
            // through the leader) is the leader's to judge: redirected, not refused. A known
            // accessor with a wrong secret is refused here and counted against the limit, so
            // guessing the secret of a real token is as slow on a follower as on the leader.
            let unknown = match (head.bearer, &m.security().acl) {
                (Some(token), Some(acl)) => !acl.knows_accessor(token),
                _ => false,
            };
            if !read || live || unknown {
                let to_leader = ha.not_leader(head.target);
                if !read || to_leader.location.is_some() {
                    return Err(to_leader);
                }
            }
        }
        super::api::admit(&m, head)
    })
}

/// The path and query of a request, encoded again, for a redirect.
fn path_and_query(req: &Req) -> String {
    let mut out = String::new();
    for seg in &req.path {
        out.push('/');
        out.push_str(&crate::http::encode_component(seg));
    }
    if out.is_empty() {
        out.push('/');
    }
    for (i, (k, v)) in req.query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&crate::http::encode_component(k));
        out.push('=');
        out.push_str(&crate::http::encode_component(v));
    }
    out
}

/// Handles one request: `GET /health` and `/metrics` with the managers' part, writes on a follower
/// redirected to the leader (or 503 with none), everything else by the current manager.
pub async fn handle(ha: Ha, req: Req) -> Resp {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let read = req.method == Method::GET || req.method == Method::HEAD;
    if read && path == ["health"] {
        let m = ha.manager();
        return json(
            200,
            &ManagerHealth {
                status: "ok".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                scheduler: m.scheduler_name(),
                uptime_s: ha.inner.started.elapsed().as_secs(),
                ha: Some(ha.health()),
            },
        );
    }
    if read && path == ["metrics"] {
        let m = ha.manager();
        let mut out = super::api::metrics_text(&m);
        let h = ha.health();
        out.push_str(&format!(
            "# HELP poseidon_leader_changes_total Times this manager saw the leader change.\n\
             # TYPE poseidon_leader_changes_total counter\n\
             poseidon_leader_changes_total {}\n\
             # HELP poseidon_leader 1 on the leader, 0 on a follower.\n\
             # TYPE poseidon_leader gauge\n\
             poseidon_leader {}\n",
            h.leader_changes,
            u8::from(h.role == "leader")
        ));
        return text(200, out, "text/plain; version=0.0.4");
    }
    // The gate redirects a follower's writes; this catches one whose manager stepped down while
    // its body was read.
    if !read && !ha.is_leader() {
        return error(&ha.not_leader(&path_and_query(&req)));
    }
    super::api::handle(ha.manager(), req).await
}

impl crate::dns::Endpoints for Ha {
    fn endpoints(&self, service: &str) -> Option<Vec<crate::wire::CatalogEndpoint>> {
        self.manager().catalog_service(service).map(|(_, eps)| eps)
    }
}
