//! The [`Scheduler`] trait: select candidates, score them, pick one.
//!
//! `select` and `score` exist to explain a decision and to test each step; they may allocate.
//! `pick` is the hot path the manager calls once per placement. RoundRobin implements it as one
//! scan over the nodes; E-PVM, BinPack and Spread search an exact index over the nodes they were
//! last given (a tree of boxes that bound the score, `epvm_index` and `fit_index`), so that most
//! nodes are never scored. Every policy gives the same answer as `select` then `score` then taking
//! the best score ([`best_of`]), lowest node id first on ties, and allocates nothing when some
//! node fits.

use std::cmp::Ordering;
use std::fmt;

use crate::feasibility::{self, NoFit, Rejection};
use crate::snapshot::{Demand, NodeSnapshot};

/// Which end of a policy's scores wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreOrder {
    /// The lowest score wins (E-PVM's marginal cost, RoundRobin's distance from its cursor).
    LowerIsBetter,
    /// The highest score wins (Nomad's fit scores).
    HigherIsBetter,
}

/// A placement policy.
///
/// Implementations are pure functions of their arguments plus explicit state (the round-robin
/// cursor), so the same snapshots and demand give the same pick.
pub trait Scheduler: Send + Sync + fmt::Debug {
    /// The policy's name, as the config and [`crate::by_name`] spell it.
    fn name(&self) -> &'static str;

    /// Which end of [`Scheduler::score`]'s scores wins.
    fn score_order(&self) -> ScoreOrder;

    /// Feasibility: the indices of the nodes that can take `demand`, and every other node's index
    /// with the reason it cannot, both in slice order.
    fn select(
        &self,
        nodes: &[NodeSnapshot],
        demand: &Demand,
    ) -> (Vec<usize>, Vec<(usize, Rejection)>) {
        feasibility::select(nodes, demand)
    }

    /// Scores each candidate (an index into `nodes`, as [`Scheduler::select`] returned it); whether
    /// lower or higher is better is [`Scheduler::score_order`]. The result keeps the candidates'
    /// order.
    fn score(
        &self,
        nodes: &[NodeSnapshot],
        candidates: &[usize],
        demand: &Demand,
    ) -> Vec<(usize, f64)>;

    /// Selects, scores and picks: the index into `nodes` of the node the task should go to, or every
    /// node's reason for turning it down. It may update the policy's explicit state (the round-robin
    /// cursor moves to the picked node).
    fn pick(&mut self, nodes: &[NodeSnapshot], demand: &Demand) -> Result<usize, NoFit>;

    /// [`Scheduler::pick`] for a caller that knows which snapshots changed since its previous
    /// `pick` or `pick_changed`: `changed` lists (in any order, repeats allowed) the index of every
    /// snapshot that differs in any field; a change of the slice's length needs no listing. The
    /// same answer as `pick`; a policy with an index over the nodes (E-PVM, BinPack, Spread) then
    /// reads only the listed snapshots. The default ignores the list.
    fn pick_changed(
        &mut self,
        nodes: &[NodeSnapshot],
        demand: &Demand,
        changed: &[usize],
    ) -> Result<usize, NoFit> {
        let _ = changed;
        self.pick(nodes, demand)
    }
}

/// The running best of a scan over scored nodes, under a score order, with ties to the lowest id.
///
/// Scores are compared with `total_cmp`, so that a NaN can never make the scan's answer depend on
/// the nodes' order: it sorts above every number, so it never wins a lower-is-better scan, and every
/// policy here only produces NaN from a snapshot that is already nonsense.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Best {
    order: ScoreOrder,
    best: Option<(usize, f64)>,
}

impl Best {
    pub(crate) fn new(order: ScoreOrder) -> Self {
        Self { order, best: None }
    }

    /// Offers node `index` with `score`; it becomes the best if its score is better, or equal with a
    /// lower id. Nodes are offered in slice order, so among equal ids the lowest index stays.
    pub(crate) fn offer(&mut self, nodes: &[NodeSnapshot], index: usize, score: f64) {
        let better = match self.best {
            None => true,
            Some((best, best_score)) => {
                let by_score = match self.order {
                    ScoreOrder::LowerIsBetter => score.total_cmp(&best_score),
                    ScoreOrder::HigherIsBetter => best_score.total_cmp(&score),
                };
                match by_score {
                    Ordering::Less => true,
                    Ordering::Greater => false,
                    Ordering::Equal => nodes[index].id < nodes[best].id,
                }
            }
        };
        if better {
            self.best = Some((index, score));
        }
    }

    /// The winner, if any node was offered.
    pub(crate) fn index(&self) -> Option<usize> {
        self.best.map(|(index, _)| index)
    }
}

/// The index of the best of `scores` (pairs of node index and score, as [`Scheduler::score`] returns
/// them) under `order`, ties to the lowest node id: the node the policy's `pick` chooses when the
/// scores are those of every candidate. `None` when `scores` is empty.
pub fn best_of(
    nodes: &[NodeSnapshot],
    scores: &[(usize, f64)],
    order: ScoreOrder,
) -> Option<usize> {
    let mut best = Best::new(order);
    for &(index, score) in scores {
        best.offer(nodes, index, score);
    }
    best.index()
}
