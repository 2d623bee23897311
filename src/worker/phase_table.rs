//! The phase machine's table: every row a phase, an event, a restart policy and restart state,
//! and the next phase, actions and backoff exponent it must produce, written out by hand.

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
