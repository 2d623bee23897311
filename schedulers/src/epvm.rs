//! E-PVM: each task goes to the node whose cost rises least when it arrives.
//!
//! # The paper
//!
//! Amir, Awerbuch, Barak, Borgstrom and Keren, "An opportunity cost approach for job assignment in a
//! scalable computing cluster", IEEE TPDS 11(7), 2000. Each resource `r` of a machine costs `n^u_r`,
//! where `u_r` is the resource's utilization and `n` the number of machines; a job goes to the
//! machine `m` whose marginal cost is least:
//!
//! ```text
//! MC(m) = sum over r of ( n^(u_r after the job) - n^(u_r before) )
//! ```
//!
//! The cost is exponential in utilization, so filling a resource gets dearer the fuller it is, and
//! a job is sent where it hurts least across all resources at once. In the paper the resources are
//! memory and CPU, the CPU's utilization being `jobs / max_jobs`, with `max_jobs` the smallest power
//! of two not below the largest job count seen (it doubles as the load grows).
//!
//! # Our reading, choice by choice
//!
//! - **The base.** `n = max(2, number of up nodes in the snapshot)`. Nodes that are down can take no
//!   work, so they do not make the cluster "larger". The floor of 2 keeps the cost convex on a
//!   one-node cluster (with `n = 1` every cost is 1 and every marginal cost 0).
//! - **Memory.** `u before = max(reserved_memory, used_memory) / memory` and `u after = u before +
//!   demand.memory / memory`. Reservations are what tasks were promised and observed usage catches
//!   tasks that use more than they declared (and memory used outside Poseidon), so the larger of the
//!   two is the node's real state; the new task's memory lands on top of it. `u before` is capped at
//!   1: observed usage can exceed capacity (swap, or a capacity reported below the physical size), and
//!   without a cap `n^u` could overflow to infinity. The demand is added *after* the cap, so a node
//!   already over capacity is charged as a full node receiving the task, the dearest marginal cost a
//!   node can have, and never looks cheap. Feasibility guarantees `demand.memory <= memory`, so
//!   `u after <= 2`. All memory is in bytes, and utilization is a plain ratio. A task that declares
//!   no memory adds no memory cost (the term is `n^u - n^u = 0`), which also spares nodes with no
//!   memory capacity a division by zero; a node with no memory capacity cannot take a task that
//!   declares memory (feasibility turns it down).
//! - **Job slots (the paper's CPU).** `u = tasks / max_jobs` before and `(tasks + 1) / max_jobs`
//!   after. `max_jobs` is computed from the snapshots given, once per decision: the smallest power of
//!   two not below the largest job count that any feasible placement can produce, that is the
//!   largest of every up node's `tasks` and every feasible node's `tasks + 1`. For the candidate that
//!   would become the busiest node this is exactly "the smallest power of two covering the largest
//!   job count after placement"; every other candidate is measured on the same scale. That one scale
//!   is a deliberate departure from computing `max_jobs` separately for each candidate's own "after"
//!   state: per-candidate scales make the costs incomparable and favour the busiest node whenever its
//!   count is a power of two. With two nodes holding 4 and 3 tasks (`n = 2`), per-candidate scales
//!   would give the 4-task node `max_jobs = 8` and a cost of `2^(5/8) - 2^(4/8) = 0.128`, and the
//!   3-task node `max_jobs = 4` and `2^(4/4) - 2^(3/4) = 0.318`, sending the task to the busier node.
//!   The paper's `max_jobs` is one system-wide number, which the single scale keeps.
//! - **Declared CPU.** `u = reserved_cpus / cpus` before and `(reserved_cpus + demand.cpus) / cpus`
//!   after, only when the task declares CPU (otherwise the term is exactly zero). The paper has no
//!   such term: its jobs declared nothing, and its CPU load is the job-slot term. Poseidon's tasks
//!   declare cores, which feasibility reserves and the runtime enforces, so filling a node's cores
//!   is a cost of its own, and it is the term through which a task's CPU request matters at all.
//! - **Every feasible node is scored**, as in the paper; there is no sampling (Nomad, by contrast,
//!   ranks only `max(2, log2 N)` shuffled nodes). Nodes that fail feasibility are never scored.
//! - **The terms weigh the same**, as in the paper, and the lowest marginal cost wins. Ties go to
//!   the lowest node id in byte order, then to the lowest index in the slice.
//!
//! # The Go original's mistakes, not repeated here
//!
//! - A fixed base of 1.5396 whatever the cluster's size: here `n` comes from the snapshot.
//! - A fixed `max_jobs` of 4, so a node with 5 tasks was "over 100 %": here it is a power of two
//!   computed from the snapshot, which doubles as the busiest node fills.
//! - A CPU term that cancelled out, so the task's CPU request never mattered: here the request is in
//!   the declared-CPU term's "after" state.
//! - Bytes mixed with kilobytes in one ratio: here every quantity of memory is in bytes.
//! - A node it could not reach scored 0, so a dead node won every placement: here a node that is
//!   down is infeasible and never scored.
//! - Three seconds of blocking per node to sample CPU: here scoring is a pure function of the
//!   in-memory snapshots, with no I/O.
//!
//! # Exact and sublinear
//!
//! [`Scheduler::pick`] returns exactly the node an exhaustive scan returns (score every feasible
//! node, lowest cost, ties to the lowest id then the lowest index), but scores only the nodes that
//! could win. The numbers are those of the scan, computed more cheaply:
//! - `n^u = exp(u ln n)` and `n^(u + du) - n^u = n^u * expm1(du ln n)`: half the exponentials of
//!   the textbook form, and more accurate, since `expm1` keeps its digits when `du` is small.
//! - `expm1(du ln n)` depends only on the demand and the node's capacity, so within one decision it
//!   is computed once per capacity (clusters have few machine shapes).
//! - The powers before placement, `n^(u memory)` and `n^(u cpu)`, are kept per node with the inputs
//!   they came from; the job-slot powers `n^(tasks / max_jobs)` sit in a table rebuilt only when
//!   `n` or `max_jobs` changes.
//!
//! Which nodes are scored is the business of the index in [`crate::epvm_index`]: a tree of boxes
//! over the nodes, each holding lower bounds of its members' inputs, searched by branch and bound.
//! Its module docs give the argument that it is exact. In short, `MC` is a sum of non-negative
//! products each monotone in one input, so a box's least inputs bound every member's cost from
//! below, in floating point too; a box is skipped only when that bound shows that none of its
//! members can beat the best node found, ties included.
//!
//! The index needs to know which snapshots changed. [`Scheduler::pick`] is only given the slice,
//! so it compares every snapshot with the index's copy of its inputs before searching: a read of
//! the slice, no arithmetic, linear but cheap. A caller that knows which snapshots it changed (the
//! manager does: it places, releases and marks nodes up or down one index at a time) can say so
//! with [`Epvm::pick_changed`], which skips that read and is sublinear: `O(log N)` per changed node
//! plus the search, which on the benchmark's clusters scores a few dozen nodes. A homogeneous
//! cluster costs `O(log N)`: identical nodes share one bound, and the tie rule prunes every box
//! whose lowest id is above the best's.
//!
//! [`Scheduler::score`] scores with the same functions, so its costs are bit for bit the ones
//! `pick` compares, and `pick` is the best of `score` over `select`.

