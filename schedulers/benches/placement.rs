//! Placements per second for each policy at 10, 1,000, 10,000 and 100,000 nodes.
//!
//! Each iteration is one placement as the manager will make it: `pick` over the current snapshots,
//! then `place` on the chosen one. To keep the cluster in a steady state (neither empty nor full)
//! the oldest live placement is released in the same iteration, as if that task had ended, so every
//! iteration sees a cluster with about 40 % of its cores reserved. Nodes come in four sizes drawn at
//! random, and every node has some memory in use outside its reservations; every demand declares
//! CPU and memory, so all three E-PVM terms are computed for every feasible node.
//!
//! E-PVM is measured on two clusters (see [`Kind`]), each in four forms side by side: `epvm`, the
//! indexed pick through the `Scheduler` trait (which reads every snapshot to learn what changed);
//! `epvm-changed`, the same index told which snapshots changed (`Epvm::pick_changed`); `epvm-before`,
//! the code the index replaced (`support/epvm_before.rs`, every feasible node scored with cached
//! powers); and the baseline, `epvm-naive-powf`, the textbook E-PVM in `support/naive.rs`: a vector
//! of candidates, then one `powf` per term per state per node.
//!
//! BinPack and Spread are measured on both clusters in three forms: `binpack` (or `spread`), the
//! indexed pick through the trait; `binpack-changed`, the index told what changed; and
//! `binpack-before`, the one-pass scan the index replaced (`support/fit_before.rs`).
//!
//! Run with `cargo bench -p poseidon-schedulers --bench placement`; append `-- epvm` (a criterion
//! filter) for the E-PVM figures only, or `-- 'binpack|spread'` for the fit policies'.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use poseidon_schedulers::{by_name, Demand, Epvm, NodeSnapshot, Scheduler};

#[path = "support/epvm_before.rs"]
mod epvm_before;
#[path = "support/fit_before.rs"]
mod fit_before;
#[path = "support/naive.rs"]
mod naive;

use epvm_before::EpvmBefore;
use fit_before::Policy;

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

/// The two clusters every E-PVM figure is measured on.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Four machine shapes drawn at random, each node with its own memory in use outside its
    /// reservations: no two nodes alike.
    Heterogeneous,
    /// One machine shape (16 cores, 32 GiB) and no memory in use beyond the reservations: nodes
    /// differ only by the tasks placed on them.
    Homogeneous,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Heterogeneous => "heterogeneous",
            Kind::Homogeneous => "homogeneous",
        }
    }
}

