//! The `poseidon` command line: start roles from a config file, or talk to a manager as a client
//! (`tasks.rs`, `nodes.rs`, `services.rs` for `poseidon service ...`).
//!
//! Exit codes: 0 done; 1 the operation failed (refused, unreachable, the task failed); 2 usage or
//! configuration error. Errors are one line on stderr.

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::client::ManagerClient;
use crate::cluster::{self, Roles};
use crate::config;
use crate::http::ClientError;

mod acl;
pub mod completions;
mod events;
mod ids;
mod nodes;
mod ops;
mod services;
mod tasks;

pub use events::EventsCmd;
pub use ops::ExecCmd;
pub use services::ServiceCmd;

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
    /// ACL token sent to the manager by client commands (default: $POSEIDON_TOKEN; with TLS,
    /// $POSEIDON_CA names the cluster CA to trust)
    #[argh(option)]
    pub token: Option<String>,
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
    /// Follow the manager's event stream.
    Events(EventsCmd),
    /// Run a command in a task's container.
    Exec(ExecCmd),
    /// Manage services (run, ls, status, scale, update, rollback, rm).
    Service(ServiceCmd),
    /// Manage ACL tokens.
    Acl(acl::AclCmd),
    /// Print a shell completion script.
    Completions(completions::CompletionsCmd),
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
    /// watch: redraw the table on every change (follows the event stream)
    #[argh(switch, short = 'w')]
    pub watch: bool,
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

