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
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;
use varpulis_api::cluster::WorkerList;
use varpulis_api::raft::RaftMetricsView;
use varpulis_api::ErrorBody;

use super::client::{transport_reason, trim_url, Client};
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

/// What one URL answered.
#[derive(Debug, Clone)]
struct Probe {
    url: String,
    /// `GET /raft/metrics`: the view, or why there is none.
    metrics: Result<RaftMetricsView, String>,
    /// `GET /ready`: ready, or the reason it is not (or could not be asked).
    ready: Result<(), String>,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    /// Node id (`None` for a URL that answered nothing).
    pub id: Option<u64>,
    /// Address in the membership (or the URL given, for a non-member).
    pub address: String,
    /// URL that answered (or was tried).
    pub url: String,
    /// `voter`, `learner` or `none` (not in the membership).
    pub member: &'static str,
    /// Raft role the node reports (`Leader`, `Follower`, `Candidate`, `Learner`).
    pub role: Option<String>,
    /// Its current term.
    pub term: Option<u64>,
    /// The leader it knows.
    pub leader_id: Option<u64>,
    /// Its last applied index.
    pub applied: Option<u64>,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// Entries it trails the leader's log by.
    pub lag: Option<u64>,
    /// Its version.
    pub version: Option<String>,
    /// Bytes of Raft storage on its disk.
    pub data_size_bytes: Option<u64>,
    /// `GET /ready` answered 200.
    pub ready: bool,
    /// `ok`, `down`, `not_ready`, `lagging`.
    pub health: &'static str,
    /// Why it is not `ok`.
    pub error: Option<String>,
}

/// The quorum line.
#[derive(Debug, Clone, Serialize)]
pub struct Quorum {
    /// A majority of voters answers and agrees on a leader.
    pub ok: bool,
    /// Voters in the membership.
    pub voters: usize,
    /// Voters that answered.
    pub voters_up: usize,
    /// Voters that answered and name the leader.
    pub voters_with_leader: usize,
    /// Majority size.
    pub needed: usize,
}

/// The whole report (printed as is with `--json`, plus `workers`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `healthy`, `degraded`, `no_quorum` or `unreachable`.
    pub status: &'static str,
    /// The process exit code.
    pub exit_code: u8,
    /// Leader id, if a majority names one.
    pub leader_id: Option<u64>,
    /// The leader's term.
    pub term: Option<u64>,
    /// Quorum figures.
    pub quorum: Quorum,
    /// Every member, by id, then non-members that answered.
    pub members: Vec<MemberReport>,
    /// Given URLs that answered nothing and match no member address.
    pub unidentified: Vec<Value>,
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

/// The view the membership is read from: the leader with the highest term, else the node with
/// the highest (term, applied index).
fn reference(probes: &[&Probe]) -> Option<RaftMetricsView> {
    let views = probes.iter().filter_map(|p| p.metrics.as_ref().ok());
    let leaders = views
        .clone()
        .filter(|m| m.state == "Leader")
        .max_by_key(|m| m.current_term);
    leaders
        .or_else(|| views.max_by_key(|m| (m.current_term, m.last_applied)))
        .cloned()
}