fn cluster(size: usize, kind: Kind) -> Vec<NodeSnapshot> {
    let shapes = [
        (4.0, 8 * GIB),
        (8.0, 16 * GIB),
        (16.0, 32 * GIB),
        (32.0, 64 * GIB),
    ];
    let mut rng = Lcg(size as u64);
    (0..size)
        .map(|i| match kind {
            Kind::Heterogeneous => {
                let (cpus, memory) = shapes[(rng.next() % 4) as usize];
                let mut node = NodeSnapshot::new(format!("node-{i:06}"), cpus, memory);
                // Memory used outside the reservations, up to a fifth of the node.
                node.used_memory = rng.next() % (memory / 5);
                node
            }
            Kind::Homogeneous => NodeSnapshot::new(format!("node-{i:06}"), 16.0, 32 * GIB),
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
    /// The indices of the snapshots changed since the last pick, for `Epvm::pick_changed`.
    changed: Vec<usize>,
}

impl Steady {
    /// Fills every node to about [`LOAD`] of its cores, round by round so that the oldest tasks,
    /// released first, are spread over the cluster. The fill is direct rather than through a policy,
    /// so setting up 10,000 nodes takes no longer for the slow baseline than for the others.
    fn new(size: usize, kind: Kind) -> Self {
        let mut nodes = cluster(size, kind);
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
            changed: Vec::new(),
        }
    }

    /// One measured placement: place a new task, end the oldest. `pick` is also told which
    /// snapshots changed since its last call.
    fn step(&mut self, pick: &mut impl FnMut(&[NodeSnapshot], &Demand, &[usize]) -> usize) {
        let which = self.next % self.demands.len();
        self.next += 1;
        let node = pick(&self.nodes, &self.demands[which], &self.changed);
        self.nodes[node].place(&self.demands[which]);
        self.live.push_back((node, which));
        self.changed.clear();
        self.changed.push(node);
        if let Some((node, which)) = self.live.pop_front() {
            self.nodes[node].release(&self.demands[which]);
            self.changed.push(node);
        }
    }
}

/// Panics with the reason when a steady cluster has no room, which would be a broken benchmark.
fn fits<E: std::fmt::Display>(picked: Result<usize, E>) -> usize {
    match picked {
        Ok(index) => index,
        Err(no_fit) => panic!("the steady cluster always has room: {no_fit}"),
    }
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for size in [10, 1_000, 10_000, 100_000] {
        for kind in [Kind::Heterogeneous, Kind::Homogeneous] {
            let label = |name: &str| BenchmarkId::new(format!("{name}/{}", kind.name()), size);
            // Round-robin only on the heterogeneous cluster, to keep the run short.
            let others: &[&str] = match kind {
                Kind::Heterogeneous => &["round-robin"],
                Kind::Homogeneous => &[],
            };
            for &name in others {
                let Ok(mut scheduler) = by_name(name) else {
                    panic!("{name} is a registered scheduler");
                };
                let mut steady = Steady::new(size, kind);
                group.bench_function(label(name), |b| {
                    b.iter(|| {
                        steady.step(&mut |nodes, demand, _| fits(scheduler.pick(nodes, demand)))
                    });
                });
                black_box(&steady.nodes);
            }
            for (name, policy) in [("binpack", Policy::BinPack), ("spread", Policy::Spread)] {
                let mut scheduler =
                    by_name(name).unwrap_or_else(|_| panic!("{name} is registered"));
                let mut steady = Steady::new(size, kind);
                group.bench_function(label(name), |b| {
                    b.iter(|| {
                        steady.step(&mut |nodes, demand, _| fits(scheduler.pick(nodes, demand)))
                    });
                });
                let mut scheduler =
                    by_name(name).unwrap_or_else(|_| panic!("{name} is registered"));
                let mut steady = Steady::new(size, kind);
                group.bench_function(label(&format!("{name}-changed")), |b| {
                    b.iter(|| {
                        steady.step(&mut |nodes, demand, changed| {
                            fits(scheduler.pick_changed(nodes, demand, changed))
                        })
                    });
                });
                let mut steady = Steady::new(size, kind);
                group.bench_function(label(&format!("{name}-before")), |b| {
                    b.iter(|| {
                        steady.step(&mut |nodes, demand, _| {
                            fits(fit_before::pick(policy, nodes, demand))
                        })
                    });
                });
            }
            let mut epvm = Epvm::new();
            let mut steady = Steady::new(size, kind);
            group.bench_function(label("epvm"), |b| {
                b.iter(|| steady.step(&mut |nodes, demand, _| fits(epvm.pick(nodes, demand))));
            });
            let mut epvm = Epvm::new();
            let mut steady = Steady::new(size, kind);
            group.bench_function(label("epvm-changed"), |b| {
                b.iter(|| {
                    steady.step(&mut |nodes, demand, changed| {
                        fits(epvm.pick_changed(nodes, demand, changed))
                    })
                });
            });
            let mut before = EpvmBefore::new();
            let mut steady = Steady::new(size, kind);
            group.bench_function(label("epvm-before"), |b| {
                b.iter(|| steady.step(&mut |nodes, demand, _| fits(before.pick(nodes, demand))));
            });
            let mut steady = Steady::new(size, kind);
            group.bench_function(label("epvm-naive-powf"), |b| {
                b.iter(|| {
                    steady.step(&mut |nodes, demand, _| {
                        fits(naive::pick(nodes, demand).ok_or("no node fits"))
                    })
                });
            });
        }
    }
    group.finish();
}

// The macro defines an undocumented public function; its name says all there is to say.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::placement);
}
criterion_main!(group::benches);
