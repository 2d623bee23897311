//! Properties over random clusters and demands: capacity is never exceeded, picks are
//! deterministic and agree with select then score, and E-PVM's fast pick matches the textbook
//! formula.

mod support;

#[path = "../benches/support/naive.rs"]
mod naive;

use poseidon_schedulers::feasibility::CPU_EPSILON;
use poseidon_schedulers::scheduler::best_of;
use poseidon_schedulers::{by_name, Demand, NodeSnapshot, Scheduler, NAMES};
use proptest::prelude::*;
use support::histories::with_ids;
use support::{close, GIB, MIB};

/// A node with a random size and load, sometimes down, sometimes with no cores or memory at all,
/// sometimes over-reserved or using more memory than it has.
fn arb_node() -> impl Strategy<Value = NodeSnapshot> {
    (
        (
            prop::bool::weighted(0.9),
            prop_oneof![Just(0.0), 0.5f64..64.0],
            prop_oneof![Just(0u64), MIB..256 * GIB],
        ),
        (0.0f64..1.2, 0.0f64..1.2, 0.0f64..1.5),
        (0u32..40, prop::collection::btree_set(8000u16..8006, 0..3)),
    )
        .prop_map(
            |((up, cpus, memory), (cpu_load, memory_load, usage), (tasks, ports))| NodeSnapshot {
                id: String::new(),
                up,
                cpus,
                memory,
                reserved_cpus: cpus * cpu_load,
                reserved_memory: (memory as f64 * memory_load) as u64,
                used_memory: (memory as f64 * usage) as u64,
                tasks,
                ports_in_use: ports,
                ..NodeSnapshot::new("", 0.0, 0)
            },
        )
}

/// A cluster of up to 12 nodes with distinct ids, in a random slice order.
fn arb_cluster() -> impl Strategy<Value = Vec<NodeSnapshot>> {
    with_ids(prop::collection::vec(arb_node(), 0..12))
}

fn arb_demand() -> impl Strategy<Value = Demand> {
    (
        prop_oneof![Just(0.0), 0.01f64..16.0],
        prop_oneof![Just(0u64), MIB..32 * GIB],
        prop::collection::vec(prop_oneof![Just(0u16), 8000u16..8006], 0..2),
    )
        .prop_map(|(cpus, memory, host_ports)| Demand {
            cpus,
            memory,
            host_ports,
            ..Demand::default()
        })
}

