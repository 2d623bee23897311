//! Feasibility's reasons, the "no node can take this task" message and the registry's errors.

mod support;

use poseidon_schedulers::{by_name, feasible, Demand, NoFit, NodeSnapshot, Rejection, NAMES};
use support::{node, GIB, MIB};

#[test]
fn feasibility_keeps_the_first_reason_each_node_fails() {
    let base = || node("w1", 4.0, GIB, 0);
    let cases: Vec<(&str, NodeSnapshot, Demand, Result<(), Rejection>)> = vec![
        (
            "an idle node takes a small task",
            base(),
            Demand::new(1.0, 100 * MIB),
            Ok(()),
        ),
        (
            "a node that is down is down whatever else fails",
            NodeSnapshot {
                up: false,
                ..base()
            },
            Demand::new(100.0, 100 * GIB),
            Err(Rejection::Down),
        ),
        (
            "cores already reserved leave too few",
            NodeSnapshot {
                reserved_cpus: 2.5,
                ..base()
            },
            Demand::new(2.0, 0),
            Err(Rejection::InsufficientCpu {
                requested: 2.0,
                free: 1.5,
            }),
        ),
        (
            "a reservation that fills the cores exactly fits despite float sums",
            NodeSnapshot {
                reserved_cpus: 0.1 + 0.2,
                cpus: 1.0,
                ..base()
            },
            Demand::new(0.7, 0),
            Ok(()),
        ),
        (
            "a node with no cores takes no task that declares cores, however few",
            NodeSnapshot {
                cpus: 0.0,
                ..base()
            },
            Demand::new(1e-12, 0),
            Err(Rejection::InsufficientCpu {
                requested: 1e-12,
                free: 0.0,
            }),
        ),
        (
            "cores are not checked for a task that declares none",
            NodeSnapshot {
                reserved_cpus: 9.0,
                ..base()
            },
            Demand::new(0.0, 0),
            Ok(()),
        ),
        (
            "cpu is checked before memory",
            NodeSnapshot {
                reserved_cpus: 4.0,
                reserved_memory: GIB,
                ..base()
            },
            Demand::new(1.0, MIB),
            Err(Rejection::InsufficientCpu {
                requested: 1.0,
                free: 0.0,
            }),
        ),
        (
            "memory already reserved leaves too little",
            NodeSnapshot {
                reserved_memory: 924 * MIB,
                ..base()
            },
            Demand::new(0.0, 512 * MIB),
            Err(Rejection::InsufficientMemory {
                requested: 512 * MIB,
                free: 100 * MIB,
            }),
        ),
        (
            "observed usage does not turn a task down, reservations do",
            NodeSnapshot {
                used_memory: 2 * GIB,
                ..base()
            },
            Demand::new(0.0, GIB),
            Ok(()),
        ),
        (
            "a node with no memory takes no task that declares memory",
            NodeSnapshot {
                memory: 0,
                ..base()
            },
            Demand::new(0.0, 1),
            Err(Rejection::InsufficientMemory {
                requested: 1,
                free: 0,
            }),
        ),
        (
            "a reservation that would overflow does not fit",
            NodeSnapshot {
                memory: u64::MAX,
                reserved_memory: u64::MAX - 1,
                ..base()
            },
            Demand::new(0.0, 2),
            Err(Rejection::InsufficientMemory {
                requested: 2,
                free: 1,
            }),
        ),
        (
            "a host port already taken",
            NodeSnapshot {
                ports_in_use: [80, 8080].into(),
                ..base()
            },
            Demand::new(0.0, 0).with_ports([443, 8080]),
            Err(Rejection::PortInUse(8080)),
        ),
        (
            "port 0 asks for any port and is never taken",
            NodeSnapshot {
                ports_in_use: [0].into(),
                ..base()
            },
            Demand::new(0.0, 0).with_ports([0]),
            Ok(()),
        ),
    ];
    for (case, node, demand, expected) in cases {
        assert_eq!(feasible(&node, &demand), expected, "{case}");
    }
}

