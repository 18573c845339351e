//! `varpulis cluster status`: every member of the Raft group, found from the membership.
//!
//! 1. The `--coordinator` URLs are probed in parallel (`GET /raft/metrics` and `GET /ready`, each
//!    bounded by `--node-timeout`).
//! 2. The membership (voters, learners and their addresses) is read from the best view that
//!    answered: a leader's (highest term), else the most advanced node's.
//! 3. Members no given URL reached (a node added with `--join`, a learner) are probed at their
//!    membership address, in parallel too.
//!
//! Per member: id, address, voter or learner, Raft role, term, applied index, lag behind the
//! leader's log, version, data size, health (`ok`, `DOWN (reason)`, `not ready (reason)`,
//! `lagging`). Then a quorum line and the workers by state (the leader's figures).
//!
//! Exit code: 0 healthy; 1 degraded (a member down, not ready or lagging more than `--max-lag`
//! entries); 2 no quorum (fewer than a majority of voters answer, or they agree on no leader) or
//! nothing answered. A given URL that answers for no member (a typo, a port-forward to a removed
//! node) is reported but does not change the exit code.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;
use varpulis_api::cluster::WorkerList;
use varpulis_api::raft::RaftMetricsView;
use varpulis_api::ErrorBody;

use super::client::{transport_reason, trim_url, Client};
use super::report::{human_bytes, reference, report, Probe, Report};
use super::workers;
use crate::cmd::output::{self, outln};

/// Flags of `varpulis cluster status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A member whose applied index trails the leader's log by more than this many entries
    /// counts as lagging (exit code 1).
    #[arg(long, default_value_t = 100, value_name = "ENTRIES")]
    pub max_lag: u64,
    /// Seconds to wait for each coordinator's answer.
    #[arg(long, default_value_t = 3.0, value_name = "SECS")]
    pub node_timeout: f64,
}
async fn fetch(
    c: &Client,
    url: &str,
    path: &str,
    timeout: Duration,
) -> Result<(StatusCode, String), String> {
    match tokio::time::timeout(timeout, c.send_to(url, &Method::GET, path, None, None)).await {
        Err(_) => Err("timed out".to_owned()),
        Ok(Err(e)) => Err(transport_reason(&e)),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// Probes one URL: its Raft view and its readiness, concurrently.
async fn probe(c: &Client, url: String, timeout: Duration) -> Probe {
    let (metrics, ready) = tokio::join!(
        fetch(c, &url, "/raft/metrics", timeout),
        fetch(c, &url, "/ready", timeout)
    );
    let metrics = metrics.and_then(|(status, text)| {
        if !status.is_success() {
            return Err(format!("/raft/metrics: HTTP {status}"));
        }
        serde_json::from_str::<RaftMetricsView>(&text)
            .map_err(|e| format!("/raft/metrics: unexpected answer ({e})"))
    });
    let ready = ready.and_then(|(status, text)| {
        if status.is_success() {
            return Ok(());
        }
        let reason = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or_else(|_| format!("HTTP {status}"));
        Err(reason)
    });
    Probe {
        url,
        metrics,
        ready,
    }
}
/// Runs `status`; the exit code follows the report even when stdout is closed.
pub async fn run(c: &Client, args: &StatusArgs, json: bool) -> anyhow::Result<ExitCode> {
    let timeout = Duration::try_from_secs_f64(args.node_timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| anyhow::anyhow!("--node-timeout must be a positive number of seconds"))?;
    let mut probes: Vec<Probe> =
        join_all(c.urls.iter().map(|u| probe(c, u.clone(), timeout))).await;
    let refs: Vec<&Probe> = probes.iter().collect();
    if let Some(view) = reference(&refs) {
        let reached: BTreeSet<u64> = probes
            .iter()
            .filter_map(|p| p.metrics.as_ref().ok().map(|m| m.id))
            .collect();
        let tried: BTreeSet<String> = probes.iter().map(|p| p.url.clone()).collect();
        let more: Vec<String> = view
            .nodes
            .iter()
            .filter(|(id, _)| !reached.contains(*id))
            .map(|(_, addr)| trim_url(addr))
            .filter(|addr| !addr.is_empty() && !tried.contains(addr))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        probes.extend(join_all(more.into_iter().map(|u| probe(c, u, timeout))).await);
    }
    let report = report(&probes, args.max_lag);
    let workers = workers::fetch_leader_view(c, report.quorum.ok).await;
    let printed = print(&report, &workers, json);
    match printed {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(ExitCode::from(report.exit_code))
}

fn print(
    report: &Report,
    workers: &anyhow::Result<(WorkerList, Value, bool)>,
    json: bool,
) -> std::io::Result<()> {
    if json {
        let mut value = serde_json::to_value(report).map_err(std::io::Error::other)?;
        value["workers"] = match workers {
            Ok((_, raw, _)) => raw.clone(),
            Err(e) => json!({"error": format!("{e:#}")}),
        };
        return output::json(&value);
    }
    let rows: Vec<Vec<String>> = report
        .members
        .iter()
        .map(|m| {
            let health = match (m.health, &m.error) {
                ("ok", _) => "ok".to_owned(),
                ("down", Some(e)) => format!("DOWN ({e})"),
                ("not_ready", Some(e)) => format!("not ready ({e})"),
                (h, Some(e)) => format!("{h} ({e})"),
                (h, None) => h.to_owned(),
            };
            vec![
                output::opt(m.id),
                m.address.clone(),
                m.member.to_owned(),
                output::opt(m.role.clone()),
                output::opt(m.term),
                output::opt(m.applied),
                output::opt(m.lag),
                output::opt(m.version.clone()),
                output::opt(m.data_size_bytes.map(human_bytes)),
                health,
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "ADDRESS", "MEMBER", "ROLE", "TERM", "APPLIED", "LAG", "VERSION", "DATA",
            "HEALTH",
        ],
        &rows,
    )?;
    for u in &report.unidentified {
        outln!(
            "warning: {} answered nothing and is no member's address ({})",
            u["url"].as_str().unwrap_or("?"),
            u["error"].as_str().unwrap_or("?")
        )?;
    }
    let q = &report.quorum;
    let leader = match (report.leader_id, report.term) {
        (Some(l), Some(t)) => format!(", leader {l}, term {t}"),
        (Some(l), None) => format!(", leader {l}"),
        _ => String::new(),
    };
    let verdict = if q.ok { "ok" } else { "LOST" };
    outln!(
        "quorum: {verdict}: {} of {} voters up, {} name the leader ({} needed){leader}",
        q.voters_up,
        q.voters,
        q.voters_with_leader,
        q.needed
    )?;
    match workers {
        Ok((list, _, from_leader)) => {
            let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
            for w in &list.workers {
                *by_state.entry(w.status.as_str()).or_default() += 1;
            }
            let parts: Vec<String> = by_state.iter().map(|(s, n)| format!("{s}={n}")).collect();
            let note = if *from_leader {
                ""
            } else {
                " (no leader: registry only)"
            };
            outln!("workers: {} total ({}){note}", list.total, parts.join(", "))?;
        }
        Err(e) => outln!("workers: unavailable ({e:#})")?,
    }
    outln!("status: {} (exit {})", report.status, report.exit_code)
}
