//! The exact index behind [`crate::BinPack`]'s and [`crate::Spread`]'s picks: E-PVM's idea (a tree
//! of boxes over the nodes, searched by branch and bound, `epvm_index`) with boxes that bound
//! Nomad's fit scores, so that most nodes are never scored.
//!
//! # What it keeps
//!
//! - One [`Record`] per node: every input of its score (cores, reserved cores, memory, reserved
//!   memory), whether it is up, and its id, exactly as last seen. Everything else feasibility
//!   reads (eligibility, constraints, ports) is checked on the live snapshot at each leaf.
//! - A complete binary tree over the nodes (leaves in a k-d order: machine shape first, then the
//!   reserved fraction whose spread is largest). Each box holds, over its *up* members and for each
//!   resource, the least positive and the largest capacity, whether a member has none, the least
//!   and largest reservation among the members with some, and the most left free (memory, and
//!   cores among the members with some); and the member with the lowest `(id, index)`. Changing
//!   one node recomputes its leaf and the `log2 N` boxes above it; the layout is rebuilt when the
//!   node count changes and after as many changes as there are nodes (at least 64).
//!
//! # Why the search is exact
//!
//! A node's score is `F(e(f_cpu) + e(f_mem))`, where `f = 1 - (reserved + demand) / capacity` is a
//! resource's free fraction after the placement (0 for a node without that resource), `e(x) =
//! exp(x ln 10)`, and `F` is BinPack's `clamp(20 - t, 0, 18) / 18`, which falls as `t` grows, or
//! Spread's `clamp(t - 2, 0, 18) / 18`, which rises. Over a box's members with some capacity,
//! `f` is at least `1 - (reserved_max + d) / capacity_min` and at most `1 - (reserved_min + d) /
//! capacity_max` (members without capacity add 0 to that range). This holds for the
//! floating-point numbers, not only the real ones: reservations and demands are not negative, and
//! IEEE addition, subtraction and the integer-to-float conversion are monotone in each operand, as
//! is division of a non-negative number by a positive one (rising with the numerator, falling as
//! the divisor grows). `e` is the platform's `exp`, which is not promised to be monotone
//! to the last bit, so where a box mixes inputs its `e` bounds are moved outward by a relative
//! 1e-12 (`SLACK`), far more than one ulp. `F` (an addition, a subtraction, a clamp, a division)
//! is monotone too. So a box's bound is at least the score of each feasible member; for a box of
//! identical members it is their score, bit for bit, computed by the same functions in the same
//! order ([`crate::fit`]'s `free_cpu`, `free_memory`, `power10`, `Fit::of_total`).
//!
//! A box holds no feasible member when its most free memory is below the demand, or when the
//! demanded cores exceed its most free cores by more than the feasibility check's epsilon and a
//! margin for rounding (`Bounds::room_for_cores`). A box with a member whose cores or reserved
//! cores are negative or not finite (whose score could be NaN) is never skipped. The search ([`bnb::search`]) maximises the score
//! by minimising its negation, which orders the other way bit for bit, with the scan's tie rule.

use crate::bnb::{self, NONE};
use crate::epvm_index::SLACK;
use crate::feasibility::{fits, CPU_EPSILON};
use crate::fit::{free_cpu, free_memory, power10, Fit};
use crate::snapshot::{Demand, NodeSnapshot};

/// A node's inputs as last seen.
#[derive(Debug, Clone, Default)]
struct Record {
    up: bool,
    cpus: u64,
    reserved_cpus: u64,
    memory: u64,
    reserved_memory: u64,
    id: String,
}

impl Record {
    /// Whether `node` has the inputs this record holds; the id is compared last.
    fn matches(&self, node: &NodeSnapshot) -> bool {
        self.up == node.up
            && self.cpus == node.cpus.to_bits()
            && self.reserved_cpus == node.reserved_cpus.to_bits()
            && self.memory == node.memory
            && self.reserved_memory == node.reserved_memory
            && self.id == node.id
    }

    fn set(&mut self, node: &NodeSnapshot) {
        self.up = node.up;
        self.cpus = node.cpus.to_bits();
        self.reserved_cpus = node.reserved_cpus.to_bits();
        self.memory = node.memory;
        self.reserved_memory = node.reserved_memory;
        self.id.clone_from(&node.id);
    }
}

/// One resource over a box's up members; see the module docs.
#[derive(Debug, Clone, Copy)]
struct Span<T> {
    /// The least capacity above zero, and the largest.
    capacity_low: T,
    capacity_high: T,
    /// The least and largest reservation among members with some capacity.
    reserved_low: T,
    reserved_high: T,
    /// Some member has capacity; some member has none.
    some: bool,
    none: bool,
}

impl<T: Copy + PartialOrd + Default> Span<T> {
    fn leaf(capacity: T, reserved: T) -> Self {
        Self {
            capacity_low: capacity,
            capacity_high: capacity,
            reserved_low: reserved,
            reserved_high: reserved,
            some: capacity > T::default(),
            none: capacity <= T::default(),
        }
    }

