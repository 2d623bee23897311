//! Tests of both formats and of `validate`, through the public API only.

use super::*;

fn spec(name: &str, image: &str) -> TaskSpec {
    TaskSpec::new(
        name,
        SpecBody {
            image: image.into(),
            cmd: vec![],
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            cpus: 0.0,
            memory: 0,
            ports: vec![],
            restart_policy: RestartPolicy::default(),
            health_check: None,
            labels: BTreeMap::new(),
            stop_after_disconnect_ms: None,
            volumes: Vec::new(),
            pull: PullPolicy::Missing,
            constraints: vec![],
            ..SpecBody::default()
        },
    )
}

fn port(container_port: u16, host_port: Option<u16>, protocol: &str) -> Port {
    Port {
        container_port,
        host_port,
        protocol: protocol.into(),
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse(body: &str) -> Submission {
    parse_submission(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn error(body: &str) -> String {
    match parse_submission(body.as_bytes()) {
        Ok(sub) => panic!("{body} was accepted as {sub:?}"),
        Err(e) => e.to_string(),
    }
}

/// The seed's Go TaskEvent, verbatim.
const SEED_TASK1: &str = r#"{
   "ID": "6be4cb6b-61d1-40cb-bc7b-9cacefefa60c",
   "State": 2,
   "Task": {
       "State": 1,
       "ID": "21b23589-5d2d-4731-b5c9-a97e9832d021",
       "Name": "test-chapter-5",
       "Image": "strm/helloworld-http"
   }
}"#;

#[test]
fn good_poseidon_specs_map_to_the_expected_task_spec() {
    let full = r#"{
            "id": "21b23589-5d2d-4731-b5c9-a97e9832d021",
            "name": "web",
            "image": "nginx:1.27",
            "cmd": ["nginx", "-g", "daemon off;"],
            "env": {"A": "1", "B": "x=y"},
            "cpus": 0.5,
            "memory": "256m",
            "ports": [{"container_port": 80, "host_port": 8080}, "53/udp"],
            "restart_policy": {"policy": "on-failure", "max_restarts": 3, "backoff": "1s",
                               "max_backoff": "1m", "reset_after": "10m"},
            "health_check": {"type": "http", "port": 80, "path": "/healthz", "interval": "5s",
                             "timeout": "500ms", "retries": 2, "start_period": "30s"},
            "labels": {"team": "a"},
            "stop_after_disconnect": "3s"
        }"#;
    let mut full_spec = spec("web", "nginx:1.27");
    full_spec.cmd = vec!["nginx".into(), "-g".into(), "daemon off;".into()];
    full_spec.env = map(&[("A", "1"), ("B", "x=y")]);
    full_spec.cpus = 0.5;
    full_spec.memory = 268_435_456;
    full_spec.ports = vec![port(80, Some(8080), "tcp"), port(53, None, "udp")];
    full_spec.restart_policy = RestartPolicy {
        policy: RestartKind::OnFailure,
        max_restarts: Some(3),
        backoff_ms: 1_000,
        max_backoff_ms: 60_000,
        reset_after_ms: 600_000,
    };
    full_spec.health_check = Some(Box::new(HealthCheck {
        probe: Probe::Http {
            port: 80,
            path: "/healthz".into(),
        },
        interval_ms: 5_000,
        timeout_ms: 500,
        retries: 2,
        start_period_ms: 30_000,
    }));
    full_spec.labels = map(&[("team", "a")]);
    full_spec.stop_after_disconnect_ms = Some(3_000);

    let mut short_forms = spec("busybox", "busybox:latest");
    short_forms.cmd = vec!["sleep".into(), "60".into()];
    short_forms.env = map(&[("A", "1"), ("EMPTY", "")]);
    short_forms.memory = 1_073_741_824;
    short_forms.cpus = 2.0;
    short_forms.ports = vec![
        port(80, Some(8080), "tcp"),
        port(80, None, "tcp"),
        port(53, None, "udp"),
        port(53, Some(8053), "udp"),
    ];
    short_forms.restart_policy = RestartPolicy::of(RestartKind::Always);

    let mut tcp_check = spec("app", "localhost:5000/team/app:latest");
    tcp_check.ports = vec![port(9000, None, "tcp")];
    tcp_check.health_check = Some(Box::new(HealthCheck {
        probe: Probe::Tcp { port: 9000 },
        interval_ms: 10_000,
        timeout_ms: 1_000,
        retries: 3,
        start_period_ms: 0,
    }));
    tcp_check.restart_policy = RestartPolicy::of(RestartKind::Never);

    let digest = format!("app@sha256:{}", "a".repeat(64));
    let mut exec_check = spec("app", &digest);
    exec_check.memory = 104_857_600;
    exec_check.health_check = Some(Box::new(HealthCheck {
        probe: Probe::Exec {
            cmd: vec!["cat".into(), "/tmp/ok".into()],
        },
        interval_ms: 10_000,
        timeout_ms: 1_000,
        retries: 3,
        start_period_ms: 0,
    }));
    exec_check.restart_policy = RestartPolicy {
        backoff_ms: 600_000,
        max_backoff_ms: 600_000,
        ..RestartPolicy::of(RestartKind::Always)
    };

    let cases: Vec<(String, Option<&str>, TaskSpec)> = vec![
        (
            full.to_string(),
            Some("21b23589-5d2d-4731-b5c9-a97e9832d021"),
            full_spec,
        ),
        (
            r#"{"image": "busybox"}"#.to_string(),
            None,
            spec("busybox", "busybox:latest"),
        ),
        (
            r#"{"image": "busybox", "cmd": "sleep   60", "env": ["A=1", "EMPTY="],
                    "memory": 1073741824, "cpus": 2,
                    "ports": ["8080:80", "80", "53/udp", "8053:53/udp"],
                    "restart_policy": "unless-stopped", "name": null}"#
                .to_string(),
            None,
            short_forms,
        ),
        (
            r#"{"image": "localhost:5000/team/app", "ports": [9000], "restart_policy": "no",
                    "health_check": {"type": "tcp", "port": 9000}}"#
                .replace("[9000]", r#"[{"container_port": 9000}]"#),
            None,
            tcp_check,
        ),
        (
            format!(
                r#"{{"image": "{digest}", "memory": "100m",
                        "health_check": {{"type": "exec", "cmd": "cat /tmp/ok"}},
                        "restart_policy": {{"policy": "always", "backoff": "10m"}}}}"#
            ),
            None,
            exec_check,
        ),
    ];
    for (body, id, expected) in cases {
        let sub = parse(&body);
        assert_eq!(sub.spec, expected, "{body}");
        assert_eq!(sub.id.map(|id| id.to_string()).as_deref(), id, "{body}");
        assert!(sub.notes.is_empty(), "{body}: {:?}", sub.notes);
    }
}

