//! The task model shared by the manager and the workers.
//!
//! A task is a wish (its [`TaskSpec`] and its [`Desired`] state) and an observation (its [`State`], the
//! node and container it runs in, its exit code and its history). Every change of [`State`] goes through
//! [`transition`], which knows the legal moves and no others, so an illegal change is an error and never
//! a silent overwrite.
//!
//! The spec's types (what to run) are in `task/spec_types.rs`, re-exported here; the spec parsing
//! itself lives in `spec/`.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::util::now_ms;

/// How many events each task keeps in its history; older ones are dropped.
pub const HISTORY_CAP: usize = 32;

/// A task's identity: a UUID, made by the server unless the request carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// Makes a fresh random id.
    pub fn new() -> Self {
        TaskId(Uuid::new_v4())
    }

    /// The first eight hex digits, used in container names.
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..8].to_string()
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(TaskId)
            .map_err(|_| format!("malformed task id {s:?} (expected a UUID)"))
    }
}

/// The observed state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Stored, waiting for a node.
    Pending,
    /// Placed on a node; its container is being prepared or started.
    Scheduled,
    /// Its container runs.
    Running,
    /// It ended well: exit code 0, or stopped by the user.
    Completed,
    /// It ended badly: a non-zero exit, an unhealthy container, or a start that failed.
    Failed,
}

impl State {
    /// All states, in lifecycle order.
    pub const ALL: [State; 5] = [
        State::Pending,
        State::Scheduled,
        State::Running,
        State::Completed,
        State::Failed,
    ];

    /// True for Completed and Failed.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Completed | State::Failed)
    }

    /// The lower-case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Scheduled => "scheduled",
            State::Running => "running",
            State::Completed => "completed",
            State::Failed => "failed",
        }
    }

    /// The Go original's integer for this state (`Pending` = 0 ... `Failed` = 4).
    pub fn from_go(n: i64) -> Option<State> {
        State::ALL.get(usize::try_from(n).ok()?).copied()
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?} (valid: pending, scheduled, running, completed, failed)"
                )
            })
    }
}

/// A state change that the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition from {from} to {to}")]
pub struct IllegalTransition {
    /// The state the task was in.
    pub from: State,
    /// The state that was asked for.
    pub to: State,
}

/// Checks one state change against the lifecycle; the only place that knows the legal moves.
///
/// Pending -> Scheduled | Failed | Completed (stopped before it ran);
/// Scheduled -> Running | Failed | Pending (dispatch lost, node down) | Completed (stopped);
/// Running -> Completed | Failed | Pending (node down: to be rescheduled);
/// Completed | Failed -> Scheduled (restart by policy). Staying in the same state is not a move.
pub fn transition(from: State, to: State) -> Result<(), IllegalTransition> {
    use State::*;
    let legal = matches!(
        (from, to),
        (Pending, Scheduled | Failed | Completed)
            | (Scheduled, Running | Failed | Pending | Completed)
            | (Running, Completed | Failed | Pending)
            | (Completed | Failed, Scheduled)
    );
    if legal {
        Ok(())
    } else {
        Err(IllegalTransition { from, to })
    }
}

/// Finds the shortest legal path from `from` to `to` (excluding `from`), used when a report skipped
/// intermediate states (a worker that restarted a task reports Running while the manager still has
/// Failed: the path is Scheduled, Running). `None` when no legal path exists.
pub fn path(from: State, to: State) -> Option<Vec<State>> {
    if from == to {
        return Some(Vec::new());
    }
    if transition(from, to).is_ok() {
        return Some(vec![to]);
    }
    State::ALL.into_iter().find_map(|mid| {
        (transition(from, mid).is_ok() && transition(mid, to).is_ok()).then(|| vec![mid, to])
    })
}

/// What the user wants of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// It should run (and be restarted as its policy says).
    Run,
    /// It should stop and never be restarted.
    Stop,
}

mod spec_types;
pub use spec_types::*;

/// One entry of a task's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The state entered (or kept, for notes such as "pulling").
    pub state: State,
    /// The node involved, if any. Shared (the manager gives equal strings one copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Arc<str>>,
    /// Why. Shared like `node`: a million tasks' histories hold a few distinct reasons.
    pub reason: Arc<str>,
    /// The container's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
}

