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
//! The search goes down the tree depth first, the child with the lower bound first, and offers
//! every feasible leaf it reaches to the running best under the crate's order: lowest cost
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

use crate::epvm::{cpu_power, memory_power, JobPowers, Model, StepMemo};
use crate::feasibility::feasible;
use crate::snapshot::{Demand, NodeSnapshot};

/// No node: an empty box's `first`.
const NONE: u32 = u32::MAX;

/// How much a step factor is lowered when a box mixes capacities; see the module docs.
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
}

impl Decision<'_> {
    /// The least cost any feasible member of `b` can have, or +inf when it has none.
    fn bound(&mut self, b: &Bounds) -> f64 {
        let model = self.model;
        if b.odd {
            return f64::NEG_INFINITY;
        }
        // A feasible node's count plus one is at most `largest`, so below `max_jobs`.
        if u64::from(b.tasks) >= model.max_jobs {
            return f64::INFINITY;
        }
        let memory = if model.memory > 0 {
            if b.free_memory < model.memory {
                return f64::INFINITY;
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
        model.cost(memory, self.jobs.floor(model, b.tasks), cpu)
    }

    /// A node's exact cost, with the functions and order of the exhaustive scan.
    fn cost(&mut self, record: &Record) -> f64 {
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
    /// Leaves in the tree: a power of two at least the node count.
    leaves: usize,
    /// `tree[1]` is the root, `tree[k]`'s children are `2k` and `2k + 1`, leaf `s` is
    /// `tree[leaves + s]`.
    tree: Vec<Bounds>,
    node_at: Vec<u32>,
    slot_of: Vec<u32>,
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

impl Index {
    /// Brings every record up to date with `nodes`, reading every snapshot.
    pub(crate) fn sync(&mut self, nodes: &[NodeSnapshot]) {
        if nodes.len() != self.records.len() {
            self.reset(nodes);
            return;
        }
        for (i, node) in nodes.iter().enumerate() {
            if !self.records[i].matches(node) {
                self.change(i, node);
            }
        }
    }

    /// Brings the records of `changed` up to date, trusting that no other snapshot changed since
    /// the last call. Debug builds check that promise.
    pub(crate) fn sync_changed(&mut self, nodes: &[NodeSnapshot], changed: &[usize]) {
        if nodes.len() != self.records.len() {
            self.reset(nodes);
            return;
        }
        for &i in changed {
            if let Some(node) = nodes.get(i) {
                if !self.records[i].matches(node) {
                    self.change(i, node);
                }
            }
        }
        debug_assert!(
            nodes.iter().zip(&self.records).all(|(n, r)| r.matches(n)),
            "a snapshot changed that `changed` does not list"
        );
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

    fn change(&mut self, i: usize, node: &NodeSnapshot) {
        self.leave(i);
        self.records[i].set(node);
        self.enter(i);
        self.dirty.push(i);
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
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            self.records[i].compute_powers(ln_n);
            let mut k = self.leaves + self.slot_of[i] as usize;
            self.tree[k] = Bounds::leaf(i, &self.records[i]);
            while k > 1 {
                k /= 2;
                self.tree[k] =
                    Bounds::merge(&self.tree[2 * k], &self.tree[2 * k + 1], &self.records);
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    fn rebuild(&mut self, ln_n: f64) {
        self.dirty.clear();
        self.changes = 0;
        self.ln_n = Some(ln_n);
        for record in &mut self.records {
            record.compute_powers(ln_n);
        }
        let len = self.records.len();
        self.leaves = len.next_power_of_two().max(1);
        let largest = self
            .by_tasks
            .keys()
            .next_back()
            .map_or(0, |&t| u64::from(t) + 1);
        let job_unit = ln_n / largest.next_power_of_two() as f64;
        let mut items: Vec<u32> = (0..len as u32).collect();
        arrange(&self.records, job_unit, &mut items, self.leaves);
        self.node_at = items;
        self.slot_of = vec![0; len];
        for (slot, &i) in self.node_at.iter().enumerate() {
            self.slot_of[i as usize] = slot as u32;
        }
        self.tree = vec![EMPTY; 2 * self.leaves];
        for (slot, &i) in self.node_at.iter().enumerate() {
            self.tree[self.leaves + slot] = Bounds::leaf(i as usize, &self.records[i as usize]);
        }
        for k in (1..self.leaves).rev() {
            self.tree[k] = Bounds::merge(&self.tree[2 * k], &self.tree[2 * k + 1], &self.records);
        }
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
        };
        let records = &self.records;
        let tree = &self.tree;
        let mut best: Option<(usize, f64)> = None;
        // Whether box `k` with bound `bound` can hold a node that beats the best.
        let hopeless = |k: usize, bound: f64, best: Option<(usize, f64)>| -> bool {
            let first = tree[k].first;
            if first == NONE {
                return true;
            }
            match best {
                None => false,
                Some((index, cost)) => {
                    bound > cost || (bound >= cost && before(records, index, first as usize))
                }
            }
        };
        let stack = &mut self.stack;
        stack.clear();
        let root = decision.bound(&tree[1]);
        stack.push((1, root));
        while let Some((k, bound)) = stack.pop() {
            if hopeless(k, bound, best) {
                continue;
            }
            if k >= self.leaves {
                let i = self.node_at[k - self.leaves] as usize;
                if feasible(&nodes[i], demand).is_err() {
                    continue;
                }
                let cost = decision.cost(&records[i]);
                let better = match best {
                    None => true,
                    Some((b, best_cost)) => match cost.total_cmp(&best_cost) {
                        Ordering::Less => true,
                        Ordering::Greater => false,
                        Ordering::Equal => before(records, i, b),
                    },
                };
                if better {
                    best = Some((i, cost));
                }
                continue;
            }
            let (left, right) = (2 * k, 2 * k + 1);
            let (lb, rb) = (tree[left], tree[right]);
            let l = if lb.first == NONE {
                f64::INFINITY
            } else {
                decision.bound(&lb)
            };
            let r = if rb.first == NONE {
                f64::INFINITY
            } else {
                decision.bound(&rb)
            };
            // The more promising child goes on top of the stack: lower bound, then lower first
            // member, so ties among identical nodes find the lowest id at once.
            let left_first = match l.total_cmp(&r) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => {
                    rb.first == NONE
                        || (lb.first != NONE
                            && before(records, lb.first as usize, rb.first as usize))
                }
            };
            let (first, second) = if left_first {
                ((left, l), (right, r))
            } else {
                ((right, r), (left, l))
            };
            if !hopeless(second.0, second.1, best) {
                stack.push(second);
            }
            if !hopeless(first.0, first.1, best) {
                stack.push(first);
            }
        }
        best.map(|(index, _)| index)
    }
}

/// Orders `items` (node indices) into a segment of `size` leaves so that nearby leaves hold
/// similar nodes: the first `size / 2` go to the left half, chosen by the machine shape if the
/// items mix shapes, else by the coordinate (`n^(u memory)`, `n^(u cpu)` or the job-slot power)
/// whose spread is largest. Down nodes sort last. The layout only makes the boxes tight; any
/// layout gives the same picks.
fn arrange(records: &[Record], job_unit: f64, items: &mut [u32], size: usize) {
    if size <= 1 || items.len() <= 1 {
        return;
    }
    let half = size / 2;
    if items.len() <= half {
        arrange(records, job_unit, items, half);
        return;
    }
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
    let first_shape = shape(items[0]);
    let mixed = items.iter().any(|&i| shape(i) != first_shape);
    if mixed {
        items.select_nth_unstable_by_key(half, |&i| shape(i));
    } else {
        let mut low = [f64::INFINITY; 3];
        let mut high = [f64::NEG_INFINITY; 3];
        for &i in items.iter() {
            for (d, value) in coordinates(i).into_iter().enumerate() {
                low[d] = low[d].min(value);
                high[d] = high[d].max(value);
            }
        }
        let spread = |d: usize| high[d] - low[d];
        let mut axis = 0;
        for d in 1..3 {
            if spread(d) > spread(axis) {
                axis = d;
            }
        }
        items.select_nth_unstable_by(half, |&a, &b| {
            coordinates(a)[axis].total_cmp(&coordinates(b)[axis])
        });
    }
    let (left, right) = items.split_at_mut(half);
    arrange(records, job_unit, left, half);
    arrange(records, job_unit, right, half);
}
