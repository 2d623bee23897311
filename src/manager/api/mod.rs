//! The manager's REST API: HTTP turned into calls on [`Manager`], one file per resource, each
//! with one `match (method, path)`; this file picks the resource by the first path segment and
//! maps errors to statuses in one place ([`status_of`]).
//!
//! - [`tasks`]: `GET/POST /tasks`, `GET/DELETE /tasks/{id}` (`?purge=true`), `GET /tasks/{id}/logs`;
//! - [`nodes`]: `GET /nodes`, `POST /nodes/{name}/eligibility` and `/drain`, and the workers'
//!   `POST /nodes/{name}/heartbeat` and `/reports`;
//! - [`services`]: `GET/POST /services`, `GET/PUT/DELETE /services/{name}` (`?purge=true`),
//!   `POST /services/{name}/rollback`;
//! - [`metrics`]: `GET /metrics` (Prometheus text);
//! - [`catalog`]: `GET /catalog/services`, `GET /catalog/services/{name}`, `GET /catalog/mesh`
//!   and a worker's `GET /nodes/{name}/mesh` (`?index=N&wait=D`);
//! - [`events`]: `GET /events` (`?index=N`), newline-delimited JSON, streamed;
//! - [`docs`]: `GET /openapi.json` (the OpenAPI 3.1 document) and the dashboard, `GET /ui`;
//! - [`acl`]: `/acl/...`: bootstrap, tokens, join tokens, and the workers' join;
//! - here: `GET /health`, and [`gate`], the one place where requests are authenticated: it runs
//!   before a body is read, checks the token against the route's [`Scope`] ([`scope_of`]), and only
//!   then picks the body limit, so an unauthenticated request never gets more than the small one.

use std::sync::Arc;
use std::time::Instant;

use hyper::Method;

use super::{Manager, ManagerError};
use crate::http::{error, json, Admitted, ApiError, Gate, Head, Req, Resp, MAX_BODY};
use crate::security::{Principal, Scope};
use crate::task::TaskId;
use crate::wire::ManagerHealth;

mod acl;
mod catalog;
mod docs;
mod events;
mod metrics;
mod nodes;
mod ops;
mod services;
mod tasks;

/// Maps manager errors to statuses; the one place that does.
pub(crate) fn status_of(e: &ManagerError) -> ApiError {
    match e {
        ManagerError::NotFound(_) | ManagerError::UnknownNode(_) | ManagerError::Missing(_) => {
            ApiError::not_found(e.to_string())
        }
        ManagerError::Conflict(_) => ApiError::conflict(e.to_string()),
        ManagerError::Invalid(_) => ApiError::bad_request(e.to_string()),
        ManagerError::Store(_) => ApiError::unavailable(e.to_string()),
        ManagerError::Worker(_) => ApiError::new(502, e.to_string()),
    }
}

pub(crate) fn parse_id(s: &str) -> Result<TaskId, ApiError> {
    s.parse::<TaskId>().map_err(ApiError::bad_request)
}

/// Handles one request.
pub async fn handle(m: Manager, req: Req) -> Resp {
    match route(&m, &req).await {
        Ok(r) => r,
        Err(e) => {
            let mut resp = error(&e);
            if e.status == 405 {
                docs::add_allow(&mut resp, &req.path);
            }
            resp
        }
    }
}

