//! Table tests of the service reconciler, in the style of Nomad's `reconcile_test.go`: each row is
//! a service (its versions, by image, and its state), its tasks (named by a letter), the draining
//! nodes, and the plan that must come out, written out by hand.
//!
//! Over the house's ~700 lines on purpose: it is one literal table, each row a service situation
//! and the plan written out, and splitting it would hide rows from each other.

use std::collections::HashSet;

use super::*;
use crate::service::{ServiceVersion, UpdatePolicy};
use crate::task::{HealthCheck, Probe, RestartKind, RestartPolicy, SpecBody, TaskSpec};

/// The clock the reconciler is given.
const NOW: u64 = 1_700_000_000_000;
/// Every row's `min_healthy`.
const MIN_HEALTHY: u64 = 2_000;
/// Every row's `healthy_deadline`.
const DEADLINE: u64 = 60_000;

/// One version of the row's service: its number, its image (the template), stable or not.
type Ver = (u64, &'static str, bool);

struct Svc {
    versions: &'static [Ver],
    /// The current version.
    version: u64,
    count: u32,
    max_parallel: u32,
    auto_revert: bool,
    state: ServiceState,
    /// How long ago the current version's rollout began (ms).
    since_ago: u64,
    /// Whether the template has an exec health check.
    checked: bool,
}

const SVC: Svc = Svc {
    versions: &[(1, "app:1", true)],
    version: 1,
    count: 3,
    max_parallel: 1,
    auto_revert: true,
    state: ServiceState::Running,
    since_ago: 10_000,
    checked: false,
};

/// One task of the row.
#[derive(Clone, Copy)]
struct T {
    name: &'static str,
    version: u64,
    state: TaskState,
    /// The health its checks report, when the template has checks.
    health: Option<&'static str>,
    /// How long ago it started running (ms), if it did.
    ran: Option<u64>,
    node: &'static str,
    desired: Desired,
    /// `always` (its worker restarts it) or `never`.
    restarts: bool,
    /// How long ago it ended (ms), if it did.
    ended: Option<u64>,
    /// Created this long before NOW (ms): larger is older.
    age: u64,
}

/// A copy of version `v` that has run 5 s (healthy without checks).
const fn up(name: &'static str, v: u64, age: u64) -> T {
    T {
        name,
        version: v,
        state: TaskState::Running,
        health: None,
        ran: Some(5_000),
        node: "n1",
        desired: Desired::Run,
        restarts: false,
        ended: None,
        age,
    }
}

/// A copy of version `v` that started 500 ms ago (not healthy yet without checks).
const fn starting(name: &'static str, v: u64, age: u64) -> T {
    T {
        ran: Some(500),
        ..up(name, v, age)
    }
}

/// A copy of version `v` that failed `ago` ms ago and will not be restarted.
const fn dead(name: &'static str, v: u64, ago: u64) -> T {
    T {
        state: TaskState::Failed,
        ran: None,
        ended: Some(ago),
        ..up(name, v, 100_000 + ago)
    }
}

const fn on(t: T, node: &'static str) -> T {
    T { node, ..t }
}

const fn checked(t: T, health: &'static str) -> T {
    T {
        health: Some(health),
        ..t
    }
}

struct Want {
    create: u32,
    /// (task, reason)
    stop: &'static [(&'static str, &'static str)],
    adopt: &'static [&'static str],
    forget: &'static [&'static str],
    state: Option<ServiceState>,
    stable: bool,
    revert_to: Option<u64>,
}

const NOTHING: Want = Want {
    create: 0,
    stop: &[],
    adopt: &[],
    forget: &[],
    state: None,
    stable: false,
    revert_to: None,
};

struct Row {
    name: &'static str,
    svc: Svc,
    tasks: &'static [T],
    draining: &'static [&'static str],
    want: Want,
}

