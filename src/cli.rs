//! The `poseidon` command line: start roles from a config file, or talk to a manager as a client.
//!
//! Exit codes: 0 done; 1 the operation failed (refused, unreachable, the task failed); 2 usage or
//! configuration error. Errors are one line on stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;
use serde_json::Value;

use crate::client::ManagerClient;
use crate::cluster::{self, Roles};
use crate::config;
use crate::http::ClientError;
use crate::task::{State, Task};
use crate::util::{human_bytes, now_ms};

mod ids;

/// This binary's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
    /// print the version and exit
    #[argh(switch, short = 'V')]
    pub version: bool,
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
    /// Show the client's and the manager's versions.
    Version(VersionCmd),
}

/// Show the version of this binary and of the manager it talks to.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "version")]
pub struct VersionCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
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
    /// a task: its id, a unique id prefix, or its name
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
    /// the task: its id, a unique id prefix, or its name
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
    /// the task: its id, a unique id prefix, or its name
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

fn manager_client(flag: &Option<String>) -> ManagerClient {
    let base = flag
        .clone()
        .or_else(|| {
            std::env::var("POSEIDON_MANAGER")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_MANAGER.to_string());
    ManagerClient::new(&base, Duration::from_secs(10))
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(args: Args) -> i32 {
    if args.version {
        println!("poseidon {VERSION}");
        return 0;
    }
    let result = match args.command {
        None => serve(args.config, Roles::All).await,
        Some(Command::Manager(c)) => serve(c.config.or(args.config), Roles::Manager).await,
        Some(Command::Worker(c)) => serve(c.config.or(args.config), Roles::Worker(c.name)).await,
        Some(Command::Run(c)) => run_task(c).await,
        Some(Command::Status(c)) => status(c).await,
        Some(Command::Stop(c)) => stop(c).await,
        Some(Command::Node(c)) => node(c).await,
        Some(Command::Logs(c)) => logs(c).await,
        Some(Command::Version(c)) => version(c).await,
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
    let manager = manager_client(&c.manager);
    let tasks = match manager.submit(body).await {
        Ok(t) => t,
        // Bad input is the user's to fix: a usage error.
        Err(e @ ClientError::Status { status: 400, .. }) => {
            return Err(Failure::usage(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let task = match <[Task; 1]>::try_from(tasks) {
        Ok([task]) => task,
        Err(tasks) => {
            // A file holding an array stores every task; following several at once would
            // interleave their events, so print what was stored and let `status` follow up.
            if c.json {
                print_json(&tasks);
            } else {
                for t in &tasks {
                    println!("{}", t.id);
                }
            }
            return Ok(());
        }
    };
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
    let task = follow(&manager, &task, !c.json, |t| {
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
    manager: &ManagerClient,
    task: &Task,
    print: bool,
    done: impl Fn(&Task) -> bool,
) -> Result<Task, Failure> {
    // The history is capped, so events are recognised by content rather than position.
    let mut seen: std::collections::HashSet<(u64, State, String)> =
        std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let t = manager.task(task.id).await?;
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
    let manager = manager_client(&c.manager);
    if let Some(id) = &c.id {
        let t = manager.task(ids::resolve(&manager, id).await?).await?;
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
    if let Some(s) = &c.state {
        s.parse::<State>().map_err(Failure::usage)?;
    }
    let tasks = manager.tasks(c.state.as_deref(), None).await?;
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
    let manager = manager_client(&c.manager);
    let id = ids::resolve(&manager, &c.id).await?;
    if c.purge {
        let purged = manager.purge(id).await?;
        if c.json {
            print_json(&purged);
        } else {
            println!("task {} purged", purged.purged);
        }
        return Ok(());
    }
    let task = manager.stop(id).await?;
    let task = if c.detach {
        task
    } else {
        follow(&manager, &task, false, |t| t.state.is_terminal()).await?
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
    let nodes = manager_client(&c.manager).nodes().await?;
    if c.json {
        print_json(&nodes);
        return Ok(());
    }
    println!(
        "{:<12}  {:<9}  {:>5}  {:>9}  {:>10}  {:>11}  {:>5}  {:>6}  {:>8}  ADDRESS",
        "NAME", "STATE", "CPUS", "CPU RSVD", "MEMORY", "MEM RSVD", "TASKS", "CPU%", "LAST HB"
    );
    for n in nodes {
        println!(
            "{:<12}  {:<9}  {:>5.1}  {:>9.2}  {:>10}  {:>11}  {:>5}  {:>6.1}  {:>8}  {}",
            truncate(&n.name, 12),
            node_state(n.state),
            n.capacity.cpus,
            n.reserved_cpus,
            human_bytes(n.capacity.memory),
            human_bytes(n.reserved_memory),
            n.tasks,
            n.stats.cpu_percent,
            n.seconds_since_heartbeat
                .map(|s| format!("{s:.1}s"))
                .unwrap_or_else(|| "never".into()),
            n.address
        );
    }
    Ok(())
}

fn node_state(s: crate::wire::NodeState) -> &'static str {
    use crate::wire::NodeState::*;
    match s {
        Waiting => "waiting",
        Up => "up",
        Unhealthy => "unhealthy",
        Down => "down",
    }
}

async fn logs(c: LogsCmd) -> Result<(), Failure> {
    let manager = manager_client(&c.manager);
    let id = ids::resolve(&manager, &c.id).await?;
    let logs = manager.logs(id, c.tail).await?;
    if c.json {
        print_json(&logs);
        return Ok(());
    }
    print!("{}", logs.stdout);
    eprint!("{}", logs.stderr);
    Ok(())
}

async fn version(c: VersionCmd) -> Result<(), Failure> {
    let manager = manager_client(&c.manager);
    let health = manager.health().await;
    if c.json {
        print_json(&serde_json::json!({
            "client": VERSION,
            "manager": health.as_ref().ok().map(|h| h.version.clone()),
        }));
    } else {
        println!("client:  poseidon {VERSION}");
        if let Ok(h) = &health {
            println!("manager: poseidon {} at {}", h.version, manager.base());
        }
    }
    health
        .map(|_| ())
        .map_err(|e| Failure::op(format!("manager: {e}")))
}
