//! Unit tests of the DNS answers: each query against a fixed catalog, the records written out.

use std::collections::BTreeMap;

use hickory_proto::op::Query;
use uuid::Uuid;

use super::*;
use crate::task::TaskId;

/// A catalog of `web` (two endpoints on one IPv4 node, one on an IPv6 node, one on a node that
/// advertises a host name) and `idle` (known, no endpoint).
struct Fixed(BTreeMap<&'static str, Vec<CatalogEndpoint>>);

impl Endpoints for Fixed {
    fn endpoints(&self, service: &str) -> Option<Vec<CatalogEndpoint>> {
        self.0.get(service).cloned()
    }
}

fn ep(task: u128, address: &str, port: u16) -> CatalogEndpoint {
    CatalogEndpoint {
        task: TaskId(Uuid::from_u128(task)),
        node: "n".into(),
        address: address.into(),
        port,
        healthy: true,
    }
}

fn catalog() -> Fixed {
    let mut m = BTreeMap::new();
    m.insert(
        "web",
        vec![
            ep(0xaaaaaaaa_0000_0000_0000_000000000001, "10.0.0.5", 32768),
            ep(0xbbbbbbbb_0000_0000_0000_000000000002, "10.0.0.5", 32769),
            ep(0xcccccccc_0000_0000_0000_000000000003, "fd00::7", 40000),
            ep(0xdddddddd_0000_0000_0000_000000000004, "worker-4", 40001),
        ],
    );
    m.insert("idle", Vec::new());
    Fixed(m)
}

fn ask(name: &str, rtype: RecordType) -> Message {
    let mut q = Message::new(4242, MessageType::Query, OpCode::Query);
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    answer(&q, &catalog())
}

/// The records of a section as `name type data` lines.
fn lines(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            assert_eq!(r.ttl, TTL);
            format!("{} {} {}", r.name, r.record_type(), r.data)
        })
        .collect()
}

#[test]
fn a_service_name_answers_the_distinct_addresses_of_its_endpoints_by_type() {
    let r = ask("web.service.poseidon.", RecordType::A);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(r.metadata.id, 4242);
    assert_eq!(lines(&r.answers), vec!["web.service.poseidon. A 10.0.0.5"]);
    let r = ask("WEB.Service.Poseidon.", RecordType::AAAA);
    assert_eq!(
        lines(&r.answers),
        vec!["WEB.Service.Poseidon. AAAA fd00::7"]
    );
}

#[test]
fn the_srv_name_answers_one_record_per_endpoint_with_its_port_and_a_resolvable_target() {
    let r = ask("_web._tcp.service.poseidon.", RecordType::SRV);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        lines(&r.answers),
        vec![
            "_web._tcp.service.poseidon. SRV 1 1 32768 aaaaaaaa.web.service.poseidon.",
            "_web._tcp.service.poseidon. SRV 1 1 32769 bbbbbbbb.web.service.poseidon.",
            "_web._tcp.service.poseidon. SRV 1 1 40000 cccccccc.web.service.poseidon.",
        ]
    );
    assert_eq!(
        lines(&r.additionals),
        vec![
            "aaaaaaaa.web.service.poseidon. A 10.0.0.5",
            "bbbbbbbb.web.service.poseidon. A 10.0.0.5",
            "cccccccc.web.service.poseidon. AAAA fd00::7",
        ]
    );
    // The plain service name answers the same SRV records (what `dig NAME SRV` asks).
    let plain = ask("web.service.poseidon.", RecordType::SRV);
    assert_eq!(
        lines(&plain.answers),
        vec![
            "web.service.poseidon. SRV 1 1 32768 aaaaaaaa.web.service.poseidon.",
            "web.service.poseidon. SRV 1 1 32769 bbbbbbbb.web.service.poseidon.",
            "web.service.poseidon. SRV 1 1 40000 cccccccc.web.service.poseidon.",
        ]
    );
    assert_eq!(plain.additionals.len(), 3);
    // The target resolves on its own.
    let r = ask("bbbbbbbb.web.service.poseidon.", RecordType::A);
    assert_eq!(
        lines(&r.answers),
        vec!["bbbbbbbb.web.service.poseidon. A 10.0.0.5"]
    );
}

#[test]
fn unknown_names_are_nxdomain_and_a_service_without_endpoints_is_an_empty_answer() {
    let rows: &[(&str, RecordType, ResponseCode, usize)] = &[
        (
            "nosuch.service.poseidon.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "_nosuch._tcp.service.poseidon.",
            RecordType::SRV,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "eeeeeeee.web.service.poseidon.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "a.b.c.service.poseidon.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "_web._udp.service.poseidon.",
            RecordType::SRV,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "idle.service.poseidon.",
            RecordType::A,
            ResponseCode::NoError,
            0,
        ),
        (
            "_idle._tcp.service.poseidon.",
            RecordType::SRV,
            ResponseCode::NoError,
            0,
        ),
        (
            "web.service.poseidon.",
            RecordType::MX,
            ResponseCode::NoError,
            0,
        ),
        ("service.poseidon.", RecordType::A, ResponseCode::NoError, 0),
        ("example.com.", RecordType::A, ResponseCode::Refused, 0),
        (
            "web.service.poseidon.",
            RecordType::ANY,
            ResponseCode::NoError,
            2,
        ),
    ];
    for (name, rtype, code, answers) in rows {
        let r = ask(name, *rtype);
        assert_eq!(r.metadata.response_code, *code, "{name} {rtype}");
        assert_eq!(r.answers.len(), *answers, "{name} {rtype}");
    }
}

#[test]
fn a_request_that_is_not_a_query_is_refused_with_a_code_not_dropped() {
    let mut q = Message::new(7, MessageType::Query, OpCode::Update);
    q.add_query(Query::query(
        Name::from_ascii("web.service.poseidon.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        answer(&q, &catalog()).metadata.response_code,
        ResponseCode::NotImp
    );
    let empty = Message::new(8, MessageType::Query, OpCode::Query);
    assert_eq!(
        answer(&empty, &catalog()).metadata.response_code,
        ResponseCode::FormErr
    );
    // Bytes that are no DNS message get no answer at all.
    assert_eq!(respond(&[1, 2, 3], &catalog(), Some(512)), None);
}
