//! Taking assignments: from the manager (`POST /assignments`, a heartbeat's re-sends) or from a user
//! posting a task to the worker itself.
//!
//! - Idempotent by (id, generation): the same assignment again answers "accepted" and changes
//!   nothing; an older generation than the one held is refused; a newer one replaces the old task.
//! - Validated with the same checks as `POST /tasks` ([`crate::spec::validate`]); an invalid spec is
//!   refused with the error.
//! - One grouped, synced store write per batch (not one per task), and memory changes only after it.
//! - Bounded: a batch from the manager must be durable within [`ACCEPT_BUDGET`] of its arrival, or
//!   the whole batch is refused and nothing of it starts. The manager gives up on the request after
//!   30 s (and places the tasks again); the budget is a third of that, so that a worker never takes
//!   an assignment after the manager has given up on it (the reply has 20 s to travel back). A write
//!   that lands after the budget is undone in the background; the tasks never reached memory, so
//!   no supervisor ran for them.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use poseidon_runtimes::RuntimeError;
use tokio::time::Instant;

use super::supervisor::{self, Origin};
use super::{lock, Entry, Worker, WorkerError};
use crate::store::{Op, StoreError};
use crate::task::{Desired, SpecBody, State, Task, TaskId, TaskSpec};
use crate::wire::{
    AcceptedAssignment, Assignment, AssignmentBatch, AssignmentReply, RejectedAssignment,
};

/// How long after its arrival a batch from the manager may become durable (see the module docs).
pub const ACCEPT_BUDGET: Duration = Duration::from_secs(10);

/// How long a single accept (a user's task, a heartbeat's re-send) waits for adoption and the store.
const SINGLE_BUDGET: Duration = Duration::from_secs(30);

/// What checking one assignment against what is held decided.
enum Checked {
    /// Answered already (a repeat, a refusal).
    Decided(Result<Task, WorkerError>),
    /// A task to create, in the batch's grouped write.
    Fresh(Task),
}

impl Worker {
    /// Accepts a task submitted directly to this worker (generation 1).
    pub async fn submit(
        &self,
        id: Option<TaskId>,
        mut spec: TaskSpec,
    ) -> Result<Task, WorkerError> {
        if !spec.secrets.is_empty() {
            let key = self.inner.security.secrets.as_ref().ok_or_else(|| {
                WorkerError::Invalid(
                    "this worker has no secrets key, so it cannot take secrets".into(),
                )
            })?;
            key.seal_spec(&mut spec).map_err(WorkerError::Invalid)?;
        }
        let id = id.unwrap_or_default();
        if lock(&self.inner.tasks).contains_key(&id) {
            return Err(WorkerError::Conflict(format!(
                "a task with id {id} already exists"
            )));
        }
        self.accept(Assignment {
            id,
            generation: 1,
            spec,
            desired: Desired::Run,
        })
        .await
    }

    /// Accepts one assignment: stores it, then starts its supervisor at once (see the module docs).
    pub async fn accept(&self, a: Assignment) -> Result<Task, WorkerError> {
        let id = a.id;
        self.accept_all(vec![a], Instant::now() + SINGLE_BUDGET)
            .await
            .pop()
            .map(|(_, _, r)| r)
            .unwrap_or(Err(WorkerError::NotFound(id)))
    }

    /// Accepts a batch from the manager within [`ACCEPT_BUDGET`]: every assignment ends in
    /// `accepted` or `rejected`.
    pub async fn accept_batch(&self, batch: AssignmentBatch) -> AssignmentReply {
        let deadline = Instant::now() + ACCEPT_BUDGET;
        let mut reply = AssignmentReply::default();
        for (id, generation, result) in self.accept_all(batch.assignments, deadline).await {
            match result {
                Ok(t) => reply.accepted.push(AcceptedAssignment {
                    id: t.id,
                    generation: t.generation,
                }),
                Err(e) => {
                    tracing::warn!(task = %id, node = %self.name(), generation, error = %e, "assignment rejected");
                    reply.rejected.push(RejectedAssignment {
                        id,
                        error: e.to_string(),
                    })
                }
            }
        }
        reply
    }

