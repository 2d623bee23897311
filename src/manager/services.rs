//! The service reconciler: a service, the tasks that carry its name, the draining nodes and the
//! clock in; a [`ServicePlan`] out (tasks to create, stop, relabel or forget, and the service's
//! next state).
//!
//! It is pure (no I/O, no locks, no clock but `now`) and level-triggered: it looks only at what is,
//! never at what happened, so the manager may call it after any change, on a tick, or after a
//! restart in the middle of a rolling update, and it picks up from where things are. Its table
//! tests are in `services_tests.rs`, in the style of Nomad's `reconcile_test.go`.
//!
//! The rules, for a service at version `V` wanting `count` copies, `max_parallel` = `p`:
//! - A *live* task wants to run and has not finished for good (its worker may still restart it by
//!   its own policy; only a task that ended and will not be restarted is replaced).
//! - A live task is *current* when it runs `V`, or an older version with the same template (it is
//!   then relabelled to `V`, never restarted: that is how a change of `count` alone scales). Any
//!   other live task is *old*, and so is every task on a draining node.
//! - A task is *healthy* when it runs and its health check passes, or, without a check, when it
//!   has run `min_healthy`.
//! - With no old task: create what is missing, stop the surplus (unhealthy first, then newest).
//! - With old tasks (a rolling update, or a drain): `room` = `p` minus the current tasks not yet
//!   healthy; each unit of room stops one old task (unhealthy first, oldest version first) and
//!   creates one current task, so at most `p` copies are down or unhealthy because of the update.
//!   Once `count` current tasks are healthy the remaining old ones are stopped.
//! - A copy that ended by itself is replaced no sooner than [`REPLACE_DELAY_MS`] after it ended,
//!   so a crash-looping template does not spin.
//! - The current version becomes *stable* once `count` current tasks are healthy and nothing old
//!   remains; `updating` becomes `running` then. A version that is not stable `healthy_deadline`
//!   after its rollout began fails: with `auto_revert` the latest stable earlier version is rolled
//!   back (`reverted`), otherwise the service is `failed` and the rollout stops where it is (lost
//!   copies are still replaced).
//! - A stopped service stops every live task and creates none.
//! - Of the tasks that finished for good, the newest [`KEEP_FINISHED`] are kept as history.

use std::cmp::Reverse;
use std::collections::HashSet;

use crate::service::{Service, ServiceSpec, ServiceState};
use crate::task::{Desired, State as TaskState, Task, TaskId};

/// The least time between a copy ending by itself and its replacement.
pub const REPLACE_DELAY_MS: u64 = 1_000;

/// How many finished tasks of a service are kept (newest first) before they are forgotten.
pub const KEEP_FINISHED: usize = 10;

/// A task the plan stops, and why (the reason is recorded in its history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopTask {
    /// The task.
    pub id: TaskId,
    /// Why: `replaced by version 3`, `scaled down to 2`, `node n1 is draining`.
    pub reason: String,
}

/// What to do about one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServicePlan {
    /// How many new tasks of the current version to create.
    pub create: u32,
    /// Tasks to stop.
    pub stop: Vec<StopTask>,
    /// Tasks of an older version with the current template: relabelled to the current version.
    pub adopt: Vec<TaskId>,
    /// Finished tasks beyond the history kept: forgotten.
    pub forget: Vec<TaskId>,
    /// The service's new state, when it changes.
    pub state: Option<ServiceState>,
    /// Mark the current version stable (all its copies were healthy together).
    pub stable: bool,
    /// Roll back to this version (the current one failed and `auto_revert` is on).
    pub revert_to: Option<u64>,
}

impl ServicePlan {
    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == ServicePlan::default()
    }
}

/// True when a task is healthy for its service: running, and its health check passes or (without
/// one) it has run `min_healthy_ms`.
pub fn is_healthy(t: &Task, min_healthy_ms: u64, now: u64) -> bool {
    if t.state != TaskState::Running || t.desired != Desired::Run {
        return false;
    }
    match &t.spec.health_check {
        Some(_) => t.health.as_deref() == Some("healthy"),
        None => t
            .started_ms
            .is_some_and(|s| now.saturating_sub(s) >= min_healthy_ms),
    }
}

/// True when a task wants to run and may still run (its worker restarts it, or it has not ended).
pub fn is_live(t: &Task) -> bool {
    t.desired == Desired::Run && !t.is_finished()
}

/// True when a task was made from `spec` (its version's template is the same).
fn runs_template(svc: &Service, spec: &ServiceSpec, t: &Task) -> bool {
    match t.version {
        Some(v) if v == svc.version => true,
        Some(v) => svc.get(v).is_some_and(|sv| sv.spec.same_template(spec)),
        None => false,
    }
}

/// The copies of the current version that are healthy now (what `GET /services/{name}` shows).
pub fn healthy_count(svc: &Service, tasks: &[&Task], now: u64) -> usize {
    let spec = svc.spec();
    tasks
        .iter()
        .filter(|t| runs_template(svc, spec, t) && is_healthy(t, spec.update.min_healthy_ms, now))
        .count()
}