/// Builds the report from every probe (given URLs first, then membership addresses).
fn report(probes: &[Probe], max_lag: u64) -> Report {
    let refs: Vec<&Probe> = probes.iter().collect();
    let reference = reference(&refs);
    let (voters, learners, addresses) = match &reference {
        Some(r) => (
            r.membership.iter().copied().collect::<BTreeSet<u64>>(),
            r.learners.iter().copied().collect::<BTreeSet<u64>>(),
            r.nodes.clone(),
        ),
        None => Default::default(),
    };
    // The first probe that answered for each node id.
    let mut by_id: BTreeMap<u64, &Probe> = BTreeMap::new();
    for p in probes {
        if let Ok(m) = &p.metrics {
            by_id.entry(m.id).or_insert(p);
        }
    }
    // A majority of answering voters must name the same leader.
    let mut named: BTreeMap<u64, usize> = BTreeMap::new();
    for id in &voters {
        if let Some(leader) = by_id
            .get(id)
            .and_then(|p| p.metrics.as_ref().ok())
            .and_then(|m| m.current_leader)
        {
            *named.entry(leader).or_default() += 1;
        }
    }
    let needed = voters.len() / 2 + 1;
    let leader = named
        .iter()
        .max_by_key(|(_, n)| **n)
        .filter(|(_, n)| **n >= needed)
        .map(|(id, _)| *id);
    let leader_view = leader
        .and_then(|l| by_id.get(&l))
        .and_then(|p| p.metrics.as_ref().ok());
    let leader_log = leader_view.and_then(|m| m.last_log_index);
    let voters_up = voters.iter().filter(|id| by_id.contains_key(id)).count();
    let quorum = Quorum {
        ok: leader.is_some() && voters_up >= needed && !voters.is_empty(),
        voters: voters.len(),
        voters_up,
        voters_with_leader: leader.and_then(|l| named.get(&l)).copied().unwrap_or(0),
        needed,
    };

    let mut members = Vec::new();
    let member_ids: BTreeSet<u64> = voters.union(&learners).copied().collect();
    for id in &member_ids {
        let address = addresses.get(id).cloned().unwrap_or_default();
        let kind = if voters.contains(id) {
            "voter"
        } else {
            "learner"
        };
        match by_id.get(id) {
            Some(p) => members.push(answered(p, kind, Some(address), leader_log, max_lag)),
            None => {
                // Not reached: report the failure of the probe at its address (or a given URL
                // equal to it).
                let failure = probes
                    .iter()
                    .find(|p| p.url == trim_url(&address))
                    .and_then(|p| p.metrics.as_ref().err().cloned())
                    .unwrap_or_else(|| "no answer".to_owned());
                members.push(MemberReport {
                    id: Some(*id),
                    url: trim_url(&address),
                    address,
                    member: kind,
                    role: None,
                    term: None,
                    leader_id: None,
                    applied: None,
                    last_log_index: None,
                    lag: None,
                    version: None,
                    data_size_bytes: None,
                    ready: false,
                    health: "down",
                    error: Some(failure),
                });
            }
        }
    }
    // Nodes that answered but are not in the membership (removed, or another cluster).
    for (id, p) in &by_id {
        if !member_ids.contains(id) {
            members.push(answered(p, "none", None, leader_log, max_lag));
        }
    }
    let member_urls: BTreeSet<String> = addresses.values().map(|a| trim_url(a)).collect();
    let unidentified: Vec<Value> = probes
        .iter()
        .filter_map(|p| match &p.metrics {
            Err(e) if !member_urls.contains(&p.url) => Some(json!({"url": p.url, "error": e})),
            _ => None,
        })
        .collect();

    let (status, exit_code) = if by_id.is_empty() {
        ("unreachable", 2)
    } else if !quorum.ok {
        ("no_quorum", 2)
    } else if members
        .iter()
        .any(|m| m.member != "none" && m.health != "ok")
    {
        ("degraded", 1)
    } else {
        ("healthy", 0)
    };
    Report {
        status,
        exit_code,
        leader_id: leader,
        term: leader_view.map(|m| m.current_term),
        quorum,
        members,
        unidentified,
    }
}

