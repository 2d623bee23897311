//! The exact index behind [`crate::Epvm`]'s pick: a tree of boxes over the nodes, searched by branch
//! and bound, so that most nodes are never scored.
//!
//! # What it keeps
//!
//! - One [`Record`] per node: every input of its cost and feasibility (up, capacity, reservations,
//!   observed memory, task count) and its id, exactly as last seen, with its two powers before
//!   placement, `n^(u memory)` and `n^(u cpu)`, for the `ln n` the index was built for.
//! - A complete binary tree over the nodes (implicit in a vector, leaves in a k-d order: machine
//!   shape first, then the coordinate whose spread is largest). Each tree node holds the [`Bounds`]
//!   of the *up* nodes below it: the least of each power and of the task count, the largest and
//!   least memory and CPU capacity, the most free memory, and the member with the lowest
//!   `(id, index)`. Changing one node recomputes its leaf and the `log2 N` boxes above it.
//! - The up nodes by task count, for `n` and `max_jobs`.
//!
//! # Why the search is exact
//!
//! For one decision `MC = P * S(M) + J(t) * j + Q * S(C)`, where `P` and `Q` are the node's powers,
//! `S(M) = expm1(d / M * ln n)` falls as the capacity `M` grows, `J(t) = n^(t / max_jobs)` grows with
//! the task count and `j`, `ln n` and the demand are the same for every node. Every factor is at
//! least 0, so a box's bound, `P_min * S(M_max) + J_floor(t_min) * j + Q_min * S(C_max)`, is at most
//! the cost of each of its members. This holds for the floating-point numbers, not only the real
//! ones: `P_min` and `Q_min` *are* some members' stored powers; IEEE multiplication and addition
//! are monotone in each non-negative operand; `J_floor` is the suffix minimum of the job-slot table,
//! so it never exceeds a larger count's entry; and where a box mixes capacities, `S(M_max)` is
//! lowered by a relative 1e-12, far more than the one-ulp error through which `expm1` could fail to
//! be monotone. A leaf's cost is computed with the very functions, cached values and order of
//! additions of the exhaustive scan ([`crate::Epvm`]'s `score`), so it is the same bits.
//!
//! The search (`bnb::search`, shared with BinPack's and Spread's index) goes down the tree depth
//! first, the child with the lower bound first, and offers every feasible leaf it reaches to the running best under the crate's order: lowest cost
//! (`total_cmp`), then lowest id, then lowest index. It skips a box only when no member can beat
//! the best: its bound exceeds the best cost, or equals it while its lowest `(id, index)` is above
//! the best's (members then cost at least as much and lose the tie); a box whose least task count
//! reaches `max_jobs` or whose most free memory is below the demand holds no feasible node. A box
//! with a node whose capacity or reservation of cores is not finite (whose cost could be NaN) is
//! never skipped. Every node that could win is therefore scored, and the winner is the exhaustive
//! scan's. Feasibility itself is checked on the live snapshot at each leaf, host ports included.
//!
//! # What changes cost
//!
//! `n` moves every power: when the number of up nodes changes `ln n`, the powers and the tree are
//! rebuilt (`O(N log N)`). `max_jobs` moves only the job-slot table, which the bounds read through
//! the task count, so it costs nothing here. The layout is rebuilt when the node count changes
//! and after as many node changes as there are nodes (so boxes stay tight as nodes drift), which
//! is `O(log N)` amortized per change.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::bnb::{self, NONE};
use crate::epvm::{cpu_power, memory_power, JobPowers, Model, StepMemo};
use crate::feasibility::feasible;
use crate::snapshot::{Demand, NodeSnapshot};

/// How much a bound is moved outward where a box mixes inputs: E-PVM's step factors are lowered
/// by it, the fit index's powers of ten lowered or raised (see each module's docs).
pub(crate) const SLACK: f64 = 1e-12;

/// A node's inputs as last seen.
#[derive(Debug, Clone, Default)]
struct Record {
    up: bool,
    tasks: u32,
    cpus: u64,
    reserved_cpus: u64,
    memory: u64,
    reserved_memory: u64,
    used_memory: u64,
    id: String,
    /// `n^(u memory)` and `n^(u cpu)` for the index's `ln n`.
    powers: (f64, f64),
}

