//! Typed clients of the two REST APIs: [`ManagerClient`] (used by the CLI, the workers, tests and
//! benches) and [`WorkerClient`] (used by the manager, tests and benches).
//!
//! Each method is one route; it encodes and decodes the [`crate::wire`] types the server uses, so
//! both sides of every body are one type. Errors are [`ClientError`]s: unreachable, timed out, a
//! non-2xx status with the server's `error` message, or an answer that is not the expected JSON.

use std::time::Duration;

use hyper::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::http::{check, encode_component, ClientError, HttpClient, RawResponse, Streaming};
use crate::task::{Task, TaskId};
use crate::wire::{
    AssignmentBatch, AssignmentReply, CaReply, CatalogEndpoint, CatalogService, CreateToken,
    DrainReply, EligibilityRequest, Event, EventStreamEnd, ExecReply, ExecRequest, Heartbeat,
    HeartbeatReply, IssuedToken, JoinReply, JoinRequest, LogsReply, ManagerHealth, MeshService,
    NodeCertificate, NodeView, Purged, Report, ServicePurged, ServiceView, TokenView, WorkerHealth,
    WorkerStats,
};

/// `POST /tasks` answers one task for one submission and an array for an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Box<Task>),
    Many(Vec<Task>),
}

impl From<OneOrMany> for Vec<Task> {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(t) => vec![*t],
            OneOrMany::Many(ts) => ts,
        }
    }
}

