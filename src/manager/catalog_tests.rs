//! Table tests of the catalog: which tasks are endpoints (and with which address and port), and
//! when the index moves. Expected rows are written out by hand.

use uuid::Uuid;

use super::*;
use crate::task::{HostPort, TaskSpec};

fn spec(checked: bool) -> TaskSpec {
    crate::manager::services::tests::template("app:1", checked)
}

fn id(n: u128) -> TaskId {
    TaskId(Uuid::from_u128(n))
}

/// Task `n` of service `web` on node `a`, with the given state, health and bindings.
fn task(
    n: u128,
    state: TaskState,
    checked: bool,
    health: Option<&str>,
    ports: &[(u16, u16, &str)],
) -> Task {
    let mut t = Task::new(id(n), spec(checked), state);
    t.node = Some("a".into());
    t.service = Some("web".into());
    t.health = health.map(str::to_string);
    t.host_ports = ports
        .iter()
        .map(|&(container_port, host_port, protocol)| HostPort {
            container_port,
            host_port,
            protocol: protocol.into(),
        })
        .collect();
    t
}

fn publish(targets: &[u16]) -> Vec<Publish> {
    targets
        .iter()
        .map(|&target| Publish {
            port: 8080,
            target,
            mode: "tcp".into(),
            hosts: Vec::new(),
            balance: "round_robin".into(),
        })
        .collect()
}

fn ep(n: u128, address: &str, port: u16) -> CatalogEndpoint {
    CatalogEndpoint {
        task: id(n),
        node: "a".into(),
        address: address.into(),
        port,
        healthy: true,
    }
}

#[test]
fn an_address_host_is_the_advertised_url_without_scheme_and_port() {
    let rows: &[(&str, Option<&str>)] = &[
        ("http://10.0.0.5:5556", Some("10.0.0.5")),
        ("http://127.0.0.1:5556/", Some("127.0.0.1")),
        ("http://[::1]:5556", Some("::1")),
        ("http://[fd00::7]:80", Some("fd00::7")),
        ("http://worker-3:5556", Some("worker-3")),
        ("http://:5556", None),
    ];
    for (address, want) in rows {
        assert_eq!(address_host(address), *want, "{address}");
    }
}

#[test]
fn a_nodes_endpoint_host_is_its_endpoint_address_else_its_advertised_host() {
    use crate::manager::state::NodeRecord;
    let rows: &[(&str, Option<&str>, Option<&str>)] = &[
        ("http://10.0.0.5:5556", None, Some("10.0.0.5")),
        ("https://worker-3:5556", None, Some("worker-3")),
        // A worker in a container of a host whose engine it drives: its tasks' ports are on the
        // host, not at the container's address.
        (
            "https://worker-3:5556",
            Some("172.18.0.1"),
            Some("172.18.0.1"),
        ),
        ("http://10.0.0.5:5556", Some("fd00::1"), Some("fd00::1")),
        ("http://:5556", None, None),
        ("http://:5556", Some("10.0.0.9"), Some("10.0.0.9")),
    ];
    for (address, endpoint_address, want) in rows {
        let mut r = NodeRecord::new("a", *address, Default::default());
        r.endpoint_address = endpoint_address.map(str::to_string);
        assert_eq!(r.endpoint_host(), *want, "{address} {endpoint_address:?}");
    }
}