/// A service's task template (also the catalog tests' task spec): `web`, `image`, with an exec
/// health check when `checked`.
pub(in crate::manager) fn template(image: &str, checked: bool) -> TaskSpec {
    TaskSpec::new(
        "web",
        SpecBody {
            image: image.into(),
            cmd: Vec::new(),
            env: Default::default(),
            cpus: 0.0,
            memory: 0,
            ports: Vec::new(),
            restart_policy: RestartPolicy::default(),
            health_check: checked.then(|| {
                Box::new(HealthCheck {
                    probe: Probe::Exec {
                        cmd: vec!["true".into()],
                    },
                    interval_ms: 1_000,
                    timeout_ms: 1_000,
                    retries: 1,
                    start_period_ms: 0,
                })
            }),
            labels: Default::default(),
            stop_after_disconnect_ms: None,
            secrets: Default::default(),
            constraints: Vec::new(),
            volumes: Vec::new(),
            pull: Default::default(),
            ..SpecBody::default()
        },
    )
}

fn service(s: &Svc) -> Service {
    let versions = s
        .versions
        .iter()
        .map(|&(version, image, stable)| ServiceVersion {
            version,
            spec: ServiceSpec {
                name: "web".into(),
                count: s.count,
                task: template(image, s.checked),
                update: UpdatePolicy {
                    max_parallel: s.max_parallel,
                    min_healthy_ms: MIN_HEALTHY,
                    healthy_deadline_ms: DEADLINE,
                    auto_revert: s.auto_revert,
                },
                constraints: Vec::new(),
                publish: Vec::new(),
            },
            created_ms: NOW - 100_000,
            stable,
            cause: "test".into(),
        })
        .collect();
    Service {
        name: "web".into(),
        version: s.version,
        state: s.state,
        since_ms: NOW - s.since_ago,
        versions,
        created_ms: NOW - 100_000,
        updated_ms: NOW - 100_000,
    }
}

fn task(svc: &Service, checked_template: bool, t: &T) -> Task {
    let image = svc
        .get(t.version)
        .map(|v| v.spec.task.image.clone())
        .unwrap_or_else(|| format!("app:gone{}", t.version));
    let mut spec = template(&image, checked_template);
    if t.restarts {
        spec.restart_policy = RestartPolicy::of(RestartKind::Always);
    }
    let mut task = Task::new(TaskId::new(), spec, TaskState::Pending);
    task.state = t.state;
    task.desired = t.desired;
    task.health = t.health.map(str::to_string);
    task.started_ms = t.ran.map(|r| NOW - r);
    task.finished_ms = t.ended.map(|e| NOW - e);
    task.node = Some(t.node.to_string());
    task.created_ms = NOW - t.age;
    task.service = Some("web".into());
    task.version = Some(t.version);
    task
}

fn check(row: &Row) {
    let svc = service(&row.svc);
    let tasks: Vec<Task> = row
        .tasks
        .iter()
        .map(|t| task(&svc, row.svc.checked, t))
        .collect();
    let name_of = |id: TaskId| -> &'static str {
        let i = tasks.iter().position(|t| t.id == id).expect("a row task");
        row.tasks[i].name
    };
    let refs: Vec<&Task> = tasks.iter().collect();
    let draining: HashSet<String> = row.draining.iter().map(|s| s.to_string()).collect();
    let p = plan(&svc, &refs, &draining, NOW);
    let stop: Vec<(&str, &str)> = p
        .stop
        .iter()
        .map(|s| (name_of(s.id), s.reason.as_str()))
        .collect();
    let mut adopt: Vec<&str> = p.adopt.iter().map(|id| name_of(*id)).collect();
    adopt.sort();
    let mut forget: Vec<&str> = p.forget.iter().map(|id| name_of(*id)).collect();
    forget.sort();
    assert_eq!(p.create, row.want.create, "{}: create", row.name);
    assert_eq!(stop, row.want.stop, "{}: stop", row.name);
    assert_eq!(adopt, row.want.adopt, "{}: adopt", row.name);
    assert_eq!(forget, row.want.forget, "{}: forget", row.name);
    assert_eq!(p.state, row.want.state, "{}: state", row.name);
    assert_eq!(p.stable, row.want.stable, "{}: stable", row.name);
    assert_eq!(p.revert_to, row.want.revert_to, "{}: revert_to", row.name);
}

