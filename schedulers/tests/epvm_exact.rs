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
use poseidon_schedulers::{Demand, Eligibility, Epvm, NodeSnapshot, Scheduler};
use proptest::prelude::*;
use support::{GIB, MIB};

/// A change to the cluster before a pick; indices are taken modulo the cluster's length.
#[derive(Debug, Clone)]
enum Change {
    Nothing,
    /// Undo one placement of this demand on the node.
    Release(usize, Demand),
    ToggleUp(usize),
    UsedMemory(usize, u64),
    SwapIds(usize, usize),
    Remove(usize),
    /// A copy of the node under a new id, appended.
    Duplicate(usize),
    Tasks(usize, u32),
}

fn arb_change(demand: BoxedStrategy<Demand>) -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => Just(Change::Nothing),
        3 => (any::<usize>(), demand).prop_map(|(i, d)| Change::Release(i, d)),
        1 => any::<usize>().prop_map(Change::ToggleUp),
        1 => (any::<usize>(), 0u64..32 * GIB).prop_map(|(i, m)| Change::UsedMemory(i, m)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Change::SwapIds(a, b)),
        1 => any::<usize>().prop_map(Change::Remove),
        1 => any::<usize>().prop_map(Change::Duplicate),
        1 => (any::<usize>(), 0u32..20).prop_map(|(i, t)| Change::Tasks(i, t)),
    ]
}

/// Applies `change`, returning the indices whose snapshots changed (the slice's length may too).
fn apply(nodes: &mut Vec<NodeSnapshot>, change: &Change, fresh_id: &mut u32) -> Vec<usize> {
    let len = nodes.len();
    if len == 0 {
        return Vec::new();
    }
    match change {
        Change::Nothing => Vec::new(),
        Change::Release(i, demand) => {
            nodes[i % len].release(demand);
            vec![i % len]
        }
        Change::ToggleUp(i) => {
            nodes[i % len].up = !nodes[i % len].up;
            vec![i % len]
        }
        Change::UsedMemory(i, memory) => {
            nodes[i % len].used_memory = *memory;
            vec![i % len]
        }
        Change::SwapIds(a, b) => {
            let (a, b) = (a % len, b % len);
            let id = std::mem::take(&mut nodes[a].id);
            nodes[a].id = std::mem::replace(&mut nodes[b].id, id);
            vec![a, b]
        }
        Change::Remove(i) => {
            if len > 1 {
                nodes.remove(i % len);
            }
            Vec::new()
        }
        Change::Duplicate(i) => {
            let mut copy = nodes[i % len].clone();
            *fresh_id += 1;
            copy.id = format!("x{fresh_id:03}");
            nodes.push(copy);
            Vec::new()
        }
        Change::Tasks(i, tasks) => {
            nodes[i % len].tasks = *tasks;
            vec![i % len]
        }
    }
}

/// A node of its own random shape and load, sometimes down, without cores or memory, over-reserved
/// or using more memory than it has.
fn arb_heterogeneous_node() -> impl Strategy<Value = NodeSnapshot> {
    (
        (
            prop::bool::weighted(0.9),
            prop_oneof![1 => Just(0.0), 9 => 0.5f64..64.0],
            prop_oneof![1 => Just(0u64), 9 => MIB..256 * GIB],
        ),
        (0.0f64..1.2, 0.0f64..1.2, 0.0f64..1.5),
        (0u32..40, prop::collection::btree_set(8000u16..8004, 0..3)),
        // Ineligible and draining nodes are infeasible whatever their cost: the index must still
        // check each candidate it reaches.
        prop_oneof![
            8 => Just(Eligibility::Eligible),
            1 => Just(Eligibility::Ineligible),
            1 => Just(Eligibility::Draining),
        ],
    )
        .prop_map(
            |((up, cpus, memory), (cpu_load, memory_load, usage), (tasks, ports), eligibility)| {
                NodeSnapshot {
                    id: String::new(),
                    up,
                    cpus,
                    memory,
                    reserved_cpus: cpus * cpu_load,
                    reserved_memory: (memory as f64 * memory_load) as u64,
                    used_memory: (memory as f64 * usage) as u64,
                    tasks,
                    ports_in_use: ports,
                    eligibility,
                    ..NodeSnapshot::new(String::new(), 0.0, 0)
                }
            },
        )
}

fn arb_heterogeneous_demand() -> BoxedStrategy<Demand> {
    (
        prop_oneof![Just(0.0), 0.01f64..16.0],
        prop_oneof![Just(0u64), MIB..32 * GIB],
        prop::collection::vec(prop_oneof![3 => Just(0u16), 1 => 8000u16..8004], 0..2),
    )
        .prop_map(|(cpus, memory, host_ports)| Demand {
            cpus,
            memory,
            host_ports,
            ..Demand::default()
        })
        .boxed()
}

/// Gives the nodes ids `w00`, `w01`, ... in a random order, so slice order and id order differ.
fn with_ids(
    nodes: impl Strategy<Value = Vec<NodeSnapshot>>,
) -> impl Strategy<Value = Vec<NodeSnapshot>> {
    nodes
        .prop_flat_map(|nodes| {
            let len = nodes.len();
            (
                Just(nodes),
                Just((0..len).collect::<Vec<_>>()).prop_shuffle(),
            )
        })
        .prop_map(|(mut nodes, order)| {
            for (node, position) in nodes.iter_mut().zip(order) {
                node.id = format!("w{position:02}");
            }
            nodes
        })
}

/// One machine shape for every node; loads, usage and task counts from small sets, so many
/// nodes have identical inputs; ids from a small pool, so some repeat.
fn arb_homogeneous_cluster(max: usize) -> impl Strategy<Value = Vec<NodeSnapshot>> {
    (
        prop_oneof![
            Just((4.0, 8 * GIB)),
            Just((16.0, 64 * GIB)),
            Just((2.5, 3 * GIB))
        ],
        prop::collection::vec(
            (
                prop::bool::weighted(0.95),
                0usize..3,
                prop_oneof![Just(0u64), Just(GIB)],
                0u32..4,
                prop::bool::weighted(0.1),
                0u32..(max as u32 + 4),
            ),
            1..max,
        ),
    )
        .prop_map(|((cpus, memory), nodes)| {
            nodes
                .into_iter()
                .map(|(up, load, used, tasks, port, id)| NodeSnapshot {
                    id: format!("h{id:03}"),
                    up,
                    cpus,
                    memory,
                    reserved_cpus: [0.0, 1.0, 2.0][load],
                    reserved_memory: [0, GIB, 2 * GIB][load],
                    used_memory: used,
                    tasks: tasks + load as u32,
                    ports_in_use: if port {
                        [8000].into()
                    } else {
                        Default::default()
                    },
                    ..NodeSnapshot::new(String::new(), 0.0, 0)
                })
                .collect()
        })
}

fn arb_homogeneous_demand() -> BoxedStrategy<Demand> {
    prop_oneof![
        Just(Demand::new(1.0, GIB)),
        Just(Demand::new(0.5, 0)),
        Just(Demand::new(0.0, 512 * MIB)),
        Just(Demand::new(0.0, 0)),
        Just(Demand::new(1.0, GIB).with_ports([8000])),
    ]
    .boxed()
}

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

fn steps(
    demand: fn() -> BoxedStrategy<Demand>,
    max: usize,
) -> impl Strategy<Value = Vec<(Change, Demand)>> {
    prop::collection::vec((arb_change(demand()), demand()), 1..max)
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
