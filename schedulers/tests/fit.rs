//! BinPack's and Spread's scores against Nomad's formulas computed by hand.
//!
//! The expected scores were computed outside this crate with Python, as
//! `clamp(20 - (10**free_cpu + 10**free_mem), 0, 18) / 18` for BinPack and
//! `clamp((10**free_cpu + 10**free_mem) - 2, 0, 18) / 18` for Spread, the free fractions taken
//! after placement.

mod support;

use poseidon_schedulers::scheduler::best_of;
use poseidon_schedulers::{by_name, Demand, NodeSnapshot, ScoreOrder};
use support::{close, id, node, GIB};

/// Checks a fit policy's score for every feasible node (as `(id, score)` in slice order) and its
/// pick.
fn assert_fit(
    policy: &str,
    nodes: &[NodeSnapshot],
    demand: &Demand,
    scores: &[(&str, f64)],
    pick: &str,
) {
    let mut scheduler = match by_name(policy) {
        Ok(scheduler) => scheduler,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(scheduler.score_order(), ScoreOrder::HigherIsBetter);
    let (candidates, _) = scheduler.select(nodes, demand);
    let got = scheduler.score(nodes, &candidates, demand);
    assert_eq!(
        got.len(),
        scores.len(),
        "{policy}: got {got:?}, want {scores:?}"
    );
    for (&(index, score), &(want_id, want_score)) in got.iter().zip(scores) {
        assert_eq!(id(nodes, index), want_id, "{policy}");
        assert!(
            close(score, want_score),
            "{policy} {want_id}: score {score}, want {want_score}"
        );
    }
    let picked = match scheduler.pick(nodes, demand) {
        Ok(index) => index,
        Err(no_fit) => panic!("{policy}: expected a pick: {no_fit}"),
    };
    assert_eq!(id(nodes, picked), pick, "{policy}: scores {got:?}");
    assert_eq!(best_of(nodes, &got, scheduler.score_order()), Some(picked));
}

/// a: 4 cores, 8 GiB, half reserved; b: 8 cores, 16 GiB, an eighth reserved.
fn half_and_eighth() -> Vec<NodeSnapshot> {
    vec![
        NodeSnapshot {
            reserved_cpus: 2.0,
            reserved_memory: 4 * GIB,
            ..node("a", 4.0, 8 * GIB, 2)
        },
        NodeSnapshot {
            reserved_cpus: 1.0,
            reserved_memory: 2 * GIB,
            ..node("b", 8.0, 16 * GIB, 1)
        },
    ]
}

#[test]
fn binpack_prefers_the_node_the_task_leaves_fullest() {
    // a after: free cpu 1/4, free memory 3/8; b after: free cpu 3/4, free memory 13/16.
    assert_fit(
        "binpack",
        &half_and_eighth(),
        &Demand::new(1.0, GIB),
        &[("a", 0.8805748269055235), ("b", 0.43793169068524423)],
        "a",
    );
}

#[test]
fn spread_prefers_the_node_the_task_leaves_emptiest() {
    assert_fit(
        "spread",
        &half_and_eighth(),
        &Demand::new(1.0, GIB),
        &[("a", 0.11942517309447655), ("b", 0.5620683093147557)],
        "b",
    );
}

#[test]
fn a_task_that_fills_a_node_exactly_scores_one_for_binpack_and_zero_for_spread() {
    let full = [NodeSnapshot {
        reserved_cpus: 3.0,
        reserved_memory: 7 * GIB,
        ..node("w1", 4.0, 8 * GIB, 3)
    }];
    let demand = Demand::new(1.0, GIB);
    assert_fit("binpack", &full, &demand, &[("w1", 1.0)], "w1");
    assert_fit("spread", &full, &demand, &[("w1", 0.0)], "w1");
}

#[test]
fn fit_scores_still_count_free_cores_when_the_task_declares_none() {
    // Free cpu 3/4 (one core reserved), free memory 6/8 after the 1 GiB.
    let nodes = [NodeSnapshot {
        reserved_cpus: 1.0,
        reserved_memory: GIB,
        ..node("w1", 4.0, 8 * GIB, 1)
    }];
    let demand = Demand::new(0.0, GIB);
    assert_fit(
        "binpack",
        &nodes,
        &demand,
        &[("w1", 0.48628741645516765)],
        "w1",
    );
    assert_fit(
        "spread",
        &nodes,
        &demand,
        &[("w1", 0.5137125835448324)],
        "w1",
    );
}

#[test]
fn fit_policies_break_ties_by_the_lowest_node_id() {
    // Three empty 4-core, 8 GiB nodes and one core and 1 GiB: free 3/4 and 7/8 everywhere.
    let nodes = [
        node("w2", 4.0, 8 * GIB, 0),
        node("w3", 4.0, 8 * GIB, 0),
        node("w1", 4.0, 8 * GIB, 0),
    ];
    let demand = Demand::new(1.0, GIB);
    let binpack = 0.3820913697095528;
    let spread = 0.6179086302904472;
    assert_fit(
        "binpack",
        &nodes,
        &demand,
        &[("w2", binpack), ("w3", binpack), ("w1", binpack)],
        "w1",
    );
    assert_fit(
        "spread",
        &nodes,
        &demand,
        &[("w2", spread), ("w3", spread), ("w1", spread)],
        "w1",
    );
}
