//! `GET /openapi.json` cannot drift from the manager: its route list is the router's (every
//! documented operation is served, every other method on a documented path is 405), and the real
//! answers of every route, on a running mock cluster, validate against the document's schemas
//! (JSON bodies whole, streamed NDJSON line by line) with a JSON Schema 2020-12 validator.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// Every operation of the manager, written out: (method, path template, planned). Planned ones
/// (services, DESIGN.md section 12) are documented before the binary serves them.
const ROUTES: &[(&str, &str, bool)] = &[
    ("get", "/tasks", false),
    ("post", "/tasks", false),
    ("get", "/tasks/{id}", false),
    ("delete", "/tasks/{id}", false),
    ("get", "/tasks/{id}/logs", false),
    ("post", "/tasks/{id}/exec", false),
    ("get", "/nodes", false),
    ("post", "/nodes/{name}/eligibility", false),
    ("post", "/nodes/{name}/drain", false),
    ("post", "/nodes/{name}/heartbeat", false),
    ("post", "/nodes/{name}/reports", false),
    ("get", "/nodes/{name}/mesh", false),
    ("get", "/events", false),
    ("get", "/health", false),
    ("get", "/metrics", false),
    ("get", "/openapi.json", false),
    ("get", "/ui", false),
    ("get", "/ui/app.js", false),
    ("get", "/services", true),
    ("post", "/services", true),
    ("get", "/services/{name}", true),
    ("put", "/services/{name}", true),
    ("delete", "/services/{name}", true),
    ("post", "/services/{name}/rollback", true),
    ("get", "/catalog/services", false),
    ("get", "/catalog/services/{name}", false),
    ("get", "/catalog/mesh", false),
];

/// One answer of the manager.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    /// The `Allow` header, if any.
    allow: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// True for the router's own 404, which means no route matched at all.
    fn is_no_route(&self) -> bool {
        self.status == 404
            && self.json()["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no route for"))
    }
}

/// One request through curl (streams are cut after `max` seconds, keeping what arrived).
fn call(base: &str, method: &str, path: &str, body: Option<&Value>, max: f64) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-X",
        &method.to_uppercase(),
        "--max-time",
        &max.to_string(),
    ])
    .args(["-o", out_file.to_str().unwrap()])
    .args(["-w", "%{http_code} %{content_type}"])
    .args(["-D", dir.path().join("headers").to_str().unwrap()]);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(b.to_string());
    }
    let out = cmd.arg(format!("{base}{path}")).output().unwrap();
    let meta = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, content_type) = meta.split_once(' ').unwrap_or((&meta, ""));
    let headers = std::fs::read_to_string(dir.path().join("headers")).unwrap_or_default();
    let allow = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("allow: ")
                .or_else(|| l.strip_prefix("Allow: "))
        })
        .map(|v| v.trim().to_string());
    Answer {
        status: status.parse().unwrap_or(0),
        content_type: content_type.to_string(),
        body: std::fs::read(&out_file).unwrap_or_default(),
        allow,
    }
}

/// The document, and a validator for any of its schemas.
struct Doc(Value);

impl Doc {
    fn validate(&self, schema: &Value, value: &Value, what: &str) {
        // The schema's `$ref`s point into `#/components`, so the root the validator sees carries
        // the document's components beside the schema itself.
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.0["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: the answer does not match the document: {errors:#?}\n{value:#}"
        );
    }

    /// Checks one answer of `method path_template` against the document: its status is
    /// documented, its content type is one of that status's, and its body matches the schema.
    fn check(&self, method: &str, tpl: &str, a: &Answer) {
        let what = format!("{} {tpl} -> {}", method.to_uppercase(), a.status);
        let resp = &self.0["paths"][tpl][method]["responses"][a.status.to_string()];
        assert!(resp.is_object(), "{what}: status not documented");
        let media = a.content_type.split(';').next().unwrap().trim();
        let content = &resp["content"][media];
        assert!(
            content.is_object(),
            "{what}: content type {media:?} not documented (documented: {})",
            resp["content"]
        );
        if media == "application/json" {
            let body: Value =
                serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
            self.validate(&content["schema"], &body, &what);
        } else if media == "application/x-ndjson" {
            let item = &content["x-ndjson-item"];
            let text = String::from_utf8_lossy(&a.body);
            for line in text.lines().filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{what}: line {line:?}: {e}"));
                self.validate(item, &v, &what);
            }
        }
    }
}

