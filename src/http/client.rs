//! The small JSON client used by the manager, the workers, the CLI and the tests: HTTP/1.1 with
//! keep-alive, a timeout on every call, and server errors turned into [`ClientError::Status`] with the
//! server's own `{"error": ...}` message.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::CLIENT_IDLE_TIMEOUT;

/// Errors of the JSON client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// Could not connect, or the connection broke.
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// No answer within the timeout.
    #[error("{url} did not answer within {secs:.1} s")]
    Timeout {
        /// The URL asked.
        url: String,
        /// The timeout.
        secs: f64,
    },
    /// The server answered with an error status; holds its `error` message.
    #[error("{message} (HTTP {status})")]
    Status {
        /// The status code.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected answer from {url}: {message}")]
    Decode {
        /// The URL asked.
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// The most redirects one call follows.
pub const MAX_REDIRECTS: usize = 3;

/// The connector: plain HTTP, or HTTPS with the client's TLS configuration.
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A small HTTP/1.1 JSON client with keep-alive and a timeout on every call; `https://` URLs are
/// reached with TLS when the client was made with [`HttpClient::with_tls`].
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

/// The TLS configuration of a client made without one: it trusts no certificate at all, so an
/// `https://` URL fails instead of being trusted by accident.
fn no_trust() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            Arc::new(
                crate::security::tls::client_builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
        })
        .clone()
}

/// A raw answer: status, headers of interest and body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The `Location` header, if any.
    pub location: Option<String>,
    /// The `X-Poseidon-Index` header (the catalog's index), if any.
    pub index: Option<u64>,
    /// The body.
    pub body: Bytes,
}

impl HttpClient {
    /// A client whose calls time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self::with_tls(timeout, no_trust())
    }

    /// A client that reaches `https://` URLs with `tls` (its roots, and its client certificate
    /// for mutual TLS), and `http://` URLs in plain text.
    pub fn with_tls(timeout: Duration, tls: Arc<rustls::ClientConfig>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(CLIENT_IDLE_TIMEOUT)
            .build(connector);
        HttpClient { inner, timeout }
    }

    /// The same client with another timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        HttpClient {
            inner: self.inner.clone(),
            timeout,
        }
    }

    /// Sends a request and returns the raw answer, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        self.send_auth(method, url, body, None).await
    }

    /// [`HttpClient::send`] with `Authorization: Bearer TOKEN` when a token is given.
    ///
    /// A `307` or `308` with an absolute `Location` (a follower manager sending a write to its
    /// leader) is followed with the same method, body and token, at most [`MAX_REDIRECTS`] times,
    /// and never from `https://` to `http://`; hyper does not follow redirects by itself.
    pub async fn send_auth(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        let mut url = url.to_string();
        let mut hops = 0;
        loop {
            let raw = self
                .send_once(method.clone(), &url, body.clone(), token)
                .await?;
            let next = match (&raw.status, &raw.location) {
                // Never from https to plain http: the token and body would travel in clear.
                (307 | 308, Some(loc))
                    if loc.starts_with("http")
                        && (loc.starts_with("https://") || !url.starts_with("https://"))
                        && hops < MAX_REDIRECTS =>
                {
                    loc.clone()
                }
                _ => return Ok(raw),
            };
            hops += 1;
            url = next;
        }
    }

    async fn send_once(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<RawResponse, ClientError> {
        let mut builder = Request::builder().method(method).uri(url);
        if let Some(t) = token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                message: format!("bad request: {e}"),
            })?;
        let call = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.to_string(),
                    message: error_chain(&e),
                })?;
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let index = resp
                .headers()
                .get("x-poseidon-index")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.to_string(),
                    message: e.to_string(),
                })?
                .to_bytes();
            Ok(RawResponse {
                status,
                location,
                index,
                body,
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_string(),
                secs: self.timeout.as_secs_f64(),
            })?
    }

    /// Sends a request; a 2xx answer is decoded as JSON, any other becomes [`ClientError::Status`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let raw = self.send(method, url, body).await?;
        check(url, &raw)?;
        serde_json::from_slice(&raw.body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// GET a JSON value.
    pub async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        self.call(Method::GET, url, None).await
    }

    /// POST a JSON value and decode the JSON answer.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        url: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        self.call(Method::POST, url, Some(bytes)).await
    }
}

/// A response being streamed: read it chunk by chunk or line by line. Dropping it closes the
/// connection, which tells the server to stop.
#[derive(Debug)]
pub struct Streaming {
    url: String,
    body: hyper::body::Incoming,
    buffer: Vec<u8>,
    done: bool,
}

impl Streaming {
    /// The next chunk as the server sent it; `None` at the end of the body.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| ClientError::Unreachable {
                url: self.url.clone(),
                message: error_chain(&e),
            })?;
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }

    /// The next line (without its `\n`); a last line without a newline is returned too; `None` at
    /// the end of the body.
    pub async fn line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            if let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.buffer.drain(..=pos).collect();
                line.pop();
                return Ok(Some(line));
            }
            if self.done {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(std::mem::take(&mut self.buffer)));
            }
            match self.chunk().await? {
                Some(c) => self.buffer.extend_from_slice(&c),
                None => self.done = true,
            }
        }
    }
}

impl HttpClient {
    /// Sends a request and returns its body as a stream once the headers arrive (within the
    /// client's timeout; the body itself has no deadline). A non-2xx answer is read whole and
    /// becomes [`ClientError::Status`].
    pub async fn open(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Streaming, ClientError> {
        self.open_auth(method, url, body, None).await
    }

    /// [`HttpClient::open`] with `Authorization: Bearer TOKEN` when a token is given.
    pub async fn open_auth(
        &self,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<Streaming, ClientError> {
        let mut builder = Request::builder().method(method).uri(url);
        if let Some(t) = token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                message: format!("bad request: {e}"),
            })?;
        let resp = tokio::time::timeout(self.timeout, self.inner.request(req))
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.to_string(),
                secs: self.timeout.as_secs_f64(),
            })?
            .map_err(|e| ClientError::Unreachable {
                url: url.to_string(),
                message: error_chain(&e),
            })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let body = tokio::time::timeout(self.timeout, resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let raw = RawResponse {
                status,
                location: None,
                index: None,
                body,
            };
            check(url, &raw)?;
            return Err(ClientError::Status {
                status,
                message: format!("{url} answered HTTP {status}"),
            });
        }
        Ok(Streaming {
            url: url.to_string(),
            body: resp.into_body(),
            buffer: Vec::new(),
            done: false,
        })
    }
}

/// Turns a non-2xx answer into [`ClientError::Status`] with the server's `error` message.
pub fn check(url: &str, raw: &RawResponse) -> Result<(), ClientError> {
    if (200..300).contains(&raw.status) {
        return Ok(());
    }
    let message = serde_json::from_slice::<serde_json::Value>(&raw.body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&raw.body);
            if text.trim().is_empty() {
                format!("{url} answered HTTP {}", raw.status)
            } else {
                text.trim().chars().take(200).collect()
            }
        });
    Err(ClientError::Status {
        status: raw.status,
        message,
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
