//! The multi-host test of issue 7: a manager and three workers, each a host of its own (a container
//! on a private Docker network, running the very `poseidon` binary these tests were built with),
//! driven from the host only through the manager's REST API and the CLI, as a user would.
//!
//! The cluster is secured as a multi-host user must run it: `acl = true` and `tls = "auto"`. The
//! test bootstraps the first management token, takes a join token, and the workers join with it;
//! every call after that (heartbeats, assignments, reports, the test's and the CLI's requests) is
//! over TLS with a token, mutual TLS between manager and workers.
//!
//! The workers drive the host's Docker Engine through its bind-mounted socket, so they share one
//! engine: each labels its containers with its node name, declares its own capacity, and puts its
//! task containers on a network of its own. The scenarios run in sequence on one cluster, each from
//! the state the one before left (two clusters at once would only double the load on a small CI
//! machine):
//!
//! 1. Each scheduler places six quarter-core tasks on workers of 1, 2 and 4 cores (the manager
//!    restarted with another config in between): E-PVM uses all three and gives the biggest the
//!    most, BinPack fills the smallest first, Spread keeps every worker at most a quarter full, and
//!    round-robin puts six tasks two to a worker.
//! 2. A worker killed with `docker kill` is marked down and its tasks run elsewhere; started again,
//!    its stale containers are stopped.
//! 3. A worker cut off with `docker network disconnect` likewise; reconnected, its stale containers
//!    are stopped; and a task with `stop_after_disconnect` never runs twice across the cut (the
//!    engine's own events show the old copy died before the new one started).
//! 4. The manager restarted with `docker restart`: every task still known, none moved.
//!
//! Before the failures, the routing mesh and DNS across hosts (issue 13): a service of three HTTP
//! servers, one on each host, is named by the manager's DNS (`dig`, SRV records with the ports the
//! engine bound) and reached through the published port of every worker (`curl`). As the workers
//! share the host's engine, their task containers publish their ports on the host: each worker's
//! `endpoint_address` is the cluster network's gateway, where the other workers reach them.
//!
//! No registry is reachable: the image is made by `deploy/image.sh` (as `make image` makes
//! Poseidon's own) from the binary and the libraries `ldd` names. A guard removes every container and network of the run, even when a step panics (and
//! then prints the logs of the manager and the workers first).
//!
//! Over the house's ~700 lines: one scenario script on one expensive cluster (built once, about 40
//! s), its scenarios in order and the cluster plumbing below them.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/docker.rs"]
mod docker_cli;
#[path = "common/image.rs"]
mod image;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::wait_for;
use docker_cli::docker;
use hyper::Method;
use poseidon::http::HttpClient;
use poseidon::security::ca::MANAGER_NAME;
use poseidon::security::tls::client_config;
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

/// The repository of the image holding the binary; the tag is a hash of the binary.
const IMAGE_REPO: &str = "poseidon-test/multihost";
/// Where the binary sits in that image.
const BIN: &str = "/usr/local/bin/poseidon";
/// The manager's heartbeat TTL: short, to keep the failure scenarios fast.
const TTL: Duration = Duration::from_secs(2);
/// How often the workers send a heartbeat.
const HEARTBEAT: &str = "300ms";
/// Deadline for starting containers and tasks: far above what an idle machine needs (a few
/// seconds), for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(90);
/// Deadline for a failover: the TTL "plus a few seconds", generously (it takes about TTL + 1 s).
const FAILOVER: Duration = Duration::from_secs(TTL.as_secs() + 25);
/// The declared capacity of each worker, so that the schedulers have something to choose between.
const CAPACITIES: [(f64, &str); 3] = [(1.0, "1g"), (2.0, "2g"), (4.0, "4g")];

/// The port the routing mesh opens on every worker (inside each worker's container) for the
/// scenario's service.
const MESH_PORT: u16 = 8080;
/// Requests sent through each worker's mesh in the measured burst.
const MESH_REQUESTS: usize = 30;

/// Each worker's `disk` label: the first and the third have ssd.
const DISKS: [&str; 3] = ["ssd", "hdd", "ssd"];
/// A task that runs until stopped, and exits at once on SIGTERM (so a stop never waits out the
/// grace period, which would blur the at-most-one timing).
const LONG_RUNNING: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_containers_schedules_fails_over_and_survives_a_manager_restart() {
    let test = "a_cluster_of_containers_schedules_fails_over_and_survives_a_manager_restart";
    let Some(rt) = docker_or_skip(test).await else {
        return;
    };
    ensure_test_image(&rt).await.unwrap();
    let started = Instant::now();
    let image = image::poseidon_image(IMAGE_REPO, &[]).await;
    let mut cluster = Cluster::start(&image, "epvm").await;
    eprintln!("cluster up in {:.1} s", started.elapsed().as_secs_f64());

    the_cli_lists_the_three_workers(&cluster).await;
    epvm_spreads_tasks_and_favours_the_biggest_worker(&cluster).await;
    cluster.restart_manager(Some("binpack")).await;
    binpack_fills_the_smallest_worker_first(&cluster).await;
    cluster.restart_manager(Some("spread")).await;
    spread_keeps_every_worker_at_most_a_quarter_full(&cluster).await;
    cluster.restart_manager(Some("round-robin")).await;
    round_robin_spreads_tasks_evenly(&cluster).await;
    health_checks_reach_tasks_over_each_workers_own_network(&cluster).await;
    constraints_spread_and_a_drain_moves_a_service_between_hosts(&cluster).await;
    dns_names_a_service_on_three_hosts_and_each_workers_mesh_reaches_all(&cluster).await;
    a_killed_worker_is_replaced_and_its_stale_copies_stopped(&cluster).await;
    a_cut_off_worker_is_replaced_and_at_most_one_holds(&cluster).await;
    a_manager_restart_loses_and_moves_nothing(&mut cluster).await;
    eprintln!(
        "multi-host scenarios done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

async fn the_cli_lists_the_three_workers(c: &Cluster) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_poseidon"))
        .args(["node", "--manager", &c.base])
        .env("POSEIDON_CA", c.manager_data.join("ca.pem"))
        .env("POSEIDON_TOKEN", &c.token)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "poseidon node: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for w in &c.workers {
        assert!(
            stdout.contains(w.as_str()),
            "poseidon node lacks {w}:\n{stdout}"
        );
    }
    // Every worker joined over TLS: the manager reaches each at an https:// address.
    let (s, nodes) = c.call(Method::GET, "/nodes", None).await.unwrap();
    assert_eq!(s, 200, "{nodes}");
    for n in nodes.as_array().unwrap() {
        let address = n["address"].as_str().unwrap_or_default();
        assert!(address.starts_with("https://"), "{n}");
    }
}

