//! The manager's DNS server: authoritative for `service.poseidon.`, answering from the catalog
//! (`manager/catalog.rs`) over UDP and TCP. The wire format is hickory-proto's; this file only
//! decides the answers ([`answer`], pure and unit-tested) and moves bytes ([`serve`]).
//!
//! - `NAME.service.poseidon.` A / AAAA: the addresses of the service's endpoints;
//! - `_NAME._tcp.service.poseidon.` SRV (and `NAME.service.poseidon.` SRV, as Consul answers
//!   it): one record per endpoint with its port, its target
//!   `TASK.NAME.service.poseidon.` (`TASK`: the first 8 hex digits of the task id), whose A or
//!   AAAA record comes in the additional section;
//! - `TASK.NAME.service.poseidon.` A / AAAA: that endpoint's address;
//! - any other name under the zone, or a service the manager does not know: NXDOMAIN; a name
//!   outside the zone: REFUSED (the server is not a resolver). TTLs are [`TTL`] seconds, so a
//!   resolver's cache follows the catalog within a few seconds.
//!
//! An endpoint's address is its node's endpoint address (the worker's `endpoint_address`, else the
//! host it advertises); an endpoint whose node advertises a host name and names no
//! `endpoint_address` has no record here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::http::Shutdown;
use crate::wire::CatalogEndpoint;

/// The zone the server is authoritative for.
pub const ZONE: &str = "service.poseidon.";

/// The TTL of every record, in seconds.
pub const TTL: u32 = 5;

/// How long a TCP client may stay idle between two queries before it is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Where the answers come from: a service's endpoints, `None` for a service nobody created.
pub trait Endpoints: Send + Sync + 'static {
    /// The endpoints of `service`.
    fn endpoints(&self, service: &str) -> Option<Vec<CatalogEndpoint>>;
}

impl Endpoints for crate::manager::Manager {
    fn endpoints(&self, service: &str) -> Option<Vec<CatalogEndpoint>> {
        self.catalog_service(service).map(|(_, eps)| eps)
    }
}

/// The short name of an endpoint's task in DNS: the first 8 hex digits of its id.
pub fn task_label(ep: &CatalogEndpoint) -> String {
    ep.task.to_string().chars().take(8).collect()
}

/// What a query asks for, once the zone is taken off its name.
enum Asked<'a> {
    /// The zone's apex.
    Apex,
    /// `NAME.`: the service's addresses.
    Service(&'a str),
    /// `_NAME._tcp.`: the service's SRV records.
    Srv(&'a str),
    /// `TASK.NAME.`: one endpoint's address.
    Task(&'a str, &'a str),
    /// Nothing this zone has.
    Unknown,
}

fn parse(labels: &[String]) -> Asked<'_> {
    match labels {
        [] => Asked::Apex,
        [name] => Asked::Service(name),
        [srv, proto] if proto == "_tcp" => match srv.strip_prefix('_') {
            Some(name) => Asked::Srv(name),
            None => Asked::Unknown,
        },
        [task, name] => Asked::Task(task, name),
        _ => Asked::Unknown,
    }
}

