//! RoundRobin: each task goes to the next feasible node after the last node placed on.
//!
//! Nodes are taken in the order of their ids (byte order), not of their position in the slice, and
//! the cursor is the *id* of the last node placed on rather than an index. The manager's node list
//! changes as nodes join, leave and fail, and an index would then point at a different node and skip
//! or repeat some; an id keeps its place in the order whatever else comes and goes. The next node is
//! the feasible node with the smallest id above the cursor, wrapping around to the smallest feasible
//! id, so over a cycle in which the feasible nodes stay the same each gets one task in turn. A
//! cursor whose node has left still works: the rotation goes on from where that id would sort.

use crate::feasibility::{fits, NoFit};
use crate::scheduler::{Scheduler, ScoreOrder};
use crate::snapshot::{Demand, NodeSnapshot};

/// The round-robin policy; its only state is the id of the last node it placed on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundRobin {
    last: Option<String>,
}

impl RoundRobin {
    /// A rotation that starts at the lowest node id.
    pub fn new() -> Self {
        Self::default()
    }

    /// A rotation that goes on after the node with this id, for a manager that restores its cursor
    /// after a restart.
    pub fn starting_after(id: impl Into<String>) -> Self {
        Self {
            last: Some(id.into()),
        }
    }

    /// The id of the last node placed on, if any.
    pub fn last(&self) -> Option<&str> {
        self.last.as_deref()
    }

    /// Where `id` sorts in the rotation that starts after the cursor: ids above the cursor come
    /// first, in order, then the rest from the lowest up.
    fn rotation_key<'a>(&self, id: &'a str) -> (bool, &'a str) {
        let wrapped = self.last.as_deref().is_some_and(|last| id <= last);
        (wrapped, id)
    }
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "round-robin"
    }

    /// Lower is better: the score is a node's place in the rotation, 0 for the next node.
    fn score_order(&self) -> ScoreOrder {
        ScoreOrder::LowerIsBetter
    }

    /// A candidate's place in the rotation after the cursor: 0 for the node `pick` would choose, 1
    /// for the one after it, and so on. Candidates that share an id keep their slice order.
    fn score(
        &self,
        nodes: &[NodeSnapshot],
        candidates: &[usize],
        _demand: &Demand,
    ) -> Vec<(usize, f64)> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (candidates[a], candidates[b]);
            self.rotation_key(&nodes[a].id)
                .cmp(&self.rotation_key(&nodes[b].id))
                .then(a.cmp(&b))
        });
        let mut scores: Vec<(usize, f64)> = candidates.iter().map(|&c| (c, 0.0)).collect();
        for (rank, &position) in order.iter().enumerate() {
            scores[position].1 = rank as f64;
        }
        scores
    }

    fn pick(&mut self, nodes: &[NodeSnapshot], demand: &Demand) -> Result<usize, NoFit> {
        // One pass, no sort, no allocation. `after` is the lowest feasible id above the cursor and
        // `lowest` the lowest feasible id at or below it, the answer only when nothing lies above
        // (the rotation wraps); once some node lies above, nodes below need no comparison at all.
        let last = self.last.as_deref();
        let mut after: Option<usize> = None;
        let mut lowest: Option<usize> = None;
        for (i, node) in nodes.iter().enumerate() {
            if !fits(node, demand) {
                continue;
            }
            let id = node.id.as_str();
            if last.is_some_and(|last| id > last) {
                if lower_than(after, nodes, id) {
                    after = Some(i);
                }
            } else if after.is_none() && lower_than(lowest, nodes, id) {
                lowest = Some(i);
            }
        }
        let chosen = after
            .or(lowest)
            .ok_or_else(|| NoFit::from_nodes(nodes, demand))?;
        // Reusing the cursor's buffer keeps the steady state free of allocations.
        match &mut self.last {
            Some(last) => last.clone_from(&nodes[chosen].id),
            None => self.last = Some(nodes[chosen].id.clone()),
        }
        Ok(chosen)
    }
}

/// Whether `id` should replace `best` in `pick`'s scan: there is no best yet, or `id` is lower than
/// the best's. On equal ids the earlier index stays, as everywhere in this crate.
fn lower_than(best: Option<usize>, nodes: &[NodeSnapshot], id: &str) -> bool {
    match best {
        None => true,
        Some(best) => id < nodes[best].id.as_str(),
    }
}
