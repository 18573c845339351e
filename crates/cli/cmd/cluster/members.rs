//! `varpulis cluster members ...`: the Raft membership (list, add, promote, remove).
//!
//! Membership changes go to the leader (a follower forwards them). A member may be named by
//! its node id or by its address (`http://10.0.0.13:9100`). The leader checks each change
//! (docs/operations.md, "Adding and removing a coordinator"): an added node must answer, a
//! new voter must have caught up, and a change must leave a reachable majority of voters;
//! `--force` skips those checks. Every command is idempotent: asking for the membership that
//! already is succeeds and changes nothing.

use anyhow::bail;
use reqwest::Method;
use serde_json::{json, Value};
use varpulis_api::raft::{
    AddLearnerRequest, ChangeMembershipRequest, RaftMetricsView, RemoveNodeRequest,
};

use super::client::{decode, trim_url, Client};
use crate::cmd::output::{self, outln};

/// `varpulis cluster members ...`.
#[derive(Debug, clap::Subcommand)]
pub enum MembersCmd {
    /// List voters and learners with their addresses (as the leader sees them).
    List,
    /// Add a coordinator: first as a learner (refused if nothing answers at the address), then,
    /// once it has caught up with the log, as a voter.
    Add {
        /// Id of the new node (must be unused).
        #[arg(long)]
        node_id: u64,
        /// Base URL the other coordinators reach it at.
        #[arg(long)]
        address: String,
        /// Stop after add-learner (do not make it a voter; `members promote` later).
        #[arg(long)]
        learner_only: bool,
        /// Skip the checks (the address answers, the node caught up).
        #[arg(long)]
        force: bool,
    },
    /// Make a learner a voter, once it has caught up with the log (waits up to 10 s).
    Promote {
        /// Node id or address of the learner.
        node: String,
        /// Promote even if it has not caught up.
        #[arg(long)]
        force: bool,
    },
    /// Remove a coordinator (voter or learner) from the membership entirely; stop its process
    /// afterwards. Refused when the remaining voters would have no reachable majority (unless
    /// `--force`); removing a node that is not a member does nothing.
    Remove {
        /// Node id or address of the member to remove.
        node: String,
        /// Remove it even if the remaining voters would have no reachable majority.
        #[arg(long)]
        force: bool,
    },
}

/// The node id named by `key`: a number, or the address of a member.
fn node_id(view: &RaftMetricsView, key: &str) -> anyhow::Result<u64> {
    if let Ok(id) = key.trim().parse::<u64>() {
        return Ok(id);
    }
    let wanted = trim_url(key);
    view.nodes
        .iter()
        .find(|(_, addr)| trim_url(addr) == wanted)
        .map(|(id, _)| *id)
        .ok_or_else(|| anyhow::anyhow!("`{key}` is neither a node id nor the address of a member"))
}

/// The membership as the leader sees it: the answering node's `/raft/metrics`, or its
/// leader's when it knows another one (a removed or lagging node has a stale view).
async fn leader_view(c: &Client) -> anyhow::Result<(RaftMetricsView, Value)> {
    let (view, raw): (RaftMetricsView, Value) = c.get("/raft/metrics").await?;
    let leader_url = view
        .current_leader
        .filter(|l| *l != view.id)
        .and_then(|l| view.nodes.get(&l).cloned());
    if let Some(url) = leader_url {
        if let Ok((status, text)) = c
            .send_to(&trim_url(&url), &Method::GET, "/raft/metrics", None, None)
            .await
        {
            if status.is_success() {
                if let Ok(answer) = decode::<RaftMetricsView>("/raft/metrics", &text) {
                    return Ok(answer);
                }
            }
        }
    }
    Ok((view, raw))
}

