//! A Prometheus histogram with fixed buckets and atomic counters: observing is a few relaxed
//! atomic adds (no lock), rendering writes the `_bucket`, `_sum` and `_count` series.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket upper bounds in seconds, from 1 ms to 60 s: placement takes microseconds to
/// milliseconds, a dispatch round trip milliseconds, submit-to-running up to image pulls.
pub const SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// A histogram of durations over [`SECONDS`].
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; the last slot is `+Inf`).
    buckets: [AtomicU64; SECONDS.len() + 1],
    /// The sum of observations, in nanoseconds.
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = SECONDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(SECONDS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Appends the histogram `name` in the Prometheus text format.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
        let mut cumulative = 0;
        for (i, bound) in SECONDS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
        }
        cumulative += self.buckets[SECONDS.len()].load(Ordering::Relaxed);
        out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {cumulative}\n"));
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        out.push_str(&format!("{name}_sum {sum}\n{name}_count {cumulative}\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets_with_their_sum_and_count() {
        let h = Histogram::default();
        for ms in [0, 1, 3, 40, 40, 2_000, 120_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "A test.");
        let expected_lines = [
            "# TYPE x_seconds histogram",
            "x_seconds_bucket{le=\"0.0005\"} 1",
            "x_seconds_bucket{le=\"0.001\"} 2",
            "x_seconds_bucket{le=\"0.0025\"} 2",
            "x_seconds_bucket{le=\"0.005\"} 3",
            "x_seconds_bucket{le=\"0.025\"} 3",
            "x_seconds_bucket{le=\"0.05\"} 5",
            "x_seconds_bucket{le=\"2.5\"} 6",
            "x_seconds_bucket{le=\"60\"} 6",
            "x_seconds_bucket{le=\"+Inf\"} 7",
            "x_seconds_sum 122.084",
            "x_seconds_count 7",
        ];
        for line in expected_lines {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert_eq!(h.count(), 7);
    }
}