#[test]
fn rejections_read_in_lower_case_with_units() {
    let cases = [
        (Rejection::Down, "down"),
        (
            Rejection::InsufficientCpu {
                requested: 2.0,
                free: 1.5,
            },
            "needs 2 cpus, 1.5 free",
        ),
        (
            Rejection::InsufficientCpu {
                requested: 1.0,
                free: 0.1 + 0.2,
            },
            "needs 1 cpu, 0.3 free",
        ),
        (
            Rejection::InsufficientMemory {
                requested: 512 * MIB,
                free: 100 * MIB,
            },
            "needs 512 MiB memory, 100 MiB free",
        ),
        (
            Rejection::InsufficientMemory {
                requested: 3 * GIB / 2,
                free: 0,
            },
            "needs 1.5 GiB memory, 0 B free",
        ),
        (Rejection::PortInUse(8080), "host port 8080 already in use"),
    ];
    for (rejection, text) in cases {
        assert_eq!(rejection.to_string(), text);
    }
}

#[test]
fn no_fit_names_each_node_and_its_reason_sorted_by_id() {
    let nodes = [
        NodeSnapshot {
            reserved_memory: 924 * MIB,
            ..node("w2", 4.0, GIB, 0)
        },
        NodeSnapshot {
            up: false,
            ..node("w1", 4.0, GIB, 0)
        },
    ];
    let demand = Demand::new(0.0, 512 * MIB);
    for name in NAMES {
        let Ok(mut scheduler) = by_name(name) else {
            panic!("{name} is registered");
        };
        let Err(no_fit) = scheduler.pick(&nodes, &demand) else {
            panic!("{name}: no node has 512 MiB free");
        };
        assert_eq!(
            no_fit.to_string(),
            "no node can take this task: w1: down; w2: needs 512 MiB memory, 100 MiB free",
            "{name}"
        );
    }
}

#[test]
fn no_fit_on_an_empty_cluster_says_no_nodes_are_registered() {
    for name in NAMES {
        let Ok(mut scheduler) = by_name(name) else {
            panic!("{name} is registered");
        };
        let Err(no_fit) = scheduler.pick(&[], &Demand::default()) else {
            panic!("{name}: an empty cluster takes nothing");
        };
        assert_eq!(no_fit.to_string(), "no nodes are registered", "{name}");
    }
}

#[test]
fn no_fit_on_a_large_cluster_names_sixteen_nodes_and_counts_the_rest() {
    let rejections = (0..20)
        .map(|i| {
            let reason = if i >= 18 {
                Rejection::InsufficientMemory {
                    requested: GIB,
                    free: 0,
                }
            } else {
                Rejection::Down
            };
            (format!("n{i:02}"), reason)
        })
        .collect();
    let text = NoFit::new(rejections).to_string();
    let named: Vec<String> = (0..16).map(|i| format!("n{i:02}: down")).collect();
    assert_eq!(
        text,
        format!(
            "no node can take this task: {}; and 4 more (2 down, 2 short of memory)",
            named.join("; ")
        )
    );
}

#[test]
fn the_registry_knows_every_listed_name() {
    assert_eq!(NAMES, ["round-robin", "epvm", "binpack", "spread"]);
    for name in NAMES {
        match by_name(name) {
            Ok(scheduler) => assert_eq!(scheduler.name(), *name),
            Err(error) => panic!("{error}"),
        }
    }
}

#[test]
fn an_unknown_scheduler_name_lists_the_valid_ones() {
    for name in ["x", "EPVM", "roundrobin", ""] {
        let Err(error) = by_name(name) else {
            panic!("{name:?} is not a scheduler");
        };
        assert_eq!(
            error.to_string(),
            format!("unknown scheduler \"{name}\" (valid: round-robin, epvm, binpack, spread)")
        );
    }
}