/// Places six tasks of a quarter core each (no memory declared, so CPU alone decides), stops them,
/// and returns how many went to the 1-, 2- and 4-core workers.
async fn place_quarter_core_tasks(c: &Cluster, scheduler: &str) -> [usize; 3] {
    let specs: Vec<Value> = (0..6)
        .map(|i| {
            let mut s = long_running(&format!("{scheduler}-{i}"));
            s["cpus"] = json!(0.25);
            s
        })
        .collect();
    let ids = c.submit(&specs).await;
    let tasks = c.wait_all_running(&ids).await;
    let per_node = count_per_node(&tasks);
    eprintln!("{scheduler} placement: {per_node:?}");
    c.stop_all(&ids).await;
    [0, 1, 2].map(|i| per_node.get(&c.workers[i]).copied().unwrap_or(0))
}

/// With equal job counts E-PVM's declared-CPU term sends a task to the worker with the most cores
/// left, so all three get some and the 4-core one the most.
async fn epvm_spreads_tasks_and_favours_the_biggest_worker(c: &Cluster) {
    let [small, mid, big] = place_quarter_core_tasks(c, "epvm").await;
    assert!(
        small > 0 && mid > 0 && big > 0,
        "epvm left a worker empty: {:?}",
        [small, mid, big]
    );
    assert!(
        big >= mid && mid >= small && big > small,
        "epvm should give the 4-core worker the most and the 1-core one the least: {:?}",
        [small, mid, big]
    );
}

/// BinPack leaves each task where it makes the node fullest: it fills the 1-core worker (four
/// quarters) before it opens the 2-core one, and never needs the 4-core one.
async fn binpack_fills_the_smallest_worker_first(c: &Cluster) {
    let counts = place_quarter_core_tasks(c, "binpack").await;
    assert_eq!(
        counts,
        [4, 2, 0],
        "binpack should fill the 1-core worker, then the 2-core one"
    );
}

/// Spread leaves each task where it makes the node emptiest, so no worker ends more than a
/// quarter full (one task on 1 core, two on 2, up to four on 4), which every worker shares.
async fn spread_keeps_every_worker_at_most_a_quarter_full(c: &Cluster) {
    let counts = place_quarter_core_tasks(c, "spread").await;
    for (i, n) in counts.iter().enumerate() {
        let used = *n as f64 * 0.25 / CAPACITIES[i].0;
        assert!(
            used <= 0.25 + 1e-9,
            "spread left {} {:.0} % full: {counts:?}",
            c.workers[i],
            used * 100.0
        );
    }
    assert!(
        counts.iter().all(|n| *n > 0),
        "spread left a worker empty: {counts:?}"
    );
}

async fn round_robin_spreads_tasks_evenly(c: &Cluster) {
    let specs: Vec<Value> = (0..6).map(|i| long_running(&format!("rr-{i}"))).collect();
    let ids = c.submit(&specs).await;
    let tasks = c.wait_all_running(&ids).await;
    let per_node = count_per_node(&tasks);
    eprintln!("round-robin placement: {per_node:?}");
    for w in &c.workers {
        assert_eq!(
            per_node.get(w).copied(),
            Some(2),
            "round-robin should place two of six tasks on each of three workers: {per_node:?}"
        );
    }
    // These keep running for the failure scenarios.
}

async fn a_killed_worker_is_replaced_and_its_stale_copies_stopped(c: &Cluster) {
    let victim = c.workers[0].clone();
    let before = c.tasks().await;
    let victims = running_on(&before, &victim);
    assert!(
        !victims.is_empty(),
        "no running task on {victim}: {before:?}"
    );

    let cut = Instant::now();
    docker(&["kill", &victim]).await;
    c.wait_node(&victim, "down", FAILOVER).await;
    c.wait_moved(&victims, &victim, FAILOVER).await;
    eprintln!(
        "killed {victim}: its {} tasks running elsewhere after {:.1} s (TTL {:.0} s)",
        victims.len(),
        cut.elapsed().as_secs_f64(),
        TTL.as_secs_f64()
    );
    assert_untouched(&before, &c.tasks().await, &victims);

    // Its containers outlived it (they belong to the shared engine); started again, it is told
    // they are stale and stops them.
    docker(&["start", &victim]).await;
    c.wait_node(&victim, "up", WAIT).await;
    wait_no_running_copies(&victim, &victims).await;
}

