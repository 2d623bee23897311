//! The worker's REST API: one `match (method, path)` turning HTTP into calls on [`Worker`].
//!
//! `GET /health`, `GET /stats`, `GET /tasks`, `POST /tasks` (a user's task, started at once),
//! `GET /tasks/{id}`, `DELETE /tasks/{id}` (stop; `?purge=true` also forgets a finished task),
//! `GET /tasks/{id}/logs` (`?tail=N`, `follow`, `since`, `timestamps`, `previous`; streamed as
//! newline-delimited JSON when following), `POST /tasks/{id}/exec`, `GET /metrics`, and the
//! manager's `POST /assignments`.
//!
//! With security on ([`crate::security::WorkerSecurity::manager_secret`] set), [`gate`] admits only
//! the manager to every route but `GET /health`, and refuses direct `POST /tasks` to anyone: a worker
//! that has a manager takes work from it alone.

use std::sync::Arc;
use std::time::Instant;

use super::ops::{self, LogQuery};
use super::{Worker, WorkerError};
use crate::http::{error, json, text, Admitted, ApiError, Gate, Head, Req, Resp, MAX_BODY};
use crate::security::{constant_time_eq, Principal};
use crate::task::TaskId;
use crate::wire::{AssignmentBatch, ExecReply, ExecRequest, LogsReply, Purged, WorkerHealth};

/// Reads a finite log stream whole.
async fn collect(
    mut stream: poseidon_runtimes::LogStream,
) -> Result<poseidon_runtimes::Logs, poseidon_runtimes::RuntimeError> {
    let mut logs = poseidon_runtimes::Logs::default();
    while let Some(chunk) = stream.recv().await {
        let chunk = chunk?;
        match chunk.stream {
            poseidon_runtimes::OutputStream::Stdout => logs.stdout.push_str(&chunk.data),
            poseidon_runtimes::OutputStream::Stderr => logs.stderr.push_str(&chunk.data),
        }
    }
    Ok(logs)
}

/// Maps worker errors to statuses; the one place that does.
fn status_of(e: &WorkerError) -> ApiError {
    match e {
        WorkerError::NotFound(_) => ApiError::not_found(e.to_string()),
        WorkerError::Conflict(_) => ApiError::conflict(e.to_string()),
        WorkerError::Invalid(_) => ApiError::bad_request(e.to_string()),
        WorkerError::Store(_) | WorkerError::Late(_) => ApiError::unavailable(e.to_string()),
        WorkerError::Runtime(r) if r.is_engine_down() => ApiError::unavailable(e.to_string()),
        WorkerError::Runtime(_) => ApiError::new(502, e.to_string()),
    }
}

pub(crate) fn parse_id(s: &str) -> Result<TaskId, ApiError> {
    s.parse::<TaskId>().map_err(ApiError::bad_request)
}

