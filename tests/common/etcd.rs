//! One member of an etcd cluster, as the HA test (`tests/ha.rs`), the HA bench (`benches/ha.rs`)
//! and the HA container test (`tests/multihost_ha.rs`) start it: the same flags in all three, so
//! the bench measures the cluster the tests prove.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// Debian's etcd-server.
pub const ETCD: &str = "/usr/bin/etcd";

/// The flags of member `name`, its data under `data_dir`, listening for clients on `clients.0` and
/// advertising `clients.1`, for peers likewise on `peers`, in the cluster `initial`
/// (`NAME=PEER_URL,...`).
pub fn flags(
    name: &str,
    data_dir: &str,
    clients: (&str, &str),
    peers: (&str, &str),
    initial: &str,
) -> Vec<String> {
    [
        ("--name", name),
        ("--data-dir", data_dir),
        ("--listen-client-urls", clients.0),
        ("--advertise-client-urls", clients.1),
        ("--listen-peer-urls", peers.0),
        ("--initial-advertise-peer-urls", peers.1),
        ("--initial-cluster", initial),
        ("--initial-cluster-state", "new"),
        ("--initial-cluster-token", "poseidon-ha"),
        // A node's tasks move in one transaction (see docs/reliability.md).
        ("--max-txn-ops", "10000"),
    ]
    .iter()
    .flat_map(|(k, v)| [k.to_string(), v.to_string()])
    .collect()
}

/// An etcd election (the loss of etcd's raft leader) well inside the manager's 2 s lease, as the
/// README advises on a LAN: etcd's default (1 s, randomised up to 2 s) can outlast it. Given to
/// the members on loopback ([`member`]: `tests/ha.rs`, which kills etcd's raft leader,
/// `tests/ha_secure.rs`, `benches/ha.rs`); the container test keeps etcd's defaults, which bear
/// a loaded machine's pauses better, as it kills no raft leader.
pub const FAST_ELECTION: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

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
    let data = dir.join(&names[i]);
    let mut cmd = Command::new(ETCD);
    cmd.args(flags(
        &names[i],
        &data.to_string_lossy(),
        (&client, &client),
        (&peer, &peer),
        &cluster.join(","),
    ))
    .args(FAST_ELECTION)
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    cmd
}

/// Whether a test needing etcd can run: [`ETCD`] installed, or (outside CI) a notice and `false`.
/// With `CI=true` a missing etcd is a failure, not a skip.
pub fn etcd_or_skip(test_name: &str) -> bool {
    if Path::new(ETCD).exists() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI: {ETCD} is missing (Debian package etcd-server); {test_name} needs it");
    }
    // To stderr directly: the harness hides `eprintln!` of a passing test, and a skip must be seen.
    let notice =
        format!("\n*** SKIPPED {test_name}: {ETCD} is missing (apt-get install etcd-server) ***\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    false
}