async fn route(m: &Manager, req: &Req) -> Result<Resp, ApiError> {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let meth = req.method.as_str();
    match path.first().copied() {
        Some("tasks") => tasks::route(m, req, meth, &path).await,
        // A worker's routing mesh reads the catalog with its node token (the node scope).
        Some("nodes") if matches!(path.as_slice(), ["nodes", _, "mesh"]) => {
            catalog::route_mesh(m, req, meth, &path).await
        }
        Some("nodes") => nodes::route(m, req, meth, &path).await,
        Some("events") if path.len() == 1 => events::route(m, req, meth, &path),
        Some("services") => services::route(m, req, meth, &path).await,
        Some("catalog") => catalog::route(m, req, meth, &path).await,
        Some("acl") => acl::route(m, req, meth, &path).await,
        Some("metrics") if path.len() == 1 => match meth {
            "GET" => Ok(metrics::render(m)),
            _ => Err(not_allowed(meth, &path)),
        },
        Some("health") if path.len() == 1 => match meth {
            "GET" => Ok(json(
                200,
                &ManagerHealth {
                    status: "ok".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    scheduler: m.scheduler_name(),
                    uptime_s: m.uptime().as_secs(),
                    ha: None,
                },
            )),
            _ => Err(not_allowed(meth, &path)),
        },
        Some("openapi.json" | "ui") => {
            docs::route(meth, &path).unwrap_or_else(|| Err(no_route(meth, &path)))
        }
        _ => Err(no_route(meth, &path)),
    }
}

/// The Prometheus text of `GET /metrics` (the managers in high availability add their lines).
pub(crate) fn metrics_text(m: &Manager) -> String {
    metrics::metrics(m)
}

/// 405 for a route that exists with another method.
pub(crate) fn not_allowed(meth: &str, path: &[&str]) -> ApiError {
    ApiError::new(
        405,
        format!("method {meth} is not allowed on /{}", path.join("/")),
    )
}

/// 404 for a path no resource has.
pub(crate) fn no_route(meth: &str, path: &[&str]) -> ApiError {
    ApiError::not_found(format!("no route for {meth} /{}", path.join("/")))
}

/// The scope each route needs: `GET /health` and `POST /acl/bootstrap` are open (the bootstrap
/// refuses a second call itself); the workers' heartbeats and reports need their node identity,
/// `POST /acl/join` a join token; every other `/acl` route and every write outside tasks and
/// services needs `manage`; writes to tasks and services need `submit`; any other `GET`, `read`.
pub fn scope_of(method: &Method, path: &[&str]) -> Scope {
    match (method.as_str(), path) {
        ("GET", ["health"] | ["acl", "ca"]) | ("POST", ["acl", "bootstrap"]) => Scope::Open,
        ("POST", ["acl", "join"]) => Scope::Join,
        ("POST", ["nodes", _, "heartbeat" | "reports"])
        | ("GET", ["nodes", _, "mesh"])
        | ("POST", ["acl", "nodes", _, "certificate"]) => Scope::Node,
        (_, ["acl", ..]) => Scope::Manage,
        ("GET" | "HEAD", _) => Scope::Read,
        (_, ["tasks" | "services", ..]) => Scope::Submit,
        _ => Scope::Manage,
    }
}

/// The node a node-scoped route speaks for: `/nodes/{name}/...` or `/acl/nodes/{name}/...`.
fn node_of<'a>(path: &[&'a str]) -> &'a str {
    match path {
        ["acl", "nodes", name, ..] | ["nodes", name, ..] => name,
        _ => "",
    }
}

