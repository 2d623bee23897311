//! HTTP/1.1 mode: each client connection is served by hyper with keep-alive, and each request is
//! sent to an endpoint of the route its `Host` header picks, over pooled keep-alive connections.
//! The proxy adds `X-Forwarded-For`, drops hop-by-hop headers, and answers itself with a JSON
//! `{"error": ...}`: 503 when the service has no healthy endpoint, 404 when no service on the
//! port answers the host, 502 when every endpoint failed.
//!
//! A request whose body is small enough to hold ([`MAX_RETRY_BODY`]) is retried on another
//! endpoint when one fails before answering anything: a refused connect, or a connection that
//! closes without a response (what docker-proxy does when the container behind it has died).
//! Nothing of a failed attempt has reached the client then, so the retry is invisible to it.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::metrics::ActiveGuard;
use super::{tcp, Shared, CONNECT_TIMEOUT};

/// The largest request body held in memory so that the request can be retried; a larger (or
/// unsized, chunked) body is streamed to one endpoint and not retried.
pub const MAX_RETRY_BODY: u64 = 1 << 20;

/// How long a client connection may take to send a request's headers (and stay idle).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The body type of proxied requests and answers.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// The pooled HTTP client towards the endpoints.
pub type Upstream = Client<HttpConnector, ProxyBody>;

/// A client keeping idle connections to endpoints for reuse.
pub(crate) fn upstream() -> Upstream {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(c)
}

/// Serves one accepted client connection on `port`, request after request (keep-alive).
pub(crate) async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, port: u16) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req, peer.ip(), port).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, port, error = %e, "mesh: an HTTP client connection ended with an error");
    }
}

/// A JSON `{"error": message}` answer of the proxy itself.
fn error(status: u16, message: String) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The headers that describe one connection, not the message (RFC 9110 section 7.6.1), with
/// those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        headers.remove(n);
    }
}

/// Appends the client's address to `X-Forwarded-For` (made when absent).
fn forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.trim().is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// A request body: held (and so resendable), or a stream that can be sent once.
enum Payload {
    Held(Bytes),
    Stream(Option<Incoming>),
}

async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    client: IpAddr,
    port: u16,
) -> Response<ProxyBody> {
    let table = shared.table();
    let Some(plan) = table.ports.get(&port) else {
        return error(503, format!("port {port} is no longer published"));
    };
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .map(str::to_string);
    let Some(route) = plan.route_for(host.as_deref()) else {
        return error(
            404,
            format!(
                "no service published on port {port} answers host {:?}",
                host.unwrap_or_default()
            ),
        );
    };
    let none = || shared.metrics.endpoint(&route.service, "none");
    if route.backends.is_empty() {
        none().failures.fetch_add(1, Ordering::Relaxed);
        return error(
            503,
            format!("no healthy endpoint for service {:?}", route.service),
        );
    }
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    forwarded_for(&mut parts.headers, client);
    let mut payload = match body.size_hint().upper() {
        Some(n) if n <= MAX_RETRY_BODY => {
            match Limited::new(body, MAX_RETRY_BODY as usize).collect().await {
                Ok(c) => Payload::Held(c.to_bytes()),
                Err(e) => return error(400, format!("cannot read the request body: {e}")),
            }
        }
        _ => Payload::Stream(Some(body)),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut tried = Vec::new();
    let mut last_error = String::from("no endpoint was tried");
    while let Some(b) = tcp::next_backend(shared, route, port, &mut tried) {
        let (body, sent) = match &mut payload {
            Payload::Held(bytes) => (
                Full::new(bytes.clone())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
                bytes.len() as u64,
            ),
            Payload::Stream(slot) => match slot.take() {
                Some(s) => (s.boxed_unsync(), 0),
                // A streamed body went to a failed endpoint and cannot be sent again.
                None => break,
            },
        };
        let mut up = Request::new(body);
        *up.method_mut() = parts.method.clone();
        *up.headers_mut() = parts.headers.clone();
        *up.uri_mut() = match format!("http://{}{path}", b.addr).parse() {
            Ok(u) => u,
            Err(e) => return error(400, format!("cannot forward path {path:?}: {e}")),
        };
        let stats = shared.metrics.endpoint(&route.service, &b.addr);
        let open = ActiveGuard::new(stats.clone());
        match shared.http.request(up).await {
            Ok(resp) => {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                stats.bytes_in.fetch_add(sent, Ordering::Relaxed);
                let (mut rp, rb) = resp.into_parts();
                strip_hop_by_hop(&mut rp.headers);
                let counted = stats.clone();
                // The answer counts as open (for least-connections) until its body is done.
                let body = rb
                    .map_frame(move |f| {
                        let _still_open = &open;
                        if let Some(d) = f.data_ref() {
                            counted
                                .bytes_out
                                .fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                        f
                    })
                    .boxed_unsync();
                return Response::from_parts(rp, body);
            }
            Err(e) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                last_error = format!("{}: {e}", b.addr);
                if let Some(src) = std::error::Error::source(&e) {
                    last_error.push_str(&format!(": {src}"));
                }
                tracing::debug!(service = %route.service, endpoint = %b.addr, error = %last_error, "mesh: request failed before an answer, trying the next endpoint");
            }
        }
    }
    none().failures.fetch_add(1, Ordering::Relaxed);
    error(
        502,
        format!(
            "every endpoint of service {:?} failed; last: {last_error}",
            route.service
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_the_client_joins_x_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        forwarded_for(&mut h, "192.0.2.7".parse().expect("an address"));
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["accept", "x-forwarded-for"]);
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        let mut fresh = HeaderMap::new();
        forwarded_for(&mut fresh, "::1".parse().expect("an address"));
        assert_eq!(fresh["x-forwarded-for"], "::1");
    }
}
