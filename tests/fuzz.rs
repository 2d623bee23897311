//! Bounded fuzzing in CI: 10,000+ mutated JSON bodies, ids and query strings sent over HTTP to a
//! manager and a worker, and 10,000+ mutated config files given to the parser. A panic hook counts
//! panics anywhere in the process (tokio would turn a handler's panic into a 500 and carry on), and
//! the test asserts none, no 5xx answer, and that only the accepted submissions changed the state.
//! The generator is a seeded xorshift, so a failure names its seed and case and can be replayed.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{localize, start, Api};
use hyper::Method;
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

fn install_panic_counter() -> Arc<AtomicUsize> {
    let panics = Arc::new(AtomicUsize::new(0));
    let p = panics.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        p.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));
    panics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mutated_requests_get_clear_answers_and_no_panic() {
    let panics = install_panic_counter();
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\nheartbeat_ttl = \"30s\"\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\ncapacity = { cpus = 100000.0, memory = \"100000g\" }\n",
        dir.path(),
        false,
    );
    let run = start(&cfg).await;
    let manager = Api::new(run.manager_url().unwrap());
    let worker = Api::new(format!("http://{}", run.workers[0].addr));
    let seed = std::env::var("POSEIDON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15u64);
    let cases: usize = std::env::var("POSEIDON_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut r = Rng(seed);
    let seeds = seeds();
    let ids = [
        "",
        "x",
        "3f2c1a7e-0000-4000-8000-00000000000",
        "3f2c1a7e-0000-4000-8000-000000000001",
        "%00",
        "..",
        "a/b",
        "😀",
    ];
    let queries = [
        "",
        "?purge=true",
        "?purge=maybe",
        "?state=running",
        "?state=nope",
        "?tail=5",
        "?tail=-1",
        "?node=%ff",
        "?=&&=",
    ];
    let mut accepted_manager = 0usize;
    let mut accepted_worker = 0usize;
    let mut purged_manager = 0usize;
    let mut statuses = std::collections::BTreeMap::new();
    for case in 0..cases {
        let target = if r.below(4) == 0 { &worker } else { &manager };
        let (method, path, payload) = match r.below(10) {
            0..=6 => (
                Method::POST,
                "/tasks".to_string(),
                Some(body(&mut r, &seeds)),
            ),
            7 => (
                Method::GET,
                format!("/tasks/{}{}", r.pick(&ids), r.pick(&queries)),
                None,
            ),
            8 => (
                Method::DELETE,
                format!("/tasks/{}{}", r.pick(&ids), r.pick(&queries)),
                None,
            ),
            _ => (
                r.pick(&[Method::GET, Method::PUT, Method::PATCH]).clone(),
                format!("/tasks{}", r.pick(&queries)),
                Some(body(&mut r, &seeds)),
            ),
        };
        let (status, v) = target.raw(method.clone(), &path, payload.clone()).await;
        *statuses.entry(status).or_insert(0usize) += 1;
        let shown = String::from_utf8_lossy(payload.as_deref().unwrap_or_default())
            .chars()
            .take(300)
            .collect::<String>();
        assert!(
            status < 500,
            "seed {seed:#x} case {case}: {method} {path} {shown} -> {status} {v}"
        );
        if status >= 400 {
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "case {case}: {status} without an error message: {v}"
            );
        }
        if status == 200 && v.get("purged").is_some() && std::ptr::eq(target, &manager) {
            purged_manager += 1;
        }
        if status == 201 && method == Method::POST {
            let n = if v.is_array() {
                v.as_array().unwrap().len()
            } else {
                1
            };
            if std::ptr::eq(target, &worker) {
                accepted_worker += n;
            } else {
                accepted_manager += n;
            }
        }
    }
    eprintln!("{cases} cases, statuses {statuses:?}, accepted {accepted_manager} by the manager and {accepted_worker} by the worker");
    assert_eq!(panics.load(Ordering::SeqCst), 0, "panics in the process");
    // Only what was accepted is stored: refused input left no trace.
    let held = manager.ok("/tasks").await.as_array().unwrap().len();
    assert_eq!(
        held,
        accepted_manager - purged_manager,
        "accepted {accepted_manager}, purged {purged_manager}"
    );
    assert!(
        statuses.get(&201).copied().unwrap_or(0) > 100,
        "the fuzzer should also make valid tasks: {statuses:?}"
    );
    assert!(
        statuses.get(&400).copied().unwrap_or(0) > 1000,
        "{statuses:?}"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    run.stop().await;
}

#[test]
fn ten_thousand_mutated_config_files_get_an_error_or_a_config_and_no_panic() {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/three-workers.toml"
    ))
    .unwrap();
    let lines: Vec<&str> = base.lines().collect();
    let tokens = [
        "\"\"",
        "0",
        "-1",
        "1e999",
        "\"5x\"",
        "\"-1s\"",
        "\"0ms\"",
        "\"99999999999h\"",
        "true",
        "[1, \"a\"]",
        "{ cpus = -1 }",
        "{ cpus = 1e308, memory = \"1t\" }",
        "\"podman\"",
        "\"fastest\"",
        "\"256.1.1.1:80\"",
        "\"127.0.0.1:99999\"",
        "\"[::1]:0\"",
        "\"http://\"",
        "\"a\\u0000b\"",
        "\"\u{fffd}\"",
        "[[worker]]",
        "[manager]",
        "=",
    ];
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let mut errors = 0;
    for case in 0..10_000 {
        let mut doc: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        for _ in 0..=r.below(3) {
            let i = r.below(doc.len());
            match r.below(5) {
                0 => {
                    doc.remove(i);
                }
                1 => {
                    if let Some((k, _)) = doc[i].clone().split_once('=') {
                        doc[i] = format!("{k}= {}", r.pick(&tokens));
                    }
                }
                2 => doc.insert(
                    i,
                    format!(
                        "{} = {}",
                        r.pick(&["colour", "name", "listen", "scheduler", "capacity"]),
                        r.pick(&tokens)
                    ),
                ),
                3 => {
                    let cut = r.below(doc[i].len() + 1);
                    doc[i] = doc[i].chars().take(cut).collect();
                }
                _ => {
                    let j = r.below(doc.len());
                    doc.swap(i, j);
                }
            }
            if doc.is_empty() {
                doc.push(String::new());
            }
        }
        let text = doc.join("\n");
        let out = std::panic::catch_unwind(|| poseidon::config::parse(&text, "fuzz.toml"));
        match out {
            Err(_) => panic!("case {case}: the config parser panicked on:\n{text}"),
            Ok(Err(e)) => {
                errors += 1;
                let msg = e.to_string();
                assert!(
                    msg.starts_with("fuzz.toml"),
                    "case {case}: the error names the file: {msg}"
                );
                assert_eq!(msg.lines().count(), 1, "case {case}: one line: {msg}");
            }
            Ok(Ok(_)) => {}
        }
    }
    assert!(errors > 5_000, "most mutations are mistakes: {errors}");
}