/// A path template with its parameters filled in.
fn fill(tpl: &str, id: &str, node: &str) -> String {
    tpl.replace("{id}", id).replace(
        "{name}",
        if tpl.starts_with("/nodes") {
            node
        } else {
            "web"
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_answers_as_the_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::localize(
        include_str!("../config/mock-cluster.toml"),
        dir.path(),
        true,
    );
    let running = common::start(&cfg).await;
    let base = running.manager_url().unwrap();
    let api = common::Api::new(&base);
    let b = base.clone();
    let get = move |path: &str| call(&b, "get", path, None, 10.0);

    let served = get("/openapi.json");
    assert_eq!(served.status, 200);
    let doc = Doc(served.json());
    assert_eq!(doc.0["openapi"], "3.1.0");
    assert_eq!(doc.0["info"]["version"], env!("CARGO_PKG_VERSION"));

    // The document's operations are exactly the table above.
    let mut documented = BTreeSet::new();
    for (path, ops) in doc.0["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let planned = op["x-poseidon-planned"] == true;
            documented.insert((method.clone(), path.clone(), planned));
        }
    }
    let table: BTreeSet<(String, String, bool)> = ROUTES
        .iter()
        .map(|(m, p, planned)| (m.to_string(), p.to_string(), *planned))
        .collect();
    assert_eq!(documented, table, "the document's operations vs the table");
    // Internal operations are the cluster protocol's routes: the workers' heartbeats, reports and
    // routing-mesh table.
    let internal: Vec<&str> = ROUTES
        .iter()
        .filter(|(m, p, _)| doc.0["paths"][*p][*m]["x-internal"] == true)
        .map(|(_, p, _)| *p)
        .collect();
    assert_eq!(
        internal,
        [
            "/nodes/{name}/heartbeat",
            "/nodes/{name}/reports",
            "/nodes/{name}/mesh"
        ]
    );

    common::wait_for("three nodes up", WAIT, || async {
        let (_, v) = api.get("/nodes").await;
        (v.as_array()
            .is_some_and(|n| n.iter().filter(|n| n["state"] == "up").count() == 3))
        .then_some(())
    })
    .await;

    // The router serves every documented operation and no other method on its paths.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for (method, tpl, planned) in ROUTES {
        let a = call(
            &base,
            method,
            &fill(tpl, unknown, "m1"),
            Some(&json!({})),
            2.0,
        );
        if *planned {
            continue;
        }
        assert!(
            !a.is_no_route() && a.status != 405,
            "{method} {tpl} is documented but the router answers {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    for (path, ops) in doc.0["paths"].as_object().unwrap() {
        if ROUTES.iter().any(|(_, p, planned)| p == path && *planned) {
            continue;
        }
        for method in ["get", "post", "put", "delete", "patch"] {
            if ops.get(method).is_none() {
                let a = call(&base, method, &fill(path, unknown, "m1"), None, 2.0);
                assert_eq!(
                    a.status, 405,
                    "{method} {path} is not documented but answers"
                );
                let error = json!({"$ref": "#/components/schemas/Error"});
                doc.validate(&error, &a.json(), &format!("{method} {path} -> 405"));
                // RFC 9110: a 405 names the methods the path has (found by schemathesis).
                let mut want: Vec<String> = ops
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|m| m.to_uppercase())
                    .collect();
                want.sort();
                let allow = a.allow.clone().unwrap_or_default();
                let mut got: Vec<&str> = allow.split(", ").collect();
                got.sort();
                assert_eq!(got, want, "{method} {path}: the Allow header");
            }
        }
    }

    // A follower of /events for the whole run below, validated line by line at the end.
    let follower = {
        let b = base.clone();
        std::thread::spawn(move || call(&b, "get", "/events", None, 8.0))
    };
    std::thread::sleep(Duration::from_millis(300));

    // Real answers of every route, good and bad, validated against the document.
    let mut checked: BTreeSet<(String, String, u16)> = BTreeSet::new();
    let mut check = |method: &str, tpl: &str, a: Answer| -> Answer {
        doc.check(method, tpl, &a);
        checked.insert((method.to_string(), tpl.to_string(), a.status));
        a
    };
    let post = |path: &str, body: &Value| call(&base, "post", path, Some(body), 10.0);
    let b = base.clone();
    let delete = move |path: &str| call(&b, "delete", path, None, 10.0);

    check("get", "/health", get("/health"));
    check("get", "/metrics", get("/metrics"));
    check("get", "/ui", get("/ui"));
    check("get", "/ui/app.js", get("/ui/app.js"));
    check("get", "/openapi.json", get("/openapi.json"));
    check("get", "/nodes", get("/nodes"));
    let spec = json!({"name": "web", "image": "busybox:latest", "cmd": ["sleep", "3600"],
        "env": {"A": "b"}, "cpus": 0.1, "memory": "16m", "ports": ["8080"],
        "restart_policy": {"policy": "on-failure", "max_restarts": 2, "backoff": "1s"},
        "health_check": {"type": "tcp", "port": 8080, "interval": "5s"},
        "labels": {"team": "a"}, "constraints": [{"operator": "distinct_hosts"}],
        "volumes": [{"source": "data", "target": "/data"}]});
    let one = check("post", "/tasks", post("/tasks", &spec));
    assert_eq!(one.status, 201);
    let id = one.json()["id"].as_str().unwrap().to_string();
    let many = check(
        "post",
        "/tasks",
        post(
            "/tasks",
            &json!([{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]),
        ),
    );
    assert_eq!(many.status, 201);
    check("post", "/tasks", post("/tasks", &json!({"nope": 1})));
    api.wait_state(&id, "running", WAIT).await;
    check("get", "/tasks", get("/tasks"));
    check("get", "/tasks", get("/tasks?state=running&node=m1"));
    check("get", "/tasks", get("/tasks?state=bogus"));
    check("get", "/tasks/{id}", get(&format!("/tasks/{id}")));
    check("get", "/tasks/{id}", get("/tasks/not-a-uuid"));
    check("get", "/tasks/{id}", get(&format!("/tasks/{unknown}")));
    check(
        "get",
        "/tasks/{id}/logs",
        get(&format!("/tasks/{id}/logs?tail=5")),
    );
    let followed = call(
        &base,
        "get",
        &format!("/tasks/{id}/logs?follow=true"),
        None,
        1.0,
    );
    assert!(followed.content_type.starts_with("application/x-ndjson"));
    check("get", "/tasks/{id}/logs", followed);
    check(
        "get",
        "/tasks/{id}/logs",
        get(&format!("/tasks/{unknown}/logs")),
    );
    let exec = json!({"cmd": ["echo", "hi"], "timeout": "5s"});
    check(
        "post",
        "/tasks/{id}/exec",
        post(&format!("/tasks/{id}/exec"), &exec),
    );
    check(
        "post",
        "/tasks/{id}/exec",
        post(&format!("/tasks/{id}/exec"), &json!({"cmd": []})),
    );
    check(
        "post",
        "/nodes/{name}/eligibility",
        post("/nodes/m1/eligibility", &json!({"eligible": false})),
    );
    check(
        "post",
        "/nodes/{name}/eligibility",
        post("/nodes/m1/eligibility", &json!({"eligible": 3})),
    );
    check(
        "post",
        "/nodes/{name}/eligibility",
        post("/nodes/zz/eligibility", &json!({"eligible": true})),
    );
    check(
        "post",
        "/nodes/{name}/drain",
        post("/nodes/m2/drain", &json!({})),
    );
    check(
        "post",
        "/nodes/{name}/drain",
        post("/nodes/zz/drain", &json!({})),
    );
    check(
        "post",
        "/nodes/{name}/eligibility",
        post("/nodes/m2/eligibility", &json!({"eligible": true})),
    );
    let beat = json!({"name": "extra", "address": "http://127.0.0.1:9", "capacity": {"cpus": 1.0, "memory": 1024},
        "stats": {"cpu_percent": 0.0, "load_one": 0.0, "memory_used": 0, "memory_total": 0,
                  "disk_available": 0, "disk_total": 0, "tasks": 0},
        "healthy": true, "problem": null, "tasks": [], "full": true, "labels": {"zone": "a"}});
    check(
        "post",
        "/nodes/{name}/heartbeat",
        post("/nodes/extra/heartbeat", &beat),
    );
    check(
        "post",
        "/nodes/{name}/heartbeat",
        post("/nodes/other/heartbeat", &beat),
    );
    check(
        "post",
        "/nodes/{name}/reports",
        post("/nodes/extra/reports", &json!({"tasks": []})),
    );
    check(
        "post",
        "/nodes/{name}/reports",
        post("/nodes/extra/reports", &json!({"tasks": 1})),
    );
    check("get", "/nodes", get("/nodes"));

    // The catalog and the routing mesh's table, with a published service that has an endpoint.
    let publish = common::free_port();
    let service = json!({"name": "web", "count": 1,
        "task": {"image": "busybox:latest", "cmd": ["sleep", "3600"], "ports": ["80"]},
        "publish": [{"port": publish, "target": 80, "mode": "http"}]});
    assert_eq!(api.post("/services", &service).await.0, 201);
    common::wait_for("an endpoint of web", WAIT, || async {
        let (_, v) = api.get("/catalog/services/web").await;
        (v.as_array().is_some_and(|e| e.len() == 1)).then_some(())
    })
    .await;
    check("get", "/catalog/services", get("/catalog/services"));
    check("get", "/catalog/services", get("/catalog/services?index=x"));
    check(
        "get",
        "/catalog/services/{name}",
        get("/catalog/services/web"),
    );
    check(
        "get",
        "/catalog/services/{name}",
        get("/catalog/services/web?index=1&wait=20ms"),
    );
    check(
        "get",
        "/catalog/services/{name}",
        get("/catalog/services/nope"),
    );
    check(
        "get",
        "/catalog/services/{name}",
        get("/catalog/services/Not_A_Label"),
    );
    let mesh = check("get", "/catalog/mesh", get("/catalog/mesh"));
    assert!(
        mesh.json()[0]["entries"][0]["endpoints"][0]["port"].is_u64(),
        "the mesh table has web's endpoint: {}",
        mesh.json()
    );
    check("get", "/catalog/mesh", get("/catalog/mesh?wait=forever"));
    check("get", "/nodes/{name}/mesh", get("/nodes/m1/mesh"));
    check("get", "/nodes/{name}/mesh", get("/nodes/m1/mesh?index=-1"));
    assert_eq!(api.delete("/services/web").await.0, 200);

    // 410: the history does not reach back to index 0 (it is kept only while someone follows).
    check("get", "/events", get("/events?index=0"));
    check("get", "/events", get("/events?index=x"));
    check("delete", "/tasks/{id}", delete(&format!("/tasks/{id}")));
    api.wait_state(&id, "completed", WAIT).await;
    check(
        "delete",
        "/tasks/{id}",
        delete(&format!("/tasks/{id}?purge=true")),
    );
    check(
        "delete",
        "/tasks/{id}",
        delete(&format!("/tasks/{id}?purge=maybe")),
    );
    let events = follower.join().unwrap();
    let events_body = String::from_utf8_lossy(&events.body).into_owned();
    check("get", "/events", events);
    for kind in ["task", "node"] {
        assert!(
            events_body.contains(&format!(r#""kind":"{kind}""#)),
            "{events_body}"
        );
    }

    // Services: validated once the binary serves them; until then the router has no route.
    let services = get("/services");
    if services.is_no_route() {
        eprintln!("NOTE: /services is documented as planned and not served by this build");
    } else {
        check("get", "/services", services);
    }

    // Every served operation had a success validated, and errors of each kind were seen.
    for (method, tpl, planned) in ROUTES {
        if *planned {
            continue;
        }
        assert!(
            checked
                .iter()
                .any(|(m, p, s)| m == method && p == tpl && (200..300).contains(s)),
            "{method} {tpl}: no success answer was validated"
        );
    }
    for status in [400, 404] {
        assert!(
            checked.iter().any(|(_, _, s)| *s == status),
            "no {status} seen"
        );
    }

    running.stop().await;
}
