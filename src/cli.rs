//! The `poseidon` command line: start roles from a config file, or talk to a manager as a client.
//!
//! Exit codes: 0 done; 1 the operation failed (refused, unreachable, the task failed); 2 usage or
//! configuration error. Errors are one line on stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;
use hyper::Method;
use serde_json::Value;

use crate::cluster::{self, Roles};
use crate::config;
use crate::http::{check, ClientError, HttpClient};
use crate::task::{State, Task};
use crate::util::{human_bytes, now_ms};

/// The default manager URL for client commands.
pub const DEFAULT_MANAGER: &str = "http://127.0.0.1:5555";

/// Poseidon: a small, readable container orchestrator.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// cluster file to start every role of (default: an embedded single-machine cluster)
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// log format on stderr: text (default) or json (one object per line); RUST_LOG filters
    #[argh(option, default = "crate::logging::LogFormat::Text")]
    pub log_format: crate::logging::LogFormat,
    #[argh(subcommand)]
    /// what to do (default: start the cluster)
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    /// Start only the manager of a cluster file.
    Manager(ManagerCmd),
    /// Start one worker of a cluster file.
    Worker(WorkerCmd),
    /// Submit a task.
    Run(RunCmd),
    /// Show tasks.
    Status(StatusCmd),
    /// Stop a task.
    Stop(StopCmd),
    /// Show nodes.
    Node(NodeCmd),
    /// Show a task's logs.
    Logs(LogsCmd),
}

/// Start the manager role of a cluster file.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "manager")]
pub struct ManagerCmd {
    /// cluster file
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
}

/// Start one worker role of a cluster file.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "worker")]
pub struct WorkerCmd {
    /// cluster file
    #[argh(option, short = 'c')]
    pub config: Option<PathBuf>,
    /// which worker of the file to start
    #[argh(option)]
    pub name: String,
}

/// Submit a task and follow it until it runs.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct RunCmd {
    /// a task file (Poseidon JSON, or the Go original's TaskEvent)
    #[argh(option, short = 'f')]
    pub file: Option<PathBuf>,
    /// the image to run (instead of a file)
    #[argh(option)]
    pub image: Option<String>,
    /// the task's name
    #[argh(option)]
    pub name: Option<String>,
    /// a port to publish, as CONTAINER or HOST:CONTAINER (repeatable)
    #[argh(option, short = 'p')]
    pub port: Vec<String>,
    /// an environment variable, as KEY=VALUE (repeatable)
    #[argh(option, short = 'e')]
    pub env: Vec<String>,
    /// cpu cores to reserve
    #[argh(option)]
    pub cpus: Option<f64>,
    /// memory to reserve (bytes, or 256m, 1g)
    #[argh(option)]
    pub memory: Option<String>,
    /// restart policy: never, on-failure, always
    #[argh(option)]
    pub restart: Option<String>,
    /// return once stored instead of following the task until it runs
    #[argh(switch, short = 'd')]
    pub detach: bool,
    /// print the task as JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
    /// the command and its arguments, after `--`
    #[argh(positional, greedy)]
    pub cmd: Vec<String>,
}

/// Show all tasks, or one in detail.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct StatusCmd {
    /// a task id
    #[argh(positional)]
    pub id: Option<String>,
    /// only tasks in this state
    #[argh(option)]
    pub state: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Stop a task (it is never restarted).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "stop")]
pub struct StopCmd {
    /// the task id
    #[argh(positional)]
    pub id: String,
    /// forget a finished task entirely
    #[argh(switch)]
    pub purge: bool,
    /// return at once instead of waiting until it has stopped
    #[argh(switch, short = 'd')]
    pub detach: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Show the nodes.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "node")]
pub struct NodeCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Show a task's logs.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "logs")]
pub struct LogsCmd {
    /// the task id
    #[argh(positional)]
    pub id: String,
    /// only the last N lines
    #[argh(option)]
    pub tail: Option<usize>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// A CLI failure with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// 1 for a failed operation, 2 for usage and configuration errors.
    pub code: i32,
    /// One line for stderr.
    pub message: String,
}

impl Failure {
    fn op(m: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: m.into(),
        }
    }
    fn usage(m: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: m.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        Failure::op(e.to_string())
    }
}

