//! E-PVM's indexed pick against the exhaustive scan, over random clusters and random histories.
//!
//! Each case builds a cluster, heterogeneous (every node its own shape and load) or homogeneous
//! (one machine shape, loads and demands from small sets, ids that sometimes repeat, so exact ties
//! are everywhere), and replays a sequence of steps: a change to the cluster (a release, a node
//! going down or up, new observed memory, ids swapped, a node added or removed, a task count
//! moved), then a pick, placed on the node chosen. At every pick four answers must agree:
//! - the reference: `select`, then `score` (every feasible node's cost), then `best_of` (lowest
//!   cost, then lowest id, then lowest index), computed afresh;
//! - `Epvm::pick`, one scheduler kept warm through the whole history;
//! - `Epvm::pick_changed`, another warm scheduler told which indices the step changed;
//! - `epvm-before`, the code this index replaced, kept warm too.
//!
//! When no node fits, all must return the same `NoFit`. The textbook `powf` baseline must pick the
//! same node too, unless its two candidates' `powf` costs are within 1e-12 of each other (a tie that
//! only rounding breaks, since `powf` and the factored form differ in the last bits); such cases are
//! printed. 10,000 cases for each kind of cluster, up to 40 steps each, plus larger clusters that
//! exercise deep trees and layout rebuilds.

mod support;

#[path = "../benches/support/epvm_before.rs"]
mod epvm_before;
#[path = "../benches/support/naive.rs"]
mod naive;

use epvm_before::EpvmBefore;
use poseidon_schedulers::scheduler::best_of;
use poseidon_schedulers::{Demand, Epvm, NodeSnapshot, Scheduler};
use proptest::prelude::*;
use support::histories::{
    apply, arb_heterogeneous_demand, arb_heterogeneous_node, arb_homogeneous_cluster,
    arb_homogeneous_demand, steps, with_ids, Change,
};

/// The four schedulers of one history.
struct Judges {
    warm: Epvm,
    told: Epvm,
    before: EpvmBefore,
}

impl Judges {
    fn new() -> Self {
        Self {
            warm: Epvm::new(),
            told: Epvm::new(),
            before: EpvmBefore::new(),
        }
    }

    /// Checks one pick against the reference, and returns it.
    fn pick(
        &mut self,
        nodes: &[NodeSnapshot],
        demand: &Demand,
        changed: &[usize],
    ) -> Result<Option<usize>, TestCaseError> {
        let reference = {
            let epvm = Epvm::new();
            let (candidates, _) = epvm.select(nodes, demand);
            let scores = epvm.score(nodes, &candidates, demand);
            best_of(nodes, &scores, epvm.score_order())
        };
        let warm = self.warm.pick(nodes, demand);
        let told = self.told.pick_changed(nodes, demand, changed);
        let before = self.before.pick(nodes, demand);
        prop_assert_eq!(warm.as_ref().ok().copied(), reference, "Epvm::pick");
        prop_assert_eq!(&told, &warm, "Epvm::pick_changed");
        prop_assert_eq!(&before, &warm, "epvm-before");
        let textbook = naive::pick(nodes, demand);
        if textbook != reference {
            let costs = naive::marginal_costs(nodes, demand);
            let cost_of = |index: Option<usize>| {
                costs
                    .iter()
                    .find(|&&(i, _)| Some(i) == index)
                    .map(|&(_, cost)| cost)
            };
            let (Some(a), Some(b)) = (cost_of(textbook), cost_of(reference)) else {
                return Err(TestCaseError::fail(
                    "the textbook and the reference disagree on fit",
                ));
            };
            prop_assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
                "textbook {a} vs reference {b}"
            );
            eprintln!("rounding tie: textbook {a:e} and reference {b:e} picked different nodes");
        }
        Ok(reference)
    }
}

/// Replays a history of changes and picks, placing each pick.
fn replay(mut nodes: Vec<NodeSnapshot>, steps: &[(Change, Demand)]) -> Result<(), TestCaseError> {
    let mut judges = Judges::new();
    let mut fresh = 0;
    let mut placed: Option<usize> = None;
    for (change, demand) in steps {
        let mut changed = apply(&mut nodes, change, &mut fresh);
        changed.extend(placed);
        let picked = judges.pick(&nodes, demand, &changed)?;
        if let Some(index) = picked {
            nodes[index].place(demand);
        }
        placed = picked;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn the_indexed_pick_is_the_exhaustive_pick_on_heterogeneous_clusters(
        nodes in with_ids(prop::collection::vec(arb_heterogeneous_node(), 0..48)),
        steps in steps(arb_heterogeneous_demand, 40),
    ) {
        replay(nodes, &steps)?;
    }

    #[test]
    fn the_indexed_pick_is_the_exhaustive_pick_on_homogeneous_clusters(
        nodes in arb_homogeneous_cluster(48),
        steps in steps(arb_homogeneous_demand, 40),
    ) {
        replay(nodes, &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_indexed_pick_is_the_exhaustive_pick_on_large_clusters_over_long_histories(
        homogeneous in any::<bool>(),
        heterogeneous in with_ids(prop::collection::vec(arb_heterogeneous_node(), 300..600)),
        uniform in arb_homogeneous_cluster(600),
        hetero_steps in steps(arb_heterogeneous_demand, 400),
        homo_steps in steps(arb_homogeneous_demand, 400),
    ) {
        // Hundreds of changes on a few hundred nodes: the layout is rebuilt along the way.
        if homogeneous {
            replay(uniform, &homo_steps)?;
        } else {
            replay(heterogeneous, &hetero_steps)?;
        }
    }
}
