//! The multi-host test's high-availability variant (issue 15): every role a host of its own, a
//! container on one private Docker network, running the very `poseidon` binary these tests were
//! built with and Debian's `etcd` (both put in one image by `deploy/image.sh`):
//!
//! - three etcd members (`etcd` from the `etcd-server` package, one container each);
//! - three managers with `store = "etcd"`, each advertising its address on the network;
//! - two workers listing the three managers, driving the host's Docker engine through its
//!   bind-mounted socket (as in `tests/multihost.rs`), so every task is a real container.
//!
//! The host reaches every container at its address on the network (the network has a subnet of
//! its own, so each member and manager gets a fixed address that the configs can name). The
//! managers are also on a second network, the test's own line to them, so that a manager cut off
//! from the cluster network can still be asked what it does.
//!
//! The scenarios run in sequence on one cluster:
//!
//! 1. Tasks are placed and run, one container each.
//! 2. `docker kill` of the leader's container under three concurrent submitters: another manager
//!    leads within 3 s of the kill; every acknowledged task is there exactly once; no container is
//!    restarted, moved or doubled (the engine's own record: container id and start time per task).
//! 3. `docker kill` of an etcd member (not etcd's raft leader): writes go on, the leader stays.
//! 4. `docker network disconnect` of the leader's container (a real partition: it loses etcd and
//!    the workers): another manager leads within 3 s; by then the cut-off one no longer says it
//!    leads (never two leaders), and it acknowledges none of the writes sent to it from then on
//!    (503, or no answer); every write it did acknowledge is there; reconnected, it follows the new
//!    leader; again no container restarted, moved or doubled.
//!
//! `POSEIDON_FAILOVER_ROUNDS=N` adds N kills and N partitions of the leader after the scenarios and
//! prints the failover times (BENCHMARKS.md).
//!
//! Without ACL and TLS (`insecure = true`): the etcd store refuses both for now (see the README's
//! high-availability section). A guard removes every container and network of the run, even when
//! a step panics (and then prints the logs of every role first).
//!
//! Over the house's ~700 lines: one scenario script on one expensive cluster (built once), its
//! scenarios in order and the cluster plumbing below them, like `tests/multihost.rs`.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/docker.rs"]
mod docker_cli;
#[path = "common/etcd.rs"]
mod etcd;
#[path = "common/image.rs"]
mod image;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::wait_for;
use docker_cli::{docker, try_docker};
use hyper::Method;
use poseidon::http::HttpClient;
use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};
use serde_json::{json, Value};

