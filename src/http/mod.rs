//! Shared HTTP plumbing: the server loop with graceful shutdown, JSON responses and errors, body
//! limits, and (in `client`) a small JSON client used by the manager, the workers and the CLI.
//!
//! Limits are decided before any byte of a body is read: the route (method and path) picks the
//! body limit ([`body_limit`]), a `Content-Length` above it is refused with 413 at once, and a client
//! that does not finish its request headers within [`ServeOptions::header_read_timeout`] is
//! disconnected, so a slow or hostile client cannot hold memory or a connection for long.
//!
//! Each API module turns a request into a domain call in one `match (method, path)`; this module only
//! moves bytes, so the domain code never sees hyper types.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod body;
use crate::security::Principal;

mod client;

pub use body::{Body, BodySender};
pub use client::{check, ClientError, HttpClient, RawResponse, Streaming};

/// The largest request body accepted from users (1 MiB); larger bodies get 413.
pub const MAX_BODY: usize = 1 << 20;

/// The largest body of the cluster's own messages (heartbeats and reports on the manager,
/// assignments on a worker; see [`body_limit`]): a heartbeat lists every task its worker holds, about
/// 320 bytes each, so 1 MiB would cut off a worker holding a few thousand tasks.
pub const MAX_PEER_BODY: usize = 256 << 20;

/// How long a client may take to send a request's headers before it is disconnected.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the client keeps an idle connection: below [`HEADER_READ_TIMEOUT`], because the server
/// closes a connection that sends nothing for that long, and a client that picked such a connection
/// at the moment it closed would see its request fail.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Picks a request's body limit from its method and path segments, before the body is read.
pub type BodyLimit = fn(&Method, &[String]) -> usize;

/// The manager's body limits: [`MAX_PEER_BODY`] for `POST /nodes/{name}/heartbeat` and `POST
/// /nodes/{name}/reports` only; [`MAX_BODY`] for everything else, including any other path under
/// `/nodes`.
pub fn manager_body_limit(method: &Method, path: &[String]) -> usize {
    match (method, segments(path).as_slice()) {
        (&Method::POST, ["nodes", _, "heartbeat" | "reports"]) => MAX_PEER_BODY,
        _ => MAX_BODY,
    }
}

/// A worker's body limits: [`MAX_PEER_BODY`] for `POST /assignments` only, [`MAX_BODY`] otherwise.
pub fn worker_body_limit(method: &Method, path: &[String]) -> usize {
    match (method, segments(path).as_slice()) {
        (&Method::POST, ["assignments"]) => MAX_PEER_BODY,
        _ => MAX_BODY,
    }
}

/// The limits of a server that plays both roles: the large limit for the three cluster protocol
/// routes of either side. [`serve`] uses it; `cluster` serves each role with its own.
pub fn body_limit(method: &Method, path: &[String]) -> usize {
    manager_body_limit(method, path).max(worker_body_limit(method, path))
}

fn segments(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

/// A response as every handler returns it: a whole body, or a stream ([`Body`]).
pub type Resp = Response<Body>;

/// An error with the HTTP status it maps to; rendered as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The status code.
    pub status: u16,
    /// A lower-case message for people.
    pub message: String,
    /// Where to send the request instead (a `Location` header), for a redirect.
    pub location: Option<String>,
}

impl ApiError {
    /// Any status with a message.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            location: None,
        }
    }
    /// 307: the same request (method and body) belongs at `location`.
    pub fn redirect(location: String, m: impl Into<String>) -> Self {
        ApiError {
            location: Some(location),
            ..Self::new(307, m)
        }
    }
    /// 400: the request is malformed or invalid.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, m)
    }
    /// 404: no such resource.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(404, m)
    }
    /// 409: an illegal transition, or a duplicate.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(409, m)
    }
    /// 503: not ready, or a dependency is down.
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(503, m)
    }
    /// 500: our fault.
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(500, m)
    }
}

/// A JSON response with the given status.
pub fn json<T: Serialize>(status: u16, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => with_type(status, body, "application/json"),
        Err(e) => error(&ApiError::internal(format!("cannot encode response: {e}"))),
    }
}

/// A JSON response whose body is already encoded.
pub fn json_bytes(status: u16, body: impl Into<Bytes>) -> Resp {
    with_type(status, body, "application/json")
}

