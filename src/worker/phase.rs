//! The supervisor's phase machine: where a task's supervisor is, and the pure step function that
//! decides the next phase and the effects to carry out from one observation.
//!
//! The driver in [`super::supervisor`] does the waiting and the engine calls; everything it decides
//! is decided here, by [`next`], so that the restart policy, the backoff and its reset, stop
//! requests in every phase and adoption after a restart are tested as a table (see the tests below)
//! without an engine, a store or a clock.

use std::time::Duration;

use tokio::time::Instant;

use crate::task::RestartPolicy;

/// How long to wait before trying again when the engine does not answer.
pub(crate) const ENGINE_RETRY: Duration = Duration::from_secs(1);

/// Where a task's supervisor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The task came from the store after the worker restarted: take over `container` (found by
    /// its labels) or, when none was found, tell a task whose container vanished (`was_running`)
    /// from one that never started.
    Adopt {
        /// The container found for this task and generation, if any.
        container: Option<String>,
        /// Whether the task was Running before the worker restarted.
        was_running: bool,
    },
    /// Pull the image, create and start a container, or start `container` (created, never started).
    Start {
        /// A container created before the worker restarted and never started.
        container: Option<String>,
    },
    /// The container runs: wait for it to end, for a stop request or for the health check to give up.
    Watch {
        /// The running container.
        container: String,
    },
    /// The container ended and the policy restarts it at `until`.
    Backoff {
        /// When the next start is due.
        until: Instant,
    },
    /// Stop the container (if any) within the grace period, remove it, record the task as stopped.
    Stopping {
        /// The container to stop; the driver falls back to the one the task records.
        container: Option<String>,
    },
    /// Nothing more to do: the task is finished, or forgotten.
    Done,
}

impl Phase {
    /// The container this phase knows about, if any.
    fn container(&self) -> Option<String> {
        match self {
            Phase::Adopt { container, .. }
            | Phase::Start { container }
            | Phase::Stopping { container } => container.clone(),
            Phase::Watch { container } => Some(container.clone()),
            Phase::Backoff { .. } | Phase::Done => None,
        }
    }
}

/// What the driver observed in the current phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Adopt: the container found runs.
    FoundRunning,
    /// Adopt: the container found has exited, with this code.
    FoundExited(i64),
    /// Adopt: the container found was created and never started.
    FoundCreated,
    /// Adopt: there is no container for this task.
    FoundNothing,
    /// Start: this container now runs.
    Started(String),
    /// Start: the start failed for reasons of this task (bad image, bad spec); the task fails.
    StartFailed(String),
    /// The engine did not answer: try again later without failing the task.
    EngineDown(String),
    /// Watch: the container exited with this code.
    Exited(i64),
    /// Watch: the health check gave up (the driver has killed the container).
    Unhealthy(String),
    /// The container disappeared from the engine.
    Vanished,
    /// Backoff: the delay has passed.
    BackoffElapsed,
    /// The task's desired state became stop.
    StopRequested,
    /// Stopping: the container is stopped and removed, the task recorded as stopped.
    Stopped,
    /// The task was forgotten (purged, or replaced by a newer generation).
    Forgotten,
}

/// What [`next`] needs besides the phase and the event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The task's restart policy.
    pub policy: &'a RestartPolicy,
    /// Restarts done so far: the visible counter, which `on-failure`'s `max_restarts` limits.
    pub restart_count: u32,
    /// The backoff exponent: restarts since the task last ran for `policy.reset_after_ms`. It is
    /// tracked apart from `restart_count` so that a reset shortens every later delay, not just one.
    pub exponent: u32,
    /// How long the container that just ended ran.
    pub ran: Duration,
    /// Now, on tokio's clock.
    pub now: Instant,
}

/// An effect for the driver to carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Record that `container` runs (with its ports), adopted after a restart or started now.
    MarkRunning {
        /// The container.
        container: String,
        /// Whether it was adopted rather than started.
        adopted: bool,
    },
    /// Record how the run ended: Completed or Failed, its exit code and why.
    RecordEnd {
        /// Whether it ended in failure.
        failed: bool,
        /// The exit code, when it exited.
        exit_code: Option<i64>,
        /// Why, for the task's history.
        reason: String,
    },
    /// Announce restart number `restart` after `delay` (the task's reason and an info log).
    AnnounceRestart {
        /// The backoff delay.
        delay: Duration,
        /// The restart number this will be.
        restart: u32,
    },
    /// Remove the old container, count the restart and go back to Scheduled.
    BeginRestart,
    /// Note a problem in the task's history without changing its state.
    Note(String),
    /// Wait this long before observing again (a poke cuts it short).
    Pause(Duration),
}