/// Version 1 stable, version 2 a new template being rolled out.
const ROLLING: Svc = Svc {
    versions: &[(1, "app:1", true), (2, "app:2", false)],
    version: 2,
    state: ServiceState::Updating,
    ..SVC
};

const ROWS: &[Row] = &[
    Row {
        name: "a new service creates every copy at once",
        svc: Svc {
            versions: &[(1, "app:1", false)],
            state: ServiceState::Updating,
            since_ago: 0,
            ..SVC
        },
        tasks: &[],
        draining: &[],
        want: Want {
            create: 3,
            ..NOTHING
        },
    },
    Row {
        name: "all copies healthy: the version is stable and the service running",
        svc: Svc {
            versions: &[(1, "app:1", false)],
            state: ServiceState::Updating,
            ..SVC
        },
        tasks: &[up("a", 1, 9), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            state: Some(ServiceState::Running),
            stable: true,
            ..NOTHING
        },
    },
    Row {
        name: "copies that ran less than min_healthy are not healthy yet",
        svc: Svc {
            versions: &[(1, "app:1", false)],
            state: ServiceState::Updating,
            ..SVC
        },
        tasks: &[up("a", 1, 9), up("b", 1, 8), starting("c", 1, 7)],
        draining: &[],
        want: NOTHING,
    },
    Row {
        name: "a steady service plans nothing",
        svc: SVC,
        tasks: &[up("a", 1, 9), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: NOTHING,
    },
    Row {
        name: "a copy that ended for good is replaced",
        svc: SVC,
        tasks: &[up("a", 1, 9), up("b", 1, 8), dead("c", 1, 5_000)],
        draining: &[],
        want: Want {
            create: 1,
            ..NOTHING
        },
    },
    Row {
        name: "a copy that ended a moment ago is replaced only after the delay",
        svc: SVC,
        tasks: &[up("a", 1, 9), up("b", 1, 8), dead("c", 1, 500)],
        draining: &[],
        want: NOTHING,
    },
    Row {
        name: "a failed copy its worker will restart is left to its restart policy",
        svc: SVC,
        tasks: &[
            up("a", 1, 9),
            up("b", 1, 8),
            T {
                restarts: true,
                ..dead("c", 1, 5_000)
            },
        ],
        draining: &[],
        want: NOTHING,
    },
    Row {
        name: "a copy being stopped does not count",
        svc: SVC,
        tasks: &[
            up("a", 1, 9),
            up("b", 1, 8),
            T {
                desired: Desired::Stop,
                ..up("c", 1, 7)
            },
        ],
        draining: &[],
        want: Want {
            create: 1,
            ..NOTHING
        },
    },
    Row {
        name: "scaling up relabels the survivors and creates the rest",
        svc: Svc {
            versions: &[(1, "app:1", true), (2, "app:1", false)],
            version: 2,
            count: 5,
            state: ServiceState::Updating,
            ..SVC
        },
        tasks: &[up("a", 1, 9), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            create: 2,
            adopt: &["a", "b", "c"],
            ..NOTHING
        },
    },
    Row {
        name: "scaling down stops the newest and relabels the rest",
        svc: Svc {
            versions: &[(1, "app:1", true), (2, "app:1", true)],
            version: 2,
            count: 2,
            ..SVC
        },
        tasks: &[
            up("a", 1, 9),
            up("b", 1, 8),
            up("c", 1, 7),
            up("d", 1, 6),
            up("e", 1, 5),
        ],
        draining: &[],
        want: Want {
            stop: &[
                ("e", "scaled down to 2"),
                ("d", "scaled down to 2"),
                ("c", "scaled down to 2"),
            ],
            adopt: &["a", "b"],
            ..NOTHING
        },
    },
    Row {
        name: "a surplus is taken from the unhealthy copies first",
        svc: Svc { count: 2, ..SVC },
        tasks: &[up("a", 1, 9), starting("b", 1, 3), up("c", 1, 5)],
        draining: &[],
        want: Want {
            stop: &[("b", "scaled down to 2")],
            ..NOTHING
        },
    },
    Row {
        name: "a rolling update starts by replacing one old copy, the oldest",
        svc: ROLLING,
        tasks: &[up("a", 1, 9), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            create: 1,
            stop: &[("a", "replaced by version 2")],
            ..NOTHING
        },
    },
    Row {
        name: "a rolling update waits while a new copy is not healthy yet",
        svc: ROLLING,
        tasks: &[starting("x", 2, 1), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: NOTHING,
    },
    Row {
        name: "a rolling update goes on once the new copy is healthy",
        svc: ROLLING,
        tasks: &[up("x", 2, 1), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            create: 1,
            stop: &[("b", "replaced by version 2")],
            ..NOTHING
        },
    },
    Row {
        name: "max_parallel 2 replaces two at a time",
        svc: Svc {
            max_parallel: 2,
            ..ROLLING
        },
        tasks: &[up("a", 1, 9), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            create: 2,
            stop: &[
                ("a", "replaced by version 2"),
                ("b", "replaced by version 2"),
            ],
            ..NOTHING
        },
    },
    Row {
        name: "an old copy that is down leaves before healthy ones",
        svc: ROLLING,
        tasks: &[
            up("a", 1, 9),
            T {
                restarts: true,
                ..dead("b", 1, 5_000)
            },
            up("c", 1, 7),
        ],
        draining: &[],
        want: Want {
            create: 1,
            stop: &[("b", "replaced by version 2")],
            ..NOTHING
        },
    },
    Row {
        name: "an old copy lost during the update is made up for with the new version",
        svc: ROLLING,
        tasks: &[up("a", 1, 9), up("b", 1, 8), dead("c", 1, 5_000)],
        draining: &[],
        want: Want {
            create: 1,
            ..NOTHING
        },
    },
    Row {
        name: "the last new copy healthy: the update is done",
        svc: ROLLING,
        tasks: &[up("x", 2, 3), up("y", 2, 2), up("z", 2, 1)],
        draining: &[],
        want: Want {
            state: Some(ServiceState::Running),
            stable: true,
            ..NOTHING
        },
    },
    Row {
        name: "with a health check only a passing check counts, however long the copy ran",
        svc: Svc {
            checked: true,
            ..ROLLING
        },
        tasks: &[
            checked(up("x", 2, 3), "starting"),
            checked(up("b", 1, 8), "healthy"),
            checked(up("c", 1, 7), "healthy"),
        ],
        draining: &[],
        want: NOTHING,
    },
    Row {
        name: "with a health check a passing check counts at once",
        svc: Svc {
            checked: true,
            ..ROLLING
        },
        tasks: &[
            checked(starting("x", 2, 3), "healthy"),
            checked(up("b", 1, 8), "healthy"),
            checked(up("c", 1, 7), "healthy"),
        ],
        draining: &[],
        want: Want {
            create: 1,
            stop: &[("b", "replaced by version 2")],
            ..NOTHING
        },
    },
    Row {
        name: "past the deadline with auto_revert: back to the last stable version",
        svc: Svc {
            since_ago: DEADLINE + 1,
            ..ROLLING
        },
        tasks: &[starting("x", 2, 3), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            revert_to: Some(1),
            ..NOTHING
        },
    },
    Row {
        name: "past the deadline without auto_revert: failed",
        svc: Svc {
            since_ago: DEADLINE + 1,
            auto_revert: false,
            ..ROLLING
        },
        tasks: &[starting("x", 2, 3), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            state: Some(ServiceState::Failed),
            ..NOTHING
        },
    },
    Row {
        name: "past the deadline with no stable version to go back to: failed",
        svc: Svc {
            versions: &[(1, "app:1", false), (2, "app:2", false)],
            since_ago: DEADLINE + 1,
            ..ROLLING
        },
        tasks: &[starting("x", 2, 3), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            state: Some(ServiceState::Failed),
            ..NOTHING
        },
    },
    Row {
        name: "a failed rollout goes no further",
        svc: Svc {
            since_ago: DEADLINE + 1,
            state: ServiceState::Failed,
            ..ROLLING
        },
        tasks: &[up("x", 2, 3), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: NOTHING,
    },
    Row {
        name: "after a revert the old copies are relabelled and the bad one replaced",
        svc: Svc {
            versions: &[(1, "app:1", true), (2, "app:2", false), (3, "app:1", false)],
            version: 3,
            state: ServiceState::Reverted,
            since_ago: 0,
            ..SVC
        },
        tasks: &[
            checked(up("x", 2, 3), "unhealthy"),
            up("b", 1, 8),
            up("c", 1, 7),
        ],
        draining: &[],
        want: Want {
            create: 1,
            stop: &[("x", "replaced by version 3")],
            adopt: &["b", "c"],
            ..NOTHING
        },
    },
    Row {
        name: "a revert that completes keeps the state reverted",
        svc: Svc {
            versions: &[(1, "app:1", true), (2, "app:2", false), (3, "app:1", false)],
            version: 3,
            state: ServiceState::Reverted,
            since_ago: 5_000,
            ..SVC
        },
        tasks: &[up("a", 3, 3), up("b", 1, 8), up("c", 1, 7)],
        draining: &[],
        want: Want {
            adopt: &["b", "c"],
            stable: true,
            ..NOTHING
        },
    },
    Row {
        name: "a revert that misses its deadline too fails",
        svc: Svc {
            versions: &[(1, "app:1", true), (2, "app:2", false), (3, "app:1", false)],
            version: 3,
            state: ServiceState::Reverted,
            since_ago: DEADLINE + 1,
            ..SVC
        },
        tasks: &[starting("a", 3, 3), up("b", 3, 8), up("c", 3, 7)],
        draining: &[],
        want: Want {
            state: Some(ServiceState::Failed),
            ..NOTHING
        },
    },
    Row {
        name: "copies on a draining node move one at a time",
        svc: SVC,
        tasks: &[up("a", 1, 9), up("b", 1, 8), on(up("c", 1, 7), "n2")],
        draining: &["n1"],
        want: Want {
            create: 1,
            stop: &[("a", "node n1 is draining")],
            ..NOTHING
        },
    },
    Row {
        name: "a drain waits for the moved copy to be healthy",
        svc: SVC,
        tasks: &[
            on(starting("x", 1, 1), "n2"),
            up("b", 1, 8),
            on(up("c", 1, 7), "n2"),
        ],
        draining: &["n1"],
        want: NOTHING,
    },
    Row {
        name: "a stopped service stops every live copy",
        svc: Svc {
            state: ServiceState::Stopped,
            ..SVC
        },
        tasks: &[up("a", 1, 9), starting("b", 1, 8), dead("c", 1, 5_000)],
        draining: &[],
        want: Want {
            stop: &[("a", "service stopped"), ("b", "service stopped")],
            ..NOTHING
        },
    },
    Row {
        name: "only the newest finished copies are kept",
        svc: Svc { count: 0, ..SVC },
        tasks: &[
            dead("f1", 1, 100_000),
            dead("f2", 1, 90_000),
            dead("f3", 1, 80_000),
            dead("f4", 1, 70_000),
            dead("f5", 1, 60_000),
            dead("f6", 1, 50_000),
            dead("f7", 1, 40_000),
            dead("f8", 1, 30_000),
            dead("f9", 1, 20_000),
            dead("fa", 1, 10_000),
            dead("fb", 1, 9_000),
            dead("fc", 1, 8_000),
        ],
        draining: &[],
        want: Want {
            forget: &["f1", "f2"],
            ..NOTHING
        },
    },
];

#[test]
fn every_row_of_the_service_table_plans_what_it_says() {
    for row in ROWS {
        check(row);
    }
}

#[test]
fn a_scale_only_push_keeps_a_stable_service_running_and_a_new_template_updates() {
    let mut svc = service(&SVC);
    let mut scaled = svc.spec().clone();
    scaled.count = 2;
    svc.push(scaled, "scaled", NOW);
    assert_eq!((svc.version, svc.state), (2, ServiceState::Running));
    let mut rolled = svc.spec().clone();
    rolled.task.image = "app:2".into();
    svc.push(rolled, "updated", NOW);
    assert_eq!((svc.version, svc.state), (3, ServiceState::Updating));
    assert_eq!(svc.rollback_target(false).map(|v| v.version), Some(2));
}
