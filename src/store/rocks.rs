//! The RocksDB store: one column family per [`Space`], synced writes grouped by one writer thread.
//!
//! Why a writer thread: an fsync costs milliseconds, so one per request caps a server at a few hundred
//! writes a second. Every writer hands its batch to the thread and waits; the thread takes the first
//! batch, then everything else already waiting, writes them as one `WriteBatch` with `sync = true`, and
//! answers them all. Under load, many requests share one fsync; alone, a request pays one fsync and no
//! added delay. [`GroupCommit::Off`] writes each batch with its own synced write, for comparison in
//! the benchmark.
//!
//! Why the write-ahead log is recycled: a synced append that grows a file must also write its
//! inode (the new size): a second block write, and a journal commit where ext4 keeps a journal; a
//! synced write over blocks the file already has writes the data alone. On this project's VMs the
//! first costs 3 to 4 times the second (430 against 120 us for 1 KiB; BENCHMARKS.md, "Issue 17: a
//! recycled write-ahead log, and no inspect for a start without ports"). So logs that are no
//! longer needed are kept (at most [`WAL_RECYCLE`]) and written over as the next logs, and the
//! memtables are small enough ([`MEMTABLE_BYTES`]) that a new log begins every few seconds under
//! load, with [`MAX_WAL_BYTES`] making RocksDB flush the small spaces that would otherwise keep
//! every old log alive. Recovery tells a recycled log's old records from new ones by the log number
//! each record carries (RocksDB's recyclable record format), under the default point-in-time
//! recovery mode, which is set explicitly because the two stricter modes (absolute consistency,
//! tolerating corrupted tail records) turn recycling off.
//!
//! Why flushes and compactions write through a rate limiter: a compaction rewrites tens of
//! megabytes at once, as fast as a core and the disk allow, and the synced log writes (and the
//! requests waiting on them) queue behind that burst. Under a steady load of task submissions
//! those bursts made most of the manager's p99; pacing them removed it, where a lower CPU priority
//! for the compaction thread did not (BENCHMARKS.md, "Issue 17: the background writes paced").
//! With a limiter RocksDB also hands the table files it writes to the disk a megabyte at a time
//! as it goes (`bytes_per_sync`), rather than leaving them all to the kernel's writeback. The
//! rate is fixed ([`BACKGROUND_WRITE_RATE`]): several times what the flushes need at the
//! manager's highest measured load, and flushes go before compactions in the limiter's queue, so
//! memtables are not held up. (RocksDB's auto-tuned limiter was measured first, but it drops to a
//! twentieth of its maximum after ten seconds without throttling, idle ones included, and climbs
//! back 5 % each ten seconds: after a quiet spell a burst would find its flushes held to a rate
//! that fills the memtables.)

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use rocksdb::statistics::Ticker;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;

use super::{KeyValue, Op, Pending, Space, Store, StoreError, StoreStats};

/// The most write requests folded into one batch.
const MAX_GROUP: usize = 4096;

/// Each space's memtable: when the largest fills, RocksDB flushes it and begins a new log file.
const MEMTABLE_BYTES: usize = 16 << 20;

/// Live logs beyond this size make RocksDB flush the spaces that keep the oldest ones alive (node
/// and service records change rarely, so their memtables would otherwise pin every log).
const MAX_WAL_BYTES: u64 = 3 * MEMTABLE_BYTES as u64;

/// The rate, in bytes a second, at which flushes and compactions may write (see the module docs).
/// The manager alone at 45,000 submissions a second flushes about 32 MiB/s of records, and its
/// compactions rewrite them once or twice more.
const BACKGROUND_WRITE_RATE: i64 = 128 << 20;

/// How many logs no longer needed are kept to be written over (see the module docs).
const WAL_RECYCLE: usize = 4;

/// The sizes a store is opened with; tests shrink them to see logs recycled within a few writes.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    memtable: usize,
    max_wal: u64,
}

const SIZES: Sizes = Sizes {
    memtable: MEMTABLE_BYTES,
    max_wal: MAX_WAL_BYTES,
};

/// Whether concurrent writes share one fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupCommit {
    /// One writer thread, one synced batch for all waiting writes (the default).
    On,
    /// Each write is its own synced RocksDB write (on the blocking pool).
    Off,
}

