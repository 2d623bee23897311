//! E-PVM as it was before the exact index of issue 17 (commit 39967af), kept so the benchmark can
//! measure today's code beside the new one in the same run, and the property tests can check that
//! the new `pick` chooses exactly the node the old one did.
//!
//! It scores every feasible node on every pick, with the caches of powers described in the old
//! module docs (now in `schedulers/src/epvm.rs`'s history): `exp(u ln n) * expm1(du ln n)`, a per-node
//! cache of powers before placement, a table of job-slot powers and a memo of `expm1` factors per
//! capacity. Only the names (`EpvmBefore`, "epvm-before") and the private `Best` copy differ.

#![allow(dead_code)]

use std::cmp::Ordering;

use poseidon_schedulers::{feasible, Demand, NoFit, NodeSnapshot, Scheduler, ScoreOrder};

/// The running best of a scan, lowest score first, ties to the lowest id, then the lowest index:
/// the crate's `Best` (which is private), copied so this file stays exactly the old `pick`.
#[derive(Debug, Clone, Copy)]
struct Best {
    best: Option<(usize, f64)>,
}

impl Best {
    fn new(_order: ScoreOrder) -> Self {
        Self { best: None }
    }

    fn offer(&mut self, nodes: &[NodeSnapshot], index: usize, score: f64) {
        let better = match self.best {
            None => true,
            Some((best, best_score)) => match score.total_cmp(&best_score) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => nodes[index].id < nodes[best].id,
            },
        };
        if better {
            self.best = Some((index, score));
        }
    }

    fn index(&self) -> Option<usize> {
        self.best.map(|(index, _)| index)
    }
}

/// The largest `max_jobs` whose job-slot powers are kept in a table; past it (a node with tens of
/// thousands of tasks) the powers are computed per node, which gives the same numbers.
const MAX_TABLE: u64 = 1 << 16;

/// How many distinct capacities the per-decision memo of `expm1` factors holds: clusters are built
/// from a handful of machine shapes, and a miss only costs one `expm1`.
const STEP_MEMO: usize = 8;

/// The E-PVM policy. Its state is caches of powers that never change an answer: each cached value
/// is stored with every input it was computed from and is used only when all of them match.
///
/// Keep one `Epvm` for the life of the manager and pass the nodes in a stable order (by id, say):
/// the per-node cache is indexed by position, so a reshuffled slice still gets right answers but
/// recomputes every power, about twice the cost of a warm pick.
#[derive(Debug, Clone, Default)]
pub struct EpvmBefore {
    job_powers: JobPowers,
    node_powers: NodePowers,
}

impl EpvmBefore {
    /// A new E-PVM scheduler.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for EpvmBefore {
    fn name(&self) -> &'static str {
        "epvm-before"
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

    fn pick(&mut self, nodes: &[NodeSnapshot], demand: &Demand) -> Result<usize, NoFit> {
        // First pass: the base and the job-slot scale. `largest` is the largest of every up node's
        // task count and every feasible node's count plus one; a node's feasibility matters only if
        // its count plus one would raise `largest`, so most nodes skip the check here.
        let mut up = 0;
        let mut largest = 0;
        for node in nodes.iter().filter(|node| node.up) {
            up += 1;
            let tasks = u64::from(node.tasks);
            if tasks + 1 > largest {
                let fits = feasible(node, demand).is_ok();
                largest = largest.max(if fits { tasks + 1 } else { tasks });
            }
        }
        let model = Model::new(up, largest, demand);
        self.job_powers.prepare(&model);
        self.node_powers.prepare(&model, nodes.len());

        // Second pass: score every feasible node. The powers before placement come from the
        // per-node cache (between two placements only the nodes placed on or released change), and
        // the `expm1` factors, which depend only on capacity, from a small memo.
        let mut memory_steps = StepMemo::default();
        let mut cpu_steps = StepMemo::default();
        let mut best = Best::new(ScoreOrder::LowerIsBetter);
        for (i, (node, powers)) in nodes.iter().zip(&mut self.node_powers.nodes).enumerate() {
            if feasible(node, demand).is_err() {
                continue;
            }
            let memory = if model.memory > 0 {
                let step = memory_steps.get(node.memory, || model.memory_step(node.memory));
                powers.memory(&model, node) * step
            } else {
                0.0
            };
            let cpu = if model.cpus > 0.0 {
                let step = cpu_steps.get(node.cpus.to_bits(), || model.cpu_step(node.cpus));
                powers.cpu(&model, node) * step
            } else {
                0.0
            };
            let jobs = self.job_powers.get(&model, node.tasks);
            best.offer(nodes, i, model.cost(memory, jobs, cpu));
        }
        best.index().ok_or_else(|| NoFit::from_nodes(nodes, demand))
    }
}

/// Everything about one decision that is the same for every node.
#[derive(Debug, Clone, Copy)]
struct Model {
    /// `ln n`, with `n = max(2, up nodes)`.
    ln_n: f64,
    /// `max_jobs`.
    max_jobs: u64,
    /// `ln n / max_jobs`: a job-slot power is `exp(tasks * job_unit)`.
    job_unit: f64,
    /// `n^(1 / max_jobs) - 1`, the factor one more task multiplies a job-slot power by.
    job_step: f64,
    /// The declared cores, 0 when the task declares none.
    cpus: f64,
    /// The declared bytes.
    memory: u64,
}

