//! The manager's index: tasks by id and by node, counts by state, node records, the scheduler's
//! node snapshots, the dispatch queue, and the writes that are queued but not yet synced.
//!
//! Every change of a task goes through [`State::put`] or [`State::remove`], which keep the indexes
//! and snapshots in step ([`State::apply`]) and record the change in a [`Batch`]. A batch is queued
//! to the store in the same critical section ([`State::stage`]), so writes reach the disk in the
//! order memory changed. Until its write is synced a change is *unsynced*: nothing outside the
//! manager acts on it (no answer, no assignment), and if the write fails [`State::settle`] puts back
//! the last value that is on disk. So "acknowledged" and "in memory" never disagree for longer than
//! a write takes, and never after a failure.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use poseidon_schedulers::{
    Constraint as Rule, Demand, Eligibility, NoFit, NodeSnapshot, Scheduler,
};
use serde::{Deserialize, Serialize};

use crate::placement::{self, group_key, wants_distinct_hosts};
use crate::service::Service;
use crate::store::{Op, Pending, Store, StoreError};
use crate::task::{State as TaskState, Task, TaskId, TaskSpec};
use crate::wire::{Capacity, NodeStats};

use super::events::EventLog;
use super::interner::TaskInterner;
use super::reconcile::ClusterView;
use crate::wire::EventBody;

pub use crate::wire::NodeState;

/// What the manager stores about a node (the rest is live and comes with each heartbeat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The worker's name.
    pub name: String,
    /// How to reach it.
    pub address: String,
    /// What it offers.
    pub capacity: Capacity,
    /// Its labels, as its last heartbeat carried them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The host volumes its worker offers (names), as its last heartbeat carried them: a task
    /// mounting one is placed only where it is offered (`node.host_volume.NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_volumes: Vec<String>,
    /// Whether the user lets new tasks go to it (`POST /nodes/{name}/eligibility`); kept across
    /// restarts, and never changed by a heartbeat.
    #[serde(default = "eligible_by_default")]
    pub eligible: bool,
    /// Whether the user is draining it (`POST /nodes/{name}/drain`): ineligible, and its service
    /// tasks are moved off.
    #[serde(default)]
    pub draining: bool,
    /// The IP address its tasks' published ports are reached at, as its last heartbeat carried
    /// it (the worker's `endpoint_address`); `None`: the host of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_address: Option<String>,
}

fn eligible_by_default() -> bool {
    true
}

impl NodeRecord {
    /// A node record with no labels, eligible and not draining.
    pub fn new(name: impl Into<String>, address: impl Into<String>, capacity: Capacity) -> Self {
        NodeRecord {
            name: name.into(),
            address: address.into(),
            capacity,
            labels: BTreeMap::new(),
            host_volumes: Vec::new(),
            eligible: true,
            draining: false,
            endpoint_address: None,
        }
    }

    /// Where its tasks' published ports are reached: its `endpoint_address`, else the host of
    /// its advertised address (`None` when that has none).
    pub fn endpoint_host(&self) -> Option<&str> {
        self.endpoint_address
            .as_deref()
            .or_else(|| super::catalog::address_host(&self.address))
    }

    /// The scheduler's view of what the user decided about the node.
    pub fn eligibility(&self) -> Eligibility {
        if self.draining {
            Eligibility::Draining
        } else if self.eligible {
            Eligibility::Eligible
        } else {
            Eligibility::Ineligible
        }
    }
}

/// A node as the manager sees it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The durable part.
    pub record: NodeRecord,
    /// The record as the store last acknowledged it (`None` when it was never written), so that a
    /// heartbeat retried after a failed write writes the record again.
    pub stored: Option<NodeRecord>,
    /// Up, unhealthy, down or waiting.
    pub state: NodeState,
    /// Why it is unhealthy, if it is.
    pub problem: Option<String>,
    /// Its last reported figures.
    pub stats: NodeStats,
    /// When its last heartbeat arrived (monotonic), if ever.
    pub last_heartbeat: Option<Instant>,
    /// When its last heartbeat arrived (wall clock, ms), if ever.
    pub last_heartbeat_ms: Option<u64>,
    /// How long it may stay silent before it is counted down: the TTL that goes with the interval
    /// it was last told (`liveness::heartbeat_plan`).
    pub ttl: Duration,
}

