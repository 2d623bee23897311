//! The scheduler's node snapshots, kept in step with the nodes and the tasks they hold, and the
//! list of snapshots changed since the last pick, so that E-PVM's index reads only those
//! (`Scheduler::pick_changed`, issue 17).
//!
//! A node keeps its index for the life of the manager: the vector is in name order after a load,
//! and a node that registers later is appended, so registering costs one snapshot (the tasks that
//! node holds), not a rebuild of every node's (which made registering N nodes quadratic).

use poseidon_schedulers::{Eligibility, NodeSnapshot};

use super::state::{demand_of, holding, Node, NodeState, State};

/// The change list is kept up to this length at least (see [`State::touch`]).
const MAX_LISTED: usize = 4096;

impl State {
    /// Rebuilds the whole snapshot vector, in name order (at load).
    pub fn rebuild_snapshots(&mut self) {
        self.order.clear();
        self.snapshots.clear();
        self.changed.clear();
        self.all_changed = true;
        for (i, (name, node)) in self.nodes.iter().enumerate() {
            self.order.insert(name.clone(), i);
            self.snapshots.push(snapshot_of(name, node));
        }
        // Split borrows instead of cloning every placed task (a node that registers late would
        // otherwise copy the whole task table, a gigabyte at a million tasks).
        let State {
            tasks,
            order,
            snapshots,
            ..
        } = self;
        for t in tasks.values() {
            if let Some(n) = holding(t) {
                if let Some(&i) = order.get(n) {
                    snapshots[i].place(&demand_of(&t.spec));
                }
            }
        }
    }

    /// Builds one node's snapshot from its record and the tasks it holds: in place for a known
    /// node, appended for a new one. Costs what the node holds, whatever the cluster's size.
    pub fn refresh_snapshot(&mut self, name: &str) {
        let Some(node) = self.nodes.get(name) else {
            return;
        };
        let mut s = snapshot_of(name, node);
        if let Some(ids) = self.by_node.get(name) {
            for id in ids {
                if let Some(t) = self.tasks.get(id) {
                    if holding(t) == Some(name) {
                        s.place(&demand_of(&t.spec));
                    }
                }
            }
        }
        match self.order.get(name) {
            Some(&i) => {
                self.snapshots[i] = s;
                self.touch(i);
            }
            // A new length: the scheduler notices it by itself.
            None => {
                self.order.insert(name.to_string(), self.snapshots.len());
                self.snapshots.push(s);
            }
        }
    }

    /// Notes that snapshot `i` changed, for the scheduler's next pick; past [`MAX_LISTED`] or one
    /// entry per node, whichever is more, the list is dropped and the next pick reads every
    /// snapshot (which costs about as much as reading that list).
    pub(super) fn touch(&mut self, i: usize) {
        if self.all_changed {
            return;
        }
        if self.changed.len() >= self.snapshots.len().max(MAX_LISTED) {
            self.changed.clear();
            self.all_changed = true;
        } else {
            self.changed.push(i);
        }
    }

    /// Sets the memory a node's host uses outside its reservations (from its heartbeat).
    pub fn set_used_memory(&mut self, name: &str, used: u64) {
        if let Some(&i) = self.order.get(name) {
            if self.snapshots[i].used_memory != used {
                self.snapshots[i].used_memory = used;
                self.touch(i);
            }
        }
    }

    /// Copies a node's eligibility from its record into its snapshot.
    pub fn sync_eligibility(&mut self, name: &str) {
        let eligibility = self
            .nodes
            .get(name)
            .map_or(Eligibility::Eligible, |n| n.record.eligibility());
        if let Some(&i) = self.order.get(name) {
            self.snapshots[i].eligibility = eligibility;
            self.touch(i);
        }
    }

    /// Marks a node schedulable or not in its snapshot.
    pub fn set_node_up(&mut self, name: &str, up: bool) {
        if let Some(&i) = self.order.get(name) {
            if self.snapshots[i].up != up {
                self.snapshots[i].up = up;
                self.touch(i);
            }
        }
    }
}

/// A node's snapshot from its record and last heartbeat, holding nothing yet.
fn snapshot_of(name: &str, node: &Node) -> NodeSnapshot {
    let mut s = NodeSnapshot::new(
        name.to_string(),
        node.record.capacity.cpus,
        node.record.capacity.memory,
    );
    s.up = node.state == NodeState::Up;
    s.used_memory = node.stats.memory_used;
    s.eligibility = node.record.eligibility();
    s = s.with_labels(&node.record.labels);
    s.attributes.extend(crate::spec::offered_node_attributes(
        node.record.host_volumes.iter().map(String::as_str),
    ));
    s
}