/// One step's outcome: the next phase, the effects, and the backoff exponent from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The next phase.
    pub phase: Phase,
    /// What to do, in order.
    pub actions: Vec<Action>,
    /// The backoff exponent after this step.
    pub exponent: u32,
}

/// The supervisor's step function: from a phase and what was observed in it, the next phase and
/// what to do. Pure: it reads nothing but its arguments.
pub(crate) fn next(phase: &Phase, event: Event, cx: Ctx<'_>) -> Step {
    let stay = |phase: Phase, actions: Vec<Action>| Step {
        phase,
        actions,
        exponent: cx.exponent,
    };
    match (phase, event) {
        (Phase::Done, _) | (_, Event::Forgotten) => stay(Phase::Done, vec![]),
        (Phase::Stopping { .. }, Event::Stopped) => stay(Phase::Done, vec![]),
        // Already stopping: nothing observed changes that.
        (Phase::Stopping { container }, _) => stay(
            Phase::Stopping {
                container: container.clone(),
            },
            vec![],
        ),
        (p, Event::StopRequested) => stay(
            Phase::Stopping {
                container: p.container(),
            },
            vec![],
        ),
        (p @ (Phase::Adopt { .. } | Phase::Start { .. }), Event::EngineDown(msg)) => stay(
            p.clone(),
            vec![
                Action::Note(format!("waiting for the engine: {msg}")),
                Action::Pause(ENGINE_RETRY),
            ],
        ),
        (
            Phase::Adopt {
                container: Some(c), ..
            },
            Event::FoundRunning,
        ) => stay(
            Phase::Watch {
                container: c.clone(),
            },
            vec![Action::MarkRunning {
                container: c.clone(),
                adopted: true,
            }],
        ),
        (Phase::Adopt { .. }, Event::FoundExited(code)) => ended(
            code != 0,
            Some(code),
            format!("exited with code {code}"),
            cx,
        ),
        (
            Phase::Adopt {
                container: Some(c), ..
            },
            Event::FoundCreated,
        ) => stay(
            Phase::Start {
                container: Some(c.clone()),
            },
            vec![],
        ),
        (
            Phase::Adopt {
                was_running: true, ..
            },
            Event::FoundNothing,
        )
        | (Phase::Watch { .. }, Event::Vanished) => ended(
            true,
            None,
            "its container disappeared from the engine".into(),
            cx,
        ),
        (Phase::Adopt { .. }, Event::FoundNothing) => {
            stay(Phase::Start { container: None }, vec![])
        }
        (Phase::Start { .. }, Event::Started(c)) => stay(
            Phase::Watch {
                container: c.clone(),
            },
            vec![Action::MarkRunning {
                container: c,
                adopted: false,
            }],
        ),
        (Phase::Start { .. }, Event::StartFailed(msg)) => ended(true, None, msg, cx),
        (Phase::Watch { .. }, Event::Exited(code)) => ended(
            code != 0,
            Some(code),
            format!("exited with code {code}"),
            cx,
        ),
        (Phase::Watch { .. }, Event::Unhealthy(why)) => {
            ended(true, None, format!("unhealthy: {why}"), cx)
        }
        (Phase::Backoff { .. }, Event::BackoffElapsed) => {
            stay(Phase::Start { container: None }, vec![Action::BeginRestart])
        }
        // Anything else cannot come from the driver; keep the phase, so nothing is lost.
        (p, _) => stay(p.clone(), vec![]),
    }
}

/// The run ended: record it, then restart after the backoff or finish, by policy.
fn ended(failed: bool, exit_code: Option<i64>, reason: String, cx: Ctx<'_>) -> Step {
    let record = Action::RecordEnd {
        failed,
        exit_code,
        reason,
    };
    if !cx.policy.should_restart(failed, cx.restart_count) {
        return Step {
            phase: Phase::Done,
            actions: vec![record],
            exponent: cx.exponent,
        };
    }
    // CrashLoopBackOff's reset: a run long enough starts the backoff over, for good.
    let exponent = if cx.ran >= Duration::from_millis(cx.policy.reset_after_ms) {
        0
    } else {
        cx.exponent
    };
    let delay = cx.policy.backoff(exponent);
    Step {
        phase: Phase::Backoff {
            until: cx.now + delay,
        },
        actions: vec![
            record,
            Action::AnnounceRestart {
                delay,
                restart: cx.restart_count.saturating_add(1),
            },
        ],
        exponent: exponent.saturating_add(1),
    }
}

#[cfg(test)]
#[path = "phase_table.rs"]
mod tests;
