//! Table-driven tests of the node reconciler, in the style of Nomad's `reconcile_test.go`: each row
//! is what node `n1` holds, what the manager's index says, and the plan that must come out, written
//! out by hand.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::task::TaskSpec;

/// The node every row reconciles.
const NODE: &str = "n1";
/// The clock the reconciler is given.
const NOW: u64 = 1_700_000_000_000;

/// The manager's view of the task.
#[derive(Clone, Copy)]
struct Mgr {
    desired: Desired,
    node: Option<&'static str>,
    generation: u64,
    state: TaskState,
    /// Whether its placement is synced.
    durable: bool,
}

/// What the node says it holds.
#[derive(Clone, Copy)]
struct Held {
    generation: u64,
    state: TaskState,
    desired: Desired,
    reason: Option<&'static str>,
}

/// The plan expected for the row's task.
struct Want {
    assign: bool,
    /// (reason, purge)
    stop: Option<(&'static str, bool)>,
    /// (state, node, requeue)
    update: Option<(TaskState, Option<&'static str>, bool)>,
}

struct Row {
    name: &'static str,
    manager: Option<Mgr>,
    held: Option<Held>,
    full: bool,
    want: Want,
}

const fn mgr(
    desired: Desired,
    node: Option<&'static str>,
    generation: u64,
    state: TaskState,
) -> Mgr {
    Mgr {
        desired,
        node,
        generation,
        state,
        durable: true,
    }
}

const fn held(generation: u64, state: TaskState, desired: Desired) -> Held {
    Held {
        generation,
        state,
        desired,
        reason: None,
    }
}

const NOTHING: Want = Want {
    assign: false,
    stop: None,
    update: None,
};

use Desired::{Run, Stop};
use TaskState::{Completed, Failed, Pending, Running, Scheduled};

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "the worker started what the manager scheduled: the task runs",
            manager: Some(mgr(Run, Some("n1"), 2, Scheduled)),
            held: Some(held(2, Running, Run)),
            full: false,
            want: Want {
                update: Some((Running, Some("n1"), false)),
                ..NOTHING
            },
        },
        Row {
            name: "a status the manager already has changes nothing",
            manager: Some(mgr(Run, Some("n1"), 2, Running)),
            held: Some(held(2, Running, Run)),
            full: true,
            want: NOTHING,
        },
        Row {
            name: "a stale generation is ignored and its copy purged",
            manager: Some(mgr(Run, Some("n1"), 2, Running)),
            held: Some(held(1, Running, Run)),
            full: false,
            want: Want {
                stop: Some(("task is now assigned to n1 at generation 2", true)),
                ..NOTHING
            },
        },
        Row {
            name: "a generation the manager never made is ignored and its copy purged",
            manager: Some(mgr(Run, Some("n1"), 2, Running)),
            held: Some(held(3, Completed, Run)),
            full: false,
            want: Want {
                stop: Some(("task is now assigned to n1 at generation 2", true)),
                ..NOTHING
            },
        },
        Row {
            name: "a task unknown to the manager is purged",
            manager: None,
            held: Some(held(2, Running, Run)),
            full: true,
            want: Want {
                stop: Some(("the manager does not know this task", true)),
                ..NOTHING
            },
        },
        Row {
            name: "a task the manager assigned elsewhere is purged here and not applied",
            manager: Some(mgr(Run, Some("n2"), 2, Running)),
            held: Some(held(2, Failed, Run)),
            full: false,
            want: Want {
                stop: Some(("task is now assigned to n2 at generation 2", true)),
                ..NOTHING
            },
        },
        Row {
            name: "a task waiting for a new placement is purged from its old node",
            manager: Some(mgr(Run, None, 2, Pending)),
            held: Some(held(2, Running, Run)),
            full: false,
            want: Want {
                stop: Some(("task is now assigned to no node at generation 2", true)),
                ..NOTHING
            },
        },
        Row {
            name: "a full heartbeat missing a running assignment gets it again",
            manager: Some(mgr(Run, Some("n1"), 2, Running)),
            held: None,
            full: true,
            want: Want {
                assign: true,
                ..NOTHING
            },
        },
        Row {
            name: "a full heartbeat missing a scheduled assignment gets it again",
            manager: Some(mgr(Run, Some("n1"), 4, Scheduled)),
            held: None,
            full: true,
            want: Want {
                assign: true,
                ..NOTHING
            },
        },
        Row {
            name: "a placement not yet synced is never sent",
            manager: Some(Mgr {
                durable: false,
                ..mgr(Run, Some("n1"), 2, Scheduled)
            }),
            held: None,
            full: true,
            want: NOTHING,
        },
        Row {
            name: "a partial heartbeat says nothing of what is missing",
            manager: Some(mgr(Run, Some("n1"), 2, Running)),
            held: None,
            full: false,
            want: NOTHING,
        },
        Row {
            name: "a stopped task is not sent again",
            manager: Some(mgr(Stop, Some("n1"), 2, Running)),
            held: None,
            full: true,
            want: NOTHING,
        },
        Row {
            name: "a finished task is not sent again",
            manager: Some(mgr(Run, Some("n1"), 2, Completed)),
            held: None,
            full: true,
            want: NOTHING,
        },
        Row {
            name: "a stopped task still held to run is stopped, not purged",
            manager: Some(mgr(Stop, Some("n1"), 2, Running)),
            held: Some(held(2, Running, Run)),
            full: true,
            want: Want {
                stop: Some(("stopped", false)),
                ..NOTHING
            },
        },
        Row {
            name: "a stopped task the worker is already stopping gets no second order",
            manager: Some(mgr(Stop, Some("n1"), 2, Running)),
            held: Some(held(2, Running, Stop)),
            full: true,
            want: NOTHING,
        },
        Row {
            name: "a stopped task that ended completes",
            manager: Some(mgr(Stop, Some("n1"), 2, Running)),
            held: Some(held(2, Completed, Stop)),
            full: false,
            want: Want {
                update: Some((Completed, Some("n1"), false)),
                ..NOTHING
            },
        },
        Row {
            name: "a failure is recorded and the task stays on its node",
            manager: Some(mgr(Run, Some("n1"), 2, Running)),
            held: Some(held(2, Failed, Run)),
            full: false,
            want: Want {
                update: Some((Failed, Some("n1"), false)),
                ..NOTHING
            },
        },
        Row {
            name: "a task its worker gave up while still wanted is placed again",
            manager: Some(mgr(Run, Some("n1"), 2, Running)),
            held: Some(held(2, Completed, Stop)),
            full: false,
            want: Want {
                update: Some((Completed, None, true)),
                ..NOTHING
            },
        },
        Row {
            name: "a restart by the worker's policy brings a finished task back to running",
            manager: Some(mgr(Run, Some("n1"), 2, Failed)),
            held: Some(held(2, Running, Run)),
            full: false,
            want: Want {
                update: Some((Running, Some("n1"), false)),
                ..NOTHING
            },
        },
        Row {
            name: "a terminal state the manager already has changes nothing",
            manager: Some(mgr(Run, Some("n1"), 2, Completed)),
            held: Some(held(2, Completed, Run)),
            full: true,
            want: NOTHING,
        },
        Row {
            name: "a new reason within the same state is recorded",
            manager: Some(mgr(Run, Some("n1"), 2, Scheduled)),
            held: Some(Held {
                reason: Some("pulling busybox"),
                ..held(2, Scheduled, Run)
            }),
            full: false,
            want: Want {
                update: Some((Scheduled, Some("n1"), false)),
                ..NOTHING
            },
        },
    ]
}

