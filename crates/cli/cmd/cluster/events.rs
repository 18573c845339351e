//! `varpulis cluster events`: follows the cluster event stream (`GET /api/v1/cluster/events`),
//! one line per event, resuming after the last id seen when a coordinator goes away.

use serde_json::Value;

use super::client::Client;
use super::sse::{self, Flow};
use crate::cmd::output::outln;

/// Flags of `varpulis cluster events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Resume after this event id (e.g. `42` or `42.1`); default: from now on.
    #[arg(long)]
    pub since: Option<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// Runs `events`.
pub async fn run(c: &Client, a: &EventsArgs, json: bool) -> anyhow::Result<()> {
    sse::check_count(a.count)?;
    let mut seen = 0u64;
    sse::follow(
        c,
        |since| match since {
            Some(id) => format!(
                "/api/v1/cluster/events?since={}",
                super::client::segment(id)
            ),
            None => "/api/v1/cluster/events".to_owned(),
        },
        a.since.clone(),
        |event| {
            if json {
                outln!("{}", event.data)?;
            } else if event.kind == "reset" {
                outln!("-- reset: events were missed ({})", event.data)?;
            } else {
                let details = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|v| v.get("data").cloned())
                    .map_or_else(|| event.data.clone(), |d| d.to_string());
                outln!(
                    "{:<8} {:<24} {details}",
                    event.id.clone().unwrap_or_default(),
                    event.kind
                )?;
            }
            seen += 1;
            Ok(match a.count {
                Some(n) if seen >= n => Flow::Stop,
                _ => Flow::Continue,
            })
        },
    )
    .await
}