fn manager_url(flag: &Option<String>) -> String {
    flag.clone()
        .or_else(|| {
            std::env::var("POSEIDON_MANAGER")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_MANAGER.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(args: Args) -> i32 {
    let result = match args.command {
        None => serve(args.config, Roles::All).await,
        Some(Command::Manager(c)) => serve(c.config.or(args.config), Roles::Manager).await,
        Some(Command::Worker(c)) => serve(c.config.or(args.config), Roles::Worker(c.name)).await,
        Some(Command::Run(c)) => run_task(c).await,
        Some(Command::Status(c)) => status(c).await,
        Some(Command::Stop(c)) => stop(c).await,
        Some(Command::Node(c)) => node(c).await,
        Some(Command::Logs(c)) => logs(c).await,
    };
    match result {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("poseidon: {}", f.message);
            f.code
        }
    }
}

async fn serve(path: Option<PathBuf>, roles: Roles) -> Result<(), Failure> {
    let cfg = match &path {
        Some(p) => config::load(p).map_err(|e| Failure::usage(e.to_string()))?,
        None => config::embedded_default(),
    };
    // `cluster::start` logs each role it starts, with its address and data directory.
    let running = cluster::start(&cfg, roles).await.map_err(Failure::usage)?;
    wait_for_signal().await;
    tracing::info!("shutting down (containers keep running)");
    running.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        (term, int) => {
            if let Err(e) = term.and(int) {
                tracing::warn!(error = %e, "cannot watch SIGTERM and SIGINT; waiting for Ctrl-C only");
            }
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot watch Ctrl-C either; shutting down");
            }
        }
    }
}

fn client() -> HttpClient {
    HttpClient::new(Duration::from_secs(10))
}

fn print_json(v: &impl serde::Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("poseidon: cannot encode JSON: {e}"),
    }
}

fn build_body(c: &RunCmd) -> Result<Vec<u8>, Failure> {
    match (&c.file, &c.image) {
        (Some(_), Some(_)) => Err(Failure::usage("give either -f FILE or --image, not both")),
        (None, None) => Err(Failure::usage(
            "nothing to run: give -f FILE or --image IMAGE",
        )),
        (Some(f), None) => std::fs::read(f)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", f.display()))),
        (None, Some(image)) => {
            let mut body = serde_json::Map::new();
            body.insert("image".into(), Value::from(image.clone()));
            if let Some(n) = &c.name {
                body.insert("name".into(), Value::from(n.clone()));
            }
            if !c.cmd.is_empty() {
                body.insert("cmd".into(), Value::from(c.cmd.clone()));
            }
            if !c.port.is_empty() {
                body.insert("ports".into(), Value::from(c.port.clone()));
            }
            if !c.env.is_empty() {
                body.insert("env".into(), Value::from(c.env.clone()));
            }
            if let Some(cpus) = c.cpus {
                body.insert("cpus".into(), Value::from(cpus));
            }
            if let Some(m) = &c.memory {
                body.insert("memory".into(), Value::from(m.clone()));
            }
            if let Some(r) = &c.restart {
                body.insert("restart_policy".into(), Value::from(r.clone()));
            }
            serde_json::to_vec(&Value::Object(body)).map_err(|e| Failure::usage(e.to_string()))
        }
    }
}

async fn run_task(c: RunCmd) -> Result<(), Failure> {
    if c.file.is_some() && (!c.cmd.is_empty() || c.name.is_some()) {
        return Err(Failure::usage(
            "--name and a command go with --image, not with -f",
        ));
    }
    let body = build_body(&c)?;
    let base = manager_url(&c.manager);
    let url = format!("{base}/tasks");
    let raw = client().send(Method::POST, &url, Some(body)).await?;
    if raw.status == 400 {
        // Bad input is the user's to fix: a usage error.
        let err = check(&url, &raw).err().map(|e| e.to_string());
        return Err(Failure::usage(err.unwrap_or_else(|| "bad request".into())));
    }
    check(&url, &raw)?;
    let task: Task = serde_json::from_slice(&raw.body)
        .map_err(|e| Failure::op(format!("unexpected answer from {url}: {e}")))?;
    if c.detach {
        if c.json {
            print_json(&task);
        } else {
            println!("{}", task.id);
        }
        return Ok(());
    }
    if !c.json {
        println!("task {} stored ({})", task.id, task.spec.image);
    }
    let task = follow(&base, &task, !c.json, |t| {
        t.state == State::Running || t.is_finished()
    })
    .await?;
    if c.json {
        print_json(&task);
    }
    match task.state {
        State::Running => Ok(()),
        State::Completed => Ok(()),
        _ => Err(Failure::op(format!(
            "task {} {}: {}",
            task.id,
            task.state,
            task.reason.unwrap_or_default()
        ))),
    }
}