/// The manager's [`Gate`]: authentication, the route's scope, a node's own name, the rate limit
/// on failed authentication, and the body limit, all decided before the body is read.
pub fn gate(m: Manager) -> Gate {
    Arc::new(move |head: &Head<'_>| admit(&m, head))
}

/// What the gate decides for one request of `m` (the high-availability gate too, with the manager
/// that answers now).
pub(crate) fn admit(m: &Manager, head: &Head<'_>) -> Result<Admitted, ApiError> {
    let path: Vec<&str> = head.path.iter().map(String::as_str).collect();
    let limit = crate::http::manager_body_limit(head.method, head.path);
    let security = m.security();
    let Some(acl) = &security.acl else {
        return Ok(Admitted {
            limit,
            principal: Principal::Open,
        });
    };
    let scope = scope_of(head.method, &path);
    if scope == Scope::Open {
        return Ok(Admitted {
            limit: MAX_BODY,
            principal: Principal::Anonymous,
        });
    }
    let now = Instant::now();
    let ip = head.peer.map(|p| p.ip());
    if let Some(ip) = ip {
        if security.limiter.blocked(ip, now) {
            return Err(ApiError::new(
                429,
                format!(
                    "too many failed authentications from {ip}; wait a few seconds and use a valid token"
                ),
            ));
        }
    }
    let Some(token) = head.bearer else {
        return Err(ApiError::new(
            401,
            "this manager requires a token: send Authorization: Bearer TOKEN (the CLI takes --token or POSEIDON_TOKEN)",
        ));
    };
    let Some(rec) = acl.authenticate(token) else {
        if let Some(ip) = ip {
            security.limiter.fail(ip, now);
        }
        tracing::debug!(peer = ?head.peer, "refused an unknown or revoked token");
        return Err(ApiError::new(401, "unknown or revoked token"));
    };
    if !rec.policy.allows(scope) {
        return Err(ApiError::new(
            403,
            format!(
                "token {} has the {} policy, which does not allow {} /{}",
                rec.accessor,
                rec.policy,
                head.method,
                path.join("/")
            ),
        ));
    }
    if scope == Scope::Node {
        let name = node_of(&path);
        if rec.node.as_deref() != Some(name) {
            return Err(ApiError::new(
                403,
                format!(
                    "node {name} is registered to another identity; this token speaks for {}",
                    rec.node.as_deref().unwrap_or("no node")
                ),
            ));
        }
    }
    if scope == Scope::Node && security.ca.is_some() {
        let name = node_of(&path);
        let wanted = crate::security::ca::node_name(name);
        if !head
            .peer_cert
            .is_some_and(|c| crate::security::tls::cert_has_name(c, &wanted))
        {
            return Err(ApiError::new(
                403,
                format!("requests for node {name} must come with node {name}'s certificate"),
            ));
        }
    }
    Ok(Admitted {
        limit,
        principal: Principal::Token {
            accessor: rec.accessor,
            policy: rec.policy,
            node: rec.node,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_the_scope_the_contract_gives_it() {
        let table: &[(Method, &str, Scope)] = &[
            (Method::GET, "health", Scope::Open),
            (Method::POST, "acl/bootstrap", Scope::Open),
            (Method::POST, "acl/join", Scope::Join),
            (Method::GET, "acl/tokens", Scope::Manage),
            (Method::POST, "acl/tokens", Scope::Manage),
            (Method::DELETE, "acl/tokens/abc", Scope::Manage),
            (Method::POST, "acl/join-token", Scope::Manage),
            (Method::POST, "nodes/w1/heartbeat", Scope::Node),
            (Method::POST, "nodes/w1/reports", Scope::Node),
            (Method::POST, "acl/nodes/w1/certificate", Scope::Node),
            (Method::GET, "nodes/w1/mesh", Scope::Node),
            (Method::GET, "catalog/mesh", Scope::Read),
            (Method::GET, "acl/ca", Scope::Open),
            (Method::GET, "nodes", Scope::Read),
            (Method::POST, "nodes/w1/drain", Scope::Manage),
            (Method::POST, "nodes/w1/eligibility", Scope::Manage),
            (Method::GET, "tasks", Scope::Read),
            (Method::GET, "tasks/x/logs", Scope::Read),
            (Method::POST, "tasks", Scope::Submit),
            (Method::DELETE, "tasks/x", Scope::Submit),
            (Method::POST, "services", Scope::Submit),
            (Method::PUT, "services/web", Scope::Submit),
            (Method::GET, "metrics", Scope::Read),
            (Method::POST, "health", Scope::Manage),
            (Method::POST, "anything/else", Scope::Manage),
        ];
        for (method, path, scope) in table {
            let p: Vec<&str> = path.split('/').collect();
            assert_eq!(scope_of(method, &p), *scope, "{method} /{path}");
        }
    }
}
