//! Placement rules as data: constraints on node attributes, `distinct_hosts`, and eligibility, with
//! the reason each node is turned down. Every expected outcome is written out literally.

mod support;

use poseidon_schedulers::{
    by_name, feasible, fits, Constraint, Demand, Eligibility, NoFit, NodeSnapshot, Operator,
    Rejection, NAMES,
};
use support::{node, GIB};

/// A 4-core, 8 GiB node with the given labels.
fn labelled(id: &str, labels: &[(&str, &str)]) -> NodeSnapshot {
    node(id, 4.0, 8 * GIB, 0).with_labels(labels.iter().copied())
}

/// The rejection of a constraint on `attribute`, for writing expected rows.
fn refused(attribute: &str, found: Option<&str>, wanted: Operator) -> Result<(), Rejection> {
    Err(Rejection::Constraint {
        attribute: attribute.into(),
        found: found.map(str::to_string),
        wanted,
    })
}

fn eq(v: &str) -> Operator {
    Operator::Equal(v.into())
}

fn ne(v: &str) -> Operator {
    Operator::NotEqual(v.into())
}

fn within(vs: &[&str]) -> Operator {
    Operator::In(vs.iter().map(|v| v.to_string()).collect())
}

#[test]
fn each_operator_admits_exactly_the_values_it_names_and_treats_a_missing_attribute_as_written() {
    let ssd = || labelled("w1", &[("disk", "ssd"), ("zone", "a")]);
    let bare = || labelled("w2", &[]);
    let disk = "node.labels.disk";
    let cases: Vec<(&str, NodeSnapshot, Constraint, Result<(), Rejection>)> = vec![
        ("= matches", ssd(), Constraint::equal(disk, "ssd"), Ok(())),
        (
            "= differs",
            ssd(),
            Constraint::equal(disk, "hdd"),
            refused(disk, Some("ssd"), eq("hdd")),
        ),
        (
            "= on a missing label fails",
            bare(),
            Constraint::equal(disk, "ssd"),
            refused(disk, None, eq("ssd")),
        ),
        (
            "= is case-sensitive",
            ssd(),
            Constraint::equal(disk, "SSD"),
            refused(disk, Some("ssd"), eq("SSD")),
        ),
        (
            "!= differs",
            ssd(),
            Constraint::not_equal(disk, "hdd"),
            Ok(()),
        ),
        (
            "!= matches",
            ssd(),
            Constraint::not_equal(disk, "ssd"),
            refused(disk, Some("ssd"), ne("ssd")),
        ),
        (
            "!= on a missing label passes",
            bare(),
            Constraint::not_equal(disk, "ssd"),
            Ok(()),
        ),
        (
            "in with the value listed",
            ssd(),
            Constraint::one_of("node.labels.zone", ["b", "a"]),
            Ok(()),
        ),
        (
            "in without the value listed",
            ssd(),
            Constraint::one_of("node.labels.zone", ["b", "c"]),
            refused("node.labels.zone", Some("a"), within(&["b", "c"])),
        ),
        (
            "in on a missing label fails",
            bare(),
            Constraint::one_of("node.labels.zone", ["a"]),
            refused("node.labels.zone", None, within(&["a"])),
        ),
        (
            "in with an empty list admits nothing",
            ssd(),
            Constraint::one_of("node.labels.zone", Vec::<String>::new()),
            refused("node.labels.zone", Some("a"), within(&[])),
        ),
        (
            "node.name is the node's id without being a label",
            bare(),
            Constraint::equal("node.name", "w2"),
            Ok(()),
        ),
        (
            "node.name = another node",
            bare(),
            Constraint::equal("node.name", "w1"),
            refused("node.name", Some("w2"), eq("w1")),
        ),
        (
            "node.name != itself",
            ssd(),
            Constraint::not_equal("node.name", "w1"),
            refused("node.name", Some("w1"), ne("w1")),
        ),
        (
            "an attribute no node has fails =",
            ssd(),
            Constraint::equal("node.host_volumes.logs", "/var/log"),
            refused("node.host_volumes.logs", None, eq("/var/log")),
        ),
    ];
    for (what, node, constraint, expected) in cases {
        let demand = Demand::new(1.0, GIB).with_constraints([constraint]);
        assert_eq!(feasible(&node, &demand), expected, "{what}");
        assert_eq!(fits(&node, &demand), expected.is_ok(), "{what}: fits");
    }
}

