//! The workers' side of the manager: heartbeats (registering or refreshing a node, then
//! reconciling what it holds) and reports (immediate changes). Each takes the lock, calls the pure
//! node reconciler (`reconcile.rs`), applies the plan to the index, waits for its synced write, and
//! only then answers with the assignments and stop orders the plan holds.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::dispatch;
use super::liveness::heartbeat_plan;
use super::reconcile::{reconcile, Plan};
use super::state::{holding, Batch, Node, NodeRecord, NodeState, State};
use super::{lock, Manager, ManagerError};
use crate::store::Op;
use crate::task::{State as TaskState, TaskId};
use crate::util::now_ms;
use crate::wire::{Heartbeat, HeartbeatReply, TaskStatus};

impl Manager {
    /// Handles a heartbeat: registers or refreshes the node, reconciles what it holds, writes the
    /// plan, and answers with what it lacks and what it should give up.
    #[tracing::instrument(name = "heartbeat", skip_all, fields(node = %name, full = hb.full))]
    pub async fn heartbeat(
        &self,
        name: &str,
        hb: Heartbeat,
    ) -> Result<HeartbeatReply, ManagerError> {
        self.inner
            .metrics
            .heartbeats
            .fetch_add(1, Ordering::Relaxed);
        let mut record = NodeRecord::new(name, hb.address.clone(), hb.capacity);
        record.labels = hb.labels.clone();
        record.host_volumes = hb.host_volumes.clone();
        record.endpoint_address = hb
            .endpoint_address
            .as_deref()
            .map(endpoint_address)
            .transpose()?;
        let (plan, staged, want_full, interval) = {
            let mut st = lock(&self.inner.state);
            // Eligibility is the user's decision, kept in the record; a heartbeat never changes it.
            if let Some(n) = st.nodes.get(name) {
                record.eligible = n.record.eligible;
                record.draining = n.record.draining;
            }
            let mut batch = Batch::default();
            let was = self.refresh_node(&mut st, &mut batch, &record, &hb)?;
            let (interval, ttl) = heartbeat_plan(
                st.nodes.len(),
                self.inner.opts.max_heartbeats_per_second,
                self.inner.opts.heartbeat_ttl,
            );
            if let Some(n) = st.nodes.get_mut(name) {
                n.ttl = ttl;
            }
            let plan = reconcile(name, &hb.tasks, hb.full, &*st, now_ms());
            self.apply_plan(&mut st, &mut batch, name, &plan);
            // A partial beat after the node was away: ask for everything it holds.
            let want_full = !hb.full && was != Some(NodeState::Up);
            let staged = st.stage(batch, self.inner.store.as_ref());
            (plan, staged, want_full, interval)
        };
        self.commit(staged).await?;
        {
            let mut st = lock(&self.inner.state);
            if let Some(n) = st.nodes.get_mut(name) {
                if n.record == record {
                    n.stored = Some(record);
                }
            }
        }
        let mut reply = self.answer(plan, want_full);
        reply.heartbeat_interval_ms = Some(interval.as_millis() as u64);
        Ok(reply)
    }

    /// Updates a node from its heartbeat (registering it if new); queues its record when the store
    /// does not have it yet. Returns its earlier state (`None` if it is new).
    fn refresh_node(
        &self,
        st: &mut State,
        batch: &mut Batch,
        record: &NodeRecord,
        hb: &Heartbeat,
    ) -> Result<Option<NodeState>, ManagerError> {
        let name = record.name.as_str();
        let old = st.nodes.get(name).map(|n| (n.record.clone(), n.state));
        if st
            .nodes
            .get(name)
            .is_none_or(|n| n.stored.as_ref() != Some(record))
        {
            batch.push(Op::put_node(name, record)?);
        }
        let new_state = if hb.healthy {
            NodeState::Up
        } else {
            NodeState::Unhealthy
        };
        let node = st
            .nodes
            .entry(name.to_string())
            .or_insert_with(|| Node::waiting(record.clone(), false, None));
        node.record = record.clone();
        node.state = new_state;
        node.problem = hb.problem.clone();
        node.stats = hb.stats.clone();
        node.last_heartbeat = Some(Instant::now());
        node.last_heartbeat_ms = Some(now_ms());
        let was = old.as_ref().map(|(_, s)| *s);
        if was != Some(new_state) {
            st.node_event(name);
        }
        let changed = old.as_ref().is_none_or(|(r, _)| r != record);
        if changed {
            st.refresh_snapshot(name);
        }
        // Its tasks' endpoints are reached elsewhere now (its worker's `endpoint_address` or
        // advertised address changed): the catalog follows at once, not at each task's next change.
        if old.as_ref().map(|(r, _)| r.endpoint_host()) != Some(record.endpoint_host()) {
            st.refresh_node_endpoints(name);
        }
        st.set_node_up(name, new_state == NodeState::Up);
        st.set_used_memory(name, hb.stats.memory_used);
        let grew = old.as_ref().is_some_and(|(r, _)| {
            record.capacity.cpus > r.capacity.cpus || record.capacity.memory > r.capacity.memory
        });
        match (was, new_state) {
            (None, _) => {
                tracing::info!(node = %name, address = %record.address, cpus = record.capacity.cpus, memory = record.capacity.memory, "node registered")
            }
            (Some(w), NodeState::Up) if w != NodeState::Up => {
                tracing::info!(node = %name, was = ?w, "node is up")
            }
            (Some(w), NodeState::Unhealthy) if w != NodeState::Unhealthy => {
                tracing::warn!(node = %name, problem = hb.problem.as_deref().unwrap_or(""), "node is unhealthy: nothing is placed on it")
            }
            _ => {}
        }
        if grew {
            tracing::info!(node = %name, cpus = record.capacity.cpus, memory = record.capacity.memory, "node capacity grew");
        }
        // New room: a node that came up or grew may take every task that did not fit.
        if new_state == NodeState::Up && (was != Some(NodeState::Up) || grew) {
            st.unblock(usize::MAX);
        }
        Ok(was)
    }

