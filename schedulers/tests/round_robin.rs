//! RoundRobin's order as nodes join, leave and fail feasibility.

mod support;

use poseidon_schedulers::scheduler::best_of;
use poseidon_schedulers::{Demand, NodeSnapshot, Rejection, RoundRobin, Scheduler};
use support::{id, node, GIB};

/// Up 4-core, 8 GiB nodes with these ids, in this slice order.
fn up(ids: &[&str]) -> Vec<NodeSnapshot> {
    ids.iter().map(|id| node(id, 4.0, 8 * GIB, 0)).collect()
}

/// Runs one RoundRobin through the steps, each a cluster as it stands and the node id the next
/// placement must go to, checking at each step that `score` ranks that node first.
fn assert_rotation(demand: &Demand, steps: &[(Vec<NodeSnapshot>, &str)]) {
    let mut round_robin = RoundRobin::new();
    for (step, (nodes, expected)) in steps.iter().enumerate() {
        let (candidates, _) = round_robin.select(nodes, demand);
        let scores = round_robin.score(nodes, &candidates, demand);
        let best = best_of(nodes, &scores, round_robin.score_order());
        let picked = match round_robin.pick(nodes, demand) {
            Ok(index) => index,
            Err(no_fit) => panic!("step {step}: expected {expected}: {no_fit}"),
        };
        assert_eq!(id(nodes, picked), *expected, "step {step}");
        assert_eq!(
            best,
            Some(picked),
            "step {step}: score ranks the pick first"
        );
        assert_eq!(
            round_robin.last(),
            Some(*expected),
            "step {step}: the cursor is the id"
        );
    }
}

#[test]
fn round_robin_takes_nodes_in_id_order_and_wraps_around() {
    let nodes = up(&["w1", "w2", "w3"]);
    let steps: Vec<_> = ["w1", "w2", "w3", "w1", "w2", "w3"]
        .iter()
        .map(|expected| (nodes.clone(), *expected))
        .collect();
    assert_rotation(&Demand::default(), &steps);
}

#[test]
fn round_robin_orders_nodes_by_id_not_by_their_place_in_the_slice() {
    let nodes = up(&["w3", "w1", "w2"]);
    let steps: Vec<_> = ["w1", "w2", "w3", "w1"]
        .iter()
        .map(|expected| (nodes.clone(), *expected))
        .collect();
    assert_rotation(&Demand::default(), &steps);
}

#[test]
fn round_robin_gives_a_joining_node_its_turn_in_id_order() {
    assert_rotation(
        &Demand::default(),
        &[
            (up(&["w1", "w3"]), "w1"),
            // w2 joins between the cursor (w1) and w3, so it is next.
            (up(&["w1", "w3", "w2"]), "w2"),
            (up(&["w1", "w3", "w2"]), "w3"),
            // w0 joins below every id, so its turn comes when the rotation wraps.
            (up(&["w0", "w1", "w3", "w2"]), "w0"),
            (up(&["w0", "w1", "w3", "w2"]), "w1"),
        ],
    );
}

#[test]
fn round_robin_goes_on_from_where_a_node_that_left_would_sort() {
    assert_rotation(
        &Demand::default(),
        &[
            (up(&["w1", "w2", "w3"]), "w1"),
            (up(&["w1", "w2", "w3"]), "w2"),
            // w2, the cursor, leaves: the rotation goes on with the next id above it.
            (up(&["w1", "w3"]), "w3"),
            // w3 leaves too: the cursor is past every id, so the rotation wraps.
            (up(&["w1"]), "w1"),
            (up(&["w1", "w4"]), "w4"),
        ],
    );
}

#[test]
fn round_robin_skips_nodes_that_cannot_take_the_task() {
    let demand = Demand::new(1.0, 2 * GIB).with_ports([8080]);
    let mut down = up(&["w1", "w2", "w3", "w4", "w5"]);
    down[1].up = false;
    down[2].reserved_memory = 7 * GIB;
    down[3].ports_in_use.insert(8080);
    assert_rotation(
        &demand,
        &[
            (down.clone(), "w1"),
            // w2 is down, w3 short of memory and w4 has the port taken.
            (down.clone(), "w5"),
            (down.clone(), "w1"),
            // All recover: w2 is next after the cursor, w1.
            (up(&["w1", "w2", "w3", "w4", "w5"]), "w2"),
        ],
    );
}

#[test]
fn round_robin_is_fair_over_each_cycle() {
    let nodes = up(&["a", "b", "c", "d"]);
    let mut round_robin = RoundRobin::new();
    let mut counts = [0; 4];
    for cycle in 1..=10 {
        for _ in 0..nodes.len() {
            match round_robin.pick(&nodes, &Demand::default()) {
                Ok(index) => counts[index] += 1,
                Err(no_fit) => panic!("{no_fit}"),
            }
        }
        assert_eq!(counts, [cycle; 4], "after {cycle} cycles");
    }
}

#[test]
fn round_robin_keeps_its_cursor_when_no_node_fits() {
    let mut nodes = up(&["w1", "w2"]);
    let mut round_robin = RoundRobin::starting_after("w1");
    nodes[1].up = false;
    let Err(no_fit) = round_robin.pick(&nodes, &Demand::new(8.0, 0)) else {
        panic!("8 cores fit nowhere");
    };
    assert_eq!(
        no_fit.rejections,
        vec![
            (
                "w1".to_owned(),
                Rejection::InsufficientCpu {
                    requested: 8.0,
                    free: 4.0
                }
            ),
            ("w2".to_owned(), Rejection::Down),
        ]
    );
    assert_eq!(round_robin.last(), Some("w1"));
}

#[test]
fn round_robin_restored_after_a_node_resumes_with_the_next_one() {
    let nodes = up(&["w1", "w2", "w3"]);
    let mut round_robin = RoundRobin::starting_after("w2");
    assert_eq!(round_robin.pick(&nodes, &Demand::default()), Ok(2));
}