use crate::bnb::Records;
use crate::epvm_index::{Index, SLACK};
use crate::feasibility::NoFit;
use crate::scheduler::{Scheduler, ScoreOrder};
use crate::snapshot::{Demand, NodeSnapshot};

/// The largest `max_jobs` whose job-slot powers are kept in a table; past it (a node with tens of
/// thousands of tasks) the powers are computed per node, which gives the same numbers.
const MAX_TABLE: u64 = 1 << 16;

/// How many distinct capacities the per-decision memo of `expm1` factors holds: clusters are built
/// from a handful of machine shapes, and a miss only costs one `expm1`.
const STEP_MEMO: usize = 8;

/// The E-PVM policy. Its state is an index over the nodes it was last given (their inputs, their
/// powers and a tree of bounds), which makes `pick` cheaper and never different: it is brought up
/// to date with the snapshots before every search.
///
/// Keep one `Epvm` for the life of the manager and pass the nodes in a stable order (by id, say):
/// the index is by position, so a slice that changes length or is reshuffled still gets right
/// answers but rebuilds the index, `O(N log N)`.
#[derive(Debug, Clone, Default)]
pub struct Epvm {
    index: Index,
}

impl Epvm {
    /// A new E-PVM scheduler.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Scheduler::pick`] for a caller that knows which snapshots changed: the same answer, without
    /// reading the snapshots that did not.
    ///
    /// `changed` must list (in any order, repeats allowed) the index of every snapshot that differs
    /// in any field from what it was at this scheduler's previous `pick` or `pick_changed`; a
    /// change of the slice's length is noticed by itself and rebuilds the index. The nodes a pick
    /// chose and then `place`d on count as changed. Debug builds check the promise and panic if it
    /// was broken; release builds trust it, and a snapshot changed but not listed may be picked
    /// from its old inputs.
    pub fn pick_changed(
        &mut self,
        nodes: &[NodeSnapshot],
        demand: &Demand,
        changed: &[usize],
    ) -> Result<usize, NoFit> {
        self.index.sync_changed(nodes, changed);
        self.index
            .pick(nodes, demand)
            .ok_or_else(|| NoFit::from_nodes(nodes, demand))
    }
}

