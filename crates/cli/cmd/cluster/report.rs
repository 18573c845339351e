//! The status report, decided purely from what the coordinators answered (no I/O here):
//! which view the membership comes from, one row per member, the quorum and the exit code.
//! `status` probes, then calls [`report`], then prints.

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use varpulis_api::raft::RaftMetricsView;

use super::client::trim_url;

/// What one URL answered.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The URL probed.
    pub url: String,
    /// `GET /raft/metrics`: the view, or why there is none.
    pub metrics: Result<RaftMetricsView, String>,
    /// `GET /ready`: ready, or the reason it is not (or could not be asked).
    pub ready: Result<(), String>,
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
/// The view the membership is read from: the leader with the highest term, else the node with
/// the highest (term, applied index).
pub fn reference(probes: &[&Probe]) -> Option<RaftMetricsView> {
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
pub fn report(probes: &[Probe], max_lag: u64) -> Report {
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
            cluster_id: None,
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
