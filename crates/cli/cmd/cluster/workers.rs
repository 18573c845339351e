//! `varpulis cluster workers [list|get|drain|remove]` and `varpulis cluster rebalance`.
//!
//! Heartbeat figures (events processed, time since the last heartbeat) live in the leader's
//! memory only, so worker reads ask with `?consistent=true`: a follower forwards such a read to
//! the leader, and whichever coordinator answers, the figures are the leader's. Without a leader
//! the CLI falls back to a plain read (the replicated registry, without heartbeat figures) and
//! says so.

use anyhow::bail;
use reqwest::Method;
use serde_json::Value;
use std::time::{Duration, Instant};
use varpulis_api::cluster::{
    DeletedResponse, DrainResponse, PlannedMove, RebalanceResponse, WorkerInfo, WorkerList,
};
use varpulis_api::Pagination;

use super::client::{segment, Client, ClientError};
use super::resolve::PAGE;
use crate::cmd::output::{self, errln, outln};

const WORKERS: &str = "/api/v1/cluster/workers";

/// `varpulis cluster workers ...` (no subcommand: `list`).
#[derive(Debug, clap::Subcommand)]
pub enum WorkersCmd {
    /// List the workers with the leader's heartbeat figures.
    List,
    /// Show one worker.
    Get {
        /// Worker id.
        id: String,
    },
    /// Drain a worker: it takes no new pipelines and its pipelines move to other workers
    /// (with their checkpoints). It stays registered as `draining` until removed.
    Drain {
        /// Worker id.
        id: String,
        /// Wait until nothing is left on the worker (`removable`), at most --timeout seconds.
        #[arg(long)]
        wait: bool,
    },
    /// Deregister a worker (its pipelines are placed elsewhere). Drain it first to move them
    /// with their state; stop the process too, or it registers again.
    Remove {
        /// Worker id.
        id: String,
    },
}

/// Every worker, read from the leader when one answers (`try_leader`); the bool says whether
/// it did. Without `try_leader` (no quorum: a linearizable read would only time out) the plain
/// registry is read.
pub async fn fetch_leader_view(
    c: &Client,
    try_leader: bool,
) -> anyhow::Result<(WorkerList, Value, bool)> {
    if !try_leader {
        return list_all(c, false).await.map(|(l, r)| (l, r, false));
    }
    match list_all(c, true).await {
        Ok((list, raw)) => Ok((list, raw, true)),
        Err(e) => match e
            .downcast_ref::<ClientError>()
            .and_then(ClientError::status)
        {
            // 4xx (wrong key): the plain read would fail the same way.
            Some(s) if s.is_client_error() && s.as_u16() != 421 => Err(e),
            _ => list_all(c, false).await.map(|(l, r)| (l, r, false)),
        },
    }
}

/// All pages of the worker list, as one list (raw JSON in the server's shape).
async fn list_all(c: &Client, consistent: bool) -> anyhow::Result<(WorkerList, Value)> {
    let mut workers: Vec<WorkerInfo> = Vec::new();
    let mut raw_items: Vec<Value> = Vec::new();
    loop {
        let mut path = format!("{WORKERS}?limit={PAGE}&offset={}", workers.len());
        if consistent {
            path.push_str("&consistent=true");
        }
        let (page, raw): (WorkerList, Value) = c.get(&path).await?;
        let n = page.workers.len();
        if let Some(items) = raw["workers"].as_array() {
            raw_items.extend(items.iter().cloned());
        }
        workers.extend(page.workers);
        if !page.pagination.has_more || n == 0 {
            let total = workers.len();
            let raw = serde_json::json!({
                "workers": raw_items,
                "total": total,
                "pagination": {"limit": total, "offset": 0, "has_more": false},
            });
            let list = WorkerList {
                workers,
                total,
                pagination: Pagination {
                    limit: total,
                    offset: 0,
                    has_more: false,
                },
            };
            return Ok((list, raw));
        }
    }
}

/// `1.2s` for a heartbeat age in milliseconds.
fn age(ms: Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| format!("{:.1}s", ms as f64 / 1000.0),
    )
}

