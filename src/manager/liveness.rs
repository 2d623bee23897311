//! Liveness: a node silent for longer than `heartbeat_ttl` is marked down and its tasks that
//! should run go back to the queue to be placed elsewhere with a new generation.
//!
//! [`Manager::check_nodes_once`] is the step; [`Manager::monitor_loop`] calls it every tenth of the
//! TTL and, every [`RETRY_PERIOD`], retries a slice of the tasks that did not fit. If the write that
//! records a node's loss fails, the node is put back as it was (memory then matches the store) and
//! the next check tries again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::dispatch::RETRY_PERIOD;
use super::state::{Batch, NodeState, State};
use super::{lock, Manager};
use crate::task::{path, Desired, State as TaskState, Task, TaskId};
use crate::util::now_ms;

/// The heartbeat interval the manager tells a worker and the TTL it then gives that node, with
/// `nodes` known nodes and at most `max_per_second` heartbeats a second in all (Nomad's approach):
///
/// - interval `I = nodes / max_per_second` seconds (rounded up to the millisecond); a worker sends
///   at the longer of `I` and its own `heartbeat_interval` (1 s by default), so a cluster of up to
///   `max_per_second` nodes keeps its workers' own intervals;
/// - TTL `= max(heartbeat_ttl, 2 I)`: the configured TTL (5 s by default) until the interval passes
///   half of it, then two intervals, so one lost beat (and the worker's jitter, at most a tenth of
///   an interval) never counts a node down.
pub fn heartbeat_plan(
    nodes: usize,
    max_per_second: u32,
    heartbeat_ttl: Duration,
) -> (Duration, Duration) {
    let per_second = u64::from(max_per_second.max(1));
    let ms = (nodes as u64 * 1000).div_ceil(per_second);
    let interval = Duration::from_millis(ms);
    (interval, heartbeat_ttl.max(interval * 2))
}

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
        let mut lost: Vec<(String, NodeState, Duration)> = Vec::new();
        let mut requeue: Vec<TaskId> = Vec::new();
        let staged = {
            let mut st = lock(&self.inner.state);
            let now = Instant::now();
            let now_wall = now_ms();
            // A node keeps the TTL it was told until its next beat. In a cluster that grew since
            // (5,000 nodes registering within a second), the first ones were told the short
            // interval of a small cluster, and the manager, now receiving everyone's beats, may
            // answer theirs late: never count a node down before the TTL the manager would
            // choose for the cluster as it is now.
            let (_, floor) = heartbeat_plan(
                st.nodes.len(),
                self.inner.opts.max_heartbeats_per_second,
                self.inner.opts.heartbeat_ttl,
            );
            let names: Vec<(String, NodeState, Duration)> = st
                .nodes
                .values()
                .filter(|n| {
                    // A node restored from the store waits with a heartbeat time of the start.
                    let watched = matches!(n.state, NodeState::Up | NodeState::Unhealthy)
                        || (n.state == NodeState::Waiting && n.last_heartbeat.is_some());
                    watched
                        && n.last_heartbeat
                            .is_none_or(|t| now.duration_since(t) > n.ttl.max(floor))
                })
                .map(|n| (n.record.name.clone(), n.state, n.ttl.max(floor)))
                .collect();
            let mut batch = Batch::default();
            for (name, was, ttl) in names {
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
                lost.push((name, was, ttl));
            }
            st.stage(batch, self.inner.store.as_ref())
        };
        if let Err(e) = self.commit(staged).await {
            // The tasks fell back to what the store holds; put the nodes back too, so that the
            // next check finds them silent again and retries.
            tracing::error!(error = %e, "store write failed while marking nodes down; retrying at the next check");
            let mut st = lock(&self.inner.state);
            for (name, was, _) in &lost {
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
        lost.into_iter().map(|(n, _, _)| n).collect()
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

    /// The interval the manager tells its workers and the TTL it keeps for them, at 50 heartbeats a
    /// second and the default TTL of 5 s: clusters of up to 50 nodes keep the workers' own 1 s
    /// and the 5 s TTL; from 250 nodes on the TTL is two intervals.
    #[test]
    fn heartbeat_intervals_and_ttls_follow_the_cluster_size() {
        // (nodes, told interval ms, TTL ms)
        let rows: [(usize, u64, u64); 10] = [
            (0, 0, 5_000),
            (1, 20, 5_000),
            (3, 60, 5_000),
            (50, 1_000, 5_000),
            (100, 2_000, 5_000),
            (250, 5_000, 10_000),
            (1_000, 20_000, 40_000),
            (5_000, 100_000, 200_000),
            (10_000, 200_000, 400_000),
            (100_000, 2_000_000, 4_000_000),
        ];
        for (nodes, interval_ms, ttl_ms) in rows {
            let (interval, ttl) = heartbeat_plan(nodes, 50, Duration::from_secs(5));
            assert_eq!(
                (interval.as_millis() as u64, ttl.as_millis() as u64),
                (interval_ms, ttl_ms),
                "{nodes} nodes"
            );
            // At most 50 a second when every node waits the told interval.
            if !interval.is_zero() {
                assert!(nodes as f64 / interval.as_secs_f64() <= 50.0 + 1e-9);
            }
        }
        // Rounded up to the millisecond, so the rate never exceeds the limit.
        assert_eq!(
            heartbeat_plan(7, 3, Duration::from_secs(5)).0,
            Duration::from_millis(2_334)
        );
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