type Job = (Vec<Op>, oneshot::Sender<Result<(), StoreError>>);

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    syncs: AtomicU64,
}

/// A RocksDB-backed [`Store`].
pub struct RocksStore {
    db: Arc<DB>,
    /// The options the database was opened with; they hold its statistics (shared with the DB).
    options: Options,
    tx: Option<mpsc::Sender<Job>>,
    mode: GroupCommit,
    counters: Arc<Counters>,
    writer: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .field("mode", &self.mode)
            .finish()
    }
}

impl RocksStore {
    /// Opens (creating when missing) the database in `dir` with grouped commits.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, GroupCommit::On)
    }

    /// Opens the database in `dir` with the given commit mode.
    pub fn open_with(dir: &Path, mode: GroupCommit) -> Result<Self, StoreError> {
        Self::open_sized(dir, mode, SIZES)
    }

    fn open_sized(dir: &Path, mode: GroupCommit, sizes: Sizes) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Records are small JSON; compression would cost CPU for little gain, and leaving it out
        // keeps the RocksDB build small.
        opts.set_compression_type(rocksdb::DBCompressionType::None);
        // Statistics give the WAL-sync count that proves acknowledged writes were synced (see
        // `StoreStats::wal_syncs`). Counters only: the timers and histograms read the clock
        // several times a write, and nothing here reads them.
        opts.enable_statistics();
        opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);
        // A vector memtable (`space_options`) takes no concurrent inserts: the leader of each of
        // RocksDB's write groups inserts for the group. Concurrent writers stay safe (group commit
        // off writes from several blocking-pool threads), and with it on one thread writes anyway.
        opts.set_allow_concurrent_memtable_write(false);
        // Logs written over rather than grown (see the module docs).
        opts.set_recycle_log_file_num(WAL_RECYCLE);
        opts.set_max_total_wal_size(sizes.max_wal);
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        // Flushes and compactions write through a rate limiter (see the module docs).
        opts.set_ratelimiter(BACKGROUND_WRITE_RATE, 100_000, 10);
        let cfs = Space::ALL
            .map(|s| ColumnFamilyDescriptor::new(s.name(), space_options(sizes.memtable)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("lock") {
                StoreError::Db(format!(
                    "{} is in use by another poseidon process ({msg})",
                    dir.display()
                ))
            } else {
                StoreError::Db(msg)
            }
        })?;
        let db = Arc::new(db);
        let counters = Arc::new(Counters::default());
        let (tx, writer) = if mode == GroupCommit::On {
            let (tx, rx) = mpsc::channel::<Job>();
            let db2 = db.clone();
            let c2 = counters.clone();
            let handle = thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(&db2, &rx, &c2))
                .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        Ok(RocksStore {
            db,
            options: opts,
            tx,
            mode,
            counters,
            writer,
        })
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        // Closing the channel ends the writer after it has answered what it holds.
        self.tx.take();
        if let Some(h) = self.writer.take() {
            if h.join().is_err() {
                tracing::error!(path = %self.db.path().display(), "the store's writer thread panicked");
            }
        }
        if let Err(e) = self.db.flush_wal(true) {
            tracing::error!(path = %self.db.path().display(), error = %e, "cannot sync the write-ahead log at close");
        }
    }
}

/// A column family's options. Its memtable is a vector, not RocksDB's default skip list: a write
/// is an append, and the sort happens once, when the memtable is flushed. Every record is read
/// only by the scan at start-up (`Store::scan`), never by a point lookup that would search an
/// unsorted vector. Task ids are random, so each insert into a skip list of tens of thousands of
/// records was a descent of cache misses: 10.5 % of the mock cluster's CPU under `wrk`
/// (BENCHMARKS.md, "Issue 17").
fn space_options(memtable: usize) -> Options {
    let mut o = Options::default();
    o.set_write_buffer_size(memtable);
    o.set_compression_type(rocksdb::DBCompressionType::None);
    o.set_allow_concurrent_memtable_write(false);
    o.set_memtable_factory(rocksdb::MemtableFactory::Vector);
    o
}

