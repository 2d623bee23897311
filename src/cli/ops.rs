//! `logs` with `-f`, `--since`, `--timestamps` and `--previous`, and `exec`.

use std::io::Write;

use super::{ids, manager_client, print_json, Failure, LogsCmd};
use crate::client::ManagerClient;
use crate::http::encode_component;
use crate::task::TaskId;
use crate::wire::ExecRequest;

/// Run a command in a task's container and exit with its exit code.
#[derive(argh::FromArgs, Debug)]
#[argh(subcommand, name = "exec")]
pub struct ExecCmd {
    /// the task: its id, a unique id prefix, or its name
    #[argh(positional)]
    pub id: String,
    /// the command and its arguments, after `--`
    #[argh(positional, greedy)]
    pub cmd: Vec<String>,
    /// how long the command may run (default 30s, at most 10m)
    #[argh(option)]
    pub timeout: Option<String>,
    /// print the answer as JSON (and exit 0 whatever the command's code)
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// The exit code of an exec: the command's, or 1 when it does not fit one.
fn exit_code(code: i64) -> i32 {
    i32::try_from(code)
        .ok()
        .filter(|c| (0..=255).contains(c))
        .unwrap_or(1)
}

pub(super) async fn exec(c: ExecCmd) -> Result<(), Failure> {
    let cmd: Vec<String> = match c.cmd.first().map(String::as_str) {
        Some("--") => c.cmd[1..].to_vec(),
        _ => c.cmd.clone(),
    };
    if cmd.is_empty() {
        return Err(Failure::usage(
            "exec needs a command: poseidon exec ID -- CMD ARGS...",
        ));
    }
    let manager = manager_client(&c.manager);
    let id = ids::resolve(&manager, &c.id).await?;
    let req = ExecRequest {
        cmd,
        timeout: c.timeout.clone(),
    };
    let timeout = crate::worker::ops::exec_timeout(c.timeout.as_deref())
        .map_err(|e| Failure::usage(e.message))?;
    let reply = manager
        .with_timeout(timeout + std::time::Duration::from_secs(15))
        .exec(id, &req)
        .await?;
    if c.json {
        print_json(&reply);
        return Ok(());
    }
    print!("{}", reply.stdout);
    eprint!("{}", reply.stderr);
    flush();
    match exit_code(reply.exit_code) {
        0 => Ok(()),
        code => Err(Failure {
            code,
            message: format!("the command exited with code {}", reply.exit_code),
        }),
    }
}

fn flush() {
    if let Err(e) = std::io::stdout().flush() {
        eprintln!("poseidon: cannot write to stdout: {e}");
    }
}

/// The query for the manager's logs route.
fn query(c: &LogsCmd) -> String {
    let mut q = Vec::new();
    if let Some(n) = c.tail {
        q.push(format!("tail={n}"));
    }
    if let Some(s) = &c.since {
        q.push(format!("since={}", encode_component(s)));
    }
    if c.timestamps {
        q.push("timestamps=true".into());
    }
    if c.previous {
        q.push("previous=true".into());
    }
    q.join("&")
}

/// `logs` with options: answered whole, or followed (`-f`) until the task stops or the user
/// presses Ctrl-C.
pub(super) async fn logs(manager: &ManagerClient, id: TaskId, c: &LogsCmd) -> Result<(), Failure> {
    if c.previous && (c.follow || c.since.is_some() || c.timestamps) {
        return Err(Failure::usage(
            "--previous shows the kept logs of the last run; it takes no -f, --since or -t",
        ));
    }
    let q = query(c);
    if !c.follow {
        let logs = manager.logs_with(id, &q).await?;
        if c.json {
            print_json(&logs);
        } else {
            print!("{}", logs.stdout);
            eprint!("{}", logs.stderr);
        }
        return Ok(());
    }
    let mut stream = manager.follow_logs(id, &q).await?;
    while let Some(line) = stream.line().await? {
        if line.is_empty() {
            continue;
        }
        if c.json {
            println!("{}", String::from_utf8_lossy(&line));
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(&line)
            .map_err(|e| Failure::op(format!("unexpected log line: {e}")))?;
        if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
            return Err(Failure::op(err.to_string()));
        }
        let data = v.get("data").and_then(|d| d.as_str()).unwrap_or("");
        if v.get("stream").and_then(|s| s.as_str()) == Some("stderr") {
            eprint!("{data}");
        } else {
            print!("{data}");
            flush();
        }
    }
    Ok(())
}
