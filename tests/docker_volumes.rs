//! Volumes on the real Docker Engine: a named volume outlives the container that wrote to it (the
//! replacement container after a `kill`, and a new task after that, read the file back), and a host
//! volume from the worker's allow-list is bound read-only and read inside the container.
//! Under `CI=true` an unreachable engine fails this test; elsewhere it says loudly it skipped.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{localize, start, wait_for, Api};
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};
use poseidon_runtimes::Runtime;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Removes the test's Docker volume when dropped, so a failed run leaves nothing behind. Declared
/// before the node's container guard, it drops after it: a volume in use cannot be removed.
struct VolumeGuard(String);

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        match std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "cannot remove volume {}: {}",
                self.0,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("cannot run docker volume rm {}: {e}", self.0),
        }
    }
}

fn volume_exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["volume", "inspect", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Waits until the task's current container has written `needle` to its stdout; returns the logs.
async fn logs_with(api: &Api, id: &str, needle: &str) -> Value {
    wait_for(&format!("task {id} to log {needle:?}"), WAIT, || async {
        let (status, logs) = api.get(&format!("/tasks/{id}/logs")).await;
        (status == 200 && logs["stdout"].as_str().unwrap_or_default().contains(needle))
            .then_some(logs)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_volume_survives_replacement_and_an_allowed_host_volume_is_read_inside() {
    let Some(rt) = docker_or_skip(
        "a_named_volume_survives_replacement_and_an_allowed_host_volume_is_read_inside",
    )
    .await
    else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let pid = std::process::id();
    let volume = format!("poseidon-test-vol-{pid}");
    let node = format!("vol-{pid}");
    let _volume_cleanup = VolumeGuard(volume.clone());
    let _cleanup = common::NodeContainers(node.clone());
    assert!(
        !volume_exists(&volume),
        "volume {volume} is left from an earlier run"
    );

    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().join("shared");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello.txt"), "from-the-host\n").unwrap();
    let cfg = localize(
        &format!(
            "[manager]\n[[worker]]\nname = \"{node}\"\nruntime = \"docker\"\nstop_grace = \"1s\"\nhost_volumes = {{ shared = \"{}\" }}\n",
            host_dir.display()
        ),
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());

    // The first container writes a mark into the volume; its replacement finds it, reads the host
    // file, and finds the host volume read-only.
    let script = "if [ -f /data/mark ]; then echo \"found $(cat /data/mark)\"; cat /host/hello.txt; \
                  if echo x > /host/probe 2>/dev/null; then echo host-writable; else echo host-read-only; fi; \
                  else echo first-run > /data/mark; echo wrote; fi; sleep 300";
    let id = api
        .submit(&json!({
            "name": "volumes",
            "image": TEST_IMAGE,
            "cmd": ["sh", "-c", script],
            "restart_policy": {"policy": "always", "backoff": "100ms"},
            "volumes": [
                {"source": volume, "target": "/data"},
                {"host_volume": "shared", "target": "/host", "read_only": true}
            ]
        }))
        .await;
    let first = api.wait_state(&id, "running", WAIT).await;
    let first_container = first["container_id"].as_str().unwrap().to_string();
    logs_with(&api, &id, "wrote").await;
    assert!(
        volume_exists(&volume),
        "Docker created the volume on first use"
    );

    rt.kill(&first_container).await.unwrap();
    let replaced = wait_for("the replacement container", WAIT, || async {
        let (_, t) = api.get(&format!("/tasks/{id}")).await;
        (t["state"] == "running"
            && t["restart_count"].as_u64() == Some(1)
            && t["container_id"]
                .as_str()
                .is_some_and(|c| c != first_container))
        .then_some(t)
    })
    .await;
    // Wait for the script's last line (`host-read-only` or `host-writable`): the logs could
    // otherwise be read between its first line and the host file's content (seen in CI).
    let logs = logs_with(&api, &id, "\nhost-").await;
    let stdout = logs["stdout"].as_str().unwrap();
    assert!(stdout.contains("found first-run"), "{stdout}");
    assert!(stdout.contains("from-the-host"), "{replaced}\n{stdout}");
    assert!(stdout.contains("host-read-only"), "{stdout}");
    assert!(!host_dir.join("probe").exists());

    // A new task (not only a new container) mounting the volume reads the mark as well.
    let (st, v) = api.delete(&format!("/tasks/{id}")).await;
    assert_eq!(st, 200, "{v}");
    api.wait_state(&id, "completed", WAIT).await;
    let reader = api
        .submit(&json!({
            "name": "reader",
            "image": TEST_IMAGE,
            "cmd": ["cat", "/data/mark"],
            "volumes": [format!("{volume}:/data:ro")]
        }))
        .await;
    let done = api.wait_state(&reader, "completed", WAIT).await;
    assert_eq!(done["exit_code"], 0, "{done}");
    let logs = api.ok(&format!("/tasks/{reader}/logs")).await;
    assert_eq!(logs["stdout"], "first-run\n", "{logs}");

    // Clean up here and check it, rather than only in the guards: containers first, then the
    // volume they held.
    for task in [&id, &reader] {
        let (st, v) = api.delete(&format!("/tasks/{task}?purge=true")).await;
        assert_eq!(st, 200, "{v}");
    }
    wait_for("the task containers to go", WAIT, || async {
        rt.list(&format!("io.poseidon.node={node}"))
            .await
            .ok()
            .filter(|l| l.is_empty())
            .map(|_| ())
    })
    .await;
    run.stop().await;
    let out = std::process::Command::new("docker")
        .args(["volume", "rm", &volume])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!volume_exists(&volume));
}