impl Node {
    /// A node never heard from.
    pub fn waiting(record: NodeRecord, stored: bool, last_heartbeat: Option<Instant>) -> Node {
        Node {
            stored: stored.then(|| record.clone()),
            record,
            state: NodeState::Waiting,
            problem: None,
            stats: NodeStats::default(),
            last_heartbeat,
            last_heartbeat_ms: None,
            ttl: crate::config::DEFAULT_HEARTBEAT_TTL,
        }
    }
}

/// Changes made under the lock whose write is not queued yet.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
    /// The tasks changed, with the sequence number of their change.
    tasks: Vec<(TaskId, u64)>,
}

impl Batch {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The value of the last write added, if it is a put.
    pub fn last_record(&self) -> Option<&[u8]> {
        match self.ops.last()? {
            Op::Put(_, _, value) => Some(value),
            Op::Delete(..) => None,
        }
    }

    /// Adds an op that memory does not track (a node record).
    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }
}

/// A batch queued to the store: wait for it, then hand it to [`State::settle`].
#[derive(Debug)]
pub struct Staged {
    /// The queued write.
    pub pending: Pending,
    /// The task changes it carries.
    pub tasks: Vec<(TaskId, u64)>,
}

/// What memory must fall back to while a task's writes are in flight.
#[derive(Debug)]
struct Unsynced {
    /// The value the store holds for sure (`None`: the store has no such task).
    durable: Option<Box<Task>>,
    /// Earlier writes still in flight, oldest first, with the value each one writes.
    earlier: Vec<(u64, Option<Box<Task>>)>,
    /// The sequence number of the write of the value now in memory.
    latest: u64,
}

/// The manager's working state.
pub struct State {
    /// Tasks by id. Boxed: a `Task` is over 500 bytes, and a hash table keeps up to half of its
    /// slots empty (and two tables alive while it grows), so at a million tasks inline values cost
    /// about a gigabyte more than the tasks themselves; a box costs 8 bytes a slot.
    pub(super) tasks: HashMap<TaskId, Box<Task>>,
    /// How many tasks are in each state (indexed like `TaskState::ALL`), kept in step by
    /// [`State::apply`] so that `GET /metrics` does not walk every task under the lock.
    pub(super) counts: [usize; TaskState::ALL.len()],
    /// Task ids by the node they are placed on.
    pub(super) by_node: HashMap<String, HashSet<TaskId>>,
    /// Every node, by name.
    pub(super) nodes: BTreeMap<String, Node>,
    /// Scheduler snapshots, aligned with `order`: in name order after a load, then each new node
    /// appended (see `snapshots.rs`).
    pub(super) snapshots: Vec<NodeSnapshot>,
    /// The indices of the snapshots changed since the scheduler's last pick (see
    /// `Scheduler::pick_changed`), unless `all_changed`.
    pub(super) changed: Vec<usize>,
    /// Too many changes to list (or a rebuild): the next pick reads every snapshot.
    pub(super) all_changed: bool,
    /// A node's index in `snapshots`.
    pub(super) order: HashMap<String, usize>,
    /// The placement policy.
    pub(super) scheduler: Box<dyn Scheduler>,
    /// Pending tasks waiting to be placed, in arrival order.
    pub(super) queue: VecDeque<TaskId>,
    /// Pending tasks that fit nowhere; retried when capacity appears and periodically.
    pub(super) blocked: VecDeque<TaskId>,
    /// The shape of each blocked task's last written reason (which node failed which check), so
    /// that a retry that finds the same shape does not rewrite it (free amounts move all the time).
    pub(super) blocked_shape: HashMap<TaskId, u64>,
    /// Dispatch attempts per task, for backoff.
    pub(super) attempts: HashMap<TaskId, u32>,
    /// For `distinct_hosts`: by group ([`group_key`]), how many tasks that ask for it each node
    /// holds. Kept by [`State::apply`] for those tasks only, so tasks without the constraint cost
    /// nothing here.
    pub(super) groups: HashMap<String, HashMap<String, u32>>,
    /// Services by name (see `service_ops.rs`, which writes them).
    pub(super) services: BTreeMap<String, Service>,
    /// Task ids by the service they are copies of, kept in step by [`State::apply`].
    pub(super) by_service: HashMap<String, HashSet<TaskId>>,
    /// Tasks whose latest change is not synced yet.
    unsynced: HashMap<TaskId, Unsynced>,
    /// The event stream of `GET /events`, fed in the same critical section as each change.
    pub(super) events: EventLog,
    /// The sequence number of the last change.
    write_seq: u64,
    /// The endpoints of every service (`catalog.rs`), kept by [`State::apply`].
    pub(super) catalog: super::catalog::Catalog,
    /// One copy of each distinct spec body and history string among the tasks
    /// (`interner.rs`), applied by [`State::put`] and on load.
    shared: TaskInterner,
}