/// An index of a few tasks.
#[derive(Default)]
struct Fake {
    tasks: HashMap<TaskId, Task>,
    unsynced: HashSet<TaskId>,
}

impl ClusterView for Fake {
    fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    fn assigned(&self, node: &str) -> Vec<TaskId> {
        self.tasks
            .values()
            .filter(|t| t.node.as_deref() == Some(node))
            .map(|t| t.id)
            .collect()
    }

    fn placement_durable(&self, id: TaskId) -> bool {
        !self.unsynced.contains(&id)
    }
}

fn spec() -> TaskSpec {
    serde_json::from_str(r#"{"name":"a","image":"busybox"}"#).expect("spec parses")
}

fn status(id: TaskId, h: Held) -> TaskStatus {
    TaskStatus {
        id,
        generation: h.generation,
        state: h.state,
        desired: h.desired,
        container_id: None,
        host_ports: Vec::new(),
        exit_code: None,
        restart_count: 0,
        health: None,
        reason: h.reason.map(str::to_string),
        started_ms: None,
        finished_ms: None,
    }
}

#[test]
fn every_row_of_the_table_produces_its_plan() {
    let rows = rows();
    assert!(rows.len() >= 15, "the table covers the combinations");
    for row in rows {
        let id = TaskId::new();
        let mut view = Fake::default();
        if let Some(m) = row.manager {
            let mut t = Task::new(id, spec(), m.state);
            t.desired = m.desired;
            t.node = m.node.map(str::to_string);
            t.generation = m.generation;
            if !m.durable {
                view.unsynced.insert(id);
            }
            view.tasks.insert(id, t);
        }
        let statuses: Vec<TaskStatus> = row.held.map(|h| status(id, h)).into_iter().collect();
        let plan = reconcile(NODE, &statuses, row.full, &view, NOW);

        let assigned: Vec<(TaskId, u64)> =
            plan.assign.iter().map(|a| (a.id, a.generation)).collect();
        let want_assign = match (row.want.assign, row.manager) {
            (true, Some(m)) => vec![(id, m.generation)],
            _ => Vec::new(),
        };
        assert_eq!(assigned, want_assign, "{}: assign", row.name);

        let stops: Vec<(TaskId, &str, bool)> = plan
            .stop
            .iter()
            .map(|s| (s.id, s.reason.as_str(), s.purge))
            .collect();
        let want_stop: Vec<(TaskId, &str, bool)> =
            row.want.stop.map(|(r, p)| (id, r, p)).into_iter().collect();
        assert_eq!(stops, want_stop, "{}: stop", row.name);

        let updates: Vec<(TaskId, TaskState, Option<&str>, bool)> = plan
            .updates
            .iter()
            .map(|u| (u.task.id, u.task.state, u.task.node.as_deref(), u.requeue))
            .collect();
        let want_update: Vec<(TaskId, TaskState, Option<&str>, bool)> = row
            .want
            .update
            .map(|(s, n, r)| (id, s, n, r))
            .into_iter()
            .collect();
        assert_eq!(updates, want_update, "{}: updates", row.name);
        for u in &plan.updates {
            assert_eq!(
                u.task.updated_ms, NOW,
                "{}: stamped with the given clock",
                row.name
            );
        }
        assert!(plan.illegal.is_empty(), "{}: {:?}", row.name, plan.illegal);
    }
}

#[test]
fn two_statuses_of_one_task_in_one_message_apply_in_order() {
    let id = TaskId::new();
    let mut view = Fake::default();
    let mut t = Task::new(id, spec(), Scheduled);
    t.node = Some(NODE.into());
    t.generation = 1;
    view.tasks.insert(id, t);
    let h = |state| Held {
        generation: 1,
        state,
        desired: Run,
        reason: None,
    };
    let plan = reconcile(
        NODE,
        &[status(id, h(Running)), status(id, h(Completed))],
        false,
        &view,
        NOW,
    );
    assert_eq!(plan.updates.len(), 1, "{plan:?}");
    let states: Vec<TaskState> = plan.updates[0]
        .task
        .events
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(states, vec![Scheduled, Running, Completed]);
}

#[test]
fn the_assignments_of_a_full_heartbeat_come_oldest_first() {
    let mut view = Fake::default();
    let mut ids = Vec::new();
    for created in [30, 10, 20] {
        let mut t = Task::new(TaskId::new(), spec(), Running);
        t.created_ms = created;
        t.node = Some(NODE.into());
        t.generation = 1;
        ids.push((created, t.id));
        view.tasks.insert(t.id, t);
    }
    ids.sort();
    let plan = reconcile(NODE, &[], true, &view, NOW);
    let got: Vec<TaskId> = plan.assign.iter().map(|a| a.id).collect();
    assert_eq!(got, ids.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
}