/// Runs `members SUB`.
pub async fn run(c: &Client, cmd: &MembersCmd, json: bool) -> anyhow::Result<()> {
    let view = match cmd {
        MembersCmd::List => {
            let (view, raw) = leader_view(c).await?;
            if json {
                return Ok(output::json(&json!({
                    "voters": view.membership,
                    "learners": view.learners,
                    "nodes": raw["nodes"],
                    "leader_id": view.current_leader,
                    "term": view.current_term,
                    "answered_by": view.id,
                }))?);
            }
            let mut rows = Vec::new();
            for (id, addr) in &view.nodes {
                let kind = if view.membership.contains(id) {
                    "voter"
                } else if view.learners.contains(id) {
                    "learner"
                } else {
                    "-"
                };
                let leader = if view.current_leader == Some(*id) {
                    "yes"
                } else {
                    ""
                };
                rows.push(vec![
                    id.to_string(),
                    addr.clone(),
                    kind.to_owned(),
                    leader.to_owned(),
                ]);
            }
            output::table(&["ID", "ADDRESS", "MEMBER", "LEADER"], &rows)?;
            outln!(
                "{} voter(s), {} learner(s); term {} (as seen by node {})",
                view.membership.len(),
                view.learners.len(),
                view.current_term,
                view.id
            )?;
            return Ok(());
        }
        MembersCmd::Add {
            node_id,
            address,
            learner_only,
            force,
        } => {
            let req = serde_json::to_value(AddLearnerRequest {
                node_id: *node_id,
                address: trim_url(address),
                force: *force,
            })?;
            let (mut view, mut raw): (RaftMetricsView, Value) = c
                .write(Method::POST, "/raft/add-learner", Some(req))
                .await?;
            if !learner_only {
                (view, raw) = promote(c, &view, *node_id, *force).await?;
            }
            if json {
                return Ok(output::json(&raw)?);
            }
            view
        }
        MembersCmd::Promote { node, force } => {
            let (view, _) = leader_view(c).await?;
            let node_id = node_id(&view, node)?;
            if !view.membership.contains(&node_id) && !view.learners.contains(&node_id) {
                bail!(
                    "node {node_id} is not a member (voters: {:?}, learners: {:?}): add it first",
                    view.membership,
                    view.learners
                );
            }
            let (view, raw) = promote(c, &view, node_id, *force).await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            view
        }
        MembersCmd::Remove { node, force } => {
            let (view, _) = leader_view(c).await?;
            let node_id = node_id(&view, node)?;
            if !view.membership.contains(&node_id) && !view.learners.contains(&node_id) {
                outln!(
                    "node {node_id} is not a member (voters {:?}, learners {:?}): nothing to do",
                    view.membership,
                    view.learners
                )?;
                return Ok(());
            }
            let req = serde_json::to_value(RemoveNodeRequest {
                node_id,
                force: *force,
            })?;
            let (mut view, mut raw): (RaftMetricsView, Value) = c
                .write(Method::POST, "/raft/remove-node", Some(req.clone()))
                .await?;
            // A leader removing itself stops leading half-way (the node is then a learner):
            // the new leader finishes.
            for _ in 0..5 {
                if !view.learners.contains(&node_id) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                (view, raw) = c
                    .write(Method::POST, "/raft/remove-node", Some(req.clone()))
                    .await?;
            }
            if json {
                return Ok(output::json(&raw)?);
            }
            view
        }
    };
    outln!(
        "membership: voters {:?}, learners {:?}, leader {}",
        view.membership,
        view.learners,
        output::opt(view.current_leader)
    )?;
    Ok(())
}

/// Makes `node` a voter (nothing to do when it is one already).
async fn promote(
    c: &Client,
    view: &RaftMetricsView,
    node: u64,
    force: bool,
) -> anyhow::Result<(RaftMetricsView, Value)> {
    let mut members = view.membership.clone();
    if members.contains(&node) {
        return c.get("/raft/metrics").await;
    }
    members.push(node);
    let req = serde_json::to_value(ChangeMembershipRequest { members, force })?;
    let text = c
        .request(
            Method::POST,
            "/raft/change-membership",
            Some(super::client::Body::Json(req)),
        )
        .await?;
    decode("/raft/change-membership", &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_by_id_or_address() {
        let view: RaftMetricsView = serde_json::from_value(json!({
            "id": 1, "state": "Leader", "current_term": 2, "current_leader": 1,
            "last_applied": 5, "last_log_index": 5, "membership": [1, 2],
            "nodes": {"1": "http://a:9100", "2": "http://b:9100/"}, "state_hash": ""
        }))
        .unwrap();
        assert_eq!(node_id(&view, "2").unwrap(), 2);
        assert_eq!(node_id(&view, "http://b:9100").unwrap(), 2);
        assert_eq!(node_id(&view, "http://a:9100/").unwrap(), 1);
        assert!(node_id(&view, "http://c:9100").is_err());
    }
}
