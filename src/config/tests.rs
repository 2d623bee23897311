//! Tests of the cluster file: every example under `config/`, every key, and every refusal.

use std::collections::BTreeMap;

use poseidon_runtimes::registry::RegistryAuth;

use super::*;

fn parse_ok(text: &str) -> Config {
    parse(text, "cluster.toml").unwrap_or_else(|e| panic!("{text}\n{e}"))
}

#[test]
fn every_example_under_config_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir}: {e}")) {
        let path = entry.unwrap_or_else(|e| panic!("{dir}: {e}")).path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            config.manager.is_some() || !config.workers.is_empty(),
            "{}",
            path.display()
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.starts_with('#'),
            "{} must open with a comment saying what it is for",
            path.display()
        );
        seen.push(path.file_name().map(|n| n.to_string_lossy().into_owned()));
    }
    for name in [
        "single.toml",
        "three-workers.toml",
        "mock-cluster.toml",
        "round-robin.toml",
        "epvm.toml",
        "binpack.toml",
        "spread.toml",
    ] {
        assert!(
            seen.contains(&Some(name.to_string())),
            "config/{name} is missing"
        );
    }
}

#[test]
fn each_scheduler_example_uses_its_scheduler() {
    for name in poseidon_schedulers::NAMES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config")
            .join(format!("{name}.toml"));
        let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.manager.map(|m| m.scheduler).as_deref(),
            Some(*name),
            "{}",
            path.display()
        );
    }
}

#[test]
fn single_toml_spells_out_the_embedded_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/single.toml");
    let mut from_file = load(&path).unwrap_or_else(|e| panic!("{e}"));
    from_file.source = EMBEDDED_SOURCE.to_string();
    assert_eq!(from_file, embedded_default());
}

