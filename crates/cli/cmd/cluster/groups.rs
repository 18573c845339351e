//! `varpulis cluster groups ...`: list, get, deploy, rm, update, rollback, versions, output.
//!
//! Every command taking a group accepts its id or its name (names are unique, see
//! [`super::resolve`]). `update` and `rollback` answer once the rolling update is done;
//! `output` follows the group's live output stream (SSE) until `--count` events or Ctrl-C.

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;
use varpulis_api::cluster::{
    GroupUpdateResponse, PipelineGroupInfo, PipelineGroupSpec, PipelineUpdate, RollbackRequest,
    UpdateGroupRequest,
};

use super::client::{decode, read_input, segment, Client};
use super::resolve::{self, GROUPS};
use super::sse::{self, Flow};
use crate::cmd::output::{self, errln, outln};

/// `varpulis cluster groups ...`.
#[derive(Debug, clap::Subcommand)]
pub enum GroupsCmd {
    /// List pipeline groups.
    List,
    /// Show one pipeline group and where its pipelines run.
    Get {
        /// Group id or name.
        group: String,
    },
    /// Deploy a pipeline group from a JSON spec file (`-` reads stdin).
    Deploy {
        /// The group spec: `{name, pipelines: [{name, source}], routes: [...]}`.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Tear a pipeline group down (its pipelines are removed from the workers).
    Rm {
        /// Group id or name.
        group: String,
    },
    /// Rolling update: new VPL for some pipelines, state carried over; answers when done.
    Update(UpdateArgs),
    /// Roll back to an earlier version (default: the previous one), as a new version.
    Rollback {
        /// Group id or name.
        group: String,
        /// Version whose spec runs again.
        #[arg(long)]
        version: Option<u64>,
        /// Start without the old state (needed when the state shape differs).
        #[arg(long)]
        reset_state: bool,
    },
    /// Version history of a group, and the rollout in progress if any.
    Versions {
        /// Group id or name.
        group: String,
    },
    /// Follow the group's output events live (every pipeline, every replica).
    Output {
        /// Group id or name.
        group: String,
        /// Stop after this many output events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
    },
}

/// `varpulis cluster groups update ...`.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Group id or name.
    pub group: String,
    /// New source of one pipeline: `NAME=FILE.vpl` (`NAME=-` reads stdin); repeatable.
    #[arg(
        long = "pipeline",
        value_name = "NAME=FILE",
        required_unless_present = "file"
    )]
    pub pipelines: Vec<String>,
    /// The whole request as JSON: `{"pipelines": [{"name", "source"}], "state": "reset"?}`.
    #[arg(short = 'f', long = "file", conflicts_with = "pipelines")]
    pub file: Option<PathBuf>,
    /// Start the new version without the old state (needed when the state shape differs).
    #[arg(long)]
    pub reset_state: bool,
}

/// Runs `groups SUB`.
pub async fn run(c: &Client, cmd: &GroupsCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        GroupsCmd::List => list(c, json).await,
        GroupsCmd::Get { group } => {
            let id = resolve::group_id(c, group).await?;
            let (g, raw): (PipelineGroupInfo, _) =
                c.get(&format!("{GROUPS}/{}", segment(&id))).await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            print_group(&g)?;
            Ok(())
        }
        GroupsCmd::Deploy { file } => {
            let text = read_input(file)?;
            let spec: PipelineGroupSpec = serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not a pipeline group spec", file.display()))?;
            let (g, raw): (PipelineGroupInfo, _) = c
                .write(Method::POST, GROUPS, Some(serde_json::to_value(&spec)?))
                .await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            print_group(&g)?;
            Ok(())
        }
        GroupsCmd::Rm { group } => {
            let id = resolve::group_id(c, group).await?;
            let path = format!("{GROUPS}/{}", segment(&id));
            let answer = c.request(Method::DELETE, &path, None).await?;
            if json {
                let raw: Value = serde_json::from_str(&answer).unwrap_or(Value::String(answer));
                return Ok(output::json(&raw)?);
            }
            outln!("group {id} torn down")?;
            Ok(())
        }
        GroupsCmd::Update(a) => update(c, a, json).await,
        GroupsCmd::Rollback {
            group,
            version,
            reset_state,
        } => {
            let id = resolve::group_id(c, group).await?;
            let body = RollbackRequest {
                version: *version,
                state: reset_state.then(|| "reset".to_owned()),
            };
            let path = format!("{GROUPS}/{}/rollback", segment(&id));
            let (r, raw): (GroupUpdateResponse, _) = c
                .write(Method::POST, &path, Some(serde_json::to_value(&body)?))
                .await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            print_update(&r)?;
            Ok(())
        }
        GroupsCmd::Versions { group } => versions(c, group, json).await,
        GroupsCmd::Output { group, count } => follow_output(c, group, *count, json).await,
    }
}

