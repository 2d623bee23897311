//! The manager's DNS server on a mock cluster, asked real queries over UDP and TCP (hickory's
//! message types on plain sockets), and with Debian's `dig` when it is installed (in CI it must
//! be): SRV records carry the catalog's ports, A records its addresses, an unknown name is
//! NXDOMAIN.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/readme.rs"]
mod readme;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{localize, start, wait_for, Api};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use poseidon::client::ManagerClient;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

const CLUSTER: &str = r#"
[manager]
heartbeat_ttl = "2s"

[[worker]]
name = "d1"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = { cpus = 64.0, memory = "64g" }

[[worker]]
name = "d2"
runtime = "mock"
listen = "127.0.0.1:0"
heartbeat_interval = "200ms"
capacity = { cpus = 64.0, memory = "64g" }
"#;

fn query(id: u16, name: &str, rtype: RecordType) -> Vec<u8> {
    let mut q = Message::new(id, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    q.to_vec().unwrap()
}

async fn over_udp(dns: SocketAddr, id: u16, name: &str, rtype: RecordType) -> Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&query(id, name, rtype), dns).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("a UDP answer within 5 s")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, id);
    m
}

async fn over_tcp(dns: SocketAddr, queries: &[(u16, &str, RecordType)]) -> Vec<Message> {
    let mut conn = tokio::net::TcpStream::connect(dns).await.unwrap();
    let mut out = Vec::new();
    // Several queries on one connection, as a resolver that fell back to TCP sends them.
    for (id, name, rtype) in queries {
        let q = query(*id, name, *rtype);
        conn.write_u16(q.len() as u16).await.unwrap();
        conn.write_all(&q).await.unwrap();
        let len = conn.read_u16().await.unwrap();
        let mut buf = vec![0u8; usize::from(len)];
        conn.read_exact(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf).unwrap();
        assert_eq!(m.metadata.id, *id);
        out.push(m);
    }
    out
}

/// The ports of a message's SRV answers, sorted (two nodes may bind the same host port).
fn srv_ports(m: &Message) -> Vec<u16> {
    let mut ports: Vec<u16> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.port),
            _ => None,
        })
        .collect();
    ports.sort();
    ports
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_udp_and_tcp_answers_srv_and_a_records_from_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let base = run.manager_url().unwrap();
    let dns = run
        .manager
        .as_ref()
        .unwrap()
        .dns_addr
        .expect("DNS is on by default");
    let api = Api::new(base.clone());
    let client = ManagerClient::new(&base, Duration::from_secs(30));
    let body = json!({
        "name": "web",
        "count": 3,
        "task": {"image": "app:1", "ports": ["80"]},
        "publish": [{"port": 8080, "target": 80, "mode": "tcp"}]
    });
    assert_eq!(api.post("/services", &body).await.0, 201);
    let eps = wait_for("3 endpoints of web", WAIT, || async {
        let got = client.catalog_service("web", None).await.unwrap();
        (got.value.len() == 3).then_some(got.value)
    })
    .await;
    let mut want: Vec<u16> = eps.iter().map(|e| e.port).collect();
    want.sort();
    let tasks: BTreeSet<_> = eps.iter().map(|e| e.task).collect();
    assert_eq!(tasks.len(), 3, "three tasks: {eps:?}");

    let srv = over_udp(dns, 1, "_web._tcp.service.poseidon.", RecordType::SRV).await;
    assert_eq!(srv.metadata.response_code, ResponseCode::NoError);
    assert!(srv.metadata.authoritative);
    assert_eq!(srv_ports(&srv), want);
    // Every SRV target resolves, in the additional section and on its own.
    assert_eq!(srv.additionals.len(), 3);
    for r in &srv.answers {
        let RData::SRV(s) = &r.data else {
            panic!("{r}")
        };
        let a = over_udp(dns, 2, &s.target.to_ascii(), RecordType::A).await;
        assert_eq!(a.answers.len(), 1, "{}", s.target);
        assert_eq!(a.answers[0].data.to_string(), "127.0.0.1");
    }

    let a = over_udp(dns, 3, "web.service.poseidon.", RecordType::A).await;
    assert_eq!(
        a.answers.len(),
        1,
        "one address: every worker advertises loopback"
    );
    assert_eq!(a.answers[0].data.to_string(), "127.0.0.1");
    assert_eq!(a.answers[0].ttl, 5);
    let nx = over_udp(dns, 4, "nosuch.service.poseidon.", RecordType::A).await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);

    let tcp = over_tcp(
        dns,
        &[
            (5, "_web._tcp.service.poseidon.", RecordType::SRV),
            (6, "_nosuch._tcp.service.poseidon.", RecordType::SRV),
        ],
    )
    .await;
    assert_eq!(srv_ports(&tcp[0]), want);
    assert_eq!(tcp[1].metadata.response_code, ResponseCode::NXDomain);

    dig_srv(dns, &want);
    run.stop().await;
}

