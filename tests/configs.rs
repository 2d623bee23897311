//! Every example in `config/` boots (its Docker workers swapped for the mock runtime, its ports and
//! data moved to a temporary place) and places a task.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{localize_config, start, Api};
use serde_json::json;

#[tokio::test]
async fn every_example_config_boots_and_places_a_task() {
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let cfg =
            poseidon::config::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let dir = tempfile::tempdir().unwrap();
        let scheduler = cfg.manager.as_ref().map(|m| m.scheduler.clone());
        let cfg = localize_config(cfg, dir.path(), true);
        let run = start(&cfg).await;
        // A file without a manager runs its worker alone: tasks go straight to it.
        let api = match run.manager_url() {
            Some(url) => Api::new(url),
            None => Api::new(format!("http://{}", run.workers[0].addr)),
        };
        if scheduler.is_some() {
            assert_eq!(
                api.ok("/health").await["scheduler"].as_str(),
                scheduler.as_deref(),
                "{}",
                file.display()
            );
        }
        let id = api
            .submit(&json!({"name": "probe", "image": "busybox", "cpus": 0.25}))
            .await;
        let t = api
            .wait_state(&id, "running", Duration::from_secs(10))
            .await;
        let node = t["node"].as_str().unwrap();
        assert!(
            cfg.worker(node).is_some(),
            "{}: placed on {node}",
            file.display()
        );
        run.stop().await;
    }
}