impl Record {
    /// Whether `node` has the inputs this record holds; the id is compared last, as it is the
    /// dearest to read.
    fn matches(&self, node: &NodeSnapshot) -> bool {
        self.up == node.up
            && self.tasks == node.tasks
            && self.cpus == node.cpus.to_bits()
            && self.reserved_cpus == node.reserved_cpus.to_bits()
            && self.memory == node.memory
            && self.reserved_memory == node.reserved_memory
            && self.used_memory == node.used_memory
            && self.id == node.id
    }

    fn set(&mut self, node: &NodeSnapshot) {
        self.up = node.up;
        self.tasks = node.tasks;
        self.cpus = node.cpus.to_bits();
        self.reserved_cpus = node.reserved_cpus.to_bits();
        self.memory = node.memory;
        self.reserved_memory = node.reserved_memory;
        self.used_memory = node.used_memory;
        self.id.clone_from(&node.id);
    }

    fn compute_powers(&mut self, ln_n: f64) {
        self.powers = (
            memory_power(
                ln_n,
                self.reserved_memory.max(self.used_memory),
                self.memory,
            ),
            cpu_power(
                ln_n,
                f64::from_bits(self.reserved_cpus),
                f64::from_bits(self.cpus),
            ),
        );
    }
}

/// What a box knows of its up members; see the module docs.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    memory_power: f64,
    cpu_power: f64,
    memory_max: u64,
    memory_min: u64,
    cpus_max: f64,
    cpus_min: f64,
    free_memory: u64,
    tasks: u32,
    /// The member with the lowest `(id, index)`, [`NONE`] when the box has no up member.
    first: u32,
    /// Some member's cores or reserved cores are not finite, so its cost may be NaN.
    odd: bool,
}

const EMPTY: Bounds = Bounds {
    memory_power: f64::INFINITY,
    cpu_power: f64::INFINITY,
    memory_max: 0,
    memory_min: u64::MAX,
    cpus_max: f64::NEG_INFINITY,
    cpus_min: f64::INFINITY,
    free_memory: 0,
    tasks: u32::MAX,
    first: NONE,
    odd: false,
};

/// A power as a lower bound: NaN (from a node with no capacity) becomes 0, below every power.
fn floor_nan(power: f64) -> f64 {
    if power.is_nan() {
        0.0
    } else {
        power
    }
}

impl Bounds {
    fn leaf(index: usize, record: &Record) -> Self {
        if !record.up {
            return EMPTY;
        }
        let cpus = f64::from_bits(record.cpus);
        let reserved = f64::from_bits(record.reserved_cpus);
        // A NaN capacity only belongs to a node that fails every CPU check; as +inf its step
        // factor is 0, a valid lower bound.
        let capacity = if cpus.is_nan() { f64::INFINITY } else { cpus };
        Self {
            memory_power: floor_nan(record.powers.0),
            cpu_power: floor_nan(record.powers.1),
            memory_max: record.memory,
            memory_min: record.memory,
            cpus_max: capacity,
            cpus_min: capacity,
            free_memory: record.memory.saturating_sub(record.reserved_memory),
            tasks: record.tasks,
            first: index as u32,
            odd: !(cpus.is_finite() && reserved.is_finite()),
        }
    }

    fn merge(a: &Self, b: &Self, records: &[Record]) -> Self {
        if a.first == NONE {
            return *b;
        }
        if b.first == NONE {
            return *a;
        }
        Self {
            memory_power: a.memory_power.min(b.memory_power),
            cpu_power: a.cpu_power.min(b.cpu_power),
            memory_max: a.memory_max.max(b.memory_max),
            memory_min: a.memory_min.min(b.memory_min),
            cpus_max: a.cpus_max.max(b.cpus_max),
            cpus_min: a.cpus_min.min(b.cpus_min),
            free_memory: a.free_memory.max(b.free_memory),
            tasks: a.tasks.min(b.tasks),
            first: if before(records, a.first as usize, b.first as usize) {
                a.first
            } else {
                b.first
            },
            odd: a.odd || b.odd,
        }
    }
}

/// Whether node `a` comes before node `b` in the tie order: lower id, then lower index.
fn before(records: &[Record], a: usize, b: usize) -> bool {
    match records[a].id.cmp(&records[b].id) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => a < b,
    }
}

/// The per-decision values the search shares.
struct Decision<'a> {
    model: &'a Model,
    jobs: &'a JobPowers,
    memory_steps: StepMemo,
    cpu_steps: StepMemo,
    records: &'a [Record],
    nodes: &'a [NodeSnapshot],
    demand: &'a Demand,
}

