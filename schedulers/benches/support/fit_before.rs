//! BinPack's and Spread's pick as it was before their index (issue 17): one pass over every node,
//! each feasible one scored, the highest kept, ties to the lowest id then index. Kept so the
//! benchmark can measure it beside the index in the same run, and the property tests can check that
//! the index chooses exactly the node the scan did. The scores are the crate's own.

#![allow(dead_code)]

use poseidon_schedulers::fit::{binpack_score, spread_score};
use poseidon_schedulers::{fits, Demand, NoFit, NodeSnapshot};

/// Which policy the scan scores with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    BinPack,
    Spread,
}

/// The scan: the highest score (`total_cmp`), ties to the lowest id, then the lowest index.
pub fn pick(policy: Policy, nodes: &[NodeSnapshot], demand: &Demand) -> Result<usize, NoFit> {
    let score = match policy {
        Policy::BinPack => binpack_score,
        Policy::Spread => spread_score,
    };
    let mut best: Option<(usize, f64)> = None;
    for (i, node) in nodes.iter().enumerate() {
        if !fits(node, demand) {
            continue;
        }
        let s = score(node, demand);
        let better = match best {
            None => true,
            Some((b, best_score)) => match best_score.total_cmp(&s) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => node.id < nodes[b].id,
            },
        };
        if better {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
        .ok_or_else(|| NoFit::from_nodes(nodes, demand))
}
