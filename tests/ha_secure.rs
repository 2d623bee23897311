//! High availability with security on: three `poseidon manager` processes on a real three-member
//! etcd cluster (Debian's `etcd`, loopback ports), every one with `acl = true` and `tls = "auto"`,
//! and two mock workers in this process that join with a join token and list all three managers.
//!
//! It proves that the managers share one CA and one set of keys through etcd (each serves a
//! certificate of that CA, and a worker that joined through one leader is trusted by the next),
//! that tokens bootstrapped, made and revoked through any manager hold on all of them (a follower
//! sends a token its copy does not know yet to the leader; it reloads the table with its copy), and that `kill -9` of the leader changes none of it:
//! a new leader within 3 s, the same tokens, every task there once and unmoved, both workers still
//! up over mutual TLS, and new tasks placed on them by the new leader. The CLI runs against a
//! follower with `POSEIDON_CA` and `POSEIDON_TOKEN`. Without `/usr/bin/etcd` it is skipped, except
//! with `CI=true`, where it fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, wait_for, Api};
use poseidon::cluster::{self, Roles};
use poseidon::http::HttpClient;
use poseidon::security::ca::{ClusterCa, MANAGER_NAME};
use poseidon::security::shared::SharedKeys;
use poseidon::security::tls::client_config;
use poseidon::store::etcd::SHARED_KEYS_KEY;
use poseidon_runtimes::mock::{Call, Op};
use serde_json::{json, Value};

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/etcd_cluster.rs"]
mod etcd_cluster;

use etcd::etcd_or_skip;
use etcd_cluster::{health_with, leader_among_with, spawn_manager, Etcd, Proc, BIN};

const WAIT: Duration = Duration::from_secs(20);
/// The promise: a new leader within 3 s of the old one's death.
const FAILOVER: Duration = Duration::from_secs(3);

fn write_manager_config(dir: &Path, i: usize, bases: &[String], endpoints: &[String]) -> PathBuf {
    let quoted = |v: &[String]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let file = dir.join(format!("m{i}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[manager]
listen = "{listen}"
advertise = "{me}"
data_dir = "{data}/m{i}"
heartbeat_ttl = "3s"
dns_listen = "off"
store = "etcd"
etcd_endpoints = [{eps}]
managers = [{urls}]

[security]
acl = true
tls = "auto"
"#,
            listen = bases[i].trim_start_matches("https://"),
            me = bases[i],
            data = dir.display(),
            eps = quoted(endpoints),
            urls = quoted(bases),
        ),
    )
    .unwrap();
    file
}

/// A client that trusts the cluster CA and wants the manager's certificate name.
fn tls(ca: &ClusterCa) -> HttpClient {
    HttpClient::with_tls(
        Duration::from_secs(10),
        client_config(ca.cert_pem(), MANAGER_NAME, None).unwrap(),
    )
}