fn apply(db: &DB, batch: &mut WriteBatch, ops: &[Op]) -> Result<(), StoreError> {
    for op in ops {
        match op {
            Op::Put(s, k, v) => {
                let cf = db
                    .cf_handle(s.name())
                    .ok_or_else(|| StoreError::Db(format!("missing column family {}", s.name())))?;
                batch.put_cf(&cf, k, v);
            }
            Op::Delete(s, k) => {
                let cf = db
                    .cf_handle(s.name())
                    .ok_or_else(|| StoreError::Db(format!("missing column family {}", s.name())))?;
                batch.delete_cf(&cf, k);
            }
        }
    }
    Ok(())
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

fn writer_loop(db: &DB, rx: &mpsc::Receiver<Job>, counters: &Counters) {
    let opts = synced();
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut batch = WriteBatch::default();
        // Column families are all created at open, so `apply` cannot fail in practice; if it ever
        // did, the whole group fails rather than committing half of someone's batch.
        let prepared = jobs
            .iter()
            .try_for_each(|(ops, _)| apply(db, &mut batch, ops));
        let outcome = prepared.and_then(|()| {
            db.write_opt(batch, &opts)
                .map_err(|e| StoreError::Db(e.to_string()))
        });
        counters.syncs.fetch_add(1, Ordering::Relaxed);
        counters
            .writes
            .fetch_add(jobs.len() as u64, Ordering::Relaxed);
        if let Err(e) = &outcome {
            tracing::error!(path = %db.path().display(), error = %e, writes = jobs.len(), "a synced write failed");
        }
        for (_, reply) in jobs {
            let res = match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Db(e.to_string())),
            };
            answer(reply, res);
        }
    }
}

/// Hands a write's outcome to its caller. A caller that stopped waiting (its request was cancelled)
/// no longer needs it; the write itself is done either way.
fn answer(reply: oneshot::Sender<Result<(), StoreError>>, res: Result<(), StoreError>) {
    if reply.send(res).is_err() {
        tracing::debug!("a store caller stopped waiting before its write was answered");
    }
}

#[async_trait::async_trait]
impl Store for RocksStore {
    fn submit(&self, ops: Vec<Op>) -> Pending {
        match self.mode {
            GroupCommit::On => {
                let (reply, wait) = oneshot::channel();
                match &self.tx {
                    Some(tx) => {
                        if let Err(mpsc::SendError((_, reply))) = tx.send((ops, reply)) {
                            tracing::error!(path = %self.db.path().display(), "the store's writer thread is gone; refusing a write");
                            answer(reply, Err(StoreError::Closed));
                        }
                    }
                    None => answer(reply, Err(StoreError::Closed)),
                }
                Pending(wait)
            }
            GroupCommit::Off => {
                let db = self.db.clone();
                let counters = self.counters.clone();
                let (reply, wait) = oneshot::channel();
                tokio::task::spawn_blocking(move || {
                    let mut batch = WriteBatch::default();
                    let res = apply(&db, &mut batch, &ops).and_then(|()| {
                        db.write_opt(batch, &synced())
                            .map_err(|e| StoreError::Db(e.to_string()))
                    });
                    counters.syncs.fetch_add(1, Ordering::Relaxed);
                    counters.writes.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = &res {
                        tracing::error!(path = %db.path().display(), error = %e, "a synced write failed");
                    }
                    answer(reply, res);
                });
                Pending(wait)
            }
        }
    }

