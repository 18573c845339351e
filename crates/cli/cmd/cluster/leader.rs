//! `varpulis cluster leader transfer [--to N]`: hands Raft leadership to another voter.
//!
//! `POST /raft/transfer-leader` goes to the coordinators in turn; a follower answers 421 and the
//! next one is tried, so the call reaches the leader. The leader pauses writes, waits until the
//! chosen voter (the most up-to-date one, or `--to N`) holds its whole log, has it campaign,
//! and answers once the new leader is elected (docs/raft.md, "Leadership transfer").

use reqwest::Method;
use serde_json::Value;
use varpulis_api::raft::{TransferLeaderRequest, TransferLeaderResponse};

use super::client::Client;
use crate::cmd::output::{self, outln};

/// `varpulis cluster leader ...`.
#[derive(Debug, clap::Subcommand)]
pub enum LeaderCmd {
    /// Hand leadership over to another voter (before maintenance of the leader's machine).
    Transfer {
        /// Node id of the voter to hand over to (default: the most up-to-date voter).
        #[arg(long)]
        to: Option<u64>,
    },
}

/// Runs `leader SUB`.
pub async fn run(c: &Client, cmd: &LeaderCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        LeaderCmd::Transfer { to } => {
            let req = serde_json::to_value(TransferLeaderRequest { to: *to })?;
            let (done, raw): (TransferLeaderResponse, Value) = c
                .write(Method::POST, "/raft/transfer-leader", Some(req))
                .await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            if done.leader_id == done.previous_leader_id {
                outln!(
                    "node {} leads already: nothing to hand over",
                    done.leader_id
                )?;
            } else {
                outln!(
                    "leadership moved from node {} to node {} ({}) in {} ms",
                    done.previous_leader_id,
                    done.leader_id,
                    output::opt(done.leader_url),
                    done.elapsed_ms
                )?;
            }
            Ok(())
        }
    }
}
