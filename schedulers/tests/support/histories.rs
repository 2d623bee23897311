//! Random clusters and histories of changes, for the property tests that check an indexed pick
//! against the exhaustive scan (`epvm_exact.rs`, `fit_exact.rs`).

use poseidon_schedulers::{Demand, Eligibility, NodeSnapshot};
use proptest::prelude::*;

use super::{GIB, MIB};

/// A change to the cluster before a pick; indices are taken modulo the cluster's length.
#[derive(Debug, Clone)]
pub enum Change {
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

pub fn arb_change(demand: BoxedStrategy<Demand>) -> impl Strategy<Value = Change> {
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
pub fn apply(nodes: &mut Vec<NodeSnapshot>, change: &Change, fresh_id: &mut u32) -> Vec<usize> {
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
pub fn arb_heterogeneous_node() -> impl Strategy<Value = NodeSnapshot> {
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

pub fn arb_heterogeneous_demand() -> BoxedStrategy<Demand> {
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
pub fn with_ids(
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
pub fn arb_homogeneous_cluster(max: usize) -> impl Strategy<Value = Vec<NodeSnapshot>> {
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

pub fn arb_homogeneous_demand() -> BoxedStrategy<Demand> {
    prop_oneof![
        Just(Demand::new(1.0, GIB)),
        Just(Demand::new(0.5, 0)),
        Just(Demand::new(0.0, 512 * MIB)),
        Just(Demand::new(0.0, 0)),
        Just(Demand::new(1.0, GIB).with_ports([8000])),
    ]
    .boxed()
}

pub fn steps(
    demand: fn() -> BoxedStrategy<Demand>,
    max: usize,
) -> impl Strategy<Value = Vec<(Change, Demand)>> {
    prop::collection::vec((arb_change(demand()), demand()), 1..max)
}