#[test]
fn the_embedded_default_is_a_manager_and_one_local_docker_worker() {
    let c = embedded_default();
    assert_eq!(c.source, "<embedded default>");
    let m = c.manager.clone().unwrap_or_else(|| panic!("no manager"));
    assert_eq!(
        m,
        ManagerConfig {
            listen: "127.0.0.1:5555".parse().unwrap_or_else(|e| panic!("{e}")),
            data_dir: PathBuf::from("poseidon-data/manager"),
            scheduler: "epvm".into(),
            heartbeat_ttl: Duration::from_secs(5),
            dispatch_backoff: Duration::from_millis(500),
            dns_listen: Some("127.0.0.1:8600".parse().unwrap_or_else(|e| panic!("{e}"))),
            max_heartbeats_per_second: 50,
            store: StoreKind::Rocksdb,
            etcd_endpoints: Vec::new(),
            managers: Vec::new(),
            advertise: "http://127.0.0.1:5555".into(),
        }
    );
    let w = c.worker("local").unwrap_or_else(|| panic!("no worker"));
    assert_eq!(
        *w,
        WorkerConfig {
            name: "local".into(),
            listen: "127.0.0.1:5556".parse().unwrap_or_else(|e| panic!("{e}")),
            advertise: "http://127.0.0.1:5556".into(),
            manager: Some("http://127.0.0.1:5555".into()),
            managers: Vec::new(),
            runtime: RuntimeKind::Docker,
            docker_host: None,
            data_dir: PathBuf::from("poseidon-data/local"),
            capacity: None,
            heartbeat_interval: Duration::from_secs(1),
            stop_grace: Duration::from_secs(10),
            network: None,
            host_volumes: BTreeMap::new(),
            registry_auth: Vec::new(),
            labels: BTreeMap::new(),
            ingress_listen: Some("127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))),
            endpoint_address: None,
        }
    );
    assert!(c.worker("nope").is_none());
}

#[test]
fn every_key_is_read_into_the_config() {
    let c = parse_ok(
        r#"
            [manager]
            listen = "0.0.0.0:7000"
            data_dir = "/var/lib/poseidon"
            scheduler = "binpack"
            heartbeat_ttl = "10s"
            dispatch_backoff = "250ms"

            [[worker]]
            name = "w1"
            listen = "0.0.0.0:7001"
            advertise = "http://10.0.0.5:7001/"
            manager = "https://manager.example:7000"
            runtime = "mock"
            docker_host = "tcp://127.0.0.1:2375"
            data_dir = "/srv/w1"
            capacity = { cpus = 4, memory = 8589934592 }
            heartbeat_interval = "2s"
            stop_grace = "0s"
            network = "poseidon_net"
            host_volumes = { logs = "/var/log/app", "scratch.1" = "/srv/scratch" }
            registry_auth = [
                { registry = "registry.example:5000", username = "deploy", password = "s3cret-pw" },
                { registry = "https://index.docker.io/v1/", username = "hub", password = "tok" },
            ]
            labels = { disk = "ssd", "rack.row-2" = "a 1" }
            ingress_listen = "0.0.0.0"
            endpoint_address = "172.18.0.1"

            [[worker]]
            name = "w2"
            listen = "localhost:7002"
            capacity = { cpus = 0.5, memory = "512m" }
            "#,
    );
    let m = c.manager.clone().unwrap_or_else(|| panic!("no manager"));
    assert_eq!(
        m,
        ManagerConfig {
            listen: "0.0.0.0:7000".parse().unwrap_or_else(|e| panic!("{e}")),
            data_dir: PathBuf::from("/var/lib/poseidon"),
            scheduler: "binpack".into(),
            heartbeat_ttl: Duration::from_secs(10),
            dispatch_backoff: Duration::from_millis(250),
            dns_listen: Some("127.0.0.1:8600".parse().unwrap_or_else(|e| panic!("{e}"))),
            max_heartbeats_per_second: 50,
            store: StoreKind::Rocksdb,
            etcd_endpoints: Vec::new(),
            managers: Vec::new(),
            advertise: "http://127.0.0.1:7000".into(),
        }
    );
    assert_eq!(
        c.workers,
        vec![
            WorkerConfig {
                name: "w1".into(),
                listen: "0.0.0.0:7001".parse().unwrap_or_else(|e| panic!("{e}")),
                advertise: "http://10.0.0.5:7001".into(),
                manager: Some("https://manager.example:7000".into()),
                managers: Vec::new(),
                runtime: RuntimeKind::Mock,
                docker_host: Some("tcp://127.0.0.1:2375".into()),
                data_dir: PathBuf::from("/srv/w1"),
                capacity: Some(Capacity {
                    cpus: 4.0,
                    memory: 8_589_934_592
                }),
                heartbeat_interval: Duration::from_secs(2),
                stop_grace: Duration::ZERO,
                network: Some("poseidon_net".into()),
                host_volumes: BTreeMap::from([
                    ("logs".to_string(), PathBuf::from("/var/log/app")),
                    ("scratch.1".to_string(), PathBuf::from("/srv/scratch")),
                ]),
                registry_auth: vec![
                    RegistryAuth {
                        registry: "registry.example:5000".into(),
                        username: "deploy".into(),
                        password: "s3cret-pw".into(),
                    },
                    RegistryAuth {
                        registry: "docker.io".into(),
                        username: "hub".into(),
                        password: "tok".into(),
                    },
                ],
                labels: [("disk", "ssd"), ("rack.row-2", "a 1")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ingress_listen: Some("0.0.0.0".parse().unwrap_or_else(|e| panic!("{e}"))),
                endpoint_address: Some("172.18.0.1".parse().unwrap_or_else(|e| panic!("{e}"))),
            },
            WorkerConfig {
                name: "w2".into(),
                listen: "127.0.0.1:7002".parse().unwrap_or_else(|e| panic!("{e}")),
                advertise: "http://127.0.0.1:7002".into(),
                // The manager listens on every address; its workers reach it on the loopback.
                manager: Some("http://127.0.0.1:7000".into()),
                managers: Vec::new(),
                runtime: RuntimeKind::Docker,
                docker_host: None,
                data_dir: PathBuf::from("poseidon-data/w2"),
                capacity: Some(Capacity {
                    cpus: 0.5,
                    memory: 536_870_912
                }),
                heartbeat_interval: Duration::from_secs(1),
                stop_grace: Duration::from_secs(10),
                network: None,
                host_volumes: BTreeMap::new(),
                registry_auth: Vec::new(),
                labels: BTreeMap::new(),
                ingress_listen: Some("127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))),
                endpoint_address: None,
            },
        ]
    );
    // The config's only printable form (its Debug, which start-up errors and tests show) never
    // carries a password.
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("s3cret-pw") && !shown.contains("\"tok\""),
        "{shown}"
    );
}

#[test]
fn a_worker_alone_has_no_manager_unless_it_names_one() {
    let c = parse_ok("[[worker]]\nname = \"solo\"\n");
    assert_eq!(c.manager, None);
    assert_eq!(c.workers[0].manager, None);
    let c = parse_ok("[[worker]]\nname = \"w\"\nmanager = \"http://10.0.0.1:5555\"\n");
    assert_eq!(
        c.workers[0].manager.as_deref(),
        Some("http://10.0.0.1:5555")
    );
    let c = parse_ok("[manager]\n");
    assert_eq!(c.manager, Some(ManagerConfig::default()));
    assert!(c.workers.is_empty());
}

#[test]
fn roles_on_port_zero_may_share_an_address() {
    let c = parse_ok(
        "[manager]\nlisten = \"127.0.0.1:0\"\n[[worker]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n[[worker]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\n",
    );
    assert_eq!(c.workers.len(), 2);
}

#[test]
fn bad_files_are_refused_with_the_file_the_key_and_the_valid_choices() {
    let cases: &[(&str, &str)] = &[
        (
            "[manager]\nscheduler = \"fifo\"\n",
            "cluster.toml: manager.scheduler: unknown scheduler \"fifo\" (valid: round-robin, epvm, binpack, spread)",
        ),
        (
            "[[worker]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n[[worker]]\nname = \"b\"\nruntime = \"podman\"\n",
            "cluster.toml: worker[1].runtime: unknown runtime \"podman\" (valid: docker, mock)",
        ),
        (
            "[manager]\nshceduler = \"epvm\"\n",
            "cluster.toml: unknown key \"shceduler\" in [manager] (valid: listen, data_dir, scheduler, heartbeat_ttl, dispatch_backoff, dns_listen, max_heartbeats_per_second, store, etcd_endpoints, managers, advertise)",
        ),
        (
            "[manager]\nheartbeat_ttl = \"5 parsecs\"\n",
            "cluster.toml: manager.heartbeat_ttl: invalid duration \"5 parsecs\": unknown unit \"parsecs\" (units: ms, s, m, h, d) (examples: 500ms, 5s, 1m30s, 2h)",
        ),
        (
            "[manager]\nheartbeat_ttl = 5\n",
            "cluster.toml: manager.heartbeat_ttl: must be a duration string such as \"5s\" or \"500ms\", got integer",
        ),
        (
            "[manager]\nheartbeat_ttl = \"50ms\"\n",
            "cluster.toml: manager.heartbeat_ttl: must be at least 100ms, got \"50ms\"",
        ),
        (
            "[manager]\nmax_heartbeats_per_second = 0\n",
            "cluster.toml: manager.max_heartbeats_per_second: must be a whole number from 1 to 1000000, got 0",
        ),
        (
            "[manager]\nmax_heartbeats_per_second = \"fifty\"\n",
            "cluster.toml: manager.max_heartbeats_per_second: must be a whole number from 1 to 1000000, got \"fifty\"",
        ),
        (
            "[manager]\ndispatch_backoff = \"0s\"\n",
            "cluster.toml: manager.dispatch_backoff: must be at least 1ms, got \"0s\"",
        ),
        (
            "[manager]\nlisten = \"nowhere\"\n",
            "cluster.toml: manager.listen: invalid address \"nowhere\" (expected an IP address and a port, e.g. 127.0.0.1:5555 or 0.0.0.0:5555)",
        ),
        (
            "[manager]\ndns_listen = \"port 53\"\n",
            "cluster.toml: manager.dns_listen: invalid address \"port 53\"",
        ),
        (
            "[manager]\nlisten = 5555\n",
            "cluster.toml: manager.listen: must be a string, got integer",
        ),
        (
            "[manager]\ndata_dir = \"\"\n",
            "cluster.toml: manager.data_dir: must not be empty",
        ),
        (
            "manager = \"yes\"\n",
            "cluster.toml: manager: must be a table ([manager]), got string",
        ),
        (
            "[worker]\nname = \"w1\"\n",
            "cluster.toml: worker: must be an array of tables (write [[worker]], not [worker]), got table",
        ),
        (
            "worker = [1]\n",
            "cluster.toml: worker[0]: must be a table ([[worker]]), got integer",
        ),
        (
            "[managr]\n",
            "cluster.toml: unknown key \"managr\" at the top level (valid: manager, worker, security)",
        ),
        (
            "[manager]\n[security]\nacl = \"yes\"\n",
            "cluster.toml: security.acl: must be true or false, got string",
        ),
        (
            "[manager]\n[security]\ntls = \"on\"\n",
            "cluster.toml: security.tls: must be \"off\", \"auto\" or { ca = \"...\", cert = \"...\", key = \"...\" }, got \"on\"",
        ),
        (
            "[manager]\n[security]\ntls = { ca = \"ca.pem\", cert = \"c.pem\" }\n",
            "cluster.toml: security.tls.key: missing (tls = { ca, cert, key } needs all three PEM files)",
        ),
        (
            "[manager]\n[security]\nacls = true\n",
            "cluster.toml: unknown key \"acls\" in [security] (valid: acl, tls, insecure, join_token)",
        ),
        ("# nothing\n", "cluster.toml: no [manager] and no [[worker]] table, so there is nothing to run"),
        ("", "cluster.toml: no [manager] and no [[worker]] table, so there is nothing to run"),
        (
            "[[worker]]\nlisten = \"127.0.0.1:5556\"\n",
            "cluster.toml: worker[0].name: missing (every worker needs a unique name)",
        ),
        (
            "[[worker]]\nname = \"\"\n",
            "cluster.toml: worker[0].name: invalid worker name \"\" (1 to 63 letters, digits, '_', '.' or '-')",
        ),
        (
            "[[worker]]\nname = \"my worker\"\n",
            "cluster.toml: worker[0].name: invalid worker name \"my worker\" (1 to 63 letters, digits, '_', '.' or '-')",
        ),
        (
            "[[worker]]\nname = \"w\"\nlisten = \"127.0.0.1:1\"\n[[worker]]\nname = \"w\"\nlisten = \"127.0.0.1:2\"\n",
            "cluster.toml: worker[1].name: \"w\" is already the name of worker[0]",
        ),
        (
            "[manager]\n[[worker]]\nname = \"a\"\n[[worker]]\nname = \"b\"\n",
            "cluster.toml: worker[1].listen: 127.0.0.1:5556 is also worker[0].listen",
        ),
        (
            "[manager]\n[[worker]]\nname = \"a\"\nlisten = \"127.0.0.1:5555\"\n",
            "cluster.toml: worker[0].listen: 127.0.0.1:5555 is also manager.listen",
        ),
        (
            "[[worker]]\nname = \"a\"\nnmae = \"b\"\n",
            "cluster.toml: unknown key \"nmae\" in worker[0] (valid: name, listen, advertise, manager, managers, runtime, docker_host, data_dir, capacity, heartbeat_interval, stop_grace, network, host_volumes, registry_auth, labels, ingress_listen, endpoint_address)",
        ),
        (
            "[[worker]]\nname = \"a\"\nadvertise = \"127.0.0.1:5556\"\n",
            "cluster.toml: worker[0].advertise: invalid URL \"127.0.0.1:5556\" (expected http://host:port, e.g. http://127.0.0.1:5555)",
        ),
        (
            "[[worker]]\nname = \"a\"\nmanager = \"http://\"\n",
            "cluster.toml: worker[0].manager: invalid URL \"http://\" (expected http://host:port, e.g. http://127.0.0.1:5555)",
        ),
        (
            "[[worker]]\nname = \"a\"\ndocker_host = \"ssh://me@box\"\n",
            "cluster.toml: worker[0].docker_host: unsupported Docker host \"ssh://me@box\" (valid: unix:///path/to/docker.sock, tcp://host:port)",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = { cpus = 0, memory = \"1g\" }\n",
            "cluster.toml: worker[0].capacity.cpus: must be more than 0, got 0",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1, memory = 0 }\n",
            "cluster.toml: worker[0].capacity.memory: must be more than 0",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1, memory = -4 }\n",
            "cluster.toml: worker[0].capacity.memory: must be more than 0",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1, memory = \"lots\" }\n",
            "cluster.toml: worker[0].capacity.memory: invalid size \"lots\" (examples: 268435456, 256m, 1g)",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = { cpus = 1 }\n",
            "cluster.toml: worker[0].capacity.memory: missing (a declared capacity needs both cpus and memory)",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = { cpus = \"2\", memory = \"1g\" }\n",
            "cluster.toml: worker[0].capacity.cpus: must be a number, got string",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = { cpu = 2, memory = \"1g\" }\n",
            "cluster.toml: unknown key \"cpu\" in worker[0].capacity (valid: cpus, memory)",
        ),
        (
            "[[worker]]\nname = \"a\"\ncapacity = \"big\"\n",
            "cluster.toml: worker[0].capacity: must be a table such as { cpus = 2.0, memory = \"4g\" }, got string",
        ),
        (
            "[[worker]]\nname = \"a\"\ningress_listen = \"127.0.0.1:80\"\n",
            "cluster.toml: worker[0].ingress_listen: invalid address \"127.0.0.1:80\" (expected an IP address such as 127.0.0.1 or 0.0.0.0, or \"off\")",
        ),
        (
            "[[worker]]\nname = \"a\"\nendpoint_address = \"worker-1\"\n",
            "cluster.toml: worker[0].endpoint_address: invalid address \"worker-1\" (expected the IP address at which this host's published ports are reached, such as 10.0.0.5; not a name, a port or 0.0.0.0)",
        ),
        (
            "[[worker]]\nname = \"a\"\nendpoint_address = \"0.0.0.0\"\n",
            "cluster.toml: worker[0].endpoint_address: invalid address \"0.0.0.0\" (expected the IP address at which this host's published ports are reached, such as 10.0.0.5; not a name, a port or 0.0.0.0)",
        ),
        (
            "[[worker]]\nname = \"a\"\nendpoint_address = \"10.0.0.5:80\"\n",
            "cluster.toml: worker[0].endpoint_address: invalid address \"10.0.0.5:80\" (expected the IP address at which this host's published ports are reached, such as 10.0.0.5; not a name, a port or 0.0.0.0)",
        ),
        (
            "[[worker]]\nname = \"a\"\nnetwork = \"-net\"\n",
            "cluster.toml: worker[0].network: invalid Docker network name \"-net\" (a letter or digit, then letters, digits, '_', '.' or '-')",
        ),
        (
            "[manager]\nheartbeat_ttl = \"1s\"\n[[worker]]\nname = \"a\"\n",
            "cluster.toml: worker[0].heartbeat_interval: 1s must be shorter than manager.heartbeat_ttl (1s), or the manager would count the worker down between two heartbeats",
        ),
        (
            "[manager]\n[[worker]]\nname = \"a\"\nheartbeat_interval = \"7500ms\"\n",
            "cluster.toml: worker[0].heartbeat_interval: 7500ms must be shorter than manager.heartbeat_ttl (5s), or the manager would count the worker down between two heartbeats",
        ),
        (
            "[manager]\nlisten = \"127.0.0.1:5555\"\nlisten = \"127.0.0.1:5556\"\n",
            "cluster.toml: invalid TOML: line 3, column 1: duplicate key",
        ),
        (
            "[[worker]]\nname = \"a\"\nlabels = \"ssd\"\n",
            "cluster.toml: worker[0].labels: must be a table such as { disk = \"ssd\", zone = \"a\" }, got string",
        ),
        (
            "[[worker]]\nname = \"a\"\nlabels = { disk = 1 }\n",
            "cluster.toml: worker[0].labels.disk: must be a string (write disk = \"...\"), got integer",
        ),
        (
            "[[worker]]\nname = \"a\"\nlabels = { \"disk type\" = \"ssd\" }\n",
            "cluster.toml: worker[0].labels.disk type: invalid label key: \"disk type\" is not 1 to 63 letters, digits, '_', '.' or '-'",
        ),
        (
            "[[worker]]\nname = \"a\"\nlabels = { disk = \"\" }\n",
            "cluster.toml: worker[0].labels.disk: invalid label value: \"\" must be 1 to 255 bytes long",
        ),
        (
            "[manager\n",
            "cluster.toml: invalid TOML: line 1, column ",
        ),
        (
            "[manager]\nmanagers = [\"http://a:5555\", \"http://b:5555\"]\n",
            "cluster.toml: manager.managers: several managers need store = \"etcd\": the embedded RocksDB store belongs to one manager",
        ),
        (
            "[manager]\nstore = \"zookeeper\"\n",
            "cluster.toml: manager.store: unknown store \"zookeeper\" (valid: rocksdb, etcd)",
        ),
        (
            "[manager]\nstore = \"etcd\"\netcd_endpoints = [\"localhost:2379\"]\n",
            "cluster.toml: manager.etcd_endpoints[0]: invalid URL \"localhost:2379\" (expected http://host:port)",
        ),
        (
            "[[worker]]\nname = \"a\"\nmanager = \"http://a:5555\"\nmanagers = [\"http://a:5555\"]\n",
            "cluster.toml: worker[0].managers: give either manager or managers, not both",
        ),
    ];
    for (text, expected) in cases {
        match parse(text, "cluster.toml") {
            Ok(c) => panic!("{text}\nwas accepted as {c:?}"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.starts_with(expected),
                    "{text}\n  gave: {message}\n  want: {expected}"
                );
                assert!(!message.contains('\n'), "{message}");
                assert!(!message.ends_with('.'), "{message}");
            }
        }
    }
}

#[test]
fn an_unreadable_file_names_the_path_and_the_reason() {
    let err = load(Path::new("/nonexistent/cluster.toml"))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("cannot read /nonexistent/cluster.toml: No such file or directory")
    );
}

#[test]
fn load_names_the_file_in_errors_and_in_the_config() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, "[manager]\nscheduler = \"fifo\"\n").unwrap_or_else(|e| panic!("{e}"));
    let err = load(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.starts_with(&format!("{}: manager.scheduler: ", path.display())),
        "{err}"
    );
    std::fs::write(&path, "[manager]\n").unwrap_or_else(|e| panic!("{e}"));
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.source, path.display().to_string());
}

