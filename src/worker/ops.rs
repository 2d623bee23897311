//! The worker's operations side: log streams (follow, since, timestamps), the logs of the run
//! before the last restart, exec inside a task's container, and the worker's `/metrics`.
//!
//! A restart removes the old container (the supervisor never reuses one), and its logs went with
//! it; so before removing it the supervisor calls [`keep_previous_logs`], which keeps the last
//! [`PREVIOUS_LOGS_MAX`] bytes of each stream in memory (lost when the worker restarts).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use poseidon_runtimes::{ExecOutput, LogOptions, LogStream, Logs, RuntimeError};

use super::{Worker, WorkerError};
use crate::histogram::Histogram;
use crate::http::{ApiError, Req};
use crate::task::{State, TaskId};

/// The most of each stream kept from the run before a restart (the last bytes).
pub const PREVIOUS_LOGS_MAX: usize = 1 << 20;

/// The lines asked of the engine for the previous run (then cut to [`PREVIOUS_LOGS_MAX`]).
const PREVIOUS_LOG_LINES: usize = 20_000;

/// The default and the largest timeout of an exec.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest timeout an exec may ask for.
pub const EXEC_TIMEOUT_MAX: Duration = Duration::from_secs(600);

/// What the worker keeps for operations.
#[derive(Debug, Default)]
pub struct Ops {
    /// The logs of each task's run before its last restart.
    previous: Mutex<HashMap<TaskId, Logs>>,
    /// Restarts begun by the supervisor.
    pub(crate) restarts: AtomicU64,
    /// From create to started, for each container started.
    pub(crate) create_start: Histogram,
}

impl Ops {
    /// Forgets what is kept of a task (it was purged).
    pub(crate) fn forget(&self, id: TaskId) {
        lock(&self.previous).remove(&id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn last_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

/// Keeps the output of a container about to be removed for a restart.
pub(crate) async fn keep_previous_logs(w: &Worker, id: TaskId, cid: &str) {
    match w.inner.runtime.logs(cid, Some(PREVIOUS_LOG_LINES)).await {
        Ok(logs) => {
            let kept = Logs {
                stdout: last_bytes(&logs.stdout, PREVIOUS_LOGS_MAX),
                stderr: last_bytes(&logs.stderr, PREVIOUS_LOGS_MAX),
            };
            lock(&w.inner.ops.previous).insert(id, kept);
        }
        Err(e) => {
            tracing::warn!(task = %id, container = %cid, error = %e, "cannot keep the logs of the run before a restart")
        }
    }
}

/// The query of `GET /tasks/{id}/logs`, as both the worker and the manager read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    /// `?tail=N` (or `all`).
    pub tail: Option<usize>,
    /// `?follow=true`: stream as the container writes.
    pub follow: bool,
    /// `?since=`: an RFC 3339 time or a duration ago, as seconds since the epoch.
    pub since: Option<f64>,
    /// `?timestamps=true`.
    pub timestamps: bool,
    /// `?previous=true`: the run before the last restart.
    pub previous: bool,
}

impl LogQuery {
    /// Reads and checks the query (400 for a bad value or a bad combination).
    pub fn parse(req: &Req) -> Result<LogQuery, ApiError> {
        let tail = match req.param("tail") {
            None | Some("all") => None,
            Some(n) => Some(n.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "tail must be a whole number of lines or all, got {n:?}"
                ))
            })?),
        };
        let since = req
            .param("since")
            .map(crate::util::parse_since)
            .transpose()
            .map_err(ApiError::bad_request)?;
        let q = LogQuery {
            tail,
            follow: req.flag("follow")?,
            since,
            timestamps: req.flag("timestamps")?,
            previous: req.flag("previous")?,
        };
        if q.previous && (q.follow || q.since.is_some() || q.timestamps) {
            return Err(ApiError::bad_request(
                "previous shows the kept logs of the run before the last restart; it cannot be \
                 combined with follow, since or timestamps",
            ));
        }
        Ok(q)
    }

    /// The query string that asks a worker for the same (`since` as seconds since the epoch).
    pub fn to_query(&self) -> String {
        let mut q = Vec::new();
        if let Some(n) = self.tail {
            q.push(format!("tail={n}"));
        }
        if self.follow {
            q.push("follow=true".into());
        }
        if let Some(s) = self.since {
            q.push(format!(
                "since={}",
                crate::http::encode_component(&crate::util::rfc3339((s * 1000.0) as u64))
            ));
        }
        if self.timestamps {
            q.push("timestamps=true".into());
        }
        if self.previous {
            q.push("previous=true".into());
        }
        q.join("&")
    }

    /// Whether the plain `Runtime::logs` call answers this query.
    pub fn is_plain(&self) -> bool {
        !self.follow && self.since.is_none() && !self.timestamps && !self.previous
    }

    /// The runtime's options for this query.
    pub fn options(&self) -> LogOptions {
        LogOptions {
            follow: self.follow,
            since: self.since,
            timestamps: self.timestamps,
            tail: self.tail,
        }
    }
}

impl Worker {
    /// The container id of a task, or why there is none.
    fn container_of(&self, id: TaskId) -> Result<String, WorkerError> {
        let task = self.task(id).ok_or(WorkerError::NotFound(id))?;
        task.container_id.ok_or_else(|| {
            WorkerError::Conflict(format!("task {id} has no container (it is {})", task.state))
        })
    }

