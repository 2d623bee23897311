//! The etcd store: the manager's state in an etcd cluster, for several managers in high
//! availability (see `manager::leader`).
//!
//! Layout: every record is the key `/poseidon/{space}/{key}` (`/poseidon/tasks/{id}`,
//! `/poseidon/nodes/{name}`, ...), so a space loads with one ranged read of its prefix, and a watch
//! from a revision could follow it. The leader's key, `/poseidon/leader`, sits beside them.
//!
//! Acknowledged means committed by etcd: a write is answered once etcd has answered its transaction,
//! which it does only after the cluster's quorum has it in its raft log. Writes are grouped like
//! RocksDB's: one writer task takes the first waiting write and everything else already waiting (up
//! to [`MAX_TXN_OPS`] operations and [`MAX_TXN_BYTES`], etcd's default limits being 128 operations
//! and 1.5 MiB a request), folds them into one transaction, and answers them all. One transaction
//! is in flight at a time, so writes reach etcd in the order they were queued.
//!
//! Fencing: a write may carry a [`Fence`], the leader key's create revision of the term that made
//! it. The transaction then compares that revision first, so a manager that lost its lease (paused
//! past the TTL, cut off) writes nothing: its compare fails and the whole group is refused. Writes
//! of different terms are never grouped together.
//!
//! Exactly once, in order: a fenced transaction also compares the term's own key
//! (`/poseidon/term/{fence}`) with the revision the previous one left it at, and moves it, with a
//! value naming the group. So a group whose answer was lost can be sent again: if the first copy
//! committed, the second's compare fails and the term key names the group (done); a copy that
//! commits late, after later groups, fails its compare and changes nothing. That lets the writer
//! resend a transaction that etcd leaves unanswered (its raft leader died with the proposal)
//! instead of failing it and the term with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use tokio::sync::{mpsc, oneshot};

use super::{KeyValue, Op, Pending, Space, Store, StoreError, StoreStats};

/// The prefix of every key Poseidon writes.
pub const PREFIX: &str = "/poseidon/";

/// The leader's key: its value is the leader's advertised URL, held by the leader's lease.
pub const LEADER_KEY: &str = "/poseidon/leader";

/// The key of the key material managers share (`security::shared`), set once.
pub const SHARED_KEYS_KEY: &str = "/poseidon/cluster-keys";

/// The most operations folded into one transaction (etcd's `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

/// The most bytes of keys and values folded into one transaction (etcd refuses requests above
/// 1.5 MiB by default; this leaves room for the envelope).
pub const MAX_TXN_BYTES: usize = 1024 * 1024;

/// Records a page of a ranged read: one answer holding a whole space passed gRPC's default 4 MiB
/// message limit at a few thousand tasks, and a new leader could not load the state.
const SCAN_PAGE: i64 = 1000;

/// The largest answer a ranged read takes (a page of large records).
const SCAN_MESSAGE_LIMIT: usize = 256 * 1024 * 1024;

/// How long one transaction, retried, may take before its writes are refused.
const WRITE_DEADLINE: Duration = Duration::from_secs(3);

/// How long one attempt of a fenced transaction may go unanswered before it is sent again. A
/// proposal that reached etcd's raft leader just before that leader died is dropped, and the
/// member holding the request only says so after its own request timeout (5 s and more); sending
/// again once another member leads (about a second with the tests' etcd flags) commits the write
/// well inside [`WRITE_DEADLINE`]. Safe because of the term key (see [`commit_fenced`]).
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(800);

/// The prefix of each term's own key: every fenced transaction compares and moves it.
const TERM_PREFIX: &str = "/poseidon/term/";

/// How long a connection to an etcd member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The first check that etcd answers at start; beyond it the manager refuses to start.
const START_DEADLINE: Duration = Duration::from_secs(4);

/// The leader key's create revision in one term: writes carrying it commit only while that key,
/// held by that term's lease, still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The create revision of `/poseidon/leader` when this term won it.
    pub revision: i64,
}

/// What went wrong with a group of writes, told to whoever watches the store (the leader steps
/// down on either).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// The fence's compare failed: this term is over.
    FenceLost(Fence),
    /// etcd did not answer in time; whether the write (of this term, if fenced) committed is
    /// unknown.
    Unavailable(Option<Fence>),
}