#[test]
fn only_running_healthy_or_check_less_tasks_with_a_bound_published_port_are_endpoints() {
    use TaskState::*;
    type Row = (
        &'static str,
        Task,
        Vec<Publish>,
        Option<&'static str>,
        Vec<CatalogEndpoint>,
    );
    let rows: Vec<Row> = vec![
        (
            "running, no check, port bound",
            task(1, Running, false, None, &[(80, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![ep(1, "10.0.0.5", 32768)],
        ),
        (
            "running, check passes",
            task(1, Running, true, Some("healthy"), &[(80, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![ep(1, "10.0.0.5", 32768)],
        ),
        (
            "running, check still starting",
            task(1, Running, true, Some("starting"), &[(80, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "running, check fails",
            task(1, Running, true, Some("unhealthy"), &[(80, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "running, check not reported yet",
            task(1, Running, true, None, &[(80, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "placed, not running yet",
            task(1, Scheduled, false, None, &[(80, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "exited",
            task(1, Completed, false, None, &[(80, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "the published target is not the port bound",
            task(1, Running, false, None, &[(81, 32768, "tcp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "the target is bound over udp only",
            task(1, Running, false, None, &[(80, 32768, "udp")]),
            publish(&[80]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "nothing published",
            task(1, Running, false, None, &[(80, 32768, "tcp")]),
            publish(&[]),
            Some("10.0.0.5"),
            vec![],
        ),
        (
            "the node is unknown",
            task(1, Running, false, None, &[(80, 32768, "tcp")]),
            publish(&[80]),
            None,
            vec![],
        ),
        (
            "two published targets, both bound, on an IPv6 node",
            task(
                1,
                Running,
                false,
                None,
                &[(80, 32768, "tcp"), (443, 32769, "tcp")],
            ),
            publish(&[80, 443]),
            Some("fd00::7"),
            vec![ep(1, "fd00::7", 32768), ep(1, "fd00::7", 32769)],
        ),
        (
            "one target published twice is one endpoint",
            task(1, Running, false, None, &[(80, 32768, "tcp")]),
            publish(&[80, 80]),
            Some("10.0.0.5"),
            vec![ep(1, "10.0.0.5", 32768)],
        ),
    ];
    for (name, t, p, address, want) in rows {
        assert_eq!(endpoints_of(&t, &p, address), want, "{name}");
    }
}

#[test]
fn a_task_being_stopped_is_not_an_endpoint_even_while_it_still_runs() {
    let mut t = task(1, TaskState::Running, false, None, &[(80, 32768, "tcp")]);
    t.desired = Desired::Stop;
    assert_eq!(endpoints_of(&t, &publish(&[80]), Some("10.0.0.5")), vec![]);
}

#[test]
fn a_plain_task_is_never_an_endpoint() {
    let mut t = task(1, TaskState::Running, false, None, &[(80, 32768, "tcp")]);
    t.service = None;
    assert_eq!(endpoints_of(&t, &publish(&[80]), Some("10.0.0.5")), vec![]);
}

#[test]
fn the_index_moves_only_when_an_endpoint_set_changes() {
    let mut c = Catalog::default();
    let rx = c.subscribe();
    assert_eq!(c.index(), 1);
    // Task 1 joins web: a change.
    assert!(c.set_task(id(1), None, Some("web"), vec![ep(1, "10.0.0.5", 1)]));
    assert_eq!(c.index(), 2);
    assert_eq!(*rx.borrow(), 2);
    // The same endpoint again (a report that changed nothing the catalog shows): no change.
    assert!(!c.set_task(id(1), Some("web"), Some("web"), vec![ep(1, "10.0.0.5", 1)]));
    assert_eq!(c.index(), 2);
    // Task 2 joins; the list stays sorted by task.
    assert!(c.set_task(id(2), None, Some("web"), vec![ep(2, "10.0.0.6", 2)]));
    assert!(c.set_task(id(0), None, Some("web"), vec![ep(0, "10.0.0.4", 3)]));
    assert_eq!(
        c.endpoints("web"),
        &[
            ep(0, "10.0.0.4", 3),
            ep(1, "10.0.0.5", 1),
            ep(2, "10.0.0.6", 2)
        ]
    );
    assert_eq!(c.index(), 4);
    // Task 1 turns unhealthy: it leaves.
    assert!(c.set_task(id(1), Some("web"), Some("web"), vec![]));
    assert_eq!(c.count("web"), 2);
    // A task that was never an endpoint changes: nothing moves.
    assert!(!c.set_task(id(9), Some("web"), Some("web"), vec![]));
    assert_eq!(c.index(), 5);
    // The service's publish entries go: every endpoint leaves at once, one step of the index.
    assert!(c.set_service("web", vec![]));
    assert_eq!((c.count("web"), c.index()), (0, 6));
    assert!(!c.set_service("web", vec![]));
    assert_eq!(*rx.borrow(), 6);
}

#[test]
fn a_change_of_publish_entries_raises_the_index_and_the_same_entries_do_not() {
    let mut c = Catalog::default();
    let start = c.index();
    assert!(c.set_publish("web", publish(&[80])));
    assert_eq!(c.index(), start + 1);
    assert!(!c.set_publish("web", publish(&[80])));
    assert_eq!(c.index(), start + 1);
    assert!(c.set_publish("web", publish(&[81])));
    assert_eq!(c.published().get("web"), Some(&publish(&[81])));
    // A stopped or forgotten service publishes nothing.
    assert!(c.set_publish("web", Vec::new()));
    assert!(c.published().is_empty());
    assert_eq!(c.index(), start + 3);
}
