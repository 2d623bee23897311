//! What a scheduler sees: a node's capacity and load, and a task's demand.
//!
//! The manager keeps one [`NodeSnapshot`] per node in memory and updates it incrementally: after a
//! pick it calls [`NodeSnapshot::place`] on the chosen snapshot, and when a task stops it calls
//! [`NodeSnapshot::release`], so that placing a task never rebuilds the cluster's view.
//!
//! Placement rules are data too: a node carries its [`Eligibility`] and a map of attributes
//! (`node.labels.disk = ssd`), and a demand carries [`Constraint`]s on those attributes and, for
//! `distinct_hosts`, the set of nodes that already hold a task of its group. The crate never looks
//! anything up itself, so a pick stays a pure function of its arguments.

use std::collections::{BTreeMap, BTreeSet};

/// The attribute every node has without being told: its id (the worker's name).
pub const NODE_NAME: &str = "node.name";

/// The prefix of the attributes that come from a worker's configured labels:
/// `labels = { disk = "ssd" }` becomes `node.labels.disk = ssd`.
pub const LABEL_PREFIX: &str = "node.labels.";

/// Whether the user lets new tasks go to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eligibility {
    /// New tasks may be placed on the node.
    #[default]
    Eligible,
    /// Nothing new is placed on the node; what runs there stays.
    Ineligible,
    /// Nothing new is placed on the node, and its service tasks are being moved off.
    Draining,
}

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
    /// Whether new tasks may go to the node; an ineligible or draining node is never a candidate.
    pub eligibility: Eligibility,
    /// What constraints can test, by full attribute name (`node.labels.disk`), beside
    /// [`NODE_NAME`], which is the id and is not stored here. Any `node.*` name can be added later
    /// (a host volume the node offers, its kernel) without changing how constraints are checked.
    pub attributes: BTreeMap<String, String>,
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
            eligibility: Eligibility::Eligible,
            attributes: BTreeMap::new(),
        }
    }

    /// The same node with these labels, stored as `node.labels.KEY` attributes.
    pub fn with_labels<K, V>(mut self, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        for (key, value) in labels {
            self.attributes
                .insert(format!("{LABEL_PREFIX}{}", key.as_ref()), value.into());
        }
        self
    }

    /// The value of an attribute on this node, or `None` when the node does not have it.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        if name == NODE_NAME {
            Some(&self.id)
        } else {
            self.attributes.get(name).map(String::as_str)
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

/// How a [`Constraint`] compares a node's attribute with the wanted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// The attribute is set and equals the value.
    Equal(String),
    /// The attribute is not set, or differs from the value (as in Nomad, a node without the
    /// attribute passes: it certainly does not have the unwanted value).
    NotEqual(String),
    /// The attribute is set and equals one of the values.
    In(Vec<String>),
}

/// A rule on one node attribute that a task's node must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// The attribute's full name: [`NODE_NAME`] or `node.labels.KEY`.
    pub attribute: String,
    /// The comparison and its value.
    pub operator: Operator,
}

impl Constraint {
    /// `attribute = value`.
    pub fn equal(attribute: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            operator: Operator::Equal(value.into()),
        }
    }

    /// `attribute != value`.
    pub fn not_equal(attribute: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            attribute: attribute.into(),
            operator: Operator::NotEqual(value.into()),
        }
    }

    /// `attribute in values`.
    pub fn one_of<V: Into<String>>(
        attribute: impl Into<String>,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        Self {
            attribute: attribute.into(),
            operator: Operator::In(values.into_iter().map(Into::into).collect()),
        }
    }

    /// Whether a node whose attribute has `value` (`None`: not set) satisfies the constraint.
    pub fn admits(&self, value: Option<&str>) -> bool {
        match (&self.operator, value) {
            (Operator::Equal(want), Some(v)) => v == want,
            (Operator::NotEqual(unwanted), Some(v)) => v != unwanted,
            (Operator::NotEqual(_), None) => true,
            (Operator::In(wanted), Some(v)) => wanted.iter().any(|w| w == v),
            (Operator::Equal(_) | Operator::In(_), None) => false,
        }
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
    /// Rules on node attributes; a node must satisfy every one.
    pub constraints: Vec<Constraint>,
    /// `distinct_hosts`: when set, the ids of the nodes that already hold a task of the same group
    /// (the caller decides what a group is and computes the set), none of which may take this one.
    pub distinct_hosts: Option<BTreeSet<String>>,
}

impl Demand {
    /// A demand for CPU and memory and no host ports.
    pub fn new(cpus: f64, memory: u64) -> Self {
        Self {
            cpus,
            memory,
            host_ports: Vec::new(),
            constraints: Vec::new(),
            distinct_hosts: None,
        }
    }

    /// The same demand, with these constraints on node attributes as well.
    pub fn with_constraints(mut self, constraints: impl IntoIterator<Item = Constraint>) -> Self {
        self.constraints.extend(constraints);
        self
    }

    /// The same demand, asking for a node other than these (`distinct_hosts`).
    pub fn with_distinct_hosts<S: Into<String>>(
        mut self,
        taken: impl IntoIterator<Item = S>,
    ) -> Self {
        self.distinct_hosts
            .get_or_insert_with(BTreeSet::new)
            .extend(taken.into_iter().map(Into::into));
        self
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
