//! Liveness: a node silent for longer than `heartbeat_ttl` is marked down and its tasks that
//! should run go back to the queue to be placed elsewhere with a new generation.
//!
//! [`Manager::check_nodes_once`] is the step; [`Manager::monitor_loop`] calls it every tenth of the
//! TTL and, every [`RETRY_PERIOD`], retries a slice of the tasks that did not fit. If the write that
//! records a node's loss fails, the node is put back as it was (memory then matches the store) and
//! the next check tries again.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::dispatch::RETRY_PERIOD;
use super::state::{Batch, NodeState, State};
use super::{lock, Manager};
use crate::task::{path, Desired, State as TaskState, Task, TaskId};
use crate::util::now_ms;

/// What losing `node` means for one of its tasks: its new value, and whether to queue it for a new
/// placement. `None` when the task is finished or no longer on that node.
pub fn on_node_lost(task: &Task, node: &str, ttl: Duration, now: u64) -> Option<(Task, bool)> {
    if task.is_finished() || task.node.as_deref() != Some(node) {
        return None;
    }
    let mut t = Task::clone(task);
    let why = format!(
        "node {node} is down (no heartbeat for {:.1} s)",
        ttl.as_secs_f64()
    );
    if t.desired == Desired::Stop {
        // The user stopped it: it ends here (its worker, if it ever returns, is told to stop).
        for s in path(t.state, TaskState::Completed).unwrap_or_default() {
            if t.set_state_at(s, "stopped (its node is down)", now)
                .is_err()
            {
                break;
            }
        }
        return Some((t, false));
    }
    if matches!(t.state, TaskState::Scheduled | TaskState::Running) {
        t.set_state_at(TaskState::Pending, &why, now).ok()?;
    } else {
        // Failed or completed while waiting for a restart on that node: Completed/Failed ->
        // Pending is not a legal move, so it keeps its state with a note and is placed again
        // (through Scheduled) by the dispatcher, which takes stranded tasks.
        t.record_at(t.state, &why, now);
    }
    Some((t, true))
}

impl Manager {
    /// Marks nodes whose heartbeats stopped as down and moves their tasks back to the queue.
    /// Returns the names of the nodes it marked down.
    pub async fn check_nodes_once(&self) -> Vec<String> {
        let ttl = self.inner.opts.heartbeat_ttl;
        let mut lost: Vec<(String, NodeState)> = Vec::new();
        let mut requeue: Vec<TaskId> = Vec::new();
        let staged = {
            let mut st = lock(&self.inner.state);
            let now = Instant::now();
            let now_wall = now_ms();
            let names: Vec<(String, NodeState)> = st
                .nodes
                .values()
                .filter(|n| {
                    // A node restored from the store waits with a heartbeat time of the start.
                    let watched = matches!(n.state, NodeState::Up | NodeState::Unhealthy)
                        || (n.state == NodeState::Waiting && n.last_heartbeat.is_some());
                    watched && n.last_heartbeat.is_none_or(|t| now.duration_since(t) > ttl)
                })
                .map(|n| (n.record.name.clone(), n.state))
                .collect();
            let mut batch = Batch::default();
            for (name, was) in names {
                if let Some(n) = st.nodes.get_mut(&name) {
                    n.state = NodeState::Down;
                }
                st.node_event(&name);
                st.set_node_up(&name, false);
                self.inner
                    .metrics
                    .nodes_lost
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node = %name, was = ?was, ttl_ms = ttl.as_millis() as u64, "node is down: no heartbeat within the TTL");
                let mut ids: Vec<TaskId> = st
                    .by_node
                    .get(&name)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                ids.sort();
                for id in ids {
                    let Some(task) = st.tasks.get(&id) else {
                        continue;
                    };
                    let Some((t, again)) = on_node_lost(task, &name, ttl, now_wall) else {
                        continue;
                    };
                    let generation = t.generation;
                    if let Err(e) = st.put(&mut batch, t) {
                        tracing::error!(task = %id, error = %e, "cannot encode a task");
                        continue;
                    }
                    if again {
                        tracing::info!(task = %id, node = %name, generation, "rescheduling the task of a lost node");
                        requeue.push(id);
                    }
                }
                lost.push((name, was));
            }
            st.stage(batch, self.inner.store.as_ref())
        };
        if let Err(e) = self.commit(staged).await {
            // The tasks fell back to what the store holds; put the nodes back too, so that the
            // next check finds them silent again and retries.
            tracing::error!(error = %e, "store write failed while marking nodes down; retrying at the next check");
            let mut st = lock(&self.inner.state);
            for (name, was) in &lost {
                restore_node(&mut st, name, *was);
            }
            return Vec::new();
        }
        if !requeue.is_empty() {
            self.inner
                .metrics
                .rescheduled
                .fetch_add(requeue.len() as u64, Ordering::Relaxed);
            lock(&self.inner.state).queue.extend(requeue);
        }
        if !lost.is_empty() {
            self.inner.wake_dispatch.notify_one();
        }
        lost.into_iter().map(|(n, _)| n).collect()
    }

    /// Checks liveness every tenth of the TTL (at least every 50 ms) and retries blocked tasks
    /// every [`RETRY_PERIOD`], until shutdown.
    pub(super) async fn monitor_loop(self) {
        let period = (self.inner.opts.heartbeat_ttl / 10).max(Duration::from_millis(50));
        let mut last_retry = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = self.inner.shutdown.wait() => return,
            }
            self.check_nodes_once().await;
            if last_retry.elapsed() >= RETRY_PERIOD {
                last_retry = tokio::time::Instant::now();
                self.retry_blocked_once();
            }
        }
    }
}

