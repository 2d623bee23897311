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
//!
//! An idempotent request (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) whose answer has a known, small
//! length ([`MAX_HELD_ANSWER`]) has that answer read whole before anything is passed on, so an
//! endpoint that dies after its headers but before the end of its body (a container killed
//! mid-answer) is one more failure before answering, and the request goes to the next endpoint.
//! Other answers are streamed: once their first bytes have left, a failure reaches the client.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Request, Response, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::metrics::{ActiveGuard, EndpointStats};
use super::pool::{Pool, Sender};
use super::table::Backend;
use super::{tcp, Shared};

/// The largest request body held in memory so that the request can be retried; a larger (or
/// unsized, chunked) body is streamed to one endpoint and not retried.
pub const MAX_RETRY_BODY: u64 = 1 << 20;

/// The largest answer (by its `Content-Length`) of an idempotent request read whole before it is
/// passed on, so that an endpoint failing mid-body can still be replaced (see the module docs).
pub const MAX_HELD_ANSWER: u64 = 64 << 10;

/// How long a client connection may take to send a request's headers (and stay idle).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

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

/// A request body on its way to an endpoint: held whole (and so resendable), or streamed once.
#[derive(Debug)]
pub enum RequestBody {
    /// Read whole before the first attempt.
    Held(Full<Bytes>),
    /// Passed on as it arrives.
    Stream(Incoming),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Held(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            RequestBody::Stream(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Held(b) => b.is_end_stream(),
            RequestBody::Stream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Held(b) => b.size_hint(),
            RequestBody::Stream(b) => b.size_hint(),
        }
    }
}

/// An endpoint's answer on its way to the client. It counts as open on the endpoint (for
/// least-connections) until it is dropped, counts its bytes, and gives its connection back to
/// the endpoint's pool once read to its end (a connection whose answer was cut short is dropped,
/// which closes it, since the rest of that answer would otherwise precede the next one).
#[derive(Debug)]
pub struct Answer {
    body: Incoming,
    conn: Option<(Sender, Arc<Pool>)>,
    done: bool,
    stats: Arc<EndpointStats>,
    _open: ActiveGuard,
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some((tx, pool)) = self.conn.take() {
            if self.done || self.body.is_end_stream() {
                pool.put(tx);
            }
        }
    }
}

/// What the proxy answers a client: an endpoint's answer, or its own (a JSON error).
#[derive(Debug)]
pub enum ProxyBody {
    /// From an endpoint.
    Answer(Answer),
    /// The proxy's own.
    Own(Full<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Own(b) => Pin::new(b).poll_frame(cx).map_err(|never| match never {}),
            ProxyBody::Answer(a) => {
                let polled = Pin::new(&mut a.body).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(d) = f.data_ref() {
                            a.stats
                                .bytes_out
                                .fetch_add(d.len() as u64, Ordering::Relaxed);
                        }
                    }
                    Poll::Ready(None) => a.done = true,
                    // The connection is broken: it is not given back.
                    Poll::Ready(Some(Err(_))) => a.conn = None,
                    Poll::Pending => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Own(b) => b.is_end_stream(),
            ProxyBody::Answer(a) => a.done || a.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Own(b) => b.size_hint(),
            ProxyBody::Answer(a) => a.body.size_hint(),
        }
    }
}

/// A JSON `{"error": message}` answer of the proxy itself.
fn error(status: u16, message: String) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(ProxyBody::Own(Full::new(Bytes::from(body))));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The headers that describe one connection, not the message (RFC 9110 section 7.6.1), besides
/// those the `Connection` header names.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers, with those the `Connection` header names. Most messages have
/// none, so one pass over the names comes first and the removals only when one is there.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let any = headers
        .keys()
        .any(|k| HOP_BY_HOP.iter().any(|h| k.as_str() == *h));
    if !any {
        return;
    }
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for n in HOP_BY_HOP {
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
    // The string becomes the value's bytes without a copy.
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(name, v);
    }
}

