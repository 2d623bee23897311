//! Scale benchmark in the spirit of Nomad's C1M (issue 7), a bench binary (`harness = false`).
//!
//! The real manager, the `poseidon` binary started as a child process (`poseidon manager -c FILE`,
//! RocksDB in a temporary directory, synced writes), and many simulated workers in this process:
//! lightweight agents that speak the real worker protocol over HTTP on loopback. Each agent has its
//! own listener (its own advertised address), registers with a heartbeat, answers
//! `POST /assignments` with `{accepted: [{id, generation}], rejected: []}`, reports each assigned
//! task Running at once (`POST /nodes/{name}/reports`, coalescing what changed while a report was in
//! flight, as the real worker's report loop does), and heartbeats with the status of every task it
//! holds. Agents run no containers and keep their tasks in a map; they read only the `id` and
//! `generation` of each assignment, so that the two cores go to the manager rather than to the
//! simulators.
//!
//! Several clients submit the tasks in batches through `POST /tasks` (a JSON array of up to 10,000
//! specs); the bench polls the manager's `GET /metrics` every 250 ms and reads its peak RSS (`VmHWM`
//! in `/proc/<pid>/status`) and CPU time (`/proc/<pid>/stat`).
//!
//! ```text
//! cargo bench --bench scale -- --tasks 100000 --workers 1000    # one point
//! cargo bench --bench scale -- --curve                          # the curve of BENCHMARKS.md
//! cargo bench --bench scale -- --curve --c1m                    # ... and 1,000,000 on 5,000
//! ```
//!
//! Options: `--tasks N`, `--workers N`, `--clients N` (concurrent submitters, default 4),
//! `--batch N` (specs per `POST /tasks`, default 10,000), `--hb-interval SECS` (each agent's own
//! interval, default 1 s like a real worker's; the agents, like real workers, wait the longer of it
//! and the interval the manager tells them in each heartbeat reply, and the manager runs with its
//! defaults: at most 50 heartbeats a second, TTL from `liveness::heartbeat_plan`; the bench
//! stretches nothing itself), `--scheduler NAME` (default `epvm`), `--timeout SECS` (default 900).
//!
//! The manager binary is the one cargo builds beside the bench (`CARGO_BIN_EXE_poseidon`, release
//! profile, so `$CARGO_TARGET_DIR/release/poseidon`); `POSEIDON_BIN` overrides it.
//!
//! Over the house's ~700 lines: the simulated workers, the child-process manager and the
//! measurement loop of one benchmark, kept in one file so the bench reads top to bottom.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use poseidon::client::ManagerClient;
use poseidon::http::{self, json, ApiError, HttpClient, Req, Resp, Shutdown};
use poseidon::task::{Desired, State, TaskId};
use poseidon::wire::{
    AcceptedAssignment, AssignmentReply, Capacity, Heartbeat, HeartbeatReply, NodeStats, Report,
    TaskStatus,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Opts {
    tasks: usize,
    workers: usize,
    clients: usize,
    batch: usize,
    hb_interval: Option<f64>,
    scheduler: String,
    timeout: Duration,
    curve: bool,
    c1m: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        tasks: 100_000,
        workers: 1_000,
        clients: 4,
        batch: 10_000,
        hb_interval: None,
        scheduler: "epvm".into(),
        timeout: Duration::from_secs(900),
        curve: false,
        c1m: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let value = |i: usize| -> String {
        args.get(i + 1)
            .cloned()
            .unwrap_or_else(|| panic!("{} needs a value", args[i]))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--tasks" => o.tasks = value(i).parse().unwrap(),
            "--workers" => o.workers = value(i).parse().unwrap(),
            "--clients" => o.clients = value(i).parse().unwrap(),
            "--batch" => o.batch = value(i).parse().unwrap(),
            "--hb-interval" => o.hb_interval = Some(value(i).parse().unwrap()),
            "--scheduler" => o.scheduler = value(i),
            "--timeout" => o.timeout = Duration::from_secs(value(i).parse().unwrap()),
            "--curve" => {
                o.curve = true;
                i += 1;
                continue;
            }
            "--c1m" => {
                o.c1m = true;
                i += 1;
                continue;
            }
            // `cargo bench` passes `--bench`; anything else unknown is ignored the same way.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn hb_interval(o: &Opts) -> Duration {
    Duration::from_secs_f64(o.hb_interval.unwrap_or(1.0))
}

// ---------------------------------------------------------------------------------------------
// The manager, a child process

struct ManagerProc {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

fn manager_bin() -> PathBuf {
    std::env::var_os("POSEIDON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_poseidon")))
}

fn start_manager(scheduler: &str) -> ManagerProc {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scale.toml");
    std::fs::write(
        &cfg,
        format!(
            "[manager]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nscheduler = \"{scheduler}\"\n",
            dir.path().join("manager").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(manager_bin())
        .arg("manager")
        .arg("-c")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", manager_bin().display()));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the address it listens on, then keep draining its stderr so it never blocks on a pipe.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once("manager listening url=") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            } else {
                eprintln!("  [manager] {line}");
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the manager did not say where it listens");
    ManagerProc {
        child,
        url,
        _dir: dir,
    }
}

impl ManagerProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` in kB (`VmHWM`, `VmRSS`).
fn proc_status_kb(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU seconds of a process (clock ticks of 1/100 s).
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

// ---------------------------------------------------------------------------------------------
// Simulated workers

/// The part of an assignment an agent needs (the manager sends the whole `Assignment`).
#[derive(Deserialize)]
struct LightAssignment {
    id: TaskId,
    generation: u64,
}

#[derive(Deserialize)]
struct LightBatch {
    assignments: Vec<LightAssignment>,
}

/// The most requests all agents together have in flight to the manager. Real workers each hold
/// their own connection; here every connection is a file descriptor of this one process, which
/// already holds one listener and one accepted connection per agent, under a limit of 20,000
/// (`ulimit -n`). Reports queue behind the gate and coalesce, as the real report loop does.
const MAX_IN_FLIGHT: usize = 1024;

/// Set while a point is being torn down, so that requests cut off by the manager's exit stay quiet.
static STOPPING: AtomicBool = AtomicBool::new(false);

struct Agent {
    name: String,
    address: String,
    manager: ManagerClient,
    /// Shared by all agents: requests to the manager in flight at once (see [`MAX_IN_FLIGHT`]).
    gate: Arc<Semaphore>,
    /// Every task it holds, as it would report it.
    tasks: Mutex<HashMap<TaskId, TaskStatus>>,
    /// Statuses changed since the last report.
    dirty: Mutex<Vec<TaskStatus>>,
    wake: Notify,
    /// The interval the manager last told it (ms; 0 before any).
    told_ms: AtomicU64,
}

fn running(id: TaskId, generation: u64) -> TaskStatus {
    TaskStatus {
        id,
        generation,
        state: State::Running,
        desired: Desired::Run,
        container_id: Some(format!("mock-{}", id.short())),
        host_ports: Vec::new(),
        exit_code: None,
        restart_count: 0,
        health: None,
        reason: Some("started".into()),
        started_ms: Some(poseidon::util::now_ms()),
        finished_ms: None,
    }
}

impl Agent {
    /// Takes assignments: each task "starts" at once and is queued for the next report.
    fn take(&self, list: impl IntoIterator<Item = (TaskId, u64)>) -> Vec<AcceptedAssignment> {
        let mut accepted = Vec::new();
        let mut changed = Vec::new();
        {
            let mut tasks = self.tasks.lock().unwrap();
            for (id, generation) in list {
                let s = running(id, generation);
                tasks.insert(id, s.clone());
                changed.push(s);
                accepted.push(AcceptedAssignment { id, generation });
            }
        }
        self.dirty.lock().unwrap().extend(changed);
        self.wake.notify_one();
        accepted
    }

    /// Applies the manager's answer to the statuses in `sent`.
    fn apply_reply(&self, sent: &[TaskStatus], reply: HeartbeatReply) {
        if !reply.stop.is_empty() {
            // An order names only the task: it is about the generation this message carried, not
            // a newer one taken since (the same task placed here again after a failed dispatch).
            let sent: HashMap<TaskId, u64> = sent.iter().map(|s| (s.id, s.generation)).collect();
            let mut tasks = self.tasks.lock().unwrap();
            for s in &reply.stop {
                let held = tasks.get(&s.id).map(|t| t.generation);
                if held.is_some() && held == sent.get(&s.id).copied() {
                    tasks.remove(&s.id);
                }
            }
        }
        if !reply.assign.is_empty() {
            self.take(reply.assign.iter().map(|a| (a.id, a.generation)));
        }
    }

    async fn heartbeat(&self) -> bool {
        let statuses: Vec<TaskStatus> = self.tasks.lock().unwrap().values().cloned().collect();
        let hb = Heartbeat {
            name: self.name.clone(),
            address: self.address.clone(),
            capacity: Capacity {
                cpus: 32.0,
                memory: 64 << 30,
            },
            stats: NodeStats {
                cpu_percent: 1.0,
                load_one: 0.1,
                memory_used: 1 << 30,
                memory_total: 64 << 30,
                disk_available: 100 << 30,
                disk_total: 200 << 30,
                tasks: statuses.len(),
            },
            healthy: true,
            problem: None,
            tasks: statuses,
            // These agents list every task in every beat: the manager's heaviest case.
            full: true,
            host_volumes: Vec::new(),
            labels: Default::default(),
            endpoint_address: None,
        };
        let _permit = self.gate.acquire().await.unwrap();
        match self.manager.heartbeat(&hb).await {
            Ok(reply) => {
                if let Some(ms) = reply.heartbeat_interval_ms {
                    self.told_ms.store(ms, Ordering::Relaxed);
                }
                self.apply_reply(&hb.tasks, reply);
                true
            }
            Err(e) => {
                if !STOPPING.load(Ordering::Relaxed) {
                    eprintln!("  agent {}: heartbeat failed: {e}", self.name);
                }
                false
            }
        }
    }

    /// The longer of its own interval and the manager's, as a real worker waits.
    fn interval(&self, own: Duration) -> Duration {
        own.max(Duration::from_millis(self.told_ms.load(Ordering::Relaxed)))
    }

    async fn heartbeat_loop(self: Arc<Self>, own: Duration, shutdown: Shutdown) {
        // Spread the agents evenly over the interval.
        let jitter = self.interval(own).mul_f64(fastrand_unit(&self.name));
        tokio::select! {
            _ = tokio::time::sleep(jitter) => {}
            _ = shutdown.wait() => return,
        }
        loop {
            self.heartbeat().await;
            tokio::select! {
                _ = tokio::time::sleep(self.interval(own)) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    async fn report_loop(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = shutdown.wait() => return,
            }
            let _permit = tokio::select! {
                p = self.gate.acquire() => p.unwrap(),
                _ = shutdown.wait() => return,
            };
            let batch = std::mem::take(&mut *self.dirty.lock().unwrap());
            if batch.is_empty() {
                continue;
            }
            let report = Report { tasks: batch };
            match self.manager.report(&self.name, &report).await {
                Ok(reply) => self.apply_reply(&report.tasks, reply),
                Err(e) => {
                    // The next heartbeat carries the statuses anyway.
                    if !STOPPING.load(Ordering::Relaxed) {
                        eprintln!("  agent {}: report failed: {e}", self.name);
                    }
                }
            }
        }
    }

    async fn handle(self: Arc<Self>, req: Req) -> Resp {
        let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
        match (req.method.as_str(), path.as_slice()) {
            ("POST", ["assignments"]) => {
                let batch: LightBatch = match serde_json::from_slice(&req.body) {
                    Ok(b) => b,
                    Err(e) => return http::error(&ApiError::bad_request(e.to_string())),
                };
                let accepted =
                    self.take(batch.assignments.into_iter().map(|a| (a.id, a.generation)));
                json(
                    200,
                    &AssignmentReply {
                        accepted,
                        rejected: Vec::new(),
                    },
                )
            }
            ("DELETE", ["tasks", id]) => {
                if let Ok(id) = id.parse::<TaskId>() {
                    self.tasks.lock().unwrap().remove(&id);
                }
                json(200, &json!({}))
            }
            _ => http::error(&ApiError::not_found("no such route on a simulated worker")),
        }
    }
}

/// A number in [0, 1) from a name, to spread heartbeats without a random number generator.
fn fastrand_unit(name: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

async fn start_agents(
    n: usize,
    manager: &str,
    interval: Duration,
    shutdown: &Shutdown,
) -> (Vec<Arc<Agent>>, Duration) {
    // One client for all agents: its pool opens as many kept-alive connections to the manager as
    // there are requests in flight.
    let client = HttpClient::new(Duration::from_secs(120));
    let gate = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut agents = Vec::with_capacity(n);
    let t_bind = Instant::now();
    for i in 0..n {
        let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let agent = Arc::new(Agent {
            name: format!("sim-{i:05}"),
            address: format!("http://{addr}"),
            manager: ManagerClient::with_http(client.clone(), manager),
            gate: gate.clone(),
            tasks: Mutex::new(HashMap::new()),
            dirty: Mutex::new(Vec::new()),
            wake: Notify::new(),
            told_ms: AtomicU64::new(0),
        });
        let a = agent.clone();
        tokio::spawn(http::serve(
            listener,
            move |r| a.clone().handle(r),
            shutdown.clone(),
        ));
        tokio::spawn(agent.clone().report_loop(shutdown.clone()));
        agents.push(agent);
    }
    // Register every agent (its first heartbeat), a few at a time, before any task is submitted.
    // Timed from here: binding the 5,000 listeners on ephemeral ports took 0.1 s on a fresh
    // machine but 4.5 and 9.1 s right after earlier runs had left about 13,000 connections in
    // TIME_WAIT, and that is the simulator's set-up, not the manager's registration.
    let t_reg = Instant::now();
    eprintln!(
        "  {n} simulated workers listening after {:.1} s",
        t_bind.elapsed().as_secs_f64()
    );
    let gate = Arc::new(Semaphore::new(32));
    let mut hs = Vec::new();
    for a in &agents {
        let a = a.clone();
        let gate = gate.clone();
        hs.push(tokio::spawn(async move {
            let _p = gate.acquire().await.unwrap();
            assert!(a.heartbeat().await, "registration of {} failed", a.name);
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let registered = t_reg.elapsed();
    for a in &agents {
        tokio::spawn(a.clone().heartbeat_loop(interval, shutdown.clone()));
    }
    (agents, registered)
}

// ---------------------------------------------------------------------------------------------
// One point of the curve

#[derive(Debug, Clone)]
struct Outcome {
    tasks: usize,
    workers: usize,
    hb_interval: f64,
    register_s: f64,
    submitted_s: f64,
    placed_s: Option<f64>,
    running_s: Option<f64>,
    running: u64,
    placements_per_s: f64,
    hwm_mib: f64,
    manager_cpu_s: f64,
    bench_cpu_s: f64,
    heartbeats: u64,
    reports: u64,
    syncs: u64,
}

async fn run_point(o: &Opts, tasks: usize, workers: usize) -> Outcome {
    let own = hb_interval(o);
    let mgr = start_manager(&o.scheduler);
    let pid = mgr.pid().to_string();
    let url = mgr.url.clone();
    let shutdown = Shutdown::new();
    STOPPING.store(false, Ordering::Relaxed);
    let client = HttpClient::new(Duration::from_secs(300));
    let manager = ManagerClient::with_http(client.clone(), &url);
    let bench_cpu0 = cpu_secs("self");

    let (agents, registered) = start_agents(workers, &url, own, &shutdown).await;
    // What the manager told the agents (the last to register heard the largest figure).
    let interval = agents.iter().map(|a| a.interval(own)).max().unwrap_or(own);
    let register_s = registered.as_secs_f64();
    let cpu0 = cpu_secs(&pid);

    // Submit: `clients` submitters take batches of `batch` specs off a shared counter.
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut subs = Vec::new();
    for _ in 0..o.clients {
        let next = next.clone();
        let client = client.clone();
        let url = format!("{url}/tasks");
        let batch = o.batch;
        subs.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(batch, Ordering::Relaxed);
                if start >= tasks {
                    return;
                }
                let end = (start + batch).min(tasks);
                let specs: Vec<serde_json::Value> = (start..end)
                    .map(|i| {
                        json!({"name": format!("c1m-{i}"), "image": "busybox",
                               "cpus": 0.01, "memory": "16m"})
                    })
                    .collect();
                let body = serde_json::to_vec(&specs).unwrap();
                let r = client
                    .send(Method::POST, &url, Some(body))
                    .await
                    .expect("POST /tasks");
                assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            }
        }));
    }
    let submitted = {
        let waiter = tokio::spawn(async move {
            for s in subs {
                s.await.unwrap();
            }
            Instant::now()
        });
        waiter
    };

    // Watch the manager until every task runs (or the timeout).
    let mut placed_s = None;
    let mut running_s = None;
    let mut running_now = 0;
    let mut last_print = Instant::now();
    let mut submitted_at: Option<Instant> = None;
    let mut submitted = Some(submitted);
    let mut last = String::new();
    while t0.elapsed() < o.timeout {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(h) = submitted.as_ref() {
            if h.is_finished() {
                submitted_at = Some(submitted.take().unwrap().await.unwrap());
            }
        }
        let Ok(text) = manager.metrics().await else {
            continue;
        };
        last = text;
        let placed = metric(&last, "poseidon_placements_total").unwrap_or(0);
        running_now = metric(&last, "poseidon_tasks{state=\"running\"}").unwrap_or(0);
        if placed_s.is_none() && placed >= tasks as u64 {
            placed_s = Some(t0.elapsed().as_secs_f64());
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            last_print = Instant::now();
            eprintln!(
                "  {:>6.1} s: placed {placed}, running {running_now}, manager RSS {:.0} MiB",
                t0.elapsed().as_secs_f64(),
                proc_status_kb(&pid, "VmRSS") as f64 / 1024.0
            );
        }
        if running_now >= tasks as u64 && submitted_at.is_some() {
            running_s = Some(t0.elapsed().as_secs_f64());
            break;
        }
    }
    let submitted_s = submitted_at.map_or(f64::NAN, |t| (t - t0).as_secs_f64());
    // Confirm through the user-facing list as well (a cheap check at these sizes).
    if running_s.is_some() && tasks <= 100_000 {
        let v = manager
            .tasks(Some("running"), None)
            .await
            .unwrap_or_default();
        assert_eq!(
            v.len(),
            tasks,
            "GET /tasks?state=running disagrees with /metrics"
        );
    }
    let held: usize = agents.iter().map(|a| a.tasks.lock().unwrap().len()).sum();
    if running_s.is_some() {
        assert_eq!(held, tasks, "the agents hold {held} tasks");
    }
    let out = Outcome {
        tasks,
        workers,
        hb_interval: interval.as_secs_f64(),
        register_s,
        submitted_s,
        placed_s,
        running_s,
        running: running_now,
        placements_per_s: placed_s.map_or(
            metric(&last, "poseidon_placements_total").unwrap_or(0) as f64
                / t0.elapsed().as_secs_f64(),
            |s| tasks as f64 / s,
        ),
        hwm_mib: proc_status_kb(&pid, "VmHWM") as f64 / 1024.0,
        manager_cpu_s: cpu_secs(&pid) - cpu0,
        bench_cpu_s: cpu_secs("self") - bench_cpu0,
        heartbeats: metric(&last, "poseidon_heartbeats_total").unwrap_or(0),
        reports: metric(&last, "poseidon_reports_total").unwrap_or(0),
        syncs: metric(&last, "poseidon_store_syncs_total").unwrap_or(0),
    };
    STOPPING.store(true, Ordering::Relaxed);
    shutdown.trigger();
    drop(agents);
    tokio::task::spawn_blocking(move || mgr.stop())
        .await
        .unwrap();
    // Let the agents' listeners and connections close before the next point.
    tokio::time::sleep(Duration::from_millis(500)).await;
    out
}

fn fmt_s(v: Option<f64>) -> String {
    v.map_or("not reached".into(), |s| format!("{s:.1}"))
}

fn print_row(r: &Outcome) {
    println!(
        "| {} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
        r.tasks,
        r.workers,
        r.hb_interval,
        r.register_s,
        r.submitted_s,
        fmt_s(r.placed_s),
        fmt_s(r.running_s),
        r.placements_per_s,
        r.hwm_mib,
        r.manager_cpu_s,
        r.bench_cpu_s,
        r.heartbeats,
        r.reports,
        r.syncs,
    );
}

fn machine() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "nproc = {nproc}, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn header() {
    println!(
        "| tasks | workers | hb every s | register s | submitted s | all placed s | all running s | \
         placements/s | manager peak RSS MiB | manager CPU s | bench CPU s | heartbeats | reports | fsyncs |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
}

fn main() {
    let o = parse_opts();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let points: Vec<(usize, usize)> = if o.curve {
        let mut p = vec![
            (1_000, 1_000),
            (10_000, 1_000),
            (100_000, 1_000),
            (100_000, 100),
            (100_000, 5_000),
        ];
        if o.c1m {
            p.push((1_000_000, 5_000));
        }
        p
    } else {
        vec![(o.tasks, o.workers)]
    };
    let bin: &Path = &manager_bin();
    println!(
        "# scale: manager {} ({}), scheduler {}, {} clients x {} specs per POST /tasks, {}",
        bin.display(),
        if bin.exists() { "found" } else { "MISSING" },
        o.scheduler,
        o.clients,
        o.batch,
        machine()
    );
    let mut rows = Vec::new();
    for (tasks, workers) in points {
        eprintln!(
            "== {tasks} tasks on {workers} simulated workers ({})",
            machine()
        );
        let r = rt.block_on(run_point(&o, tasks, workers));
        header();
        print_row(&r);
        if r.running_s.is_none() {
            println!("(only {} of {} running at the timeout)", r.running, r.tasks);
        }
        rows.push(r);
    }
    if rows.len() > 1 {
        println!("\n## curve ({})", machine());
        header();
        for r in &rows {
            print_row(r);
        }
    }
}
