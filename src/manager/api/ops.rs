//! The manager's relays to a task's worker: logs with `since`/`timestamps`/`previous`, logs
//! followed as a stream, and exec.
//!
//! A followed log is relayed chunk by chunk: the manager opens the worker's stream and copies each
//! chunk to its own response. When the user goes away the copy stops and drops the worker's
//! stream, which closes that connection; the worker then drops the engine's stream. So a hang-up
//! ends the follow on both hops.

use std::time::Duration;

use super::status_of;
use crate::http::{self, ApiError, Req, Resp};
use crate::manager::{relay_error, Manager, ManagerError};
use crate::task::TaskId;
use crate::wire::{ExecRequest, LogsReply};
use crate::worker::ops::{exec_timeout, LogQuery};

/// How long the worker may take beyond the command's own timeout to answer an exec.
const EXEC_MARGIN: Duration = Duration::from_secs(5);

/// Logs answered whole with the query's options.
pub(super) async fn logs_with(
    m: &Manager,
    id: TaskId,
    q: &LogQuery,
) -> Result<LogsReply, ManagerError> {
    let (worker, node) = m.worker_of(id)?;
    worker
        .logs_with(id, &q.to_query())
        .await
        .map_err(|e| relay_error(&node, e))
}

/// Follows a task's logs on its worker and relays the stream.
pub(super) async fn follow_logs(m: &Manager, id: TaskId, q: &LogQuery) -> Result<Resp, ApiError> {
    let (worker, node) = m.worker_of(id).map_err(|e| status_of(&e))?;
    let mut query = q.clone();
    // `follow_logs` adds it.
    query.follow = false;
    let mut upstream = worker
        .follow_logs(id, &query.to_query())
        .await
        .map_err(|e| status_of(&relay_error(&node, e)))?;
    let (tx, resp) = http::stream("application/x-ndjson", 64);
    tokio::spawn(async move {
        loop {
            let chunk = tokio::select! {
                _ = tx.closed() => break,
                c = upstream.chunk() => c,
            };
            match chunk {
                Ok(Some(c)) => {
                    if !tx.send(c).await {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(task = %id, node = %node, error = %e, "a relayed log stream broke");
                    let line = serde_json::json!({ "error": format!("node {node}: {e}") });
                    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                    bytes.push(b'\n');
                    if !tx.send(bytes).await {
                        tracing::debug!(task = %id, "the follower left before the error line");
                    }
                    break;
                }
            }
        }
        // Dropping `upstream` here closes the connection to the worker.
    });
    Ok(resp)
}

/// `POST /tasks/{id}/exec`, relayed with a timeout above the command's own.
pub(super) async fn exec(m: &Manager, id: TaskId, req: &Req) -> Result<Resp, ApiError> {
    let body: ExecRequest = req.json()?;
    if body.cmd.is_empty() {
        return Err(ApiError::bad_request("cmd must name a command"));
    }
    let timeout = exec_timeout(body.timeout.as_deref())?;
    let (worker, node) = m.worker_of(id).map_err(|e| status_of(&e))?;
    let reply = worker
        .with_timeout(timeout + EXEC_MARGIN)
        .exec(id, &body)
        .await
        .map_err(|e| match e {
            crate::http::ClientError::Status {
                status: 503,
                message,
            } => ApiError::unavailable(format!("node {node}: {message}")),
            e => status_of(&relay_error(&node, e)),
        })?;
    Ok(http::json(200, &reply))
}