impl Scheduler for Epvm {
    fn name(&self) -> &'static str {
        "epvm"
    }

    /// Lower is better: the score is the marginal cost.
    fn score_order(&self) -> ScoreOrder {
        ScoreOrder::LowerIsBetter
    }

    /// Each candidate's marginal cost `MC(m)`, lower is better; `max_jobs` is computed over the given
    /// candidates, so pass every feasible node (as [`Scheduler::select`] returns them) to get the
    /// numbers `pick` compares.
    fn score(
        &self,
        nodes: &[NodeSnapshot],
        candidates: &[usize],
        demand: &Demand,
    ) -> Vec<(usize, f64)> {
        let mut up = 0;
        let mut largest = 0;
        for node in nodes.iter().filter(|node| node.up) {
            up += 1;
            largest = largest.max(u64::from(node.tasks));
        }
        for &c in candidates {
            largest = largest.max(u64::from(nodes[c].tasks) + 1);
        }
        let model = Model::new(up, largest, demand);
        candidates
            .iter()
            .map(|&c| {
                let node = &nodes[c];
                let memory = if model.memory > 0 {
                    model.memory_power(node) * model.memory_step(node.memory)
                } else {
                    0.0
                };
                let cpu = if model.cpus > 0.0 {
                    model.cpu_power(node) * model.cpu_step(node.cpus)
                } else {
                    0.0
                };
                (c, model.cost(memory, model.job_power(node.tasks), cpu))
            })
            .collect()
    }

    fn pick_changed(
        &mut self,
        nodes: &[NodeSnapshot],
        demand: &Demand,
        changed: &[usize],
    ) -> Result<usize, NoFit> {
        Epvm::pick_changed(self, nodes, demand, changed)
    }

    fn pick(&mut self, nodes: &[NodeSnapshot], demand: &Demand) -> Result<usize, NoFit> {
        self.index.sync(nodes);
        self.index
            .pick(nodes, demand)
            .ok_or_else(|| NoFit::from_nodes(nodes, demand))
    }
}

/// `n^(u before)` for memory, `u = max(reserved, used) / capacity` capped at 1 (`used` is that
/// maximum). The one function both `score` and the index use, so both give the same bits.
pub(crate) fn memory_power(ln_n: f64, used: u64, capacity: u64) -> f64 {
    let u = used as f64 / capacity as f64;
    (u.min(1.0) * ln_n).exp()
}

/// `n^(u before)` for declared CPU, `u = reserved / cores`, a negative reservation read as none.
pub(crate) fn cpu_power(ln_n: f64, reserved: f64, cpus: f64) -> f64 {
    (reserved.max(0.0) / cpus * ln_n).exp()
}

/// Everything about one decision that is the same for every node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Model {
    /// `ln n`, with `n = max(2, up nodes)`.
    pub(crate) ln_n: f64,
    /// `max_jobs`.
    pub(crate) max_jobs: u64,
    /// `ln n / max_jobs`: a job-slot power is `exp(tasks * job_unit)`.
    job_unit: f64,
    /// `n^(1 / max_jobs) - 1`, the factor one more task multiplies a job-slot power by.
    job_step: f64,
    /// The declared cores, 0 when the task declares none.
    pub(crate) cpus: f64,
    /// The declared bytes.
    pub(crate) memory: u64,
}

impl Model {
    /// `largest` is the largest job count any feasible placement can produce.
    pub(crate) fn new(up_nodes: usize, largest: u64, demand: &Demand) -> Self {
        let n = up_nodes.max(2) as f64;
        let ln_n = n.ln();
        // `next_power_of_two` of 0 is 1, which only happens when no node fits and nothing is scored.
        let max_jobs = largest.next_power_of_two();
        let job_unit = ln_n / max_jobs as f64;
        Self {
            ln_n,
            max_jobs,
            job_unit,
            job_step: job_unit.exp_m1(),
            cpus: demand.declared_cpus(),
            memory: demand.memory,
        }
    }

    /// `n^(tasks / max_jobs)`.
    pub(crate) fn job_power(&self, tasks: u32) -> f64 {
        (f64::from(tasks) * self.job_unit).exp()
    }

