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
mod tests {
    use super::*;
    use crate::task::RestartKind;

    const S: u64 = 1000;

    /// A policy with a 1 s first delay, a 8 s cap and a 60 s reset, so that rows stay readable.
    fn policy(kind: RestartKind, max: Option<u32>) -> RestartPolicy {
        RestartPolicy {
            policy: kind,
            max_restarts: max,
            backoff_ms: S,
            max_backoff_ms: 8 * S,
            reset_after_ms: 60 * S,
        }
    }

    fn c(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    fn end(failed: bool, code: Option<i64>, reason: &str) -> Action {
        Action::RecordEnd {
            failed,
            exit_code: code,
            reason: reason.to_string(),
        }
    }

    fn restart(delay_s: u64, n: u32) -> Action {
        Action::AnnounceRestart {
            delay: Duration::from_secs(delay_s),
            restart: n,
        }
    }

    /// One row: phase, event, policy kind, max restarts, restart count, exponent, seconds the
    /// run lasted -> next phase (Backoff written as seconds from now), actions, exponent after.
    struct Row {
        phase: Phase,
        event: Event,
        kind: RestartKind,
        max: Option<u32>,
        count: u32,
        exponent: u32,
        ran_s: u64,
        want: Want,
        actions: Vec<Action>,
        exponent_after: u32,
    }

    /// The expected phase, with Backoff's deadline as seconds after now.
    #[derive(Debug, PartialEq)]
    enum Want {
        Phase(Phase),
        BackoffFor(u64),
    }

    #[test]
    fn the_phase_machine_follows_its_table() {
        use Event as E;
        use RestartKind::{Always, Never, OnFailure};
        let watch = || Phase::Watch {
            container: "c1".into(),
        };
        let w = Want::Phase;
        let rows: Vec<Row> = vec![
            // 1-6: exit 0 and non-zero under never, on-failure, always.
            Row {
                phase: watch(),
                event: E::Exited(0),
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 5,
                want: w(Phase::Done),
                actions: vec![end(false, Some(0), "exited with code 0")],
                exponent_after: 0,
            },
            Row {
                phase: watch(),
                event: E::Exited(3),
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 5,
                want: w(Phase::Done),
                actions: vec![end(true, Some(3), "exited with code 3")],
                exponent_after: 0,
            },
            Row {
                phase: watch(),
                event: E::Exited(0),
                kind: OnFailure,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 5,
                want: w(Phase::Done),
                actions: vec![end(false, Some(0), "exited with code 0")],
                exponent_after: 0,
            },
            Row {
                phase: watch(),
                event: E::Exited(3),
                kind: OnFailure,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 5,
                want: Want::BackoffFor(1),
                actions: vec![end(true, Some(3), "exited with code 3"), restart(1, 1)],
                exponent_after: 1,
            },
            Row {
                phase: watch(),
                event: E::Exited(0),
                kind: Always,
                max: None,
                count: 2,
                exponent: 2,
                ran_s: 5,
                want: Want::BackoffFor(4),
                actions: vec![end(false, Some(0), "exited with code 0"), restart(4, 3)],
                exponent_after: 3,
            },
            Row {
                phase: watch(),
                event: E::Exited(3),
                kind: Always,
                max: None,
                count: 1,
                exponent: 1,
                ran_s: 5,
                want: Want::BackoffFor(2),
                actions: vec![end(true, Some(3), "exited with code 3"), restart(2, 2)],
                exponent_after: 2,
            },
            // 7: on-failure stops at its maximum.
            Row {
                phase: watch(),
                event: E::Exited(3),
                kind: OnFailure,
                max: Some(2),
                count: 2,
                exponent: 2,
                ran_s: 5,
                want: w(Phase::Done),
                actions: vec![end(true, Some(3), "exited with code 3")],
                exponent_after: 2,
            },
            // 8: a failed health check is a failure.
            Row {
                phase: watch(),
                event: E::Unhealthy("3 checks failed".into()),
                kind: OnFailure,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 5,
                want: Want::BackoffFor(1),
                actions: vec![end(true, None, "unhealthy: 3 checks failed"), restart(1, 1)],
                exponent_after: 1,
            },
            Row {
                phase: watch(),
                event: E::Unhealthy("timeout".into()),
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 5,
                want: w(Phase::Done),
                actions: vec![end(true, None, "unhealthy: timeout")],
                exponent_after: 0,
            },
            // 10-11: backoff grows, and is capped at 8 s.
            Row {
                phase: watch(),
                event: E::Exited(1),
                kind: Always,
                max: None,
                count: 3,
                exponent: 3,
                ran_s: 5,
                want: Want::BackoffFor(8),
                actions: vec![end(true, Some(1), "exited with code 1"), restart(8, 4)],
                exponent_after: 4,
            },
            Row {
                phase: watch(),
                event: E::Exited(1),
                kind: Always,
                max: None,
                count: 9,
                exponent: 9,
                ran_s: 5,
                want: Want::BackoffFor(8),
                actions: vec![end(true, Some(1), "exited with code 1"), restart(8, 10)],
                exponent_after: 10,
            },
            // 12: a run of the reset time starts the backoff over; the visible count goes on.
            Row {
                phase: watch(),
                event: E::Exited(1),
                kind: Always,
                max: None,
                count: 9,
                exponent: 9,
                ran_s: 60,
                want: Want::BackoffFor(1),
                actions: vec![end(true, Some(1), "exited with code 1"), restart(1, 10)],
                exponent_after: 1,
            },
            // 13: and the crash right after a reset waits 2 s, not 2^10 s capped.
            Row {
                phase: watch(),
                event: E::Exited(1),
                kind: Always,
                max: None,
                count: 10,
                exponent: 1,
                ran_s: 1,
                want: Want::BackoffFor(2),
                actions: vec![end(true, Some(1), "exited with code 1"), restart(2, 11)],
                exponent_after: 2,
            },
            // 14: the backoff ends with a fresh start.
            Row {
                phase: Phase::Backoff {
                    until: Instant::now(),
                },
                event: E::BackoffElapsed,
                kind: Always,
                max: None,
                count: 1,
                exponent: 1,
                ran_s: 0,
                want: w(Phase::Start { container: None }),
                actions: vec![Action::BeginRestart],
                exponent_after: 1,
            },
            // 15-20: a stop request in every phase goes to Stopping with the phase's container.
            Row {
                phase: watch(),
                event: E::StopRequested,
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Stopping { container: c("c1") }),
                actions: vec![],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Start { container: None },
                event: E::StopRequested,
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Stopping { container: None }),
                actions: vec![],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Start { container: c("c0") },
                event: E::StopRequested,
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Stopping { container: c("c0") }),
                actions: vec![],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Backoff {
                    until: Instant::now(),
                },
                event: E::StopRequested,
                kind: Always,
                max: None,
                count: 2,
                exponent: 2,
                ran_s: 0,
                want: w(Phase::Stopping { container: None }),
                actions: vec![],
                exponent_after: 2,
            },
            Row {
                phase: Phase::Adopt {
                    container: c("c9"),
                    was_running: true,
                },
                event: E::StopRequested,
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Stopping { container: c("c9") }),
                actions: vec![],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Stopping { container: c("c1") },
                event: E::Exited(143),
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Stopping { container: c("c1") }),
                actions: vec![],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Stopping { container: c("c1") },
                event: E::Stopped,
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Done),
                actions: vec![],
                exponent_after: 0,
            },
            // 22-27: adoption of a running, exited, created or missing container.
            Row {
                phase: Phase::Adopt {
                    container: c("c9"),
                    was_running: true,
                },
                event: E::FoundRunning,
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Watch {
                    container: "c9".into(),
                }),
                actions: vec![Action::MarkRunning {
                    container: "c9".into(),
                    adopted: true,
                }],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Adopt {
                    container: c("c9"),
                    was_running: true,
                },
                event: E::FoundExited(7),
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Done),
                actions: vec![end(true, Some(7), "exited with code 7")],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Adopt {
                    container: c("c9"),
                    was_running: true,
                },
                event: E::FoundExited(7),
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: Want::BackoffFor(1),
                actions: vec![end(true, Some(7), "exited with code 7"), restart(1, 1)],
                exponent_after: 1,
            },
            Row {
                phase: Phase::Adopt {
                    container: c("c9"),
                    was_running: false,
                },
                event: E::FoundCreated,
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Start { container: c("c9") }),
                actions: vec![],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Adopt {
                    container: None,
                    was_running: true,
                },
                event: E::FoundNothing,
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Done),
                actions: vec![end(true, None, "its container disappeared from the engine")],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Adopt {
                    container: None,
                    was_running: false,
                },
                event: E::FoundNothing,
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Start { container: None }),
                actions: vec![],
                exponent_after: 0,
            },
            // 28-31: starting.
            Row {
                phase: Phase::Start { container: None },
                event: E::Started("c2".into()),
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Watch {
                    container: "c2".into(),
                }),
                actions: vec![Action::MarkRunning {
                    container: "c2".into(),
                    adopted: false,
                }],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Start { container: None },
                event: E::StartFailed("No such image: ghost:1".into()),
                kind: OnFailure,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: Want::BackoffFor(1),
                actions: vec![end(true, None, "No such image: ghost:1"), restart(1, 1)],
                exponent_after: 1,
            },
            Row {
                phase: Phase::Start { container: None },
                event: E::EngineDown("refused".into()),
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Start { container: None }),
                actions: vec![
                    Action::Note("waiting for the engine: refused".into()),
                    Action::Pause(Duration::from_secs(1)),
                ],
                exponent_after: 0,
            },
            Row {
                phase: watch(),
                event: E::Vanished,
                kind: Never,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 3,
                want: w(Phase::Done),
                actions: vec![end(true, None, "its container disappeared from the engine")],
                exponent_after: 0,
            },
            // 32-33: a forgotten task ends its supervisor from any phase; Done stays done.
            Row {
                phase: watch(),
                event: E::Forgotten,
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Done),
                actions: vec![],
                exponent_after: 0,
            },
            Row {
                phase: Phase::Done,
                event: E::StopRequested,
                kind: Always,
                max: None,
                count: 0,
                exponent: 0,
                ran_s: 0,
                want: w(Phase::Done),
                actions: vec![],
                exponent_after: 0,
            },
        ];
        let now = Instant::now();
        for (i, row) in rows.into_iter().enumerate() {
            let p = policy(row.kind, row.max);
            let cx = Ctx {
                policy: &p,
                restart_count: row.count,
                exponent: row.exponent,
                ran: Duration::from_secs(row.ran_s),
                now,
            };
            let desc = format!("row {}: {:?} + {:?}", i + 1, row.phase, row.event);
            let step = next(&row.phase, row.event, cx);
            let got = match step.phase {
                Phase::Backoff { until } => Want::BackoffFor((until - now).as_secs()),
                other => Want::Phase(other),
            };
            assert_eq!(got, row.want, "{desc}");
            assert_eq!(step.actions, row.actions, "{desc}");
            assert_eq!(step.exponent, row.exponent_after, "{desc}");
        }
    }
}
