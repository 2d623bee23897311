//! The routing mesh in one process against real sockets (no Docker): HTTP mode spreads requests
//! over the endpoints, adds `X-Forwarded-For`, routes by `Host`, and retries past an endpoint that
//! refuses or closes without answering; 503 with a JSON body when a service has no endpoint; TCP
//! mode passes a half-close through; a port that leaves the table stops listening while an
//! established connection goes on; the worker's own API port is never opened. HTTP mode keeps a
//! client's connection alive across requests and reuses its connections to the endpoints (one
//! each for a client's sequential requests), an endpoint that closes its connection after every
//! answer still answers every request, and a chunked request body is streamed through. A GET
//! whose endpoint breaks off mid-answer is answered by the next endpoint; a POST is not sent twice.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use poseidon::http::Shutdown;
use poseidon::mesh::{Mesh, MeshOptions};
use poseidon::service::Publish;
use poseidon::task::TaskId;
use poseidon::wire::{CatalogEndpoint, MeshEntry, MeshService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::wait_for;

const WAIT: Duration = Duration::from_secs(10);

/// An HTTP backend answering `NAME|X-Forwarded-For|Host` to every request.
async fn http_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let h = |k: &str| {
                        req.headers()
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let body = format!("{name}|{}|{}", h("x-forwarded-for"), h("host"));
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}

/// An HTTP backend answering `NAME POST-BODY-LENGTH` and counting the connections it accepted;
/// with `keep_alive` false it closes each connection after its first answer.
async fn counting_backend(
    name: &'static str,
    keep_alive: bool,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: Request<hyper::body::Incoming>| async move {
                        let body = http_body_util::BodyExt::collect(req.into_body())
                            .await
                            .unwrap()
                            .to_bytes();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "{name} {}",
                            body.len()
                        )))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (port, accepted)
}

/// A backend that accepts and closes at once, as docker-proxy does when its container is gone.
async fn closing_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            drop(s);
        }
    });
    port
}

/// A backend that reads a request, answers a 200 that declares 100 bytes, sends 4 and closes: an
/// endpoint killed mid-answer. It counts the requests it read.
async fn breaking_backend() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = requests.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                // The headers, then as many bytes of body as they declare (none for a GET), so
                // that the close below leaves nothing unread (which would reset the connection).
                let mut seen = Vec::new();
                let mut buf = [0u8; 1024];
                let whole = |seen: &[u8]| {
                    let text = String::from_utf8_lossy(seen).to_ascii_lowercase();
                    let Some(end) = text.find("\r\n\r\n") else {
                        return false;
                    };
                    let declared = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    seen.len() >= end + 4 + declared
                };
                while !whole(&seen) {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
                    .await;
            });
        }
    });
    (port, requests)
}

/// A port nothing listens on (bound, then let go).
fn refused_port() -> u16 {
    common::free_port()
}

/// A TCP backend that reads until the client half-closes, then answers `NAME got N bytes`.
async fn tcp_backend(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.unwrap();
                s.write_all(format!("{name} got {} bytes", all.len()).as_bytes())
                    .await
                    .unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    port
}

fn entry(port: u16, mode: &str, hosts: &[&str], backends: &[u16]) -> MeshEntry {
    MeshEntry {
        publish: Publish {
            port,
            target: 80,
            mode: mode.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            balance: "round_robin".into(),
        },
        endpoints: backends
            .iter()
            .map(|p| CatalogEndpoint {
                task: TaskId::new(),
                node: "w1".into(),
                address: "127.0.0.1".into(),
                port: *p,
                healthy: true,
            })
            .collect(),
    }
}

fn service(name: &str, entries: Vec<MeshEntry>) -> MeshService {
    MeshService {
        name: name.into(),
        entries,
    }
}

/// A mesh on its own loopback address (so tests in parallel do not meet), without a manager.
fn mesh(ingress: &str, api_port: u16) -> (Mesh, IpAddr, Shutdown) {
    let ip: IpAddr = ingress.parse().unwrap();
    let shutdown = Shutdown::new();
    let m = Mesh::start(
        MeshOptions {
            node: "w1".into(),
            ingress: ip,
            api_port,
        },
        None,
        shutdown.clone(),
    );
    (m, ip, shutdown)
}