    fn scan(&self, space: Space) -> Result<Vec<KeyValue>, StoreError> {
        let cf = self
            .db
            .cf_handle(space.name())
            .ok_or_else(|| StoreError::Db(format!("missing column family {}", space.name())))?;
        self.db
            .iterator_cf(&cf, IteratorMode::Start)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| StoreError::Db(e.to_string()))
            })
            .collect()
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            writes: self.counters.writes.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            wal_syncs: self.options.get_ticker_count(Ticker::WalFileSynced),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_survive_reopening_and_deletes_stick() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = RocksStore::open(dir.path()).expect("open");
            s.write(vec![
                Op::Put(Space::Tasks, b"a".to_vec(), b"1".to_vec()),
                Op::Put(Space::Tasks, b"b".to_vec(), b"2".to_vec()),
                Op::Put(Space::Nodes, b"w1".to_vec(), b"n".to_vec()),
            ])
            .await
            .expect("write");
            s.write(vec![Op::Delete(Space::Tasks, b"a".to_vec())])
                .await
                .expect("delete");
        }
        let s = RocksStore::open(dir.path()).expect("reopen");
        assert_eq!(
            s.scan(Space::Tasks).expect("scan"),
            vec![(b"b".to_vec(), b"2".to_vec())]
        );
        assert_eq!(s.scan(Space::Nodes).expect("scan").len(), 1);
        assert!(s.scan(Space::Meta).expect("scan").is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(RocksStore::open(dir.path()).expect("open"));
        let mut handles = Vec::new();
        for i in 0..200u32 {
            let s = s.clone();
            handles.push(tokio::spawn(async move {
                s.write(vec![Op::Put(
                    Space::Tasks,
                    i.to_be_bytes().to_vec(),
                    b"x".to_vec(),
                )])
                .await
            }));
        }
        for h in handles {
            h.await.expect("join").expect("write");
        }
        let st = s.stats();
        assert_eq!(st.writes, 200);
        assert!(st.syncs < 200, "expected grouping, got {st:?}");
        assert_eq!(s.scan(Space::Tasks).expect("scan").len(), 200);
    }

    /// Logs are written over once they are no longer needed, and reopening reads back exactly
    /// the last write of every key: nothing of a recycled log's earlier life comes back.
    #[tokio::test]
    async fn logs_are_recycled_and_reopening_reads_only_the_latest_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiny = Sizes {
            memtable: 64 << 10,
            max_wal: 192 << 10,
        };
        let mut model = std::collections::BTreeMap::new();
        {
            let s = RocksStore::open_sized(dir.path(), GroupCommit::On, tiny).expect("open");
            // A record in another space, written once: its memtable alone would keep the first
            // log alive, unless the log size limit has it flushed.
            s.write(vec![Op::Put(Space::Nodes, b"w1".to_vec(), b"n".to_vec())])
                .await
                .expect("write");
            // About 4 MiB in 500 synced writes over 300 keys: some 60 memtables of 64 KiB.
            for round in 0..500u32 {
                let mut ops = Vec::new();
                for j in 0..16u32 {
                    let n = round * 16 + j;
                    let key = format!("k{:03}", n % 300).into_bytes();
                    if n % 7 == 0 {
                        model.remove(&key);
                        ops.push(Op::Delete(Space::Tasks, key));
                    } else {
                        let value = format!("{n:0>512}").into_bytes();
                        model.insert(key.clone(), value.clone());
                        ops.push(Op::Put(Space::Tasks, key, value));
                    }
                }
                s.write(ops).await.expect("write");
            }
        }
        let info = std::fs::read_to_string(dir.path().join("LOG")).expect("RocksDB's info log");
        assert!(
            info.contains("to recycle list") && info.contains("from recycle list"),
            "no log was kept for reuse and reused"
        );
        let s = RocksStore::open_sized(dir.path(), GroupCommit::On, tiny).expect("reopen");
        let read: Vec<KeyValue> = s.scan(Space::Tasks).expect("scan");
        let want: Vec<KeyValue> = model.into_iter().collect();
        assert_eq!(read.len(), want.len());
        assert!(read == want, "the reopened store differs from the writes");
        assert_eq!(s.scan(Space::Nodes).expect("scan").len(), 1);
    }

    /// The database is opened with the rate limiter of its background writes (module docs);
    /// RocksDB prints the limiter it was given in its info log, `(nil)` for none.
    #[test]
    fn flushes_and_compactions_write_through_a_rate_limiter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _s = RocksStore::open(dir.path()).expect("open");
        let info = std::fs::read_to_string(dir.path().join("LOG")).expect("RocksDB's info log");
        let line = info
            .lines()
            .find(|l| l.contains("Options.rate_limiter:"))
            .expect("the rate limiter's line in the info log");
        assert!(!line.ends_with("(nil)"), "no rate limiter: {line}");
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _a = RocksStore::open(dir.path()).expect("open");
        let err = RocksStore::open(dir.path()).expect_err("second open must fail");
        assert!(err.to_string().contains("in use"), "{err}");
    }
}