/// A published port as bound on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    /// The port inside the container.
    pub container_port: u16,
    /// The port on the host.
    pub host_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// A task: what is wanted and what is seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Its id.
    pub id: TaskId,
    /// What to run.
    pub spec: TaskSpec,
    /// Observed state.
    pub state: State,
    /// Desired state.
    pub desired: Desired,
    /// Assignment generation: incremented by each placement; the worker holding an older one stops.
    pub generation: u64,
    /// The node it is placed on.
    #[serde(default)]
    pub node: Option<String>,
    /// Its current container, if any.
    #[serde(default)]
    pub container_id: Option<String>,
    /// Host ports bound by its container.
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
    /// The last exit code.
    #[serde(default)]
    pub exit_code: Option<i64>,
    /// How many times its node restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// Health as its checks last saw it (`healthy`, `unhealthy`, `starting`), when it has checks.
    #[serde(default)]
    pub health: Option<String>,
    /// Why it is in its state (`stopped`, `exited with code 3`, the daemon's message...).
    #[serde(default)]
    pub reason: Option<String>,
    /// Created, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Last changed, milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// Last started running, milliseconds since the Unix epoch.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// Last ended, milliseconds since the Unix epoch.
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// The last events, oldest first, at most [`HISTORY_CAP`].
    #[serde(default)]
    pub events: VecDeque<TaskEvent>,
    /// The service it is a copy of, if any (`GET /tasks?service=NAME` filters on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The version of its service it runs (with `service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl Task {
    /// A new task in `state` with `desired` = run.
    pub fn new(id: TaskId, spec: TaskSpec, state: State) -> Task {
        let now = now_ms();
        let mut task = Task {
            id,
            spec,
            state,
            desired: Desired::Run,
            generation: 0,
            node: None,
            container_id: None,
            host_ports: Vec::new(),
            exit_code: None,
            restart_count: 0,
            health: None,
            reason: None,
            created_ms: now,
            updated_ms: now,
            started_ms: None,
            finished_ms: None,
            events: VecDeque::new(),
            service: None,
            version: None,
        };
        task.record(state, "submitted");
        task
    }

    /// Moves to `to` if the lifecycle allows it, recording why.
    pub fn set_state(&mut self, to: State, reason: &str) -> Result<(), IllegalTransition> {
        self.set_state_at(to, reason, now_ms())
    }

    /// [`Task::set_state`] at a given time (ms since the epoch), for code that must not read the
    /// clock itself (the manager's pure reconciler).
    pub fn set_state_at(
        &mut self,
        to: State,
        reason: &str,
        now: u64,
    ) -> Result<(), IllegalTransition> {
        transition(self.state, to)?;
        self.state = to;
        match to {
            State::Running => self.started_ms = Some(now),
            State::Completed | State::Failed => self.finished_ms = Some(now),
            _ => {}
        }
        self.record_at(to, reason, now);
        Ok(())
    }

    /// Records an event (a state change, or a note within a state) in the capped history.
    pub fn record(&mut self, state: State, reason: &str) {
        self.record_at(state, reason, now_ms());
    }

    /// [`Task::record`] at a given time (ms since the epoch).
    pub fn record_at(&mut self, state: State, reason: &str, now: u64) {
        self.updated_ms = now;
        self.reason = Some(reason.to_string());
        if self.events.len() >= HISTORY_CAP {
            self.events.pop_front();
        }
        self.events.push_back(TaskEvent {
            at_ms: now,
            state,
            node: self.node.as_deref().map(Arc::from),
            reason: Arc::from(reason),
            exit_code: if state.is_terminal() {
                self.exit_code
            } else {
                None
            },
        });
    }

    /// The container name: `poseidon-<name>-<short id>`, so names never collide.
    pub fn container_name(&self) -> String {
        let name: String = self
            .spec
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("poseidon-{}-{}", name, self.id.short())
    }

    /// True when the task is finished and nothing will start it again on its own.
    pub fn is_finished(&self) -> bool {
        self.state.is_terminal()
            && (self.desired == Desired::Stop
                || !self
                    .spec
                    .restart_policy
                    .should_restart(self.state == State::Failed, self.restart_count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spec's JSON is kept with its shared body (`EncodedSpec`) and reused; it is the JSON the
    /// fields give, written out here, and a change through `DerefMut`, or another name on the same
    /// body, is never answered with the kept one.
    #[test]
    fn a_spec_kept_encoded_is_the_json_of_its_fields_after_every_change() {
        let Ok(sub) = crate::spec::parse_submission(
            br#"{"name": "a", "image": "busybox", "cmd": ["sleep", "1"]}"#,
        ) else {
            panic!("the spec parses");
        };
        let spec = sub.spec;
        let json = |s: &TaskSpec| serde_json::to_string(s).unwrap_or_default();
        let want_a = r#"{"name":"a","image":"busybox:latest","cmd":["sleep","1"],"cpus":0.0,"memory":0,"restart_policy":{"policy":"never","backoff_ms":10000,"max_backoff_ms":300000,"reset_after_ms":600000}}"#;
        assert_eq!(json(&spec), want_a);
        assert_eq!(json(&spec), want_a, "the kept JSON");
        // Another task of the same body, under another name.
        let mut other = spec.clone();
        other.name = "b".into();
        assert!(Arc::ptr_eq(&spec.body, &other.body));
        assert_eq!(
            json(&other),
            want_a.replace(r#""name":"a""#, r#""name":"b""#)
        );
        assert_eq!(json(&spec), want_a);
        // A change of a field, on a body shared and on a body held alone.
        let mut changed = spec.clone();
        changed.cmd = vec!["true".into()];
        assert_eq!(
            json(&changed),
            want_a.replace(r#"["sleep","1"]"#, r#"["true"]"#)
        );
        drop(other);
        let mut alone = spec;
        assert_eq!(Arc::strong_count(&alone.body), 1);
        alone.memory = 1 << 20;
        assert_eq!(
            json(&alone),
            want_a.replace(r#""memory":0"#, r#""memory":1048576"#)
        );
        // Decoded back, it is the same spec.
        let back: TaskSpec = serde_json::from_str(&json(&alone)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, alone);
    }

    #[test]
    fn the_transition_matrix_is_exactly_the_documented_one() {
        // Rows: from; columns: to; in the order Pending, Scheduled, Running, Completed, Failed.
        // Written out by hand from DESIGN.md section 4, not derived from `transition`.
        const X: bool = true;
        const O: bool = false;
        let expected: [[bool; 5]; 5] = [
            /* Pending   */ [O, X, O, X, X],
            /* Scheduled */ [X, O, X, X, X],
            /* Running   */ [X, O, O, X, X],
            /* Completed */ [O, X, O, O, O],
            /* Failed    */ [O, X, O, O, O],
        ];
        for (i, from) in State::ALL.into_iter().enumerate() {
            for (j, to) in State::ALL.into_iter().enumerate() {
                assert_eq!(
                    transition(from, to).is_ok(),
                    expected[i][j],
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn a_skipped_state_is_bridged_by_a_legal_path() {
        assert_eq!(
            path(State::Failed, State::Running),
            Some(vec![State::Scheduled, State::Running])
        );
        assert_eq!(
            path(State::Pending, State::Running),
            Some(vec![State::Scheduled, State::Running])
        );
        assert_eq!(path(State::Running, State::Running), Some(vec![]));
        assert_eq!(
            path(State::Completed, State::Failed),
            Some(vec![State::Scheduled, State::Failed])
        );
    }

    #[test]
    fn an_illegal_set_state_leaves_the_task_unchanged() {
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name":"a","image":"busybox"}"#).expect("spec parses");
        let mut task = Task::new(TaskId::new(), spec, State::Completed);
        let before = task.clone();
        assert!(task.set_state(State::Running, "nope").is_err());
        assert_eq!(task, before);
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_and_caps_at_five_minutes() {
        let p = RestartPolicy::of(RestartKind::Always);
        let secs: Vec<u64> = (0..7).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(p.backoff(200).as_secs(), 300);
    }

    #[test]
    fn on_failure_respects_its_maximum_and_ignores_success() {
        let mut p = RestartPolicy::of(RestartKind::OnFailure);
        p.max_restarts = Some(2);
        assert!(p.should_restart(true, 0));
        assert!(p.should_restart(true, 1));
        assert!(!p.should_restart(true, 2));
        assert!(!p.should_restart(false, 0));
        assert!(RestartPolicy::of(RestartKind::Always).should_restart(false, 99));
        assert!(!RestartPolicy::of(RestartKind::Never).should_restart(true, 0));
    }

    #[test]
    fn history_keeps_only_the_last_entries() {
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name":"a","image":"busybox"}"#).expect("spec parses");
        let mut task = Task::new(TaskId::new(), spec, State::Pending);
        for i in 0..100 {
            task.record(State::Pending, &format!("note {i}"));
        }
        assert_eq!(task.events.len(), HISTORY_CAP);
        assert_eq!(task.events.back().map(|e| &*e.reason), Some("note 99"));
    }

    /// A manager holds every task boxed in memory (a million at the scale point of BENCHMARKS.md).
    /// mimalloc, the binary's allocator, rounds a box up to its size class (256, 320, 384 ... 640
    /// bytes). With the spec inline a `Task` was 592 bytes, a 640-byte block; with the spec's body
    /// behind a shared pointer it is 320, half of that (about 300 MiB less at a million). A field
    /// that pushes it past 320 should be boxed, or this bound moved knowingly.
    #[test]
    fn a_task_stays_within_the_320_byte_allocation_class() {
        let size = std::mem::size_of::<Task>();
        assert!(size <= 320, "a Task is {size} bytes");
        assert_eq!(
            std::mem::size_of::<TaskSpec>(),
            32,
            "a spec is its name and a pointer to the shared body"
        );
    }

    #[test]
    fn container_names_are_sanitised_and_unique_per_id() {
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name":"my web/app","image":"busybox"}"#).expect("parses");
        let a = Task::new(TaskId::new(), spec.clone(), State::Pending);
        let b = Task::new(TaskId::new(), spec, State::Pending);
        assert!(a.container_name().starts_with("poseidon-my-web-app-"));
        assert_ne!(a.container_name(), b.container_name());
    }
}