#[test]
fn the_first_failing_check_is_the_reason_in_the_documented_order() {
    let base = || labelled("w1", &[("disk", "hdd")]);
    let wants_ssd = || {
        Demand::new(100.0, 100 * GIB).with_constraints([
            Constraint::equal("node.labels.disk", "ssd"),
            Constraint::equal("node.labels.zone", "a"),
        ])
    };
    let cases: Vec<(&str, NodeSnapshot, Demand, Result<(), Rejection>)> = vec![
        (
            "down before ineligible",
            NodeSnapshot {
                up: false,
                eligibility: Eligibility::Ineligible,
                ..base()
            },
            wants_ssd(),
            Err(Rejection::Down),
        ),
        (
            "ineligible before constraints",
            NodeSnapshot {
                eligibility: Eligibility::Ineligible,
                ..base()
            },
            wants_ssd(),
            Err(Rejection::Ineligible),
        ),
        (
            "draining before constraints",
            NodeSnapshot {
                eligibility: Eligibility::Draining,
                ..base()
            },
            wants_ssd(),
            Err(Rejection::Draining),
        ),
        (
            "the first constraint that fails, before resources",
            base(),
            wants_ssd(),
            refused("node.labels.disk", Some("hdd"), eq("ssd")),
        ),
        (
            "distinct_hosts before resources",
            base(),
            Demand::new(100.0, 0).with_distinct_hosts(["w1"]),
            Err(Rejection::DistinctHosts),
        ),
        (
            "distinct_hosts naming other nodes passes",
            base(),
            Demand::new(1.0, 0).with_distinct_hosts(["w2", "w3"]),
            Ok(()),
        ),
        (
            "distinct_hosts with no node taken yet passes",
            base(),
            Demand::new(1.0, 0).with_distinct_hosts(Vec::<String>::new()),
            Ok(()),
        ),
        (
            "constraints that pass leave resources to decide",
            base(),
            Demand::new(8.0, 0).with_constraints([Constraint::equal("node.labels.disk", "hdd")]),
            Err(Rejection::InsufficientCpu {
                requested: 8.0,
                free: 4.0,
            }),
        ),
    ];
    for (what, node, demand, expected) in cases {
        assert_eq!(feasible(&node, &demand), expected, "{what}");
        assert_eq!(fits(&node, &demand), expected.is_ok(), "{what}: fits");
    }
}

#[test]
fn rejections_read_as_the_rule_and_what_the_node_has() {
    let cases: Vec<(Rejection, &str)> = vec![
        (Rejection::Ineligible, "ineligible"),
        (Rejection::Draining, "draining"),
        (
            Rejection::Constraint {
                attribute: "node.labels.disk".into(),
                found: Some("hdd".into()),
                wanted: eq("ssd"),
            },
            "node.labels.disk is hdd, wanted = ssd",
        ),
        (
            Rejection::Constraint {
                attribute: "node.labels.disk".into(),
                found: None,
                wanted: eq("ssd"),
            },
            "node.labels.disk is not set, wanted = ssd",
        ),
        (
            Rejection::Constraint {
                attribute: "node.name".into(),
                found: Some("w1".into()),
                wanted: ne("w1"),
            },
            "node.name is w1, wanted != w1",
        ),
        (
            Rejection::Constraint {
                attribute: "node.labels.zone".into(),
                found: Some("c".into()),
                wanted: within(&["a", "b"]),
            },
            "node.labels.zone is c, wanted in [a, b]",
        ),
        (
            Rejection::DistinctHosts,
            "already holds a task of the same group (distinct_hosts)",
        ),
    ];
    for (rejection, text) in cases {
        assert_eq!(rejection.to_string(), text);
    }
}

#[test]
fn no_fit_names_every_node_with_the_rule_it_breaks() {
    let nodes = vec![
        labelled("w1", &[("disk", "ssd")]),
        labelled("w2", &[("disk", "hdd")]),
        labelled("w3", &[]),
        NodeSnapshot {
            eligibility: Eligibility::Draining,
            ..labelled("w4", &[("disk", "ssd")])
        },
    ];
    let demand = Demand::new(0.0, 0)
        .with_constraints([Constraint::equal("node.labels.disk", "ssd")])
        .with_distinct_hosts(["w1"]);
    assert_eq!(
        NoFit::from_nodes(&nodes, &demand).to_string(),
        "no node can take this task: w1: already holds a task of the same group (distinct_hosts); \
         w2: node.labels.disk is hdd, wanted = ssd; w3: node.labels.disk is not set, wanted = ssd; \
         w4: draining"
    );
}

