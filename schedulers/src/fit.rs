//! BinPack and Spread: Nomad's two fit scores, for users who want density or resilience.
//!
//! Nomad (`nomad/structs/funcs.go`) scores a node by the fractions of its CPU and memory that would
//! stay free after the placement:
//!
//! ```text
//! free_cpu = 1 - (reserved_cpus + demand.cpus) / cpus
//! free_mem = 1 - (reserved_memory + demand.memory) / memory
//! total    = 10^free_cpu + 10^free_mem          (2 when full, 20 when empty)
//! ScoreFitBinPack = 20 - total, clamped to [0, 18]
//! ScoreFitSpread  = total - 2,  clamped to [0, 18]
//! ```
//!
//! and its rank iterator divides the score by 18 (`binPackingMaxFitScore`) so it lies in `[0, 1]`.
//! Higher is better for both: BinPack prefers the node the task leaves fullest, which keeps whole
//! nodes free for large tasks and lets idle ones be drained; Spread prefers the node it leaves
//! emptiest, which keeps the load even and limits what one node's failure takes down. We return the
//! normalised score.
//!
//! Our choices where Nomad's inputs differ from ours:
//! - Utilization is the declared reservations plus the demand, as Nomad's is the allocations'
//!   declared resources plus the proposed one; observed usage plays no part (E-PVM uses it).
//! - Nomad subtracts the node's system reservation from its capacity first; a [`NodeSnapshot`]'s
//!   capacity is already what tasks may use.
//! - A resource with no capacity counts as full (free fraction 0) instead of dividing by zero; such a
//!   node only passes feasibility for a task that does not ask for that resource.
//! - A task that declares no CPU (or no memory) still scores by the node's free fraction of it, as in
//!   Nomad, so BinPack still packs and Spread still spreads by that resource.
//! - Ties go to the lowest node id; Nomad breaks them by its shuffled node order, which is random.
//!
//! `pick` searches an exact index (`fit_index`) instead of scoring every node: the same node as the
//! one-pass scan, ties included (`schedulers/tests/fit_exact.rs`), at a fraction of the cost on
//! large clusters (BENCHMARKS.md, "Issue 17: BinPack and Spread indexed").

use crate::bnb::Records;
use crate::feasibility::NoFit;
use crate::fit_index::Index;
use crate::scheduler::{Scheduler, ScoreOrder};
use crate::snapshot::{Demand, NodeSnapshot};

/// Nomad's largest fit score, by which it normalises scores to `[0, 1]`.
const MAX_FIT_SCORE: f64 = 18.0;

/// Nomad's `ScoreFitBinPack`: prefer the node the task leaves fullest.
///
/// Its state is an index over the nodes it was last given (`fit_index`, the same kind of tree as
/// E-PVM's), which makes `pick` cheaper and never different; keep one for the life of the manager
/// and pass the nodes in a stable order, as for [`crate::Epvm`].
#[derive(Debug, Clone, Default)]
pub struct BinPack {
    index: Index,
}

/// Nomad's `ScoreFitSpread`: prefer the node the task leaves emptiest. Indexed as [`BinPack`] is.
#[derive(Debug, Clone, Default)]
pub struct Spread {
    index: Index,
}

impl BinPack {
    /// A new BinPack scheduler.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Spread {
    /// A new Spread scheduler.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The free fraction of a node's cores after placing `demand` cores: `1 - (reserved + demand) /
/// cpus`, 0 for a node with no cores. The one function both the scan and the index
/// (`fit_index`) use, so both give the same bits.
pub(crate) fn free_cpu(cpus: f64, reserved: f64, demand: f64) -> f64 {
    if cpus > 0.0 {
        1.0 - (reserved + demand) / cpus
    } else {
        0.0
    }
}

/// The free fraction of a node's memory after placing `demand` bytes, 0 for a node with none.
pub(crate) fn free_memory(memory: u64, reserved: u64, demand: u64) -> f64 {
    if memory > 0 {
        let used = reserved.saturating_add(demand);
        1.0 - used as f64 / memory as f64
    } else {
        0.0
    }
}

/// `10^free`, as `exp(free ln 10)`: the same number as powf, for less work.
pub(crate) fn power10(free: f64) -> f64 {
    (free * std::f64::consts::LN_10).exp()
}

/// `10^free_cpu + 10^free_mem` after placing `demand` on `node`: 2 when full, 20 when empty.
fn total(node: &NodeSnapshot, demand: &Demand) -> f64 {
    power10(free_cpu(
        node.cpus,
        node.reserved_cpus,
        demand.declared_cpus(),
    )) + power10(free_memory(
        node.memory,
        node.reserved_memory,
        demand.memory,
    ))
}

/// Which of the two fit scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    BinPack,
    Spread,
}

