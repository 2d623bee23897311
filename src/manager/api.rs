//! The manager's REST API: one `match (method, path)` turning HTTP into calls on [`Manager`].
//!
//! Users: `GET/POST /tasks`, `GET/DELETE /tasks/{id}` (`?purge=true`), `GET /tasks/{id}/logs`,
//! `GET /nodes`, `GET /health`, `GET /metrics`. Workers: `POST /nodes/{name}/heartbeat` and
//! `POST /nodes/{name}/reports`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{Manager, ManagerError};
use crate::http::{error, json, text, ApiError, Req, Resp};
use crate::task::{State, TaskId};
use crate::wire::{Heartbeat, ManagerHealth, Purged, Report};

/// Maps manager errors to statuses; the one place that does.
fn status_of(e: &ManagerError) -> ApiError {
    match e {
        ManagerError::NotFound(_) => ApiError::not_found(e.to_string()),
        ManagerError::Conflict(_) => ApiError::conflict(e.to_string()),
        ManagerError::Invalid(_) => ApiError::bad_request(e.to_string()),
        ManagerError::Store(_) => ApiError::unavailable(e.to_string()),
        ManagerError::Worker(_) => ApiError::new(502, e.to_string()),
    }
}

fn parse_id(s: &str) -> Result<TaskId, ApiError> {
    s.parse::<TaskId>().map_err(ApiError::bad_request)
}

/// Handles one request.
pub async fn handle(m: Manager, req: Req) -> Resp {
    match route(&m, &req).await {
        Ok(r) => r,
        Err(e) => error(&e),
    }
}

/// A node's advertised address must be an absolute `http://host:port` base URL: the manager
/// relays logs and sends assignments to it, and anything else would fail only then, as a 502.
fn check_address(address: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(format!(
            "address {address:?} {why} (expected http://HOST:PORT)"
        ))
    };
    let uri: hyper::Uri = address.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("does not start with http://"));
    }
    match uri.authority() {
        Some(a) if !a.host().is_empty() && a.port_u16().is_some() => {}
        _ => return Err(bad("has no host and port")),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(bad("has a path or query"));
    }
    Ok(())
}

async fn route(m: &Manager, req: &Req) -> Result<Resp, ApiError> {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let meth = req.method.as_str();
    match (meth, path.as_slice()) {
        ("GET", ["health"]) => Ok(json(
            200,
            &ManagerHealth {
                status: "ok".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                scheduler: m.scheduler_name(),
                uptime_s: m.uptime().as_secs(),
            },
        )),
        ("GET", ["metrics"]) => Ok(text(200, metrics(m), "text/plain; version=0.0.4")),
        ("GET", ["nodes"]) => Ok(json(200, &m.nodes())),
        ("GET", ["tasks"]) => {
            let state = req
                .param("state")
                .map(|s| s.parse::<State>())
                .transpose()
                .map_err(ApiError::bad_request)?;
            Ok(json(200, &m.tasks(state, req.param("node"))))
        }
        ("POST", ["tasks"]) => {
            let subs = crate::spec::parse_submissions(&req.body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let single = subs.len() == 1;
            let created = m
                .submit(subs.into_iter().map(|s| (s.id, s.spec)).collect())
                .await
                .map_err(|e| status_of(&e))?;
            if single {
                let mut resp = json(201, &created[0]);
                if let Ok(v) = format!("/tasks/{}", created[0].id).parse() {
                    resp.headers_mut().insert(hyper::header::LOCATION, v);
                }
                Ok(resp)
            } else {
                Ok(json(201, &created))
            }
        }
        ("GET", ["tasks", id]) => {
            let id = parse_id(id)?;
            m.task(id)
                .map(|t| json(200, &t))
                .ok_or_else(|| ApiError::not_found(format!("no task with id {id}")))
        }
        ("DELETE", ["tasks", id]) => {
            let id = parse_id(id)?;
            let purge = req.flag("purge")?;
            match m.stop(id, purge).await.map_err(|e| status_of(&e))? {
                Some(t) => Ok(json(200, &t)),
                None => Ok(json(200, &Purged { purged: id })),
            }
        }
        ("GET", ["tasks", id, "logs"]) => {
            let id = parse_id(id)?;
            let tail = req
                .param("tail")
                .map(|t| {
                    t.parse::<usize>().map_err(|_| {
                        ApiError::bad_request(format!(
                            "tail must be a whole number of lines, got {t:?}"
                        ))
                    })
                })
                .transpose()?;
            let logs = m.logs(id, tail).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &logs))
        }
        ("POST", ["nodes", name, "heartbeat"]) => {
            let hb: Heartbeat = req.json()?;
            if hb.name != *name {
                return Err(ApiError::bad_request(format!(
                    "heartbeat for {name} carries the name {}",
                    hb.name
                )));
            }
            check_address(&hb.address)?;
            let reply = m.heartbeat(name, hb).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &reply))
        }
        ("POST", ["nodes", name, "reports"]) => {
            let r: Report = req.json()?;
            let reply = m.report(name, r.tasks).await.map_err(|e| status_of(&e))?;
            Ok(json(200, &reply))
        }
        (_, ["health" | "metrics" | "nodes" | "tasks"])
        | (_, ["tasks", _])
        | (_, ["tasks", _, "logs"])
        | (_, ["nodes", _, "heartbeat" | "reports"]) => Err(ApiError::new(
            405,
            format!("method {meth} is not allowed on /{}", path.join("/")),
        )),
        _ => Err(ApiError::not_found(format!(
            "no route for {meth} /{}",
            path.join("/")
        ))),
    }
}