    /// Streams a task's output as `opts` asks; dropping the stream ends the engine's.
    pub async fn log_stream(
        &self,
        id: TaskId,
        opts: &LogOptions,
    ) -> Result<LogStream, WorkerError> {
        let cid = self.container_of(id)?;
        match self.inner.runtime.log_stream(&cid, opts).await {
            Ok(s) => Ok(s),
            Err(RuntimeError::NoSuchContainer(_)) => Err(WorkerError::Conflict(format!(
                "the container of task {id} was removed, its logs with it"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The kept logs of a task's run before its last restart.
    pub fn previous_logs(&self, id: TaskId) -> Result<Logs, WorkerError> {
        self.task(id).ok_or(WorkerError::NotFound(id))?;
        lock(&self.inner.ops.previous)
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                WorkerError::Conflict(format!(
                    "task {id} has no previous run on this worker (it has not restarted here since the worker started)"
                ))
            })
    }

    /// Runs a command in a running task's container, within `timeout`.
    pub async fn exec(
        &self,
        id: TaskId,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, WorkerError> {
        if cmd.is_empty() {
            return Err(WorkerError::Invalid("exec needs a command".into()));
        }
        let task = self.task(id).ok_or(WorkerError::NotFound(id))?;
        if task.state != State::Running {
            return Err(WorkerError::Conflict(format!(
                "task {id} is {}; exec needs it running",
                task.state
            )));
        }
        let cid = self.container_of(id)?;
        match self.inner.runtime.exec(&cid, cmd, timeout).await {
            Ok(out) => Ok(out),
            Err(RuntimeError::NoSuchContainer(m)) | Err(RuntimeError::Conflict(m)) => Err(
                WorkerError::Conflict(format!("cannot exec in task {id}: {m}")),
            ),
            Err(RuntimeError::Timeout(m)) => Err(WorkerError::Late(format!(
                "the command did not finish within {} s: {m}",
                timeout.as_secs_f64()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The worker's `/metrics` in the Prometheus text format: tasks by state, restarts, the
    /// create-to-started latency of containers, and the routing mesh's counters.
    pub fn metrics_text(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP poseidon_worker_tasks Tasks held by state.\n# TYPE poseidon_worker_tasks gauge\n");
        let tasks = self.tasks();
        for state in State::ALL {
            let n = tasks.iter().filter(|t| t.state == state).count();
            out.push_str(&format!(
                "poseidon_worker_tasks{{state=\"{}\"}} {n}\n",
                state.as_str()
            ));
        }
        out.push_str(&format!(
            "# HELP poseidon_worker_restarts_total Restarts begun by the supervisor.\n# TYPE poseidon_worker_restarts_total counter\nposeidon_worker_restarts_total {}\n",
            self.inner.ops.restarts.load(Ordering::Relaxed)
        ));
        self.inner.ops.create_start.render(
            &mut out,
            "poseidon_worker_container_start_seconds",
            "From container create to started.",
        );
        if let Some(mesh) = self.inner.mesh.get() {
            out.push_str(&mesh.metrics_text());
        }
        out
    }
}

/// Streams a log stream to the client as newline-delimited JSON: a `{"stream", "data"}` line per
/// chunk, an `{"error"}` line if the engine fails. The client leaving drops the log stream, which
/// closes the engine's.
pub fn ndjson_response(mut logs: LogStream) -> crate::http::Resp {
    let (tx, resp) = crate::http::stream("application/x-ndjson", 64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => return,
                next = logs.recv() => next,
            };
            let line = match next {
                None => return,
                Some(Ok(chunk)) => serde_json::to_vec(&chunk),
                Some(Err(e)) => serde_json::to_vec(&serde_json::json!({ "error": e.to_string() })),
            };
            let Ok(mut line) = line else { return };
            line.push(b'\n');
            if !tx.send(line).await {
                return;
            }
        }
    });
    resp
}

/// The exec timeout a request asks for (default [`EXEC_TIMEOUT`], at most [`EXEC_TIMEOUT_MAX`]).
pub fn exec_timeout(asked: Option<&str>) -> Result<Duration, ApiError> {
    let Some(t) = asked else {
        return Ok(EXEC_TIMEOUT);
    };
    let d = crate::util::parse_duration(t).map_err(ApiError::bad_request)?;
    if d.is_zero() || d > EXEC_TIMEOUT_MAX {
        return Err(ApiError::bad_request(format!(
            "timeout must be above 0 and at most {} s, got {t:?}",
            EXEC_TIMEOUT_MAX.as_secs()
        )));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_logs_keep_the_last_bytes_at_a_character_boundary() {
        assert_eq!(last_bytes("abcdef", 3), "def");
        assert_eq!(last_bytes("abc", 10), "abc");
        // "é" is two bytes: cutting inside it moves to the next boundary.
        assert_eq!(last_bytes("aéb", 2), "b");
        assert_eq!(last_bytes("aéb", 3), "éb");
    }

    #[test]
    fn exec_timeouts_default_and_are_bounded() {
        assert_eq!(exec_timeout(None), Ok(EXEC_TIMEOUT));
        assert_eq!(exec_timeout(Some("5s")), Ok(Duration::from_secs(5)));
        assert!(exec_timeout(Some("0s")).is_err());
        assert!(exec_timeout(Some("1h")).is_err());
        assert!(exec_timeout(Some("soon")).is_err());
    }
}
