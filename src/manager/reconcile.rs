//! The node reconciler: the statuses a node reports and the cluster index in, a [`Plan`] out.
//!
//! It is a pure function (no I/O, no locks, no clock but the `now` it is given), so every
//! combination of what a node holds and what the manager wants can be checked in a table
//! (`reconcile_tests.rs`, in the style of Nomad's `reconcile_test.go`). The manager's heartbeat
//! and report handlers take the lock, call [`reconcile`], apply the plan's updates with one
//! synced write, and answer with its assignments and stop orders.
//!
//! The rules, per status (`s`) against the manager's task (`t`):
//! - unknown to the manager: stop and purge;
//! - `t` placed on another node, or at another generation: stop and purge (generations decide
//!   ownership), and nothing of the status is applied;
//! - the user stopped `t` while the worker still means to run it: stop (keep the record);
//! - otherwise the worker's observation is applied to `t` along a legal path of states; a jump
//!   with no legal path is noted in the history and listed in [`Plan::illegal`];
//! - the worker gave the task up on its own (at-most-one after losing the manager) while the
//!   user still wants it: the update clears its node and asks for it to be placed again.
//!
//! For a full heartbeat, every task the manager has placed on the node, wants running and has
//! made durable, but that the node did not list, is sent again as an assignment.

use std::collections::{HashMap, HashSet};

use crate::task::{path, Desired, State as TaskState, Task, TaskId};
use crate::wire::{Assignment, StopOrder, TaskStatus};

/// The part of the manager's index the reconciler reads.
pub trait ClusterView {
    /// A task by id.
    fn task(&self, id: TaskId) -> Option<&Task>;
    /// The ids of the tasks placed on `node` (any order).
    fn assigned(&self, node: &str) -> Vec<TaskId>;
    /// True when a task's current placement (node and generation) has been synced to the store;
    /// only then may it be sent to a worker.
    fn placement_durable(&self, id: TaskId) -> bool;
}

/// A change of a task the plan asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The task's new value.
    pub task: Task,
    /// Put it back on the dispatch queue once the change is durable (its worker gave it up).
    pub requeue: bool,
}

/// A worker reported a state the task cannot reach from the manager's by any legal path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Illegal {
    /// The task.
    pub id: TaskId,
    /// Its generation.
    pub generation: u64,
    /// The manager's state.
    pub from: TaskState,
    /// The state the worker reported.
    pub to: TaskState,
}

/// What to do about one node's statuses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Tasks the node should hold but did not list (full heartbeats only).
    pub assign: Vec<Assignment>,
    /// Tasks the node should give up.
    pub stop: Vec<StopOrder>,
    /// Task changes to write, then keep (at most one per task: the last).
    pub updates: Vec<Update>,
    /// Reported jumps with no legal path (logged by the caller).
    pub illegal: Vec<Illegal>,
}

/// True when applying status `s` to task `t` would change nothing: the fast path, which must agree
/// with the slow path finding the task unchanged.
pub fn status_matches(t: &Task, s: &TaskStatus) -> bool {
    t.state == s.state
        && t.container_id == s.container_id
        && t.host_ports == s.host_ports
        && t.exit_code == s.exit_code
        && t.restart_count == s.restart_count
        && t.health == s.health
        && s.started_ms.is_none_or(|v| t.started_ms == Some(v))
        && s.finished_ms.is_none_or(|v| t.finished_ms == Some(v))
        && s.reason
            .as_deref()
            .is_none_or(|r| r.is_empty() || t.reason.as_deref() == Some(r))
}

/// True when the user stopped a task that the worker still means to run.
fn stop_wanted(t: &Task, s: &TaskStatus) -> bool {
    t.desired == Desired::Stop && s.desired == Desired::Run && !s.state.is_terminal()
}

/// What one status means for the task it names.
#[derive(Debug, Default)]
struct Decision {
    stop: Option<StopOrder>,
    update: Option<Update>,
    illegal: Option<Illegal>,
}

