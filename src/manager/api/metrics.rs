//! `GET /metrics`: the manager's counters and gauges in the Prometheus text format.

use std::sync::atomic::Ordering;

use crate::http::{text, Resp};
use crate::manager::Manager;

/// Appends one line to a `String` (which cannot fail, unlike `writeln!` on a writer).
macro_rules! emit {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

/// The Prometheus answer.
pub(super) fn render(m: &Manager) -> Resp {
    text(200, metrics(m), "text/plain; version=0.0.4")
}

/// Renders the Prometheus text exposition.
pub(super) fn metrics(m: &Manager) -> String {
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
        emit!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    emit!(
        out,
        "# HELP poseidon_tasks Tasks by state.\n# TYPE poseidon_tasks gauge"
    );
    for (state, n) in m.task_counts() {
        emit!(out, "poseidon_tasks{{state=\"{state}\"}} {n}");
    }
    emit!(
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
        emit!(out, "poseidon_nodes{{state=\"{state}\"}} {n}");
    }
    emit!(out, "# HELP poseidon_event_subscribers Open GET /events streams.\n# TYPE poseidon_event_subscribers gauge\nposeidon_event_subscribers {}", m.event_subscribers());
    c.submit_to_running.render(
        &mut out,
        "poseidon_submit_to_running_seconds",
        "From submission to the first report of the task running.",
    );
    c.placement.render(
        &mut out,
        "poseidon_placement_seconds",
        "The scheduler's pick of a node for one task.",
    );
    c.dispatch.render(
        &mut out,
        "poseidon_dispatch_seconds",
        "The round trip of one batch of assignments to a worker.",
    );
    let s = m.store_stats();
    emit!(out, "# HELP poseidon_store_writes_total Durable writes acknowledged.\n# TYPE poseidon_store_writes_total counter\nposeidon_store_writes_total {}", s.writes);
    emit!(out, "# HELP poseidon_store_syncs_total Synced batches (fsyncs).\n# TYPE poseidon_store_syncs_total counter\nposeidon_store_syncs_total {}", s.syncs);
    out
}