/// An address record of `ip` for `name`, if `ip` is of the type asked (`ANY` takes both).
fn address_record(name: &Name, ip: IpAddr, asked: RecordType) -> Option<Record> {
    match ip {
        IpAddr::V4(v4) if matches!(asked, RecordType::A | RecordType::ANY) => {
            Some(Record::from_rdata(name.clone(), TTL, RData::A(A(v4))))
        }
        IpAddr::V6(v6) if matches!(asked, RecordType::AAAA | RecordType::ANY) => {
            Some(Record::from_rdata(name.clone(), TTL, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// Adds one SRV record per endpoint of `service` (answering `qname`), and each target's address
/// in the additional section.
fn srv_records(resp: &mut Message, qname: &Name, service: &str, eps: &[CatalogEndpoint]) {
    for ep in eps {
        let Ok(ip) = ep.address.parse::<IpAddr>() else {
            continue;
        };
        let Ok(target) = Name::from_ascii(format!("{}.{service}.{ZONE}", task_label(ep))) else {
            continue;
        };
        let srv = SRV::new(1, 1, ep.port, target.clone());
        resp.add_answer(Record::from_rdata(qname.clone(), TTL, RData::SRV(srv)));
        resp.add_additionals(address_record(&target, ip, RecordType::ANY));
    }
}

/// The answer to one DNS request.
pub fn answer(request: &Message, catalog: &dyn Endpoints) -> Message {
    let mut resp = Message::response(request.metadata.id, request.metadata.op_code);
    resp.metadata.recursion_desired = request.metadata.recursion_desired;
    resp.add_queries(request.queries.iter().cloned());
    if request.metadata.message_type != MessageType::Query {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    }
    if request.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp;
    }
    let [query] = request.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp;
    };
    let zone = match Name::from_ascii(ZONE) {
        Ok(z) => z,
        Err(e) => {
            tracing::error!(error = %e, "the DNS zone name does not parse");
            resp.metadata.response_code = ResponseCode::ServFail;
            return resp;
        }
    };
    let qname = query.name().to_lowercase();
    if !zone.zone_of(&qname) {
        resp.metadata.response_code = ResponseCode::Refused;
        return resp;
    }
    resp.metadata.authoritative = true;
    let labels: Vec<String> = qname
        .iter()
        .take(usize::from(qname.num_labels() - zone.num_labels()))
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let asked = query.query_type();
    let service_of = |name: &str| catalog.endpoints(name);
    match parse(&labels) {
        Asked::Apex => {}
        Asked::Unknown => resp.metadata.response_code = ResponseCode::NXDomain,
        Asked::Service(name) if asked == RecordType::SRV => match service_of(name) {
            // As Consul does, the plain service name answers SRV too: it is what `dig NAME SRV`
            // asks.
            None => resp.metadata.response_code = ResponseCode::NXDomain,
            Some(eps) => srv_records(&mut resp, query.name(), name, &eps),
        },
        Asked::Service(name) => match service_of(name) {
            None => resp.metadata.response_code = ResponseCode::NXDomain,
            Some(eps) => {
                let mut seen: Vec<IpAddr> = Vec::new();
                for ip in eps.iter().filter_map(|e| e.address.parse::<IpAddr>().ok()) {
                    if !seen.contains(&ip) {
                        seen.push(ip);
                        resp.add_answers(address_record(query.name(), ip, asked));
                    }
                }
            }
        },
        Asked::Srv(name) => match service_of(name) {
            None => resp.metadata.response_code = ResponseCode::NXDomain,
            Some(_) if !matches!(asked, RecordType::SRV | RecordType::ANY) => {}
            Some(eps) => srv_records(&mut resp, query.name(), name, &eps),
        },
        Asked::Task(task, name) => {
            let eps = service_of(name).unwrap_or_default();
            let mine: Vec<&CatalogEndpoint> =
                eps.iter().filter(|e| task_label(e) == task).collect();
            if mine.is_empty() {
                resp.metadata.response_code = ResponseCode::NXDomain;
            }
            let mut seen: Vec<IpAddr> = Vec::new();
            for ip in mine.iter().filter_map(|e| e.address.parse::<IpAddr>().ok()) {
                if !seen.contains(&ip) {
                    seen.push(ip);
                    resp.add_answers(address_record(query.name(), ip, asked));
                }
            }
        }
    }
    resp
}

/// Decodes a request, answers it and encodes the answer, cut to `limit` bytes (with the TC bit)
/// when it is longer; `None` when the bytes are not a DNS message or the answer cannot be encoded.
fn respond(bytes: &[u8], catalog: &dyn Endpoints, limit: Option<usize>) -> Option<Vec<u8>> {
    let request = match Message::from_vec(bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "a DNS request that does not decode is dropped");
            return None;
        }
    };
    let resp = answer(&request, catalog);
    let encoded = resp.to_vec();
    let out = match (encoded, limit) {
        (Ok(v), Some(max)) if v.len() > max => resp.truncate().to_vec(),
        (other, _) => other,
    };
    out.map_err(|e| tracing::warn!(error = %e, "a DNS answer cannot be encoded"))
        .ok()
}

/// Binds the DNS server's UDP socket and TCP listener on `addr` (the TCP port is the UDP one, so
/// port 0 gives one ephemeral port for both).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    // An ephemeral UDP port may be taken over TCP by another program: then try another one.
    let attempts = if addr.port() == 0 { 32 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port")))
}

/// Answers DNS queries on `udp` and `tcp` until `shutdown` is raised.
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    catalog: Arc<dyn Endpoints>,
    shutdown: Shutdown,
) {
    let udp_loop = serve_udp(udp, catalog.clone());
    let tcp_loop = serve_tcp(tcp, catalog, shutdown.clone());
    tokio::select! {
        _ = udp_loop => {}
        _ = tcp_loop => {}
        _ = shutdown.wait() => {}
    }
}

async fn serve_udp(udp: UdpSocket, catalog: Arc<dyn Endpoints>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match udp.recv_from(&mut buf).await {
            Ok(v) => v,
            Err(e) => {
                // An ICMP error of an earlier reply can surface here; the socket stays usable.
                tracing::debug!(error = %e, "DNS UDP receive failed");
                continue;
            }
        };
        let Some(bytes) = buf.get(..n) else { continue };
        // Without EDNS a UDP answer must fit in 512 bytes; with it, in what the client offered.
        let limit = Message::from_vec(bytes)
            .map(|m| usize::from(m.max_payload().max(512)))
            .unwrap_or(512);
        if let Some(out) = respond(bytes, catalog.as_ref(), Some(limit)) {
            if let Err(e) = udp.send_to(&out, peer).await {
                tracing::debug!(error = %e, peer = %peer, "DNS UDP reply not sent");
            }
        }
    }
}

async fn serve_tcp(tcp: TcpListener, catalog: Arc<dyn Endpoints>, shutdown: Shutdown) {
    loop {
        match tcp.accept().await {
            Ok((stream, peer)) => {
                let catalog = catalog.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        r = serve_conn(stream, catalog) => if let Err(e) = r {
                            tracing::debug!(error = %e, peer = %peer, "DNS TCP connection ended");
                        },
                        _ = shutdown.wait() => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "DNS TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One TCP connection: length-prefixed messages (RFC 1035 4.2.2), until the client closes or
/// stays idle for [`TCP_IDLE`].
async fn serve_conn(mut stream: TcpStream, catalog: Arc<dyn Endpoints>) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut buf = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle"))??;
        let Some(out) = respond(&buf, catalog.as_ref(), None) else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(out.len()) else {
            return Ok(());
        };
        stream.write_u16(n).await?;
        stream.write_all(&out).await?;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "dns_tests.rs"]
mod tests;
