//! Placements per second for each policy at 10, 1,000 and 10,000 nodes.
//!
//! Each iteration is one placement as the manager will make it: `pick` over the current snapshots,
//! then `place` on the chosen one. To keep the cluster in a steady state (neither empty nor full)
//! the oldest live placement is released in the same iteration, as if that task had ended, so every
//! iteration sees a cluster with about 40 % of its cores reserved. Nodes come in four sizes drawn at
//! random, and every node has some memory in use outside its reservations; every demand declares
//! CPU and memory, so all three E-PVM terms are computed for every feasible node.
//!
//! The baseline, `epvm-naive-powf`, is the textbook E-PVM in `support/naive.rs`: a vector of
//! candidates, then one `powf` per term per state per node. `epvm-cold` is the real E-PVM with its
//! caches thrown away before every placement, the cost of a pick right after start-up or after every
//! node's usage changed at once.
//!
//! Run with `cargo bench -p poseidon-schedulers --bench placement`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use poseidon_schedulers::{by_name, Demand, Epvm, NodeSnapshot, Scheduler};

#[path = "support/naive.rs"]
mod naive;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// The share of each node's cores reserved before measuring, and kept roughly so throughout.
const LOAD: f64 = 0.4;

/// A small deterministic generator, so every run measures the same cluster.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn cluster(size: usize) -> Vec<NodeSnapshot> {
    let shapes = [
        (4.0, 8 * GIB),
        (8.0, 16 * GIB),
        (16.0, 32 * GIB),
        (32.0, 64 * GIB),
    ];
    let mut rng = Lcg(size as u64);
    (0..size)
        .map(|i| {
            let (cpus, memory) = shapes[(rng.next() % 4) as usize];
            let mut node = NodeSnapshot::new(format!("node-{i:05}"), cpus, memory);
            // Memory used outside the reservations, up to a fifth of the node.
            node.used_memory = rng.next() % (memory / 5);
            node
        })
        .collect()
}

fn demands() -> Vec<Demand> {
    vec![
        Demand::new(0.5, 512 * MIB),
        Demand::new(1.0, GIB),
        Demand::new(0.25, 256 * MIB),
        Demand::new(2.0, 2 * GIB),
    ]
}

/// A cluster in steady state: snapshots, and the live placements oldest first.
struct Steady {
    nodes: Vec<NodeSnapshot>,
    live: VecDeque<(usize, usize)>,
    demands: Vec<Demand>,
    next: usize,
}

impl Steady {
    /// Fills every node to about [`LOAD`] of its cores, round by round so that the oldest tasks,
    /// released first, are spread over the cluster. The fill is direct rather than through a policy,
    /// so setting up 10,000 nodes takes no longer for the slow baseline than for the others.
    fn new(size: usize) -> Self {
        let mut nodes = cluster(size);
        let demands = demands();
        let mut live = VecDeque::new();
        let mut next = 0;
        loop {
            let mut placed = false;
            for (index, node) in nodes.iter_mut().enumerate() {
                let which = next % demands.len();
                let demand = &demands[which];
                if node.reserved_cpus + demand.cpus <= node.cpus * LOAD
                    && node.reserved_memory + demand.memory <= node.memory
                {
                    node.place(demand);
                    live.push_back((index, which));
                    next += 1;
                    placed = true;
                }
            }
            if !placed {
                break;
            }
        }
        live.reserve(1);
        Steady {
            nodes,
            live,
            demands,
            next,
        }
    }

    fn place(&mut self, pick: &mut impl FnMut(&[NodeSnapshot], &Demand) -> usize) {
        let which = self.next % self.demands.len();
        self.next += 1;
        let node = pick(&self.nodes, &self.demands[which]);
        self.nodes[node].place(&self.demands[which]);
        self.live.push_back((node, which));
    }

    /// One measured placement: place a new task, end the oldest.
    fn step(&mut self, pick: &mut impl FnMut(&[NodeSnapshot], &Demand) -> usize) {
        self.place(pick);
        if let Some((node, which)) = self.live.pop_front() {
            self.nodes[node].release(&self.demands[which]);
        }
    }
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group.throughput(Throughput::Elements(1));
    group.sample_size(50);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(4));
    for size in [10, 1_000, 10_000] {
        for name in ["round-robin", "epvm", "binpack", "spread"] {
            let Ok(mut scheduler) = by_name(name) else {
                panic!("{name} is a registered scheduler");
            };
            let mut pick =
                |nodes: &[NodeSnapshot], demand: &Demand| match scheduler.pick(nodes, demand) {
                    Ok(index) => index,
                    Err(no_fit) => panic!("the steady cluster always has room: {no_fit}"),
                };
            let mut steady = Steady::new(size);
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| steady.step(&mut pick));
            });
            black_box(&steady.nodes);
        }
        let mut pick =
            |nodes: &[NodeSnapshot], demand: &Demand| match Epvm::new().pick(nodes, demand) {
                Ok(index) => index,
                Err(no_fit) => panic!("the steady cluster always has room: {no_fit}"),
            };
        let mut steady = Steady::new(size);
        group.bench_function(BenchmarkId::new("epvm-cold", size), |b| {
            b.iter(|| steady.step(&mut pick));
        });
        let mut pick = |nodes: &[NodeSnapshot], demand: &Demand| match naive::pick(nodes, demand) {
            Some(index) => index,
            None => panic!("the steady cluster always has room"),
        };
        let mut steady = Steady::new(size);
        group.bench_function(BenchmarkId::new("epvm-naive-powf", size), |b| {
            b.iter(|| steady.step(&mut pick));
        });
    }
    group.finish();
}

// The macro defines an undocumented public function; its name says all there is to say.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::placement);
}
criterion_main!(group::benches);