fn decode<T: DeserializeOwned>(url: &str, raw: &RawResponse) -> Result<T, ClientError> {
    check(url, raw)?;
    serde_json::from_slice(&raw.body).map_err(|e| ClientError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(url: &str, body: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(body).map_err(|e| ClientError::Decode {
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// What both clients are: a base URL, a connection pool and an optional token, which every
/// request sends, whole answers and streams alike.
#[derive(Debug, Clone)]
struct Endpoint {
    http: HttpClient,
    base: String,
    token: Option<String>,
}

impl Endpoint {
    fn new(http: HttpClient, base: &str) -> Self {
        Endpoint {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn with_timeout(&self, timeout: Duration) -> Self {
        Endpoint {
            http: self.http.with_timeout(timeout),
            ..self.clone()
        }
    }

    /// The raw answer of `method path`, whatever its status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(String, RawResponse), ClientError> {
        let url = self.url(path);
        let raw = self
            .http
            .send_auth(method, &url, body, self.token.as_deref())
            .await?;
        Ok((url, raw))
    }

    /// A 2xx answer decoded as JSON; any other is [`ClientError::Status`].
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (url, raw) = self.send(method, path, body).await?;
        decode(&url, &raw)
    }

    /// A 2xx answer as text (`/metrics`).
    async fn text(&self, path: &str) -> Result<String, ClientError> {
        let (url, raw) = self.send(Method::GET, path, None).await?;
        check(&url, &raw)?;
        Ok(String::from_utf8_lossy(&raw.body).into_owned())
    }

    /// A streamed answer (`/events`, followed logs).
    async fn open(&self, path: &str) -> Result<Streaming, ClientError> {
        self.http
            .open_auth(Method::GET, &self.url(path), None, self.token.as_deref())
            .await
    }
}

/// A client of the manager's API.
#[derive(Debug, Clone)]
pub struct ManagerClient(Endpoint);

impl ManagerClient {
    /// A client of the manager at `base` (`http://host:port`), each call timing out after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self::with_http(HttpClient::new(timeout), base)
    }

    /// A client sharing an existing connection pool.
    pub fn with_http(http: HttpClient, base: &str) -> Self {
        ManagerClient(Endpoint::new(http, base))
    }

    /// The manager's base URL.
    pub fn base(&self) -> &str {
        &self.0.base
    }

    /// The same client sending `Authorization: Bearer TOKEN` with every call (none for `None`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.0.token = token;
        self
    }

    /// The same client with another timeout per call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        ManagerClient(self.0.with_timeout(timeout))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        self.0.call(method, path, body).await
    }

    /// `GET /tasks`, filtered by state and node when given.
    pub async fn tasks(
        &self,
        state: Option<&str>,
        node: Option<&str>,
    ) -> Result<Vec<Task>, ClientError> {
        let mut query = Vec::new();
        if let Some(s) = state {
            query.push(format!("state={}", encode_component(s)));
        }
        if let Some(n) = node {
            query.push(format!("node={}", encode_component(n)));
        }
        let path = if query.is_empty() {
            "/tasks".to_string()
        } else {
            format!("/tasks?{}", query.join("&"))
        };
        self.call(Method::GET, &path, None).await
    }

    /// `GET /nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.call(Method::GET, "/nodes", None).await
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<ManagerHealth, ClientError> {
        self.call(Method::GET, "/health", None).await
    }

    /// `POST /nodes/{name}/heartbeat` (the cluster protocol).
    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, ClientError> {
        let path = format!("/nodes/{}/heartbeat", encode_component(&hb.name));
        let body = encode(&path, hb)?;
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `POST /nodes/{name}/reports` (the cluster protocol).
    pub async fn report(&self, node: &str, report: &Report) -> Result<HeartbeatReply, ClientError> {
        let path = format!("/nodes/{}/reports", encode_component(node));
        let body = encode(&path, report)?;
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `POST /nodes/{name}/eligibility`: lets new tasks go to the node or not.
    pub async fn set_eligibility(
        &self,
        node: &str,
        eligible: bool,
    ) -> Result<NodeView, ClientError> {
        let path = format!("/nodes/{}/eligibility", encode_component(node));
        let body = encode(&path, &EligibilityRequest { eligible })?;
        self.call(Method::POST, &path, Some(body)).await
    }

    /// `POST /nodes/{name}/drain`: makes the node ineligible and moves its service tasks off.
    pub async fn drain(&self, node: &str) -> Result<DrainReply, ClientError> {
        let path = format!("/nodes/{}/drain", encode_component(node));
        self.call(Method::POST, &path, Some(Vec::new())).await
    }
}

/// The service routes (`/services...`) and the service filter of `/tasks`.
impl ManagerClient {
    /// `POST /services` with a service body as the user wrote it: the service stored.
    pub async fn create_service(&self, body: Vec<u8>) -> Result<ServiceView, ClientError> {
        self.call(Method::POST, "/services", Some(body)).await
    }

    /// `GET /services`: every service, without their tasks.
    pub async fn services(&self) -> Result<Vec<ServiceView>, ClientError> {
        self.call(Method::GET, "/services", None).await
    }

    /// `GET /services/{name}`: one service with its tasks.
    pub async fn service(&self, name: &str) -> Result<ServiceView, ClientError> {
        let path = format!("/services/{}", encode_component(name));
        self.call(Method::GET, &path, None).await
    }

    /// `PUT /services/{name}` with a whole service body: a new version.
    pub async fn update_service(
        &self,
        name: &str,
        body: Vec<u8>,
    ) -> Result<ServiceView, ClientError> {
        let path = format!("/services/{}", encode_component(name));
        self.call(Method::PUT, &path, Some(body)).await
    }

    /// `POST /services/{name}/rollback`.
    pub async fn rollback_service(&self, name: &str) -> Result<ServiceView, ClientError> {
        let path = format!("/services/{}/rollback", encode_component(name));
        self.call(Method::POST, &path, None).await
    }

    /// `DELETE /services/{name}`: stops its tasks.
    pub async fn stop_service(&self, name: &str) -> Result<ServiceView, ClientError> {
        let path = format!("/services/{}", encode_component(name));
        self.call(Method::DELETE, &path, None).await
    }

    /// `DELETE /services/{name}?purge=true`: forgets a stopped service.
    pub async fn purge_service(&self, name: &str) -> Result<ServicePurged, ClientError> {
        let path = format!("/services/{}?purge=true", encode_component(name));
        self.call(Method::DELETE, &path, None).await
    }

    /// `GET /tasks?service={name}`: the tasks of one service.
    pub async fn service_tasks(&self, name: &str) -> Result<Vec<Task>, ClientError> {
        let path = format!("/tasks?service={}", encode_component(name));
        self.call(Method::GET, &path, None).await
    }
}

/// The ACL routes (`/acl/...`).
impl ManagerClient {
    /// `POST /acl/bootstrap`: the first management token; refused (409) once done.
    pub async fn acl_bootstrap(&self) -> Result<IssuedToken, ClientError> {
        self.call(Method::POST, "/acl/bootstrap", None).await
    }

    /// `POST /acl/tokens`: a new token of `policy` (`read`, `submit`, `manage`).
    pub async fn acl_create_token(&self, policy: &str) -> Result<IssuedToken, ClientError> {
        let body = encode(
            "/acl/tokens",
            &CreateToken {
                policy: policy.to_string(),
            },
        )?;
        self.call(Method::POST, "/acl/tokens", Some(body)).await
    }

    /// `GET /acl/tokens`: every token, without secrets.
    pub async fn acl_tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.call(Method::GET, "/acl/tokens", None).await
    }

    /// `DELETE /acl/tokens/{accessor}`: revokes a token.
    pub async fn acl_revoke(&self, accessor: &str) -> Result<TokenView, ClientError> {
        let path = format!("/acl/tokens/{}", encode_component(accessor));
        self.call(Method::DELETE, &path, None).await
    }

    /// `POST /acl/join-token`: a new token workers join with.
    pub async fn acl_join_token(&self) -> Result<IssuedToken, ClientError> {
        self.call(Method::POST, "/acl/join-token", None).await
    }

    /// `GET /acl/ca`: the cluster CA and its fingerprint (open).
    pub async fn acl_ca(&self) -> Result<CaReply, ClientError> {
        self.call(Method::GET, "/acl/ca", None).await
    }

    /// `POST /acl/nodes/{name}/certificate` (with the node's token and certificate): a renewed
    /// node certificate.
    pub async fn acl_renew(&self, node: &str) -> Result<NodeCertificate, ClientError> {
        let path = format!("/acl/nodes/{}/certificate", encode_component(node));
        self.call(Method::POST, &path, None).await
    }

    /// `POST /acl/join` (with a join token as this client's token): a worker's identity.
    pub async fn acl_join(&self, req: &JoinRequest) -> Result<JoinReply, ClientError> {
        let body = encode("/acl/join", req)?;
        self.call(Method::POST, "/acl/join", Some(body)).await
    }
}

/// A client of one worker's API.
#[derive(Debug, Clone)]
pub struct WorkerClient(Endpoint);

impl WorkerClient {
    /// A client of the worker at `base` (`http://host:port`), each call timing out after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self::with_http(HttpClient::new(timeout), base)
    }

    /// A client sharing an existing connection pool (the manager keeps one for every worker).
    pub fn with_http(http: HttpClient, base: &str) -> Self {
        WorkerClient(Endpoint::new(http, base))
    }

    /// The worker's base URL.
    pub fn base(&self) -> &str {
        &self.0.base
    }

    /// The same client sending `Authorization: Bearer TOKEN` with every call (none for `None`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.0.token = token;
        self
    }

    /// The same client with another timeout per call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        WorkerClient(self.0.with_timeout(timeout))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        self.0.call(method, path, body).await
    }

    /// `POST /assignments` (the cluster protocol): which were taken and which refused.
    pub async fn assign(&self, batch: &AssignmentBatch) -> Result<AssignmentReply, ClientError> {
        let body = encode("/assignments", batch)?;
        self.call(Method::POST, "/assignments", Some(body)).await
    }

    /// `GET /tasks`.
    pub async fn tasks(&self) -> Result<Vec<Task>, ClientError> {
        self.call(Method::GET, "/tasks", None).await
    }

    /// `GET /stats`: host and per-container figures.
    pub async fn stats(&self) -> Result<WorkerStats, ClientError> {
        self.call(Method::GET, "/stats", None).await
    }

    /// `GET /health`: 200 when the engine answers, 503 (an error here) when it does not.
    pub async fn health(&self) -> Result<WorkerHealth, ClientError> {
        self.call(Method::GET, "/health", None).await
    }
}

