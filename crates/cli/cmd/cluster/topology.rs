//! `varpulis cluster topology`: which pipeline runs on which worker, and the routes.

use varpulis_api::cluster::Topology;

use super::client::Client;
use crate::cmd::output::{self, outln};

/// Runs `topology`.
pub async fn run(c: &Client, json: bool) -> anyhow::Result<()> {
    let (topo, raw): (Topology, _) = c.get("/api/v1/cluster/topology").await?;
    if json {
        return Ok(output::json(&raw)?);
    }
    let mut rows = Vec::new();
    for g in &topo.groups {
        for p in &g.pipelines {
            rows.push(vec![
                g.group_name.clone(),
                g.group_id.clone(),
                p.name.clone(),
                p.worker_id.clone(),
                p.worker_address.clone(),
            ]);
        }
    }
    output::table(
        &["GROUP", "GROUP_ID", "PIPELINE", "WORKER", "ADDRESS"],
        &rows,
    )?;
    for g in &topo.groups {
        for r in &g.routes {
            outln!(
                "route {}: {} -> {} [{}]",
                g.group_name,
                r.from_pipeline,
                r.to_pipeline,
                r.event_types.join(", ")
            )?;
        }
    }
    Ok(())
}
