//! E-PVM's marginal costs on small clusters, against numbers computed by hand.
//!
//! Every expected cost below was computed outside this crate (with Python's `**`, straight from the
//! formula in the module docs of `epvm`), never by the code under test, and is written out as a
//! literal. Each case checks every candidate's cost to 1e-9 relative, the pick, and that the pick is
//! the best of the scores.

mod support;

use poseidon_schedulers::scheduler::best_of;
use poseidon_schedulers::{Demand, Epvm, NodeSnapshot, RoundRobin, Scheduler};
use support::{close, id, node, GIB};

/// Checks E-PVM's costs for every feasible node (as `(id, cost)` in slice order) and its pick, and
/// returns the picked node's id for further checks.
fn assert_epvm(
    nodes: &[NodeSnapshot],
    demand: &Demand,
    costs: &[(&str, f64)],
    pick: &str,
) -> String {
    let mut epvm = Epvm::new();
    let (candidates, _) = epvm.select(nodes, demand);
    let scores = epvm.score(nodes, &candidates, demand);
    let got: Vec<(&str, f64)> = scores
        .iter()
        .map(|&(i, cost)| (id(nodes, i), cost))
        .collect();
    assert_eq!(
        got.len(),
        costs.len(),
        "candidates: got {got:?}, want {costs:?}"
    );
    for ((got_id, got_cost), (want_id, want_cost)) in got.iter().zip(costs) {
        assert_eq!(got_id, want_id, "candidates: got {got:?}, want {costs:?}");
        assert!(
            close(*got_cost, *want_cost),
            "{want_id}: cost {got_cost}, want {want_cost}"
        );
    }
    let picked = match epvm.pick(nodes, demand) {
        Ok(index) => index,
        Err(no_fit) => panic!("expected a pick: {no_fit}"),
    };
    assert_eq!(id(nodes, picked), pick, "costs {got:?}");
    let best = best_of(nodes, &scores, epvm.score_order());
    assert_eq!(best, Some(picked), "pick agrees with the best score");
    id(nodes, picked).to_owned()
}

/// The node RoundRobin would choose first, and the node with the fewest tasks (lowest id on ties).
fn naive_choices(nodes: &[NodeSnapshot], demand: &Demand) -> (String, String) {
    let round_robin = match RoundRobin::new().pick(nodes, demand) {
        Ok(index) => nodes[index].id.clone(),
        Err(no_fit) => panic!("expected a pick: {no_fit}"),
    };
    let fewest = nodes
        .iter()
        .filter(|node| node.up)
        .min_by(|a, b| a.tasks.cmp(&b.tasks).then(a.id.cmp(&b.id)))
        .map(|node| node.id.clone())
        .unwrap_or_default();
    (round_robin, fewest)
}

/// Three 4-core, 8 GiB nodes: w1 has the fewest tasks but 6 GiB of its memory taken.
fn memory_cluster() -> Vec<NodeSnapshot> {
    vec![
        NodeSnapshot {
            reserved_memory: 6 * GIB,
            used_memory: 6 * GIB,
            ..node("w1", 4.0, 8 * GIB, 1)
        },
        NodeSnapshot {
            reserved_memory: GIB,
            used_memory: GIB,
            ..node("w2", 4.0, 8 * GIB, 2)
        },
        NodeSnapshot {
            reserved_memory: 2 * GIB,
            used_memory: 2 * GIB,
            ..node("w3", 4.0, 8 * GIB, 3)
        },
    ]
}

#[test]
fn epvm_prefers_the_node_with_more_free_memory_over_fewer_tasks() {
    // n = 3, max_jobs = 4 (w3 would reach 4 tasks).
    // w1: 3^(7/8) - 3^(6/8) + 3^(2/4) - 3^(1/4)
    // w2: 3^(2/8) - 3^(1/8) + 3^(3/4) - 3^(2/4)
    // w3: 3^(3/8) - 3^(2/8) + 3^(4/4) - 3^(3/4)
    let nodes = memory_cluster();
    let demand = Demand::new(0.0, GIB);
    let picked = assert_epvm(
        &nodes,
        &demand,
        &[
            ("w1", 0.7515263662768144),
            ("w2", 0.7163275718985156),
            ("w3", 0.914222578569835),
        ],
        "w2",
    );
    let (round_robin, fewest) = naive_choices(&nodes, &demand);
    assert_ne!(picked, round_robin);
    assert_ne!(picked, fewest);
}