/// A plain-text response.
pub fn text(status: u16, body: impl Into<Bytes>, content_type: &'static str) -> Resp {
    with_type(status, body, content_type)
}

fn with_type(status: u16, body: impl Into<Bytes>, content_type: &'static str) -> Resp {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A streamed 200 response of `content_type`, fed through the returned [`BodySender`], which
/// buffers at most `buffer` chunks the client has not read yet.
pub fn stream(content_type: &'static str, buffer: usize) -> (BodySender, Resp) {
    let (tx, body) = Body::channel(buffer);
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    (tx, resp)
}

/// The response for an error: its status and `{"error": message}` (and a redirect's `Location`).
pub fn error(e: &ApiError) -> Resp {
    let mut resp = json(e.status, &serde_json::json!({ "error": e.message }));
    if let Some(v) = e
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        resp.headers_mut().insert(hyper::header::LOCATION, v);
    }
    resp
}

/// A parsed request as API modules see it: method, path segments, query pairs, body, and who sent it.
#[derive(Debug)]
pub struct Req {
    /// The method.
    pub method: Method,
    /// The path split on `/`, without empty segments.
    pub path: Vec<String>,
    /// Query pairs, percent-decoded.
    pub query: Vec<(String, String)>,
    /// The body (empty for GET).
    pub body: Bytes,
    /// Who sent it, as the server's [`Gate`] decided before the body was read
    /// ([`Principal::Open`] on a server without a gate).
    pub principal: Principal,
}

/// What a [`Gate`] sees of a request: everything but the body, which is not read yet.
#[derive(Debug)]
pub struct Head<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path segments, percent-decoded.
    pub path: &'a [String],
    /// The path and query as the client sent them (for a redirect).
    pub target: &'a str,
    /// The token of an `Authorization: Bearer` header.
    pub bearer: Option<&'a str>,
    /// The peer's address, when known.
    pub peer: Option<SocketAddr>,
    /// The DER certificate the peer presented in the TLS handshake (already verified against the
    /// server's CA), if any.
    pub peer_cert: Option<&'a [u8]>,
}

/// A gate's decision to read a request: how large its body may be, and who sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The body limit for this request.
    pub limit: usize,
    /// Who sent it.
    pub principal: Principal,
}

/// Decides, before the body is read, whether a request may go on and with what body limit
/// (authentication first, so that a stranger only ever gets the small limit). An error is answered
/// at once, and the body is never read.
pub type Gate = Arc<dyn Fn(&Head<'_>) -> Result<Admitted, ApiError> + Send + Sync>;

impl Req {
    /// The value of a query parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a boolean query parameter is set (`?purge=true` or `?purge=1`).
    pub fn flag(&self, key: &str) -> Result<bool, ApiError> {
        match self.param(key) {
            None => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "query parameter {key} must be true or false, got {v:?}"
            ))),
        }
    }

    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// Decodes a path segment: `%XX` escapes become bytes; a stray `%` stays as it is.
fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Everything but RFC 3986's unreserved characters is escaped in a query value, so that a value
/// can never add a parameter (`&`), end the query (`#`) or change its meaning (`+`, `=`).
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Encodes a value for a URL's query or path segment (`a&b c` becomes `a%26b%20c`); clients use it
/// for any value that did not come from this program, so that it arrives as one value.
pub fn encode_component(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Decodes a query key or value as HTML forms encode them: `+` is a space, then `%XX` escapes.
fn decode_query(s: &str) -> String {
    decode_segment(&s.replace('+', " "))
}

/// Reads a hyper request into a [`Req`], enforcing the route's limit as `limits` picks it: a
/// declared `Content-Length` above it is refused before any of the body is read, and a body that
/// turns out longer (chunked) is cut off at the limit.
pub async fn read(req: Request<Incoming>, limits: BodyLimit) -> Result<Req, ApiError> {
    read_gated(req, None, None, None, limits).await
}

/// [`read`] behind a [`Gate`]: the gate sees the head of the request (and the peer's address and
/// certificate) and decides the body limit, or refuses, before a byte of the body is read.
pub async fn read_gated(
    req: Request<Incoming>,
    gate: Option<&Gate>,
    peer: Option<SocketAddr>,
    peer_cert: Option<&[u8]>,
    limits: BodyLimit,
) -> Result<Req, ApiError> {
    let (parts, body) = req.into_parts();
    let path: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_segment)
        .collect();
    let query = parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode_query(k), decode_query(v)),
            None => (decode_query(pair), String::new()),
        })
        .collect();
    let admitted = match gate {
        Some(gate) => {
            let bearer = parts
                .headers
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::security::bearer);
            gate(&Head {
                method: &parts.method,
                path: &path,
                target: parts.uri.path_and_query().map_or("/", |pq| pq.as_str()),
                bearer,
                peer,
                peer_cert,
            })?
        }
        None => Admitted {
            limit: limits(&parts.method, &path),
            principal: Principal::Open,
        },
    };
    let limit = admitted.limit;
    let too_large = || ApiError::new(413, format!("request body larger than {limit} bytes"));
    // hyper has already refused a malformed Content-Length, so a value that does not parse as a
    // number here cannot occur; it would be left to the streaming limit below.
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let body = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large());
            }
            return Err(ApiError::bad_request(format!("cannot read body: {e}")));
        }
    };
    Ok(Req {
        method: parts.method,
        path,
        query,
        body,
        principal: admitted.principal,
    })
}