#[test]
fn bad_host_volumes_and_registry_auth_are_refused_naming_the_key_and_never_the_password() {
    let cases: &[(&str, &str)] = &[
        (
            r#"host_volumes = ["/var/log"]"#,
            r#"cluster.toml: worker[0].host_volumes: must be a table such as { logs = "/var/log/app" }, got array"#,
        ),
        (
            r#"host_volumes = { logs = "var/log" }"#,
            r#"cluster.toml: worker[0].host_volumes.logs: "var/log" is not an absolute host path"#,
        ),
        (
            r#"host_volumes = { logs = 1 }"#,
            "cluster.toml: worker[0].host_volumes.logs: must be an absolute host path string, got integer",
        ),
        (
            r#"host_volumes = { "a b" = "/x" }"#,
            r#"cluster.toml: worker[0].host_volumes.a b: invalid host volume name "a b" (1 to 63 letters, digits, '_', '.' or '-')"#,
        ),
        (
            r#"registry_auth = { registry = "r.example" }"#,
            r#"cluster.toml: worker[0].registry_auth: must be an array of tables such as [{ registry = "registry.example:5000", username = "deploy", password = "..." }], got table"#,
        ),
        (
            r#"registry_auth = [{ registry = "r.example", username = "u" }]"#,
            "cluster.toml: worker[0].registry_auth[0].password: missing or empty (registry_auth needs registry, username and password)",
        ),
        (
            r#"registry_auth = [{ registry = "r.example", username = "u", password = "pw-1", email = "x" }]"#,
            r#"cluster.toml: unknown key "email" in worker[0].registry_auth[0] (valid: registry, username, password)"#,
        ),
        (
            r#"registry_auth = [{ registry = "r.example/path", username = "u", password = "pw-2" }]"#,
            r#"cluster.toml: worker[0].registry_auth[0].registry: "r.example/path" is not a registry host[:port] (e.g. registry.example:5000, docker.io)"#,
        ),
        (
            r#"registry_auth = [{ registry = "r.example", username = "u", password = "pw-3" }, { registry = "r.example", username = "v", password = "pw-4" }]"#,
            r#"cluster.toml: worker[0].registry_auth[1].registry: "r.example" is also the registry of worker[0].registry_auth[0]"#,
        ),
        (
            r#"registry_auth = [{ registry = "r.example", username = "u", password = 12345 }]"#,
            "cluster.toml: worker[0].registry_auth[0].password: must be a string, got integer",
        ),
    ];
    for (line, want) in cases {
        let text = format!("[[worker]]\nname = \"w\"\n{line}\n");
        match parse(&text, "cluster.toml") {
            Ok(c) => panic!("{text} was accepted as {c:?}"),
            Err(e) => {
                let got = e.to_string();
                assert_eq!(got, *want, "{text}");
                for secret in ["pw-1", "pw-2", "pw-3", "pw-4", "12345"] {
                    assert!(!got.contains(secret), "{got}");
                }
            }
        }
    }
}

#[test]
fn the_security_table_reads_acl_tls_and_insecure() {
    let c = parse_ok("[manager]\n[security]\nacl = true\ntls = \"auto\"\n");
    assert_eq!(
        c.security,
        SecurityConfig {
            acl: true,
            tls: TlsMode::Auto,
            insecure: false,
            join_token: None,
        }
    );
    assert!(c.security.is_secure());
    let c = parse_ok(
        "[manager]\n[security]\ninsecure = true\ntls = { ca = \"a\", cert = \"b\", key = \"c\" }\n",
    );
    assert_eq!(
        c.security.tls,
        TlsMode::Files {
            ca: "a".into(),
            cert: "b".into(),
            key: "c".into()
        }
    );
    assert!(c.security.insecure && !c.security.is_secure());
    assert_eq!(parse_ok("[manager]\n").security, SecurityConfig::default());
}
