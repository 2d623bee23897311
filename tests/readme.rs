//! The README's commands, read from README.md itself and run against real Docker: the quick start
//! against `poseidon` started with no `-c` (the embedded default, exactly as `cargo run` starts it),
//! then the worker-alone example, then the JSON logs example. They use the fixed default ports 5555 and 5556, as a user would.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use poseidon_runtimes::testing::docker_or_skip;
use poseidon_runtimes::Runtime;

#[path = "common/readme.rs"]
mod readme;
use readme::{block, run_script};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quick_start_and_worker_examples_work_verbatim() {
    let Some(rt) = docker_or_skip("readme_quick_start_and_worker_examples_work_verbatim").await
    else {
        return;
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_poseidon"));
    let bin_dir = bin.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    for file in ["worker-alone.toml", "mock-cluster.toml"] {
        std::fs::copy(
            format!("{}/config/{file}", env!("CARGO_MANIFEST_DIR")),
            dir.path().join("config").join(file),
        )
        .unwrap();
    }

    let quick = block("quickstart", "sh");
    let ops = block("ops", "sh");
    let worker = block("worker", "sh");
    let logs = block("logs", "sh");
    let result = std::panic::catch_unwind(|| {
        {
            // The README's first command, `cargo run`: the binary with no arguments.
            let _cluster = Killed(
                Command::new(bin)
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            wait_port(5555);
            wait_port(5556);
            run_script(&quick, dir.path(), bin_dir);
            run_script(&ops, dir.path(), bin_dir);
        }
        run_script(&worker, dir.path(), bin_dir);
        run_script(&logs, dir.path(), bin_dir);
        // The block's log is one JSON object per line, the first ones saying what started.
        let log = std::fs::read_to_string(dir.path().join("poseidon.log")).unwrap();
        assert!(log.lines().count() >= 3, "{log}");
        for line in log.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        }
        assert!(log.contains("listening"), "{log}");
    });
    // Whatever happened, remove what the examples started (tasks of nodes "local" and "solo").
    for node in ["local", "solo"] {
        for c in rt
            .list(&format!("io.poseidon.node={node}"))
            .await
            .unwrap_or_default()
        {
            let _ = rt.remove(&c.id, true).await;
        }
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