/// A shutdown signal shared by every task of a process.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet raised.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Raises the signal.
    pub fn trigger(&self) {
        // `send_replace` cannot fail (unlike `send`, it does not need a receiver).
        self.tx.send_replace(true);
    }

    /// True once raised.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the signal is raised.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|v| *v).await.is_err() {
            // The sender lives in `self`, so it cannot be gone while we wait; if it ever were, no
            // one could raise the signal any more, and waiting forever would be the honest answer.
            std::future::pending::<()>().await;
        }
    }
}

/// Settings of the server loop.
#[derive(Clone)]
pub struct ServeOptions {
    /// A client that has not sent a request's complete headers after this long is disconnected
    /// (this also closes a keep-alive connection idle for this long).
    pub header_read_timeout: Duration,
    /// The body limit of each route (used when there is no gate).
    pub body_limit: BodyLimit,
    /// Authentication and per-route body limits, decided before the body is read.
    pub gate: Option<Gate>,
    /// TLS: every connection must complete a handshake with this configuration first (plain HTTP
    /// is refused), and the peer's verified client certificate is passed to the gate.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("gate", &self.gate.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_limit,
            gate: None,
            tls: None,
        }
    }
}

impl ServeOptions {
    /// The defaults with `limits` as the body limit.
    pub fn with_body_limit(limits: BodyLimit) -> Self {
        ServeOptions {
            body_limit: limits,
            ..Self::default()
        }
    }
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown`, then lets open requests finish.
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: Shutdown)
where
    H: Fn(Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    serve_with(listener, handler, shutdown, ServeOptions::default()).await;
}

/// [`serve`] with explicit [`ServeOptions`].
pub async fn serve_with<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: Shutdown,
    options: ServeOptions,
) where
    H: Fn(Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let local = listener.local_addr().ok();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper only enforces the header timeout when it has a timer to measure it with.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(listen = ?local, error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let handler = handler.clone();
        let options = options.clone();
        let builder = builder.clone();
        let graceful_watch = graceful.watcher();
        tokio::spawn(async move {
            match options.tls.clone() {
                None => {
                    let conn = connection(&builder, stream, peer, None, handler, &options);
                    finish(graceful_watch.watch(conn), peer).await;
                }
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                    // The handshake shares the header-read timeout: a client that opens a
                    // connection and says nothing is dropped just as in plain HTTP.
                    let stream = match tokio::time::timeout(
                        options.header_read_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| Arc::new(c.as_ref().to_vec()));
                    let conn = connection(&builder, stream, peer, cert, handler, &options);
                    finish(graceful_watch.watch(conn), peer).await;
                }
            }
        });
    }
    drop(listener);
    // Open keep-alive connections are asked to close; requests in flight get a few seconds.
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listen = ?local, "requests still in flight 5 s after shutdown; leaving them");
    }
}

/// Clients hanging up, and the header-read timeout, end connections with an error; both are
/// routine, so they are logged for debugging only.
async fn finish<F, E>(conn: F, peer: SocketAddr)
where
    F: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// One HTTP/1.1 connection over `io` (plain TCP or TLS): every request goes through the gate, is
/// read within its limit, and is handled as its own task.
fn connection<IO, H, F>(
    builder: &hyper::server::conn::http1::Builder,
    io: IO,
    peer: SocketAddr,
    cert: Option<Arc<Vec<u8>>>,
    handler: H,
    options: &ServeOptions,
) -> impl hyper_util::server::graceful::GracefulConnection<Error = hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Req) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let gate = options.gate.clone();
    let limits = options.body_limit;
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let gate = gate.clone();
        let cert = cert.clone();
        async move {
            let method = req.method().clone();
            let uri = req.uri().path().to_string();
            let read = read_gated(
                req,
                gate.as_ref(),
                Some(peer),
                cert.as_deref().map(Vec::as_slice),
                limits,
            );
            let resp = match read.await {
                // The handler runs as its own task: a client that hangs up must not cancel it
                // halfway (between a synced write and the in-memory change that follows it),
                // and a panic in it becomes a 500 instead of a dropped connection.
                Ok(r) => match tokio::spawn(handler(r)).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        tracing::error!(%method, path = %uri, error = %e, "a request handler failed");
                        error(&ApiError::internal(format!("the request failed: {e}")))
                    }
                },
                Err(e) => {
                    tracing::debug!(%method, path = %uri, status = e.status, error = %e.message, "refused a request");
                    error(&e)
                }
            };
            Ok::<_, Infallible>(resp)
        }
    });
    builder.serve_connection(TokioIo::new(io), service)
}

/// Binds a TCP listener, with a message that names the address on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_and_stray_percents() {
        assert_eq!(decode_segment("a%20b"), "a b");
        assert_eq!(decode_segment("state%3Drunning"), "state=running");
        assert_eq!(decode_segment("100%"), "100%");
        assert_eq!(decode_segment("%zz"), "%zz");
        assert_eq!(decode_segment("%ff"), "\u{fffd}");
        assert_eq!(decode_segment("a+b"), "a+b");
        assert_eq!(decode_query("a+b"), "a b");
        assert_eq!(decode_query("a%2Bb"), "a+b");
    }

    #[test]
    fn encoded_components_decode_to_themselves_and_add_no_parameter() {
        for value in ["5", "a&purge=true", "x y+z", "100%", "é/漢#frag", "-._~"] {
            let encoded = encode_component(value);
            assert!(
                !encoded.contains(['&', '=', '#', '/', ' ', '+']),
                "{encoded}"
            );
            assert_eq!(decode_query(&encoded), value);
        }
        assert_eq!(encode_component("a&b c"), "a%26b%20c");
    }

    fn segments_of(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn only_the_cluster_protocol_routes_take_large_bodies() {
        // (method, path, manager's limit, worker's limit)
        let cases: &[(Method, &str, usize, usize)] = &[
            (Method::POST, "/nodes/w1/heartbeat", MAX_PEER_BODY, MAX_BODY),
            (Method::POST, "/nodes/w1/reports", MAX_PEER_BODY, MAX_BODY),
            (Method::POST, "/assignments", MAX_BODY, MAX_PEER_BODY),
            (Method::GET, "/nodes/w1/heartbeat", MAX_BODY, MAX_BODY),
            (Method::PUT, "/assignments", MAX_BODY, MAX_BODY),
            (Method::POST, "/nodes", MAX_BODY, MAX_BODY),
            (Method::GET, "/nodes/x", MAX_BODY, MAX_BODY),
            (Method::POST, "/nodes/w1", MAX_BODY, MAX_BODY),
            (
                Method::POST,
                "/nodes/w1/heartbeat/extra",
                MAX_BODY,
                MAX_BODY,
            ),
            (Method::POST, "/nodes/w1/drain", MAX_BODY, MAX_BODY),
            (Method::POST, "/assignments/x", MAX_BODY, MAX_BODY),
            (Method::POST, "/tasks", MAX_BODY, MAX_BODY),
        ];
        for (method, path, manager, worker) in cases {
            let p = segments_of(path);
            assert_eq!(
                manager_body_limit(method, &p),
                *manager,
                "manager: {method} {path}"
            );
            assert_eq!(
                worker_body_limit(method, &p),
                *worker,
                "worker: {method} {path}"
            );
            assert_eq!(
                body_limit(method, &p),
                (*manager).max(*worker),
                "both: {method} {path}"
            );
        }
    }
}