/// Sends `req` to `b` over a pooled connection (or a new one), and returns its answer as the
/// client's. A request that a reused connection did not take (it had closed meanwhile) goes out
/// again on a new connection to the same endpoint, as it never left. An error (why) means that
/// the endpoint refused, or closed without answering: nothing has reached the client, and the
/// next endpoint may be tried (with a held body).
async fn attempt(
    b: &Backend,
    mut req: Request<RequestBody>,
) -> Result<Response<ProxyBody>, String> {
    let mut pooled = b.pool.take();
    loop {
        let reused = pooled.is_some();
        let mut tx = match pooled.take() {
            Some(tx) => tx,
            None => b.pool.connect().await?,
        };
        if let Err(e) = tx.ready().await {
            if reused {
                continue;
            }
            return Err(format!("connection: {e}"));
        }
        // Counted open from the send, so least-connections sees requests in flight.
        let open = ActiveGuard::new(b.stats.clone());
        match tx.try_send_request(req).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                let answer = Answer {
                    body,
                    conn: Some((tx, b.pool.clone())),
                    done: false,
                    stats: b.stats.clone(),
                    _open: open,
                };
                return Ok(Response::from_parts(parts, ProxyBody::Answer(answer)));
            }
            Err(mut e) => match e.take_message() {
                Some(back) if reused => req = back,
                _ => {
                    let mut why = e.error().to_string();
                    if let Some(src) = std::error::Error::source(e.error()) {
                        why.push_str(&format!(": {src}"));
                    }
                    return Err(why);
                }
            },
        }
    }
}

/// Reads an answer whose length is known and at most [`MAX_HELD_ANSWER`] to its end before it is
/// passed on; a body cut short is an error (why), as if the endpoint had not answered. Other
/// answers are returned as they are, to be streamed.
async fn hold_small(resp: Response<ProxyBody>) -> Result<Response<ProxyBody>, String> {
    // The length hyper frames the body by (a chunked answer has none, whatever its headers say).
    let small = resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n <= MAX_HELD_ANSWER);
    if !small {
        return Ok(resp);
    }
    let (parts, mut body) = resp.into_parts();
    // Read through `ProxyBody`, which counts the bytes and gives the connection back at the end;
    // the limit holds even if the framing were to promise less than arrives.
    match Limited::new(&mut body, MAX_HELD_ANSWER as usize)
        .collect()
        .await
    {
        Ok(whole) => Ok(Response::from_parts(
            parts,
            ProxyBody::Own(Full::new(whole.to_bytes())),
        )),
        Err(e) => {
            let mut why = format!("the answer broke off: {e}");
            if let Some(src) = std::error::Error::source(&*e) {
                why.push_str(&format!(": {src}"));
            }
            Err(why)
        }
    }
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
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(route) = plan.route_for(host) else {
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
    // Endpoints take the origin form (`/path?query`), whatever form the client used.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = match path.parse::<Uri>() {
            Ok(u) => u,
            Err(e) => return error(400, format!("cannot forward path {path:?}: {e}")),
        };
    }
    let mut stream = None;
    let held = if body.is_end_stream() {
        Some(Bytes::new())
    } else {
        match body.size_hint().upper() {
            Some(n) if n <= MAX_RETRY_BODY => {
                match Limited::new(body, MAX_RETRY_BODY as usize).collect().await {
                    Ok(c) => Some(c.to_bytes()),
                    Err(e) => return error(400, format!("cannot read the request body: {e}")),
                }
            }
            _ => {
                stream = Some(body);
                None
            }
        }
    };
    // Sent again after its endpoint began answering only when sending it twice is harmless.
    let repeatable = held.is_some() && parts.method.is_idempotent();
    let mut tried = Vec::new();
    let mut last_error = String::from("no endpoint was tried");
    while let Some(b) = tcp::next_backend(route, &mut tried) {
        let (body, sent) = match (&held, stream.take()) {
            (Some(bytes), _) => (
                RequestBody::Held(Full::new(bytes.clone())),
                bytes.len() as u64,
            ),
            (None, Some(s)) => (RequestBody::Stream(s), 0),
            // A streamed body went to a failed endpoint and cannot be sent again.
            (None, None) => break,
        };
        let mut up = Request::new(body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = parts.uri.clone();
        *up.headers_mut() = parts.headers.clone();
        if !up.headers().contains_key(HOST) {
            // HTTP/1.1 asks for one; a client without it (HTTP/1.0) gets the endpoint's.
            if let Ok(v) = HeaderValue::from_str(&b.addr) {
                up.headers_mut().insert(HOST, v);
            }
        }
        let outcome = match attempt(b, up).await {
            Ok(resp) if repeatable => hold_small(resp).await,
            other => other,
        };
        match outcome {
            Ok(resp) => {
                b.stats.requests.fetch_add(1, Ordering::Relaxed);
                b.stats.bytes_in.fetch_add(sent, Ordering::Relaxed);
                return resp;
            }
            Err(why) => {
                b.stats.failures.fetch_add(1, Ordering::Relaxed);
                last_error = format!("{}: {why}", b.addr);
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
