//! `varpulis cluster migrations`: pipeline moves (failover, drain, rebalance), filtered.

use serde_json::{json, Value};
use varpulis_api::cluster::{MigrationInfo, MigrationList};

use super::client::Client;
use super::resolve::{self, PAGE};
use crate::cmd::output::{self, outln};

/// Flags of `varpulis cluster migrations`.
#[derive(Debug, clap::Args)]
pub struct MigrationsArgs {
    /// Only migrations still running (`pending` or `deploying`).
    #[arg(long)]
    pub active: bool,
    /// Only migrations of this group (id or name).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Only migrations in this status (`pending`, `deploying`, `completed`, `failed`).
    #[arg(long)]
    pub status: Option<String>,
}

/// Every migration (all pages), raw items alongside.
async fn all(c: &Client) -> anyhow::Result<Vec<(MigrationInfo, Value)>> {
    let mut out = Vec::new();
    loop {
        let path = format!(
            "/api/v1/cluster/migrations?limit={PAGE}&offset={}",
            out.len()
        );
        let (page, raw): (MigrationList, Value) = c.get(&path).await?;
        let n = page.migrations.len();
        let raws = raw["migrations"].as_array().cloned().unwrap_or_default();
        out.extend(page.migrations.into_iter().zip(raws));
        if !page.pagination.has_more || n == 0 {
            return Ok(out);
        }
    }
}

/// Runs `migrations`.
pub async fn run(c: &Client, a: &MigrationsArgs, json: bool) -> anyhow::Result<()> {
    let group = match &a.group {
        Some(g) => Some(resolve::group_id(c, g).await?),
        None => None,
    };
    let kept: Vec<(MigrationInfo, Value)> = all(c)
        .await?
        .into_iter()
        .filter(|(m, _)| !a.active || matches!(m.status.as_str(), "pending" | "deploying"))
        .filter(|(m, _)| group.as_ref().is_none_or(|g| &m.group_id == g))
        .filter(|(m, _)| a.status.as_ref().is_none_or(|s| &m.status == s))
        .collect();
    if json {
        let total = kept.len();
        let items: Vec<Value> = kept.into_iter().map(|(_, raw)| raw).collect();
        return Ok(output::json(&json!({
            "migrations": items,
            "total": total,
            "pagination": {"limit": total, "offset": 0, "has_more": false},
        }))?);
    }
    let rows: Vec<Vec<String>> = kept
        .iter()
        .map(|(m, _)| {
            vec![
                m.id.clone(),
                m.group_id.clone(),
                format!("{}[{}]", m.pipeline_name, m.replica),
                m.from_worker.clone(),
                output::opt(m.to_worker.clone()),
                m.status.clone(),
                m.reason.clone(),
                output::opt(m.duration_ms.map(|d| format!("{d}ms"))),
                m.restored_from_checkpoint.to_string(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "GROUP",
            "PIPELINE",
            "FROM",
            "TO",
            "STATUS",
            "REASON",
            "DURATION",
            "CHECKPOINT",
        ],
        &rows,
    )?;
    outln!("{} migration(s)", kept.len())?;
    Ok(())
}