async fn list(c: &Client, json: bool) -> anyhow::Result<()> {
    let groups = resolve::all_groups(c, false).await?;
    if json {
        let total = groups.len();
        return Ok(output::json(&json!({
            "pipeline_groups": groups,
            "total": total,
            "pagination": {"limit": total, "offset": 0, "has_more": false},
        }))?);
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.id.clone(),
                g.name.clone(),
                g.status.clone(),
                g.version.to_string(),
                g.pipeline_count.to_string(),
                placements_summary(g),
            ]
        })
        .collect();
    output::table(
        &["ID", "NAME", "STATUS", "VERSION", "PIPELINES", "PLACEMENTS"],
        &rows,
    )?;
    outln!("{} group(s)", groups.len())?;
    Ok(())
}

fn placements_summary(g: &PipelineGroupInfo) -> String {
    g.placements
        .iter()
        .map(|p| format!("{}@{}", p.pipeline_name, p.worker_id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a group and its placements.
pub fn print_group(g: &PipelineGroupInfo) -> std::io::Result<()> {
    outln!(
        "group {} ({}) status {}, version {}",
        g.name,
        g.id,
        g.status,
        g.version
    )?;
    let rows: Vec<Vec<String>> = g
        .placements
        .iter()
        .map(|p| {
            vec![
                format!("{}[{}]", p.pipeline_name, p.replica),
                p.worker_id.clone(),
                p.worker_address.clone(),
                p.pipeline_id.clone(),
                p.status.clone(),
                p.epoch.to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "PIPELINE",
            "WORKER",
            "ADDRESS",
            "PIPELINE_ID",
            "STATUS",
            "EPOCH",
        ],
        &rows,
    )
}

/// Builds the update request from `--pipeline NAME=FILE` flags or `-f`.
fn update_request(a: &UpdateArgs) -> anyhow::Result<UpdateGroupRequest> {
    let mut req = match &a.file {
        Some(file) => {
            let text = read_input(file)?;
            serde_json::from_str::<UpdateGroupRequest>(&text).with_context(|| {
                format!(
                    "`{}` is not an update request ({{\"pipelines\": [{{\"name\", \"source\"}}]}})",
                    file.display()
                )
            })?
        }
        None => {
            let mut pipelines = Vec::new();
            for p in &a.pipelines {
                let Some((name, path)) = p.split_once('=') else {
                    bail!("--pipeline takes NAME=FILE, got `{p}`");
                };
                if name.is_empty() || path.is_empty() {
                    bail!("--pipeline takes NAME=FILE, got `{p}`");
                }
                pipelines.push(PipelineUpdate {
                    name: name.to_owned(),
                    source: read_input(path.as_ref())?,
                });
            }
            UpdateGroupRequest {
                pipelines,
                state: None,
            }
        }
    };
    if a.reset_state {
        req.state = Some("reset".to_owned());
    }
    Ok(req)
}

async fn update(c: &Client, a: &UpdateArgs, json: bool) -> anyhow::Result<()> {
    let req = update_request(a)?;
    let id = resolve::group_id(c, &a.group).await?;
    let path = format!("{GROUPS}/{}", segment(&id));
    let (r, raw): (GroupUpdateResponse, _) = c
        .write(Method::PUT, &path, Some(serde_json::to_value(&req)?))
        .await?;
    if json {
        return Ok(output::json(&raw)?);
    }
    print_update(&r)?;
    Ok(())
}

fn print_update(r: &GroupUpdateResponse) -> std::io::Result<()> {
    let restores = r
        .restores
        .map(|v| format!(" (restores version {v})"))
        .unwrap_or_default();
    outln!(
        "group {} is at version {}{restores} (was {}); changed: {}; state: {}",
        r.group.name,
        r.version,
        r.previous_version,
        r.changed.join(", "),
        r.state
    )?;
    print_group(&r.group)
}

async fn versions(c: &Client, group: &str, json: bool) -> anyhow::Result<()> {
    let id = resolve::group_id(c, group).await?;
    let path = format!("{GROUPS}/{}/versions", segment(&id));
    let text = c.request(Method::GET, &path, None).await?;
    let (raw, _): (Value, Value) = decode(&path, &text)?;
    if json {
        return Ok(output::json(&raw)?);
    }
    outln!(
        "group {} is at version {}",
        raw["group_id"].as_str().unwrap_or(&id),
        output::opt(raw["version"].as_u64())
    )?;
    let rows: Vec<Vec<String>> = raw["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|v| {
                    let changed: Vec<&str> = v["changed"]
                        .as_array()
                        .map(|c| c.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    vec![
                        output::opt(v["version"].as_u64()),
                        output::opt(v["at_ms"].as_u64()),
                        if changed.is_empty() {
                            "-".to_owned()
                        } else {
                            changed.join(", ")
                        },
                        scalar(&v["state"]),
                        output::opt(v["restores"].as_u64()),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    output::table(&["VERSION", "AT_MS", "CHANGED", "STATE", "RESTORES"], &rows)?;
    if !raw["rollout"].is_null() {
        outln!("rollout in progress: {}", raw["rollout"])?;
    }
    if let Some(e) = raw["last_error"].as_str() {
        outln!("last update aborted: {e}")?;
    }
    Ok(())
}

/// A JSON scalar as text (`-` for null).
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn follow_output(
    c: &Client,
    group: &str,
    count: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    sse::check_count(count)?;
    let id = resolve::group_id(c, group).await?;
    let path = format!("{GROUPS}/{}/output", segment(&id));
    let mut seen = 0u64;
    sse::follow(
        c,
        |_| path.clone(),
        None,
        |event| {
            match event.kind.as_str() {
                "output" => {
                    if json {
                        outln!("{}", event.data)?;
                    } else {
                        outln!("{}", describe_output(&event.data))?;
                    }
                    seen += 1;
                    if count.is_some_and(|n| seen >= n) {
                        return Ok(Flow::Stop);
                    }
                }
                "lagged" => errln!("warning: events were skipped: {}", event.data),
                _ => {}
            }
            Ok(Flow::Continue)
        },
    )
    .await
}

/// `pipeline[replica]@worker EventType {fields}` for one output notice.
fn describe_output(data: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return data.to_owned();
    };
    let event = &v["event"];
    format!(
        "{}[{}]@{}  {} {}",
        v["pipeline"].as_str().unwrap_or("?"),
        v["replica"].as_u64().unwrap_or(0),
        v["worker_id"].as_str().unwrap_or("?"),
        event["event_type"].as_str().unwrap_or("?"),
        event
            .get("fields")
            .map_or_else(String::new, Value::to_string)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_flags_need_name_and_file() {
        let args = |p: &str| UpdateArgs {
            group: "g".into(),
            pipelines: vec![p.into()],
            file: None,
            reset_state: true,
        };
        assert!(update_request(&args("nofile")).is_err());
        assert!(update_request(&args("=x.vpl")).is_err());
        assert!(update_request(&args("p=/does/not/exist.vpl")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.vpl");
        std::fs::write(&f, "stream S = R .emit(v: v)").unwrap();
        let req = update_request(&args(&format!("p={}", f.display()))).unwrap();
        assert_eq!(req.pipelines[0].name, "p");
        assert_eq!(req.state.as_deref(), Some("reset"));
    }

    #[test]
    fn output_lines_name_pipeline_worker_and_event() {
        let line = describe_output(
            r#"{"pipeline":"p","replica":1,"worker_id":"w","event":{"event_type":"A","fields":{"v":2}}}"#,
        );
        assert_eq!(line, r#"p[1]@w  A {"v":2}"#);
        assert_eq!(describe_output("not json"), "not json");
    }
}
