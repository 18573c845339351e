//! `varpulis cluster snapshot save FILE`: an online backup through any coordinator.
//!
//! `GET /api/v1/cluster/snapshot` is asked of the coordinators in turn (a follower forwards it
//! to the leader, which answers from a linearizable point while writes keep committing). The
//! answer is streamed into `FILE.part` next to FILE, verified (checksum, state hash), flushed to
//! disk, then renamed to FILE: FILE is either absent or a complete, sound backup.

use anyhow::Context;
use reqwest::Method;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use super::client::{refusal, transport_reason, Client, ClientError, Refusal};
use crate::cmd::output::{self, outln};

const PATH: &str = "/api/v1/cluster/snapshot";

/// `varpulis cluster snapshot ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCmd {
    /// Save a backup of the replicated state to FILE (verified before it is kept).
    Save {
        /// Where to write the backup.
        file: PathBuf,
    },
}

/// Runs `snapshot`.
pub async fn run(c: &Client, cmd: &SnapshotCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        SnapshotCmd::Save { file } => save(c, file, json).await,
    }
}

async fn save(c: &Client, file: &Path, json: bool) -> anyhow::Result<()> {
    let name = file
        .file_name()
        .with_context(|| format!("bad file name {}", file.display()))?;
    let mut part_name = name.to_os_string();
    part_name.push(".part");
    let part = file.with_file_name(part_name);
    let served_by = match download(c, &part).await {
        Ok(url) => url,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
    };
    let header = match crate::cmd::snapshot::verify(&part) {
        Ok(h) => h,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, file)
        .with_context(|| format!("cannot move {} to {}", part.display(), file.display()))?;
    if json {
        output::json(&serde_json::to_value(&header)?)?;
        return Ok(());
    }
    outln!(
        "Snapshot saved to {} ({} bytes, via {served_by})",
        file.display(),
        std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
    )?;
    crate::cmd::snapshot::print_header(&header)?;
    Ok(())
}

/// Streams the snapshot into `part` from the first coordinator that serves it; its URL.
async fn download(c: &Client, part: &Path) -> anyhow::Result<String> {
    let mut failures = Vec::new();
    let mut last_refusal = None;
    let mut queue = c.urls.clone();
    let mut tried: Vec<String> = Vec::new();
    while !queue.is_empty() {
        let url = queue.remove(0);
        if tried.contains(&url) {
            continue;
        }
        tried.push(url.clone());
        let mut resp = match c.builder(&url, Method::GET, PATH).send().await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{url}: {}", transport_reason(&e)));
                continue;
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            match refusal(&Method::GET, PATH, &url, status, &text) {
                Refusal::TryNext { err, leader } => {
                    if let Some(leader) = leader {
                        queue.insert(0, leader);
                    }
                    last_refusal = Some(err);
                    continue;
                }
                Refusal::Final(err) => return Err(err.into()),
            }
        }
        let mut out = tokio::fs::File::create(part)
            .await
            .with_context(|| format!("cannot create {}", part.display()))?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("the transfer from {url} broke off"))?
        {
            out.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write {}", part.display()))?;
        }
        out.sync_all()
            .await
            .with_context(|| format!("cannot flush {}", part.display()))?;
        return Ok(url);
    }
    if let Some(err) = last_refusal {
        return Err(err.into());
    }
    Err(ClientError::Unreachable {
        method: Method::GET,
        path: PATH.to_owned(),
        details: failures.join("; "),
    }
    .into())
}
