//! The Docker daemon refusing and hanging, shown with a Unix-socket proxy in front of the real engine
//! (the shared engine itself must not be stopped): calls time out, the worker says it is unhealthy,
//! the manager stops placing on it, the running task is not marked lost, and all recovers when the
//! daemon answers again.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};
use poseidon_runtimes::Runtime;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const PASS: u8 = 0;
const REFUSE: u8 = 1;
const HANG: u8 = 2;
const WAIT: Duration = Duration::from_secs(30);

/// Forwards connections to the engine's socket; in `REFUSE` mode it closes every connection, in
/// `HANG` mode it holds every byte (new and kept-alive connections alike) until the mode changes.
struct Proxy {
    mode: Arc<AtomicU8>,
    path: PathBuf,
}

impl Proxy {
    fn start(dir: &Path, upstream: &str) -> Proxy {
        let path = dir.join("docker-proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mode = Arc::new(AtomicU8::new(PASS));
        let m = mode.clone();
        let upstream = upstream.to_string();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let m = m.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if m.load(Ordering::SeqCst) == REFUSE {
                        return;
                    }
                    let Ok(server) = UnixStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, m.clone()));
                    tokio::spawn(pump(sr, cw, m));
                });
            }
        });
        Proxy { mode, path }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mode: Arc<AtomicU8>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            match mode.load(Ordering::SeqCst) {
                HANG => tokio::time::sleep(Duration::from_millis(20)).await,
                REFUSE => return,
                _ => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn node_state(api: &Api, name: &str) -> String {
    let nodes = api.ok("/nodes").await;
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .map(|n| n["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_or_hanging_daemon_makes_the_node_unhealthy_and_everything_recovers() {
    let Some(rt) = docker_or_skip(
        "a_refusing_or_hanging_daemon_makes_the_node_unhealthy_and_everything_recovers",
    )
    .await
    else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let upstream = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(dir.path(), &upstream);
    let node = format!("proxied-{}", std::process::id());
    let _cleanup = common::NodeContainers(node.clone());
    let cfg = localize(
        &format!(
            "[manager]\nheartbeat_ttl = \"3s\"\n[[worker]]\nname = \"{node}\"\nruntime = \"docker\"\ndocker_host = \"unix://{}\"\nheartbeat_interval = \"300ms\"\nstop_grace = \"1s\"\n",
            proxy.path.display()
        ),
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let first = api
        .submit(&json!({"name": "steady", "image": TEST_IMAGE, "cmd": ["sleep", "600"]}))
        .await;
    let cid = api.wait_state(&first, "running", WAIT).await["container_id"]
        .as_str()
        .unwrap()
        .to_string();

    for (mode, label) in [(REFUSE, "refusing"), (HANG, "hanging")] {
        proxy.set(mode);
        wait_for(
            &format!("the node to be unhealthy with the daemon {label}"),
            WAIT,
            || async { (node_state(&api, &node).await == "unhealthy").then_some(()) },
        )
        .await;
        let later = api.submit(&json!({"name": format!("later-{label}"), "image": TEST_IMAGE, "cmd": ["sleep", "600"]})).await;
        // Several heartbeats while the daemon is away: the node stays unhealthy (never down, which
        // would move the task), the running task is not lost, nothing is placed.
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(node_state(&api, &node).await, "unhealthy", "daemon {label}");
            assert_eq!(
                api.ok(&format!("/tasks/{first}")).await["state"],
                "running",
                "daemon {label}"
            );
            assert_eq!(
                api.ok(&format!("/tasks/{later}")).await["state"],
                "pending",
                "daemon {label}"
            );
        }
        let nodes = api.ok("/nodes").await;
        let problem = nodes[0]["problem"].as_str().unwrap_or_default().to_string();
        assert!(!problem.is_empty(), "the node says what is wrong: {nodes}");
        proxy.set(PASS);
        wait_for("the node to be up again", WAIT, || async {
            (node_state(&api, &node).await == "up").then_some(())
        })
        .await;
        api.wait_state(&later, "running", WAIT).await;
        assert_eq!(
            api.ok(&format!("/tasks/{first}")).await["container_id"],
            cid.as_str(),
            "the same container throughout"
        );
        let (st, v) = api.delete(&format!("/tasks/{later}")).await;
        assert_eq!(st, 200, "{v}");
        api.wait_state(&later, "completed", WAIT).await;
    }
    assert!(rt.inspect(&cid).await.unwrap().status == poseidon_runtimes::ContainerStatus::Running);
    let (st, _) = api.delete(&format!("/tasks/{first}")).await;
    assert_eq!(st, 200);
    api.wait_state(&first, "completed", WAIT).await;
    run.stop().await;
}
