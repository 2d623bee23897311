//! A deliberately naive E-PVM, for the benchmark's baseline and the tests' cross-check.
//!
//! It reads like the paper: select the feasible nodes into a vector, then one `powf` per term and
//! per state for each of them, then the smallest cost. It computes the same marginal costs as
//! `Epvm` (to rounding), so the benchmark shows what the factored form buys, and the tests can check
//! over random clusters that the fast `pick` chooses a node whose naive cost is the naive minimum.

#![allow(dead_code)]

use poseidon_schedulers::{feasibility, Demand, NodeSnapshot};

/// `MC(m)` for every feasible node, in slice order, computed with `powf`.
pub fn marginal_costs(nodes: &[NodeSnapshot], demand: &Demand) -> Vec<(usize, f64)> {
    let (candidates, _) = feasibility::select(nodes, demand);
    let up = nodes.iter().filter(|node| node.up).count();
    let n = up.max(2) as f64;
    let mut largest = nodes
        .iter()
        .filter(|node| node.up)
        .map(|node| u64::from(node.tasks))
        .max()
        .unwrap_or(0);
    for &c in &candidates {
        largest = largest.max(u64::from(nodes[c].tasks) + 1);
    }
    let max_jobs = largest.next_power_of_two() as f64;
    candidates
        .iter()
        .map(|&c| {
            let node = &nodes[c];
            let mut cost = 0.0;
            if demand.memory > 0 {
                let capacity = node.memory as f64;
                let before =
                    (node.reserved_memory.max(node.used_memory) as f64 / capacity).min(1.0);
                let after = before + demand.memory as f64 / capacity;
                cost += n.powf(after) - n.powf(before);
            }
            let tasks = f64::from(node.tasks);
            cost += n.powf((tasks + 1.0) / max_jobs) - n.powf(tasks / max_jobs);
            if demand.cpus > 0.0 {
                let before = node.reserved_cpus / node.cpus;
                let after = (node.reserved_cpus + demand.cpus) / node.cpus;
                cost += n.powf(after) - n.powf(before);
            }
            (c, cost)
        })
        .collect()
}

/// The feasible node with the least naive marginal cost, ties to the lowest id.
pub fn pick(nodes: &[NodeSnapshot], demand: &Demand) -> Option<usize> {
    marginal_costs(nodes, demand)
        .into_iter()
        .min_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then_with(|| nodes[a.0].id.cmp(&nodes[b.0].id))
        })
        .map(|(index, _)| index)
}