    /// `n^(u before)` for memory, `u` capped at 1. Only called when the task declares memory, so
    /// feasibility has ruled out a node with no memory capacity.
    fn memory_power(&self, node: &NodeSnapshot) -> f64 {
        memory_power(
            self.ln_n,
            node.reserved_memory.max(node.used_memory),
            node.memory,
        )
    }

    /// `n^(demand / capacity) - 1` for memory.
    pub(crate) fn memory_step(&self, capacity: u64) -> f64 {
        (self.memory as f64 / capacity as f64 * self.ln_n).exp_m1()
    }

    /// `n^(u before)` for declared CPU. Only called when the task declares CPU, so feasibility has
    /// ruled out a node with no cores.
    fn cpu_power(&self, node: &NodeSnapshot) -> f64 {
        cpu_power(self.ln_n, node.reserved_cpus, node.cpus)
    }

    /// `n^(demand / capacity) - 1` for declared CPU.
    pub(crate) fn cpu_step(&self, capacity: f64) -> f64 {
        (self.cpus / capacity * self.ln_n).exp_m1()
    }

    /// `MC(m)` from its three terms; the terms that do not apply are passed as 0. One function
    /// adds them for `score` and `pick`, so both give the same bits.
    pub(crate) fn cost(&self, memory: f64, job_power: f64, cpu: f64) -> f64 {
        memory + job_power * self.job_step + cpu
    }
}

/// A few `(capacity, factor)` pairs for one decision, replaced in turn when full.
///
/// A linear scan over a handful of keys measured faster here than a hashed, direct-mapped table,
/// whose slots for the usual power-of-two capacities collided and cost an `expm1` per node.
#[derive(Debug, Default)]
pub(crate) struct StepMemo {
    keys: [u64; STEP_MEMO],
    values: [f64; STEP_MEMO],
    len: usize,
    next: usize,
}

impl StepMemo {
    pub(crate) fn get(&mut self, key: u64, compute: impl FnOnce() -> f64) -> f64 {
        if let Some(slot) = self.keys[..self.len].iter().position(|&k| k == key) {
            return self.values[slot];
        }
        let value = compute();
        let slot = if self.len < STEP_MEMO {
            self.len += 1;
            self.len - 1
        } else {
            self.next = (self.next + 1) % STEP_MEMO;
            self.next
        };
        self.keys[slot] = key;
        self.values[slot] = value;
        value
    }
}

/// The job-slot powers `n^(tasks / max_jobs)` for every task count below `max_jobs`, for the `n` and
/// `max_jobs` they were built for.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobPowers {
    ln_n: f64,
    max_jobs: u64,
    powers: Vec<f64>,
    /// `floor[t]` is the least of `powers[t..]`: a lower bound of the job-slot power of every
    /// count from `t` up, whether or not `exp` is monotone to the last ulp.
    floor: Vec<f64>,
}

impl JobPowers {
    /// Rebuilds the table if the decision's `n` or `max_jobs` differs from the table's. Both change
    /// rarely (a node going up or down, the busiest node passing a power of two), so the table is
    /// almost always reused as it is.
    pub(crate) fn prepare(&mut self, model: &Model) {
        if self.ln_n.to_bits() == model.ln_n.to_bits() && self.max_jobs == model.max_jobs {
            return;
        }
        self.ln_n = model.ln_n;
        self.max_jobs = model.max_jobs;
        self.powers.clear();
        if model.max_jobs <= MAX_TABLE {
            // A feasible node has fewer than `max_jobs` tasks, so these are all the counts needed.
            self.powers
                .extend((0..model.max_jobs).map(|tasks| model.job_power(tasks as u32)));
        }
        self.floor.clone_from(&self.powers);
        for t in (0..self.floor.len().saturating_sub(1)).rev() {
            self.floor[t] = self.floor[t].min(self.floor[t + 1]);
        }
    }

    /// `n^(tasks / max_jobs)`, from the table when it holds it.
    pub(crate) fn get(&self, model: &Model, tasks: u32) -> f64 {
        match self.powers.get(tasks as usize) {
            Some(&power) => power,
            None => model.job_power(tasks),
        }
    }

    /// A lower bound of the job-slot power of every count from `tasks` up, below `max_jobs`.
    pub(crate) fn floor(&self, model: &Model, tasks: u32) -> f64 {
        match self.floor.get(tasks as usize) {
            Some(&power) => power,
            // No table (`max_jobs` past `MAX_TABLE`): the power itself, lowered by the slack that
            // covers a non-monotone last ulp of `exp`.
            None => model.job_power(tasks) * (1.0 - SLACK),
        }
    }
}