    /// Applies a plan's updates to memory and `batch` (its requeues wait for the write).
    fn apply_plan(&self, st: &mut State, batch: &mut Batch, node: &str, plan: &Plan) {
        for i in &plan.illegal {
            tracing::error!(task = %i.id, node = %node, generation = i.generation, from = %i.from, to = %i.to, "worker reports an illegal transition; noted, state kept");
        }
        for u in &plan.updates {
            let id = u.task.id;
            let freed = st
                .tasks
                .get(&id)
                .is_some_and(|t| holding(t).is_some() && holding(&u.task).is_none());
            let first_run = u.task.state == TaskState::Running
                && st
                    .tasks
                    .get(&id)
                    .is_some_and(|t| t.state != TaskState::Running && t.started_ms.is_none());
            if first_run {
                let ms = now_ms().saturating_sub(u.task.created_ms);
                self.inner
                    .metrics
                    .submit_to_running
                    .observe(Duration::from_millis(ms));
            }
            if let Err(e) = st.put(batch, u.task.clone()) {
                tracing::error!(task = %id, node = %node, error = %e, "cannot encode a task");
                continue;
            }
            if u.task.service.is_some() {
                self.inner.wake_services.notify_one();
            }
            if u.requeue {
                tracing::info!(task = %id, node = %node, generation = u.task.generation, "the worker gave the task up; placing it again");
            }
            if freed {
                st.unblock(dispatch::RETRY_BATCH);
            }
        }
    }

    /// Turns a plan whose write is synced into the reply, queueing what must be placed again.
    fn answer(&self, plan: Plan, want_full: bool) -> HeartbeatReply {
        let requeue: Vec<TaskId> = plan
            .updates
            .iter()
            .filter(|u| u.requeue)
            .map(|u| u.task.id)
            .collect();
        if !requeue.is_empty() {
            lock(&self.inner.state).queue.extend(requeue);
        }
        self.inner.wake_dispatch.notify_one();
        HeartbeatReply {
            assign: plan.assign,
            stop: plan.stop,
            want_full,
            heartbeat_interval_ms: None,
        }
    }

    /// Handles an immediate report of changed tasks: reconciles, writes, answers.
    #[tracing::instrument(name = "report", skip_all, fields(node = %name, tasks = statuses.len()))]
    pub async fn report(
        &self,
        name: &str,
        statuses: Vec<TaskStatus>,
    ) -> Result<HeartbeatReply, ManagerError> {
        self.inner.metrics.reports.fetch_add(1, Ordering::Relaxed);
        let (plan, staged) = {
            let mut st = lock(&self.inner.state);
            let plan = reconcile(name, &statuses, false, &*st, now_ms());
            let mut batch = Batch::default();
            self.apply_plan(&mut st, &mut batch, name, &plan);
            (plan, st.stage(batch, self.inner.store.as_ref()))
        };
        self.commit(staged).await?;
        Ok(self.answer(plan, false))
    }
}

/// A heartbeat's `endpoint_address`, checked and written the one way an address prints: an IP
/// address other than the unspecified one (the catalog, DNS answers and the routing mesh give it
/// out as is).
fn endpoint_address(text: &str) -> Result<String, ManagerError> {
    match text.parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => Ok(ip.to_string()),
        _ => Err(ManagerError::Invalid(format!(
            "endpoint_address must be an IP address other than 0.0.0.0 or ::, got {text:?}"
        ))),
    }
}
