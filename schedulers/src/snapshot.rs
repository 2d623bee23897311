//! What a scheduler sees: a node's capacity and load, and a task's demand.
//!
//! The manager keeps one [`NodeSnapshot`] per node in memory and updates it incrementally: after a
//! pick it calls [`NodeSnapshot::place`] on the chosen snapshot, and when a task stops it calls
//! [`NodeSnapshot::release`], so that placing a task never rebuilds the cluster's view.

use std::collections::BTreeSet;

/// A node as the scheduler sees it.
///
/// The reserved fields are the sums of what the tasks placed on the node declared; `used_memory` is
/// what the node's stats observed, which may exceed the reservation when tasks declare too little.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSnapshot {
    /// The node's id; ties between equally good nodes go to the lowest id in byte order.
    pub id: String,
    /// Whether the node is alive; a node that is down is never a candidate.
    pub up: bool,
    /// CPU capacity in cores.
    pub cpus: f64,
    /// Memory capacity in bytes.
    pub memory: u64,
    /// The sum of the declared CPU cores of the tasks placed on the node.
    pub reserved_cpus: f64,
    /// The sum of the declared memory, in bytes, of the tasks placed on the node.
    pub reserved_memory: u64,
    /// The memory in use as the node's stats observed it, in bytes; it may exceed `reserved_memory`.
    pub used_memory: u64,
    /// The number of tasks running on or assigned to the node.
    pub tasks: u32,
    /// The host ports taken on the node.
    pub ports_in_use: BTreeSet<u16>,
}

impl NodeSnapshot {
    /// A node that is up, with the given capacity and nothing placed on it.
    pub fn new(id: impl Into<String>, cpus: f64, memory: u64) -> Self {
        Self {
            id: id.into(),
            up: true,
            cpus,
            memory,
            reserved_cpus: 0.0,
            reserved_memory: 0,
            used_memory: 0,
            tasks: 0,
            ports_in_use: BTreeSet::new(),
        }
    }

    /// Records that a task with this demand was placed on the node: what the manager does with the
    /// snapshot a pick chose, before the next pick.
    ///
    /// It adds the declared CPU and memory to the reservations, counts one more task and takes the
    /// host ports. It does not touch `used_memory`, which only the node's stats should move.
    /// Arithmetic saturates rather than wrapping, because a wrapped reservation would make a full
    /// node look empty.
    pub fn place(&mut self, demand: &Demand) {
        self.reserved_cpus += demand.declared_cpus();
        self.reserved_memory = self.reserved_memory.saturating_add(demand.memory);
        self.tasks = self.tasks.saturating_add(1);
        self.ports_in_use
            .extend(demand.host_ports.iter().copied().filter(|&p| p != 0));
    }

    /// Undoes [`NodeSnapshot::place`] when a task with this demand stops or moves away.
    ///
    /// Reservations never go below zero, so releasing a task twice cannot make a node look larger
    /// than it is. Repeated float additions and subtractions drift by a few ulps; the CPU check's
    /// epsilon absorbs that, and the manager may recompute the sums from its task table at any time.
    pub fn release(&mut self, demand: &Demand) {
        self.reserved_cpus = (self.reserved_cpus - demand.declared_cpus()).max(0.0);
        self.reserved_memory = self.reserved_memory.saturating_sub(demand.memory);
        self.tasks = self.tasks.saturating_sub(1);
        for port in &demand.host_ports {
            self.ports_in_use.remove(port);
        }
    }

    /// Cores not yet reserved, never negative.
    pub fn free_cpus(&self) -> f64 {
        (self.cpus - self.reserved_cpus).max(0.0)
    }

    /// Bytes of memory not yet reserved.
    pub fn free_memory(&self) -> u64 {
        self.memory.saturating_sub(self.reserved_memory)
    }
}

/// What a task asks of the node it runs on.
///
/// A zero (or negative, or NaN) `cpus` and a zero `memory` mean the task declared nothing for that
/// resource: it is then not checked, and it adds nothing to the node's reservation or cost.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Demand {
    /// Declared CPU in cores.
    pub cpus: f64,
    /// Declared memory in bytes.
    pub memory: u64,
    /// Host ports the task binds; port 0 asks the runtime for any free port, so it is never checked.
    pub host_ports: Vec<u16>,
}

impl Demand {
    /// A demand for CPU and memory and no host ports.
    pub fn new(cpus: f64, memory: u64) -> Self {
        Self {
            cpus,
            memory,
            host_ports: Vec::new(),
        }
    }

    /// The same demand, also binding these host ports.
    pub fn with_ports(mut self, ports: impl IntoIterator<Item = u16>) -> Self {
        self.host_ports.extend(ports);
        self
    }

    /// Whether the task declared CPU at all; only then do CPU checks and costs apply.
    pub fn declares_cpus(&self) -> bool {
        self.cpus > 0.0
    }

    /// The declared cores, with anything that is not a positive number read as none.
    pub fn declared_cpus(&self) -> f64 {
        if self.declares_cpus() {
            self.cpus
        } else {
            0.0
        }
    }
}