impl Decision<'_> {
    /// The least cost any feasible member of `b` can have, `-inf` for a box that is never
    /// skipped, `None` when it surely has no feasible member.
    fn box_bound(&mut self, b: &Bounds) -> Option<f64> {
        let model = self.model;
        if b.odd {
            return Some(f64::NEG_INFINITY);
        }
        // A feasible node's count plus one is at most `largest`, so below `max_jobs`.
        if u64::from(b.tasks) >= model.max_jobs {
            return None;
        }
        let memory = if model.memory > 0 {
            if b.free_memory < model.memory {
                return None;
            }
            let mut step = self
                .memory_steps
                .get(b.memory_max, || model.memory_step(b.memory_max));
            if b.memory_min != b.memory_max {
                step *= 1.0 - SLACK;
            }
            b.memory_power * step
        } else {
            0.0
        };
        let cpu = if model.cpus > 0.0 {
            let mut step = self
                .cpu_steps
                .get(b.cpus_max.to_bits(), || model.cpu_step(b.cpus_max));
            if b.cpus_min != b.cpus_max {
                step *= 1.0 - SLACK;
            }
            b.cpu_power * step
        } else {
            0.0
        };
        Some(model.cost(memory, self.jobs.floor(model, b.tasks), cpu))
    }

    /// A node's exact cost, with the functions and order of the exhaustive scan.
    fn record_cost(&mut self, record: &Record) -> f64 {
        let model = self.model;
        let memory = if model.memory > 0 {
            let step = self
                .memory_steps
                .get(record.memory, || model.memory_step(record.memory));
            record.powers.0 * step
        } else {
            0.0
        };
        let cpu = if model.cpus > 0.0 {
            let step = self
                .cpu_steps
                .get(record.cpus, || model.cpu_step(f64::from_bits(record.cpus)));
            record.powers.1 * step
        } else {
            0.0
        };
        model.cost(memory, self.jobs.get(model, record.tasks), cpu)
    }
}

/// The index; see the module docs.
#[derive(Clone, Default)]
pub(crate) struct Index {
    records: Vec<Record>,
    /// Up nodes by task count.
    by_tasks: BTreeMap<u32, BTreeSet<u32>>,
    up: usize,
    /// The `ln n` the powers and boxes were computed for; `None` before the first build.
    ln_n: Option<f64>,
    tree: bnb::Tree<Bounds>,
    /// Nodes changed since the last pick, whose leaves are not updated yet.
    dirty: Vec<usize>,
    /// Node changes since the layout was built.
    changes: usize,
    /// The search's stack, kept to spare an allocation per pick.
    stack: Vec<(usize, f64)>,
    job_powers: JobPowers,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A summary: the records of a large cluster would drown any log line.
        f.debug_struct("Index")
            .field("nodes", &self.records.len())
            .field("up", &self.up)
            .field("changes_since_layout", &self.changes)
            .finish()
    }
}

impl bnb::Records for Index {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn matches(&self, i: usize, node: &NodeSnapshot) -> bool {
        self.records[i].matches(node)
    }

    fn change(&mut self, i: usize, node: &NodeSnapshot) {
        self.leave(i);
        self.records[i].set(node);
        self.enter(i);
        self.dirty.push(i);
    }

    /// Starts over for a cluster of another size.
    fn reset(&mut self, nodes: &[NodeSnapshot]) {
        self.records.clear();
        self.records.resize(nodes.len(), Record::default());
        self.by_tasks.clear();
        self.up = 0;
        self.ln_n = None;
        self.dirty.clear();
        for (i, node) in nodes.iter().enumerate() {
            self.records[i].set(node);
            self.enter(i);
        }
    }
}

impl Index {
    fn enter(&mut self, i: usize) {
        let record = &self.records[i];
        if record.up {
            self.up += 1;
            self.by_tasks
                .entry(record.tasks)
                .or_default()
                .insert(i as u32);
        }
    }

    fn leave(&mut self, i: usize) {
        let record = &self.records[i];
        if record.up {
            self.up -= 1;
            if let Some(set) = self.by_tasks.get_mut(&record.tasks) {
                set.remove(&(i as u32));
                if set.is_empty() {
                    self.by_tasks.remove(&record.tasks);
                }
            }
        }
    }

    /// `ln n` for the records as they are: `n = max(2, up nodes)`.
    fn current_ln_n(&self) -> f64 {
        (self.up.max(2) as f64).ln()
    }

