//! The processes of the high-availability tests (`tests/ha.rs`, `tests/ha_secure.rs`): a real
//! etcd cluster of Debian's `etcd` on loopback ports, `poseidon manager` children, and how to ask
//! the managers who leads. Each test file includes this one with `#[path]` beside `etcd.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use poseidon::http::HttpClient;
use serde_json::Value;

use crate::common::free_port;
use crate::etcd;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_poseidon");

/// A child process, killed and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }
    /// SIGKILL, and reaps it.
    pub fn kill9(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

/// Sends `sig` (`-STOP`, `-CONT`, ...) to `pid`.
pub fn signal(pid: &str, sig: &str) {
    let status = Command::new("kill").args([sig, pid]).status().unwrap();
    assert!(status.success(), "kill {sig} {pid}: {status}");
}

/// A three-member (or n-member) etcd cluster on loopback ports, each member a child process.
pub struct Etcd {
    pub dir: PathBuf,
    pub names: Vec<String>,
    pub clients: Vec<u16>,
    pub peers: Vec<u16>,
    pub procs: Vec<Option<Proc>>,
}

impl Etcd {
    pub fn start(dir: &Path) -> Etcd {
        Etcd::start_n(dir, 3)
    }

    pub fn start_n(dir: &Path, n: usize) -> Etcd {
        let mut e = Etcd {
            dir: dir.to_path_buf(),
            names: (0..n).map(|i| format!("e{i}")).collect(),
            clients: (0..n).map(|_| free_port()).collect(),
            peers: (0..n).map(|_| free_port()).collect(),
            procs: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            e.start_member(i);
        }
        e
    }

    pub fn start_member(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.join(format!("{}.log", self.names[i]))).unwrap();
        let child = etcd::member(&self.dir, &self.names, &self.clients, &self.peers, i)
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs[i] = Some(Proc(child));
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.procs[i].take() {
            p.kill9();
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.clients
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    /// A client, once the cluster takes a write (its members have elected a leader).
    pub async fn ready_client(&self) -> etcd_client::Client {
        crate::common::wait_for("etcd to answer", Duration::from_secs(20), || async {
            let mut c = etcd_client::Client::connect(self.endpoints(), None)
                .await
                .ok()?;
            c.put("/test/ready", "1", None).await.ok()?;
            Some(c)
        })
        .await
    }

    /// The index of the member that is etcd's raft leader.
    pub async fn raft_leader(&self) -> usize {
        for (i, ep) in self.endpoints().iter().enumerate() {
            let Ok(mut c) = etcd_client::Client::connect([ep], None).await else {
                continue;
            };
            if let Ok(s) = c.status().await {
                if s.leader() == s.header().unwrap().member_id() {
                    return i;
                }
            }
        }
        panic!("no etcd member says it leads");
    }
}

/// `poseidon manager -c FILE` in `dir`, its log on this process's stderr.
pub fn spawn_manager(file: &Path, dir: &Path) -> Proc {
    Proc(
        Command::new(BIN)
            .args(["manager", "-c", file.to_str().unwrap()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// `GET /health` of one manager, if it answers within half a second, through `client` (plain, or
/// TLS trusting the cluster CA).
pub async fn health_with(client: &HttpClient, base: &str) -> Option<Value> {
    tokio::time::timeout(
        Duration::from_millis(500),
        client.get::<Value>(&format!("{base}/health")),
    )
    .await
    .ok()?
    .ok()
}

/// The index of the manager that says it leads, among `alive`.
pub async fn leader_among_with(
    client: &HttpClient,
    bases: &[String],
    alive: &[usize],
) -> Option<usize> {
    for &i in alive {
        if let Some(h) = health_with(client, &bases[i]).await {
            if h["ha"]["role"] == "leader" {
                return Some(i);
            }
        }
    }
    None
}