/// The worker's [`Gate`]: without a manager secret every route is open; with one, only the
/// manager is admitted (every route but `GET /health`), and direct `POST /tasks` is refused.
pub fn gate(w: Worker) -> Gate {
    Arc::new(move |head: &Head<'_>| admit(&w, head))
}

fn admit(w: &Worker, head: &Head<'_>) -> Result<Admitted, ApiError> {
    let path: Vec<&str> = head.path.iter().map(String::as_str).collect();
    let limit = crate::http::worker_body_limit(head.method, head.path);
    let Some(secret) = &w.security().manager_secret else {
        return Ok(Admitted {
            limit,
            principal: Principal::Open,
        });
    };
    match (head.method.as_str(), path.as_slice()) {
        ("GET", ["health"]) => {
            return Ok(Admitted {
                limit: MAX_BODY,
                principal: Principal::Anonymous,
            })
        }
        ("POST", ["tasks"]) => {
            return Err(ApiError::new(
                403,
                format!(
                    "worker {} has a manager and takes tasks only from it; submit to the manager",
                    w.name()
                ),
            ))
        }
        _ => {}
    }
    let now = Instant::now();
    let ip = head.peer.map(|p| p.ip());
    if ip.is_some_and(|ip| w.inner.limiter.blocked(ip, now)) {
        return Err(ApiError::new(
            429,
            "too many failed authentications; wait a few seconds",
        ));
    }
    if w.security().manager_cert_required
        && !head.peer_cert.is_some_and(|c| {
            crate::security::tls::cert_has_name(c, crate::security::ca::MANAGER_NAME)
        })
    {
        return Err(ApiError::new(
            403,
            "this worker takes requests only from its manager's certificate",
        ));
    }
    match head.bearer {
        Some(t) if constant_time_eq(t.as_bytes(), secret.as_bytes()) => Ok(Admitted {
            limit,
            principal: Principal::Manager,
        }),
        Some(_) => {
            if let Some(ip) = ip {
                w.inner.limiter.fail(ip, now);
            }
            Err(ApiError::new(401, "only this worker's manager is admitted"))
        }
        None => Err(ApiError::new(
            401,
            "this worker admits only its manager (send requests to the manager)",
        )),
    }
}

/// Handles one request.
pub async fn handle(w: Worker, req: Req) -> Resp {
    match route(&w, &req).await {
        Ok(r) => r,
        Err(e) => error(&e),
    }
}

async fn route(w: &Worker, req: &Req) -> Result<Resp, ApiError> {
    let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    match (m, path.as_slice()) {
        ("GET", ["health"]) => Ok(json(
            if w.engine_ok() { 200 } else { 503 },
            &WorkerHealth {
                status: if w.engine_ok() {
                    "ok"
                } else {
                    "engine unavailable"
                }
                .into(),
                node: w.name().into(),
                runtime: w.runtime().kind().into(),
            },
        )),
        ("GET", ["stats"]) => Ok(json(200, &w.stats().await)),
        ("GET", ["tasks"]) => Ok(json(200, &w.tasks())),
        ("POST", ["tasks"]) => {
            let subs = crate::spec::parse_submissions(&req.body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let single = subs.len() == 1;
            let mut out = Vec::new();
            for s in subs {
                out.push(w.submit(s.id, s.spec).await.map_err(|e| status_of(&e))?);
            }
            if single {
                let mut resp = json(201, &out[0]);
                if let Ok(v) = format!("/tasks/{}", out[0].id).parse() {
                    resp.headers_mut().insert(hyper::header::LOCATION, v);
                }
                Ok(resp)
            } else {
                Ok(json(201, &out))
            }
        }
        ("POST", ["assignments"]) => {
            let batch: AssignmentBatch = req.json()?;
            Ok(json(200, &w.accept_batch(batch).await))
        }
        ("GET", ["tasks", id]) => {
            let id = parse_id(id)?;
            w.task(id)
                .map(|t| json(200, &t))
                .ok_or_else(|| ApiError::not_found(format!("no task with id {id}")))
        }
        ("DELETE", ["tasks", id]) => {
            let id = parse_id(id)?;
            if req.flag("purge")? {
                let t = w
                    .task(id)
                    .ok_or_else(|| ApiError::not_found(format!("no task with id {id}")))?;
                if !t.is_finished() {
                    return Err(ApiError::conflict(format!(
                        "task {id} is {} and must be stopped before it is purged",
                        t.state
                    )));
                }
                w.forget(id, "purged").await.map_err(|e| status_of(&e))?;
                return Ok(json(200, &Purged { purged: id }));
            }
            let t = w.stop(id, "stopped").await.map_err(|e| status_of(&e))?;
            Ok(json(200, &t))
        }
        ("GET", ["tasks", id, "logs"]) => {
            let id = parse_id(id)?;
            let q = LogQuery::parse(req)?;
            let logs = if q.previous {
                w.previous_logs(id).map_err(|e| status_of(&e))?
            } else if q.is_plain() {
                w.logs(id, q.tail).await.map_err(|e| status_of(&e))?
            } else {
                let stream = w
                    .log_stream(id, &q.options())
                    .await
                    .map_err(|e| status_of(&e))?;
                if q.follow {
                    return Ok(ops::ndjson_response(stream));
                }
                collect(stream).await.map_err(|e| status_of(&e.into()))?
            };
            Ok(json(
                200,
                &LogsReply {
                    id,
                    stdout: logs.stdout,
                    stderr: logs.stderr,
                },
            ))
        }
        ("POST", ["tasks", id, "exec"]) => {
            let id = parse_id(id)?;
            let body: ExecRequest = req.json()?;
            let timeout = ops::exec_timeout(body.timeout.as_deref())?;
            let out = w
                .exec(id, &body.cmd, timeout)
                .await
                .map_err(|e| status_of(&e))?;
            Ok(json(
                200,
                &ExecReply {
                    stdout: out.stdout,
                    stderr: out.stderr,
                    exit_code: out.exit_code,
                },
            ))
        }
        ("GET", ["metrics"]) => Ok(text(200, w.metrics_text(), "text/plain; version=0.0.4")),
        (_, ["health" | "stats" | "tasks" | "assignments" | "metrics"])
        | (_, ["tasks", _])
        | (_, ["tasks", _, "logs" | "exec"]) => Err(ApiError::new(
            405,
            format!("method {m} is not allowed on /{}", path.join("/")),
        )),
        _ => Err(ApiError::not_found(format!(
            "no route for {m} /{}",
            path.join("/")
        ))),
    }
}
