//! `varpulis cluster inject GROUP ...`: one event, or an `.evt` file through `inject-batch`.

use anyhow::{anyhow, Context};
use reqwest::Method;
use serde_json::{Map, Value};
use std::path::PathBuf;
use varpulis_api::cluster::{GroupInjectBatchResponse, GroupInjectRequest, GroupInjectResponse};

use super::client::{decode, read_input, segment, Body, Client};
use super::resolve::{self, GROUPS};
use crate::cmd::output::{self, outln};

/// `varpulis cluster inject ...`.
#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// Group id or name.
    pub group: String,
    /// Event type of a single event.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub event_type: Option<String>,
    /// Fields of the single event, as a JSON object.
    #[arg(long, default_value = "{}", conflicts_with = "file")]
    pub fields: String,
    /// An `.evt` file sent to /inject-batch (`-` reads stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
}

/// Runs `inject`.
pub async fn run(c: &Client, a: &InjectArgs, json: bool) -> anyhow::Result<()> {
    // Check the input before any request.
    let single = match &a.file {
        Some(_) => None,
        None => {
            let event_type = a
                .event_type
                .clone()
                .ok_or_else(|| anyhow!("--event-type or -f FILE is required"))?;
            let fields: Map<String, Value> = serde_json::from_str(&a.fields)
                .with_context(|| format!("--fields must be a JSON object, got `{}`", a.fields))?;
            Some(GroupInjectRequest { event_type, fields })
        }
    };
    let batch = match &a.file {
        Some(file) => Some(read_input(file)?),
        None => None,
    };
    let id = resolve::group_id(c, &a.group).await?;
    let base = format!("{GROUPS}/{}", segment(&id));
    if let Some(text) = batch {
        let path = format!("{base}/inject-batch");
        let answer = c
            .request(Method::POST, &path, Some(Body::Text(text)))
            .await?;
        let (r, raw): (GroupInjectBatchResponse, _) = decode(&path, &answer)?;
        if json {
            return Ok(output::json(&raw)?);
        }
        let routed: Vec<String> = r.routed.iter().map(|(p, n)| format!("{p}={n}")).collect();
        outln!(
            "accepted {} event(s), routed: {}",
            r.accepted,
            routed.join(", ")
        )?;
        for e in &r.output_events {
            outln!("{}", serde_json::to_string(e)?)?;
        }
        return Ok(());
    }
    let body = serde_json::to_value(single)?;
    let path = format!("{base}/inject");
    let answer = c
        .request(Method::POST, &path, Some(Body::Json(body)))
        .await?;
    let (r, raw): (GroupInjectResponse, _) = decode(&path, &answer)?;
    if json {
        return Ok(output::json(&raw)?);
    }
    outln!(
        "routed to {} on {} ({} output event(s))",
        r.routed_to,
        r.worker_id,
        r.worker_response.output_events.len()
    )?;
    for e in &r.worker_response.output_events {
        outln!("{}", serde_json::to_string(e)?)?;
    }
    Ok(())
}