impl Model {
    /// `largest` is the largest job count any feasible placement can produce.
    fn new(up_nodes: usize, largest: u64, demand: &Demand) -> Self {
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
    fn job_power(&self, tasks: u32) -> f64 {
        (f64::from(tasks) * self.job_unit).exp()
    }

    /// `n^(u before)` for memory, `u` capped at 1. Only called when the task declares memory, so
    /// feasibility has ruled out a node with no memory capacity.
    fn memory_power(&self, node: &NodeSnapshot) -> f64 {
        let used = node.reserved_memory.max(node.used_memory) as f64 / node.memory as f64;
        (used.min(1.0) * self.ln_n).exp()
    }

    /// `n^(demand / capacity) - 1` for memory.
    fn memory_step(&self, capacity: u64) -> f64 {
        (self.memory as f64 / capacity as f64 * self.ln_n).exp_m1()
    }

    /// `n^(u before)` for declared CPU. Only called when the task declares CPU, so feasibility has
    /// ruled out a node with no cores.
    fn cpu_power(&self, node: &NodeSnapshot) -> f64 {
        (node.reserved_cpus.max(0.0) / node.cpus * self.ln_n).exp()
    }

    /// `n^(demand / capacity) - 1` for declared CPU.
    fn cpu_step(&self, capacity: f64) -> f64 {
        (self.cpus / capacity * self.ln_n).exp_m1()
    }

    /// `MC(m)` from its three terms; the terms that do not apply are passed as 0. One function
    /// adds them for `score` and `pick`, so both give the same bits.
    fn cost(&self, memory: f64, job_power: f64, cpu: f64) -> f64 {
        memory + job_power * self.job_step + cpu
    }
}

/// A few `(capacity, factor)` pairs for one decision, replaced in turn when full.
///
/// A linear scan over a handful of keys measured faster here than a hashed, direct-mapped table,
/// whose slots for the usual power-of-two capacities collided and cost an `expm1` per node.
#[derive(Debug, Default)]
struct StepMemo {
    keys: [u64; STEP_MEMO],
    values: [f64; STEP_MEMO],
    len: usize,
    next: usize,
}

impl StepMemo {
    fn get(&mut self, key: u64, compute: impl FnOnce() -> f64) -> f64 {
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

/// The powers before placement, `n^(u memory)` and `n^(u cpu)`, of the node at each index, as they
/// were last computed, for the `ln n` they were computed with.
///
/// A node's powers change only when its reservations, usage or capacity do, which between two
/// placements is true of the node placed on and little else; the others reuse their powers. Each
/// entry keeps the exact inputs of its power, so an entry whose node changed, or whose index now
/// holds another node, is simply recomputed: the cache can make `pick` faster, never different.
#[derive(Debug, Clone, Default)]
struct NodePowers {
    ln_n: f64,
    nodes: Vec<Powers>,
}

impl NodePowers {
    /// Forgets every power if `ln n` changed, and makes room for `len` nodes. It allocates only when
    /// the cluster grows past the largest size seen.
    fn prepare(&mut self, model: &Model, len: usize) {
        if self.ln_n.to_bits() != model.ln_n.to_bits() {
            self.ln_n = model.ln_n;
            self.nodes.clear();
        }
        self.nodes.resize(len, Powers::default());
    }
}

/// One node's cached powers with their inputs; a power is NaN until first computed.
#[derive(Debug, Clone, Copy)]
struct Powers {
    memory_used: u64,
    memory: u64,
    memory_power: f64,
    reserved_cpus: u64,
    cpus: u64,
    cpu_power: f64,
}

impl Default for Powers {
    fn default() -> Self {
        Self {
            memory_used: 0,
            memory: 0,
            memory_power: f64::NAN,
            reserved_cpus: 0,
            cpus: 0,
            cpu_power: f64::NAN,
        }
    }
}

impl Powers {
    fn memory(&mut self, model: &Model, node: &NodeSnapshot) -> f64 {
        let used = node.reserved_memory.max(node.used_memory);
        if self.memory_power.is_nan() || self.memory_used != used || self.memory != node.memory {
            self.memory_used = used;
            self.memory = node.memory;
            self.memory_power = model.memory_power(node);
        }
        self.memory_power
    }

    fn cpu(&mut self, model: &Model, node: &NodeSnapshot) -> f64 {
        let (reserved, cpus) = (node.reserved_cpus.to_bits(), node.cpus.to_bits());
        if self.cpu_power.is_nan() || self.reserved_cpus != reserved || self.cpus != cpus {
            self.reserved_cpus = reserved;
            self.cpus = cpus;
            self.cpu_power = model.cpu_power(node);
        }
        self.cpu_power
    }
}

/// The job-slot powers `n^(tasks / max_jobs)` for every task count below `max_jobs`, for the `n` and
/// `max_jobs` they were built for.
#[derive(Debug, Clone, Default)]
struct JobPowers {
    ln_n: f64,
    max_jobs: u64,
    powers: Vec<f64>,
}

impl JobPowers {
    /// Rebuilds the table if the decision's `n` or `max_jobs` differs from the table's. Both change
    /// rarely (a node going up or down, the busiest node passing a power of two), so the table is
    /// almost always reused as it is.
    fn prepare(&mut self, model: &Model) {
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
    }

    /// `n^(tasks / max_jobs)`, from the table when it holds it.
    fn get(&self, model: &Model, tasks: u32) -> f64 {
        match self.powers.get(tasks as usize) {
            Some(&power) => power,
            None => model.job_power(tasks),
        }
    }
}
