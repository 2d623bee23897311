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

use crate::http::{check, encode_component, ClientError, HttpClient, RawResponse};
use crate::task::{Task, TaskId};
use crate::wire::{
    AssignmentBatch, AssignmentReply, CaReply, CreateToken, Heartbeat, HeartbeatReply, IssuedToken,
    JoinReply, JoinRequest, LogsReply, ManagerHealth, NodeCertificate, NodeView, Purged, Report,
    TokenView, WorkerHealth, WorkerStats,
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

/// A client of the manager's API.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    http: HttpClient,
    base: String,
    token: Option<String>,
}

impl ManagerClient {
    /// A client of the manager at `base` (`http://host:port`), each call timing out after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self::with_http(HttpClient::new(timeout), base)
    }

    /// A client sharing an existing connection pool.
    pub fn with_http(http: HttpClient, base: &str) -> Self {
        ManagerClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// The manager's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client sending `Authorization: Bearer TOKEN` with every call (none for `None`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The same client with another timeout per call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        ManagerClient {
            http: self.http.with_timeout(timeout),
            base: self.base.clone(),
            token: self.token.clone(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let raw = self
            .http
            .send_auth(method, &url, body, self.token.as_deref())
            .await?;
        decode(&url, &raw)
    }

    /// `POST /tasks` with a body as the user wrote it (Poseidon JSON or the Go TaskEvent, one or an
    /// array): the tasks stored.
    pub async fn submit(&self, body: Vec<u8>) -> Result<Vec<Task>, ClientError> {
        let many: OneOrMany = self.call(Method::POST, "/tasks", Some(body)).await?;
        Ok(many.into())
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
    pub async fn logs(&self, id: TaskId, tail: Option<usize>) -> Result<LogsReply, ClientError> {
        let path = match tail {
            Some(n) => format!("/tasks/{id}/logs?tail={n}"),
            None => format!("/tasks/{id}/logs"),
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

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = format!("{}/metrics", self.base);
        let raw = self
            .http
            .send_auth(Method::GET, &url, None, self.token.as_deref())
            .await?;
        check(&url, &raw)?;
        Ok(String::from_utf8_lossy(&raw.body).into_owned())
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
pub struct WorkerClient {
    http: HttpClient,
    base: String,
    token: Option<String>,
}

impl WorkerClient {
    /// A client of the worker at `base` (`http://host:port`), each call timing out after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self::with_http(HttpClient::new(timeout), base)
    }

    /// A client sharing an existing connection pool (the manager keeps one for every worker).
    pub fn with_http(http: HttpClient, base: &str) -> Self {
        WorkerClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: None,
        }
    }

    /// The worker's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same client sending `Authorization: Bearer TOKEN` with every call (none for `None`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// The same client with another timeout per call.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        WorkerClient {
            http: self.http.with_timeout(timeout),
            base: self.base.clone(),
            token: self.token.clone(),
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let raw = self
            .http
            .send_auth(method, &url, body, self.token.as_deref())
            .await?;
        decode(&url, &raw)
    }

    /// `POST /assignments` (the cluster protocol): which were taken and which refused.
    pub async fn assign(&self, batch: &AssignmentBatch) -> Result<AssignmentReply, ClientError> {
        let body = encode("/assignments", batch)?;
        self.call(Method::POST, "/assignments", Some(body)).await
    }

    /// `POST /tasks` straight to the worker (a worker without a manager).
    pub async fn submit(&self, body: Vec<u8>) -> Result<Vec<Task>, ClientError> {
        let many: OneOrMany = self.call(Method::POST, "/tasks", Some(body)).await?;
        Ok(many.into())
    }

    /// `GET /tasks`.
    pub async fn tasks(&self) -> Result<Vec<Task>, ClientError> {
        self.call(Method::GET, "/tasks", None).await
    }

    /// `GET /tasks/{id}`.
    pub async fn task(&self, id: TaskId) -> Result<Task, ClientError> {
        self.call(Method::GET, &format!("/tasks/{id}"), None).await
    }

    /// `DELETE /tasks/{id}`: stops the task.
    pub async fn stop(&self, id: TaskId) -> Result<Task, ClientError> {
        self.call(Method::DELETE, &format!("/tasks/{id}"), None)
            .await
    }

    /// `DELETE /tasks/{id}?purge=true`: forgets a finished task and removes its container.
    pub async fn purge(&self, id: TaskId) -> Result<Purged, ClientError> {
        self.call(Method::DELETE, &format!("/tasks/{id}?purge=true"), None)
            .await
    }

    /// `GET /tasks/{id}/logs` (`?tail=N`).
    pub async fn logs(&self, id: TaskId, tail: Option<usize>) -> Result<LogsReply, ClientError> {
        let path = match tail {
            Some(n) => format!("/tasks/{id}/logs?tail={n}"),
            None => format!("/tasks/{id}/logs"),
        };
        self.call(Method::GET, &path, None).await
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
