//! `/tasks`: submit, list, inspect, stop or purge, read or follow logs, exec (the last two are
//! relayed to the task's worker by [`super::ops`]).

use super::{no_route, not_allowed, ops, parse_id, status_of};
use crate::http::{json, json_bytes, ApiError, Req, Resp};
use crate::manager::Manager;
use crate::task::State;
use crate::wire::Purged;
use crate::worker::ops::LogQuery;

/// Routes `/tasks...`; `path` still starts with `tasks`.
pub(super) async fn route(
    m: &Manager,
    req: &Req,
    meth: &str,
    path: &[&str],
) -> Result<Resp, ApiError> {
    match (meth, path) {
        ("GET", ["tasks"]) => {
            let state = req
                .param("state")
                .map(|s| s.parse::<State>())
                .transpose()
                .map_err(ApiError::bad_request)?;
            let mut tasks = m.tasks(state, req.param("node"));
            if let Some(service) = req.param("service") {
                tasks.retain(|t| t.service.as_deref() == Some(service));
            }
            Ok(json(200, &tasks))
        }
        ("POST", ["tasks"]) => {
            let subs = crate::spec::parse_submissions(&req.body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let single = subs.len() == 1;
            // Each task's JSON comes from the record written for it, not from a second encode.
            let mut created = m
                .submit_json(subs.into_iter().map(|s| (s.id, s.spec)).collect())
                .await
                .map_err(|e| status_of(&e))?;
            if single {
                let (id, body) = created.swap_remove(0);
                let mut resp = json_bytes(201, body);
                if let Ok(v) = format!("/tasks/{id}").parse() {
                    resp.headers_mut().insert(hyper::header::LOCATION, v);
                }
                Ok(resp)
            } else {
                let len = created.iter().map(|(_, j)| j.len() + 1).sum::<usize>() + 1;
                let mut body = Vec::with_capacity(len);
                body.push(b'[');
                for (i, (_, json)) in created.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(json);
                }
                body.push(b']');
                Ok(json_bytes(201, body))
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
            let q = LogQuery::parse(req)?;
            if q.follow {
                return ops::follow_logs(m, id, &q).await;
            }
            let logs = if q.is_plain() {
                m.logs(id, q.tail).await
            } else {
                ops::logs_with(m, id, &q).await
            };
            Ok(json(200, &logs.map_err(|e| status_of(&e))?))
        }
        ("POST", ["tasks", id, "exec"]) => {
            let id = parse_id(id)?;
            ops::exec(m, id, req).await
        }
        (_, ["tasks"]) | (_, ["tasks", _]) | (_, ["tasks", _, "logs" | "exec"]) => {
            Err(not_allowed(meth, path))
        }
        _ => Err(no_route(meth, path)),
    }
}