/// Renders the Prometheus text exposition.
fn metrics(m: &Manager) -> String {
    let mut out = String::new();
    let c = m.metrics();
    let counters = [
        (
            "poseidon_submissions_total",
            "Tasks accepted.",
            &c.submissions,
        ),
        (
            "poseidon_placements_total",
            "Placements made.",
            &c.placements,
        ),
        (
            "poseidon_unplaceable_total",
            "Placement attempts that found no node.",
            &c.unplaceable,
        ),
        (
            "poseidon_dispatch_failures_total",
            "Assignments a worker did not take.",
            &c.dispatch_failures,
        ),
        (
            "poseidon_heartbeats_total",
            "Heartbeats received.",
            &c.heartbeats,
        ),
        (
            "poseidon_reports_total",
            "Worker reports received.",
            &c.reports,
        ),
        (
            "poseidon_nodes_lost_total",
            "Times a node was marked down.",
            &c.nodes_lost,
        ),
        (
            "poseidon_rescheduled_total",
            "Tasks moved off a lost node.",
            &c.rescheduled,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP poseidon_tasks Tasks by state.\n# TYPE poseidon_tasks gauge"
    );
    for (state, n) in m.task_counts() {
        let _ = writeln!(out, "poseidon_tasks{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP poseidon_nodes Nodes by state.\n# TYPE poseidon_nodes gauge"
    );
    let nodes = m.nodes();
    for state in ["waiting", "up", "unhealthy", "down"] {
        let n = nodes
            .iter()
            .filter(|v| {
                serde_json::to_value(v.state)
                    .ok()
                    .and_then(|s| s.as_str().map(str::to_string))
                    .as_deref()
                    == Some(state)
            })
            .count();
        let _ = writeln!(out, "poseidon_nodes{{state=\"{state}\"}} {n}");
    }
    let s = m.store_stats();
    let _ = writeln!(out, "# HELP poseidon_store_writes_total Durable writes acknowledged.\n# TYPE poseidon_store_writes_total counter\nposeidon_store_writes_total {}", s.writes);
    let _ = writeln!(out, "# HELP poseidon_store_syncs_total Synced batches (fsyncs).\n# TYPE poseidon_store_syncs_total counter\nposeidon_store_syncs_total {}", s.syncs);
    out
}