#[test]
fn epvm_follows_the_fewest_tasks_when_the_task_asks_for_no_memory() {
    // The same cluster as above; without a memory request only job slots count.
    assert_epvm(
        &memory_cluster(),
        &Demand::default(),
        &[
            ("w1", 0.4159767946163848),
            ("w2", 0.5474562493859003),
            ("w3", 0.7204929430452225),
        ],
        "w1",
    );
}

/// Two 4-core nodes: w1 has no tasks but 3 of its cores reserved.
fn cpu_cluster() -> Vec<NodeSnapshot> {
    vec![
        NodeSnapshot {
            reserved_cpus: 3.0,
            ..node("w1", 4.0, 8 * GIB, 0)
        },
        node("w2", 4.0, 8 * GIB, 2),
    ]
}

#[test]
fn epvm_prefers_the_node_with_free_cores_when_the_task_asks_for_a_core() {
    // n = 2, max_jobs = 4 (w2 would reach 3 tasks).
    // w1: 2^(1/4) - 2^0 + 2^(4/4) - 2^(3/4)
    // w2: 2^(3/4) - 2^(2/4) + 2^(1/4) - 2^0
    let nodes = cpu_cluster();
    let demand = Demand::new(1.0, 0);
    let picked = assert_epvm(
        &nodes,
        &demand,
        &[("w1", 0.507414284495292), ("w2", 0.4567863831370549)],
        "w2",
    );
    let (round_robin, fewest) = naive_choices(&nodes, &demand);
    assert_ne!(picked, round_robin);
    assert_ne!(picked, fewest);
}

#[test]
fn epvm_ignores_reserved_cores_when_the_task_asks_for_none() {
    // The same cluster; without a CPU request the declared-CPU term is absent.
    assert_epvm(
        &cpu_cluster(),
        &Demand::default(),
        &[("w1", 0.18920711500272103), ("w2", 0.26757926813433386)],
        "w1",
    );
}

#[test]
fn epvm_measures_every_candidate_on_one_job_slot_scale() {
    // Placing on w1 makes 5 tasks, so max_jobs = 8 for both candidates; per-candidate scales would
    // have sent the task to the busier w1.
    // w1: 2^(5/8) - 2^(4/8); w2: 2^(4/8) - 2^(3/8)
    assert_epvm(
        &[node("w1", 4.0, 8 * GIB, 4), node("w2", 4.0, 8 * GIB, 3)],
        &Demand::default(),
        &[("w1", 0.1279972630348456), ("w2", 0.1173740077220855)],
        "w2",
    );
}

#[test]
fn epvm_counts_observed_memory_when_it_exceeds_the_reservation() {
    // w1 reserved 1 GiB but uses 5; w2 reserved 3 and uses 2. n = 2, max_jobs = 2.
    // w1: 2^(6/8) - 2^(5/8) + 2^(2/2) - 2^(1/2)
    // w2: 2^(4/8) - 2^(3/8) + 2^(2/2) - 2^(1/2)
    assert_epvm(
        &[
            NodeSnapshot {
                reserved_memory: GIB,
                used_memory: 5 * GIB,
                ..node("w1", 4.0, 8 * GIB, 1)
            },
            NodeSnapshot {
                reserved_memory: 3 * GIB,
                used_memory: 2 * GIB,
                ..node("w2", 4.0, 8 * GIB, 1)
            },
        ],
        &Demand::new(0.0, GIB),
        &[("w1", 0.7253684427263931), ("w2", 0.7031604453489904)],
        "w2",
    );
}

#[test]
fn epvm_charges_a_node_used_past_its_capacity_as_a_full_one() {
    // w1 uses 10 GiB of 8: before is capped at 1, so it costs 2^(9/8) - 2^1 and never looks cheap.
    // w2: 2^(8/8) - 2^(7/8). Both: + 2^1 - 2^0 for the job slot (max_jobs = 1).
    assert_epvm(
        &[
            NodeSnapshot {
                used_memory: 10 * GIB,
                ..node("w1", 4.0, 8 * GIB, 0)
            },
            NodeSnapshot {
                used_memory: 7 * GIB,
                ..node("w2", 4.0, 8 * GIB, 0)
            },
        ],
        &Demand::new(0.0, GIB),
        &[("w1", 1.1810154653305154), ("w2", 1.1659919135906576)],
        "w2",
    );
}

