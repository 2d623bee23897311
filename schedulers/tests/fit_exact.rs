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
use support::{GIB, MIB};

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

/// The history with every change of the cluster's length left out, so the index is never reset and
/// only drift (more changes than nodes) lays it out again.
fn without_resizes(steps: &[(Change, Demand)]) -> Vec<(Change, Demand)> {
    steps
        .iter()
        .map(|(change, demand)| match change {
            Change::Remove(_) | Change::Duplicate(_) => (Change::Nothing, demand.clone()),
            _ => (change.clone(), demand.clone()),
        })
        .collect()
}

/// Inputs the random clusters never hold, each on several nodes so that boxes mix them with
/// ordinary ones: cores or reserved cores that are NaN, infinite or negative (the index never skips
/// a box holding one), no cores or memory at all, memory at `u64::MAX`, reservations whose sums
/// round (`0.1 + 0.2` of `0.3` cores), and over-reserved nodes; and demands at the edges: at the
/// feasibility check's epsilon, infinite cores, all of a node's memory, nothing at all.
#[test]
fn the_indexed_fit_pick_is_the_exhaustive_pick_on_odd_inputs() {
    let shapes: [(f64, f64, u64, u64); 14] = [
        (4.0, 1.0, 8 * GIB, GIB),
        (4.0, f64::NAN, 8 * GIB, GIB),
        (f64::NAN, 1.0, 8 * GIB, GIB),
        (f64::INFINITY, 1.0, 8 * GIB, GIB),
        (4.0, f64::INFINITY, 8 * GIB, 0),
        (4.0, -1.0, 8 * GIB, 0),
        (0.0, 0.5, 8 * GIB, 0),
        (4.0, 0.0, 0, 0),
        (16.0, 2.0, u64::MAX, u64::MAX - GIB),
        (0.3, 0.1 + 0.2, 4 * GIB, 2 * GIB),
        (0.3, 0.1, 4 * GIB, 2 * GIB),
        (2.0, 2.4, 2 * GIB, 3 * GIB),
        (1.0, 1.0 - 1e-9, GIB, GIB - MIB),
        (8.0, 4.0, 16 * GIB, 8 * GIB),
    ];
    let mut nodes = Vec::new();
    for copy in 0..4 {
        for (n, &(cpus, reserved_cpus, memory, reserved_memory)) in shapes.iter().enumerate() {
            nodes.push(NodeSnapshot {
                reserved_cpus,
                reserved_memory,
                ..NodeSnapshot::new(format!("o{:02}-{copy}", (n * 7 + copy) % 31), cpus, memory)
            });
        }
    }
    let demands = [
        Demand::new(0.0, 0),
        Demand::new(0.5, 0),
        Demand::new(1e-9, 0),
        Demand::new(2e-9, MIB),
        Demand::new(0.0 + 1e-9, 0),
        Demand::new(f64::INFINITY, 0),
        Demand::new(f64::NAN, GIB),
        Demand::new(0.0, u64::MAX),
        Demand::new(1.0, 8 * GIB),
        Demand::new(4.0, 0),
    ];
    for policy in [Policy::BinPack, Policy::Spread] {
        let steps: Vec<(Change, Demand)> = (0..120)
            .map(|i| (Change::Nothing, demands[i % demands.len()].clone()))
            .collect();
        replay(policy, nodes.clone(), &steps).unwrap_or_else(|e| panic!("{policy:?}: {e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_indexed_fit_pick_is_the_exhaustive_pick_on_large_clusters_over_long_histories(
        homogeneous in any::<bool>(),
        spread in any::<bool>(),
        resizes in any::<bool>(),
        heterogeneous in with_ids(prop::collection::vec(arb_heterogeneous_node(), 300..600)),
        uniform in arb_homogeneous_cluster(600),
        hetero_steps in steps(arb_heterogeneous_demand, 400),
        homo_steps in steps(arb_homogeneous_demand, 400),
    ) {
        // Hundreds of changes on a few hundred nodes: the layout is rebuilt along the way, by a
        // change of length or, without those, by drift (about two node changes a pick).
        let policy = if spread { Policy::Spread } else { Policy::BinPack };
        let (nodes, steps) = if homogeneous {
            (uniform, homo_steps)
        } else {
            (heterogeneous, hetero_steps)
        };
        let steps = if resizes { steps } else { without_resizes(&steps) };
        replay(policy, nodes, &steps)?;
    }
}
