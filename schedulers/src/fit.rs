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

use crate::feasibility::{fits, NoFit};
use crate::scheduler::{Best, Scheduler, ScoreOrder};
use crate::snapshot::{Demand, NodeSnapshot};

/// Nomad's largest fit score, by which it normalises scores to `[0, 1]`.
const MAX_FIT_SCORE: f64 = 18.0;

/// Nomad's `ScoreFitBinPack`: prefer the node the task leaves fullest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BinPack;

/// Nomad's `ScoreFitSpread`: prefer the node the task leaves emptiest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spread;

/// `10^free_cpu + 10^free_mem` after placing `demand` on `node`: 2 when full, 20 when empty.
fn total(node: &NodeSnapshot, demand: &Demand) -> f64 {
    let free_cpu = if node.cpus > 0.0 {
        1.0 - (node.reserved_cpus + demand.declared_cpus()) / node.cpus
    } else {
        0.0
    };
    let free_memory = if node.memory > 0 {
        let used = node.reserved_memory.saturating_add(demand.memory);
        1.0 - used as f64 / node.memory as f64
    } else {
        0.0
    };
    // 10^x as exp(x ln 10): the same number as powf, for less work.
    (free_cpu * std::f64::consts::LN_10).exp() + (free_memory * std::f64::consts::LN_10).exp()
}

/// Nomad's `ScoreFitBinPack`, normalised to `[0, 1]`.
pub fn binpack_score(node: &NodeSnapshot, demand: &Demand) -> f64 {
    (20.0 - total(node, demand)).clamp(0.0, MAX_FIT_SCORE) / MAX_FIT_SCORE
}

/// Nomad's `ScoreFitSpread`, normalised to `[0, 1]`.
pub fn spread_score(node: &NodeSnapshot, demand: &Demand) -> f64 {
    (total(node, demand) - 2.0).clamp(0.0, MAX_FIT_SCORE) / MAX_FIT_SCORE
}

/// The shared `pick` of the fit policies: one pass, highest score, ties to the lowest id.
fn pick_highest(
    nodes: &[NodeSnapshot],
    demand: &Demand,
    score: fn(&NodeSnapshot, &Demand) -> f64,
) -> Result<usize, NoFit> {
    let mut best = Best::new(ScoreOrder::HigherIsBetter);
    for (i, node) in nodes.iter().enumerate() {
        if fits(node, demand) {
            best.offer(nodes, i, score(node, demand));
        }
    }
    best.index().ok_or_else(|| NoFit::from_nodes(nodes, demand))
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
        pick_highest(nodes, demand, binpack_score)
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
        pick_highest(nodes, demand, spread_score)
    }
}
