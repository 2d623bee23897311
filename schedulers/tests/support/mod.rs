//! Builders shared by the integration tests, so each case reads as a table row.

#![allow(dead_code)]

use poseidon_schedulers::NodeSnapshot;

pub mod histories;

/// One gibibyte, the unit most test clusters are written in.
pub const GIB: u64 = 1 << 30;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// An up node with this capacity and task count and nothing reserved; tests set the other fields
/// with struct update syntax, `NodeSnapshot { reserved_memory: 6 * GIB, ..node("w1", 4.0, 8 * GIB, 1) }`.
pub fn node(id: &str, cpus: f64, memory: u64, tasks: u32) -> NodeSnapshot {
    NodeSnapshot {
        tasks,
        ..NodeSnapshot::new(id, cpus, memory)
    }
}

/// The id of the node at `index`, for messages that name nodes rather than positions.
pub fn id(nodes: &[NodeSnapshot], index: usize) -> &str {
    &nodes[index].id
}

/// Whether `actual` is within `1e-9` of `expected`, relative to `expected`'s size.
pub fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-300)
}