    fn merge(a: &Self, b: &Self) -> Self {
        if !a.some || !b.some {
            let (with, other) = if a.some { (a, b) } else { (b, a) };
            return Self {
                none: a.none || b.none || other.none,
                ..*with
            };
        }
        let low = |x: T, y: T| if y < x { y } else { x };
        let high = |x: T, y: T| if y > x { y } else { x };
        Self {
            capacity_low: low(a.capacity_low, b.capacity_low),
            capacity_high: high(a.capacity_high, b.capacity_high),
            reserved_low: low(a.reserved_low, b.reserved_low),
            reserved_high: high(a.reserved_high, b.reserved_high),
            some: true,
            none: a.none || b.none,
        }
    }

    /// Whether the members differ in this resource's inputs.
    fn mixed(&self) -> bool {
        (self.some && self.none)
            || self.capacity_low != self.capacity_high
            || self.reserved_low != self.reserved_high
    }

    /// The least and the largest free fraction of any member, `free(capacity, reserved)` being the
    /// scan's function.
    fn free_range(&self, free: impl Fn(T, T) -> f64) -> (f64, f64) {
        let (mut low, mut high) = if self.some {
            (
                free(self.capacity_low, self.reserved_high),
                free(self.capacity_high, self.reserved_low),
            )
        } else {
            (f64::INFINITY, f64::NEG_INFINITY)
        };
        if self.none {
            low = low.min(0.0);
            high = high.max(0.0);
        }
        (low, high)
    }
}

/// What a box knows of its up members.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    cpu: Span<f64>,
    memory: Span<u64>,
    /// The most memory any member has left.
    free_memory: u64,
    /// The most cores any member with some has left (`cpus - reserved`), `-inf` when none has.
    free_cores: f64,
    /// The member with the lowest `(id, index)`, [`NONE`] when the box has no up member.
    first: u32,
    /// Some member's cores or reserved cores are negative or not finite.
    odd: bool,
}

const EMPTY: Bounds = Bounds {
    cpu: Span {
        capacity_low: 0.0,
        capacity_high: 0.0,
        reserved_low: 0.0,
        reserved_high: 0.0,
        some: false,
        none: false,
    },
    memory: Span {
        capacity_low: 0,
        capacity_high: 0,
        reserved_low: 0,
        reserved_high: 0,
        some: false,
        none: false,
    },
    free_memory: 0,
    free_cores: f64::NEG_INFINITY,
    first: NONE,
    odd: false,
};

impl Bounds {
    fn leaf(index: usize, record: &Record) -> Self {
        if !record.up {
            return EMPTY;
        }
        let cpus = f64::from_bits(record.cpus);
        let reserved = f64::from_bits(record.reserved_cpus);
        let sane = |x: f64| x.is_finite() && x >= 0.0;
        Self {
            cpu: Span::leaf(cpus, reserved),
            memory: Span::leaf(record.memory, record.reserved_memory),
            free_memory: record.memory.saturating_sub(record.reserved_memory),
            free_cores: if cpus > 0.0 {
                cpus - reserved
            } else {
                f64::NEG_INFINITY
            },
            first: index as u32,
            odd: !(sane(cpus) && sane(reserved)),
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
            cpu: Span::merge(&a.cpu, &b.cpu),
            memory: Span::merge(&a.memory, &b.memory),
            free_memory: a.free_memory.max(b.free_memory),
            free_cores: a.free_cores.max(b.free_cores),
            first: if before(records, a.first as usize, b.first as usize) {
                a.first
            } else {
                b.first
            },
            odd: a.odd || b.odd,
        }
    }

    /// More than the most cores any member can take: a member passes the feasibility check
    /// (`reserved + cores <= cpus + CPU_EPSILON`, each side rounded) only if `cores <= (cpus -
    /// reserved) + CPU_EPSILON` plus a few roundings of `cpus` and `reserved`; the margin,
    /// `1e-9` of their size, is millions of times those roundings.
    fn room_for_cores(&self) -> f64 {
        let size = self.cpu.capacity_high + self.cpu.reserved_high + 1.0;
        self.free_cores + CPU_EPSILON + 1e-9 * size
    }

    /// The highest score any feasible member can have, `None` when the box surely has no
    /// feasible member.
    fn best_score(&self, fit: Fit, demand: &Demand) -> Option<f64> {
        if demand.memory > 0 && self.free_memory < demand.memory {
            return None;
        }
        let cores = demand.declared_cpus();
        if demand.declares_cpus() && (!self.cpu.some || cores > self.room_for_cores()) {
            return None;
        }
        let (cpu_low, cpu_high) = self
            .cpu
            .free_range(|capacity, reserved| free_cpu(capacity, reserved, cores));
        let (memory_low, memory_high) = self
            .memory
            .free_range(|capacity, reserved| free_memory(capacity, reserved, demand.memory));
        // `e` moved outward by SLACK where the members differ (see the module docs).
        let e = |free: f64, mixed: bool, up: bool| {
            let power = power10(free);
            match (mixed, up) {
                (false, _) => power,
                (true, true) => power * (1.0 + SLACK),
                (true, false) => power * (1.0 - SLACK),
            }
        };
        let total = match fit {
            // BinPack's score falls as the total grows: bound it by the least total.
            Fit::BinPack => {
                e(cpu_low, self.cpu.mixed(), false) + e(memory_low, self.memory.mixed(), false)
            }
            Fit::Spread => {
                e(cpu_high, self.cpu.mixed(), true) + e(memory_high, self.memory.mixed(), true)
            }
        };
        Some(fit.of_total(total))
    }
}