/// The README's `dig @127.0.0.1 -p PORT web.service.poseidon SRV`, its answer section parsed;
/// skipped when `dig` is missing, except in CI, where `.ci/run` installs it.
fn dig_srv(dns: SocketAddr, want: &[u16]) {
    let out = match std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &dns.port().to_string(),
            "web.service.poseidon",
            "SRV",
        ])
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI: dig (Debian's dnsutils) must be installed by .ci/run: {e}")
        }
        Err(e) => {
            eprintln!("skipping the dig check: dig is not installed ({e})");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dig failed: {text}");
    assert!(text.contains("status: NOERROR"), "{text}");
    // `web.service.poseidon. 5 IN SRV 1 1 PORT TARGET.`
    let mut ports: Vec<u16> = text
        .lines()
        .filter(|l| !l.starts_with(';'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 8 && f[3] == "SRV")
        .map(|f| f[6].parse().unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, want, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_listen_off_starts_no_dns_server_and_a_bad_value_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let off = CLUSTER.replace(
        "heartbeat_ttl = \"2s\"",
        "heartbeat_ttl = \"2s\"\ndns_listen = \"off\"",
    );
    let run = start(&localize(&off, dir.path(), true)).await;
    assert_eq!(run.manager.as_ref().unwrap().dns_addr, None);
    run.stop().await;
    let bad = CLUSTER.replace("heartbeat_ttl = \"2s\"", "dns_listen = \"port 53\"");
    let err = poseidon::config::parse(&bad, "bad.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("manager.dns_listen"), "{err}");
}

/// Whether `dig` can run here; in CI its absence fails the test (`.ci/run` installs dnsutils).
fn dig_installed() -> bool {
    let ok = Command::new("dig").arg("-v").output().is_ok();
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI: dig (Debian's dnsutils) must be installed by .ci/run");
    }
    ok
}

/// The README's discovery block, read from README.md and run as written with curl and dig, against
/// a mock cluster whose manager and DNS port `POSEIDON_MANAGER` and `POSEIDON_DNS_PORT` name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_discovery_block_runs_as_written() {
    if !dig_installed() {
        eprintln!("skipping the README discovery block: dig is not installed");
        return;
    }
    let script = readme::block("discovery", "sh");
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize(CLUSTER, dir.path(), true)).await;
    let url = run.manager_url().unwrap();
    let dns = run
        .manager
        .as_ref()
        .unwrap()
        .dns_addr
        .unwrap()
        .port()
        .to_string();
    let (stdout, log) = tokio::task::block_in_place(|| {
        readme::run_script_with(
            &script,
            dir.path(),
            std::path::Path::new(env!("CARGO_BIN_EXE_poseidon"))
                .parent()
                .unwrap(),
            &[
                ("POSEIDON_MANAGER", url.as_str()),
                ("POSEIDON_DNS_PORT", dns.as_str()),
            ],
            60,
        )
    });
    assert!(
        stdout.contains(r#"[{"name":"web","endpoints":2}]"#),
        "{log}"
    );
    assert!(stdout.contains("status: NOERROR"), "{log}");
    assert!(stdout.contains("ANSWER: 2,"), "two SRV records:\n{log}");
    // `+short` A: one address, both workers advertise loopback; `+short` SRV: two records.
    assert!(stdout.lines().any(|l| l == "127.0.0.1"), "{log}");
    let short_srv = stdout
        .lines()
        .filter(|l| l.starts_with("1 1 ") && l.ends_with(".web.service.poseidon."))
        .count();
    assert_eq!(short_srv, 2, "{log}");
    run.stop().await;
}
