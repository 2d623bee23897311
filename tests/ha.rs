//! High availability on a real etcd cluster: three `etcd` members from Debian's `etcd-server` on
//! loopback ports, three `poseidon manager` processes with `store = "etcd"`, two mock workers in this
//! process. One test walks through the faults in turn (sharing the cluster keeps it short): the
//! leader killed with SIGKILL under 16 submitters, the leader paused past its lease, one etcd member
//! killed (one that is not etcd's raft leader, then the raft leader), etcd's quorum lost and
//! regained. Without `/usr/bin/etcd` it is skipped, except with
//! `CI=true`, where it fails.
//!
//! The etcd cluster and the manager processes are `common/etcd_cluster.rs`, shared with
//! `tests/ha_secure.rs` (the same with ACL and mutual TLS).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, wait_for, Api};
use poseidon::cluster::{self, Roles};
use poseidon::http::HttpClient;
use poseidon_runtimes::mock::MockRuntime;
use serde_json::{json, Value};

#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/etcd_cluster.rs"]
mod etcd_cluster;

use etcd_cluster::{health_with, leader_among_with, signal, spawn_manager, Etcd, Proc, BIN};

use etcd::etcd_or_skip;
const WAIT: Duration = Duration::from_secs(20);
/// The promise: a new leader within 3 s of the old one's death.
const FAILOVER: Duration = Duration::from_secs(3);

/// etcd's revision and every Poseidon key with its mod revision.
async fn etcd_state(c: &mut etcd_client::Client) -> (i64, BTreeMap<String, i64>) {
    // The client balances over the members; one that is down fails a call, the next goes elsewhere.
    let mut tries = 0;
    let r = loop {
        match c
            .get(
                "/poseidon/",
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_keys_only(),
                ),
            )
            .await
        {
            Ok(r) => break r,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("etcd read: {e}; again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("etcd read: {e}"),
        }
    };
    let rev = r.header().unwrap().revision();
    let keys = r
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.mod_revision(),
            )
        })
        .collect();
    (rev, keys)
}

fn write_manager_config(dir: &Path, i: usize, ports: &[u16], endpoints: &[String]) -> PathBuf {
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}\""))
        .collect();
    let eps: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    let file = dir.join(format!("m{i}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[manager]
listen = "127.0.0.1:{port}"
data_dir = "{data}/m{i}"
heartbeat_ttl = "3s"
dns_listen = "off"
store = "etcd"
etcd_endpoints = [{eps}]
managers = [{urls}]
"#,
            port = ports[i],
            data = dir.display(),
            eps = eps.join(", "),
            urls = urls.join(", "),
        ),
    )
    .unwrap();
    file
}

/// Waits until etcd member `i`, restarted, answers a read (a linearizable one needs a raft leader
/// that member knows).
async fn rejoined(etcd: &Etcd, i: usize) {
    let endpoint = etcd.endpoints()[i].clone();
    wait_for("the restarted member to rejoin", WAIT, || async {
        let mut c = etcd_client::Client::connect([&endpoint], None).await.ok()?;
        c.get("/poseidon/leader", None).await.ok().map(|_| ())
    })
    .await;
}

/// `GET /health` of one manager over plain HTTP.
async fn health(base: &str) -> Option<Value> {
    health_with(&HttpClient::new(Duration::from_millis(500)), base).await
}

/// The index of the manager that says it leads, among `alive`, over plain HTTP.
async fn leader_among(bases: &[String], alive: &[usize]) -> Option<usize> {
    leader_among_with(&HttpClient::new(Duration::from_millis(500)), bases, alive).await
}