    /// Accepts assignments, durable by `deadline` or not at all; one result per assignment, in order.
    async fn accept_all(
        &self,
        list: Vec<Assignment>,
        deadline: Instant,
    ) -> Vec<(TaskId, u64, Result<Task, WorkerError>)> {
        let keys: Vec<(TaskId, u64)> = list.iter().map(|a| (a.id, a.generation)).collect();
        let all = |e: &dyn Fn() -> WorkerError| {
            keys.iter()
                .map(|&(id, g)| (id, g, Err(e())))
                .collect::<Vec<_>>()
        };
        if !self.wait_ready(deadline).await {
            return all(&|| {
                WorkerError::Runtime(RuntimeError::Unreachable(
                    "the container engine has not answered since start".into(),
                ))
            });
        }
        // One batch at a time: each is checked against what is held and written as one.
        let Ok(_serial) = tokio::time::timeout_at(deadline, self.inner.accepting.lock()).await
        else {
            return all(&|| late("other assignments were still being written"));
        };
        let mut results: Vec<Option<Result<Task, WorkerError>>> =
            keys.iter().map(|_| None).collect();
        let mut fresh: Vec<(usize, Task)> = Vec::new();
        let mut seen = HashSet::new();
        // Copies of one spec in a row share one body, so its JSON is encoded once for them all
        // (`EncodedSpec`), not once a record.
        let mut last_body: Option<Arc<SpecBody>> = None;
        for (i, mut a) in list.into_iter().enumerate() {
            match &last_body {
                Some(body) if **body == *a.spec.body => a.spec.body = body.clone(),
                _ => last_body = Some(a.spec.body.clone()),
            }
            match self.check(a, &mut seen).await {
                Checked::Decided(r) => results[i] = Some(r),
                Checked::Fresh(t) => fresh.push((i, t)),
            }
        }
        for (i, r) in self.write_fresh(fresh, deadline).await {
            results[i] = Some(r);
        }
        keys.into_iter()
            .zip(results)
            .map(|((id, g), r)| (id, g, r.unwrap_or(Err(WorkerError::NotFound(id)))))
            .collect()
    }