/// The row of a node that answered.
fn answered(
    p: &Probe,
    member: &'static str,
    address: Option<String>,
    leader_log: Option<u64>,
    max_lag: u64,
) -> MemberReport {
    let m = p.metrics.as_ref().ok();
    let applied = m.and_then(|m| m.last_applied);
    let lag = leader_log.map(|l| l.saturating_sub(applied.unwrap_or(0)));
    let (health, error) = match (&p.ready, lag) {
        (Err(reason), _) => ("not_ready", Some(reason.clone())),
        (Ok(()), Some(lag)) if lag > max_lag => (
            "lagging",
            Some(format!(
                "{lag} entries behind the leader (--max-lag {max_lag})"
            )),
        ),
        (Ok(()), _) => ("ok", None),
    };
    MemberReport {
        id: m.map(|m| m.id),
        address: address
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| p.url.clone()),
        url: p.url.clone(),
        member,
        role: m.map(|m| m.state.clone()),
        term: m.map(|m| m.current_term),
        leader_id: m.and_then(|m| m.current_leader),
        applied,
        last_log_index: m.and_then(|m| m.last_log_index),
        lag,
        version: m.and_then(|m| m.version.clone()),
        data_size_bytes: m.and_then(|m| m.data_size_bytes),
        ready: p.ready.is_ok(),
        health,
        error,
    }
}

/// `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: u64, state: &str, term: u64, leader: Option<u64>, applied: u64) -> RaftMetricsView {
        RaftMetricsView {
            id,
            state: state.into(),
            current_term: term,
            current_leader: leader,
            last_applied: Some(applied),
            last_log_index: Some(applied),
            membership: vec![1, 2, 3],
            learners: vec![4],
            nodes: (1..=4).map(|i| (i, format!("http://n{i}"))).collect(),
            state_hash: String::new(),
            snapshot_index: None,
            version: Some("0.1.0".into()),
            data_size_bytes: Some(2048),
        }
    }

    fn up(id: u64, state: &str, applied: u64) -> Probe {
        Probe {
            url: format!("http://n{id}"),
            metrics: Ok(view(id, state, 3, Some(1), applied)),
            ready: Ok(()),
        }
    }

    fn down(url: &str) -> Probe {
        Probe {
            url: url.into(),
            metrics: Err("connection refused or unreachable".into()),
            ready: Err("connection refused or unreachable".into()),
        }
    }

    #[test]
    fn all_members_up_is_healthy() {
        let r = report(
            &[
                up(1, "Leader", 10),
                up(2, "Follower", 10),
                up(3, "Follower", 9),
                up(4, "Learner", 10),
            ],
            100,
        );
        assert_eq!((r.status, r.exit_code), ("healthy", 0));
        assert_eq!(r.leader_id, Some(1));
        assert_eq!(r.members.len(), 4);
        assert_eq!(r.members[2].lag, Some(1));
        assert_eq!(r.members[3].member, "learner");
    }

    #[test]
    fn a_member_down_or_lagging_is_degraded() {
        let r = report(
            &[
                up(1, "Leader", 10),
                up(2, "Follower", 10),
                up(3, "Follower", 10),
                down("http://n4"),
            ],
            100,
        );
        assert_eq!((r.status, r.exit_code), ("degraded", 1));
        assert_eq!(r.members[3].health, "down");
        assert!(r.unidentified.is_empty(), "n4 is a member address");
        let r = report(
            &[
                up(1, "Leader", 500),
                up(2, "Follower", 10),
                up(3, "Follower", 500),
                up(4, "Learner", 500),
            ],
            100,
        );
        assert_eq!((r.status, r.exit_code), ("degraded", 1));
        assert_eq!(r.members[1].health, "lagging");
    }

    #[test]
    fn two_voters_down_is_no_quorum_even_if_the_survivor_says_leader() {
        let r = report(
            &[up(1, "Leader", 10), down("http://n2"), down("http://n3")],
            100,
        );
        assert_eq!((r.status, r.exit_code), ("no_quorum", 2));
        assert!(!r.quorum.ok);
        assert_eq!(r.quorum.voters_up, 1);
    }

    #[test]
    fn nothing_answering_is_unreachable_and_stray_urls_are_listed() {
        let r = report(&[down("http://x")], 100);
        assert_eq!((r.status, r.exit_code), ("unreachable", 2));
        assert_eq!(r.unidentified.len(), 1);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
