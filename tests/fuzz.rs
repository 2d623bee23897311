//! Bounded fuzzing in CI: mutated JSON bodies, methods, paths, ids and query strings sent over HTTP
//! to every route of the manager's API (tasks, logs, nodes, health, metrics, and the cluster
//! protocol's heartbeats and reports) and of a worker's (tasks, logs, stats, health, and the
//! manager's assignments); the config parser has its own fuzzer in `fuzz_config.rs`. A panic hook
//! counts panics anywhere in the process (tokio would turn a handler's panic into a 500 and carry on), and
//! the tests assert none, no 5xx answer, and that only accepted submissions and assignments are
//! stored. The generator is a seeded xorshift, so a failure names its seed and case and can be
//! replayed (`POSEIDON_FUZZ_SEED`, `POSEIDON_FUZZ_CASES`).
//!
//! Over the house's ~700 lines on purpose: one mutation engine and one seed table per API, kept
//! together so every route's fuzzing shares the same checks (no panic, no 5xx, stored equals
//! accepted).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{localize, start, wait_for, Api, Standalone};
use hyper::Method;
use poseidon_runtimes::mock::MockRuntime;
use serde_json::{json, Map, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn seeds() -> Vec<Value> {
    vec![
        json!({"name": "web", "image": "nginx:1.27", "cmd": ["nginx", "-g", "daemon off;"], "env": {"A": "1"},
               "cpus": 0.5, "memory": "256m", "ports": ["8080:80", {"container_port": 53, "protocol": "udp"}],
               "restart_policy": {"policy": "on-failure", "max_restarts": 3, "backoff": "1s"},
               "health_check": {"type": "http", "port": 80, "path": "/", "interval": "10s", "retries": 3},
               "labels": {"team": "a"}, "stop_after_disconnect": "3s"}),
        json!({"name": "job", "image": "busybox", "cmd": "echo hi", "restart_policy": "always",
               "health_check": {"type": "exec", "cmd": ["true"]}}),
        json!({"ID": "3f2c1a7e-0000-4000-8000-000000000001", "State": 1, "Timestamp": "2024-01-01T00:00:00Z",
               "Task": {"ID": "3f2c1a7e-0000-4000-8000-000000000001", "Name": "go", "Image": "busybox", "Cpu": 0.1,
                        "Memory": 1048576000, "Disk": 1, "ExposedPorts": {"80/tcp": {}},
                        "PortBindings": {"80/tcp": "8080"}, "RestartPolicy": "on-failure", "HealthCheck": "/health"}}),
        json!([{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox", "cpus": 0.1}]),
    ]
}

fn random_value(r: &mut Rng, depth: u32) -> Value {
    let scalars = [
        json!(null),
        json!(true),
        json!(false),
        json!(0),
        json!(-1),
        json!(1),
        json!(65535),
        json!(65536),
        json!(-9_223_372_036_854_775_808i64),
        json!(18_446_744_073_709_551_615u64),
        json!(1e308),
        json!(-1e-308),
        json!(0.5),
        json!(""),
        json!(" "),
        json!("256m"),
        json!("-5g"),
        json!("99999999999999999999g"),
        json!("1.5.5"),
        json!("nginx:"),
        json!(":latest"),
        json!("UPPER/Case"),
        json!("a".repeat(300)),
        json!("\u{0}\u{7f}\u{fffd}é漢"),
        json!("10s"),
        json!("-1s"),
        json!("999999999h"),
        json!("on-failure"),
        json!("tcp"),
        json!("80:80:80"),
        json!("0:0"),
        json!("/"),
        json!("../../etc"),
        json!("3f2c1a7e-0000-4000-8000-000000000001"),
        json!("running"),
        json!("run"),
        json!("stop"),
        json!("w1"),
        json!("http://127.0.0.1:1"),
        json!(4_294_967_296u64),
    ];
    if depth > 2 || r.below(4) > 0 {
        return r.pick(&scalars).clone();
    }
    if r.below(2) == 0 {
        Value::Array(
            (0..r.below(4))
                .map(|_| random_value(r, depth + 1))
                .collect(),
        )
    } else {
        let keys = [
            "name",
            "image",
            "cmd",
            "type",
            "port",
            "x",
            "Task",
            "policy",
            "container_port",
            "",
            "tasks",
            "id",
            "generation",
            "state",
            "desired",
            "spec",
            "full",
            "address",
            "assignments",
        ];
        let mut m = Map::new();
        for _ in 0..r.below(4) {
            m.insert(r.pick(&keys).to_string(), random_value(r, depth + 1));
        }
        Value::Object(m)
    }
}

/// Replaces, removes or adds one field somewhere in `v`.
fn mutate(r: &mut Rng, v: &mut Value, depth: u32) {
    match v {
        Value::Object(m) if !m.is_empty() && (depth < 3 && r.below(3) > 0) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = r.pick(&keys).clone();
            match r.below(4) {
                0 => {
                    m.remove(&k);
                }
                1 => {
                    m.insert(k, random_value(r, 0));
                }
                2 => {
                    m.insert(format!("{k}_extra"), random_value(r, 0));
                }
                _ => mutate(r, m.get_mut(&k).unwrap(), depth + 1),
            }
        }
        Value::Array(a) if !a.is_empty() && r.below(2) == 0 => {
            let i = r.below(a.len());
            mutate(r, &mut a[i], depth + 1);
        }
        other => *other = random_value(r, 0),
    }
}

fn body(r: &mut Rng, seeds: &[Value]) -> Vec<u8> {
    let mut v = r.pick(seeds).clone();
    for _ in 0..=r.below(3) {
        mutate(r, &mut v, 0);
    }
    let mut bytes = serde_json::to_vec(&v).unwrap();
    match r.below(8) {
        0 if !bytes.is_empty() => bytes.truncate(r.below(bytes.len())),
        1 if !bytes.is_empty() => {
            let i = r.below(bytes.len());
            bytes[i] = (r.next() & 0xff) as u8;
        }
        2 => bytes = (0..r.below(64)).map(|_| (r.next() & 0xff) as u8).collect(),
        _ => {}
    }
    bytes
}

/// Panics anywhere in the process, counted by a hook installed once.
static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The fuzz tests run one at a time, so that each counts only its own panics.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn install_panic_counter() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

const IDS: [&str; 8] = [
    "",
    "x",
    "3f2c1a7e-0000-4000-8000-00000000000",
    "3f2c1a7e-0000-4000-8000-000000000001",
    "%00",
    "..",
    "a/b",
    "😀",
];

const QUERIES: [&str; 10] = [
    "",
    "?purge=true",
    "?purge=maybe",
    "?state=running",
    "?state=nope",
    "?tail=5",
    "?tail=-1",
    "?tail=all",
    "?node=%ff",
    "?=&&=",
];

const NAMES: [&str; 7] = ["w1", "fz", "", "a/b", "%00", "😀", "UPPER.case-name_1"];

fn any_method(r: &mut Rng) -> Method {
    r.pick(&[
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ])
    .clone()
}

/// A mutated body built from the seeds of one route.
fn mutated(r: &mut Rng, seeds: &[Value]) -> Vec<u8> {
    body(r, seeds)
}

/// One request to the manager: every route, mostly with its own method and a body mutated from that
/// route's seeds, sometimes with another method, a stray query or a path that only looks like one.
fn manager_request(
    r: &mut Rng,
    tasks: &[Value],
    beats: &[Value],
    reports: &[Value],
) -> (Method, String, Option<Vec<u8>>) {
    let q = *r.pick(&QUERIES);
    match r.below(20) {
        0..=7 => (Method::POST, "/tasks".into(), Some(mutated(r, tasks))),
        8 => (Method::GET, format!("/tasks/{}{q}", r.pick(&IDS)), None),
        9 => (Method::DELETE, format!("/tasks/{}{q}", r.pick(&IDS)), None),
        10 => (
            Method::GET,
            format!("/tasks/{}/logs{q}", r.pick(&IDS)),
            None,
        ),
        11 => (
            Method::GET,
            format!("/{}{q}", r.pick(&["tasks", "nodes", "health", "metrics"])),
            None,
        ),
        12..=14 => {
            // A heartbeat whose body mostly names the node of its path, as the protocol wants.
            let name = *r.pick(&NAMES);
            let mut hb = r.pick(beats).clone();
            if r.below(3) > 0 {
                hb["name"] = json!(name);
            }
            let mut bytes = serde_json::to_vec(&hb).unwrap();
            if r.below(2) == 0 {
                bytes = mutated(r, std::slice::from_ref(&hb));
            }
            (
                Method::POST,
                format!("/nodes/{name}/heartbeat{q}"),
                Some(bytes),
            )
        }
        15..=16 => (
            Method::POST,
            format!("/nodes/{}/reports{q}", r.pick(&NAMES)),
            Some(mutated(r, reports)),
        ),
        17 => {
            let path = r.pick(&[
                "/tasks",
                "/tasks/x",
                "/tasks/x/logs",
                "/nodes",
                "/nodes/w1/heartbeat",
                "/nodes/w1/reports",
                "/nodes/w1/eligibility",
                "/nodes/w1/drain",
                "/health",
                "/metrics",
            ]);
            (any_method(r), format!("{path}{q}"), Some(mutated(r, beats)))
        }
        _ => {
            let path = r.pick(&[
                "/nodes/w1",
                "/nodes/w1/heartbeat/x",
                "/nodes/w1/drain",
                "/assignments",
                "/",
                "/tasks/x/logs/y",
                "//tasks",
                "/tasks%2Fx",
            ]);
            (any_method(r), format!("{path}{q}"), Some(mutated(r, tasks)))
        }
    }
}

/// One request to a worker, in the same way as [`manager_request`].
fn worker_request(
    r: &mut Rng,
    tasks: &[Value],
    assignments: &[Value],
    known: &[String],
) -> (Method, String, Option<Vec<u8>>) {
    let q = *r.pick(&QUERIES);
    // Half the id-bearing requests name a task the worker holds, so stops and purges happen.
    let id = if !known.is_empty() && r.below(2) == 0 {
        r.pick(known).clone()
    } else {
        r.pick(&IDS).to_string()
    };
    match r.below(20) {
        0..=5 => (Method::POST, "/tasks".into(), Some(mutated(r, tasks))),
        6..=10 => (
            Method::POST,
            format!("/assignments{q}"),
            Some(mutated(r, assignments)),
        ),
        11 => (Method::GET, format!("/tasks/{id}{q}"), None),
        12..=13 => (Method::DELETE, format!("/tasks/{id}{q}"), None),
        14 => (Method::GET, format!("/tasks/{id}/logs{q}"), None),
        15 => (
            Method::GET,
            format!("/{}{q}", r.pick(&["tasks", "stats", "health"])),
            None,
        ),
        16..=17 => {
            let path = r.pick(&[
                "/tasks",
                "/tasks/x",
                "/tasks/x/logs",
                "/assignments",
                "/stats",
                "/health",
            ]);
            (
                any_method(r),
                format!("{path}{q}"),
                Some(mutated(r, assignments)),
            )
        }
        _ => {
            let path = r.pick(&[
                "/nodes/w1/heartbeat",
                "/assignments/x",
                "/",
                "/tasks/x/y/z",
                "/metrics",
            ]);
            (any_method(r), format!("{path}{q}"), Some(mutated(r, tasks)))
        }
    }
}

fn seed_and_cases() -> (u64, usize) {
    let seed = std::env::var("POSEIDON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let cases = std::env::var("POSEIDON_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    (seed, cases)
}

/// Sends one request and checks the answer: no 5xx, and every error carries a message.
async fn send(
    api: &Api,
    seed: u64,
    case: usize,
    (method, path, payload): &(Method, String, Option<Vec<u8>>),
    statuses: &mut BTreeMap<u16, usize>,
) -> (u16, Value) {
    let (status, v) = api.raw(method.clone(), path, payload.clone()).await;
    *statuses.entry(status).or_insert(0) += 1;
    let shown = String::from_utf8_lossy(payload.as_deref().unwrap_or_default())
        .chars()
        .take(300)
        .collect::<String>();
    if relay_to_a_dead_node(method, path, status, &v) {
        eprintln!("let through (see relay_to_a_dead_node): {method} {path} -> {status} {v}");
    } else {
        assert!(
            status < 500,
            "seed {seed:#x} case {case}: {method} {path} {shown} -> {status} {v}"
        );
    }
    if status >= 400 && *method != Method::HEAD {
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "case {case}: {method} {path} -> {status} without an error message: {v}"
        );
    }
    (status, v)
}

/// The one 5xx the manager may answer without a fault of its own: `GET /tasks/{id}/logs` relays to
/// the task's node, and when a fuzzed heartbeat has registered that node at a well-formed but dead
/// address, "cannot reach http://..." is a true 502. (The fuzzer found two faults here once: a bad
/// `?tail=` relayed unchecked, and heartbeats registering nodes at addresses that are not URLs;
/// both are 400s now, pinned by the two tests at the end of this file.)
fn relay_to_a_dead_node(method: &Method, path: &str, status: u16, v: &Value) -> bool {
    let error = v["error"].as_str().unwrap_or("");
    *method == Method::GET
        && route(path).ends_with("/logs")
        && status == 502
        && error.contains("cannot reach http://")
}

/// A request's path without its query.
fn route(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// The ids in a 201 answer to `POST /tasks`: one task, or an array of them.
fn created_ids(v: &Value) -> Vec<String> {
    let items = match v {
        Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    items
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_to_every_manager_route_get_clear_answers_and_no_panic() {
    let _alone = ONE_AT_A_TIME.lock().await;
    install_panic_counter();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\nheartbeat_ttl = \"30s\"\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\ncapacity = { cpus = 100000.0, memory = \"100000g\" }\n",
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let manager = Api::new(run.manager_url().unwrap());
    let (seed, cases) = seed_and_cases();
    let mut r = Rng(seed);
    let tasks = seeds();
    // The protocol's seeds are the real worker's own messages, so they track the wire format.
    let first = manager
        .submit(&json!({"name": "seed", "image": "busybox"}))
        .await;
    manager
        .wait_state(&first, "running", Duration::from_secs(10))
        .await;
    let beat = serde_json::to_value(run.workers[0].worker.heartbeat()).unwrap();
    assert_eq!(beat["tasks"].as_array().unwrap().len(), 1, "{beat}");
    let beats = vec![beat.clone(), {
        let mut partial = beat.clone();
        partial["full"] = json!(false);
        partial["tasks"] = json!([]);
        partial
    }];
    let reports = vec![json!({"tasks": beat["tasks"]}), json!({"tasks": []})];
    let mut accepted = BTreeSet::from([first]);
    let mut purged = BTreeSet::new();
    let mut statuses = BTreeMap::new();
    for case in 0..cases {
        let request = manager_request(&mut r, &tasks, &beats, &reports);
        let (status, v) = send(&manager, seed, case, &request, &mut statuses).await;
        let (method, _, _) = &request;
        // Only task creation answers 201, whatever spelling of the path reached it (`//tasks`).
        if status == 201 {
            accepted.extend(created_ids(&v));
        }
        if status == 200 && *method == Method::DELETE {
            if let Some(id) = v.get("purged").and_then(Value::as_str) {
                purged.insert(id.to_string());
            }
        }
    }
    eprintln!(
        "manager: {cases} cases, statuses {statuses:?}, {} accepted, {} purged",
        accepted.len(),
        purged.len()
    );
    assert_eq!(
        PANICS.load(Ordering::SeqCst) - panics_before,
        0,
        "panics in the process"
    );
    // Only what was accepted is stored: refused input left no trace.
    let held: BTreeSet<String> = manager
        .ok("/tasks")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = accepted.difference(&purged).cloned().collect();
    assert_eq!(
        (
            held.difference(&expected).collect::<Vec<_>>(),
            expected.difference(&held).collect::<Vec<_>>()
        ),
        (vec![], vec![]),
        "(stored but never accepted, accepted but not stored)"
    );
    for (status, at_least) in [(201, 100), (400, 1000), (404, 100), (405, 100), (200, 1000)] {
        assert!(
            statuses.get(&status).copied().unwrap_or(0) >= at_least,
            "the fuzzer should reach {status} at least {at_least} times: {statuses:?}"
        );
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_to_a_manager_with_acl_with_and_without_tokens_get_no_5xx_and_no_panic() {
    let _alone = ONE_AT_A_TIME.lock().await;
    install_panic_counter();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\nheartbeat_ttl = \"30s\"\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\ncapacity = { cpus = 100000.0, memory = \"100000g\" }\n[security]\nacl = true\n",
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let open = Api::new(run.manager_url().unwrap());
    let (s, boot) = open.post("/acl/bootstrap", &Value::Null).await;
    assert_eq!(s, 201, "{boot}");
    let manage = open.with_token(boot["token"].as_str().unwrap());
    let mut apis = vec![open.clone(), manage.clone()];
    for policy in ["read", "submit"] {
        let (s, t) = manage
            .post("/acl/tokens", &json!({ "policy": policy }))
            .await;
        assert_eq!(s, 201, "{t}");
        apis.push(open.with_token(t["token"].as_str().unwrap()));
    }
    let identity: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("w1").join("identity.json")).unwrap(),
    )
    .unwrap();
    apis.push(open.with_token(identity["node_token"].as_str().unwrap()));
    let (seed, cases) = seed_and_cases();
    let mut r = Rng(seed ^ 0xac1);
    let tasks = seeds();
    let beat = serde_json::to_value(run.workers[0].worker.heartbeat()).unwrap();
    let beats = vec![beat.clone()];
    let reports = vec![json!({"tasks": []})];
    let mut statuses = BTreeMap::new();
    for case in 0..cases / 2 {
        let request = manager_request(&mut r, &tasks, &beats, &reports);
        let api = r.pick(&apis).clone();
        send(&api, seed, case, &request, &mut statuses).await;
    }
    // Wrong tokens last: they soon trip the rate limit on failed authentication (429), which
    // would otherwise hide every other answer from this address.
    let bogus = open.with_token("0123456789abcdef.00");
    for case in 0..200 {
        let request = manager_request(&mut r, &tasks, &beats, &reports);
        send(&bogus, seed, case, &request, &mut statuses).await;
    }
    eprintln!(
        "manager with ACL: {} cases, statuses {statuses:?}",
        cases / 2 + 200
    );
    assert_eq!(
        PANICS.load(Ordering::SeqCst) - panics_before,
        0,
        "panics in the process"
    );
    for (status, at_least) in [(200, 100), (401, 100), (403, 100), (429, 1)] {
        assert!(
            statuses.get(&status).copied().unwrap_or(0) >= at_least,
            "the fuzzer should reach {status} at least {at_least} times: {statuses:?}"
        );
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_requests_to_every_worker_route_get_clear_answers_and_no_panic() {
    let _alone = ONE_AT_A_TIME.lock().await;
    install_panic_counter();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mock = MockRuntime::new();
    // A worker with no manager: whatever it holds came through its own API in this test.
    let solo = Standalone::start(&mock, dir.path(), None).await;
    let (seed, cases) = seed_and_cases();
    let cases = cases / 2;
    let mut r = Rng(seed ^ 0x5555);
    let tasks = seeds();
    let spec =
        poseidon::spec::parse_submission(br#"{"name": "a", "image": "busybox", "cpus": 0.01}"#)
            .unwrap()
            .spec;
    let assignment = |id: &str, generation: u64, desired: &str| json!({"id": id, "generation": generation, "spec": spec, "desired": desired});
    let assignments = vec![
        json!({"assignments": [assignment("3f2c1a7e-0000-4000-8000-000000000001", 1, "run")]}),
        json!({"assignments": [
            assignment("3f2c1a7e-0000-4000-8000-000000000002", 3, "run"),
            assignment("3f2c1a7e-0000-4000-8000-000000000003", 1, "stop"),
        ]}),
        json!({"assignments": []}),
    ];
    let mut accepted = BTreeSet::new();
    let mut purged = BTreeSet::new();
    let mut statuses = BTreeMap::new();
    for case in 0..cases {
        let known: Vec<String> = accepted.iter().cloned().collect();
        let request = worker_request(&mut r, &tasks, &assignments, &known);
        let (status, v) = send(&solo.api, seed, case, &request, &mut statuses).await;
        let (method, path, _) = &request;
        // Only task creation answers 201, whatever spelling of the path reached it (`//tasks`).
        if status == 201 {
            accepted.extend(created_ids(&v));
        }
        if status == 200 && *method == Method::POST && route(path) == "/assignments" {
            for a in v["accepted"].as_array().unwrap() {
                accepted.insert(a["id"].as_str().unwrap().to_string());
            }
        }
        if status == 200 && *method == Method::DELETE {
            if let Some(id) = v.get("purged").and_then(Value::as_str) {
                purged.insert(id.to_string());
                accepted.remove(id);
            }
        }
    }
    eprintln!(
        "worker: {cases} cases, statuses {statuses:?}, {} held, {} purged",
        accepted.len(),
        purged.len()
    );
    assert_eq!(
        PANICS.load(Ordering::SeqCst) - panics_before,
        0,
        "panics in the process"
    );
    let held: BTreeSet<String> = solo
        .api
        .ok("/tasks")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        (
            held.difference(&accepted).collect::<Vec<_>>(),
            accepted.difference(&held).collect::<Vec<_>>()
        ),
        (vec![], vec![]),
        "(stored but never accepted, accepted but not stored)"
    );
    for (status, at_least) in [(201, 25), (400, 500), (404, 50), (405, 50), (200, 500)] {
        assert!(
            statuses.get(&status).copied().unwrap_or(0) >= at_least,
            "the fuzzer should reach {status} at least {at_least} times: {statuses:?}"
        );
    }
    // Accepted assignments are real tasks: the worker runs them.
    wait_for(
        "some fuzzed task to run",
        Duration::from_secs(10),
        || async { (mock.running_count() > 0).then_some(()) },
    )
    .await;
    solo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tail_on_the_managers_logs_route_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\n",
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let id = api.submit(&json!({"name": "t", "image": "busybox"})).await;
    api.wait_state(&id, "running", Duration::from_secs(10))
        .await;
    let (status, v) = api.get(&format!("/tasks/{id}/logs?tail=-1")).await;
    assert_eq!(status, 400, "{v}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_with_an_address_that_is_not_a_url_is_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\n",
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let api = Api::new(run.manager_url().unwrap());
    let mut beat = serde_json::to_value(run.workers[0].worker.heartbeat()).unwrap();
    for address in [
        "",
        "/",
        "not a url",
        "ftp://127.0.0.1:1",
        "http://127.0.0.1",
        "http://127.0.0.1:1/x",
        "http://:80",
    ] {
        beat["name"] = json!("fz");
        beat["address"] = json!(address);
        let (status, v) = api.post("/nodes/fz/heartbeat", &beat).await;
        assert_eq!(status, 400, "address {address:?}: {v}");
    }
    run.stop().await;
}