impl Fit {
    /// The normalised score of a node whose `10^free_cpu + 10^free_mem` is `total`: BinPack's falls
    /// as `total` grows, Spread's rises.
    pub(crate) fn of_total(self, total: f64) -> f64 {
        match self {
            Fit::BinPack => (20.0 - total).clamp(0.0, MAX_FIT_SCORE) / MAX_FIT_SCORE,
            Fit::Spread => (total - 2.0).clamp(0.0, MAX_FIT_SCORE) / MAX_FIT_SCORE,
        }
    }
}

/// Nomad's `ScoreFitBinPack`, normalised to `[0, 1]`.
pub fn binpack_score(node: &NodeSnapshot, demand: &Demand) -> f64 {
    Fit::BinPack.of_total(total(node, demand))
}

/// Nomad's `ScoreFitSpread`, normalised to `[0, 1]`.
pub fn spread_score(node: &NodeSnapshot, demand: &Demand) -> f64 {
    Fit::Spread.of_total(total(node, demand))
}

/// The shared `pick` of the fit policies: the highest score, ties to the lowest id then index,
/// through the index brought up to date with every snapshot or with the `changed` ones.
fn pick_highest(
    index: &mut Index,
    fit: Fit,
    nodes: &[NodeSnapshot],
    demand: &Demand,
    changed: Option<&[usize]>,
) -> Result<usize, NoFit> {
    match changed {
        Some(changed) => index.sync_changed(nodes, changed),
        None => index.sync(nodes),
    }
    let score = match fit {
        Fit::BinPack => binpack_score,
        Fit::Spread => spread_score,
    };
    index
        .pick(fit, score, nodes, demand)
        .ok_or_else(|| NoFit::from_nodes(nodes, demand))
}

impl Scheduler for BinPack {
    fn name(&self) -> &'static str {
        "binpack"
    }

    /// Higher is better: the score is Nomad's bin-packing fit.
    fn score_order(&self) -> ScoreOrder {
        ScoreOrder::HigherIsBetter
    }

    /// Each candidate's [`binpack_score`], in `[0, 1]`, higher is better.
    fn score(
        &self,
        nodes: &[NodeSnapshot],
        candidates: &[usize],
        demand: &Demand,
    ) -> Vec<(usize, f64)> {
        candidates
            .iter()
            .map(|&c| (c, binpack_score(&nodes[c], demand)))
            .collect()
    }

    fn pick(&mut self, nodes: &[NodeSnapshot], demand: &Demand) -> Result<usize, NoFit> {
        pick_highest(&mut self.index, Fit::BinPack, nodes, demand, None)
    }

    fn pick_changed(
        &mut self,
        nodes: &[NodeSnapshot],
        demand: &Demand,
        changed: &[usize],
    ) -> Result<usize, NoFit> {
        pick_highest(&mut self.index, Fit::BinPack, nodes, demand, Some(changed))
    }
}

impl Scheduler for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }

    /// Higher is better: the score is Nomad's spread fit.
    fn score_order(&self) -> ScoreOrder {
        ScoreOrder::HigherIsBetter
    }

    /// Each candidate's [`spread_score`], in `[0, 1]`, higher is better.
    fn score(
        &self,
        nodes: &[NodeSnapshot],
        candidates: &[usize],
        demand: &Demand,
    ) -> Vec<(usize, f64)> {
        candidates
            .iter()
            .map(|&c| (c, spread_score(&nodes[c], demand)))
            .collect()
    }

    fn pick(&mut self, nodes: &[NodeSnapshot], demand: &Demand) -> Result<usize, NoFit> {
        pick_highest(&mut self.index, Fit::Spread, nodes, demand, None)
    }

    fn pick_changed(
        &mut self,
        nodes: &[NodeSnapshot],
        demand: &Demand,
        changed: &[usize],
    ) -> Result<usize, NoFit> {
        pick_highest(&mut self.index, Fit::Spread, nodes, demand, Some(changed))
    }
}
