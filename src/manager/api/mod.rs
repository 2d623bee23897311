//! The manager's REST API: HTTP turned into calls on [`Manager`], one file per resource, each
//! with one `match (method, path)`; this file picks the resource by the first path segment and
//! maps errors to statuses in one place ([`status_of`]).
//!
//! - [`tasks`]: `GET/POST /tasks`, `GET/DELETE /tasks/{id}` (`?purge=true`), `GET /tasks/{id}/logs`;
//! - [`nodes`]: `GET /nodes`, `POST /nodes/{name}/eligibility` and `/drain`, and the workers'
//!   `POST /nodes/{name}/heartbeat` and `/reports`;
//! - [`metrics`]: `GET /metrics` (Prometheus text);
//! - [`events`]: `GET /events` (`?index=N`), newline-delimited JSON, streamed;
//! - [`docs`]: `GET /openapi.json` (the OpenAPI 3.1 document) and the dashboard, `GET /ui`;
//! - here: `GET /health`.

use super::{Manager, ManagerError};
use crate::http::{error, json, ApiError, Req, Resp};
use crate::task::TaskId;
use crate::wire::ManagerHealth;

mod docs;
mod events;
mod metrics;
mod nodes;
mod ops;
mod tasks;

/// Maps manager errors to statuses; the one place that does.
pub(crate) fn status_of(e: &ManagerError) -> ApiError {
    match e {
        ManagerError::NotFound(_) | ManagerError::UnknownNode(_) => {
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
        Some("nodes") => nodes::route(m, req, meth, &path).await,
        Some("events") if path.len() == 1 => events::route(m, req, meth, &path),
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