type Job = (
    Vec<Op>,
    Option<Fence>,
    oneshot::Sender<Result<(), StoreError>>,
);

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    txns: AtomicU64,
}

/// An etcd-backed [`Store`]; cheap to share behind an `Arc`.
pub struct EtcdStore {
    client: Client,
    runtime: tokio::runtime::Handle,
    tx: mpsc::UnboundedSender<Job>,
    counters: Arc<Counters>,
    trouble: tokio::sync::broadcast::Sender<Trouble>,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

/// Turns a `http://host:port` endpoint list into what the client wants, and names them for errors.
fn joined(endpoints: &[String]) -> String {
    endpoints.join(", ")
}

/// Connects to the cluster and checks, within a few seconds, that it answers a read.
pub async fn connect(endpoints: &[String]) -> Result<Client, StoreError> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(Duration::from_secs(5))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(1))
        .with_require_leader(true);
    let unreachable =
        |e: String| StoreError::Db(format!("etcd is unreachable at {}: {e}", joined(endpoints)));
    let attempt = async {
        let mut client = Client::connect(endpoints, Some(opts))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        client
            .get(LEADER_KEY, None)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(client)
    };
    tokio::time::timeout(START_DEADLINE, attempt)
        .await
        .map_err(|_| unreachable(format!("no answer within {START_DEADLINE:?}")))?
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` and starts the writer. Fails, within a few
    /// seconds, when the cluster does not answer.
    ///
    /// The store runs its own small runtime on a thread of its own, so that [`Store::scan`], which
    /// is synchronous, can wait for etcd from anywhere.
    pub fn open(endpoints: &[String]) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Db(format!("cannot start the etcd runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let eps = endpoints.to_vec();
        let client = std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(connect(&eps)))
                .join()
                .map_err(|_| StoreError::Db("the etcd connection thread panicked".into()))?
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let (trouble, _) = tokio::sync::broadcast::channel(16);
        let writer = writer_loop(client.clone(), rx, counters.clone(), trouble.clone());
        std::thread::Builder::new()
            .name("etcd-store".into())
            .spawn(move || runtime.block_on(writer))
            .map_err(|e| StoreError::Db(format!("cannot start the etcd writer thread: {e}")))?;
        Ok(EtcdStore {
            client,
            runtime: handle,
            tx,
            counters,
            trouble,
            endpoints: endpoints.to_vec(),
        })
    }

    /// A client of the same cluster (for the election).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Subscribes to the store's troubles (a lost fence, etcd not answering).
    pub fn troubles(&self) -> tokio::sync::broadcast::Receiver<Trouble> {
        self.trouble.subscribe()
    }

    /// Queues `ops` to commit only while `fence` holds (see the module's doc).
    pub fn submit_fenced(&self, ops: Vec<Op>, fence: Option<Fence>) -> Pending {
        let (reply, wait) = oneshot::channel();
        if let Err(mpsc::error::SendError((_, _, reply))) = self.tx.send((ops, fence, reply)) {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Pending::from_receiver(wait)
    }

    /// Every key and value of a space, in pages of [`SCAN_PAGE`] records all read at the
    /// revision of the first, so the whole is one consistent snapshot however large the space.
    pub async fn scan_async(client: &Client, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        let prefix = format!("{PREFIX}{}/", space.name()).into_bytes();
        // The end of the prefix's range: the prefix with its last byte ('/') counted up.
        let mut end = prefix.clone();
        if let Some(b) = end.last_mut() {
            *b += 1;
        }
        let mut kv = client
            .kv_client()
            .max_decoding_message_size(SCAN_MESSAGE_LIMIT);
        let mut from = prefix.clone();
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(SCAN_PAGE)
                .with_revision(revision);
            let resp = tokio::time::timeout(WRITE_DEADLINE, kv.get(from.clone(), Some(opts)))
                .await
                .map_err(|_| StoreError::Db("etcd: a ranged read did not answer in time".into()))?
                .map_err(|e| StoreError::Db(format!("etcd: {e}")))?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            out.extend(
                resp.kvs()
                    .iter()
                    .map(|kv| (kv.key()[prefix.len()..].to_vec(), kv.value().to_vec())),
            );
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }
}

/// The value at `key`: the one already there, or else `value`, put there by a transaction that
/// succeeds only while the key does not exist, so that of several managers starting at once, one
/// sets it and all read the same.
pub async fn create_once(
    client: &mut Client,
    key: &str,
    value: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let txn = Txn::new()
        .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then(vec![TxnOp::put(key, value.clone(), None)])
        .or_else(vec![TxnOp::get(key, None)]);
    let resp = tokio::time::timeout(WRITE_DEADLINE, client.txn(txn))
        .await
        .map_err(|_| StoreError::Db(format!("etcd: setting {key} did not answer in time")))?
        .map_err(|e| StoreError::Db(format!("etcd: {e}")))?;
    if resp.succeeded() {
        return Ok(value);
    }
    resp.op_responses()
        .into_iter()
        .find_map(|r| match r {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
            _ => None,
        })
        .ok_or_else(|| StoreError::Db(format!("etcd: {key} exists but could not be read")))
}

/// The etcd key of a record.
pub fn key_of(space: Space, key: &[u8]) -> Vec<u8> {
    let mut k = format!("{PREFIX}{}/", space.name()).into_bytes();
    k.extend_from_slice(key);
    k
}

/// One group's operations, last write of each key winning (etcd refuses a transaction that names a
/// key twice; applying only the last one leaves the same state as applying them in order). A value
/// of `None` deletes the key.
fn fold(jobs: &[Job]) -> Vec<(Vec<u8>, Option<&[u8]>)> {
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut flat: Vec<(Vec<u8>, Option<&[u8]>)> = Vec::new();
    for (ops, _, _) in jobs {
        for op in ops {
            let (key, value) = match op {
                Op::Put(s, k, v) => (key_of(*s, k), Some(v.as_slice())),
                Op::Delete(s, k) => (key_of(*s, k), None),
            };
            match last.get(&key) {
                Some(&i) => flat[i].1 = value,
                None => {
                    last.insert(key.clone(), flat.len());
                    flat.push((key, value));
                }
            }
        }
    }
    flat
}

fn txn_ops(folded: Vec<(Vec<u8>, Option<&[u8]>)>) -> Vec<TxnOp> {
    folded
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => TxnOp::put(k, v, None),
            None => TxnOp::delete(k, None),
        })
        .collect()
}

fn size(ops: &[Op]) -> (usize, usize) {
    let bytes = ops
        .iter()
        .map(|op| match op {
            Op::Put(_, k, v) => k.len() + v.len() + 32,
            Op::Delete(_, k) => k.len() + 32,
        })
        .sum();
    (ops.len(), bytes)
}

async fn writer_loop(
    client: Client,
    mut rx: mpsc::UnboundedReceiver<Job>,
    counters: Arc<Counters>,
    trouble: tokio::sync::broadcast::Sender<Trouble>,
) {
    let mut held: Option<Job> = None;
    // Each term's key's revision as this writer last left it (0: not written yet), and a count of
    // groups that names each one in its term key.
    let mut marks: HashMap<i64, i64> = HashMap::new();
    let mut group: u64 = 0;
    loop {
        let first = match held.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let fence = first.1;
        let (mut n, mut bytes) = size(&first.0);
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            let (jn, jb) = size(&j.0);
            // A fenced group carries the term key's put too.
            let room = MAX_TXN_OPS - usize::from(fence.is_some());
            if j.1 != fence || n + jn > room || bytes + jb > MAX_TXN_BYTES {
                held = Some(j);
                break;
            }
            n += jn;
            bytes += jb;
            jobs.push(j);
        }
        let outcome = if n == 0 {
            Ok(())
        } else {
            group += 1;
            match fence {
                Some(f) => {
                    let mark = marks.entry(f.revision).or_insert(0);
                    commit_fenced(&client, txn_ops(fold(&jobs)), f, mark, group).await
                }
                None => commit(&client, txn_ops(fold(&jobs))).await,
            }
        };
        counters.txns.fetch_add(1, Ordering::Relaxed);
        counters
            .writes
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        match &outcome {
            Err(Failure::Fenced) => {
                if let Some(f) = fence {
                    let _ = trouble.send(Trouble::FenceLost(f));
                }
            }
            Err(Failure::Etcd(e)) => {
                tracing::error!(error = %e, writes = jobs.len(), "an etcd transaction failed");
                let _ = trouble.send(Trouble::Unavailable(fence));
            }
            Err(Failure::TooBig(e)) => {
                tracing::error!(error = %e, writes = jobs.len(), "etcd refused a transaction as too large (raise etcd's --max-txn-ops)");
            }
            Ok(()) => {}
        }
        for (_, _, reply) in jobs {
            let res = match &outcome {
                Ok(()) => Ok(()),
                Err(Failure::Fenced) => Err(StoreError::Db(
                    "this manager is no longer the leader (its lease was lost); nothing was written"
                        .into(),
                )),
                Err(Failure::Etcd(e) | Failure::TooBig(e)) => {
                    Err(StoreError::Db(format!("etcd: {e}")))
                }
            };
            // A caller that stopped waiting no longer needs the answer.
            let _ = reply.send(res);
        }
    }
}

enum Failure {
    Fenced,
    Etcd(String),
    /// etcd refused the transaction as too large: nothing was written and the writer's state is
    /// unchanged, so the term goes on; only these writes fail.
    TooBig(String),
}

/// Commits one unfenced transaction (one manager alone on etcd, or tests), retrying while etcd
/// refuses it; one unanswered attempt uses the whole [`WRITE_DEADLINE`], as a copy sent again could
/// commit after a later write.
async fn commit(client: &Client, ops: Vec<TxnOp>) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
    let mut kv = client.kv_client();
    let mut last = String::new();
    loop {
        let left = time_left(deadline, &last)?;
        match tokio::time::timeout(left, kv.txn(Txn::new().and_then(ops.clone()))).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => note_refusal(e, &mut last)?,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The time left before `deadline`, or the failure that ends the write (`last`: why the last
/// attempt failed).
fn time_left(deadline: tokio::time::Instant, last: &str) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if left.is_zero() {
        return Err(Failure::Etcd(format!(
            "no answer within {WRITE_DEADLINE:?} ({last})"
        )));
    }
    Ok(left)
}

/// Keeps why etcd refused an attempt in `last`; a refusal for size ends the write (sending it
/// again cannot help).
fn note_refusal(e: etcd_client::Error, last: &mut String) -> Result<(), Failure> {
    *last = e.to_string();
    if last.contains("too many operations") || last.contains("request is too large") {
        return Err(Failure::TooBig(std::mem::take(last)));
    }
    Ok(())
}

/// Commits one group of a term: the ops, if the leader key is still the term's (`fence`) and the
/// term key is where this writer left it (`mark`), and the term key moved on with `group`'s name.
/// An attempt etcd leaves unanswered for [`ATTEMPT_TIMEOUT`], or refuses, is sent again until
/// [`WRITE_DEADLINE`]; a failed compare is then read: the term key naming `group` means an
/// earlier copy committed, a leader key of another term means the term is over.
async fn commit_fenced(
    client: &Client,
    ops: Vec<TxnOp>,
    fence: Fence,
    mark: &mut i64,
    group: u64,
) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + WRITE_DEADLINE;
    let term_key = format!("{TERM_PREFIX}{}", fence.revision);
    let name = group.to_string();
    let mut then = ops;
    then.push(TxnOp::put(term_key.as_str(), name.as_str(), None));
    let mut kv = client.kv_client();
    let mut last = String::new();
    loop {
        let left = time_left(deadline, &last)?;
        let txn = Txn::new()
            .when(vec![
                Compare::create_revision(LEADER_KEY, CompareOp::Equal, fence.revision),
                Compare::mod_revision(term_key.as_str(), CompareOp::Equal, *mark),
            ])
            .and_then(then.clone())
            .or_else(vec![
                TxnOp::get(LEADER_KEY, None),
                TxnOp::get(term_key.as_str(), None),
            ]);
        match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), kv.txn(txn)).await {
            Ok(Ok(resp)) if resp.succeeded() => {
                *mark = resp.header().map(|h| h.revision()).unwrap_or(*mark);
                return Ok(());
            }
            Ok(Ok(resp)) => {
                let mut got = resp.op_responses().into_iter().map(|r| match r {
                    etcd_client::TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                    _ => None,
                });
                let (leader, term) = (got.next().flatten(), got.next().flatten());
                // An earlier copy committed (its answer was lost): done, whatever happened to
                // the lease since; a lost fence shows at the next write.
                if let Some(kv) = term.filter(|kv| kv.value() == name.as_bytes()) {
                    *mark = kv.mod_revision();
                    return Ok(());
                }
                if leader.map(|kv| kv.create_revision()) != Some(fence.revision) {
                    return Err(Failure::Fenced);
                }
                return Err(Failure::Etcd(format!(
                    "{term_key} moved under this term's writer; nothing was written"
                )));
            }
            Ok(Err(e)) => note_refusal(e, &mut last)?,
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    /// An unfenced write (a single manager on etcd, or tests); the leader writes through
    /// [`FencedStore`].
    fn submit(&self, ops: Vec<Op>) -> Pending {
        self.submit_fenced(ops, None)
    }

    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let client = self.client.clone();
        self.runtime.spawn(async move {
            let _ = tx.send(EtcdStore::scan_async(&client, space).await);
        });
        // Each page has its own deadline, so the whole read ends.
        rx.recv()
            .map_err(|_| StoreError::Db("etcd: the ranged read was dropped".into()))?
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            writes: self.counters.writes.load(Ordering::Relaxed),
            syncs: self.counters.txns.load(Ordering::Relaxed),
            wal_syncs: 0,
        }
    }
}

/// The leader's view of the store during one term: every write carries the term's [`Fence`].
#[derive(Debug, Clone)]
pub struct FencedStore {
    inner: Arc<EtcdStore>,
    fence: Fence,
}

impl FencedStore {
    /// Writes through `inner` fenced by `fence`.
    pub fn new(inner: Arc<EtcdStore>, fence: Fence) -> Self {
        FencedStore { inner, fence }
    }
}

#[async_trait::async_trait]
impl Store for FencedStore {
    fn submit(&self, ops: Vec<Op>) -> Pending {
        self.inner.submit_fenced(ops, Some(self.fence))
    }

    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(space)
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

/// A follower's view: reads from etcd, refuses every write (a follower redirects writes to the
/// leader before they reach its copy, so this is a guard, not a path).
#[derive(Debug, Clone)]
pub struct ReadOnlyStore {
    inner: Arc<EtcdStore>,
}

impl ReadOnlyStore {
    /// Reads through `inner`.
    pub fn new(inner: Arc<EtcdStore>) -> Self {
        ReadOnlyStore { inner }
    }
}

#[async_trait::async_trait]
impl Store for ReadOnlyStore {
    fn submit(&self, ops: Vec<Op>) -> Pending {
        if ops.is_empty() {
            return Pending::ready(Ok(()));
        }
        Pending::ready(Err(StoreError::Db(
            "this manager is a follower and does not write; send writes to the leader".into(),
        )))
    }

    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(space)
    }

    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ops: Vec<Op>) -> Job {
        let (tx, _rx) = oneshot::channel();
        (ops, None, tx)
    }

    #[test]
    fn a_group_names_each_key_once_and_the_last_write_wins() {
        let jobs = vec![
            job(vec![Op::Put(Space::Tasks, b"a".to_vec(), b"1".to_vec())]),
            job(vec![
                Op::Put(Space::Tasks, b"a".to_vec(), b"2".to_vec()),
                Op::Put(Space::Nodes, b"a".to_vec(), b"n".to_vec()),
            ]),
            job(vec![Op::Delete(Space::Nodes, b"a".to_vec())]),
        ];
        let ops = fold(&jobs);
        let expected: Vec<(Vec<u8>, Option<&[u8]>)> = vec![
            (b"/poseidon/tasks/a".to_vec(), Some(&b"2"[..])),
            (b"/poseidon/nodes/a".to_vec(), None),
        ];
        assert_eq!(ops, expected);
    }

    #[test]
    fn keys_live_under_the_prefix_of_their_space() {
        assert_eq!(key_of(Space::Tasks, b"x"), b"/poseidon/tasks/x".to_vec());
        assert_eq!(key_of(Space::Acl, b"y"), b"/poseidon/acl/y".to_vec());
    }
}