async fn a_cut_off_worker_is_replaced_and_at_most_one_holds(c: &Cluster) {
    let victim = c.workers[1].clone();
    // One at-most-one task per worker: round-robin with three up workers places three in a row on
    // three different ones.
    let specs: Vec<Value> = (0..3)
        .map(|i| {
            let mut s = long_running(&format!("once-{i}"));
            s["stop_after_disconnect"] = json!("1s");
            s
        })
        .collect();
    let once = c.submit(&specs).await;
    c.wait_all_running(&once).await;
    let before = c.tasks().await;
    let victims = running_on(&before, &victim);
    let guarded: Vec<(String, u64)> = victims
        .iter()
        .filter(|(id, _)| once.contains(id))
        .cloned()
        .collect();
    assert_eq!(
        guarded.len(),
        1,
        "expected one at-most-one task on {victim}: {before:?}"
    );
    let (guarded_id, _) = guarded[0].clone();
    let events = EngineEvents::watch(&guarded_id);

    let cut = Instant::now();
    docker(&["network", "disconnect", &c.net, &victim]).await;
    c.wait_node(&victim, "down", FAILOVER).await;
    let moved = c.wait_moved(&victims, &victim, FAILOVER).await;
    eprintln!(
        "cut off {victim}: its {} tasks running elsewhere after {:.1} s",
        victims.len(),
        cut.elapsed().as_secs_f64()
    );
    // Cut off, the worker stopped the at-most-one task on its own.
    wait_no_running_copies(&victim, &guarded).await;

    docker(&["network", "connect", &c.net, &victim]).await;
    c.wait_node(&victim, "up", WAIT).await;
    wait_no_running_copies(&victim, &victims).await;
    eprintln!(
        "reconnected {victim}: stale copies stopped {:.1} s after the cut",
        cut.elapsed().as_secs_f64()
    );

    // The engine's record: the copy on the cut-off worker died before the replacement started,
    // and nothing started on the cut-off worker after the cut.
    let new_node = moved[&guarded_id]["node"].as_str().unwrap().to_string();
    let seen = wait_for(
        "the engine's events for the at-most-one task's old and new containers",
        WAIT,
        || async {
            let ev = events.snapshot();
            let died = ev
                .iter()
                .find(|e| e.action == "die" && e.node == victim)
                .map(|e| e.time_ns);
            let started = ev
                .iter()
                .find(|e| e.action == "start" && e.node == new_node)
                .map(|e| e.time_ns);
            Some((died?, started?, ev))
        },
    )
    .await;
    let (died, started, ev) = seen;
    assert!(
        died < started,
        "the at-most-one task ran twice: its copy on {victim} died {:.3} s after the one on \
         {new_node} started: {ev:?}",
        (died - started) as f64 / 1e9
    );
    assert!(
        !ev.iter().any(|e| e.action == "start" && e.node == victim),
        "the at-most-one task started again on the cut-off {victim}: {ev:?}"
    );
    eprintln!(
        "at-most-one: old copy died {:.3} s before the new one started",
        (started - died) as f64 / 1e9
    );
    drop(events);

    // These would stop themselves while the manager restarts (that is what they opted in to),
    // which is not what the restart scenario is about.
    c.stop_all(&once).await;
}

