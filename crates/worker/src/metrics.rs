//! Worker-wide metrics rendered as Prometheus text on `GET /metrics`.
//!
//! Per-pipeline counters live on each `Pipeline`; this module adds the inject latency
//! histogram and renders everything.

use crate::counters::Counters;
use crate::pipeline::Pipeline;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 1.0,
];

/// A fixed-bucket histogram with lock-free updates.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cum = 0u64;
        for (b, c) in BUCKETS.iter().zip(self.counts.iter()) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Worker-wide metrics.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Latency of `POST .../events` and `.../events-batch` handlers.
    pub inject_latency: Histogram,
    /// Requests rejected with an error status.
    pub request_errors: AtomicU64,
    /// Checkpoints written to `--state-dir`.
    pub local_checkpoints: AtomicU64,
    /// Checkpoints that could not be written to `--state-dir`.
    pub local_checkpoint_errors: AtomicU64,
}

/// Picks one counter of a pipeline.
type Counter = fn(&Counters) -> &AtomicU64;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl WorkerMetrics {
    /// Prometheus text exposition.
    pub fn render(&self, pipelines: &[Arc<Pipeline>]) -> String {
        let mut out = String::new();
        let statuses: Vec<&str> = pipelines.iter().map(|p| p.status().0).collect();
        let running = statuses
            .iter()
            .filter(|s| !matches!(**s, "stopped" | "failed" | "fenced"))
            .count();
        let failed = statuses.iter().filter(|s| **s == "failed").count();
        let fenced = statuses.iter().filter(|s| **s == "fenced").count();
        for (name, value) in [
            ("varpulis_worker_pipelines_running", running),
            ("varpulis_worker_pipelines_failed", failed),
            ("varpulis_worker_pipelines_fenced", fenced),
        ] {
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let series: [(&str, Counter); 14] = [
            ("varpulis_worker_events_in_total", |c| &c.events_in),
            ("varpulis_worker_events_out_total", |c| &c.events_out),
            ("varpulis_worker_pipeline_errors_total", |c| &c.errors),
            ("varpulis_worker_payloads_dropped_total", |c| &c.dropped),
            ("varpulis_worker_budget_exceeded_total", |c| {
                &c.budget_exceeded
            }),
            ("varpulis_worker_events_refused_total", |c| &c.refused),
            ("varpulis_worker_outputs_omitted_total", |c| {
                &c.outputs_omitted
            }),
            ("varpulis_worker_route_events_published_total", |c| {
                &c.route_published
            }),
            ("varpulis_worker_route_events_received_total", |c| {
                &c.route_received
            }),
            ("varpulis_worker_route_events_dropped_total", |c| {
                &c.route_dropped
            }),
            // The engine's own counters (VPL Tier 3).
            ("varpulis_worker_late_events_total", |c| &c.late_events),
            ("varpulis_worker_timer_ticks_total", |c| &c.timer_ticks),
            ("varpulis_worker_pattern_runs_dropped_total", |c| {
                &c.pattern_runs_dropped
            }),
            ("varpulis_worker_fenced_dropped_total", |c| {
                &c.fenced_dropped
            }),
        ];
        for (name, counter) in series {
            let _ = writeln!(out, "# TYPE {name} counter");
            for p in pipelines {
                let _ = writeln!(
                    out,
                    "{name}{{pipeline=\"{}\",name=\"{}\"}} {}",
                    escape(&p.id),
                    escape(&p.name),
                    Counters::get(counter(&p.counters))
                );
            }
        }
        render_connectors(pipelines, &mut out);
        let _ = writeln!(out, "# TYPE varpulis_worker_request_errors_total counter");
        let _ = writeln!(
            out,
            "varpulis_worker_request_errors_total {}",
            self.request_errors.load(Ordering::Relaxed)
        );
        for (name, v) in [
            ("local_checkpoints", &self.local_checkpoints),
            ("local_checkpoint_errors", &self.local_checkpoint_errors),
        ] {
            let _ = writeln!(out, "# TYPE varpulis_worker_{name}_total counter");
            let _ = writeln!(
                out,
                "varpulis_worker_{name}_total {}",
                v.load(Ordering::Relaxed)
            );
        }
        self.inject_latency
            .render("varpulis_worker_inject_latency_seconds", &mut out);
        out
    }
}

/// Per-connector series (docs/connectors.md), labelled `pipeline`, `connector` and `kind`, plus
/// `role="source"` for a source connection. Output connectors give every series but
/// `events_received`; sources give `events_received` and `up`.
fn render_connectors(pipelines: &[Arc<Pipeline>], out: &mut String) {
    type Pick = fn(&varpulis_api::worker::ConnectorStatus) -> Option<u64>;
    let all: Vec<(&Arc<Pipeline>, Vec<varpulis_api::worker::ConnectorStatus>)> = pipelines
        .iter()
        .map(|p| (p, p.connectors()))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if all.is_empty() {
        return;
    }
    fn output(c: &varpulis_api::worker::ConnectorStatus, v: u64) -> Option<u64> {
        c.role.is_none().then_some(v)
    }
    let series: [(&str, &str, Pick); 7] = [
        (
            "varpulis_worker_connector_events_sent_total",
            "counter",
            |c| output(c, c.events_sent),
        ),
        (
            "varpulis_worker_connector_events_given_up_total",
            "counter",
            |c| output(c, c.events_given_up),
        ),
        ("varpulis_worker_connector_requests_total", "counter", |c| {
            output(c, c.requests)
        }),
        ("varpulis_worker_connector_retries_total", "counter", |c| {
            output(c, c.retries)
        }),
        ("varpulis_worker_connector_queued", "gauge", |c| {
            output(c, c.queued)
        }),
        (
            "varpulis_worker_connector_events_received_total",
            "counter",
            |c| c.events_received,
        ),
        ("varpulis_worker_connector_up", "gauge", |c| {
            Some(u64::from(c.health == "ok"))
        }),
    ];
    for (name, ty, pick) in series {
        let mut header = false;
        for (p, conns) in &all {
            for c in conns {
                let Some(v) = pick(c) else { continue };
                if !header {
                    let _ = writeln!(out, "# TYPE {name} {ty}");
                    header = true;
                }
                let role = match &c.role {
                    Some(r) => format!(",role=\"{}\"", escape(r)),
                    None => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{name}{{pipeline=\"{}\",connector=\"{}\",kind=\"{}\"{role}}} {v}",
                    escape(&p.id),
                    escape(&c.name),
                    escape(&c.kind),
                );
            }
        }
    }
}
