//! Process-local counters rendered as Prometheus text by `GET /metrics`.
//!
//! Only counters that the coordinator itself produces live here (proxied requests, leader changes,
//! commit latency of writes); Raft and cluster figures are read from their sources at scrape time.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the write commit latency histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Counters of one coordinator process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests this follower forwarded to the leader.
    pub proxied_requests: AtomicU64,
    /// Forwarding attempts that failed (leader unreachable).
    pub proxy_failures: AtomicU64,
    /// Batches of forwarded requests sent to the leader (`POST /raft/forward-batch`).
    pub forward_batches: AtomicU64,
    /// Forwards refused with 503 because too many were under way (the forwarder's bound).
    pub forwards_shed: AtomicU64,
    /// Times the known leader changed (as seen by this node).
    pub leader_changes: AtomicU64,
    /// Heartbeats handled by this node as leader.
    pub heartbeats: AtomicU64,
    /// Events injected through this node.
    pub injected_events: AtomicU64,
    /// Deploy calls to workers that failed.
    pub deploy_failures: AtomicU64,
    /// Duration of the leader's last health sweep, in microseconds.
    pub sweep_last_micros: AtomicU64,
    /// Longest health sweep seen, in microseconds.
    pub sweep_max_micros: AtomicU64,
    /// Health sweeps run as leader.
    pub sweeps: AtomicU64,
    /// Time the last sweep spent finding the expired workers (before proposing), microseconds.
    pub sweep_scan_last_micros: AtomicU64,
    /// Longest such search, in microseconds.
    pub sweep_scan_max_micros: AtomicU64,
    write_buckets: [AtomicU64; BUCKETS.len()],
    write_count: AtomicU64,
    write_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records the commit latency of one Raft write.
    pub fn observe_write(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.write_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.write_count.fetch_add(1, Ordering::Relaxed);
        self.write_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records the duration of one health sweep (leader only).
    pub fn observe_sweep(&self, elapsed: Duration) {
        let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.sweep_last_micros.store(micros, Ordering::Relaxed);
        self.sweep_max_micros.fetch_max(micros, Ordering::Relaxed);
        self.sweeps.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long one sweep took to find its expired workers (the part that grows with
    /// the number of workers; the rest is the Raft write of the marks).
    pub fn observe_sweep_scan(&self, elapsed: Duration) {
        let micros = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.sweep_scan_last_micros.store(micros, Ordering::Relaxed);
        self.sweep_scan_max_micros
            .fetch_max(micros, Ordering::Relaxed);
    }

    /// Adds 1 to a counter.
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends this struct's counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let counters = [
            (
                "varpulis_coordinator_proxied_requests_total",
                "Requests forwarded to the leader",
                &self.proxied_requests,
            ),
            (
                "varpulis_coordinator_proxy_failures_total",
                "Forwards that failed (leader unreachable)",
                &self.proxy_failures,
            ),
            (
                "varpulis_coordinator_forward_batches_total",
                "Batches of forwarded requests sent to the leader",
                &self.forward_batches,
            ),
            (
                "varpulis_coordinator_forwards_shed_total",
                "Forwards refused with 503 because too many were under way",
                &self.forwards_shed,
            ),
            (
                "varpulis_coordinator_leader_changes_total",
                "Leader changes seen by this node",
                &self.leader_changes,
            ),
            (
                "varpulis_coordinator_heartbeats_total",
                "Worker heartbeats handled as leader",
                &self.heartbeats,
            ),
            (
                "varpulis_coordinator_injected_events_total",
                "Events injected through this node",
                &self.injected_events,
            ),
            (
                "varpulis_coordinator_deploy_failures_total",
                "Failed deploy calls to workers",
                &self.deploy_failures,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let sweeps = "varpulis_coordinator_sweeps_total";
        let _ = writeln!(
            out,
            "# HELP {sweeps} Health sweeps run as leader\n# TYPE {sweeps} counter\n{sweeps} {}",
            self.sweeps.load(Ordering::Relaxed)
        );
        for (name, help, value) in [
            (
                "varpulis_coordinator_sweep_last_seconds",
                "Duration of the last health sweep",
                &self.sweep_last_micros,
            ),
            (
                "varpulis_coordinator_sweep_max_seconds",
                "Longest health sweep",
                &self.sweep_max_micros,
            ),
            (
                "varpulis_coordinator_sweep_scan_last_seconds",
                "Time the last health sweep spent finding expired workers (before proposing)",
                &self.sweep_scan_last_micros,
            ),
            (
                "varpulis_coordinator_sweep_scan_max_seconds",
                "Longest search for expired workers of a health sweep",
                &self.sweep_scan_max_micros,
            ),
        ] {
            let secs = value.load(Ordering::Relaxed) as f64 / 1e6;
            gauge(out, name, help, secs);
        }
        let name = "varpulis_coordinator_write_commit_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency of Raft writes proposed by this node\n# TYPE {name} histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.write_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.write_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.write_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Appends one gauge in Prometheus text format.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_write(Duration::from_millis(3));
        m.observe_write(Duration::from_millis(300));
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("varpulis_coordinator_write_commit_seconds_bucket{le=\"0.005\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("varpulis_coordinator_write_commit_seconds_bucket{le=\"0.5\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("varpulis_coordinator_write_commit_seconds_count 2"),
            "{out}"
        );
    }
}