async fn a_manager_restart_loses_and_moves_nothing(c: &mut Cluster) {
    let before = c.tasks().await;
    assert!(before.len() >= 27, "fewer tasks than submitted: {before:?}");
    let running_before = before.iter().filter(|t| t["state"] == "running").count();
    assert!(running_before >= 6, "expected running tasks: {before:?}");

    c.restart_manager(None).await;
    // Every node gets a full TTL after the restart before it can be counted down: wait until that
    // has passed with every node up, so that a move, if there were one, would have happened.
    let min_uptime = TTL.as_secs() + 2;
    wait_for(
        &format!("the restarted manager to be up {min_uptime} s with every node up"),
        WAIT,
        || async {
            let health = c.try_get("/health").await?;
            let nodes = c.try_get("/nodes").await?;
            let up = nodes.as_array()?.iter().all(|n| n["state"] == "up");
            (up && health["uptime_s"].as_u64()? >= min_uptime).then_some(())
        },
    )
    .await;

    let after = c.tasks().await;
    let key = |t: &Value| {
        (
            t["node"].clone(),
            t["generation"].clone(),
            t["state"].clone(),
            t["container_id"].clone(),
        )
    };
    let before_map: BTreeMap<String, _> = before.iter().map(|t| (id_of(t), key(t))).collect();
    let after_map: BTreeMap<String, _> = after.iter().map(|t| (id_of(t), key(t))).collect();
    for (id, was) in &before_map {
        let now = after_map
            .get(id)
            .unwrap_or_else(|| panic!("task {id} was lost by the manager restart"));
        assert_eq!(
            now, was,
            "task {id} changed across the manager restart (node, generation, state, container)"
        );
    }
    assert_eq!(
        after_map.len(),
        before_map.len(),
        "tasks appeared: {after:?}"
    );
    // And the running ones still run, in the containers they ran in.
    for t in after.iter().filter(|t| t["state"] == "running") {
        let running = running_copies(t["node"].as_str().unwrap(), &id_of(t)).await;
        let cid = t["container_id"].as_str().unwrap();
        assert!(
            running.len() == 1 && cid.starts_with(&running[0]),
            "task {} should run in {cid} on {}: the engine runs {running:?}",
            id_of(t),
            t["node"]
        );
    }
    eprintln!(
        "manager restart: {} tasks kept, {running_before} running, none moved",
        after.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Tasks
/// Each worker probes its own task containers on its own network (the worker container and its
/// tasks share it; the host and the other workers do not), so HTTP checks pass on every worker.
/// Labels from each worker's config reach the manager; a constrained `distinct_hosts` pair lands
/// on the two ssd hosts; a service copy moves off a drained host, and nothing new lands there.
async fn constraints_spread_and_a_drain_moves_a_service_between_hosts(c: &Cluster) {
    let ssd: Vec<String> = c
        .workers
        .iter()
        .zip(DISKS)
        .filter(|(_, d)| *d == "ssd")
        .map(|(w, _)| w.clone())
        .collect();
    let constrained = |name: &str| {
        serde_json::json!({"name": name, "image": TEST_IMAGE, "cmd": ["sleep", "3600"],
            "constraints": [{"attribute": "node.labels.disk", "operator": "=", "value": "ssd"},
                            {"operator": "distinct_hosts"}]})
    };
    let ids = c.submit(&[constrained("pair"), constrained("pair")]).await;
    let tasks = c.wait_all_running(&ids).await;
    let mut nodes: Vec<String> = tasks
        .iter()
        .map(|t| t["node"].as_str().unwrap().to_string())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ssd, "one of the pair on each ssd host");
    c.stop_all(&ids).await;

    let service = serde_json::json!({"name": "mh", "count": 1,
        "task": {"image": TEST_IMAGE, "cmd": ["sleep", "3600"]},
        "update": {"max_parallel": 1, "min_healthy": "200ms", "healthy_deadline": "30s"},
        "constraints": [{"attribute": "node.labels.disk", "operator": "=", "value": "ssd"}]});
    let (s, v) = c
        .call(Method::POST, "/services", Some(&service))
        .await
        .unwrap();
    assert_eq!(s, 201, "POST /services: {v}");
    let copy_on = |want: Option<String>| async move {
        let v = c.try_get("/services/mh").await?;
        let running: Vec<String> = v["tasks"]
            .as_array()?
            .iter()
            .filter(|t| t["state"] == "running" && t["desired"] == "run")
            .map(|t| t["node"].as_str().unwrap_or_default().to_string())
            .collect();
        match (&running[..], &want) {
            ([one], None) => Some(one.clone()),
            ([one], Some(w)) if one == w => Some(one.clone()),
            _ => None,
        }
    };
    let from = wait_for("the service copy to run", WAIT, || copy_on(None)).await;
    assert!(ssd.contains(&from), "on an ssd host: {from}");
    let to = ssd.iter().find(|w| **w != from).unwrap().clone();
    let (s, v) = c
        .call(Method::POST, &format!("/nodes/{from}/drain"), None)
        .await
        .unwrap();
    assert_eq!(s, 200, "drain: {v}");
    wait_for("the copy to move off the drained host", WAIT, || {
        copy_on(Some(to.clone()))
    })
    .await;
    // Nothing new lands on the drained host.
    let specs: Vec<Value> = (0..3)
        .map(|i| long_running(&format!("after-drain-{i}")))
        .collect();
    let ids = c.submit(&specs).await;
    let tasks = c.wait_all_running(&ids).await;
    assert!(
        tasks.iter().all(|t| t["node"] != from.as_str()),
        "nothing lands on a drained host: {tasks:?}"
    );
    c.stop_all(&ids).await;
    let (s, v) = c.call(Method::DELETE, "/services/mh", None).await.unwrap();
    assert_eq!(s, 200, "DELETE /services/mh: {v}");
    let (s, v) = c
        .call(
            Method::POST,
            &format!("/nodes/{from}/eligibility"),
            Some(&serde_json::json!({"eligible": true})),
        )
        .await
        .unwrap();
    assert_eq!(s, 200, "eligibility: {v}");
}

async fn health_checks_reach_tasks_over_each_workers_own_network(c: &Cluster) {
    let specs: Vec<Value> = (0..3)
        .map(|i| {
            json!({"name": format!("probed-{i}"), "image": TEST_IMAGE,
                   "cmd": ["httpd", "-f", "-p", "8080", "-h", "/www"], "ports": ["8080"],
                   "health_check": {"type": "http", "port": 8080, "path": "/", "interval": "300ms", "timeout": "1s"}})
        })
        .collect();
    let ids = c.submit(&specs).await;
    let tasks = c.wait_all_running(&ids).await;
    assert_eq!(
        count_per_node(&tasks).len(),
        3,
        "round-robin puts one on each worker"
    );
    for id in &ids {
        c.wait_task("a healthy task", id, |t| t["health"] == "healthy")
            .await;
    }
    c.stop_all(&ids).await;
}

/// Issue 13 across hosts: a service of three HTTP servers, each answering its own task id, one
/// on each host, published in HTTP mode. The workers' task containers publish their ports on the
/// host's shared engine, so each worker's `endpoint_address` is the cluster network's gateway: the
/// catalog gives that address with the ports the engine bound, `dig` against the manager's DNS
/// answers three SRV records with those ports (over UDP and TCP) and the gateway as their
/// address, each answers its own copy from the host, and `curl` to the published port on each
/// worker, from the host, reaches all three copies in a burst of requests on one connection.
async fn dns_names_a_service_on_three_hosts_and_each_workers_mesh_reaches_all(c: &Cluster) {
    let started = Instant::now();
    let service = json!({"name": "echo", "count": 3,
        "task": {"image": TEST_IMAGE,
                 "cmd": ["sh", "-c", "echo $POSEIDON_TASK_ID > /tmp/index.html && exec httpd -f -p 80 -h /tmp"],
                 "ports": ["80"],
                 "health_check": {"type": "tcp", "port": 80, "interval": "200ms", "retries": 1}},
        "update": {"max_parallel": 1, "min_healthy": "200ms", "healthy_deadline": "30s"},
        "constraints": [{"operator": "distinct_hosts"}],
        "publish": [{"port": MESH_PORT, "target": 80, "mode": "http"}]});
    let (s, v) = c
        .call(Method::POST, "/services", Some(&service))
        .await
        .unwrap();
    assert_eq!(s, 201, "POST /services: {v}");
    let eps = wait_for("3 endpoints of echo in the catalog", WAIT, || async {
        let eps = c.try_get("/catalog/services/echo").await?;
        (eps.as_array()?.len() == 3).then_some(eps.as_array()?.clone())
    })
    .await;
    let nodes: BTreeSet<&str> = eps.iter().filter_map(|e| e["node"].as_str()).collect();
    assert_eq!(nodes.len(), 3, "one copy on each host: {eps:?}");

    // Each endpoint: the gateway, and the port the engine bound for the task's container.
    let mut ports: BTreeMap<u16, String> = BTreeMap::new();
    for e in &eps {
        let task = e["task"].as_str().unwrap();
        assert_eq!(e["address"], c.gateway.as_str(), "{e}");
        let node = e["node"].as_str().unwrap();
        let copies = running_copies(node, task).await;
        assert_eq!(
            copies.len(),
            1,
            "the engine runs {copies:?} for {task} on {node}"
        );
        let bound = docker(&["port", &copies[0], "80/tcp"]).await;
        let engine_port: u16 = bound
            .lines()
            .next()
            .and_then(|l| l.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("docker port {}: {bound:?}", copies[0]));
        assert_eq!(e["port"].as_u64(), Some(u64::from(engine_port)), "{e}");
        ports.insert(engine_port, task.to_string());
    }

    // DNS, with a stock resolver, over UDP and over TCP.
    let dns_port = c.dns_port.to_string();
    for transport in ["+notcp", "+tcp"] {
        let srv = dig(&dns_port, transport, "_echo._tcp.service.poseidon", "SRV").await;
        let mut got: Vec<u16> = srv
            .lines()
            .map(|l| {
                // priority weight port target
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 4, "an SRV record: {l:?}");
                f[2].parse().unwrap()
            })
            .collect();
        got.sort();
        let want: Vec<u16> = ports.keys().copied().collect();
        assert_eq!(got, want, "dig {transport} SRV:\n{srv}");
        let a = dig(&dns_port, transport, "echo.service.poseidon", "A").await;
        assert_eq!(a.trim(), c.gateway, "dig {transport} A");
    }
    // Where DNS sends a client, the copy answers: gateway and port reach that very task.
    let direct: Vec<String> = ports
        .keys()
        .map(|p| format!("http://{}:{p}/", c.gateway))
        .collect();
    let answers = curl_burst(&direct).await;
    let want: Vec<String> = ports.values().cloned().collect();
    assert_eq!(
        answers,
        Ok(want),
        "each SRV target's port answers its own task id"
    );

    // Through each worker's mesh, from the host, at the worker's address on the cluster network.
    let mut per_worker: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for w in &c.workers {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            c.net
        );
        let ip = docker(&["inspect", "--format", &format, w]).await;
        let url = format!("http://{ip}:{MESH_PORT}/");
        let urls = vec![url.clone(); MESH_REQUESTS];
        // The worker learns the endpoints through its watch of the catalog: wait until its mesh
        // routes to all three, then measure a burst of its own.
        wait_for(
            &format!("{w}'s mesh at {url} to reach all three copies"),
            WAIT,
            || async {
                let got = curl_burst(&urls).await.ok()?;
                let seen: BTreeSet<&String> = got.iter().collect();
                (seen.len() == 3).then_some(())
            },
        )
        .await;
        let got = curl_burst(&urls)
            .await
            .unwrap_or_else(|e| panic!("through {w}'s mesh: {e}"));
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for id in got {
            assert!(
                ports.values().any(|t| *t == id),
                "{w}'s mesh answered {id:?}, not a copy of echo"
            );
            *counts.entry(id).or_default() += 1;
        }
        assert_eq!(counts.len(), 3, "{w}'s mesh reached {counts:?}");
        per_worker.insert(w.clone(), counts);
    }
    let routed = started.elapsed();

    // Stopped, so that the failure scenarios after this one find only their own tasks running.
    let (s, v) = c
        .call(Method::DELETE, "/services/echo", None)
        .await
        .unwrap();
    assert_eq!(s, 200, "DELETE /services/echo: {v}");
    wait_for("the copies of echo to stop", WAIT, || async {
        let tasks = c.try_get("/tasks?service=echo").await?;
        tasks
            .as_array()?
            .iter()
            .all(|t| t["state"] != "running")
            .then_some(())
    })
    .await;
    eprintln!(
        "mesh across hosts: {MESH_REQUESTS} requests through each worker, per copy: {:?}; \
         routed {:.1} s after the service was created, stopped at {:.1} s",
        per_worker
            .values()
            .map(|c| c.values().copied().collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        routed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// `dig +short` against the manager's DNS on the host's loopback; `transport` is `+tcp` or
/// `+notcp`.
async fn dig(port: &str, transport: &str, name: &str, kind: &str) -> String {
    let out = tokio::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            port,
            transport,
            "+short",
            "+time=5",
            "+tries=2",
        ])
        .args([name, kind])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("dig (dnsutils) must be installed: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig {transport} {name} {kind}: {}: {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `GET`s every URL of `urls` with one `curl` (one keep-alive connection per host and port) and
/// returns each answer's body, trimmed, in order; an error when any answer is not a 200.
async fn curl_burst(urls: &[String]) -> Result<Vec<String>, String> {
    // The status follows each body on a line of its own, after a marker no body holds.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n@@%{http_code}\n"])
        .args(urls)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("curl must be installed: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut bodies = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        match line.strip_prefix("@@") {
            Some("200") => bodies.push(std::mem::take(&mut body).trim().to_string()),
            Some(code) => return Err(format!("an answer {code}: {body:?} in {text:?}")),
            None => body.push_str(line),
        }
    }
    if bodies.len() != urls.len() {
        return Err(format!(
            "{} answers of {} ({}): {text:?}",
            bodies.len(),
            urls.len(),
            out.status
        ));
    }
    Ok(bodies)
}

// ---------------------------------------------------------------------------------------------

fn long_running(name: &str) -> Value {
    json!({"name": name, "image": TEST_IMAGE, "cmd": ["sh", "-c", LONG_RUNNING]})
}

fn id_of(t: &Value) -> String {
    t["id"].as_str().unwrap().to_string()
}

fn count_per_node(tasks: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks {
        *m.entry(t["node"].as_str().unwrap_or("-").to_string())
            .or_default() += 1;
    }
    m
}

/// The (id, generation) of every task running on `node`.
fn running_on(tasks: &[Value], node: &str) -> Vec<(String, u64)> {
    tasks
        .iter()
        .filter(|t| t["state"] == "running" && t["node"] == node)
        .map(|t| (id_of(t), t["generation"].as_u64().unwrap()))
        .collect()
}

/// Asserts that every task of `before` not in `moved` kept its node and generation.
fn assert_untouched(before: &[Value], after: &[Value], moved: &[(String, u64)]) {
    let moved: BTreeSet<&str> = moved.iter().map(|(id, _)| id.as_str()).collect();
    for t in before.iter().filter(|t| !moved.contains(id_of(t).as_str())) {
        let id = id_of(t);
        let now = after
            .iter()
            .find(|a| id_of(a) == id)
            .unwrap_or_else(|| panic!("task {id} disappeared"));
        assert_eq!(
            (&now["node"], &now["generation"]),
            (&t["node"], &t["generation"]),
            "task {id} moved although its node is fine"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The engine, through the docker CLI
// ---------------------------------------------------------------------------------------------

/// The ids of the running containers of task `task` on node `node`, as the engine sees them.
async fn running_copies(node: &str, task: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=io.poseidon.node={node}"),
        "--filter",
        &format!("label=io.poseidon.task={task}"),
    ])
    .await
    .lines()
    .map(str::to_string)
    .collect()
}

/// Waits until the engine runs no container of any of `tasks` labelled with node `node`.
async fn wait_no_running_copies(node: &str, tasks: &[(String, u64)]) {
    let ids: Vec<&str> = tasks.iter().map(|(id, _)| id.as_str()).collect();
    wait_for(
        &format!("no container of {ids:?} to run on {node}"),
        WAIT,
        || async {
            for id in &ids {
                if !running_copies(node, id).await.is_empty() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}

/// One container event of the engine.
#[derive(Debug, Clone)]
struct EngineEvent {
    action: String,
    node: String,
    time_ns: i64,
}

/// `docker events` for one task's containers, from now on, collected in the background.
struct EngineEvents {
    child: tokio::process::Child,
    seen: Arc<Mutex<Vec<EngineEvent>>>,
}

impl EngineEvents {
    fn watch(task: &str) -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let mut child = tokio::process::Command::new("docker")
            .args([
                "events",
                "--since",
                &format!("{since:.3}"),
                "--filter",
                "type=container",
                "--filter",
                &format!("label=io.poseidon.task={task}"),
                "--format",
                "{{json .}}",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                sink.lock().unwrap().push(EngineEvent {
                    action: v["Action"].as_str().unwrap_or("").to_string(),
                    node: v["Actor"]["Attributes"]["io.poseidon.node"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    time_ns: v["timeNano"].as_i64().unwrap_or(0),
                });
            }
        });
        EngineEvents { child, seen }
    }

    fn snapshot(&self) -> Vec<EngineEvent> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for EngineEvents {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

/// A manager and three workers in containers, reached from the host at `base`. Dropping it
/// removes every container and network of the run.
struct Cluster {
    /// Holds the config files bind-mounted into the containers.
    dir: tempfile::TempDir,
    /// The cluster's network.
    net: String,
    /// The manager's container name.
    manager: String,
    /// The workers' node names, which are also their container names.
    workers: Vec<String>,
    /// The manager's URL on the host's loopback.
    base: String,
    http: HttpClient,
    /// The manager's data directory, bind-mounted from the host: the cluster CA it makes on first
    /// start (`ca.pem`) is read from here.
    manager_data: PathBuf,
    /// The management token from `POST /acl/bootstrap`.
    token: String,
    /// Every network of the run, removed on drop.
    networks: Vec<String>,
    /// The cluster network's gateway: the host as the containers on it see it, so where the
    /// ports the workers' task containers publish (on the host's shared engine) are reached. Each
    /// worker's `endpoint_address`.
    gateway: String,
    /// The host's loopback port (UDP and TCP) published to the manager's `dns_listen`.
    dns_port: u16,
}

impl Cluster {
    async fn start(image: &str, scheduler: &str) -> Cluster {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let run = format!("pmh-{}-{:x}", std::process::id(), nanos % 0x10000);
        let port = common::free_port();
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            net: format!("{run}-net"),
            manager: format!("{run}-manager"),
            workers: (1..=3).map(|i| format!("{run}-w{i}")).collect(),
            base: format!("https://127.0.0.1:{port}"),
            http: HttpClient::new(Duration::from_secs(10)),
            networks: Vec::new(),
            manager_data: PathBuf::new(),
            token: String::new(),
            gateway: String::new(),
            dns_port: common::free_port(),
        };
        c.manager_data = c.dir.path().join("manager-data");
        std::fs::create_dir_all(&c.manager_data).unwrap();
        let manager_data = format!("{}:/var/lib/poseidon/manager", c.manager_data.display());
        let label = format!("io.poseidon.multihost={run}");
        // The cluster network needs no outside access but cannot be internal: the manager's port
        // is published on the host's loopback. Nor can the task networks: the engine publishes no
        // port of a container that is only on an internal network, and the routing mesh reaches
        // the service copies at their published ports.
        c.networks.push(c.net.clone());
        docker(&["network", "create", "--label", &label, &c.net]).await;
        c.gateway = docker(&[
            "network",
            "inspect",
            "--format",
            "{{(index .IPAM.Config 0).Gateway}}",
            &c.net,
        ])
        .await;
        assert!(
            c.gateway.parse::<std::net::IpAddr>().is_ok(),
            "the gateway of {}: {:?}",
            c.net,
            c.gateway
        );
        for w in c.workers.clone() {
            let net = format!("{w}-net");
            c.networks.push(net.clone());
            docker(&["network", "create", "--label", &label, &net]).await;
        }

        c.write_manager_config(scheduler);
        let config = format!(
            "{}:/etc/poseidon.toml:ro",
            c.config_path("manager").display()
        );
        let publish = format!("127.0.0.1:{port}:5555");
        let dns_udp = format!("127.0.0.1:{}:8600/udp", c.dns_port);
        let dns_tcp = format!("127.0.0.1:{}:8600/tcp", c.dns_port);
        docker(&[
            "run",
            "-d",
            "--name",
            &c.manager,
            "--label",
            &label,
            "--network",
            &c.net,
            "-p",
            &publish,
            "-p",
            &dns_udp,
            "-p",
            &dns_tcp,
            "-v",
            &config,
            "-v",
            &manager_data,
            image,
            BIN,
            "manager",
            "-c",
            "/etc/poseidon.toml",
        ])
        .await;
        let join_token = c.secure().await;
        for (i, w) in c.workers.clone().iter().enumerate() {
            let (cpus, memory) = CAPACITIES[i];
            let disk = DISKS[i];
            let net = format!("{w}-net");
            let toml = format!(
                "[[worker]]\nname = \"{w}\"\nlisten = \"0.0.0.0:5556\"\n\
                 advertise = \"https://{w}:5556\"\nmanager = \"https://{}:5555\"\n\
                 runtime = \"docker\"\ndocker_host = \"unix:///var/run/docker.sock\"\n\
                 data_dir = \"/var/lib/poseidon/{w}\"\n\
                 capacity = {{ cpus = {cpus:.1}, memory = \"{memory}\" }}\n\
                 heartbeat_interval = \"{HEARTBEAT}\"\nstop_grace = \"2s\"\nnetwork = \"{net}\"\n\
                 labels = {{ disk = \"{disk}\" }}\n\
                 ingress_listen = \"0.0.0.0\"\nendpoint_address = \"{}\"\n\
                 [security]\nacl = true\ntls = \"auto\"\njoin_token = \"{join_token}\"\n",
                c.manager, c.gateway
            );
            std::fs::write(c.config_path(w), toml).unwrap();
            let config = format!("{}:/etc/poseidon.toml:ro", c.config_path(w).display());
            docker(&[
                "create",
                "--name",
                w,
                "--label",
                &label,
                "--network",
                &c.net,
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                &config,
                image,
                BIN,
                "worker",
                "-c",
                "/etc/poseidon.toml",
                "--name",
                w,
            ])
            .await;
            // Its own network too: its task containers are there, and its probes reach them there.
            docker(&["network", "connect", &net, w]).await;
            docker(&["start", w]).await;
        }
        c.wait_ready(Some(scheduler)).await;
        c
    }

    /// A client that trusts the cluster CA the manager made and expects the manager's name.
    fn tls_client(&self) -> HttpClient {
        let pem = std::fs::read_to_string(self.manager_data.join("ca.pem")).unwrap();
        HttpClient::with_tls(
            Duration::from_secs(10),
            client_config(&pem, MANAGER_NAME, None).unwrap(),
        )
    }

    /// Waits for the manager's cluster CA, bootstraps the ACL (the management token becomes the
    /// test's), and returns a join token for the workers.
    async fn secure(&mut self) -> String {
        let ca = self.manager_data.join("ca.pem");
        wait_for("the manager to make its cluster CA", WAIT, || async {
            std::fs::metadata(&ca).ok().filter(|m| m.len() > 0)
        })
        .await;
        self.http = self.tls_client();
        let url = format!("{}/acl/bootstrap", self.base);
        let boot = wait_for("the manager to answer over TLS", WAIT, || async {
            let r = self.http.send(Method::POST, &url, None).await.ok()?;
            Some(r)
        })
        .await;
        let v: Value = serde_json::from_slice(&boot.body).unwrap_or(Value::Null);
        assert_eq!(boot.status, 201, "POST /acl/bootstrap: {v}");
        self.token = v["token"].as_str().unwrap().to_string();
        // Without the token, the API is closed.
        let r = self
            .http
            .send(Method::GET, &format!("{}/tasks", self.base), None)
            .await
            .unwrap();
        assert_eq!(r.status, 401, "GET /tasks without a token");
        let (s, join) = self
            .call(Method::POST, "/acl/join-token", None)
            .await
            .unwrap();
        assert_eq!(s, 201, "POST /acl/join-token: {join}");
        join["token"].as_str().unwrap().to_string()
    }

    fn config_path(&self, role: &str) -> PathBuf {
        self.dir.path().join(format!("{role}.toml"))
    }

    /// Writes the manager's config in place (the bind mount follows the inode, not the name).
    fn write_manager_config(&self, scheduler: &str) {
        let toml = format!(
            "[manager]\nlisten = \"0.0.0.0:5555\"\ndata_dir = \"/var/lib/poseidon/manager\"\n\
             scheduler = \"{scheduler}\"\nheartbeat_ttl = \"{}ms\"\ndispatch_backoff = \"200ms\"\n\
             dns_listen = \"0.0.0.0:8600\"\n\
             [security]\nacl = true\ntls = \"auto\"\n",
            TTL.as_millis()
        );
        std::fs::write(self.config_path("manager"), toml).unwrap();
    }

    /// Restarts the manager's container, with another scheduler if one is given.
    async fn restart_manager(&mut self, scheduler: Option<&str>) {
        if let Some(s) = scheduler {
            self.write_manager_config(s);
        }
        docker(&["restart", "-t", "20", &self.manager]).await;
        // Pooled connections died with the old process.
        self.http = self.tls_client();
        self.wait_ready(scheduler).await;
    }

    /// Waits until the manager answers (with `scheduler`, if given) and all three workers are up.
    async fn wait_ready(&self, scheduler: Option<&str>) {
        wait_for(
            &format!(
                "the manager at {} to answer with scheduler {scheduler:?} and {:?} to be up",
                self.base, self.workers
            ),
            WAIT,
            || async {
                let health = self.try_get("/health").await?;
                if scheduler.is_some_and(|s| health["scheduler"] != s) {
                    return None;
                }
                let nodes = self.try_get("/nodes").await?;
                let up: BTreeSet<&str> = nodes
                    .as_array()?
                    .iter()
                    .filter(|n| n["state"] == "up")
                    .filter_map(|n| n["name"].as_str())
                    .collect();
                self.workers
                    .iter()
                    .all(|w| up.contains(w.as_str()))
                    .then_some(())
            },
        )
        .await;
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        let r = self
            .http
            .send_auth(method, &url, body, Some(&self.token))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        Ok((r.status, v))
    }

    /// `GET path` when it answers 200, else `None`: for waiting on a manager that may be down.
    async fn try_get(&self, path: &str) -> Option<Value> {
        match self.call(Method::GET, path, None).await {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    async fn tasks(&self) -> Vec<Value> {
        let (s, v) = self.call(Method::GET, "/tasks", None).await.unwrap();
        assert_eq!(s, 200, "GET /tasks: {v}");
        v.as_array().unwrap().clone()
    }

    /// Submits `specs` in one request and returns their ids.
    async fn submit(&self, specs: &[Value]) -> Vec<String> {
        let body = Value::Array(specs.to_vec());
        let (s, v) = self
            .call(Method::POST, "/tasks", Some(&body))
            .await
            .unwrap();
        assert_eq!(s, 201, "POST /tasks: {v}");
        v.as_array().unwrap().iter().map(id_of).collect()
    }

    /// Stops every task of `ids` and waits until each is completed.
    async fn stop_all(&self, ids: &[String]) {
        for id in ids {
            let path = format!("/tasks/{id}");
            let (s, v) = self.call(Method::DELETE, &path, None).await.unwrap();
            assert_eq!(s, 200, "DELETE {path}: {v}");
        }
        for id in ids {
            self.wait_task(&format!("task {id} to be completed"), id, |t| {
                t["state"] == "completed"
            })
            .await;
        }
    }

    async fn wait_task(&self, what: &str, id: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let path = format!("/tasks/{id}");
        wait_for(what, WAIT, || async {
            let t = self.try_get(&path).await?;
            ok(&t).then_some(t)
        })
        .await
    }

    async fn wait_all_running(&self, ids: &[String]) -> Vec<Value> {
        let mut out = Vec::new();
        for id in ids {
            out.push(
                self.wait_task(&format!("task {id} to be running"), id, |t| {
                    t["state"] == "running"
                })
                .await,
            );
        }
        out
    }

    async fn wait_node(&self, name: &str, state: &str, deadline: Duration) {
        wait_for(&format!("node {name} to be {state}"), deadline, || async {
            let nodes = self.try_get("/nodes").await?;
            nodes
                .as_array()?
                .iter()
                .any(|n| n["name"] == name && n["state"] == state)
                .then_some(())
        })
        .await;
    }

    /// Waits until each of `tasks` runs on a node other than `from` under a newer generation, and
    /// returns them by id.
    async fn wait_moved(
        &self,
        tasks: &[(String, u64)],
        from: &str,
        deadline: Duration,
    ) -> BTreeMap<String, Value> {
        let ids: Vec<&str> = tasks.iter().map(|(id, _)| id.as_str()).collect();
        wait_for(
            &format!("tasks {ids:?} to run off {from} under a newer generation"),
            deadline,
            || async {
                let mut moved = BTreeMap::new();
                for (id, generation) in tasks {
                    let t = self.try_get(&format!("/tasks/{id}")).await?;
                    let ok = t["state"] == "running"
                        && t["node"].as_str().is_some_and(|n| n != from)
                        && t["generation"].as_u64()? > *generation;
                    if !ok {
                        return None;
                    }
                    moved.insert(id.clone(), t);
                }
                Some(moved)
            },
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut roles = vec![self.manager.clone()];
        roles.extend(self.workers.iter().cloned());
        if std::thread::panicking() {
            // The logs of every role, to see why.
            docker_cli::print_logs(&roles, 60);
        }
        docker_cli::remove_all(&roles, &self.workers, &self.networks);
    }
}