/// Puts a node marked down back in its earlier state, unless a heartbeat already changed it.
fn restore_node(st: &mut State, name: &str, was: NodeState) {
    let Some(n) = st.nodes.get_mut(name) else {
        return;
    };
    if n.state != NodeState::Down {
        return;
    }
    n.state = was;
    st.node_event(name);
    st.set_node_up(name, was == NodeState::Up);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskSpec;

    fn task(state: TaskState, desired: Desired, node: &str) -> Task {
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name":"a","image":"busybox"}"#).expect("spec parses");
        let mut t = Task::new(TaskId::new(), spec, state);
        t.desired = desired;
        t.node = Some(node.into());
        t.generation = 3;
        t
    }

    /// (state, desired, on the lost node, expected: None or (new state, requeued))
    type Row = (TaskState, Desired, bool, Option<(TaskState, bool)>);

    #[test]
    fn losing_a_node_requeues_what_should_run_and_ends_what_was_stopped() {
        let ttl = Duration::from_secs(5);
        let rows: [Row; 7] = [
            (
                TaskState::Running,
                Desired::Run,
                true,
                Some((TaskState::Pending, true)),
            ),
            (
                TaskState::Scheduled,
                Desired::Run,
                true,
                Some((TaskState::Pending, true)),
            ),
            (
                TaskState::Running,
                Desired::Stop,
                true,
                Some((TaskState::Completed, false)),
            ),
            (
                TaskState::Scheduled,
                Desired::Stop,
                true,
                Some((TaskState::Completed, false)),
            ),
            (TaskState::Running, Desired::Run, false, None),
            // Finished (no restart policy): nothing to do.
            (TaskState::Completed, Desired::Run, true, None),
            (TaskState::Failed, Desired::Stop, true, None),
        ];
        for (state, desired, on_it, want) in rows {
            let t = task(state, desired, if on_it { "lost" } else { "other" });
            let got = on_node_lost(&t, "lost", ttl, 1_000).map(|(t, again)| (t.state, again));
            assert_eq!(got, want, "{state} {desired:?} on the lost node: {on_it}");
        }
    }
}
