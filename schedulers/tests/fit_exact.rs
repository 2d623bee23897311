//! BinPack's and Spread's indexed pick against the exhaustive scan, over random clusters and
//! random histories: the histories of `epvm_exact.rs` (`support::histories`), heterogeneous and
//! homogeneous, 10,000 cases each, every case replayed once with each policy. At every pick four
//! answers must agree: the reference (`select`, then `score` of every feasible node, then
//! `best_of`: highest score, then lowest id, then lowest index, computed afresh); the policy's
//! `pick`, one scheduler kept warm through the history; its `pick_changed`, another warm one told
//! which indices each step changed; and the scan the index replaced (`fit_before.rs`). When no
//! node fits, all must return the same `NoFit`.

mod support;

#[path = "../benches/support/fit_before.rs"]
mod fit_before;

use fit_before::Policy;
use poseidon_schedulers::scheduler::best_of;
use poseidon_schedulers::{BinPack, Demand, NodeSnapshot, Scheduler, Spread};
use proptest::prelude::*;
use support::histories::{
    apply, arb_heterogeneous_demand, arb_heterogeneous_node, arb_homogeneous_cluster,
    arb_homogeneous_demand, steps, with_ids, Change,
};

fn scheduler(policy: Policy) -> Box<dyn Scheduler> {
    match policy {
        Policy::BinPack => Box::new(BinPack::new()),
        Policy::Spread => Box::new(Spread::new()),
    }
}

/// Replays a history of changes and picks with `policy`, placing each pick, and checks every pick.
fn replay(
    policy: Policy,
    mut nodes: Vec<NodeSnapshot>,
    steps: &[(Change, Demand)],
) -> Result<(), TestCaseError> {
    let mut warm = scheduler(policy);
    let mut told = scheduler(policy);
    let mut fresh = 0;
    let mut placed: Option<usize> = None;
    for (change, demand) in steps {
        let mut changed = apply(&mut nodes, change, &mut fresh);
        changed.extend(placed);
        let reference = {
            let judge = scheduler(policy);
            let (candidates, _) = judge.select(&nodes, demand);
            let scores = judge.score(&nodes, &candidates, demand);
            best_of(&nodes, &scores, judge.score_order())
        };
        let picked = warm.pick(&nodes, demand);
        prop_assert_eq!(
            picked.as_ref().ok().copied(),
            reference,
            "{:?} pick",
            policy
        );
        prop_assert_eq!(
            &told.pick_changed(&nodes, demand, &changed),
            &picked,
            "{:?} pick_changed",
            policy
        );
        prop_assert_eq!(
            &fit_before::pick(policy, &nodes, demand),
            &picked,
            "{:?} before",
            policy
        );
        if let Some(index) = reference {
            nodes[index].place(demand);
        }
        placed = reference;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn the_indexed_fit_pick_is_the_exhaustive_pick_on_heterogeneous_clusters(
        nodes in with_ids(prop::collection::vec(arb_heterogeneous_node(), 0..48)),
        steps in steps(arb_heterogeneous_demand, 40),
    ) {
        replay(Policy::BinPack, nodes.clone(), &steps)?;
        replay(Policy::Spread, nodes, &steps)?;
    }

    #[test]
    fn the_indexed_fit_pick_is_the_exhaustive_pick_on_homogeneous_clusters(
        nodes in arb_homogeneous_cluster(48),
        steps in steps(arb_homogeneous_demand, 40),
    ) {
        replay(Policy::BinPack, nodes.clone(), &steps)?;
        replay(Policy::Spread, nodes, &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_indexed_fit_pick_is_the_exhaustive_pick_on_large_clusters_over_long_histories(
        homogeneous in any::<bool>(),
        spread in any::<bool>(),
        heterogeneous in with_ids(prop::collection::vec(arb_heterogeneous_node(), 300..600)),
        uniform in arb_homogeneous_cluster(600),
        hetero_steps in steps(arb_heterogeneous_demand, 400),
        homo_steps in steps(arb_homogeneous_demand, 400),
    ) {
        // Hundreds of changes on a few hundred nodes: the layout is rebuilt along the way.
        let policy = if spread { Policy::Spread } else { Policy::BinPack };
        if homogeneous {
            replay(policy, uniform, &homo_steps)?;
        } else {
            replay(policy, heterogeneous, &hetero_steps)?;
        }
    }
}