/// The repository of the image holding `poseidon` and `etcd`; the tag is a hash of both.
const IMAGE_REPO: &str = "poseidon-test/multihost-ha";
/// Where the binaries sit in that image.
const BIN: &str = "/usr/local/bin/poseidon";
const ETCD_BIN: &str = "/usr/local/bin/etcd";
/// The managers' heartbeat TTL (a new leader gives every node this long before counting it down).
const TTL: &str = "3s";
/// How often the workers send a heartbeat.
const HEARTBEAT: &str = "300ms";
/// Deadline for starting containers and tasks: far above what an idle machine needs, for a loaded
/// 2-core CI machine.
const WAIT: Duration = Duration::from_secs(90);
/// The promise: a new leader within 3 s of the old one's loss.
const FAILOVER: Duration = Duration::from_secs(3);
/// A task that runs until stopped, and exits at once on SIGTERM.
const LONG_RUNNING: &str = "trap 'exit 0' TERM; sleep 3600 & wait";
/// Concurrent submitters while the leader is killed. Each acknowledged task becomes a container
/// on the one engine of this machine, so they pause between submissions ([`SUBMIT_PAUSE`]).
const SUBMITTERS: usize = 3;
const SUBMIT_PAUSE: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_manager_containers_on_etcd_containers_fail_over_losing_and_restarting_nothing() {
    let test =
        "three_manager_containers_on_etcd_containers_fail_over_losing_and_restarting_nothing";
    let Some(rt) = docker_or_skip(test).await else {
        return;
    };
    if !etcd::etcd_or_skip(test) {
        return;
    }
    ensure_test_image(&rt).await.unwrap();
    let started = Instant::now();
    let image = image::poseidon_image(IMAGE_REPO, &[etcd::ETCD]).await;
    let c = Cluster::start(&image).await;
    eprintln!("HA cluster up in {:.1} s", started.elapsed().as_secs_f64());

    let mut acked = tasks_run_in_containers_of_their_own(&c).await;
    acked.extend(a_killed_leader_is_replaced_within_3_s_under_submitters(&c).await);
    acked.extend(a_killed_etcd_member_changes_nothing(&c).await);
    acked.extend(a_cut_off_leader_is_replaced_and_acknowledges_nothing(&c).await);

    // The whole run: every acknowledged task is there, once, in one container that never restarted.
    let tasks = c.wait_all_running().await;
    assert_acknowledged_once(&acked, &tasks);
    c.assert_one_container_each(&tasks).await;
    eprintln!(
        "multi-host HA scenarios done in {:.1} s: {} tasks acknowledged, each in one container",
        started.elapsed().as_secs_f64(),
        acked.len()
    );

    // For BENCHMARKS.md: POSEIDON_FAILOVER_ROUNDS=N kills the leader N more times, then cuts it
    // off N times, and prints the failover times (the scenarios above assert the promise).
    let rounds: usize = std::env::var("POSEIDON_FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if rounds > 0 {
        failover_times(&c, rounds, Loss::Kill).await;
        failover_times(&c, rounds, Loss::Cut).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// An acknowledged submission: the task's id and its (unique) name.
type Acked = Vec<(String, String)>;

async fn tasks_run_in_containers_of_their_own(c: &Cluster) -> Acked {
    let specs: Vec<Value> = (0..6)
        .map(|i| long_running(&format!("first-{i}")))
        .collect();
    let leader = c.leader_now().await;
    let (s, v) = c
        .call(leader, Method::POST, "/tasks", Some(&Value::Array(specs)))
        .await
        .unwrap();
    assert_eq!(s, 201, "POST /tasks: {v}");
    let acked: Acked = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (id_of(t), t["spec"]["name"].as_str().unwrap().to_string()))
        .collect();
    let tasks = c.wait_all_running().await;
    let nodes: BTreeSet<&str> = tasks.values().filter_map(|t| t["node"].as_str()).collect();
    assert_eq!(nodes.len(), 2, "six tasks on both workers: {tasks:?}");
    c.assert_one_container_each(&tasks).await;
    acked
}

async fn a_killed_leader_is_replaced_within_3_s_under_submitters(c: &Cluster) -> Acked {
    let leader = c.leader_now().await;
    // What runs before must run on, where it is, in the same container.
    let before = c.wait_all_running().await;
    let engine_before = c.assert_one_container_each(&before).await;
    let submitters = Submitters::start(c, (0..3).collect(), "kill");
    submitters.wait_acked(3).await;

    let killed_at = Instant::now();
    docker(&["kill", &c.managers[leader]]).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c.wait_leader(&others).await;
    let failover = killed_at.elapsed();
    eprintln!(
        "docker kill of the leader {}: {} leads after {:.2} s",
        c.managers[leader],
        c.managers[new_leader],
        failover.as_secs_f64()
    );
    assert!(
        failover < FAILOVER,
        "a new leader took {failover:?} after the kill (the promise is {FAILOVER:?})"
    );
    // The submitters carry on through the new leader (the followers redirect to it).
    let at_failover = submitters.acked().len();
    submitters.wait_acked(at_failover + 3).await;
    let acked = submitters.stop().await;

    let tasks = c.wait_all_running().await;
    assert_acknowledged_once(&acked, &tasks);
    assert_unmoved(&before, &tasks, "the leader's kill");
    let engine_after = c.assert_one_container_each(&tasks).await;
    assert_same_containers(&engine_before, &engine_after, "the leader's kill");
    eprintln!(
        "{} acknowledged around the kill ({at_failover} before the new leader), {} tasks running, \
         the {} that ran before in the same containers",
        acked.len(),
        tasks.len(),
        before.len()
    );

    // The killed manager's container started again: it comes back as a follower.
    docker(&["start", &c.managers[leader]]).await;
    c.wait_following(leader, new_leader).await;
    c.assert_workers_up(new_leader).await;
    acked
}

async fn a_killed_etcd_member_changes_nothing(c: &Cluster) -> Acked {
    let leader = c.leader_now().await;
    let health = || wait_for("the leader's health", WAIT, || c.health(leader));
    let changes = health().await["ha"]["leader_changes"].clone();
    let raft = c.etcd_raft_leader().await;
    let victim = (raft + 1) % 3;
    docker(&["kill", &c.etcd[victim]]).await;
    let mut acked = Acked::new();
    for i in 0..3 {
        let name = format!("etcd-down-{i}");
        let (s, v) = c
            .call(leader, Method::POST, "/tasks", Some(&long_running(&name)))
            .await
            .unwrap();
        assert_eq!(s, 201, "a write with one etcd member down: {v}");
        acked.push((id_of(&v), name));
    }
    let tasks = c.wait_all_running().await;
    assert_acknowledged_once(&acked, &tasks);
    let h = health().await;
    assert_eq!(h["ha"]["role"], "leader", "{h}");
    assert_eq!(h["ha"]["leader_changes"], changes, "{h}");
    eprintln!(
        "etcd member {} killed: 3 writes taken, {} still leads",
        c.etcd[victim], c.managers[leader]
    );
    // Back for the next scenario (its data is in its container, kept across the kill).
    docker(&["start", &c.etcd[victim]]).await;
    c.wait_etcd_member(victim).await;
    acked
}

async fn a_cut_off_leader_is_replaced_and_acknowledges_nothing(c: &Cluster) -> Acked {
    let cut = c.leader_now().await;
    // Every manager up and following, so that the two others can take over.
    for i in (0..3).filter(|&i| i != cut) {
        c.wait_following(i, cut).await;
    }
    let before = c.wait_all_running().await;
    let engine_before = c.assert_one_container_each(&before).await;
    // One submitter sends to the leader to be cut off only, through the test's own line to it.
    let submitter = Submitters::start(c, vec![cut], "cut");
    submitter.wait_acked(2).await;

    let cut_at = Instant::now();
    docker(&["network", "disconnect", &c.net, &c.managers[cut]]).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    let new_leader = c.wait_leader(&others).await;
    let failover = cut_at.elapsed();
    let new_leader_at = Instant::now();
    eprintln!(
        "network disconnect of the leader {}: {} leads after {:.2} s",
        c.managers[cut],
        c.managers[new_leader],
        failover.as_secs_f64()
    );
    assert!(
        failover < FAILOVER,
        "a new leader took {failover:?} after the cut (the promise is {FAILOVER:?})"
    );
    // Never two leaders: the cut-off one stopped leading on its own count (from the sending of its
    // last answered keep-alive) before etcd let its lease go, so by now it says so.
    let h = wait_for("the cut-off manager to answer", WAIT, || c.health(cut)).await;
    assert_eq!(
        h["ha"]["role"], "follower",
        "the cut-off manager still says it leads while {} does: {h}",
        c.managers[new_leader]
    );
    // It keeps being asked while cut off; the new leader takes writes meanwhile.
    let mut acked = Acked::new();
    for i in 0..3 {
        let name = format!("during-cut-{i}");
        let (s, v) = c
            .call(
                new_leader,
                Method::POST,
                "/tasks",
                Some(&long_running(&name)),
            )
            .await
            .unwrap();
        assert_eq!(s, 201, "a write to the new leader: {v}");
        acked.push((id_of(&v), name));
    }
    submitter.wait_answers_after(new_leader_at, 5).await;
    let answers = submitter.answers_after(new_leader_at);
    acked.extend(submitter.stop().await);
    let accepted: Vec<&(u16, String)> = answers.iter().filter(|(s, _)| *s == 201).collect();
    assert!(
        accepted.is_empty(),
        "the cut-off manager acknowledged writes after the new leader took over: {accepted:?}"
    );
    eprintln!(
        "the cut-off manager answered {:?} to writes after the new leader took over",
        answers.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>()
    );

    // Reconnected at its address, it follows the new leader.
    let ip = c.manager_ip(cut);
    docker(&["network", "connect", "--ip", &ip, &c.net, &c.managers[cut]]).await;
    c.wait_following(cut, new_leader).await;
    c.assert_workers_up(new_leader).await;
    let tasks = c.wait_all_running().await;
    assert_acknowledged_once(&acked, &tasks);
    assert_unmoved(&before, &tasks, "the leader's partition");
    let engine_after = c.assert_one_container_each(&tasks).await;
    assert_same_containers(&engine_before, &engine_after, "the leader's partition");
    acked
}

/// How the leader is lost when failover is measured.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// `docker kill` (then `docker start`).
    Kill,
    /// `docker network disconnect` from the cluster network (then connected again at its address).
    Cut,
}