/// One line of the event stream as [`EventLines::next`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum EventLine {
    /// An event.
    Event(Box<Event>),
    /// The stream's final line: why it ended.
    End(EventStreamEnd),
}

/// An open `GET /events` stream, read line by line; dropping it ends the subscription.
#[derive(Debug)]
pub struct EventLines {
    stream: Streaming,
    url: String,
}

impl EventLines {
    /// The next line; `None` when the stream ended without a final line (the connection closed).
    pub async fn next(&mut self) -> Result<Option<EventLine>, ClientError> {
        loop {
            let Some(line) = self.stream.line().await? else {
                return Ok(None);
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Ok(e) = serde_json::from_slice::<Event>(&line) {
                return Ok(Some(EventLine::Event(Box::new(e))));
            }
            return serde_json::from_slice::<EventStreamEnd>(&line)
                .map(|end| Some(EventLine::End(end)))
                .map_err(|e| ClientError::Decode {
                    url: self.url.clone(),
                    message: format!("not an event: {e}"),
                });
        }
    }
}

impl ManagerClient {
    /// `GET /events` (`?index=N`): follows the event stream, replaying the events after `after`
    /// when given (410 when the manager's history no longer holds them).
    pub async fn events(&self, after: Option<u64>) -> Result<EventLines, ClientError> {
        let path = match after {
            Some(n) => format!("/events?index={n}"),
            None => "/events".to_string(),
        };
        let stream = self.0.open(&path).await?;
        Ok(EventLines {
            stream,
            url: self.0.url(&path),
        })
    }
}

/// The task, log, exec and metrics routes, the same on both APIs (the manager relays logs and exec
/// to the worker), written once for both clients.
macro_rules! ops_routes {
    ($client:ty) => {
        impl $client {
            /// `POST /tasks` with a body as the user wrote it (Poseidon JSON or the Go TaskEvent, one or an
            /// array): the tasks stored.
            pub async fn submit(&self, body: Vec<u8>) -> Result<Vec<Task>, ClientError> {
                let many: OneOrMany = self.call(Method::POST, "/tasks", Some(body)).await?;
                Ok(many.into())
            }

            /// `GET /tasks/{id}`.
            pub async fn task(&self, id: TaskId) -> Result<Task, ClientError> {
                self.call(Method::GET, &format!("/tasks/{id}"), None).await
            }

            /// `DELETE /tasks/{id}`: the task as it is once the stop is recorded.
            pub async fn stop(&self, id: TaskId) -> Result<Task, ClientError> {
                self.call(Method::DELETE, &format!("/tasks/{id}"), None)
                    .await
            }

            /// `DELETE /tasks/{id}?purge=true`: forgets a finished task.
            pub async fn purge(&self, id: TaskId) -> Result<Purged, ClientError> {
                self.call(Method::DELETE, &format!("/tasks/{id}?purge=true"), None)
                    .await
            }

            /// `GET /tasks/{id}/logs` (`?tail=N`), relayed from the task's worker.
            pub async fn logs(
                &self,
                id: TaskId,
                tail: Option<usize>,
            ) -> Result<LogsReply, ClientError> {
                let path = match tail {
                    Some(n) => format!("/tasks/{id}/logs?tail={n}"),
                    None => format!("/tasks/{id}/logs"),
                };
                self.call(Method::GET, &path, None).await
            }

            /// `GET /metrics`: the Prometheus text.
            pub async fn metrics(&self) -> Result<String, ClientError> {
                self.0.text("/metrics").await
            }

            /// `GET /tasks/{id}/logs?QUERY` answered whole (`query` as
            /// `crate::worker::ops::LogQuery::to_query` writes it, without `follow`).
            pub async fn logs_with(
                &self,
                id: TaskId,
                query: &str,
            ) -> Result<LogsReply, ClientError> {
                let path = if query.is_empty() {
                    format!("/tasks/{id}/logs")
                } else {
                    format!("/tasks/{id}/logs?{query}")
                };
                self.call(Method::GET, &path, None).await
            }

            /// `GET /tasks/{id}/logs?follow=true&QUERY`: newline-delimited JSON chunks
            /// (`{"stream", "data"}`) as the container writes them; dropping the stream stops it.
            pub async fn follow_logs(
                &self,
                id: TaskId,
                query: &str,
            ) -> Result<Streaming, ClientError> {
                let mut q = String::from("follow=true");
                if !query.is_empty() {
                    q.push('&');
                    q.push_str(query);
                }
                self.0.open(&format!("/tasks/{id}/logs?{q}")).await
            }

            /// `POST /tasks/{id}/exec`: runs a command in the task's container.
            pub async fn exec(
                &self,
                id: TaskId,
                req: &ExecRequest,
            ) -> Result<ExecReply, ClientError> {
                let path = format!("/tasks/{id}/exec");
                let body = encode(&path, req)?;
                self.call(Method::POST, &path, Some(body)).await
            }
        }
    };
}

/// A catalog answer with the index it was taken at (`X-Poseidon-Index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed<T> {
    /// The catalog index of the answer: pass it as `after` to wait for the next change.
    pub index: u64,
    /// The answer.
    pub value: T,
}

