//! `varpulis snapshot`: offline work on backup files written by `varpulis cluster snapshot save`
//! (or `GET /api/v1/cluster/snapshot`).
//!
//! - `status FILE`: verifies the file (magic, format version, checksum, state hash, counts) and
//!   prints its index, hash, cluster id and counts. Exit 0 when the file is sound, 1 when it is
//!   corrupt or unreadable.
//! - `restore FILE --data-dir DIR --raft-node-id N --raft-peers URL1,URL2,URL3 [--force]`: builds
//!   the data dir of node N of a *new* cluster holding the file's state, with the given members as
//!   voters (`varpulis_raft::restore`). Run it once per node, with the same file and peer list,
//!   then start each coordinator normally with the same `--raft-node-id`, `--raft-peers` and
//!   `--data-dir`. A corrupt file is refused; a non-empty DIR is kept unless `--force`. Exit 0
//!   on success, 1 when refused (nothing was written).

use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use varpulis_raft::restore::restore_data_dir;
use varpulis_raft::snapshot_file::{self, SnapshotFile, SnapshotHeader};

use crate::cmd::output::{errln, outln};

/// Flags of `varpulis snapshot`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Verify a backup file (checksum, state hash) and print its index, hash and counts.
    /// Exit 1 when it is corrupt.
    Status {
        /// The backup file.
        file: PathBuf,
        /// Print the header as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a fresh data dir for node N of a new cluster from a backup file (offline).
    Restore(RestoreArgs),
}

/// Flags of `varpulis snapshot restore`.
#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// The backup file.
    file: PathBuf,
    /// The data dir to create (the coordinator's --data-dir).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// This node's id in the new cluster (1-based position in --raft-peers).
    #[arg(long, value_name = "N")]
    raft_node_id: u64,
    /// Every member of the new cluster, comma separated (the same list on every node).
    #[arg(long, value_delimiter = ',', required = true, value_name = "URLS")]
    raft_peers: Vec<String>,
    /// Replace DIR if it already holds data.
    #[arg(long)]
    force: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Status { file, json } => status(&file, json),
        Cmd::Restore(r) => restore(&r),
    }
}

/// Reads and verifies `path`; `None` (after printing why) when it is unusable.
fn load(path: &Path) -> Option<SnapshotFile> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            errln!("error: cannot read {}: {e}", path.display());
            return None;
        }
    };
    match snapshot_file::decode(&bytes) {
        Ok(file) => Some(file),
        Err(e) => {
            errln!("error: {}: {e}", path.display());
            None
        }
    }
}

fn status(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let Some(file) = load(path) else {
        return Ok(ExitCode::from(1));
    };
    if json {
        crate::cmd::output::json(&serde_json::to_value(&file.header)?)?;
    } else {
        print_header(&file.header)?;
        outln!("checksum:        ok")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the header as `key: value` lines.
pub fn print_header(h: &SnapshotHeader) -> std::io::Result<()> {
    let index = h
        .applied_index
        .map_or_else(|| "none".to_string(), |i| i.to_string());
    outln!("format version:  {}", h.format_version)?;
    outln!("cluster id:      {}", h.cluster_id)?;
    outln!("applied index:   {index}")?;
    outln!("state hash:      {}", h.state_hash)?;
    outln!("data bytes:      {}", h.data_bytes)?;
    outln!("workers:         {}", h.counts.workers)?;
    outln!("pipeline groups: {}", h.counts.pipeline_groups)?;
    outln!("connectors:      {}", h.counts.connectors)?;
    outln!("migrations:      {}", h.counts.migrations)?;
    outln!("commands:        {}", h.counts.commands_applied)?;
    outln!(
        "source:          node {} of voters {:?} (varpulis {})",
        h.source_node_id,
        h.source_membership.voters,
        h.varpulis_version
    )?;
    outln!("created (ms):    {}", h.created_at_unix_ms)?;
    Ok(())
}

fn restore(a: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let peers: BTreeMap<u64, String> = a
        .raft_peers
        .iter()
        .map(|p| p.trim().trim_end_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .enumerate()
        .map(|(i, p)| (i as u64 + 1, p))
        .collect();
    let Some(file) = load(&a.file) else {
        errln!("refused: nothing was written");
        return Ok(ExitCode::from(1));
    };
    match restore_data_dir(&file, &a.data_dir, a.raft_node_id, &peers, a.force) {
        Ok(r) => {
            outln!(
                "Restored {} into {} as node {} of {} (new cluster id {}).",
                a.file.display(),
                a.data_dir.display(),
                a.raft_node_id,
                peers.len(),
                r.cluster_id
            )?;
            outln!("applied index:   {}", r.applied_index)?;
            outln!("state hash:      {}", r.state_hash)?;
            outln!(
                "Start it with: varpulis coordinator --raft-node-id {} --raft-peers {} --data-dir {}",
                a.raft_node_id,
                peers.values().cloned().collect::<Vec<_>>().join(","),
                a.data_dir.display()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            errln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Verifies a saved file (used by `cluster snapshot save` before it renames the file).
pub fn verify(path: &Path) -> anyhow::Result<SnapshotHeader> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(snapshot_file::decode(&bytes)
        .with_context(|| format!("the snapshot received is not sound ({})", path.display()))?
        .header)
}