/// Loses the leader `rounds` times by `loss` (brought back each time, and following the new
/// leader before the next round), and prints each time from the start of the docker command until
/// another manager says it leads, with the median and the maximum.
async fn failover_times(c: &Cluster, rounds: usize, loss: Loss) {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let leader = c.leader_now().await;
        let m = c.managers[leader].as_str();
        let lost_at = Instant::now();
        match loss {
            Loss::Kill => docker(&["kill", m]).await,
            Loss::Cut => docker(&["network", "disconnect", &c.net, m]).await,
        };
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let new_leader = c.wait_leader(&others).await;
        times.push(lost_at.elapsed().as_millis());
        match loss {
            Loss::Kill => docker(&["start", m]).await,
            Loss::Cut => {
                let ip = c.manager_ip(leader);
                docker(&["network", "connect", "--ip", &ip, &c.net, m]).await
            }
        };
        c.wait_following(leader, new_leader).await;
    }
    let mut sorted = times.clone();
    sorted.sort_unstable();
    eprintln!(
        "failover over containers, {rounds} x {loss:?}: median {} ms, max {} ms, min {} ms; \
         every one, ms: {times:?}",
        // The median as benches/ha.rs takes it (the upper one of an even count).
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        sorted[0]
    );
}

// ---------------------------------------------------------------------------------------------
// Submitters
// ---------------------------------------------------------------------------------------------