/// Decides about one status from `node` against the manager's `current` task.
fn decide(node: &str, s: &TaskStatus, current: Option<&Task>, now: u64) -> Decision {
    let mut d = Decision::default();
    let Some(current) = current else {
        d.stop = Some(StopOrder {
            id: s.id,
            purge: true,
            reason: "the manager does not know this task".into(),
        });
        return d;
    };
    if current.node.as_deref() != Some(node) || current.generation != s.generation {
        // The assignment generation decides who owns a task: this copy is stale.
        d.stop = Some(StopOrder {
            id: s.id,
            purge: true,
            reason: format!(
                "task is now assigned to {} at generation {}",
                current.node.as_deref().unwrap_or("no node"),
                current.generation
            ),
        });
        return d;
    }
    if stop_wanted(current, s) {
        d.stop = Some(StopOrder {
            id: s.id,
            purge: false,
            reason: "stopped".into(),
        });
    }
    // A full heartbeat repeats the status of every task the worker holds, and almost all of them
    // are what the manager already has: answer those without copying the task, so that a
    // heartbeat costs in proportion to what changed, not to what the node holds.
    if status_matches(current, s) {
        return d;
    }
    let mut t = Task::clone(current);
    t.container_id = s.container_id.clone();
    t.host_ports = s.host_ports.clone();
    t.exit_code = s.exit_code;
    t.restart_count = s.restart_count;
    t.health = s.health.clone();
    let reason = s.reason.clone().unwrap_or_default();
    if t.state != s.state {
        match path(t.state, s.state) {
            Some(steps) => {
                for step in steps {
                    // Each step is legal by construction of `path`; should one not be, the task
                    // stays where it is and the jump is reported like one with no path.
                    if t.set_state_at(step, &reason, now).is_err() {
                        d.illegal = Some(Illegal {
                            id: s.id,
                            generation: s.generation,
                            from: t.state,
                            to: step,
                        });
                        break;
                    }
                }
            }
            None => {
                d.illegal = Some(Illegal {
                    id: s.id,
                    generation: s.generation,
                    from: t.state,
                    to: s.state,
                });
                t.record_at(
                    t.state,
                    &format!("worker reports {}: {reason}", s.state),
                    now,
                );
            }
        }
    } else if t.reason.as_deref() != Some(reason.as_str()) && !reason.is_empty() {
        t.record_at(t.state, &reason, now);
    }
    // After the transition, which stamps the manager's clock: the worker saw the container
    // start and end, so its times win.
    t.started_ms = s.started_ms.or(t.started_ms);
    t.finished_ms = s.finished_ms.or(t.finished_ms);
    // The worker ended it on its own, with nobody asking: at-most-one after losing the manager
    // (possibly for less than the TTL, so the node was never counted down). The user still wants
    // it to run, so it is placed again, whatever its restart policy: it did not end by itself.
    // Its node is cleared, so the dispatcher takes it and the old copy is purged.
    let abandoned =
        s.desired == Desired::Stop && t.desired == Desired::Run && s.state.is_terminal();
    if abandoned {
        t.node = None;
        t.record_at(t.state, &format!("{reason}; to be placed again"), now);
    }
    // Timestamps of notes are the only noise; compare what matters before writing.
    if abandoned || t != *current {
        d.update = Some(Update {
            task: t,
            requeue: abandoned,
        });
    }
    d
}

/// Reconciles what `node` holds (`held`; every task it holds when `full`) with `view`.
pub fn reconcile(
    node: &str,
    held: &[TaskStatus],
    full: bool,
    view: &impl ClusterView,
    now: u64,
) -> Plan {
    let mut plan = Plan::default();
    // Later statuses of the same task in one message see the earlier ones' effect.
    let mut updated: HashMap<TaskId, usize> = HashMap::new();
    for s in held {
        let current = match updated.get(&s.id) {
            Some(&i) => Some(&plan.updates[i].task),
            None => view.task(s.id),
        };
        let d = decide(node, s, current, now);
        plan.stop.extend(d.stop);
        plan.illegal.extend(d.illegal);
        if let Some(u) = d.update {
            match updated.get(&s.id) {
                Some(&i) => {
                    let requeue = plan.updates[i].requeue || u.requeue;
                    plan.updates[i] = Update { requeue, ..u };
                }
                None => {
                    updated.insert(s.id, plan.updates.len());
                    plan.updates.push(u);
                }
            }
        }
    }
    if full {
        let listed: HashSet<TaskId> = held.iter().map(|s| s.id).collect();
        let mut missing: Vec<&Task> = view
            .assigned(node)
            .into_iter()
            .filter(|id| !listed.contains(id))
            .filter_map(|id| view.task(id))
            .filter(|t| {
                t.node.as_deref() == Some(node)
                    && matches!(t.state, TaskState::Scheduled | TaskState::Running)
                    && t.desired == Desired::Run
                    && view.placement_durable(t.id)
            })
            .collect();
        // A stable order, whatever the index's.
        missing.sort_by_key(|t| (t.created_ms, t.id));
        plan.assign = missing
            .into_iter()
            .map(|t| Assignment {
                id: t.id,
                generation: t.generation,
                spec: t.spec.clone(),
                desired: t.desired,
            })
            .collect();
    }
    plan
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