/// Whether node `a` comes before node `b` in the tie order: lower id, then lower index.
fn before(records: &[Record], a: usize, b: usize) -> bool {
    (&records[a].id, a) < (&records[b].id, b)
}

/// The index; see the module docs.
#[derive(Clone, Default)]
pub(crate) struct Index {
    records: Vec<Record>,
    tree: bnb::Tree<Bounds>,
    /// Nodes changed since the last pick, whose leaves are not updated yet.
    dirty: Vec<usize>,
    /// Node changes since the layout was built; `None` before the first build.
    changes: Option<usize>,
    /// The search's stack, kept to spare an allocation per pick.
    stack: Vec<(usize, f64)>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitIndex")
            .field("nodes", &self.records.len())
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
        self.records[i].set(node);
        self.dirty.push(i);
    }

    /// Starts over for a cluster of another size.
    fn reset(&mut self, nodes: &[NodeSnapshot]) {
        self.records.clear();
        self.records.resize(nodes.len(), Record::default());
        for (record, node) in self.records.iter_mut().zip(nodes) {
            record.set(node);
        }
        self.changes = None;
        self.dirty.clear();
    }
}

impl Index {
    /// Updates the boxes above the changed nodes, or lays the tree out again when the node count
    /// or enough drift call for it.
    fn refresh(&mut self) {
        let changes = self.changes.map(|c| c + self.dirty.len());
        if changes.is_none_or(|c| c > self.records.len().max(64)) {
            self.rebuild();
            return;
        }
        self.changes = changes;
        let records = &self.records;
        for &i in &self.dirty {
            self.tree.update(i, Bounds::leaf(i, &records[i]), |a, b| {
                Bounds::merge(a, b, records)
            });
        }
        self.dirty.clear();
    }

    fn rebuild(&mut self) {
        self.dirty.clear();
        self.changes = Some(0);
        let records = &self.records;
        // Machine shape (down nodes last), then the reserved fractions.
        let shape = |i: u32| {
            let r = &records[i as usize];
            (!r.up, r.memory, r.cpus)
        };
        let coordinates = |i: u32| -> [f64; 2] {
            let r = &records[i as usize];
            let cpu = f64::from_bits(r.reserved_cpus) / f64::from_bits(r.cpus);
            let memory = r.reserved_memory as f64 / r.memory as f64;
            [cpu, memory].map(|x| if x.is_finite() { x } else { 0.0 })
        };
        let tie = |a: u32, b: u32| (&records[a as usize].id, a).cmp(&(&records[b as usize].id, b));
        self.tree.build(
            records.len(),
            EMPTY,
            |items, size| bnb::arrange(items, size, &shape, &coordinates, &tie),
            |i| Bounds::leaf(i, &records[i]),
            |a, b| Bounds::merge(a, b, records),
        );
    }

    /// The node of highest `fit` score that can take `demand`, ties to the lowest id then index;
    /// the records must match `nodes` (after [`Index::sync`] or [`Index::sync_changed`]). `None`
    /// when no node fits.
    pub(crate) fn pick(
        &mut self,
        fit: Fit,
        score: fn(&NodeSnapshot, &Demand) -> f64,
        nodes: &[NodeSnapshot],
        demand: &Demand,
    ) -> Option<usize> {
        self.refresh();
        if self.records.is_empty() {
            return None;
        }
        let mut decision = Decision {
            fit,
            score,
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

/// One decision, for [`bnb::search`], which minimises: costs and bounds are the scores negated.
struct Decision<'a> {
    fit: Fit,
    score: fn(&NodeSnapshot, &Demand) -> f64,
    records: &'a [Record],
    nodes: &'a [NodeSnapshot],
    demand: &'a Demand,
}

impl bnb::Decide<Bounds> for Decision<'_> {
    fn bound(&mut self, b: &Bounds) -> Option<f64> {
        if b.odd {
            return Some(f64::NEG_INFINITY);
        }
        b.best_score(self.fit, self.demand).map(|score| -score)
    }

    fn cost(&mut self, i: usize) -> Option<f64> {
        let node = &self.nodes[i];
        fits(node, self.demand).then(|| -(self.score)(node, self.demand))
    }

    fn before(&self, a: usize, b: usize) -> bool {
        before(self.records, a, b)
    }
}