fn scheduler(name: &str) -> Box<dyn Scheduler> {
    match by_name(name) {
        Ok(scheduler) => scheduler,
        Err(error) => panic!("{error}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_policy_ever_places_a_task_beyond_a_nodes_capacity(
        mut nodes in arb_cluster(),
        demands in prop::collection::vec(arb_demand(), 1..30),
        policy in 0..NAMES.len(),
    ) {
        let mut scheduler = scheduler(NAMES[policy]);
        for demand in &demands {
            let before = nodes.clone();
            match scheduler.pick(&nodes, demand) {
                Ok(index) => {
                    let node = &nodes[index];
                    prop_assert!(node.up, "placed on a node that is down");
                    if demand.cpus > 0.0 {
                        prop_assert!(node.reserved_cpus + demand.cpus <= node.cpus + CPU_EPSILON);
                    }
                    if demand.memory > 0 {
                        prop_assert!(node.reserved_memory.checked_add(demand.memory)
                            .is_some_and(|total| total <= node.memory));
                    }
                    for port in demand.host_ports.iter().filter(|&&port| port != 0) {
                        prop_assert!(!node.ports_in_use.contains(port), "port {port} taken");
                    }
                    nodes[index].place(demand);
                }
                Err(no_fit) => {
                    let (candidates, rejected) = scheduler.select(&nodes, demand);
                    prop_assert!(candidates.is_empty(), "a node fitted but none was picked");
                    prop_assert_eq!(no_fit.rejections.len(), rejected.len());
                }
            }
            // Picking never changes the snapshots; only `place` does.
            prop_assert_eq!(before.len(), nodes.len());
        }
    }

    #[test]
    fn every_pick_is_the_best_of_select_then_score(
        nodes in arb_cluster(),
        demand in arb_demand(),
        policy in 0..NAMES.len(),
    ) {
        let mut scheduler = scheduler(NAMES[policy]);
        let (candidates, _) = scheduler.select(&nodes, &demand);
        let scores = scheduler.score(&nodes, &candidates, &demand);
        let best = best_of(&nodes, &scores, scheduler.score_order());
        prop_assert_eq!(scheduler.pick(&nodes, &demand).ok(), best);
    }

    #[test]
    fn the_same_cluster_in_any_order_gets_the_same_pick(
        nodes in arb_cluster(),
        demands in prop::collection::vec(arb_demand(), 1..10),
        policy in 0..NAMES.len(),
    ) {
        // Two schedulers of the same policy, one seeing the nodes reversed, place the same tasks:
        // they must choose the same node ids throughout.
        let mut forward = scheduler(NAMES[policy]);
        let mut backward = scheduler(NAMES[policy]);
        let mut a = nodes.clone();
        let mut b: Vec<NodeSnapshot> = nodes.iter().rev().cloned().collect();
        for demand in &demands {
            let picked_a = forward.pick(&a, demand).ok();
            let picked_b = backward.pick(&b, demand).ok();
            prop_assert_eq!(picked_a.map(|i| a[i].id.clone()), picked_b.map(|i| b[i].id.clone()));
            if let (Some(i), Some(j)) = (picked_a, picked_b) {
                a[i].place(demand);
                b[j].place(demand);
            }
        }
        // And a fresh scheduler given the same input twice answers the same twice.
        prop_assert_eq!(
            scheduler(NAMES[policy]).pick(&nodes, &demands[0]),
            scheduler(NAMES[policy]).pick(&nodes, &demands[0])
        );
    }

    #[test]
    fn epvm_costs_match_the_textbook_powf_formula(nodes in arb_cluster(), demand in arb_demand()) {
        let mut epvm = scheduler("epvm");
        let (candidates, _) = epvm.select(&nodes, &demand);
        let fast = epvm.score(&nodes, &candidates, &demand);
        let slow = naive::marginal_costs(&nodes, &demand);
        prop_assert_eq!(fast.len(), slow.len());
        for (&(i, fast), &(j, slow)) in fast.iter().zip(&slow) {
            prop_assert_eq!(i, j);
            prop_assert!(close(fast, slow), "{}: {fast} vs {slow}", nodes[i].id);
        }
        // The fast pick's textbook cost is the textbook minimum (to rounding).
        if let (Ok(picked), Some(reference)) = (epvm.pick(&nodes, &demand), naive::pick(&nodes, &demand)) {
            let cost_of = |index: usize| slow.iter().find(|&&(i, _)| i == index).map(|&(_, cost)| cost);
            let (Some(picked_cost), Some(minimum)) = (cost_of(picked), cost_of(reference)) else {
                return Err(TestCaseError::fail("both picks are candidates"));
            };
            prop_assert!(close(picked_cost, minimum), "{picked_cost} vs {minimum}");
        }
    }

    #[test]
    fn epvm_with_warm_caches_picks_as_a_fresh_scheduler_does(
        mut nodes in arb_cluster(),
        steps in prop::collection::vec((arb_demand(), 0usize..12, 0u8..4), 1..40),
    ) {
        // One scheduler keeps its caches through placements, failures and shrinking clusters; at
        // every step it must agree with a scheduler that has never seen a cluster.
        let mut warm = scheduler("epvm");
        for (demand, victim, change) in &steps {
            if !nodes.is_empty() {
                let victim = victim % nodes.len();
                match change {
                    0 => nodes[victim].up = !nodes[victim].up,
                    1 => nodes[victim].used_memory = nodes[victim].used_memory / 2 + MIB,
                    2 if nodes.len() > 1 => {
                        nodes.remove(victim);
                    }
                    _ => {}
                }
            }
            let picked = warm.pick(&nodes, demand);
            prop_assert_eq!(&picked, &scheduler("epvm").pick(&nodes, demand));
            if let Ok(index) = picked {
                nodes[index].place(demand);
            }
        }
    }
}