/// Concurrent submitters: each sends `POST /tasks` to a manager of its list (through the test's
/// line to it; a follower redirects to the leader, and the client follows), moves to the next one
/// when a manager does not answer, and records what it was answered.
struct Submitters {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
    /// Every answer: when the request was sent, its status (0: no answer), the task's name.
    answers: Arc<Mutex<Vec<(Instant, u16, String)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Submitters {
    fn start(c: &Cluster, targets: Vec<usize>, prefix: &str) -> Submitters {
        let s = Submitters {
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::default(),
            answers: Arc::default(),
            tasks: Vec::new(),
        };
        let n = if targets.len() == 1 { 1 } else { SUBMITTERS };
        let tasks = (0..n)
            .map(|k| {
                let (stop, acked, answers) = (s.stop.clone(), s.acked.clone(), s.answers.clone());
                let urls: Vec<String> = targets.iter().map(|&i| c.line[i].clone()).collect();
                let prefix = format!("{prefix}{k}");
                tokio::spawn(async move {
                    let client = HttpClient::new(Duration::from_secs(2));
                    let mut target = k % urls.len();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        // A new name every time: an unanswered submission may or may not exist.
                        let name = format!("{prefix}-{i}");
                        let body = serde_json::to_vec(&long_running(&name)).unwrap();
                        let url = format!("{}/tasks", urls[target]);
                        let sent = Instant::now();
                        let r = client.send(Method::POST, &url, Some(body)).await;
                        let status = r.as_ref().map(|r| r.status).unwrap_or(0);
                        answers.lock().unwrap().push((sent, status, name.clone()));
                        match r {
                            Ok(r) if r.status == 201 => {
                                let v: Value = serde_json::from_slice(&r.body).unwrap();
                                acked.lock().unwrap().push((id_of(&v), name));
                                tokio::time::sleep(SUBMIT_PAUSE).await;
                            }
                            // No leader known (an election), or a write cut off by the lease's end.
                            Ok(r) if r.status == 503 => {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Ok(r) => panic!(
                                "unexpected answer {} from {url}: {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                            ),
                            Err(_) => {
                                target = (target + 1) % urls.len();
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Submitters { tasks, ..s }
    }

    fn acked(&self) -> Acked {
        self.acked.lock().unwrap().clone()
    }

    async fn wait_acked(&self, n: usize) {
        wait_for(&format!("{n} acknowledged submissions"), WAIT, || async {
            (self.acked.lock().unwrap().len() >= n).then_some(())
        })
        .await;
    }

    /// The (status, name) of every submission sent after `t`.
    fn answers_after(&self, t: Instant) -> Vec<(u16, String)> {
        let answers = self.answers.lock().unwrap();
        answers
            .iter()
            .filter(|(sent, _, _)| *sent > t)
            .map(|(_, s, n)| (*s, n.clone()))
            .collect()
    }

    async fn wait_answers_after(&self, t: Instant, n: usize) {
        wait_for(
            &format!("{n} answers to submissions sent after the failover"),
            WAIT,
            || async { (self.answers_after(t).len() >= n).then_some(()) },
        )
        .await;
    }

    /// Stops the submitters (a panic in one fails the test) and returns what was acknowledged.
    async fn stop(self) -> Acked {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

fn long_running(name: &str) -> Value {
    json!({"name": name, "image": TEST_IMAGE, "cmd": ["sh", "-c", LONG_RUNNING]})
}

fn id_of(t: &Value) -> String {
    t["id"].as_str().unwrap().to_string()
}

/// Every acknowledged task is known, and no name is there twice.
fn assert_acknowledged_once(acked: &Acked, tasks: &BTreeMap<String, Value>) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for t in tasks.values() {
        *names
            .entry(t["spec"]["name"].as_str().unwrap())
            .or_default() += 1;
    }
    for (id, name) in acked {
        assert!(
            tasks.contains_key(id),
            "acknowledged task {id} ({name}) is lost"
        );
        assert_eq!(
            names.get(name.as_str()),
            Some(&1),
            "task {name} is there once"
        );
    }
}

/// Every task of `before` runs on the same node, in the same generation, never restarted.
fn assert_unmoved(before: &BTreeMap<String, Value>, after: &BTreeMap<String, Value>, what: &str) {
    for (id, t0) in before {
        let t = after
            .get(id)
            .unwrap_or_else(|| panic!("task {id} is lost across {what}"));
        let key = |t: &Value| {
            (
                t["state"].clone(),
                t["node"].clone(),
                t["generation"].clone(),
                t["restart_count"].clone(),
                t["container_id"].clone(),
            )
        };
        assert_eq!(key(t), key(t0), "task {id} changed across {what}");
    }
}

/// Every container of `before` is there after, the same one, started at the same time.
fn assert_same_containers(
    before: &BTreeMap<String, Container>,
    after: &BTreeMap<String, Container>,
    what: &str,
) {
    for (task, c0) in before {
        assert_eq!(
            after.get(task),
            Some(c0),
            "the container of task {task} changed across {what}"
        );
    }
}

/// One container of a task, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Container {
    id: String,
    node: String,
    started_at: String,
    running: bool,
    restarts: u64,
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

/// Three etcd members, three managers and two workers in containers. Dropping it removes every
/// container and network of the run.
struct Cluster {
    /// Holds the config files bind-mounted into the containers.
    dir: tempfile::TempDir,
    /// The cluster network (etcd, managers, workers) and its first three address bytes.
    net: String,
    prefix: String,
    /// The test's own line to the managers (a second network), and each manager's URL on it.
    line_net: String,
    line: Vec<String>,
    /// The task containers' network (internal: the tasks need none).
    tasks_net: String,
    /// Container names.
    etcd: Vec<String>,
    managers: Vec<String>,
    workers: Vec<String>,
    /// Each manager's advertised URL (on the cluster network, which the host reaches too).
    bases: Vec<String>,
    http: HttpClient,
}

impl Cluster {
    async fn start(image: &str) -> Cluster {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let run = format!("pha-{}-{:x}", std::process::id(), nanos % 0x10000);
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            net: format!("{run}-net"),
            prefix: String::new(),
            line_net: format!("{run}-line"),
            line: Vec::new(),
            tasks_net: format!("{run}-tasks"),
            etcd: (1..=3).map(|i| format!("{run}-e{i}")).collect(),
            managers: (1..=3).map(|i| format!("{run}-m{i}")).collect(),
            workers: (1..=2).map(|i| format!("{run}-w{i}")).collect(),
            bases: Vec::new(),
            http: HttpClient::new(Duration::from_secs(10)),
        };
        let label = format!("io.poseidon.multihost={run}");
        // Fixed addresses need a subnet of the test's choosing; one another network holds already
        // is refused, and the next is tried. Every network is internal: nothing here needs the
        // outside, and the host reaches an internal network's containers all the same.
        let mut tried = Vec::new();
        for k in 0..32u32 {
            let third = (nanos / 7 + k * 37) % 250 + 3;
            let prefix = format!("10.231.{third}");
            let subnet = format!("{prefix}.0/24");
            match try_docker(&[
                "network",
                "create",
                "--internal",
                "--subnet",
                &subnet,
                "--label",
                &label,
                &c.net,
            ])
            .await
            {
                Ok(_) => {
                    c.prefix = prefix;
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        assert!(!c.prefix.is_empty(), "no free subnet: {tried:?}");
        for n in [&c.line_net, &c.tasks_net] {
            docker(&["network", "create", "--internal", "--label", &label, n]).await;
        }
        c.bases = (0..3)
            .map(|i| format!("http://{}:5555", c.manager_ip(i)))
            .collect();

        // etcd: one member a container, its data in the container (kept across a kill and start).
        let initial: Vec<String> = (0..3)
            .map(|i| format!("e{i}=http://{}:2380", c.etcd_ip(i)))
            .collect();
        for i in 0..3 {
            let ip = c.etcd_ip(i);
            let flags = etcd::flags(
                &format!("e{i}"),
                "/var/lib/poseidon/etcd",
                ("http://0.0.0.0:2379", &format!("http://{ip}:2379")),
                ("http://0.0.0.0:2380", &format!("http://{ip}:2380")),
                &initial.join(","),
            );
            let mut args = vec![
                "run",
                "-d",
                "--name",
                &c.etcd[i],
                "--label",
                &label,
                "--network",
                &c.net,
                "--ip",
                &ip,
                image,
                ETCD_BIN,
            ];
            args.extend(flags.iter().map(String::as_str));
            docker(&args).await;
        }
        let endpoints: Vec<String> = (0..3)
            .map(|i| format!("http://{}:2379", c.etcd_ip(i)))
            .collect();
        wait_for("etcd's three members to take a write", WAIT, || async {
            let mut e = etcd_client::Client::connect(&endpoints, None).await.ok()?;
            e.put("/test/ready", "1", None).await.ok().map(|_| ())
        })
        .await;

        // The managers: on the cluster network at fixed addresses, and on the test's line.
        let quoted = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for i in 0..3 {
            let m = c.managers[i].clone();
            let toml = format!(
                "[manager]\nlisten = \"0.0.0.0:5555\"\nadvertise = \"{}\"\n\
                 data_dir = \"/var/lib/poseidon/manager\"\nheartbeat_ttl = \"{TTL}\"\n\
                 dispatch_backoff = \"200ms\"\ndns_listen = \"off\"\nstore = \"etcd\"\n\
                 etcd_endpoints = [{}]\nmanagers = [{}]\n\
                 [security]\ninsecure = true\n",
                c.bases[i],
                quoted(&endpoints),
                quoted(&c.bases)
            );
            let file = c.dir.path().join(format!("{m}.toml"));
            std::fs::write(&file, toml).unwrap();
            let config = format!("{}:/etc/poseidon.toml:ro", file.display());
            let ip = c.manager_ip(i);
            docker(&[
                "create",
                "--name",
                &m,
                "--label",
                &label,
                "--network",
                &c.net,
                "--ip",
                &ip,
                "-v",
                &config,
                image,
                BIN,
                "manager",
                "-c",
                "/etc/poseidon.toml",
            ])
            .await;
            docker(&["network", "connect", &c.line_net, &m]).await;
            docker(&["start", &m]).await;
            let format = format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                c.line_net
            );
            let line_ip = docker(&["inspect", "--format", &format, &m]).await;
            c.line.push(format!("http://{line_ip}:5555"));
        }
        let leader = c.wait_leader(&[0, 1, 2]).await;
        for i in 0..3 {
            let h = c.wait_following(i, leader).await;
            assert_eq!(h["ha"]["managers"], json!(c.bases), "{h}");
        }

        // The workers, listing the three managers.
        for w in c.workers.clone() {
            let toml = format!(
                "[[worker]]\nname = \"{w}\"\nlisten = \"0.0.0.0:5556\"\n\
                 advertise = \"http://{w}:5556\"\nmanagers = [{}]\n\
                 runtime = \"docker\"\ndocker_host = \"unix:///var/run/docker.sock\"\n\
                 data_dir = \"/var/lib/poseidon/{w}\"\n\
                 capacity = {{ cpus = 4.0, memory = \"4g\" }}\n\
                 heartbeat_interval = \"{HEARTBEAT}\"\nstop_grace = \"2s\"\n\
                 network = \"{}\"\n[security]\ninsecure = true\n",
                quoted(&c.bases),
                c.tasks_net
            );
            let file = c.dir.path().join(format!("{w}.toml"));
            std::fs::write(&file, toml).unwrap();
            let config = format!("{}:/etc/poseidon.toml:ro", file.display());
            docker(&[
                "run",
                "-d",
                "--name",
                &w,
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
                &w,
            ])
            .await;
        }
        wait_for("both workers up", WAIT, || async {
            let leader = c.leader_among(&[0, 1, 2]).await?;
            let (s, nodes) = c.call(leader, Method::GET, "/nodes", None).await.ok()?;
            let up = nodes
                .as_array()?
                .iter()
                .filter(|n| n["state"] == "up")
                .count();
            (s == 200 && up == c.workers.len()).then_some(())
        })
        .await;
        c
    }

    fn manager_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 11 + i)
    }

    fn etcd_ip(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 21 + i)
    }

    /// `GET /health` of manager `i` through the test's line, if it answers within half a second.
    async fn health(&self, i: usize) -> Option<Value> {
        HttpClient::new(Duration::from_millis(500))
            .get::<Value>(&format!("{}/health", self.line[i]))
            .await
            .ok()
    }

    /// The manager among `among` that says it leads, if one does.
    async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        for &i in among {
            if self
                .health(i)
                .await
                .is_some_and(|h| h["ha"]["role"] == "leader")
            {
                return Some(i);
            }
        }
        None
    }

    async fn wait_leader(&self, among: &[usize]) -> usize {
        let names: Vec<&str> = among.iter().map(|&i| self.managers[i].as_str()).collect();
        wait_for(&format!("a leader among {names:?}"), WAIT, || {
            self.leader_among(among)
        })
        .await
    }

    async fn leader_now(&self) -> usize {
        self.wait_leader(&[0, 1, 2]).await
    }

    /// Waits until manager `i` names `leader` as the leader (itself, or as a follower), and returns
    /// its health.
    async fn wait_following(&self, i: usize, leader: usize) -> Value {
        let role = if i == leader { "leader" } else { "follower" };
        wait_for(
            &format!(
                "{} to be {role} of {}",
                self.managers[i], self.managers[leader]
            ),
            WAIT,
            || async {
                self.health(i).await.filter(|h| {
                    h["ha"]["role"] == role && h["ha"]["leader"] == self.bases[leader].as_str()
                })
            },
        )
        .await
    }

    /// Both workers are up on manager `i` (the leader): none was counted down across a failover,
    /// since a new leader gives every node a full TTL and the workers found it. A leader that
    /// loaded its state a moment ago shows a node `waiting` until that node's next beat reaches
    /// it, so this waits for `up`, and fails at once on `down`.
    async fn assert_workers_up(&self, i: usize) {
        wait_for("both workers up on the leader", WAIT, || async {
            let (s, nodes) = self.call(i, Method::GET, "/nodes", None).await.ok()?;
            assert_eq!(s, 200, "GET /nodes: {nodes}");
            let mut all_up = true;
            for w in &self.workers {
                let n = nodes
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|n| n["name"] == w.as_str());
                let state = n.map(|n| n["state"].clone()).unwrap_or_default();
                assert_ne!(state, "down", "worker {w} was counted down: {nodes}");
                all_up &= state == "up";
            }
            all_up.then_some(())
        })
        .await
    }

    /// The index of the etcd member that is etcd's raft leader.
    async fn etcd_raft_leader(&self) -> usize {
        wait_for("an etcd member to say it leads", WAIT, || async {
            for i in 0..3 {
                let ep = format!("http://{}:2379", self.etcd_ip(i));
                let Ok(mut e) = etcd_client::Client::connect([ep], None).await else {
                    continue;
                };
                if let Ok(s) = e.status().await {
                    if s.leader() == s.header()?.member_id() {
                        return Some(i);
                    }
                }
            }
            None
        })
        .await
    }

    /// Waits until etcd member `i` answers a read on its own.
    async fn wait_etcd_member(&self, i: usize) {
        let ep = format!("http://{}:2379", self.etcd_ip(i));
        wait_for(&format!("{} to answer", self.etcd[i]), WAIT, || async {
            let mut e = etcd_client::Client::connect([&ep], None).await.ok()?;
            e.get("/poseidon/leader", None).await.ok().map(|_| ())
        })
        .await;
    }

    async fn call(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.line[i]);
        let body = body.map(|b| serde_json::to_vec(b).unwrap());
        let r = self
            .http
            .send(method, &url, body)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        Ok((r.status, v))
    }

    /// Waits until the leader knows every task as running (none is ever stopped here), and
    /// returns them by id.
    async fn wait_all_running(&self) -> BTreeMap<String, Value> {
        wait_for("every task to run", WAIT, || async {
            let leader = self.leader_among(&[0, 1, 2]).await?;
            let (s, all) = self.call(leader, Method::GET, "/tasks", None).await.ok()?;
            if s != 200 {
                return None;
            }
            let tasks: BTreeMap<String, Value> = all
                .as_array()?
                .iter()
                .map(|t| (id_of(t), t.clone()))
                .collect();
            tasks
                .values()
                .all(|t| t["state"] == "running")
                .then_some(tasks)
        })
        .await
    }

    /// Every container the workers made on the engine, by task id.
    async fn containers(&self) -> BTreeMap<String, Vec<Container>> {
        let mut ids = Vec::new();
        for w in &self.workers {
            let filter = format!("label=io.poseidon.node={w}");
            let out = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]).await;
            ids.extend(out.lines().map(str::to_string));
        }
        let mut by_task: BTreeMap<String, Vec<Container>> = BTreeMap::new();
        if ids.is_empty() {
            return by_task;
        }
        let mut args = vec![
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.poseidon.task\"}} {{.Id}} \
             {{index .Config.Labels \"io.poseidon.node\"}} {{.State.StartedAt}} \
             {{.State.Running}} {{.RestartCount}}",
        ];
        args.extend(ids.iter().map(String::as_str));
        for line in docker(&args).await.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 6, "docker inspect: {line:?}");
            by_task
                .entry(f[0].to_string())
                .or_default()
                .push(Container {
                    id: f[1].to_string(),
                    node: f[2].to_string(),
                    started_at: f[3].to_string(),
                    running: f[4] == "true",
                    restarts: f[5].parse().unwrap(),
                });
        }
        by_task
    }

    /// The engine holds exactly one container for each of `tasks` (and none for another task):
    /// running, never restarted, on the task's node, the one the manager names. Returns them.
    async fn assert_one_container_each(
        &self,
        tasks: &BTreeMap<String, Value>,
    ) -> BTreeMap<String, Container> {
        let all = self.containers().await;
        let unknown: Vec<&String> = all.keys().filter(|k| !tasks.contains_key(*k)).collect();
        assert!(
            unknown.is_empty(),
            "containers of unknown tasks: {unknown:?}"
        );
        let mut one = BTreeMap::new();
        for (id, t) in tasks {
            let cs = all.get(id).map(Vec::as_slice).unwrap_or_default();
            let [c] = cs else {
                panic!("task {id} has {} containers: {cs:?}", cs.len());
            };
            let named = t["container_id"].as_str().unwrap_or_default();
            assert!(
                c.running
                    && c.restarts == 0
                    && t["node"] == c.node.as_str()
                    && !named.is_empty()
                    && c.id.starts_with(named),
                "task {id} ({t}) and its container {c:?}"
            );
            one.insert(id.clone(), c.clone());
        }
        one
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut roles = self.etcd.clone();
        roles.extend(self.managers.iter().cloned());
        roles.extend(self.workers.iter().cloned());
        if std::thread::panicking() {
            docker_cli::print_logs(&roles, 40);
        }
        let networks = [&self.net, &self.line_net, &self.tasks_net].map(|n| n.clone());
        docker_cli::remove_all(&roles, &self.workers, &networks);
    }
}