    /// Waits until adoption is done (before it, a new task cannot be told from one whose container
    /// exists); false when `deadline` passed first.
    async fn wait_ready(&self, deadline: Instant) -> bool {
        loop {
            let wait = self.inner.ready_notify.notified();
            if self.inner.ready.load(Ordering::SeqCst) {
                return true;
            }
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                return self.inner.ready.load(Ordering::SeqCst);
            }
        }
    }

    /// Checks one assignment against its spec's rules and what is held.
    async fn check(&self, a: Assignment, seen: &mut HashSet<TaskId>) -> Checked {
        if let Err(e) = crate::spec::validate(&a.spec) {
            return Checked::Decided(Err(WorkerError::Invalid(format!("invalid spec: {e}"))));
        }
        if let Err(e) = self.check_host_volumes(&a.spec) {
            return Checked::Decided(Err(e));
        }
        if !seen.insert(a.id) {
            return Checked::Decided(Err(WorkerError::Invalid(format!(
                "task {} appears twice in the batch",
                a.id
            ))));
        }
        if let Some(old) = self.task(a.id) {
            if a.generation < old.generation {
                return Checked::Decided(Err(WorkerError::Conflict(format!(
                    "task {} is held here at generation {}, newer than {}",
                    a.id, old.generation, a.generation
                ))));
            }
            if a.generation == old.generation {
                if a.desired == Desired::Stop && old.desired == Desired::Run {
                    // Stopping waits up to the grace: never hold the batch for it.
                    let w = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = w.stop(a.id, "stopped").await {
                            tracing::warn!(task = %a.id, error = %e, "stop by assignment failed");
                        }
                    });
                }
                return Checked::Decided(Ok(old));
            }
            // A newer placement on this same node: give up the old container first.
            if let Err(e) = self.forget(a.id, "replaced by a newer assignment").await {
                return Checked::Decided(Err(e));
            }
        }
        let mut task = Task::new(a.id, a.spec, State::Scheduled);
        task.generation = a.generation;
        task.desired = a.desired;
        task.node = Some(self.inner.opts.name.clone());
        task.record(State::Scheduled, "accepted by worker");
        Checked::Fresh(task)
    }

    /// Refuses a spec that mounts a host volume this worker's config does not list.
    fn check_host_volumes(&self, spec: &TaskSpec) -> Result<(), WorkerError> {
        let offered = &self.inner.opts.host_volumes;
        match spec
            .host_volumes()
            .find(|name| !offered.contains_key(*name))
        {
            None => Ok(()),
            Some(name) => {
                let list: Vec<&str> = offered.keys().map(String::as_str).collect();
                Err(WorkerError::Invalid(format!(
                    "host volume {name:?} is not allowed on node {} (its host_volumes: {})",
                    self.name(),
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join(", ")
                    }
                )))
            }
        }
    }

    /// Writes the new tasks in one synced write; only once it is durable, and in time, do they
    /// enter memory and get a supervisor.
    async fn write_fresh(
        &self,
        fresh: Vec<(usize, Task)>,
        deadline: Instant,
    ) -> Vec<(usize, Result<Task, WorkerError>)> {
        if fresh.is_empty() {
            return Vec::new();
        }
        if Instant::now() >= deadline {
            return fresh
                .into_iter()
                .map(|(i, _)| (i, Err(late("the checks took the whole budget"))))
                .collect();
        }
        let mut ops = Vec::with_capacity(fresh.len());
        let mut out = Vec::new();
        let mut writing = Vec::with_capacity(fresh.len());
        for (i, t) in fresh {
            match Op::put_task(&t) {
                Ok(op) => {
                    ops.push(op);
                    writing.push((i, t));
                }
                Err(e) => out.push((i, Err(e.into()))),
            }
        }
        let ids: Vec<TaskId> = writing.iter().map(|(_, t)| t.id).collect();
        let pending = self.inner.store.submit(ops);
        let mut write = tokio::spawn(pending.wait());
        let outcome =
            match tokio::time::timeout_at(deadline, &mut write).await {
                Ok(Ok(r)) => r,
                Ok(Err(join)) => Err(StoreError::Db(format!("the store write was lost: {join}"))),
                Err(_) => {
                    self.undo_late_write(write, ids);
                    return out
                        .into_iter()
                        .chain(writing.into_iter().map(|(i, _)| {
                            (i, Err(late("the store did not sync the batch in time")))
                        }))
                        .collect();
                }
            };
        if let Err(e) = outcome {
            tracing::error!(node = %self.name(), tasks = writing.len(), error = %e, "store write failed: accept assignments");
            let msg = e.to_string();
            return out
                .into_iter()
                .chain(
                    writing
                        .into_iter()
                        .map(|(i, _)| (i, Err(StoreError::Db(msg.clone()).into()))),
                )
                .collect();
        }
        {
            let mut tasks = lock(&self.inner.tasks);
            for (_, t) in &writing {
                tasks.insert(t.id, Entry::new(t.clone(), true));
            }
        }
        for (i, t) in writing {
            // Debug, not info: one line per task cost the mock cluster about 5 % of its
            // submissions/s under load (BENCHMARKS.md); the manager's event stream and
            // `poseidon status ID` show every placement.
            tracing::debug!(task = %t.id, node = %self.name(), generation = t.generation, "assignment accepted");
            self.mark_dirty(t.id);
            supervisor::spawn(self.clone(), t.id, Origin::Assigned);
            out.push((i, Ok(t)));
        }
        out
    }

    /// A batch's write landed (or will land) after its deadline: the tasks were refused and never
    /// entered memory, so delete their records once the write is done, lest a restart load them.
    fn undo_late_write(
        &self,
        write: tokio::task::JoinHandle<Result<(), StoreError>>,
        ids: Vec<TaskId>,
    ) {
        let w = self.clone();
        tokio::spawn(async move {
            if !matches!(write.await, Ok(Ok(()))) {
                return;
            }
            // Only the records of tasks that no later accept has taken since; holding the accept
            // lock keeps a later accept from writing between this check and the delete.
            let _serial = w.inner.accepting.lock().await;
            let ops: Vec<Op> = {
                let tasks = lock(&w.inner.tasks);
                ids.iter()
                    .filter(|id| !tasks.contains_key(id))
                    .map(|&id| Op::delete_task(id))
                    .collect()
            };
            if let Err(e) = w.inner.store.write(ops).await {
                tracing::error!(node = %w.name(), error = %e, "store write failed: undo a late batch");
            }
        });
    }
}

/// The error for a batch that could not be made durable within its budget.
fn late(why: &str) -> WorkerError {
    WorkerError::Late(format!(
        "not accepted in time: {why}; nothing of it will run here"
    ))
}