/// A port free on `ip` now.
fn free_on(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn listening(addr: SocketAddr) {
    wait_for(&format!("the mesh to listen on {addr}"), WAIT, || async {
        TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
}

/// `GET path` on `addr` with `Host: host` (the address when `None`), one connection per request;
/// the status and the body.
async fn get(addr: SocketAddr, path: &str, host: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let host = host.map_or(addr.to_string(), str::to_string);
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_spreads_requests_adds_x_forwarded_for_and_retries_past_dead_endpoints() {
    let (a, b) = (http_backend("a").await, http_backend("b").await);
    let (closing, refused) = (closing_backend().await, refused_port());
    let (m, ip, shutdown) = mesh("127.0.0.11", 1);
    let port = free_on(ip);
    m.set_services(&[service(
        "web",
        vec![entry(port, "http", &[], &[a, b, closing, refused])],
    )]);
    let addr = SocketAddr::new(ip, port);
    listening(addr).await;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..40 {
        let (status, body) = get(addr, "/x", None).await;
        assert_eq!(status, 200, "{body}");
        let parts: Vec<&str> = body.split('|').collect();
        assert_eq!(
            parts[1], "127.0.0.1",
            "X-Forwarded-For is the client: {body}"
        );
        assert_eq!(
            parts[2],
            addr.to_string(),
            "the Host header is kept: {body}"
        );
        *seen.entry(parts[0].to_string()).or_default() += 1;
    }
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert!(
        seen.values().all(|n| *n >= 10),
        "round-robin spreads: {seen:?}"
    );
    let metrics = m.metrics_text();
    for ep in [closing, refused] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("poseidon_mesh_failures_total")
                    && l.contains(&format!("endpoint=\"127.0.0.1:{ep}\""))
            })
            .unwrap_or_else(|| panic!("no failures line for {ep}:\n{metrics}"));
        let n: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(n >= 5, "{line}");
    }
    let requests: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("poseidon_mesh_requests_total"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(requests, 40, "{metrics}");
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_pick_the_service_and_a_service_without_endpoints_is_a_503_with_json() {
    let (a, b) = (http_backend("a").await, http_backend("b").await);
    let (m, ip, shutdown) = mesh("127.0.0.12", 1);
    let (shared, empty) = (free_on(ip), free_on(ip));
    m.set_services(&[
        service("api", vec![entry(shared, "http", &["api.example"], &[a])]),
        service("www", vec![entry(shared, "http", &["www.example"], &[b])]),
        service("idle", vec![entry(empty, "http", &[], &[])]),
    ]);
    listening(SocketAddr::new(ip, shared)).await;
    listening(SocketAddr::new(ip, empty)).await;
    // (Host header, status, what the body starts with)
    let rows: &[(&str, u16, &str)] = &[
        ("api.example", 200, "a|"),
        ("WWW.example:80", 200, "b|"),
        ("other.example", 404, "{\"error\":"),
    ];
    for (host, status, start) in rows {
        let (s, body) = get(SocketAddr::new(ip, shared), "/", Some(host)).await;
        assert_eq!(
            (s, body.starts_with(start)),
            (*status, true),
            "{host}: {body}"
        );
    }
    let (s, body) = get(SocketAddr::new(ip, empty), "/", None).await;
    assert_eq!(s, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "no healthy endpoint for service \"idle\"");
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_keeps_connections_alive_on_both_sides() {
    let ((a, a_conns), (b, b_conns)) = (
        counting_backend("a", true).await,
        counting_backend("b", true).await,
    );
    let (closing, closing_conns) = counting_backend("c", false).await;
    let (m, ip, shutdown) = mesh("127.0.0.15", 1);
    let (both, one) = (free_on(ip), free_on(ip));
    m.set_services(&[
        service("ab", vec![entry(both, "http", &[], &[a, b])]),
        service("c", vec![entry(one, "http", &[], &[closing])]),
    ]);
    for port in [both, one] {
        listening(SocketAddr::new(ip, port)).await;
    }
    // One client connection, 20 requests in turn (GETs and POSTs with a body).
    let stream = TcpStream::connect(SocketAddr::new(ip, both)).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut seen = Vec::new();
    for i in 0..20 {
        let body = if i % 2 == 0 { "" } else { "twelve bytes" };
        let req = Request::builder()
            .method(if body.is_empty() { "GET" } else { "POST" })
            .uri("/")
            .header("host", "ab.example")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        tx.ready().await.unwrap();
        let resp = tokio::time::timeout(WAIT, tx.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(text.to_vec()).unwrap();
        assert!(text.ends_with(&format!(" {}", body.len())), "{text}");
        seen.push(text[..1].to_string());
    }
    assert!(
        seen.iter().filter(|s| *s == "a").count() == 10,
        "round-robin per request on one client connection: {seen:?}"
    );
    // The mesh reused one connection to each endpoint for the client's sequential requests.
    assert_eq!(
        (
            a_conns.load(std::sync::atomic::Ordering::SeqCst),
            b_conns.load(std::sync::atomic::Ordering::SeqCst)
        ),
        (1, 1)
    );
    // An endpoint closing after every answer: each request finds its pooled connection closed
    // (or closing) and goes out on a new one; none fails.
    for _ in 0..10 {
        let (status, body) = get(SocketAddr::new(ip, one), "/", None).await;
        assert_eq!((status, body.as_str()), (200, "c 0"));
    }
    assert_eq!(closing_conns.load(std::sync::atomic::Ordering::SeqCst), 10);
    // A chunked body (no length known) is streamed to the endpoint rather than held.
    let mut s = TcpStream::connect(SocketAddr::new(ip, one)).await.unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.ends_with("c 12"),
        "{raw}"
    );
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_short_is_replaced_for_a_get_and_not_for_a_post() {
    let a = http_backend("a").await;
    let (broken, broken_requests) = breaking_backend().await;
    let ((x, x_requests), (y, y_requests)) = (breaking_backend().await, breaking_backend().await);
    let (m, ip, shutdown) = mesh("127.0.0.16", 1);
    let (mixed, only_broken) = (free_on(ip), free_on(ip));
    m.set_services(&[
        service("mixed", vec![entry(mixed, "http", &[], &[a, broken])]),
        service("broken", vec![entry(only_broken, "http", &[], &[x, y])]),
    ]);
    for port in [mixed, only_broken] {
        listening(SocketAddr::new(ip, port)).await;
    }
    // A GET whose endpoint dies mid-answer is sent to the next one: every GET gets a whole answer.
    for _ in 0..10 {
        let (status, body) = get(SocketAddr::new(ip, mixed), "/", None).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("a|"), "{body}");
    }
    assert!(
        broken_requests.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "round-robin sent GETs to the breaking endpoint"
    );
    // A POST was taken by its endpoint once it began answering; it is not sent again, and the
    // client sees the answer break off.
    for _ in 0..4 {
        let mut s = TcpStream::connect(SocketAddr::new(ip, only_broken))
            .await
            .unwrap();
        s.write_all(
            b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        )
        .await
        .unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
            .await
            .unwrap();
        let raw = String::from_utf8_lossy(&raw);
        let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert!(
            body.len() < 100,
            "a whole answer from a breaking endpoint: {raw}"
        );
    }
    let sent = x_requests.load(std::sync::atomic::Ordering::SeqCst)
        + y_requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(sent, 4, "each POST reached one endpoint once");
    shutdown.trigger();
}

/// Sends `data`, half-closes, and reads the answer to its end.
async fn exchange(s: &mut TcpStream, data: &[u8]) -> String {
    s.write_all(data).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_mode_passes_a_half_close_and_a_removed_port_keeps_its_open_connections() {
    let t = tcp_backend("t").await;
    let refused = refused_port();
    let (m, ip, shutdown) = mesh("127.0.0.13", 1);
    let port = free_on(ip);
    let addr = SocketAddr::new(ip, port);
    m.set_services(&[service("db", vec![entry(port, "tcp", &[], &[refused, t])])]);
    listening(addr).await;
    // The backend answers only after the client's half-close has reached it through the mesh.
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(exchange(&mut s, &[7u8; 1000]).await, "t got 1000 bytes");
    }
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"before").await.unwrap();
    // Joined to the backend (not only queued in the listener's backlog) before the port goes.
    let active = format!("poseidon_mesh_active{{service=\"db\",endpoint=\"127.0.0.1:{t}\"}} 1");
    wait_for("the connection to be proxied", WAIT, || async {
        m.metrics_text().lines().any(|l| l == active).then_some(())
    })
    .await;
    m.set_services(&[]);
    wait_for("the removed port to stop listening", WAIT, || async {
        TcpStream::connect(addr).await.is_err().then_some(())
    })
    .await;
    assert_eq!(exchange(&mut open, b" and after").await, "t got 16 bytes");
    shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_own_api_port_is_never_opened() {
    let ip: IpAddr = "127.0.0.14".parse().unwrap();
    let api_port = free_on(ip);
    let other = free_on(ip);
    let (m, _, shutdown) = mesh("127.0.0.14", api_port);
    let t = tcp_backend("t").await;
    m.set_services(&[service(
        "web",
        vec![
            entry(api_port, "tcp", &[], &[t]),
            entry(other, "tcp", &[], &[t]),
        ],
    )]);
    // The other port of the same service opens, so the table has been applied.
    listening(SocketAddr::new(ip, other)).await;
    assert!(TcpStream::connect(SocketAddr::new(ip, api_port))
        .await
        .is_err());
    shutdown.trigger();
}