/// The position of a state in `TaskState::ALL` (and in `State::counts`).
pub(super) fn state_index(s: TaskState) -> usize {
    TaskState::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

/// What a task reserves on its node.
pub(super) fn demand_of(spec: &TaskSpec) -> Demand {
    Demand {
        cpus: spec.cpus,
        memory: spec.memory,
        host_ports: spec.ports.iter().filter_map(|p| p.host_port).collect(),
        ..Demand::default()
    }
}

/// What a task asks of the node it is being placed on: its resources, its constraints, and for
/// `distinct_hosts` the nodes that already hold a task of its group.
pub(super) fn placement_demand(st: &State, task: &Task) -> Demand {
    let mut demand = demand_of(&task.spec);
    // A host volume is offered only by the nodes whose worker lists it.
    demand.constraints = crate::spec::required_node_attributes(&task.spec)
        .iter()
        .map(|attribute| Rule::equal(attribute, "true"))
        .collect();
    if task.spec.constraints.is_empty() {
        return demand;
    }
    demand
        .constraints
        .extend(placement::scheduler_constraints(&task.spec.constraints));
    if wants_distinct_hosts(&task.spec.constraints) {
        let taken = st
            .groups
            .get(&group_key(task))
            .map(|nodes| nodes.keys().cloned().collect())
            .unwrap_or_default();
        demand.distinct_hosts = Some(taken);
    }
    demand
}

/// A task's event: its state after a change (`removed` when it was forgotten).
fn task_event(t: &Task, removed: bool) -> EventBody {
    EventBody::Task {
        id: t.id,
        name: t.spec.name.clone(),
        state: t.state,
        desired: t.desired,
        node: t.node.clone(),
        generation: t.generation,
        reason: t.reason.clone(),
        exit_code: t.exit_code,
        restart_count: t.restart_count,
        removed,
    }
}

/// The node a task holds resources on: placed there and not finished.
pub(super) fn holding(task: &Task) -> Option<&str> {
    match task.state {
        TaskState::Pending => None,
        _ if task.is_finished() => None,
        _ => task.node.as_deref(),
    }
}

impl State {
    /// A state holding `tasks` (as loaded from the store, so all durable) and `nodes`.
    pub fn new(
        scheduler: Box<dyn Scheduler>,
        tasks: Vec<Task>,
        nodes: BTreeMap<String, Node>,
    ) -> State {
        let mut st = State {
            tasks: HashMap::with_capacity(tasks.len()),
            counts: [0; TaskState::ALL.len()],
            by_node: HashMap::new(),
            nodes,
            snapshots: Vec::new(),
            changed: Vec::new(),
            all_changed: true,
            order: HashMap::new(),
            scheduler,
            queue: VecDeque::new(),
            blocked: VecDeque::new(),
            blocked_shape: HashMap::new(),
            attempts: HashMap::new(),
            groups: HashMap::new(),
            services: BTreeMap::new(),
            by_service: HashMap::new(),
            unsynced: HashMap::new(),
            events: EventLog::default(),
            write_seq: 0,
            catalog: super::catalog::Catalog::default(),
            shared: TaskInterner::default(),
        };
        let mut pending: Vec<(u64, TaskId)> = Vec::new();
        for t in tasks {
            if t.state == TaskState::Pending && t.desired == crate::task::Desired::Run {
                pending.push((t.created_ms, t.id));
            }
            if let Some(n) = &t.node {
                st.by_node.entry(n.clone()).or_default().insert(t.id);
            }
            if let Some(n) = holding(&t).filter(|_| wants_distinct_hosts(&t.spec.constraints)) {
                *st.groups
                    .entry(group_key(&t))
                    .or_default()
                    .entry(n.to_string())
                    .or_insert(0) += 1;
            }
            if let Some(s) = &t.service {
                st.by_service.entry(s.clone()).or_default().insert(t.id);
            }
            st.counts[state_index(t.state)] += 1;
            let mut t = t;
            st.shared.share(&mut t, None);
            st.tasks.insert(t.id, Box::new(t));
        }
        pending.sort();
        st.queue.extend(pending.into_iter().map(|(_, id)| id));
        st.rebuild_snapshots();
        st
    }

    /// Applies the resource and index consequences of a task changing from `old` to `new`, and
    /// publishes the change as an event (a counter increment when nobody listens).
    pub(super) fn apply(&mut self, old: Option<&Task>, new: Option<&Task>) {
        match (old, new) {
            (_, Some(t)) => self.events.publish(|| task_event(t, false)),
            (Some(t), None) => self.events.publish(|| task_event(t, true)),
            (None, None) => {}
        }
        self.catalog_apply(old, new);
        if let Some(o) = old {
            let c = &mut self.counts[state_index(o.state)];
            *c = c.saturating_sub(1);
            if let Some(n) = holding(o) {
                if let Some(&i) = self.order.get(n) {
                    self.snapshots[i].release(&demand_of(&o.spec));
                    self.touch(i);
                }
                if wants_distinct_hosts(&o.spec.constraints) {
                    let key = group_key(o);
                    if let Some(nodes) = self.groups.get_mut(&key) {
                        if let Some(count) = nodes.get_mut(n) {
                            *count = count.saturating_sub(1);
                            if *count == 0 {
                                nodes.remove(n);
                            }
                        }
                        if nodes.is_empty() {
                            self.groups.remove(&key);
                        }
                    }
                }
            }
            if let Some(n) = &o.node {
                if new.is_none_or(|t| t.node.as_ref() != Some(n)) {
                    if let Some(set) = self.by_node.get_mut(n) {
                        set.remove(&o.id);
                    }
                }
            }
            if let Some(s) = &o.service {
                if new.is_none_or(|t| t.service.as_ref() != Some(s)) {
                    if let Some(set) = self.by_service.get_mut(s) {
                        set.remove(&o.id);
                    }
                }
            }
        }
        if let Some(t) = new {
            self.counts[state_index(t.state)] += 1;
            if let Some(n) = holding(t) {
                if let Some(&i) = self.order.get(n) {
                    self.snapshots[i].place(&demand_of(&t.spec));
                    self.touch(i);
                }
                if wants_distinct_hosts(&t.spec.constraints) {
                    *self
                        .groups
                        .entry(group_key(t))
                        .or_default()
                        .entry(n.to_string())
                        .or_insert(0) += 1;
                }
            }
            if let Some(n) = &t.node {
                self.by_node.entry(n.clone()).or_default().insert(t.id);
            }
            if let Some(s) = &t.service {
                self.by_service.entry(s.clone()).or_default().insert(t.id);
            }
        }
    }

    /// Replaces a task in memory, keeping indexes and snapshots in step, and records the write in
    /// `batch`. Nothing changes when the task cannot be encoded.
    pub fn put(&mut self, batch: &mut Batch, mut task: Task) -> Result<(), StoreError> {
        let id = task.id;
        // Shared before it is encoded, so that the record uses the shared body's kept JSON.
        self.shared
            .share(&mut task, self.tasks.get(&id).map(|t| &**t));
        let op = Op::put_task(&task)?;
        let old = self.tasks.remove(&id);
        self.apply(old.as_deref(), Some(&task));
        self.tasks.insert(id, Box::new(task));
        self.track(batch, id, old, op);
        Ok(())
    }

    /// Adds a new task that changed again before its first write (accepted, then placed at once):
    /// both changes are applied and published in order, and only the last value is written, so a
    /// failed write forgets the task as [`State::put`]'s would. Nothing changes when the task
    /// cannot be encoded.
    pub fn put_new_changed(
        &mut self,
        batch: &mut Batch,
        first: &Task,
        mut task: Task,
    ) -> Result<(), StoreError> {
        let id = task.id;
        debug_assert!(first.id == id && !self.tasks.contains_key(&id));
        // Shared before it is encoded, as in `put`.
        self.shared.share(&mut task, None);
        let op = Op::put_task(&task)?;
        self.apply(None, Some(first));
        self.apply(Some(first), Some(&task));
        self.tasks.insert(id, Box::new(task));
        self.track(batch, id, None, op);
        Ok(())
    }

    /// Asks the scheduler for a node that meets `demand` (see [`placement_demand`]): the node's
    /// name, or why none fits. Only the snapshots changed since the last pick are read (E-PVM's
    /// index; the other policies scan all of them either way).
    pub(super) fn pick(&mut self, demand: &Demand) -> Result<String, NoFit> {
        let picked = if self.all_changed {
            self.scheduler.pick(&self.snapshots, demand)
        } else {
            self.scheduler
                .pick_changed(&self.snapshots, demand, &self.changed)
        };
        self.changed.clear();
        self.all_changed = false;
        picked.map(|i| self.snapshots[i].id.clone())
    }

    /// Why no node meets `demand`, as a failed [`State::pick`] would say it, or `None` when one
    /// does. Asks no scheduler: a pick moves a policy's state (round-robin's cursor), and this
    /// places nothing.
    pub(super) fn why_nothing_fits(&self, demand: &Demand) -> Option<NoFit> {
        if self
            .snapshots
            .iter()
            .any(|n| poseidon_schedulers::fits(n, demand))
        {
            None
        } else {
            Some(NoFit::from_nodes(&self.snapshots, demand))
        }
    }

    /// Forgets a task in memory and records the delete in `batch`; false if it is unknown.
    pub fn remove(&mut self, batch: &mut Batch, id: TaskId) -> bool {
        let Some(old) = self.tasks.remove(&id) else {
            return false;
        };
        self.blocked_shape.remove(&id);
        self.apply(Some(&*old), None);
        self.track(batch, id, Some(old), Op::delete_task(id));
        true
    }

    /// Remembers what a change replaced, so that a failed write can be undone.
    fn track(&mut self, batch: &mut Batch, id: TaskId, old: Option<Box<Task>>, op: Op) {
        self.write_seq += 1;
        let seq = self.write_seq;
        match self.unsynced.entry(id) {
            Entry::Occupied(mut e) => {
                // The value replaced is the one the previous write in flight carries.
                let u = e.get_mut();
                let prev = u.latest;
                u.earlier.push((prev, old));
                u.latest = seq;
            }
            Entry::Vacant(e) => {
                e.insert(Unsynced {
                    durable: old,
                    earlier: Vec::new(),
                    latest: seq,
                });
            }
        }
        batch.ops.push(op);
        batch.tasks.push((id, seq));
    }

    /// Queues `batch` to `store` (in this critical section, so writes keep memory's order).
    pub fn stage(&mut self, batch: Batch, store: &dyn Store) -> Option<Staged> {
        if batch.ops.is_empty() {
            return None;
        }
        Some(Staged {
            pending: store.submit(batch.ops),
            tasks: batch.tasks,
        })
    }

    /// Undoes a batch that will not be written (it could not be built completely).
    pub fn abort(&mut self, batch: Batch) {
        self.settle(&batch.tasks, false);
    }

    /// Records the outcome of a write: on success its values are durable; on failure memory falls
    /// back to the value the store holds (or to the value of an earlier write still in flight,
    /// which is settled in its turn).
    pub fn settle(&mut self, tasks: &[(TaskId, u64)], ok: bool) {
        // Newest first, so that a task changed twice in one batch falls back step by step.
        for &(id, seq) in tasks.iter().rev() {
            self.settle_one(id, seq, ok);
        }
    }

    fn settle_one(&mut self, id: TaskId, seq: u64, ok: bool) {
        let Some(u) = self.unsynced.get_mut(&id) else {
            // Already settled by a later write of the same task (full records: the later wins).
            return;
        };
        let earlier = u.earlier.iter().position(|(s, _)| *s == seq);
        if ok {
            if seq == u.latest {
                self.unsynced.remove(&id);
            } else if let Some(pos) = earlier {
                let (_, value) = u.earlier.remove(pos);
                u.earlier.drain(..pos);
                u.durable = value;
            }
            return;
        }
        if seq == u.latest {
            let back = match u.earlier.pop() {
                Some((s, value)) => {
                    u.latest = s;
                    value
                }
                None => self.unsynced.remove(&id).and_then(|u| u.durable),
            };
            let current = self.tasks.remove(&id);
            self.apply(current.as_deref(), back.as_deref());
            if let Some(t) = back {
                self.tasks.insert(id, t);
            }
        } else if let Some(pos) = earlier {
            // Its value never reached the disk; falling back must skip it.
            u.earlier.remove(pos);
        }
    }

    /// True when a task's current node and generation are on disk, so it may be sent to a worker.
    pub fn placement_durable(&self, id: TaskId) -> bool {
        let Some(u) = self.unsynced.get(&id) else {
            return true;
        };
        match (self.tasks.get(&id), &u.durable) {
            (Some(t), Some(d)) => t.node == d.node && t.generation == d.generation,
            _ => false,
        }
    }

    /// Publishes a node's current state as an event.
    pub(super) fn node_event(&mut self, name: &str) {
        let Some(n) = self.nodes.get(name) else {
            return;
        };
        let (state, problem) = (n.state, n.problem.clone());
        self.events.publish(|| EventBody::Node {
            name: name.to_string(),
            state,
            problem,
        });
    }

    /// Moves up to `limit` blocked tasks (oldest first) back to the queue; returns how many.
    pub fn unblock(&mut self, limit: usize) -> usize {
        let n = self.blocked.len().min(limit);
        let moved: Vec<TaskId> = self.blocked.drain(..n).collect();
        self.queue.extend(moved);
        n
    }
}

impl ClusterView for State {
    fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id).map(|t| &**t)
    }

    fn assigned(&self, node: &str) -> Vec<TaskId> {
        self.by_node
            .get(node)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn placement_durable(&self, id: TaskId) -> bool {
        State::placement_durable(self, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn state() -> State {
        let scheduler = poseidon_schedulers::by_name("round-robin").expect("known scheduler");
        State::new(scheduler, Vec::new(), BTreeMap::new())
    }

    fn task(state: TaskState) -> Task {
        let spec: TaskSpec =
            serde_json::from_str(r#"{"name":"a","image":"busybox"}"#).expect("spec parses");
        Task::new(TaskId::new(), spec, state)
    }

    #[test]
    fn a_failed_write_of_a_new_task_forgets_it() {
        let mut st = state();
        let mut b = Batch::default();
        let t = task(TaskState::Pending);
        st.put(&mut b, t.clone()).expect("encodes");
        assert_eq!(st.counts[0], 1);
        st.settle(&b.tasks, false);
        assert!(st.tasks.is_empty());
        assert_eq!(st.counts[0], 0);
    }

    #[test]
    fn a_failed_write_falls_back_to_the_last_synced_value_even_when_settled_out_of_order() {
        let mut st = state();
        let t0 = task(TaskState::Pending);
        let id = t0.id;
        let mut b0 = Batch::default();
        st.put(&mut b0, t0).expect("encodes");
        st.settle(&b0.tasks, true);
        // Two writes in flight: one to Scheduled (gen 1), then one to Running.
        let mut t1 = Task::clone(&st.tasks[&id]);
        t1.generation = 1;
        t1.node = Some("n".into());
        t1.state = TaskState::Scheduled;
        let mut b1 = Batch::default();
        st.put(&mut b1, t1).expect("encodes");
        assert!(!st.placement_durable(id));
        let mut t2 = Task::clone(&st.tasks[&id]);
        t2.state = TaskState::Running;
        let mut b2 = Batch::default();
        st.put(&mut b2, t2).expect("encodes");
        // The later one fails first; memory shows the earlier one, which then succeeds.
        st.settle(&b2.tasks, false);
        assert_eq!(st.tasks[&id].state, TaskState::Scheduled);
        st.settle(&b1.tasks, true);
        assert_eq!(st.tasks[&id].state, TaskState::Scheduled);
        assert!(st.placement_durable(id));
        assert!(st.unsynced.is_empty());
    }

    #[test]
    fn a_placement_is_durable_only_once_its_write_is_settled() {
        let mut st = state();
        let store = MemStore::new();
        let mut t = task(TaskState::Pending);
        let mut b = Batch::default();
        st.put(&mut b, t.clone()).expect("encodes");
        let staged = st.stage(b, &store).expect("a write");
        st.settle(&staged.tasks, true);
        t.generation = 1;
        t.node = Some("n".into());
        t.state = TaskState::Scheduled;
        let mut b = Batch::default();
        st.put(&mut b, t.clone()).expect("encodes");
        assert!(!st.placement_durable(t.id));
        // A later change that keeps the placement does not hide it once the placement is synced.
        st.settle(&b.tasks, true);
        t.state = TaskState::Running;
        let mut b = Batch::default();
        st.put(&mut b, t.clone()).expect("encodes");
        assert!(st.placement_durable(t.id));
    }
}
