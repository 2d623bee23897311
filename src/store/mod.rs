//! The durable store, behind a small trait.
//!
//! Only this module knows keys, column families and record encodings. The manager and the workers keep
//! their working state in memory and write through to a [`Store`]; a write returns only once it is
//! synced to disk, so an acknowledged request survives a crash. Concurrent writers are grouped: one
//! writer thread folds every write waiting for it into one batch and one fsync (see [`rocks`]).
//!
//! [`MemStore`] stands in where durability is not wanted (the scale benchmark's simulated workers), and
//! [`etcd`] keeps the state in an etcd cluster, for several managers in high availability.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::task::{Task, TaskId};

pub mod etcd;
pub mod rocks;

pub use rocks::RocksStore;

/// The version written into every record, so that a later release can read and migrate old ones.
const RECORD_VERSION: u32 = 1;

/// A raw key and its raw value, as [`Store::scan`] returns them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The in-memory store's map: (space, key) to value.
type MemMap = BTreeMap<(Space, Vec<u8>), Vec<u8>>;

/// The key spaces of the store (column families in RocksDB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Space {
    /// Tasks by id.
    Tasks,
    /// Nodes by name (manager only).
    Nodes,
    /// Small facts such as counters.
    Meta,
    /// ACL tokens by accessor, hashed (manager only; see `security::tokens`).
    Acl,
}

impl Space {
    /// All spaces.
    pub const ALL: [Space; 4] = [Space::Tasks, Space::Nodes, Space::Meta, Space::Acl];

    /// The column family name.
    pub fn name(self) -> &'static str {
        match self {
            Space::Tasks => "tasks",
            Space::Nodes => "nodes",
            Space::Meta => "meta",
            Space::Acl => "acl",
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets a key.
    Put(Space, Vec<u8>, Vec<u8>),
    /// Removes a key.
    Delete(Space, Vec<u8>),
}

impl Op {
    /// Stores a task under its id.
    pub fn put_task(task: &Task) -> Result<Op, StoreError> {
        Ok(Op::Put(
            Space::Tasks,
            task.id.to_string().into_bytes(),
            encode(task)?,
        ))
    }

    /// Forgets a task.
    pub fn delete_task(id: TaskId) -> Op {
        Op::Delete(Space::Tasks, id.to_string().into_bytes())
    }

    /// Stores a node record (any serialisable value) under its name.
    pub fn put_node<T: Serialize>(name: &str, node: &T) -> Result<Op, StoreError> {
        Ok(Op::Put(
            Space::Nodes,
            name.as_bytes().to_vec(),
            encode(node)?,
        ))
    }
}

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused an operation.
    #[error("store: {0}")]
    Db(String),
    /// A record could not be encoded or decoded.
    #[error("store: bad record: {0}")]
    Record(String),
    /// The writer is gone (the store is shutting down).
    #[error("store: closed")]
    Closed,
}

/// Counters that show how well writes are grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Write requests acknowledged.
    pub writes: u64,
    /// Synced batches written (one fsync each), as counted by the store itself.
    pub syncs: u64,
    /// WAL syncs the database itself reports as completed (RocksDB's `rocksdb.wal.synced` ticker);
    /// unlike `syncs`, this cannot count a write whose `sync` option was off. Stays 0 for a store
    /// without a write-ahead log.
    pub wal_syncs: u64,
}

/// A write that has been queued, in call order, and not yet acknowledged.
///
/// Queuing is synchronous so that a caller can take a snapshot of its state and queue it while holding
/// its own lock: two updates of one task then reach the disk in the order they were made.
#[derive(Debug)]
pub struct Pending(tokio::sync::oneshot::Receiver<Result<(), StoreError>>);

impl Pending {
    /// A write that is already done (or already failed).
    pub fn ready(result: Result<(), StoreError>) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The receiver is in hand, so this send cannot fail; there is nothing to report.
        let _ = tx.send(result);
        Pending(rx)
    }

    /// A write that completes when the sender of `rx` reports its outcome (for stores, or test
    /// doubles, that finish writes elsewhere). A dropped sender reads as [`StoreError::Closed`].
    pub fn from_receiver(rx: tokio::sync::oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Pending(rx)
    }

    /// Waits until the write is on disk.
    pub async fn wait(self) -> Result<(), StoreError> {
        self.0.await.map_err(|_| StoreError::Closed)?
    }
}

