//! Acknowledged writes are synced: every `POST /tasks` that a manager over the real RocksDB store
//! answers with 201 is preceded by a write-ahead-log sync that RocksDB itself reports as completed.
//!
//! The SIGKILL test in `binary.rs` cannot show this: a killed process loses nothing that reached the
//! operating system's page cache, synced or not. RocksDB's own `rocksdb.wal.synced` ticker counts
//! only syncs that happened, so a write made with `sync = false` leaves it unchanged and fails here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{localize, start, Api};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_submission_follows_a_completed_wal_sync() {
    let dir = tempfile::tempdir().unwrap();
    // A manager alone: with no worker, nothing is placed, so the only writes are the submissions.
    let cfg = localize("[manager]\n", dir.path(), true);
    let run = start(&cfg).await;
    let manager = &run.manager.as_ref().unwrap().manager;
    let api = Api::new(run.manager_url().unwrap());
    for i in 0..20 {
        let before = manager.store_stats().wal_syncs;
        let (status, body) = api
            .post(
                "/tasks",
                &json!({"name": format!("t{i}"), "image": "busybox"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let after = manager.store_stats().wal_syncs;
        assert!(
            after > before,
            "submission {i} was acknowledged with no WAL sync completed in between \
             (rocksdb.wal.synced stayed at {before})"
        );
    }
    run.stop().await;
}