/// Polls a task and prints each new event until `done` holds (or a deadline passes).
async fn follow(
    base: &str,
    task: &Task,
    print: bool,
    done: impl Fn(&Task) -> bool,
) -> Result<Task, Failure> {
    let url = format!("{base}/tasks/{}", task.id);
    // The history is capped, so events are recognised by content rather than position.
    let mut seen: std::collections::HashSet<(u64, State, String)> =
        std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let client = client();
    loop {
        let t: Task = client.get(&url).await?;
        for e in &t.events {
            if seen.insert((e.at_ms, e.state, e.reason.clone())) && print {
                let node = match e.node.as_deref() {
                    Some(n) if !e.reason.contains(n) => format!(" on {n}"),
                    _ => String::new(),
                };
                println!("  {:<10} {}{}", e.state.as_str(), e.reason, node);
            }
        }
        if done(&t) {
            if print && t.state == State::Running && !t.host_ports.is_empty() {
                let ports: Vec<String> = t
                    .host_ports
                    .iter()
                    .map(|p| format!("{}->{}/{}", p.host_port, p.container_port, p.protocol))
                    .collect();
                println!("  ports      {}", ports.join(", "));
            }
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(Failure::op(format!(
                "task {} is still {} after 300 s: {}",
                t.id,
                t.state,
                t.reason.unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn age(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn ports(t: &Task) -> String {
    if t.host_ports.is_empty() {
        return "-".into();
    }
    t.host_ports
        .iter()
        .map(|p| format!("{}->{}", p.host_port, p.container_port))
        .collect::<Vec<_>>()
        .join(",")
}

async fn status(c: StatusCmd) -> Result<(), Failure> {
    let base = manager_url(&c.manager);
    let client = client();
    if let Some(id) = &c.id {
        if id.parse::<crate::task::TaskId>().is_err() {
            return Err(Failure::usage(format!(
                "malformed task id {id:?} (expected a UUID)"
            )));
        }
        let t: Task = client.get(&format!("{base}/tasks/{id}")).await?;
        if c.json {
            print_json(&t);
            return Ok(());
        }
        println!("id:        {}", t.id);
        println!("name:      {}", t.spec.name);
        println!("image:     {}", t.spec.image);
        println!("state:     {} (desired: {:?})", t.state, t.desired);
        println!("node:      {}", t.node.as_deref().unwrap_or("-"));
        println!("ports:     {}", ports(&t));
        if let Some(h) = &t.health {
            println!("health:    {h}");
        }
        println!("restarts:  {}", t.restart_count);
        if let Some(code) = t.exit_code {
            println!("exit code: {code}");
        }
        println!("reason:    {}", t.reason.as_deref().unwrap_or("-"));
        println!("events:");
        for e in &t.events {
            println!(
                "  {}  {:<10} {}{}",
                crate::util::rfc3339(e.at_ms),
                e.state.as_str(),
                e.reason,
                e.node
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
        }
        return Ok(());
    }
    let mut url = format!("{base}/tasks");
    if let Some(s) = &c.state {
        s.parse::<State>().map_err(Failure::usage)?;
        url.push_str(&format!("?state={s}"));
    }
    let tasks: Vec<Task> = client.get(&url).await?;
    if c.json {
        print_json(&tasks);
        return Ok(());
    }
    println!(
        "{:<36}  {:<16}  {:<9}  {:<8}  {:<12}  {:>4}  {:>4}  REASON",
        "ID", "NAME", "STATE", "NODE", "PORTS", "RST", "AGE"
    );
    for t in tasks {
        println!(
            "{:<36}  {:<16}  {:<9}  {:<8}  {:<12}  {:>4}  {:>4}  {}",
            t.id,
            truncate(&t.spec.name, 16),
            t.state.as_str(),
            truncate(t.node.as_deref().unwrap_or("-"), 8),
            ports(&t),
            t.restart_count,
            age(t.created_ms),
            t.reason.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('~')).collect()
    }
}

async fn stop(c: StopCmd) -> Result<(), Failure> {
    if c.id.parse::<crate::task::TaskId>().is_err() {
        return Err(Failure::usage(format!(
            "malformed task id {:?} (expected a UUID)",
            c.id
        )));
    }
    let base = manager_url(&c.manager);
    let url = format!(
        "{base}/tasks/{}{}",
        c.id,
        if c.purge { "?purge=true" } else { "" }
    );
    let raw = client().send(Method::DELETE, &url, None).await?;
    check(&url, &raw)?;
    if c.purge {
        if !c.json {
            println!("task {} purged", c.id);
        } else {
            println!("{}", String::from_utf8_lossy(&raw.body));
        }
        return Ok(());
    }
    let task: Task = serde_json::from_slice(&raw.body)
        .map_err(|e| Failure::op(format!("unexpected answer from {url}: {e}")))?;
    let task = if c.detach {
        task
    } else {
        follow(&base, &task, false, |t| t.state.is_terminal()).await?
    };
    if c.json {
        print_json(&task);
    } else {
        println!(
            "task {} {}",
            task.id,
            if task.state.is_terminal() {
                task.state.as_str()
            } else {
                "stopping"
            }
        );
    }
    Ok(())
}

async fn node(c: NodeCmd) -> Result<(), Failure> {
    let base = manager_url(&c.manager);
    let nodes: Vec<Value> = client().get(&format!("{base}/nodes")).await?;
    if c.json {
        print_json(&nodes);
        return Ok(());
    }
    println!(
        "{:<12}  {:<9}  {:>5}  {:>9}  {:>10}  {:>11}  {:>5}  {:>6}  {:>8}  ADDRESS",
        "NAME", "STATE", "CPUS", "CPU RSVD", "MEMORY", "MEM RSVD", "TASKS", "CPU%", "LAST HB"
    );
    for n in nodes {
        let f = |k: &str| n.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let cap = n.get("capacity").cloned().unwrap_or(Value::Null);
        let stats = n.get("stats").cloned().unwrap_or(Value::Null);
        println!(
            "{:<12}  {:<9}  {:>5.1}  {:>9.2}  {:>10}  {:>11}  {:>5}  {:>6.1}  {:>8}  {}",
            truncate(n.get("name").and_then(Value::as_str).unwrap_or("?"), 12),
            n.get("state").and_then(Value::as_str).unwrap_or("?"),
            cap.get("cpus").and_then(Value::as_f64).unwrap_or(0.0),
            f("reserved_cpus"),
            human_bytes(cap.get("memory").and_then(Value::as_u64).unwrap_or(0)),
            human_bytes(
                n.get("reserved_memory")
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
            ),
            n.get("tasks").and_then(Value::as_u64).unwrap_or(0),
            stats
                .get("cpu_percent")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            n.get("seconds_since_heartbeat")
                .and_then(Value::as_f64)
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "never".into()),
            n.get("address").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(())
}

async fn logs(c: LogsCmd) -> Result<(), Failure> {
    if c.id.parse::<crate::task::TaskId>().is_err() {
        return Err(Failure::usage(format!(
            "malformed task id {:?} (expected a UUID)",
            c.id
        )));
    }
    let base = manager_url(&c.manager);
    let mut url = format!("{base}/tasks/{}/logs", c.id);
    if let Some(n) = c.tail {
        url.push_str(&format!("?tail={n}"));
    }
    let v: Value = client().get(&url).await?;
    if c.json {
        print_json(&v);
        return Ok(());
    }
    print!("{}", v.get("stdout").and_then(Value::as_str).unwrap_or(""));
    eprint!("{}", v.get("stderr").and_then(Value::as_str).unwrap_or(""));
    Ok(())
}
