//! Commands that follow the manager's event stream (`GET /events`): `events` prints it, `status
//! -w` redraws the task table on each event, and `run` follows its task through it (falling back
//! to polling when the stream breaks).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::{manager_client, Failure};
use crate::client::{EventLine, EventLines, ManagerClient};
use crate::task::{State, TaskId};
use crate::util::rfc3339;
use crate::wire::{Event, EventBody};

/// Follow the manager's event stream (task and node changes).
#[derive(argh::FromArgs, Debug)]
#[argh(subcommand, name = "events")]
pub struct EventsCmd {
    /// replay the events after this index first (the manager keeps a bounded history)
    #[argh(option)]
    pub index: Option<u64>,
    /// print each event as its JSON line
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// One event as a line of text.
pub(super) fn describe(e: &Event) -> String {
    let at = rfc3339(e.at_ms);
    match &e.body {
        EventBody::Task {
            id,
            name,
            state,
            node,
            reason,
            removed,
            ..
        } => format!(
            "{:>6}  {at}  task  {id} {name:<12} {:<9} {}{}",
            e.index,
            if *removed { "purged" } else { state.as_str() },
            node.as_deref().unwrap_or("-"),
            reason
                .as_deref()
                .map(|r| format!("  {r}"))
                .unwrap_or_default(),
        ),
        EventBody::Node {
            name,
            state,
            problem,
        } => format!(
            "{:>6}  {at}  node  {name} {}{}",
            e.index,
            super::nodes::node_state(*state),
            problem
                .as_deref()
                .map(|p| format!("  {p}"))
                .unwrap_or_default()
        ),
        EventBody::Service { name, state } => {
            format!("{:>6}  {at}  service  {name} {state}", e.index)
        }
    }
}

/// `poseidon events`: prints the stream until it ends; an error line ends it with exit code 1.
pub(super) async fn events(c: EventsCmd) -> Result<(), Failure> {
    let manager = manager_client(&c.manager);
    let mut stream = manager.events(c.index).await?;
    loop {
        match stream.next().await? {
            Some(EventLine::Event(e)) => {
                if c.json {
                    match serde_json::to_string(&e) {
                        Ok(s) => println!("{s}"),
                        Err(err) => eprintln!("poseidon: cannot encode an event: {err}"),
                    }
                } else {
                    println!("{}", describe(&e));
                }
            }
            Some(EventLine::End(end)) => {
                let resume = end
                    .last_index
                    .map(|i| format!(" (last index {i})"))
                    .unwrap_or_default();
                return Err(Failure::op(format!("{}{resume}", end.error)));
            }
            None => return Err(Failure::op("the manager closed the event stream")),
        }
    }
}

/// `poseidon status -w`: the task table, redrawn after events (at most five times a second).
pub(super) async fn watch(manager: &ManagerClient, state: Option<&str>) -> Result<(), Failure> {
    let mut stream = manager.events(None).await?;
    let clear = std::io::stdout().is_terminal();
    loop {
        let tasks = manager.tasks(state, None).await?;
        if clear {
            print!("\x1b[H\x1b[2J");
        }
        println!("{}", super::tasks::table(&tasks));
        // Wait for an event, then let a burst settle before the next redraw.
        wait_event(&mut stream).await?;
        let settle = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                _ = &mut settle => break,
                r = wait_event(&mut stream) => r?,
            }
        }
    }
}

async fn wait_event(stream: &mut EventLines) -> Result<(), Failure> {
    match stream.next().await? {
        Some(EventLine::Event(_)) => Ok(()),
        Some(EventLine::End(end)) => Err(Failure::op(end.error)),
        None => Err(Failure::op("the manager closed the event stream")),
    }
}

/// Follows one task through an event stream opened before it was submitted, printing each new
/// state and reason, until `done` holds. `Ok(None)` means the stream broke: poll instead.
pub(super) async fn follow_task(
    stream: &mut EventLines,
    id: TaskId,
    print: bool,
    done: impl Fn(State) -> bool,
    deadline: Instant,
) -> Result<Option<State>, Failure> {
    let mut last: Option<(State, Option<String>)> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match tokio::time::timeout(left, stream.next()).await {
            Err(_) => {
                let (state, reason) = last.unwrap_or((State::Pending, None));
                return Err(Failure::op(format!(
                    "task {id} is still {state} after 300 s: {}",
                    reason.unwrap_or_default()
                )));
            }
            Ok(Ok(Some(EventLine::Event(e)))) => e,
            Ok(Ok(_)) | Ok(Err(_)) => return Ok(None),
        };
        let EventBody::Task {
            id: tid,
            state,
            node,
            reason,
            ..
        } = line.body
        else {
            continue;
        };
        if tid != id {
            continue;
        }
        let now = (state, reason.clone());
        if last.as_ref() != Some(&now) {
            if print {
                let reason = reason.unwrap_or_default();
                let on = match node.as_deref() {
                    Some(n) if !reason.contains(n) => format!(" on {n}"),
                    _ => String::new(),
                };
                println!("  {:<10} {}{}", state.as_str(), reason, on);
            }
            last = Some(now);
        }
        if done(state) {
            return Ok(Some(state));
        }
    }
}