    /// Updates the powers and boxes of the changed nodes, or rebuilds everything when `n`, the
    /// node count or enough drift call for it.
    fn refresh(&mut self) {
        let ln_n = self.current_ln_n();
        let stale = self
            .ln_n
            .is_none_or(|built| built.to_bits() != ln_n.to_bits());
        self.changes += self.dirty.len();
        if stale || self.changes > self.records.len().max(64) {
            self.rebuild(ln_n);
            return;
        }
        for &i in &self.dirty {
            self.records[i].compute_powers(ln_n);
            let records = &self.records;
            self.tree.update(i, Bounds::leaf(i, &records[i]), |a, b| {
                Bounds::merge(a, b, records)
            });
        }
        self.dirty.clear();
    }

    fn rebuild(&mut self, ln_n: f64) {
        self.dirty.clear();
        self.changes = 0;
        self.ln_n = Some(ln_n);
        for record in &mut self.records {
            record.compute_powers(ln_n);
        }
        let largest = self
            .by_tasks
            .keys()
            .next_back()
            .map_or(0, |&t| u64::from(t) + 1);
        let job_unit = ln_n / largest.next_power_of_two() as f64;
        let records = &self.records;
        self.tree.build(
            records.len(),
            EMPTY,
            |items, size| arrange(records, job_unit, items, size),
            |i| Bounds::leaf(i, &records[i]),
            |a, b| Bounds::merge(a, b, records),
        );
    }

    /// The largest job count any feasible placement can produce: the largest up node's count `T`,
    /// plus one if a node with `T` tasks can take the demand. Only a power of two `T` needs that
    /// check, as otherwise `T` and `T + 1` round up to the same `max_jobs`.
    fn largest(&self, nodes: &[NodeSnapshot], demand: &Demand) -> u64 {
        let Some((&top, members)) = self.by_tasks.iter().next_back() else {
            return 0;
        };
        let top64 = u64::from(top);
        if !top64.is_power_of_two() {
            return top64;
        }
        let fits = members
            .iter()
            .any(|&i| feasible(&nodes[i as usize], demand).is_ok());
        if fits {
            top64 + 1
        } else {
            top64
        }
    }

    /// The pick: the records must match `nodes` (after [`Index::sync`] or
    /// [`Index::sync_changed`]). `None` when no node fits.
    pub(crate) fn pick(&mut self, nodes: &[NodeSnapshot], demand: &Demand) -> Option<usize> {
        self.refresh();
        if self.up == 0 {
            return None;
        }
        let model = Model::new(self.up, self.largest(nodes, demand), demand);
        self.job_powers.prepare(&model);
        let mut decision = Decision {
            model: &model,
            jobs: &self.job_powers,
            memory_steps: StepMemo::default(),
            cpu_steps: StepMemo::default(),
            records: &self.records,
            nodes,
            demand,
        };
        bnb::search(&self.tree, &mut decision, &mut self.stack)
    }
}

impl bnb::Summary for Bounds {
    fn first(&self) -> u32 {
        self.first
    }
}

impl bnb::Decide<Bounds> for Decision<'_> {
    fn bound(&mut self, b: &Bounds) -> Option<f64> {
        self.box_bound(b)
    }

    fn cost(&mut self, i: usize) -> Option<f64> {
        if feasible(&self.nodes[i], self.demand).is_err() {
            return None;
        }
        let records = self.records;
        Some(self.record_cost(&records[i]))
    }

    fn before(&self, a: usize, b: usize) -> bool {
        before(self.records, a, b)
    }
}

/// Orders `items` into `size` leaves ([`bnb::arrange`]): by machine shape (down nodes last), then
/// by the coordinate (`n^(u memory)`, `n^(u cpu)` or the job-slot power) whose spread is largest,
/// then in the tie order.
fn arrange(records: &[Record], job_unit: f64, items: &mut [u32], size: usize) {
    let coordinates = |i: u32| -> [f64; 3] {
        let record = &records[i as usize];
        [
            floor_nan(record.powers.0),
            floor_nan(record.powers.1),
            (f64::from(record.tasks) * job_unit).exp(),
        ]
    };
    let shape = |i: u32| {
        let record = &records[i as usize];
        (!record.up, record.memory, record.cpus)
    };
    let tie = |a: u32, b: u32| (&records[a as usize].id, a).cmp(&(&records[b as usize].id, b));
    bnb::arrange(items, size, &shape, &coordinates, &tie);
}