impl ManagerClient {
    /// `GET /catalog/services`: every service with its endpoint count. With `block = Some((n,
    /// wait))` the manager answers once its index passes `n`, or after `wait`; give this client a
    /// timeout above `wait`.
    pub async fn catalog_services(
        &self,
        block: Option<(u64, Duration)>,
    ) -> Result<Indexed<Vec<CatalogService>>, ClientError> {
        self.catalog_get("/catalog/services".to_string(), block)
            .await
    }

    /// `GET /catalog/services/{name}`: a service's endpoints (blocking like
    /// [`ManagerClient::catalog_services`]).
    pub async fn catalog_service(
        &self,
        name: &str,
        block: Option<(u64, Duration)>,
    ) -> Result<Indexed<Vec<CatalogEndpoint>>, ClientError> {
        let path = format!("/catalog/services/{}", encode_component(name));
        self.catalog_get(path, block).await
    }

    /// `GET /nodes/{node}/mesh`: every published service's entries with their endpoints, as the
    /// routing mesh of worker `node` reads them (blocking like
    /// [`ManagerClient::catalog_services`]).
    pub async fn mesh(
        &self,
        node: &str,
        block: Option<(u64, Duration)>,
    ) -> Result<Indexed<Vec<MeshService>>, ClientError> {
        let path = format!("/nodes/{}/mesh", encode_component(node));
        self.catalog_get(path, block).await
    }

    async fn catalog_get<T: DeserializeOwned>(
        &self,
        path: String,
        block: Option<(u64, Duration)>,
    ) -> Result<Indexed<T>, ClientError> {
        let mut path = path;
        if let Some((after, wait)) = block {
            path.push_str(&format!("?index={after}&wait={}ms", wait.as_millis()));
        }
        let (url, raw) = self.0.send(Method::GET, &path, None).await?;
        let value = decode(&url, &raw)?;
        let index = raw.index.ok_or_else(|| ClientError::Decode {
            url: url.clone(),
            message: "the answer has no X-Poseidon-Index header".into(),
        })?;
        Ok(Indexed { index, value })
    }
}

ops_routes!(ManagerClient);
ops_routes!(WorkerClient);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_put_into_paths_and_queries_cannot_add_segments_or_parameters() {
        assert_eq!(encode_component("w1"), "w1");
        assert_eq!(encode_component("node-a.b_c~"), "node-a.b_c~");
        assert_eq!(encode_component("a/b"), "a%2Fb");
        assert_eq!(encode_component("x?y=1"), "x%3Fy%3D1");
        assert_eq!(encode_component("é"), "%C3%A9");
    }
}
