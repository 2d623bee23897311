//! The task commands: `run` (and following a task until it runs), `status`, `stop`, `logs`.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ids, manager_client, print_json, Failure, LogsCmd, RunCmd, StatusCmd, StopCmd};
use crate::client::ManagerClient;
use crate::http::ClientError;
use crate::task::{State, Task};
use crate::util::now_ms;

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

pub(super) async fn run_task(c: RunCmd) -> Result<(), Failure> {
    if c.file.is_some() && (!c.cmd.is_empty() || c.name.is_some()) {
        return Err(Failure::usage(
            "--name and a command go with --image, not with -f",
        ));
    }
    let body = build_body(&c)?;
    let manager = manager_client(&c.manager);
    // Subscribed before the submission, so that no change of the new task can be missed; a
    // manager without the stream (or any failure to open it) leaves `run` polling.
    let mut stream = if c.detach {
        None
    } else {
        match manager.events(None).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "cannot follow the event stream; polling instead");
                None
            }
        }
    };
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
    let done = |t: &Task| t.state == State::Running || t.is_finished();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut followed = None;
    while let Some(s) = stream.as_mut() {
        let stop_at = |s: State| s == State::Running || s.is_terminal();
        match super::events::follow_task(s, task.id, !c.json, stop_at, deadline).await? {
            // A terminal state that the restart policy will leave: keep following.
            Some(_) => {
                let t = manager.task(task.id).await?;
                if done(&t) {
                    followed = Some(t);
                    break;
                }
            }
            None => {
                if !c.json {
                    eprintln!("poseidon: the event stream broke; polling instead");
                }
                stream = None;
            }
        }
    }
    let task = match followed {
        Some(t) => {
            if !c.json {
                print_ports(&t);
            }
            t
        }
        None => follow(&manager, &task, !c.json, done).await?,
    };
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
    let mut seen: std::collections::HashSet<(u64, State, std::sync::Arc<str>)> =
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
            if print {
                print_ports(&t);
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

/// Prints a running task's published ports.
fn print_ports(t: &Task) {
    if t.state == State::Running && !t.host_ports.is_empty() {
        let ports: Vec<String> = t
            .host_ports
            .iter()
            .map(|p| format!("{}->{}/{}", p.host_port, p.container_port, p.protocol))
            .collect();
        println!("  ports      {}", ports.join(", "));
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

/// A task's name in the table: `web@v2` for version 2 of service `web`.
fn display_name(t: &Task) -> String {
    match (&t.service, t.version) {
        (Some(s), Some(v)) => format!("{s}@v{v}"),
        _ => t.spec.name.clone(),
    }
}

pub(super) async fn status(c: StatusCmd) -> Result<(), Failure> {
    let manager = manager_client(&c.manager);
    if let Some(id) = &c.id {
        let t = manager.task(ids::resolve(&manager, id).await?).await?;
        if c.json {
            print_json(&t);
            return Ok(());
        }
        println!("id:        {}", t.id);
        println!("name:      {}", t.spec.name);
        if let Some(svc) = &t.service {
            println!(
                "service:   {svc} (version {})",
                t.version.map(|v| v.to_string()).unwrap_or_default()
            );
        }
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
    if c.watch {
        if c.json {
            return Err(Failure::usage(
                "-w redraws a table; use `poseidon events --json` for JSON",
            ));
        }
        return super::events::watch(&manager, c.state.as_deref()).await;
    }
    let tasks = manager.tasks(c.state.as_deref(), None).await?;
    if c.json {
        print_json(&tasks);
        return Ok(());
    }
    println!("{}", table(&tasks));
    Ok(())
}

/// The task table of `status` (without a trailing newline).
pub(super) fn table(tasks: &[Task]) -> String {
    let mut out = format!(
        "{:<36}  {:<16}  {:<9}  {:<8}  {:<12}  {:>4}  {:>4}  REASON",
        "ID", "NAME", "STATE", "NODE", "PORTS", "RST", "AGE"
    );
    for t in tasks {
        out.push('\n');
        out.push_str(&format!(
            "{:<36}  {:<16}  {:<9}  {:<8}  {:<12}  {:>4}  {:>4}  {}",
            t.id,
            truncate(&display_name(t), 16),
            t.state.as_str(),
            truncate(t.node.as_deref().unwrap_or("-"), 8),
            ports(t),
            t.restart_count,
            age(t.created_ms),
            t.reason.as_deref().unwrap_or("")
        ));
    }
    out
}

pub(super) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('~')).collect()
    }
}

pub(super) async fn stop(c: StopCmd) -> Result<(), Failure> {
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

pub(super) async fn logs(c: LogsCmd) -> Result<(), Failure> {
    let manager = manager_client(&c.manager);
    let id = ids::resolve(&manager, &c.id).await?;
    let logs = if c.follow || c.since.is_some() || c.timestamps || c.previous {
        return super::ops::logs(&manager, id, &c).await;
    } else {
        manager.logs(id, c.tail).await?
    };
    if c.json {
        print_json(&logs);
        return Ok(());
    }
    print!("{}", logs.stdout);
    eprint!("{}", logs.stderr);
    Ok(())
}