#[test]
fn the_summary_past_the_named_nodes_counts_the_new_kinds() {
    let mut nodes: Vec<NodeSnapshot> = (0..16)
        .map(|i| labelled(&format!("a{i:02}"), &[("disk", "hdd")]))
        .collect();
    nodes.push(NodeSnapshot {
        eligibility: Eligibility::Ineligible,
        ..labelled("b1", &[("disk", "ssd")])
    });
    nodes.push(labelled("b2", &[("disk", "hdd")]));
    nodes.push(labelled("b3", &[("disk", "ssd")]));
    let demand = Demand::new(0.0, 0)
        .with_constraints([Constraint::equal("node.labels.disk", "ssd")])
        .with_distinct_hosts(["b3"]);
    let text = NoFit::from_nodes(&nodes, &demand).to_string();
    assert!(
        text.ends_with(
            "; and 3 more (1 ineligible, 1 failing a constraint, 1 holding a task of the same group)"
        ),
        "{text}"
    );
}

#[test]
fn every_policy_places_only_on_nodes_that_satisfy_the_rules() {
    // w1 has the most room, so every policy would choose it (or, for round-robin, the first id)
    // without the rules; the rules leave w3 only.
    let nodes = vec![
        labelled("w1", &[("disk", "ssd"), ("zone", "a")]),
        NodeSnapshot {
            eligibility: Eligibility::Ineligible,
            ..labelled("w2", &[("disk", "ssd"), ("zone", "b")])
        },
        NodeSnapshot {
            reserved_cpus: 3.0,
            reserved_memory: 6 * GIB,
            ..node("w3", 4.0, 8 * GIB, 3).with_labels([("disk", "ssd"), ("zone", "b")])
        },
        labelled("w4", &[("disk", "hdd"), ("zone", "b")]),
    ];
    let demand = Demand::new(0.5, GIB)
        .with_constraints([
            Constraint::equal("node.labels.disk", "ssd"),
            Constraint::one_of("node.labels.zone", ["b", "c"]),
        ])
        .with_distinct_hosts(["w4"]);
    for name in NAMES {
        let mut scheduler = by_name(name).expect("a known policy");
        let picked = scheduler.pick(&nodes, &demand).expect("w3 fits");
        assert_eq!(nodes[picked].id, "w3", "{name}");
        let (candidates, rejected) = scheduler.select(&nodes, &demand);
        assert_eq!(candidates, vec![2], "{name}");
        assert_eq!(
            rejected,
            vec![
                (
                    0,
                    Rejection::Constraint {
                        attribute: "node.labels.zone".into(),
                        found: Some("a".into()),
                        wanted: within(&["b", "c"]),
                    }
                ),
                (1, Rejection::Ineligible),
                (
                    3,
                    Rejection::Constraint {
                        attribute: "node.labels.disk".into(),
                        found: Some("hdd".into()),
                        wanted: eq("ssd"),
                    }
                ),
            ],
            "{name}"
        );
    }
}

#[test]
fn distinct_hosts_spreads_a_group_one_task_per_node_then_refuses() {
    // The caller adds each placed node to the set, as the manager does between picks.
    let nodes = vec![
        labelled("w1", &[]),
        labelled("w2", &[]),
        labelled("w3", &[]),
    ];
    for name in NAMES {
        let mut scheduler = by_name(name).expect("a known policy");
        let mut snapshots = nodes.clone();
        let mut taken: Vec<String> = Vec::new();
        for _ in 0..3 {
            let demand = Demand::new(0.1, 0).with_distinct_hosts(taken.clone());
            let i = scheduler.pick(&snapshots, &demand).expect("a free node");
            snapshots[i].place(&demand);
            taken.push(snapshots[i].id.clone());
        }
        taken.sort();
        assert_eq!(taken, ["w1", "w2", "w3"], "{name}");
        let demand = Demand::new(0.1, 0).with_distinct_hosts(taken.clone());
        let err = scheduler
            .pick(&snapshots, &demand)
            .expect_err("every node holds one");
        assert_eq!(
            err.rejections,
            vec![
                ("w1".to_string(), Rejection::DistinctHosts),
                ("w2".to_string(), Rejection::DistinctHosts),
                ("w3".to_string(), Rejection::DistinctHosts),
            ],
            "{name}"
        );
    }
}