fn by_id(tasks: &Value) -> BTreeMap<String, Value> {
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// `poseidon ARGS` against `base` with the CA and token in the environment; (exit ok, stdout,
/// stderr).
fn cli(base: &str, ca_file: &Path, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("POSEIDON_MANAGER", base)
        .env("POSEIDON_CA", ca_file)
        .env("POSEIDON_TOKEN", token)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_secured_managers_share_one_ca_and_one_token_table_through_a_failover() {
    if !etcd_or_skip("three_secured_managers_share_one_ca_and_one_token_table_through_a_failover") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints();
    let ec = etcd.ready_client().await;

    let bases: Vec<String> = (0..3)
        .map(|_| format!("https://127.0.0.1:{}", free_port()))
        .collect();
    let files: Vec<PathBuf> = (0..3)
        .map(|i| write_manager_config(dir.path(), i, &bases, &endpoints))
        .collect();
    let mut managers: Vec<Option<Proc>> = files
        .iter()
        .map(|f| Some(spawn_manager(f, dir.path())))
        .collect();

    // One set of keys in etcd, made by whichever manager started first.
    let keys = wait_for("the cluster keys in etcd", WAIT, || {
        let mut c = ec.clone();
        async move {
            let r = c.get(SHARED_KEYS_KEY, None).await.ok()?;
            let kv = r.kvs().first()?;
            Some(SharedKeys::decode(kv.value()).unwrap())
        }
    })
    .await;
    let ca = keys.ca().unwrap();
    let client = tls(&ca);

    // Every manager answers over TLS with a certificate of that CA, and all agree on the leader.
    let leader = wait_for("a leader", WAIT, || async {
        leader_among_with(&client, &bases, &[0, 1, 2]).await
    })
    .await;
    for b in &bases {
        wait_for("each manager to know the leader", WAIT, || async {
            health_with(&client, b)
                .await
                .filter(|h| h["ha"]["leader"] == bases[leader].as_str())
        })
        .await;
    }
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // Each manager keeps the shared CA's certificate where a single manager keeps its own, for
    // POSEIDON_CA; the key stays in etcd only.
    for i in 0..3 {
        let data = dir.path().join(format!("m{i}"));
        let held = std::fs::read_to_string(data.join("ca.pem")).unwrap();
        assert_eq!(held, ca.cert_pem(), "manager {i}'s ca.pem");
        assert!(
            !data.join("ca.key").exists(),
            "manager {i} wrote the CA key to disk"
        );
    }
    let ca_file = dir.path().join(format!("m{follower}")).join("ca.pem");

    // Bootstrap through a follower (a write: redirected to the leader), once for the cluster.
    let open = |i: usize| Api::with_http(bases[i].clone(), client.clone());
    let (s, t) = open(follower).post("/acl/bootstrap", &Value::Null).await;
    assert_eq!(s, 201, "bootstrap through a follower: {t}");
    let root = t["token"].as_str().unwrap().to_string();
    let (s, again) = open(other).post("/acl/bootstrap", &Value::Null).await;
    assert!((400..500).contains(&s), "a second bootstrap: {s} {again}");
    for i in 0..3 {
        let (s, body) = open(i).get("/tasks").await;
        assert_eq!(s, 401, "manager {i} without a token: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    // The management token holds on every manager at once: a follower whose copy does not know
    // it yet sends the request to the leader.
    let admin = |i: usize| open(i).with_token(&root);
    for i in 0..3 {
        let (s, body) = admin(i).get("/tasks").await;
        assert_eq!(s, 200, "the new management token on manager {i}: {body}");
    }

    // A join token made through a follower; two workers join with it and list all three managers.
    let (s, jt) = admin(other).post("/acl/join-token", &Value::Null).await;
    assert_eq!(s, 201, "{jt}");
    let join = jt["token"].as_str().unwrap();
    assert!(
        join.ends_with(&ca.fingerprint()),
        "the CA's fingerprint: {join}"
    );
    let murls: Vec<String> = bases.iter().map(|b| format!("\"{b}\"")).collect();
    let mut text = String::new();
    for w in ["w1", "w2"] {
        text.push_str(&format!(
            "[[worker]]\nname = \"{w}\"\nlisten = \"127.0.0.1:0\"\nruntime = \"mock\"\ndata_dir = \"{}/{w}\"\nheartbeat_interval = \"200ms\"\nmanagers = [{}]\n\n",
            dir.path().display(),
            murls.join(", ")
        ));
    }
    text.push_str(&format!(
        "[security]\nacl = true\ntls = \"auto\"\njoin_token = \"{join}\"\n"
    ));
    let wfile = dir.path().join("workers.toml");
    std::fs::write(&wfile, text).unwrap();
    let wcfg = poseidon::config::load(&wfile).unwrap();
    let w1 = cluster::start(&wcfg, Roles::Worker("w1".into()))
        .await
        .unwrap();
    let w2 = cluster::start(&wcfg, Roles::Worker("w2".into()))
        .await
        .unwrap();
    let mocks = [
        w1.workers[0].mock.clone().unwrap(),
        w2.workers[0].mock.clone().unwrap(),
    ];
    let nodes = wait_for("both workers up", WAIT, || async {
        let (s, n) = admin(leader).get("/nodes").await;
        (s == 200
            && n.as_array().unwrap().len() == 2
            && n.as_array().unwrap().iter().all(|n| n["state"] == "up"))
        .then_some(n)
    })
    .await;
    for n in nodes.as_array().unwrap() {
        let addr = n["address"].as_str().unwrap();
        assert!(addr.starts_with("https://"), "{n}");
    }

    // A read token made through a follower: reads on every manager, no writes anywhere.
    let (s, rt) = admin(follower)
        .post("/acl/tokens", &json!({"policy": "read"}))
        .await;
    assert_eq!(s, 201, "{rt}");
    let read_token = rt["token"].as_str().unwrap().to_string();
    let read_accessor = rt["accessor"].as_str().unwrap().to_string();
    let reader = |i: usize| open(i).with_token(&read_token);
    for i in 0..3 {
        let (s, body) = reader(i).get("/tasks").await;
        assert_eq!(s, 200, "the new read token on manager {i}: {body}");
        let (s, body) = reader(i).post("/tasks", &json!({"image": "busybox"})).await;
        assert_eq!(
            s, 403,
            "a read token submitting through manager {i}: {body}"
        );
    }

    // Tasks submitted through all three managers, one carrying a secret.
    let mut ids = Vec::new();
    for k in 0..9 {
        let mut spec = json!({"name": format!("t{k}"), "image": "busybox"});
        if k == 0 {
            spec["secrets"] = json!({"PASSWORD": "hunter2"});
        }
        ids.push(admin(k % 3).submit(&spec).await);
    }
    let before = wait_for("every task running", WAIT, || async {
        let all = by_id(&admin(leader).ok("/tasks").await);
        (all.len() == ids.len() && all.values().all(|t| t["state"] == "running")).then_some(all)
    })
    .await;
    // The worker opened the secret the leader sealed, with the key it got at join.
    let secret_env: Vec<_> = mocks
        .iter()
        .flat_map(|m| m.calls_of(Op::Create))
        .filter_map(|c| match c {
            Call::Create(spec) if spec.labels["io.poseidon.task"] == ids[0] => {
                Some(spec.env.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(secret_env.len(), 1, "{secret_env:?}");
    assert_eq!(
        secret_env[0].get("PASSWORD").map(String::as_str),
        Some("hunter2")
    );

    // The leader killed: a new one within 3 s, with the same CA, tokens and tasks.
    let killed = Instant::now();
    managers[leader].as_mut().unwrap().kill9();
    managers[leader] = None;
    let survivors = [follower, other];
    let new_leader = wait_for("a new leader", WAIT, || async {
        leader_among_with(&client, &bases, &survivors).await
    })
    .await;
    let failover = killed.elapsed();
    eprintln!("new leader after {failover:?}");
    assert!(
        failover <= FAILOVER,
        "a new leader took {failover:?} (promise: {FAILOVER:?})"
    );
    let after = by_id(&admin(new_leader).ok("/tasks").await);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (id, t0) in &before {
        let t = &after[id];
        assert_eq!(
            (
                &t["state"],
                &t["node"],
                &t["generation"],
                &t["restart_count"]
            ),
            (
                &t0["state"],
                &t0["node"],
                &t0["generation"],
                &t0["restart_count"]
            ),
            "task {id} changed across the failover"
        );
    }
    assert_eq!(reader(new_leader).get("/tasks").await.0, 200);
    // The other survivor sees the new leader key within its next look (every 100 ms); until then
    // it would send writes to the dead one.
    for &i in &survivors {
        wait_for("each survivor to know the new leader", WAIT, || async {
            health_with(&client, &bases[i])
                .await
                .filter(|h| h["ha"]["leader"] == bases[new_leader].as_str())
        })
        .await;
    }
    // Both workers heartbeat to the new leader over mutual TLS and take its assignments (signed
    // by the same CA, with the same manager secret): they stay up past several TTLs, and new
    // tasks run on them.
    let mut fresh = Vec::new();
    for k in 0..4 {
        fresh.push(
            admin(survivors[k % 2])
                .submit(&json!({"name": format!("after-{k}"), "image": "busybox"}))
                .await,
        );
    }
    for id in &fresh {
        admin(new_leader).wait_state(id, "running", WAIT).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (s, nodes) = admin(new_leader).get("/nodes").await;
    assert_eq!(s, 200);
    for n in nodes.as_array().unwrap() {
        assert_eq!(n["state"], "up", "a worker after the failover: {n}");
    }
    let per_task = mocks.iter().flat_map(|m| m.containers()).fold(
        BTreeMap::<String, usize>::new(),
        |mut per, c| {
            *per.entry(c.labels["io.poseidon.task"].clone()).or_default() += 1;
            per
        },
    );
    assert_eq!(per_task.len(), ids.len() + fresh.len(), "{per_task:?}");
    assert!(
        per_task.values().all(|n| *n == 1),
        "started twice: {per_task:?}"
    );

    // The CLI against a follower: it trusts the CA from POSEIDON_CA, sends POSEIDON_TOKEN and
    // follows the redirect of a write to the leader.
    let cli_follower = survivors
        .iter()
        .copied()
        .find(|&i| i != new_leader)
        .unwrap();
    let (ok, out, err) = cli(&bases[cli_follower], &ca_file, &root, &["node"]);
    assert!(ok, "poseidon node: {err}");
    assert!(out.contains("w1") && out.contains("w2"), "{out}");
    assert!(out.contains("leader"), "the managers' roles: {out}");
    let (ok, out, err) = cli(
        &bases[cli_follower],
        &ca_file,
        &root,
        &["run", "--image", "busybox", "--name", "from-cli", "-d"],
    );
    assert!(ok, "poseidon run through a follower: {out} {err}");

    // Revoked through a follower: refused by every manager still up once its copy is reloaded.
    let (s, body) = admin(cli_follower)
        .delete(&format!("/acl/tokens/{read_accessor}"))
        .await;
    assert_eq!(s, 200, "{body}");
    for &i in &survivors {
        wait_for("the revoked token refused everywhere", WAIT, || async {
            (reader(i).get("/nodes").await.0 == 401).then_some(())
        })
        .await;
    }

    // The killed manager comes back as a follower with the same CA (the client checks it).
    managers[leader] = Some(spawn_manager(&files[leader], dir.path()));
    wait_for("the old leader back as a follower", WAIT, || async {
        health_with(&client, &bases[leader]).await.filter(|h| {
            h["ha"]["role"] == "follower" && h["ha"]["leader"] == bases[new_leader].as_str()
        })
    })
    .await;
    wait_for(
        "the management token on the returned manager",
        WAIT,
        || async { (admin(leader).get("/tasks").await.0 == 200).then_some(()) },
    )
    .await;
    assert_eq!(reader(leader).get("/nodes").await.0, 401);
    w1.stop().await;
    w2.stop().await;
}

#[test]
fn a_second_manager_reads_the_keys_the_first_put_in_etcd_and_never_replaces_them() {
    if !etcd_or_skip(
        "a_second_manager_reads_the_keys_the_first_put_in_etcd_and_never_replaces_them",
    ) {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_n(dir.path(), 1);
    rt.block_on(async {
        let mut c = etcd.ready_client().await;
        let first = SharedKeys::generate().unwrap().encode().unwrap();
        let second = SharedKeys::generate().unwrap().encode().unwrap();
        assert_ne!(first, second);
        let a = poseidon::store::etcd::create_once(&mut c, SHARED_KEYS_KEY, first.clone())
            .await
            .unwrap();
        let b = poseidon::store::etcd::create_once(&mut c, SHARED_KEYS_KEY, second)
            .await
            .unwrap();
        assert_eq!(a, first);
        assert_eq!(b, first, "the second caller gets the first caller's keys");
        let held = c.get(SHARED_KEYS_KEY, None).await.unwrap();
        assert_eq!(held.kvs()[0].value(), first.as_slice());
    });
}