/// Show the nodes, or drain one, or set its eligibility.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "node")]
pub struct NodeCmd {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
    #[argh(subcommand)]
    /// drain or eligibility (default: list the nodes)
    pub action: Option<nodes::NodeAction>,
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
    /// follow: print new output as the task writes it, until it stops
    #[argh(switch, short = 'f')]
    pub follow: bool,
    /// only output since an RFC 3339 time or a duration ago (10m)
    #[argh(option)]
    pub since: Option<String>,
    /// prefix each line with its time
    #[argh(switch, short = 't')]
    pub timestamps: bool,
    /// the logs of the run before the last restart
    #[argh(switch)]
    pub previous: bool,
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

/// The token of the global `--token` flag, set once by [`run`].
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The token client commands send: `--token`, then `$POSEIDON_TOKEN`.
fn token() -> Option<String> {
    TOKEN.get().cloned().or_else(|| {
        std::env::var("POSEIDON_TOKEN")
            .ok()
            .filter(|s| !s.is_empty())
    })
}

pub(super) fn manager_client(flag: &Option<String>) -> ManagerClient {
    let base = flag
        .clone()
        .or_else(|| {
            std::env::var("POSEIDON_MANAGER")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_MANAGER.to_string());
    client_at(&base, Duration::from_secs(10))
}

/// A client of the manager at `base` (trusting `$POSEIDON_CA` for `https://`, with the token).
pub(super) fn client_at(base: &str, timeout: Duration) -> ManagerClient {
    let http = match std::env::var("POSEIDON_CA").ok().filter(|s| !s.is_empty()) {
        None => crate::http::HttpClient::new(timeout),
        Some(path) => match cluster_ca_client(&path) {
            Ok(tls) => crate::http::HttpClient::with_tls(timeout, tls),
            Err(e) => {
                eprintln!("poseidon: POSEIDON_CA: {e}; https:// will not be trusted");
                crate::http::HttpClient::new(timeout)
            }
        },
    };
    ManagerClient::with_http(http, base).with_token(token())
}

/// A TLS client that trusts the cluster CA in the PEM file at `path` (`$POSEIDON_CA`; with
/// `tls = "auto"` it is `ca.pem` in the manager's data directory) and expects the manager's name.
fn cluster_ca_client(path: &str) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    crate::security::tls::client_config(&pem, crate::security::ca::MANAGER_NAME, None)
}

/// Runs the parsed command line; returns the process exit code.
pub async fn run(args: Args) -> i32 {
    if args.version {
        println!("poseidon {VERSION}");
        return 0;
    }
    if let Some(t) = args.token.filter(|t| !t.is_empty()) {
        // `run` is called once per process, so the cell is empty here.
        let _ = TOKEN.set(t);
    }
    let result = match args.command {
        None => serve(args.config, Roles::All).await,
        Some(Command::Manager(c)) => serve(c.config.or(args.config), Roles::Manager).await,
        Some(Command::Worker(c)) => serve(c.config.or(args.config), Roles::Worker(c.name)).await,
        Some(Command::Run(c)) => tasks::run_task(c).await,
        Some(Command::Status(c)) => tasks::status(c).await,
        Some(Command::Stop(c)) => tasks::stop(c).await,
        Some(Command::Node(c)) => nodes::node(c).await,
        Some(Command::Logs(c)) => tasks::logs(c).await,
        Some(Command::Version(c)) => nodes::version(c).await,
        Some(Command::Events(c)) => events::events(c).await,
        Some(Command::Exec(c)) => ops::exec(c).await,
        Some(Command::Service(c)) => services::service(c).await,
        Some(Command::Acl(c)) => acl::acl(c).await,
        Some(Command::Completions(c)) => completions::completions(c),
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

pub(super) fn print_json(v: &impl serde::Serialize) {
    // Laid out from the compact text, not by `to_string_pretty`, which prints a task's spec (kept
    // encoded, see `task::spec_types::EncodedSpec`) on one line.
    match serde_json::to_string(v) {
        Ok(s) => println!("{}", pretty_json(&s)),
        Err(e) => eprintln!("poseidon: cannot encode JSON: {e}"),
    }
}

/// Compact JSON text (as serde_json writes it: no space outside strings) laid out as
/// `serde_json::to_string_pretty` lays out a value: two spaces a level, `"key": value`, and empty
/// arrays and objects kept as `[]` and `{}`.
fn pretty_json(compact: &str) -> String {
    fn newline(out: &mut String, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
    let mut out = String::with_capacity(compact.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut chars = compact.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// The layout is `to_string_pretty`'s, for values with nesting, empty containers and strings
    /// holding brackets, commas, colons, quotes and backslashes.
    #[test]
    fn json_is_laid_out_as_serde_json_lays_it_out() {
        let values = [
            serde_json::json!({"a": 1, "b": [1, 2, {"c": null}], "d": {}, "e": [], "f": "x"}),
            serde_json::json!([{"s": "a,b:{c}[d]\"e\\"}, [], [[]], {"k": {"k": {}}}]),
            serde_json::json!({"spec": {"name": "n", "cmd": ["sh", "-c", "echo {}; [ 1 ]"]}, "n": -1.5}),
            serde_json::json!("plain"),
            serde_json::json!([]),
        ];
        for v in values {
            let compact = serde_json::to_string(&v).unwrap_or_default();
            let want = serde_json::to_string_pretty(&v).unwrap_or_default();
            assert_eq!(super::pretty_json(&compact), want);
        }
    }

    /// A task prints as it always did, its spec laid out like the rest (the spec's JSON is kept
    /// encoded, which `to_string_pretty` would print on one line).
    #[test]
    fn a_task_prints_with_its_spec_laid_out() {
        let spec =
            crate::spec::parse_submission(br#"{"name": "web", "image": "nginx", "cmd": ["a"]}"#)
                .map(|s| s.spec);
        let Ok(spec) = spec else {
            panic!("the spec parses");
        };
        let task = crate::task::Task::new(
            crate::task::TaskId::new(),
            spec,
            crate::task::State::Pending,
        );
        let compact = serde_json::to_string(&task).unwrap_or_default();
        let printed = super::pretty_json(&compact);
        assert!(
            printed.contains(
                "\n  \"spec\": {\n    \"name\": \"web\",\n    \"image\": \"nginx:latest\",\n"
            ),
            "{printed}"
        );
        let back: serde_json::Value = serde_json::from_str(&printed).unwrap_or_default();
        let want: serde_json::Value = serde_json::from_str(&compact).unwrap_or_default();
        assert_eq!(back, want);
    }
}
