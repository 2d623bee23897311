//! The dispatcher: takes queued tasks, places them with the scheduler, writes the placements, and
//! only once they are synced sends each worker its batch. What a worker does not take goes back
//! to Pending and is queued again after a backoff that grows with the attempts.
//!
//! Tasks that fit nowhere wait in `State::blocked`. They are retried when a node comes up or grows
//! (all of them), when resources are freed (a bounded number), and periodically by
//! [`Manager::retry_blocked_once`] (a bounded number), so a retry never holds the lock for long.
//! A blocked task's reason is rewritten only when its shape changes (which node failed which
//! check), not each time the free amounts it quotes move.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::time::Duration;

use poseidon_schedulers::{NoFit, Rejection};

use super::state::{placement_demand, Batch, NodeState, State};
use super::{lock, Manager};
use crate::task::{Desired, IllegalTransition, State as TaskState, Task, TaskId};
use crate::util::now_ms;
use crate::wire::{Assignment, AssignmentBatch};

/// The fewest queued tasks one dispatch pass takes; a pass takes [`DISPATCH_PER_NODE`] per node
/// when that is more. A pass holds the state lock while it places and its placements wait for one
/// synced write before they are sent, so bounding it keeps heartbeats and reports from waiting
/// behind a large submission and keeps the records and assignments a pass encodes to tens of
/// megabytes (a queue of 1,000,000 tasks drained in one pass peaked well over that).
pub(super) const DISPATCH_PASS: usize = 4096;

/// Tasks per node in a dispatch pass: enough that each worker gets its assignments a few at a time
/// in one request (with 2,048 a pass on 5,000 nodes, most requests carried one task, and the
/// reports that answer them came one per task as well).
pub(super) const DISPATCH_PER_NODE: usize = 8;

/// The most blocked tasks one retry (periodic, or after resources were freed) puts back on the
/// queue: each costs a placement attempt over every node, so a large backlog is retried a slice
/// at a time, oldest first, and what still does not fit goes to the back.
pub const RETRY_BATCH: usize = 256;

/// How often the liveness loop retries blocked tasks, whatever happened in between.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// How long the manager waits for a worker to take a batch.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// The most assignments one request to a worker carries; more wait for the next request.
const MAX_BATCH: usize = 1024;

/// Placements on their way to each worker: at most one `POST /assignments` is in flight to a
/// node, and what is placed meanwhile waits in its outbox and goes in the next request. Sending
/// each pass's batch at once instead opened a connection per concurrent batch (hundreds under 64
/// submitting clients, each a TLS handshake with `tls = "auto"`) and made the worker sync one
/// small write per request; an outbox turns load into bigger batches instead.
#[derive(Debug, Default)]
pub(super) struct Outboxes(std::sync::Mutex<std::collections::HashMap<String, Outbox>>);

/// One node's outbox.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    /// Placed, synced, not yet sent.
    waiting: Vec<Assignment>,
    /// Whether a sender is draining it.
    sending: bool,
}

impl Outboxes {
    /// How many assignments wait to be sent, over every node.
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        lock(&self.0).values().map(|o| o.waiting.len()).sum()
    }
}

/// A digest of which node failed which check: what a blocked task's reason says, less the free
/// amounts, which move with every placement elsewhere.
pub(super) fn shape_of(nofit: &NoFit) -> u64 {
    let mut h = DefaultHasher::new();
    for (node, r) in &nofit.rejections {
        node.hash(&mut h);
        r.kind().hash(&mut h);
        match r {
            Rejection::PortInUse(p) => p.hash(&mut h),
            // A label that changes value is a new shape: the reason quotes it.
            Rejection::Constraint {
                attribute, found, ..
            } => (attribute, found).hash(&mut h),
            _ => {}
        }
    }
    h.finish()
}

/// True when the dispatcher should place `task`: Pending, or stranded (ended while waiting for a
/// restart on a node that is gone, or given up by its worker), and wanted.
fn placeable(st: &State, task: &Task) -> bool {
    let stranded = task.state.is_terminal()
        && (task.node.is_none()
            || (!task.is_finished()
                && task
                    .node
                    .as_ref()
                    .and_then(|n| st.nodes.get(n))
                    .is_none_or(|n| n.state == NodeState::Down)));
    (task.state == TaskState::Pending || stranded) && task.desired == Desired::Run
}