/// Runs `workers [SUB]`.
pub async fn run(c: &Client, cmd: Option<&WorkersCmd>, json: bool) -> anyhow::Result<()> {
    match cmd.unwrap_or(&WorkersCmd::List) {
        WorkersCmd::List => {
            let (list, raw, from_leader) = fetch_leader_view(c, true).await?;
            if !from_leader {
                errln!("warning: no leader answered: heartbeat figures (EVENTS, LAST_HB) are unknown; showing the replicated registry");
            }
            if json {
                return Ok(output::json(&raw)?);
            }
            let rows: Vec<Vec<String>> = list
                .workers
                .iter()
                .map(|w| {
                    vec![
                        w.id.clone(),
                        w.status.clone(),
                        w.address.clone(),
                        format!("{}/{}", w.pipelines_running, w.max_pipelines),
                        if from_leader {
                            w.events_processed.to_string()
                        } else {
                            "-".to_owned()
                        },
                        age(w.last_heartbeat_ms_ago),
                    ]
                })
                .collect();
            output::table(
                &["ID", "STATUS", "ADDRESS", "PIPELINES", "EVENTS", "LAST_HB"],
                &rows,
            )?;
            outln!("{} worker(s)", list.total)?;
        }
        WorkersCmd::Get { id } => {
            let path = format!("{WORKERS}/{}?consistent=true", segment(id));
            let (w, raw): (WorkerInfo, Value) = match c.get(&path).await {
                Ok(found) => found,
                Err(e) if is_unavailable(&e) => {
                    errln!("warning: no leader answered: heartbeat figures are unknown");
                    c.get(&format!("{WORKERS}/{}", segment(id))).await?
                }
                Err(e) => return Err(e),
            };
            if json {
                return Ok(output::json(&raw)?);
            }
            print_worker(&w)?;
        }
        WorkersCmd::Drain { id, wait } => drain(c, id, *wait, json).await?,
        WorkersCmd::Remove { id } => {
            let path = format!("{WORKERS}/{}", segment(id));
            let (_, raw): (DeletedResponse, Value) = c.write(Method::DELETE, &path, None).await?;
            if json {
                return Ok(output::json(&raw)?);
            }
            outln!("worker {id} removed")?;
        }
    }
    Ok(())
}

/// Whether a failed read means "no leader reachable" (the plain read may still work).
fn is_unavailable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::Http { status, .. }) => matches!(status.as_u16(), 421 | 503),
        Some(ClientError::Unreachable { .. }) => false,
        None => false,
    }
}

fn print_worker(w: &WorkerInfo) -> std::io::Result<()> {
    outln!("worker {} ({})", w.id, w.status)?;
    outln!("  address:    {}", w.address)?;
    outln!(
        "  pipelines:  {}/{} running; assigned: {}",
        w.pipelines_running,
        w.max_pipelines,
        if w.assigned_pipelines.is_empty() {
            "-".to_owned()
        } else {
            w.assigned_pipelines.join(", ")
        }
    )?;
    outln!("  events:     {}", w.events_processed)?;
    outln!("  heartbeat:  {} ago", age(w.last_heartbeat_ms_ago))?;
    outln!("  cpu cores:  {}", w.cpu_cores)?;
    if !w.labels.is_empty() {
        let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        outln!("  labels:     {}", labels.join(", "))?;
    }
    if w.removable {
        outln!("  removable:  yes (drained)")?;
    }
    Ok(())
}

/// Prints planned moves as a table.
pub fn print_moves(moves: &[PlannedMove]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = moves
        .iter()
        .map(|m| {
            vec![
                output::opt(m.migration_id.clone()),
                m.group_id.clone(),
                format!("{}[{}]", m.pipeline_name, m.replica),
                m.from_worker.clone(),
                output::opt(m.to_worker.clone()),
            ]
        })
        .collect();
    output::table(&["MIGRATION", "GROUP", "PIPELINE", "FROM", "TO"], &rows)
}

async fn drain(c: &Client, id: &str, wait: bool, json: bool) -> anyhow::Result<()> {
    let path = format!("{WORKERS}/{}/drain", segment(id));
    let (d, raw): (DrainResponse, Value) = c.write(Method::POST, &path, None).await?;
    if !wait || d.removable {
        if json {
            return Ok(output::json(&raw)?);
        }
        outln!(
            "worker {} is {}: {} migration(s) started, {} placement(s) left{}",
            d.worker_id,
            d.status,
            d.migrations.len(),
            d.remaining,
            if d.removable { "; removable" } else { "" }
        )?;
        if !d.migrations.is_empty() {
            print_moves(&d.migrations)?;
        }
        return Ok(());
    }
    if !json {
        outln!(
            "worker {id} is draining: {} migration(s) started; waiting until nothing is left...",
            d.migrations.len()
        )?;
    }
    let deadline = Instant::now() + c.timeout;
    loop {
        let w_path = format!("{WORKERS}/{}", segment(id));
        let (w, raw): (WorkerInfo, Value) = c.get(&w_path).await?;
        if w.removable {
            if json {
                return Ok(output::json(&raw)?);
            }
            outln!("worker {id} is drained: it may be removed (`workers remove {id}`)")?;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "worker {id} still has placements after {:?} (see `varpulis cluster migrations --active`)",
                c.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs `rebalance`.
pub async fn rebalance(c: &Client, json: bool) -> anyhow::Result<()> {
    let (r, raw): (RebalanceResponse, Value) = c
        .write(Method::POST, "/api/v1/cluster/rebalance", None)
        .await?;
    if json {
        return Ok(output::json(&raw)?);
    }
    if r.moves.is_empty() {
        outln!("already balanced: nothing to move")?;
        return Ok(());
    }
    print_moves(&r.moves)?;
    outln!(
        "{} move(s) planned, {} started now (the rest follow in later rounds)",
        r.moves.len(),
        r.started
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_ages_read_in_seconds() {
        assert_eq!(age(Some(1234)), "1.2s");
        assert_eq!(age(None), "-");
    }
}