/// Plans what `svc` needs, given every task that carries its name, the names of draining nodes
/// and the time.
pub fn plan(svc: &Service, tasks: &[&Task], draining: &HashSet<String>, now: u64) -> ServicePlan {
    let spec = svc.spec();
    let count = spec.count as usize;
    let min_healthy = spec.update.min_healthy_ms;
    let mut p = ServicePlan {
        forget: forgettable(tasks),
        ..ServicePlan::default()
    };
    let live: Vec<&Task> = tasks.iter().copied().filter(|t| is_live(t)).collect();
    if svc.state == ServiceState::Stopped {
        p.stop = live
            .iter()
            .map(|t| StopTask {
                id: t.id,
                reason: "service stopped".into(),
            })
            .collect();
        return p;
    }
    let healthy = |t: &Task| is_healthy(t, min_healthy, now);
    let on_draining = |t: &Task| t.node.as_ref().is_some_and(|n| draining.contains(n));
    let (mut current, mut old): (Vec<&Task>, Vec<&Task>) = live
        .iter()
        .copied()
        .partition(|t| runs_template(svc, spec, t) && !on_draining(t));
    // Surplus current copies go first: unhealthy ones, then the newest.
    if current.len() > count {
        current.sort_by_key(|t| (healthy(t), Reverse(t.created_ms), t.id));
        for t in current.drain(..current.len() - count) {
            p.stop.push(StopTask {
                id: t.id,
                reason: format!("scaled down to {count}"),
            });
        }
    }
    // Survivors of an older version with the current template are relabelled, not restarted.
    p.adopt = current
        .iter()
        .filter(|t| t.version != Some(svc.version))
        .map(|t| t.id)
        .collect();
    p.adopt.sort();
    let healthy_current = current.iter().filter(|t| healthy(t)).count();
    let settled = old.is_empty() && current.len() == count && healthy_current == count;
    // Old copies leave in this order: unhealthy ones, then the oldest version, then the oldest.
    old.sort_by_key(|t| (healthy(t), t.version, t.created_ms, t.id));
    let reason_for = |t: &Task| -> String {
        match t.node.as_deref() {
            Some(n) if draining.contains(n) => format!("node {n} is draining"),
            _ => format!("replaced by version {}", svc.version),
        }
    };
    let mut have = current.len();
    let mut create = 0usize;
    if old.is_empty() {
        create = count.saturating_sub(have);
    } else if svc.state == ServiceState::Failed {
        // A failed rollout goes no further, but copies that were lost are still replaced.
        create = count.saturating_sub(have + old.len());
    } else if healthy_current >= count {
        for t in &old {
            p.stop.push(StopTask {
                id: t.id,
                reason: reason_for(t),
            });
        }
    } else {
        let max_parallel = spec.update.max_parallel.max(1) as usize;
        let mut room = max_parallel.saturating_sub(current.len() - healthy_current);
        let mut leaving = old.iter();
        // Copies lost meanwhile (old ones that ended for good) are made up for first.
        let lost = count.saturating_sub(have + old.len());
        let extra = lost.min(room);
        create += extra;
        have += extra;
        room -= extra;
        while room > 0 {
            let Some(t) = leaving.next() else {
                break;
            };
            p.stop.push(StopTask {
                id: t.id,
                reason: reason_for(t),
            });
            if have < count {
                create += 1;
                have += 1;
            }
            room -= 1;
        }
    }
    if create > 0 && recently_ended(tasks, now) {
        create = 0;
    }
    p.create = u32::try_from(create).unwrap_or(u32::MAX);
    if settled {
        p.stable = !svc.current().stable;
        if matches!(svc.state, ServiceState::Updating | ServiceState::Failed) {
            p.state = Some(ServiceState::Running);
        }
    } else if !svc.current().stable
        && now.saturating_sub(svc.since_ms) > spec.update.healthy_deadline_ms
    {
        match svc.state {
            ServiceState::Updating => {
                let target = spec
                    .update
                    .auto_revert
                    .then(|| svc.rollback_target(false))
                    .flatten();
                match target {
                    Some(v) => p.revert_to = Some(v.version),
                    None => p.state = Some(ServiceState::Failed),
                }
            }
            ServiceState::Reverted => p.state = Some(ServiceState::Failed),
            _ => {}
        }
    }
    p
}

/// True when a copy that wanted to run ended for good less than [`REPLACE_DELAY_MS`] ago.
fn recently_ended(tasks: &[&Task], now: u64) -> bool {
    tasks.iter().any(|t| {
        t.desired == Desired::Run
            && t.is_finished()
            && t.finished_ms
                .is_some_and(|f| now.saturating_sub(f) < REPLACE_DELAY_MS)
    })
}

/// The finished tasks beyond the newest [`KEEP_FINISHED`].
fn forgettable(tasks: &[&Task]) -> Vec<TaskId> {
    let mut done: Vec<&Task> = tasks.iter().copied().filter(|t| t.is_finished()).collect();
    if done.len() <= KEEP_FINISHED {
        return Vec::new();
    }
    done.sort_by_key(|t| (Reverse(t.finished_ms.unwrap_or(t.updated_ms)), t.id));
    let mut ids: Vec<TaskId> = done[KEEP_FINISHED..].iter().map(|t| t.id).collect();
    ids.sort();
    ids
}

#[cfg(test)]
#[path = "services_tests.rs"]
pub(super) mod tests;