#[test]
fn images_are_normalised_and_names_derived_from_them() {
    let sha = "b".repeat(64);
    let digest = format!("app@sha256:{sha}");
    let tagged_digest = format!("host:5000/app:1@sha256:{sha}");
    let cases: [(&str, &str, &str); 11] = [
        ("busybox", "busybox:latest", "busybox"),
        ("busybox:1.36", "busybox:1.36", "busybox"),
        ("library/busybox", "library/busybox:latest", "busybox"),
        (
            "strm/helloworld-http",
            "strm/helloworld-http:latest",
            "helloworld-http",
        ),
        ("localhost:5000/app", "localhost:5000/app:latest", "app"),
        ("host:5000/repo", "host:5000/repo:latest", "repo"),
        ("host:5000/repo:v2", "host:5000/repo:v2", "repo"),
        ("ghcr.io/org/app:V2_rc", "ghcr.io/org/app:V2_rc", "app"),
        ("a__b.c-d--e", "a__b.c-d--e:latest", "a__b.c-d--e"),
        (&digest, &digest, "app"),
        (&tagged_digest, &tagged_digest, "app"),
    ];
    for (image, normalised, name) in cases {
        let sub = parse(&format!(r#"{{"image": "{image}"}}"#));
        assert_eq!(sub.spec.image, normalised, "{image}");
        assert_eq!(sub.spec.name, name, "{image}");
    }
}

#[test]
fn bad_poseidon_specs_are_refused_with_a_clear_message() {
    let long_image = format!(r#"{{"image": "{}"}}"#, "a".repeat(256));
    let long_name = format!(r#"{{"image": "busybox", "name": "{}"}}"#, "n".repeat(64));
    let cases: Vec<(&str, &str)> = vec![
        ("", "malformed JSON: the body is empty"),
        (r#"{"image": "busybox""#, "malformed JSON: EOF while parsing an object"),
        (r#"{"image": "busybox"} x"#, "malformed JSON: trailing characters"),
        (r#"{"image": "a", "image": "b"}"#, "malformed JSON: duplicate field \"image\""),
        ("[1]", "the body must be a JSON object"),
        ("42", "the body must be a JSON object (POST an array to /tasks to submit several), got a number"),
        (r#"{"imgae": "busybox"}"#, "unknown field \"imgae\" (valid: id, name, image, cmd, env, secrets, cpus, memory, ports, restart_policy, health_check, labels, stop_after_disconnect, volumes, pull, constraints)"),
        (r#"{"name": "x"}"#, "image is required"),
        (r#"{"image": null}"#, "image is required"),
        (r#"{"image": 7}"#, "image must be a string, got a number"),
        (r#"{"image": ""}"#, "invalid image \"\": it is empty (examples: busybox, nginx:1.27, ghcr.io/org/app:v2)"),
        (r#"{"image": "Busybox"}"#, "invalid image \"Busybox\": repository names must be lower-case"),
        (r#"{"image": "busy box"}"#, "invalid image \"busy box\": ' ' is not allowed"),
        (r#"{"image": "/busybox"}"#, "empty path component"),
        (r#"{"image": "busybox/"}"#, "empty path component"),
        (r#"{"image": "-busybox"}"#, "is not a valid path component"),
        (r#"{"image": "busy..box"}"#, "is not a valid path component"),
        (r#"{"image": "busybox:"}"#, "a tag is 1 to 128"),
        (r#"{"image": "busybox:.x"}"#, "a tag is 1 to 128"),
        (r#"{"image": "app@sha256:abcd"}"#, "a sha256 digest is 64 lower-case hex digits"),
        (r#"{"image": "app@md5:abcd"}"#, "a digest is sha256: followed by 64 hex digits"),
        (r#"{"image": "host:99999/app"}"#, "\"host:99999\" is not a valid registry host[:port]"),
        (long_image.as_str(), "it is 256 characters long (at most 255)"),
        (r#"{"image": "busybox", "id": "nope"}"#, "invalid id \"nope\" (expected a UUID"),
        (r#"{"image": "busybox", "name": ""}"#, "invalid name \"\" (1 to 63 letters, digits, '_', '.' or '-')"),
        (r#"{"image": "busybox", "name": "my app"}"#, "invalid name \"my app\""),
        (long_name.as_str(), "invalid name \"nnnn"),
        (r#"{"image": "busybox", "cpus": -1}"#, "cpus must be between 0 and 1024, got -1"),
        (r#"{"image": "busybox", "cpus": 1025}"#, "cpus must be between 0 and 1024, got 1025"),
        (r#"{"image": "busybox", "cpus": "2"}"#, "cpus must be a number, got a string"),
        (r#"{"image": "busybox", "memory": "lots"}"#, "invalid memory \"lots\" (examples: 268435456, 256m, 1g)"),
        (r#"{"image": "busybox", "memory": -5}"#, "invalid memory -5 (a whole number of bytes"),
        (r#"{"image": "busybox", "memory": 1.5}"#, "invalid memory 1.5"),
        (r#"{"image": "busybox", "memory": "2t"}"#, "memory must be at most 1 TiB (1099511627776 bytes), got 2199023255552"),
        (r#"{"image": "busybox", "memory": "99999999t"}"#, "memory must be at most 1t (1 TiB), got \"99999999t\""),
        (r#"{"image": "busybox", "memory": "1m"}"#, "memory must be 0 (no limit) or at least 6m (6291456 bytes, Docker's minimum), got 1048576"),
        (r#"{"image": "busybox", "memory": true}"#, "memory must be a number of bytes or a string, got a boolean"),
        (r#"{"image": "busybox", "cmd": 5}"#, "cmd must be an array of strings or a string, got a number"),
        (r#"{"image": "busybox", "cmd": ["a", 1]}"#, "cmd[1] must be a string, got a number"),
        (r#"{"image": "busybox", "env": {"A": 1}}"#, "env.A must be a string, got a number"),
        (r#"{"image": "busybox", "env": {"": "x"}}"#, "env keys must not be empty"),
        (r#"{"image": "busybox", "env": ["NOVALUE"]}"#, "env[0] must be KEY=VALUE, got \"NOVALUE\""),
        (r#"{"image": "busybox", "env": ["=x"]}"#, "env keys must not be empty"),
        (r#"{"image": "busybox", "env": ["A=1", "A=2"]}"#, "env sets \"A\" twice"),
        (r#"{"image": "busybox", "env": "A=1"}"#, "env must be an object or an array of \"KEY=VALUE\" strings, got a string"),
        (r#"{"image": "busybox", "labels": {"": "x"}}"#, "label keys must not be empty"),
        (r#"{"image": "busybox", "labels": {"io.poseidon.task": "x"}}"#, "label key \"io.poseidon.task\" is reserved (keys starting with io.poseidon. belong to Poseidon)"),
        (r#"{"image": "busybox", "labels": ["a=b"]}"#, "labels must be an object of strings, got an array"),
        (r#"{"image": "busybox", "ports": {"80": 80}}"#, "ports must be an array, got an object"),
        (r#"{"image": "busybox", "ports": [{"container_port": 0}]}"#, "ports[0].container_port must be between 1 and 65535, got 0"),
        (r#"{"image": "busybox", "ports": [{"container_port": 70000}]}"#, "ports[0].container_port must be between 1 and 65535, got 70000"),
        (r#"{"image": "busybox", "ports": [{"container_port": "80"}]}"#, "ports[0].container_port must be a number, got a string"),
        (r#"{"image": "busybox", "ports": [{"host_port": 80}]}"#, "ports[0].container_port is required"),
        (r#"{"image": "busybox", "ports": [{"container_port": 80, "host_port": 0}]}"#, "ports[0].host_port must be between 1 and 65535 (omit it to let Docker choose), got 0"),
        (r#"{"image": "busybox", "ports": [{"container_port": 80, "proto": "tcp"}]}"#, "unknown field \"proto\" in ports[0] (valid: container_port, host_port, protocol)"),
        (r#"{"image": "busybox", "ports": [{"container_port": 80, "protocol": "sctp"}]}"#, "ports[0].protocol must be \"tcp\" or \"udp\", got \"sctp\""),
        (r#"{"image": "busybox", "ports": ["80/sctp"]}"#, "ports[0].protocol must be \"tcp\" or \"udp\", got \"sctp\""),
        (r#"{"image": "busybox", "ports": ["8080:80", "8080:81"]}"#, "host port 8080/tcp is published twice (ports[0] and ports[1])"),
        (r#"{"image": "busybox", "ports": ["80", "80"]}"#, "ports[1] repeats ports[0]"),
        (r#"{"image": "busybox", "ports": ["abc"]}"#, "invalid port \"abc\" in ports[0]: a port is a number between 1 and 65535 (examples: \"8080:80\", \"80\", \"53/udp\")"),
        (r#"{"image": "busybox", "ports": ["8000-8010:80"]}"#, "port ranges are not supported"),
        (r#"{"image": "busybox", "ports": ["127.0.0.1:8080:80"]}"#, "a host IP address is not supported"),
        (r#"{"image": "busybox", "ports": [true]}"#, "ports[0] must be an object or a string such as \"8080:80\", got a boolean"),
        (r#"{"image": "busybox", "restart_policy": "sometimes"}"#, "unknown restart_policy \"sometimes\" (valid: never, no, on-failure, always, unless-stopped)"),
        (r#"{"image": "busybox", "restart_policy": {"policy": "nope"}}"#, "unknown restart_policy.policy \"nope\""),
        (r#"{"image": "busybox", "restart_policy": {"max_restarts": 3}}"#, "restart_policy.policy is required"),
        (r#"{"image": "busybox", "restart_policy": {"policy": "always", "max_restarts": 3}}"#, "restart_policy.max_restarts is only for the on-failure policy"),
        (r#"{"image": "busybox", "restart_policy": {"policy": "on-failure", "max_restarts": -1}}"#, "restart_policy.max_restarts must be a whole number of at least 0, got -1"),
        (r#"{"image": "busybox", "restart_policy": {"policy": "always", "backoff": "1m", "max_backoff": "1s"}}"#, "restart_policy.max_backoff (1s) must not be shorter than restart_policy.backoff (60s)"),
        (r#"{"image": "busybox", "restart_policy": {"policy": "always", "backoff": 10}}"#, "restart_policy.backoff must be a duration string such as \"10s\", got a number"),
        (r#"{"image": "busybox", "restart_policy": {"policy": "always", "backof": "1s"}}"#, "unknown field \"backof\" in restart_policy (valid: policy, max_restarts, backoff, max_backoff, reset_after)"),
        (r#"{"image": "busybox", "restart_policy": 3}"#, "restart_policy must be a policy name or an object with a \"policy\" field, got a number"),
        (r#"{"image": "busybox", "health_check": "/health"}"#, "health_check must be an object, got a string"),
        (r#"{"image": "busybox", "health_check": {"port": 80}}"#, "health_check.type is required (valid: http, tcp, exec)"),
        (r#"{"image": "busybox", "health_check": {"type": "grpc"}}"#, "unknown health_check.type \"grpc\" (valid: http, tcp, exec)"),
        (r#"{"image": "busybox", "health_check": {"type": "http"}}"#, "health_check.port is required for http checks"),
        (r#"{"image": "busybox", "health_check": {"type": "tcp"}}"#, "health_check.port is required for tcp checks"),
        (r#"{"image": "busybox", "health_check": {"type": "exec"}}"#, "health_check.cmd must not be empty for exec checks"),
        (r#"{"image": "busybox", "health_check": {"type": "exec", "cmd": []}}"#, "health_check.cmd must not be empty for exec checks"),
        (r#"{"image": "busybox", "health_check": {"type": "exec", "cmd": "true", "port": 80}}"#, "health_check.port is only for http and tcp checks, not exec"),
        (r#"{"image": "busybox", "health_check": {"type": "tcp", "port": 80, "path": "/"}}"#, "health_check.path is only for http checks, not tcp"),
        (r#"{"image": "busybox", "health_check": {"type": "http", "port": 80, "cmd": "x"}}"#, "health_check.cmd is only for exec checks, not http"),
        (r#"{"image": "busybox", "health_check": {"type": "http", "port": 80}}"#, "health_check.port 80 is not a published tcp container port (published: none); checks reach the container through a published port"),
        (r#"{"image": "busybox", "ports": ["53/udp"], "health_check": {"type": "tcp", "port": 53}}"#, "health_check.port 53 is not a published tcp container port (published: 53/udp)"),
        (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "path": "health"}}"#, "health_check.path must start with \"/\", got \"health\""),
        (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "interval": "50ms"}}"#, "health_check.interval must be at least 100ms, got 50ms"),
        (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "timeout": "0s"}}"#, "health_check.timeout must be at least 100ms, got 0s"),
        (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "retries": 0}}"#, "health_check.retries must be at least 1, got 0"),
        (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "interval": "ten"}}"#, "invalid health_check.interval \"ten\" (examples: 500ms, 5s, 1m30s, 2h)"),
        (r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "http", "port": 80, "every": "1s"}}"#, "unknown field \"every\" in health_check (valid: type, port, path, cmd, interval, timeout, retries, start_period)"),
        (r#"{"image": "busybox", "stop_after_disconnect": "10ms"}"#, "stop_after_disconnect must be at least 100ms, got 10ms"),
        (r#"{"image": "busybox", "stop_after_disconnect": "soon"}"#, "invalid stop_after_disconnect \"soon\""),
        (r#"{"image": "busybox", "secrets": {"": "x"}}"#, "env keys must not be empty"),
        (r#"{"image": "busybox", "secrets": {"A": 1}}"#, "secrets.A must be a string"),
        (r#"{"image": "busybox", "secrets": ["A=x"]}"#, "secrets must be an object"),
        (r#"{"image": "busybox", "env": {"A": "1"}, "secrets": {"A": "x"}}"#, "\"A\" is both in env and in secrets; keep it in secrets only"),
    ];
    for (body, fragment) in cases {
        let message = error(body);
        assert!(
            message.contains(fragment),
            "{body}\n  gave: {message}\n  want: {fragment}"
        );
        assert!(!message.ends_with('.'), "{message}");
    }
}

#[test]
fn the_seed_go_task_event_becomes_a_pending_submission_with_the_tasks_id() {
    let sub = parse(SEED_TASK1);
    assert_eq!(
        sub.id.map(|id| id.to_string()).as_deref(),
        Some("21b23589-5d2d-4731-b5c9-a97e9832d021")
    );
    assert_eq!(
        sub.spec,
        spec("test-chapter-5", "strm/helloworld-http:latest")
    );
    assert!(sub.notes.is_empty(), "{:?}", sub.notes);
}

#[test]
fn good_go_task_events_map_to_the_expected_task_spec() {
    // The shape of the original's data/task3.json, plus every other field the Go Task had.
    let full = r#"{
            "ID": "6be4cb6b-61d1-40cb-bc7b-9cacefefa60c",
            "State": 2,
            "Timestamp": "2024-01-01T00:00:00Z",
            "Task": {
                "ID": "21b23589-5d2d-4731-b5c9-a97e9832d021",
                "ContainerID": "",
                "State": 0,
                "Image": "timboring/echo-server:latest",
                "Cpu": 0.25,
                "Memory": 67108864,
                "Disk": 1073741824,
                "ExposedPorts": {"7777/tcp": {}, "53/udp": {}, "9000/tcp": {}},
                "PortBindings": {"7777/tcp": "7777", "9000/tcp": "", "8125/udp": "8125"},
                "RestartPolicy": "unless-stopped",
                "HealthCheck": "/healthfail",
                "StartTime": "0001-01-01T00:00:00Z",
                "FinishTime": "0001-01-01T00:00:00Z",
                "HostPorts": null,
                "RestartCount": 0
            }
        }"#;
    let mut full_spec = spec("echo-server", "timboring/echo-server:latest");
    full_spec.cpus = 0.25;
    full_spec.memory = 67_108_864;
    full_spec.ports = vec![
        port(7777, Some(7777), "tcp"),
        port(53, None, "udp"),
        port(9000, None, "tcp"),
        port(8125, Some(8125), "udp"),
    ];
    full_spec.restart_policy = RestartPolicy::of(RestartKind::Always);
    full_spec.health_check = Some(Box::new(HealthCheck {
        probe: Probe::Http {
            port: 7777,
            path: "/healthfail".into(),
        },
        interval_ms: 10_000,
        timeout_ms: 1_000,
        retries: 3,
        start_period_ms: 0,
    }));

    // A bare Go Task (not wrapped in an event), with the zero values Go writes for unset fields.
    let bare = r#"{"ID": "00000000-0000-0000-0000-000000000000", "Name": "", "Image": "busybox",
                       "Cpu": 0, "Memory": 0, "Disk": 0, "ExposedPorts": null, "PortBindings": null,
                       "RestartPolicy": "", "HealthCheck": "", "Cmd": ["sleep", "5"],
                       "Env": ["A=1"], "Replicas": 3}"#;
    let mut bare_spec = spec("busybox", "busybox:latest");
    bare_spec.cmd = vec!["sleep".into(), "5".into()];
    bare_spec.env = map(&[("A", "1")]);

    let mut on_failure = spec("x", "busybox:latest");
    on_failure.restart_policy = RestartPolicy::of(RestartKind::OnFailure);
    on_failure.ports = vec![port(80, Some(8080), "tcp")];

    let cases: Vec<(&str, Option<&str>, TaskSpec, Vec<&str>)> = vec![
        (
            full,
            Some("21b23589-5d2d-4731-b5c9-a97e9832d021"),
            full_spec,
            vec!["Disk is accepted and ignored"],
        ),
        (
            bare,
            None,
            bare_spec,
            vec![
                "unknown Go field \"Replicas\" is ignored",
                "ID is the nil UUID, so the server chose an id",
            ],
        ),
        (
            r#"{"Task": {"Name": "x", "Image": "busybox", "RestartPolicy": "on-failure",
                             "PortBindings": {"80": "8080"}}}"#,
            None,
            on_failure,
            vec![],
        ),
        (
            r#"{"Task": {"Image": "busybox", "RestartPolicy": "no"}, "Extra": 1}"#,
            None,
            spec("busybox", "busybox:latest"),
            vec!["unknown Go field \"Extra\" is ignored"],
        ),
    ];
    for (body, id, expected, notes) in cases {
        let sub = parse(body);
        assert_eq!(sub.spec, expected, "{body}");
        assert_eq!(sub.id.map(|id| id.to_string()).as_deref(), id, "{body}");
        assert_eq!(sub.notes, notes, "{body}");
    }
}

#[test]
fn bad_go_task_events_are_refused_with_a_clear_message() {
    let cases: Vec<(&str, &str)> = vec![
        (r#"{"Task": "busybox"}"#, "Task must be an object, got a string"),
        (r#"{"Task": null}"#, "Task must be an object, got null"),
        (r#"{"Task": {"Name": "x"}}"#, "Task.Image is required"),
        (r#"{"Task": {"Image": ""}}"#, "Task.Image is required"),
        (r#"{"Task": {"Image": 3}}"#, "Task.Image must be a string, got a number"),
        (r#"{"Task": {"Image": "Busybox"}}"#, "invalid Task.Image \"Busybox\": repository names must be lower-case"),
        (r#"{"Task": {"Image": "busybox", "Name": "a b"}}"#, "invalid Task.Name \"a b\""),
        (r#"{"Task": {"Image": "busybox", "ID": "x"}}"#, "invalid Task.ID \"x\" (expected a UUID"),
        (r#"{"Task": {"Image": "busybox", "State": 5}}"#, "Task.State must be between 0 and 4 (pending, scheduled, running, completed, failed), got 5"),
        (r#"{"Task": {"Image": "busybox", "State": -1}}"#, "Task.State must be between 0 and 4"),
        (r#"{"State": "running", "Task": {"Image": "busybox"}}"#, "State must be a number, got a string"),
        (r#"{"State": 9, "Task": {"Image": "busybox"}}"#, "State must be between 0 and 4"),
        (r#"{"Task": {"Image": "busybox", "Cpu": "1"}}"#, "Task.Cpu must be a number, got a string"),
        (r#"{"Task": {"Image": "busybox", "Cpu": -0.5}}"#, "Task.Cpu must be between 0 and 1024, got -0.5"),
        (r#"{"Task": {"Image": "busybox", "Memory": "1g"}}"#, "Task.Memory must be a number, got a string"),
        (r#"{"Task": {"Image": "busybox", "Memory": -1}}"#, "Task.Memory must be a whole number of at least 0, got -1"),
        (r#"{"Task": {"Image": "busybox", "Memory": 1024}}"#, "Task.Memory must be 0 (no limit) or at least 6m"),
        (r#"{"Task": {"Image": "busybox", "Disk": "big"}}"#, "Task.Disk must be a number, got a string"),
        (r#"{"Task": {"Image": "busybox", "ExposedPorts": ["80/tcp"]}}"#, "Task.ExposedPorts must be an object, got an array"),
        (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"80/tcp": 1}}}"#, "Task.ExposedPorts[\"80/tcp\"] must be an empty object, got a number"),
        (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"80/sctp": {}}}}"#, "invalid port \"80/sctp\" in Task.ExposedPorts (examples: \"80/tcp\", \"53/udp\")"),
        (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"http": {}}}}"#, "invalid port \"http\" in Task.ExposedPorts"),
        (r#"{"Task": {"Image": "busybox", "ExposedPorts": {"80": {}, "80/tcp": {}}}}"#, "Task.ExposedPorts lists 80/tcp twice"),
        (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": 8080}}}"#, "Task.PortBindings[\"80/tcp\"] must be a string, got a number"),
        (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": "x"}}}"#, "Task.PortBindings[\"80/tcp\"] must be a host port between 1 and 65535 such as \"8080\", or \"\" to let Docker choose, got \"x\""),
        (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": "1", "80": "2"}}}"#, "Task.PortBindings binds 80/tcp twice"),
        (r#"{"Task": {"Image": "busybox", "PortBindings": {"80/tcp": "8080", "81/tcp": "8080"}}}"#, "host port 8080/tcp is published twice (ports[0] and ports[1])"),
        (r#"{"Task": {"Image": "busybox", "RestartPolicy": "sometimes"}}"#, "unknown Task.RestartPolicy \"sometimes\" (valid: \"\", no, on-failure, always, unless-stopped)"),
        (r#"{"Task": {"Image": "busybox", "RestartPolicy": 1}}"#, "Task.RestartPolicy must be a string, got a number"),
        (r#"{"Task": {"Image": "busybox", "HealthCheck": "/health"}}"#, "Task.HealthCheck needs a tcp port to probe; add one to Task.ExposedPorts"),
        (r#"{"Task": {"Image": "busybox", "HealthCheck": "/h", "ExposedPorts": {"53/udp": {}}}}"#, "Task.HealthCheck needs a tcp port to probe"),
        (r#"{"Task": {"Image": "busybox", "HealthCheck": "health", "ExposedPorts": {"80/tcp": {}}}}"#, "Task.HealthCheck must be a path starting with \"/\", got \"health\""),
        (r#"{"Task": {"Image": "busybox", "HealthCheck": true}}"#, "Task.HealthCheck must be a string, got a boolean"),
        (r#"{"Task": {"Image": "busybox", "StartTime": 5}}"#, "Task.StartTime must be a string, got a number"),
        (r#"{"Task": {"Image": "busybox", "image": "x"}}"#, "\"Task.image\" is a Poseidon field but \"Task.Image\" is a Go TaskEvent field; write one format, not both"),
        (r#"{"Image": "busybox", "cmd": ["x"]}"#, "\"cmd\" is a Poseidon field but \"Image\" is a Go TaskEvent field"),
        (r#"{"Task": {"Image": "busybox"}, "labels": {}}"#, "\"labels\" is a Poseidon field but \"Task\" is a Go TaskEvent field"),
    ];
    for (body, fragment) in cases {
        let message = error(body);
        assert!(
            message.contains(fragment),
            "{body}\n  gave: {message}\n  want: {fragment}"
        );
    }
}

#[test]
fn an_array_of_submissions_is_parsed_in_order_and_errors_name_the_item() {
    let body =
        format!(r#"[{{"image": "busybox"}}, {SEED_TASK1}, {{"image": "nginx", "name": "b"}}]"#);
    let subs = parse_submissions(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = subs.iter().map(|s| s.spec.name.as_str()).collect();
    assert_eq!(names, ["busybox", "test-chapter-5", "b"]);

    let one = parse_submissions(br#"{"image": "busybox"}"#).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one.len(), 1);

    let cases: Vec<(String, &str)> = vec![
        (
            "[]".into(),
            "the array is empty (expected at least one task spec)",
        ),
        (
            r#"[{"image": "busybox"}, {"image": ""}]"#.into(),
            "item 1: invalid image \"\"",
        ),
        (
            r#"[{"image": "busybox"}, "nginx"]"#.into(),
            "item 1: each item must be a JSON object, got a string",
        ),
        (
            format!("[{SEED_TASK1}, {SEED_TASK1}]"),
            "item 1: id 21b23589-5d2d-4731-b5c9-a97e9832d021 is also the id of item 0",
        ),
        (
            "\"busybox\"".into(),
            "the body must be a task spec object or an array of them, got a string",
        ),
        (
            r#"[{"image": "busybox"}"#.into(),
            "malformed JSON: EOF while parsing a list",
        ),
    ];
    for (body, fragment) in cases {
        match parse_submissions(body.as_bytes()) {
            Ok(subs) => panic!("{body} was accepted as {subs:?}"),
            Err(e) => assert!(
                e.to_string().contains(fragment),
                "{body}\n  gave: {e}\n  want: {fragment}"
            ),
        }
    }
}

#[test]
fn more_than_ten_thousand_submissions_are_refused_before_any_is_parsed() {
    let body = format!("[{}{{}}]", "{},".repeat(MAX_SUBMISSIONS));
    match parse_submissions(body.as_bytes()) {
        Err(SpecError::TooMany(n)) => assert_eq!(n, MAX_SUBMISSIONS + 1),
        other => panic!("{other:?}"),
    }
    let body = format!(
        "[{}]",
        vec![r#"{"image":"busybox"}"#; MAX_SUBMISSIONS].join(",")
    );
    let subs = parse_submissions(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(subs.len(), MAX_SUBMISSIONS);
}

#[test]
fn hostile_bodies_are_errors_and_never_panics() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<Vec<u8>> = vec![
        deep.into_bytes(),
        b"\xff\xfe".to_vec(),
        b"{\"image\": \"\xff\"}".to_vec(),
        b"{\"image\": \"busybox\", \"cpus\": 1e400}".to_vec(),
        b"{\"image\": \"busybox\", \"memory\": 18446744073709551616}".to_vec(),
        b"null".to_vec(),
        b"{\"Task\": {\"Image\": \"busybox\", \"Cpu\": 1e308}}".to_vec(),
    ];
    for body in bodies {
        assert!(parse_submission(&body).is_err());
        assert!(parse_submissions(&body).is_err());
    }
    // Every prefix of a good body is either an error or (for the whole body) the spec itself.
    let body = br#"{"image": "busybox", "ports": ["8080:80"], "env": {"A": "1"}}"#;
    for end in 0..body.len() {
        assert!(
            parse_submission(&body[..end]).is_err(),
            "prefix of {end} bytes"
        );
    }
}

#[test]
fn validate_accepts_what_parsing_produces_and_refuses_hand_built_mistakes() {
    let sub = parse(
        r#"{"image": "busybox", "ports": ["80"], "health_check": {"type": "tcp", "port": 80}}"#,
    );
    assert_eq!(validate(&sub.spec), Ok(()));

    let mut bad = spec("ok", "busybox");
    bad.ports = vec![port(80, None, "icmp")];
    assert_eq!(
        validate(&bad).map_err(|e| e.to_string()),
        Err("ports[0].protocol must be \"tcp\" or \"udp\", got \"icmp\"".to_string())
    );
    let mut bad = spec("ok", "busybox");
    bad.stop_after_disconnect_ms = Some(5);
    assert_eq!(
        validate(&bad).map_err(|e| e.to_string()),
        Err("stop_after_disconnect must be at least 100ms, got 5ms".to_string())
    );
}

#[test]
fn error_messages_are_lower_case_and_have_no_trailing_period() {
    let bodies = [
        "",
        "{}",
        r#"{"x": 1}"#,
        r#"{"image": "busybox", "cpus": -1}"#,
        r#"{"Task": {}}"#,
    ];
    for body in bodies {
        let message = error(body);
        assert!(
            !message.starts_with(|c: char| c.is_ascii_uppercase()) || message.starts_with("Task"),
            "{message}"
        );
        assert!(!message.ends_with('.'), "{message}");
    }
}