fn by_id(tasks: &Value) -> BTreeMap<String, Value> {
    tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// Containers per task across both mock engines (containers never removed, as none is stopped).
fn containers_per_task(mocks: &[MockRuntime]) -> BTreeMap<String, usize> {
    let mut per: BTreeMap<String, usize> = BTreeMap::new();
    for m in mocks {
        for c in m.containers() {
            *per.entry(c.labels["io.poseidon.task"].clone()).or_default() += 1;
        }
    }
    per
}

async fn all_running(api: &Api, mocks: &[MockRuntime]) -> BTreeMap<String, Value> {
    wait_for("every task to run, once", WAIT, || async {
        let (s, all) = api.get("/tasks").await;
        if s != 200 {
            return None;
        }
        let tasks = by_id(&all);
        let per = containers_per_task(mocks);
        (tasks.values().all(|t| t["state"] == "running") && per.len() == tasks.len())
            .then_some(tasks)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_managers_on_etcd_survive_a_killed_leader_a_paused_one_and_etcd_faults() {
    if !etcd_or_skip("three_managers_on_etcd_survive_a_killed_leader_a_paused_one_and_etcd_faults")
    {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints();
    let mut ec = etcd.ready_client().await;

    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let bases: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let files: Vec<PathBuf> = (0..3)
        .map(|i| write_manager_config(dir.path(), i, &ports, &endpoints))
        .collect();
    let mut managers: Vec<Option<Proc>> = files
        .iter()
        .map(|f| Some(spawn_manager(f, dir.path())))
        .collect();
    let leader = wait_for("a leader", WAIT, || async {
        leader_among(&bases, &[0, 1, 2]).await
    })
    .await;
    // Every manager knows who leads and lists all three.
    for b in &bases {
        let h = wait_for("each manager to know the leader", WAIT, || async {
            health(b)
                .await
                .filter(|h| h["ha"]["leader"] == bases[leader].as_str())
        })
        .await;
        assert_eq!(h["ha"]["managers"], json!(bases), "{h}");
    }

    // Two mock workers in this process, listing all three managers.
    let wfile = dir.path().join("workers.toml");
    let murls: Vec<String> = bases.iter().map(|b| format!("\"{b}\"")).collect();
    let mut text = String::new();
    for w in ["w1", "w2"] {
        text.push_str(&format!(
            "[[worker]]\nname = \"{w}\"\nlisten = \"127.0.0.1:0\"\nruntime = \"mock\"\ndata_dir = \"{}/{w}\"\nheartbeat_interval = \"200ms\"\nmanagers = [{}]\ncapacity = {{ cpus = 10000.0, memory = \"10000g\" }}\n\n",
            dir.path().display(),
            murls.join(", ")
        ));
    }
    std::fs::write(&wfile, text).unwrap();
    let wcfg = poseidon::config::load(&wfile).unwrap();
    let w1 = cluster::start(&wcfg, Roles::Worker("w1".into()))
        .await
        .unwrap();
    let w2 = cluster::start(&wcfg, Roles::Worker("w2".into()))
        .await
        .unwrap();
    let mocks = vec![
        w1.workers[0].mock.clone().unwrap(),
        w2.workers[0].mock.clone().unwrap(),
    ];
    let lapi = Api::new(bases[leader].clone());
    wait_for("both workers ready", WAIT, || async {
        let nodes = lapi.ok("/nodes").await;
        (nodes
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "up")
            .count()
            == 2)
            .then_some(())
    })
    .await;

    // 1. kill -9 of the leader under 16 submitters, each sending to any manager (followers
    // redirect) and moving to the next one when a manager does not answer.
    let acked = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..16usize {
        let (acked, stop, bases) = (acked.clone(), stop.clone(), bases.clone());
        clients.push(tokio::spawn(async move {
            let client = poseidon::http::HttpClient::new(Duration::from_secs(5));
            let mut target = c % 3;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let name = format!("c{c}-{i}");
                let body = serde_json::to_vec(&json!({"name": name, "image": "busybox"})).unwrap();
                let url = format!("{}/tasks", bases[target]);
                match client.send(hyper::Method::POST, &url, Some(body)).await {
                    Ok(r) if r.status == 201 => {
                        let v: Value = serde_json::from_slice(&r.body).unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .push((v["id"].as_str().unwrap().to_string(), name));
                    }
                    // 503: no leader yet (an election), or a write cut by the lease's end.
                    Ok(r) if r.status == 503 => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(r) => panic!(
                        "unexpected answer {} from {url}: {}",
                        r.status,
                        String::from_utf8_lossy(&r.body)
                    ),
                    Err(_) => {
                        target = (target + 1) % 3;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }
    wait_for("200 acknowledged submissions", WAIT, || async {
        (acked.lock().unwrap().len() >= 200).then_some(())
    })
    .await;
    // What runs before the kill must run on, where it is, as it is.
    let before = wait_for("some tasks running", WAIT, || async {
        let all = lapi.ok("/tasks").await;
        let running: BTreeMap<String, Value> = by_id(&all)
            .into_iter()
            .filter(|(_, t)| t["state"] == "running")
            .collect();
        (running.len() >= 100).then_some(running)
    })
    .await;
    let killed_at = Instant::now();
    managers[leader].as_mut().unwrap().kill9();
    managers[leader] = None;
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = wait_for("a new leader", WAIT, || async {
        leader_among(&bases, &alive).await
    })
    .await;
    let failover = killed_at.elapsed();
    eprintln!("failover after kill -9: {failover:?}");
    assert!(
        failover < FAILOVER,
        "a new leader took {failover:?} (the promise is {FAILOVER:?})"
    );
    let acked_before = acked.lock().unwrap().len();
    wait_for(
        "submissions acknowledged by the new leader",
        WAIT,
        || async { (acked.lock().unwrap().len() >= acked_before + 100).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked: Vec<(String, String)> = acked.lock().unwrap().clone();
    let api = Api::new(bases[new_leader].clone());
    let tasks = all_running(&api, &mocks).await;
    // Every acknowledged task is there, exactly once (by id and by its unique name).
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks.values() {
        *names
            .entry(t["spec"]["name"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for (id, name) in &acked {
        assert!(
            tasks.contains_key(id),
            "acknowledged task {id} ({name}) is lost"
        );
        assert_eq!(names.get(name), Some(&1), "task {name} is there once");
    }
    // Nothing that ran was moved, restarted or duplicated.
    for (id, t0) in &before {
        let t = &tasks[id];
        assert_eq!(
            (&t["node"], &t["generation"], &t["restart_count"]),
            (&t0["node"], &t0["generation"], &t0["restart_count"]),
            "task {id} changed across the failover"
        );
    }
    let per = containers_per_task(&mocks);
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "started twice: {twice:?}");
    assert_eq!(per.len(), tasks.len(), "one container per task");
    eprintln!(
        "{} acknowledged, {} tasks, {} running before the kill; all unmoved",
        acked.len(),
        tasks.len(),
        before.len()
    );
    // The killed manager comes back as a follower.
    managers[leader] = Some(spawn_manager(&files[leader], dir.path()));
    wait_for("the old leader back as a follower", WAIT, || async {
        health(&bases[leader]).await.filter(|h| {
            h["ha"]["role"] == "follower" && h["ha"]["leader"] == bases[new_leader].as_str()
        })
    })
    .await;
    // A follower answers reads from its copy (at most about a second behind).
    wait_for("the follower's copy to catch up", WAIT, || async {
        let (s, all) = Api::new(bases[leader].clone()).get("/tasks").await;
        (s == 200 && all.as_array().unwrap().len() == tasks.len()).then_some(())
    })
    .await;

    // 2. The leader paused past its lease writes nothing once it resumes. Its liveness loop, seeing
    // every node silent for longer than the TTL when it wakes, would count both workers down and
    // move their tasks if its writes were not fenced.
    let paused = new_leader;
    let pid = managers[paused].as_ref().unwrap().pid();
    signal(&pid, "-STOP");
    let others: Vec<usize> = (0..3).filter(|&i| i != paused).collect();
    let third = wait_for("a leader while the old one is paused", WAIT, || async {
        leader_among(&bases, &others).await
    })
    .await;
    let api = Api::new(bases[third].clone());
    let id = api
        .submit(&json!({"name": "after-pause", "image": "busybox"}))
        .await;
    api.wait_state(&id, "running", WAIT).await;
    // Quiet: the state settles, then etcd's revision must not move while the old leader wakes.
    let mut last = etcd_state(&mut ec).await;
    let settled = Instant::now();
    while settled.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = etcd_state(&mut ec).await;
        if now == last {
            break;
        }
        last = now;
    }
    // Paused for longer than the heartbeat TTL (3 s), counted from the pause.
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&pid, "-CONT");
    wait_for(
        "the resumed manager to follow the new leader",
        WAIT,
        || async {
            health(&bases[paused]).await.filter(|h| {
                h["ha"]["role"] == "follower" && h["ha"]["leader"] == bases[third].as_str()
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = etcd_state(&mut ec).await;
    assert_eq!(
        after, last,
        "etcd changed after the paused leader resumed (revision {} -> {})",
        last.0, after.0
    );
    let tasks_now = by_id(&api.ok("/tasks").await);
    for (id, t0) in &tasks {
        let t = &tasks_now[id];
        assert_eq!(
            (&t["state"], &t["node"], &t["generation"]),
            (&t0["state"], &t0["node"], &t0["generation"]),
            "task {id} changed after the pause"
        );
    }

    // 3. One etcd member killed (one that is not etcd's raft leader): nothing changes.
    let changes_before = health(&bases[third]).await.unwrap()["ha"]["leader_changes"].clone();
    let raft = etcd.raft_leader().await;
    let victim = (raft + 1) % 3;
    etcd.kill(victim);
    for i in 0..20 {
        let id = api
            .submit(&json!({"name": format!("one-member-down-{i}"), "image": "busybox"}))
            .await;
        api.wait_state(&id, "running", WAIT).await;
    }
    let h = health(&bases[third]).await.unwrap();
    assert_eq!(h["ha"]["role"], "leader", "{h}");
    assert_eq!(h["ha"]["leader_changes"], changes_before, "{h}");
    etcd.start_member(victim);
    rejoined(&etcd, victim).await;

    // 3b. etcd's own raft leader killed: etcd elects another member (its election timeout is
    // shorter than the manager's lease, see common/etcd.rs), the lease survives the election (a
    // new raft leader renews every lease), and the same manager leads throughout; writes wait for
    // the election and are taken. On a loaded machine an election can outlast the lease (etcd
    // draws its timeout up to twice the setting, and the manager counts its lease from the last
    // answered keep-alive, up to one renewal before the kill): then the leader must step down, and
    // a leader (the same or another) takes the writes sent again, once each. A step-down is
    // accepted only then: when the first write was taken later than the lease less one renewal.
    let tasks_before = api.ok("/tasks").await.as_array().unwrap().len();
    let raft = etcd.raft_leader().await;
    let raft_killed = Instant::now();
    etcd.kill(raft);
    let mut first_taken = None;
    for i in 0..10 {
        // The client's own id: a write sent again after an answer lost in a step-down is taken
        // at most once (409 if the first copy was).
        let id = uuid::Uuid::new_v4().to_string();
        let spec = json!({"id": id, "name": format!("raft-leader-down-{i}"), "image": "busybox"});
        wait_for("a write taken after etcd's election", WAIT, || async {
            let (s, v) = api.post("/tasks", &spec).await;
            match s {
                201 | 409 => Some(()),
                503 => None,
                other => panic!("POST /tasks during etcd's election: {other} {v}"),
            }
        })
        .await;
        first_taken.get_or_insert_with(|| raft_killed.elapsed());
        api.wait_state(&id, "running", WAIT).await;
    }
    let first_taken = first_taken.unwrap();
    eprintln!(
        "etcd's raft leader killed: the first write taken after {first_taken:?}, 10 in {:?}",
        raft_killed.elapsed()
    );
    let h = health(&bases[third]).await.unwrap();
    if h["ha"]["leader_changes"] == changes_before {
        assert_eq!(h["ha"]["role"], "leader", "{h}");
    } else {
        let lease = Duration::from_secs(poseidon::manager::leader::LEASE_TTL_S as u64);
        assert!(
            first_taken >= lease - poseidon::manager::leader::KEEPALIVE_EVERY,
            "the manager stepped down although etcd took writes again {first_taken:?} after \
             its leader was killed, inside the lease: {h}"
        );
        eprintln!("the election outlasted the manager's lease: it stepped down, and writes were taken again after");
    }
    let tasks_after = api.ok("/tasks").await.as_array().unwrap().len();
    assert_eq!(tasks_after, tasks_before + 10, "each write held once");
    etcd.start_member(raft);
    rejoined(&etcd, raft).await;

    // 4. Quorum lost (two of three members killed): writes refused with 503, reads answered.
    let known = api.ok("/tasks").await.as_array().unwrap().len();
    // The followers' copies catch up (they are reloaded when etcd's revision moves).
    for b in &bases {
        wait_for("every follower's copy to catch up", WAIT, || async {
            let (s, all) = Api::new(b.clone()).get("/tasks").await;
            (s == 200 && all.as_array().unwrap().len() == known).then_some(())
        })
        .await;
    }
    let keep = (victim + 1) % 3;
    let lost: Vec<usize> = (0..3).filter(|&i| i != keep).collect();
    for &i in &lost {
        etcd.kill(i);
    }
    let body = serde_json::to_vec(&json!({"name": "no-quorum", "image": "busybox"})).unwrap();
    for b in &bases {
        wait_for("writes refused with 503", WAIT, || async {
            let r = poseidon::http::HttpClient::new(Duration::from_secs(10))
                .send(
                    hyper::Method::POST,
                    &format!("{b}/tasks"),
                    Some(body.clone()),
                )
                .await
                .ok()?;
            assert_ne!(r.status, 201, "a write was acknowledged without quorum");
            (r.status == 503).then_some(())
        })
        .await;
        let (s, all) = Api::new(b.clone()).get("/tasks").await;
        assert_eq!(s, 200, "reads are answered without quorum: {all}");
        assert_eq!(all.as_array().unwrap().len(), known, "{b}");
    }
    // Quorum back: a leader again, and writes are taken.
    for &i in &lost {
        etcd.start_member(i);
    }
    let back = wait_for("a leader after quorum returns", WAIT, || async {
        leader_among(&bases, &[0, 1, 2]).await
    })
    .await;
    let api = Api::new(bases[back].clone());
    let id = wait_for("a write taken after quorum returns", WAIT, || async {
        let (s, v) = api
            .post(
                "/tasks",
                &json!({"name": "quorum-back", "image": "busybox"}),
            )
            .await;
        (s == 201).then(|| v["id"].as_str().unwrap().to_string())
    })
    .await;
    api.wait_state(&id, "running", WAIT).await;
    let per = containers_per_task(&mocks);
    assert!(per.values().all(|n| *n == 1), "started twice: {per:?}");
    eprintln!("HA test done in {:?}", started.elapsed());
    w1.stop().await;
    w2.stop().await;
    drop(managers);
}

#[test]
fn a_manager_whose_etcd_is_unreachable_exits_at_once_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let file = dir.path().join("m.toml");
    std::fs::write(
        &file,
        format!(
            "[manager]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}/m\"\ndns_listen = \"off\"\nstore = \"etcd\"\netcd_endpoints = [\"http://127.0.0.1:{dead}\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let start = Instant::now();
    let out = Command::new("timeout")
        .args(["20", BIN, "manager", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_ne!(out.status.code(), Some(124), "it hung: {err}");
    assert!(took < Duration::from_secs(8), "took {took:?}: {err}");
    assert!(
        err.contains("etcd is unreachable") && err.contains(&format!("127.0.0.1:{dead}")),
        "{err}"
    );
}

#[test]
fn several_managers_on_rocksdb_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.toml");
    std::fs::write(
        &file,
        "[manager]\nmanagers = [\"http://10.0.0.1:5555\", \"http://10.0.0.2:5555\"]\n",
    )
    .unwrap();
    let err = poseidon::config::load(&file).unwrap_err().to_string();
    assert!(
        err.contains("manager.managers") && err.contains("store = \"etcd\""),
        "{err}"
    );
    std::fs::write(&file, "[manager]\nstore = \"etcd\"\n").unwrap();
    let err = poseidon::config::load(&file).unwrap_err().to_string();
    assert!(err.contains("manager.etcd_endpoints"), "{err}");
}

#[test]
fn the_example_files_describe_three_managers_on_etcd_and_a_worker_that_lists_them() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/ha");
    let managers: Vec<String> = (1..=3)
        .map(|i| format!("https://10.0.0.{i}:5555"))
        .collect();
    for i in 1..=3 {
        let cfg = poseidon::config::load(Path::new(&format!("{dir}/manager-{i}.toml"))).unwrap();
        // Listening beyond loopback: secured, or the manager would refuse to start.
        assert!(cfg.security.is_secure(), "manager-{i}.toml");
        let m = cfg.manager.unwrap();
        assert_eq!(m.store, poseidon::config::StoreKind::Etcd);
        assert_eq!(m.etcd_endpoints.len(), 3);
        assert_eq!(m.managers, managers);
        assert_eq!(m.advertise, managers[i - 1]);
    }
    // The README shows manager-1's table: the same settings.
    let readme = include_str!("../README.md");
    let section = &readme[readme.find("## High availability").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let shown = poseidon::config::parse(block, "README.md")
        .unwrap()
        .manager
        .unwrap();
    let file = poseidon::config::load(Path::new(&format!("{dir}/manager-1.toml")))
        .unwrap()
        .manager
        .unwrap();
    assert_eq!(
        (
            shown.store,
            &shown.etcd_endpoints,
            &shown.managers,
            &shown.advertise,
            shown.listen
        ),
        (
            file.store,
            &file.etcd_endpoints,
            &file.managers,
            &file.advertise,
            file.listen
        )
    );
    let cfg = poseidon::config::load(Path::new(&format!("{dir}/worker.toml"))).unwrap();
    assert!(cfg.security.is_secure(), "worker.toml");
    assert_eq!(cfg.workers[0].managers, managers);
    assert_eq!(
        cfg.workers[0].manager.as_deref(),
        Some(managers[0].as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_groups_writes_and_refuses_a_stale_fence() {
    use poseidon::store::etcd::{EtcdStore, Fence, LEADER_KEY};
    use poseidon::store::{Op, Space, Store};
    if !etcd_or_skip("the_etcd_store_groups_writes_and_refuses_a_stale_fence") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start_n(dir.path(), 1);
    let mut ec = etcd.ready_client().await;
    let eps = etcd.endpoints();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || EtcdStore::open(&eps))
            .await
            .unwrap()
            .unwrap(),
    );
    let mut writes = Vec::new();
    for i in 0..300u32 {
        let s = store.clone();
        writes.push(tokio::spawn(async move {
            s.write(vec![Op::Put(
                Space::Tasks,
                format!("t{i:03}").into_bytes(),
                b"x".to_vec(),
            )])
            .await
        }));
    }
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let st = store.stats();
    assert_eq!(st.writes, 300);
    assert!(
        st.syncs < 300,
        "concurrent writes share transactions: {st:?}"
    );
    let s2 = store.clone();
    let all = tokio::task::spawn_blocking(move || s2.scan(Space::Tasks))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all.len(), 300);
    assert_eq!(all[0], (b"t000".to_vec(), b"x".to_vec()));
    // A space larger than one gRPC answer may hold (4 MiB): 6,000 records of 1 KiB come back whole,
    // in key order (a new leader loads the state with this read).
    let mut writes = Vec::new();
    for i in 0..6000u32 {
        let s = store.clone();
        writes.push(tokio::spawn(async move {
            s.write(vec![Op::Put(
                Space::Meta,
                format!("big{i:05}").into_bytes(),
                vec![b'v'; 1024],
            )])
            .await
        }));
    }
    for w in writes {
        w.await.unwrap().unwrap();
    }
    let s2 = store.clone();
    let big = tokio::task::spawn_blocking(move || s2.scan(Space::Meta))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(big.len(), 6000);
    assert!(big
        .iter()
        .enumerate()
        .all(|(i, (k, v))| *k == format!("big{i:05}").into_bytes() && v.len() == 1024));
    // A fence naming a leader key that does not exist (or another term's) writes nothing.
    let before = etcd_state(&mut ec).await;
    let err = store
        .submit_fenced(
            vec![Op::Put(Space::Tasks, b"late".to_vec(), b"x".to_vec())],
            Some(Fence { revision: 1 }),
        )
        .wait()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no longer the leader"), "{err}");
    ec.put(LEADER_KEY, "http://me", None).await.unwrap();
    let rev = ec.get(LEADER_KEY, None).await.unwrap().kvs()[0].create_revision();
    store
        .submit_fenced(
            vec![Op::Put(Space::Tasks, b"fenced".to_vec(), b"y".to_vec())],
            Some(Fence { revision: rev }),
        )
        .wait()
        .await
        .unwrap();
    let after = etcd_state(&mut ec).await;
    assert!(after.1.contains_key("/poseidon/tasks/fenced"));
    assert!(!after.1.contains_key("/poseidon/tasks/late"));
    // The leader key, the task, and the term's own key that every fenced write compares and moves
    // (so a copy of a write sent again cannot commit twice or late).
    assert!(after.1.contains_key(&format!("/poseidon/term/{rev}")));
    assert_eq!(
        after.1[&format!("/poseidon/term/{rev}")],
        after.1["/poseidon/tasks/fenced"],
        "the term key moves in the same transaction"
    );
    assert_eq!(
        after.1.len(),
        before.1.len() + 3,
        "{:?}",
        after.1.keys().rev().take(3).collect::<Vec<_>>()
    );
}
