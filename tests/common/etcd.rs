//! One member of a loopback etcd cluster, as the HA test (`tests/ha.rs`) and the HA bench
//! (`benches/ha.rs`) start it: the same flags in both, so the bench measures the cluster the test
//! proves.

use std::path::Path;
use std::process::{Command, Stdio};

/// Debian's etcd-server.
pub const ETCD: &str = "/usr/bin/etcd";

/// The command for member `i` of a cluster named by `names`, with client and peer ports on
/// 127.0.0.1 and its data under `dir/NAME`; stdin and stdout are null, stderr is the caller's.
pub fn member(dir: &Path, names: &[String], clients: &[u16], peers: &[u16], i: usize) -> Command {
    let cluster: Vec<String> = names
        .iter()
        .zip(peers)
        .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
        .collect();
    let client = format!("http://127.0.0.1:{}", clients[i]);
    let peer = format!("http://127.0.0.1:{}", peers[i]);
    let mut cmd = Command::new(ETCD);
    cmd.arg("--name")
        .arg(&names[i])
        .arg("--data-dir")
        .arg(dir.join(&names[i]))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &cluster.join(",")])
        .args(["--initial-cluster-state", "new"])
        .args(["--initial-cluster-token", "poseidon-ha"])
        // A node's tasks move in one transaction (see docs/reliability.md).
        .args(["--max-txn-ops", "10000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}