#[test]
fn epvm_leaves_down_nodes_out_of_the_base_and_the_job_scale() {
    // w1 is down with 9 tasks: n = 2 (not 3) and max_jobs = 4 (not 16).
    // w2: 2^(1/16) - 1 + 2^(3/4) - 2^(2/4) + 2^(0.5/4) - 1
    // w3: 2^(1/16) - 1 + 2^(2/4) - 2^(1/4) + 2^(0.5/4) - 1
    assert_epvm(
        &[
            NodeSnapshot {
                up: false,
                ..node("w1", 4.0, 8 * GIB, 9)
            },
            node("w2", 4.0, 8 * GIB, 2),
            node("w3", 4.0, 8 * GIB, 1),
        ],
        &Demand::new(0.5, GIB / 2),
        &[("w2", 0.4023607832270053), ("w3", 0.35978796246304556)],
        "w3",
    );
}

#[test]
fn epvm_uses_a_base_of_two_on_a_single_node() {
    // n = max(2, 1) = 2, max_jobs = 1: 2^(1/4) - 1 + 2^1 - 2^0 + 2^(0.5/2) - 1
    assert_epvm(
        &[node("w1", 2.0, 4 * GIB, 0)],
        &Demand::new(0.5, GIB),
        &[("w1", 1.378414230005442)],
        "w1",
    );
}

#[test]
fn epvm_weighs_all_three_terms_on_nodes_of_different_sizes() {
    // n = 3, max_jobs = 4 (b would reach 4 tasks). b's observed 9 GiB counts over its 8 reserved.
    // a: 3^(3/4) - 3^(1/4) + 3^(2/4) - 3^(1/4) + 3^(1.5/2) - 3^(1/2)
    // b: 3^(11/32) - 3^(9/32) + 3^(4/4) - 3^(3/4) + 3^(2.5/8) - 3^(2/8)
    // c: 3^(4/16) - 3^(2/16) + 3^(3/4) - 3^(2/4) + 3^(4/4) - 3^(3.5/4)
    assert_epvm(
        &[
            NodeSnapshot {
                reserved_cpus: 1.0,
                reserved_memory: GIB,
                used_memory: GIB,
                ..node("a", 2.0, 4 * GIB, 1)
            },
            NodeSnapshot {
                reserved_cpus: 2.0,
                reserved_memory: 8 * GIB,
                used_memory: 9 * GIB,
                ..node("b", 8.0, 32 * GIB, 3)
            },
            NodeSnapshot {
                reserved_cpus: 3.5,
                reserved_memory: 2 * GIB,
                ..node("c", 4.0, 16 * GIB, 2)
            },
        ],
        &Demand::new(0.5, 2 * GIB),
        &[
            ("a", 1.9268660880045703),
            ("b", 0.9108412996634814),
            ("c", 1.1012709432833085),
        ],
        "b",
    );
}

#[test]
fn epvm_breaks_ties_by_the_lowest_node_id_whatever_the_slice_order() {
    let nodes = [
        node("w3", 4.0, 8 * GIB, 0),
        node("w1", 4.0, 8 * GIB, 0),
        node("w2", 4.0, 8 * GIB, 0),
    ];
    // n = 3, max_jobs = 1: each costs 3^(1/8) - 1 + 3^1 - 3^0 + 3^(1/4) - 1.
    let cost = 2.4632767033923693;
    assert_epvm(
        &nodes,
        &Demand::new(1.0, GIB),
        &[("w3", cost), ("w1", cost), ("w2", cost)],
        "w1",
    );
}

#[test]
fn epvm_spreads_identical_tasks_over_identical_nodes_as_it_places_them() {
    let mut nodes: Vec<NodeSnapshot> = ["w1", "w2", "w3"]
        .iter()
        .map(|id| node(id, 4.0, 8 * GIB, 0))
        .collect();
    let demand = Demand::new(1.0, GIB);
    let mut epvm = Epvm::new();
    let mut order = Vec::new();
    for _ in 0..6 {
        let picked = match epvm.pick(&nodes, &demand) {
            Ok(index) => index,
            Err(no_fit) => panic!("expected a pick: {no_fit}"),
        };
        nodes[picked].place(&demand);
        order.push(nodes[picked].id.clone());
    }
    assert_eq!(order, ["w1", "w2", "w3", "w1", "w2", "w3"]);
}