/// A durable key-value store with grouped synced writes.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Queues `ops` to be applied atomically; the returned [`Pending`] resolves once they are on disk.
    fn submit(&self, ops: Vec<Op>) -> Pending;
    /// Applies `ops` atomically and returns once they are on disk.
    async fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        self.submit(ops).wait().await
    }
    /// Every key and value of a space, in key order (used at start-up, never per request).
    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError>;
    /// Write and sync counters.
    fn stats(&self) -> StoreStats;
}

#[derive(Serialize)]
struct RecordOut<'a, T> {
    v: u32,
    data: &'a T,
}

#[derive(Deserialize)]
struct RecordIn<T> {
    v: u32,
    data: T,
}

/// Encodes a value as a versioned record.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&RecordOut {
        v: RECORD_VERSION,
        data: value,
    })
    .map_err(|e| StoreError::Record(e.to_string()))
}

/// The value's own JSON inside a record made by [`encode`] (`{"v":1,"data":VALUE}`), which is
/// what `serde_json::to_vec(value)` gives: an answer can reuse the record instead of encoding the
/// value a second time. `None` when `record` is not of that shape.
pub fn record_data(record: &[u8]) -> Option<&[u8]> {
    let rest = record.strip_prefix(b"{\"v\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let rest = rest[digits..].strip_prefix(b",\"data\":")?;
    (digits > 0).then_some(())?;
    rest.strip_suffix(b"}")
}

/// Decodes a versioned record, refusing versions this build does not know.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    let rec: RecordIn<T> =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Record(e.to_string()))?;
    if rec.v != RECORD_VERSION {
        return Err(StoreError::Record(format!(
            "record version {} is not supported (this build reads {RECORD_VERSION})",
            rec.v
        )));
    }
    Ok(rec.data)
}

/// Loads every task of a store.
pub fn load_tasks(store: &dyn Store) -> Result<Vec<Task>, StoreError> {
    store
        .scan(Space::Tasks)?
        .iter()
        .map(|(_, v)| decode::<Task>(v))
        .collect()
}

/// Loads every node record of a store.
pub fn load_nodes<T: for<'de> Deserialize<'de>>(store: &dyn Store) -> Result<Vec<T>, StoreError> {
    store
        .scan(Space::Nodes)?
        .iter()
        .map(|(_, v)| decode::<T>(v))
        .collect()
}

/// An in-memory store: the same contract without durability, for simulated workers and tests.
#[derive(Debug, Default)]
pub struct MemStore {
    data: Mutex<MemMap>,
    stats: Mutex<StoreStats>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    fn submit(&self, ops: Vec<Op>) -> Pending {
        Pending::ready(self.apply(ops))
    }

    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        let data = self.data.lock().map_err(|_| StoreError::Closed)?;
        Ok(data
            .iter()
            .filter(|((s, _), _)| *s == space)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn stats(&self) -> StoreStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

impl MemStore {
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut data = self.data.lock().map_err(|_| StoreError::Closed)?;
        for op in ops {
            match op {
                Op::Put(s, k, v) => {
                    data.insert((s, k), v);
                }
                Op::Delete(s, k) => {
                    data.remove(&(s, k));
                }
            }
        }
        if let Ok(mut st) = self.stats.lock() {
            st.writes += 1;
            st.syncs += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_an_unknown_version_is_refused() {
        let err = decode::<u32>(br#"{"v":99,"data":1}"#).expect_err("must refuse");
        assert!(err.to_string().contains("record version 99"), "{err}");
        assert_eq!(decode::<u32>(br#"{"v":1,"data":7}"#).ok(), Some(7));
    }

    #[test]
    fn a_records_data_is_the_values_own_json() {
        let task = crate::task::Task::new(
            crate::task::TaskId::default(),
            crate::spec::parse_submission(
                br#"{"name":"a-b","image":"busybox","cmd":["sh","-c","echo \"}\""]}"#,
            )
            .expect("spec")
            .spec,
            crate::task::State::Pending,
        );
        let record = encode(&task).expect("encode");
        let own = serde_json::to_vec(&task).expect("to_vec");
        assert_eq!(record_data(&record), Some(own.as_slice()));
        assert_eq!(
            record_data(br#"{"v":12,"data":[1,2]}"#),
            Some(&b"[1,2]"[..])
        );
        // Not of the record's shape: no slice, so the caller encodes the value itself.
        for bad in [
            &br#"{"data":1,"v":1}"#[..],
            br#"{"v":,"data":1}"#,
            br#"{"v":1,"data":1"#,
            br#"[1]"#,
            b"",
        ] {
            assert_eq!(record_data(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