/// Moves `t` onto `node` under a new generation, Scheduled, and returns its assignment.
pub(super) fn place_on(
    t: &mut Task,
    node: &str,
    now: u64,
) -> Result<Assignment, IllegalTransition> {
    t.generation += 1;
    t.node = Some(node.to_string());
    t.set_state_at(TaskState::Scheduled, &format!("placed on {node}"), now)?;
    Ok(Assignment {
        id: t.id,
        generation: t.generation,
        spec: t.spec.clone(),
        desired: Desired::Run,
    })
}

impl Manager {
    /// Places up to [`DISPATCH_PASS`] (or [`DISPATCH_PER_NODE`] per node) queued tasks and
    /// dispatches the placements, one batch per worker, once they are synced; when more are queued
    /// it wakes the dispatcher again for the next pass. Returns how many it sent.
    pub async fn dispatch_once(&self) -> usize {
        let (batches, staged, more) = {
            let mut st = lock(&self.inner.state);
            let mut batches: BTreeMap<String, Vec<Assignment>> = BTreeMap::new();
            let mut batch = Batch::default();
            let mut taken = 0;
            let now = now_ms();
            let pass = DISPATCH_PASS.max(DISPATCH_PER_NODE * st.snapshots.len());
            while taken < pass {
                let Some(id) = st.queue.pop_front() else {
                    break;
                };
                taken += 1;
                let Some(task) = st.tasks.get(&id) else {
                    continue;
                };
                if !placeable(&st, task) {
                    continue;
                }
                let demand = placement_demand(&st, task);
                let picking = std::time::Instant::now();
                let picked = st.pick(&demand);
                self.inner.metrics.placement.observe(picking.elapsed());
                match picked {
                    Ok(node) => {
                        let mut t = Task::clone(&st.tasks[&id]);
                        let assignment = match place_on(&mut t, &node, now) {
                            Ok(a) => a,
                            Err(e) => {
                                tracing::error!(task = %id, node = %node, error = %e, "illegal transition while placing");
                                continue;
                            }
                        };
                        match st.put(&mut batch, t) {
                            Ok(()) => {
                                batches.entry(node).or_default().push(assignment);
                                st.blocked_shape.remove(&id);
                                self.inner
                                    .metrics
                                    .placements
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::error!(task = %id, error = %e, "cannot encode a placement")
                            }
                        }
                    }
                    Err(nofit) => {
                        let shape = shape_of(&nofit);
                        if st.blocked_shape.get(&id) != Some(&shape) {
                            let mut t = Task::clone(&st.tasks[&id]);
                            t.record_at(t.state, &nofit.to_string(), now);
                            match st.put(&mut batch, t) {
                                Ok(()) => {
                                    st.blocked_shape.insert(id, shape);
                                }
                                Err(e) => {
                                    tracing::error!(task = %id, error = %e, "cannot encode a task")
                                }
                            }
                        }
                        st.blocked.push_back(id);
                        self.inner
                            .metrics
                            .unplaceable
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            let staged = st.stage(batch, self.inner.store.as_ref());
            (batches, staged, !st.queue.is_empty())
        };
        if let Err(e) = self.commit(staged).await {
            // Not on disk: the placements were undone (back to what the store holds); send
            // nothing a restart would not know, and try again later.
            tracing::warn!(error = %e, "store write failed while placing; retrying later");
            // The no-fit reasons of this pass were undone too: let the next pass write them.
            lock(&self.inner.state).blocked_shape.clear();
            let ids: Vec<TaskId> = batches.values().flatten().map(|a| a.id).collect();
            self.retry_later(ids);
            return 0;
        }
        let placed = batches.values().map(Vec::len).sum();
        for (node, assignments) in batches {
            self.post(node, assignments);
        }
        if more {
            self.inner.wake_dispatch.notify_one();
        }
        placed
    }

    /// Puts `assignments` in `node`'s outbox, and starts its sender unless one is running.
    pub(super) fn post(&self, node: String, assignments: Vec<Assignment>) {
        let start = {
            let mut boxes = lock(&self.inner.outboxes.0);
            let outbox = boxes.entry(node.clone()).or_default();
            outbox.waiting.extend(assignments);
            !std::mem::replace(&mut outbox.sending, true)
        };
        if start {
            let m = self.clone();
            tokio::spawn(async move { m.drain_outbox(node).await });
        }
    }

    /// Sends `node`'s outbox one batch at a time until it is empty, then forgets it.
    async fn drain_outbox(&self, node: String) {
        loop {
            let batch = {
                let mut boxes = lock(&self.inner.outboxes.0);
                let Some(outbox) = boxes.get_mut(&node) else {
                    return;
                };
                if outbox.waiting.is_empty() {
                    boxes.remove(&node);
                    return;
                }
                let n = outbox.waiting.len().min(MAX_BATCH);
                outbox.waiting.drain(..n).collect::<Vec<_>>()
            };
            self.send_batch(node.clone(), batch).await;
        }
    }

    /// Sends one batch to a worker; what it does not take goes back to the queue with backoff.
    async fn send_batch(&self, node: String, assignments: Vec<Assignment>) {
        let Some(worker) = self.worker(&node) else {
            tracing::warn!(node = %node, "cannot dispatch: the node is unknown");
            return;
        };
        let batch = AssignmentBatch { assignments };
        let sending = std::time::Instant::now();
        let result = worker.with_timeout(SEND_TIMEOUT).assign(&batch).await;
        self.inner.metrics.dispatch.observe(sending.elapsed());
        let failed: Vec<(TaskId, u64, String)> = match result {
            Ok(reply) => reply
                .rejected
                .into_iter()
                .filter_map(|r| {
                    let gen = batch.assignments.iter().find(|a| a.id == r.id)?.generation;
                    Some((r.id, gen, r.error))
                })
                .collect(),
            Err(e) => batch
                .assignments
                .iter()
                .map(|a| (a.id, a.generation, e.to_string()))
                .collect(),
        };
        for (id, generation, err) in &failed {
            tracing::warn!(task = %id, node = %node, generation, error = %err, "dispatch failed");
        }
        self.requeue(&node, failed).await;
    }

    /// Undoes placements that did not reach their worker: back to Pending, and queued again after
    /// a backoff that grows with the attempts.
    async fn requeue(&self, node: &str, failed: Vec<(TaskId, u64, String)>) {
        if failed.is_empty() {
            return;
        }
        self.inner
            .metrics
            .dispatch_failures
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        let mut retry = Vec::new();
        let staged = {
            let mut st = lock(&self.inner.state);
            let mut batch = Batch::default();
            let now = now_ms();
            for (id, gen, err) in failed {
                let Some(t) = st.tasks.get(&id) else { continue };
                // Only undo what is still this placement; a report may already have moved it on.
                if t.generation != gen || t.state != TaskState::Scheduled {
                    continue;
                }
                let mut t = Task::clone(t);
                if let Err(e) = t.set_state_at(
                    TaskState::Pending,
                    &format!("dispatch to {node} failed: {err}"),
                    now,
                ) {
                    tracing::error!(task = %id, node = %node, generation = gen, error = %e, "illegal transition while requeueing");
                    continue;
                }
                if let Err(e) = st.put(&mut batch, t) {
                    tracing::error!(task = %id, error = %e, "cannot encode a task");
                    continue;
                }
                retry.push(id);
            }
            st.stage(batch, self.inner.store.as_ref())
        };
        if let Err(e) = self.commit(staged).await {
            // The tasks stay Scheduled on the node (the store's view); the node's next full
            // heartbeat sends them again, and the retry below finds them not placeable.
            tracing::warn!(node = %node, error = %e, "store write failed while requeueing");
        }
        self.retry_later(retry);
    }

    /// Queues `ids` again after a backoff that grows with each one's attempts.
    fn retry_later(&self, ids: Vec<TaskId>) {
        let attempts: Vec<(TaskId, u32)> = {
            let mut st = lock(&self.inner.state);
            ids.into_iter()
                .map(|id| {
                    let n = st.attempts.entry(id).or_insert(0);
                    *n += 1;
                    (id, *n)
                })
                .collect()
        };
        for (id, attempt) in attempts {
            let delay = self
                .inner
                .opts
                .dispatch_backoff
                .saturating_mul(1u32 << attempt.min(5).saturating_sub(1))
                .min(Duration::from_secs(10));
            let m = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                lock(&m.inner.state).queue.push_back(id);
                m.inner.wake_dispatch.notify_one();
            });
        }
    }

    /// Puts up to [`RETRY_BATCH`] blocked tasks back on the queue and wakes the dispatcher;
    /// returns how many. The liveness loop calls it every [`RETRY_PERIOD`].
    pub fn retry_blocked_once(&self) -> usize {
        let n = lock(&self.inner.state).unblock(RETRY_BATCH);
        if n > 0 {
            tracing::debug!(tasks = n, "retrying tasks that did not fit");
            self.inner.wake_dispatch.notify_one();
        }
        n
    }

    /// Runs [`Manager::dispatch_once`] whenever woken, until shutdown.
    pub(super) async fn dispatch_loop(self) {
        loop {
            tokio::select! {
                _ = self.inner.wake_dispatch.notified() => {}
                _ = self.inner.shutdown.wait() => return,
            }
            self.dispatch_once().await;
        }
    }
}
