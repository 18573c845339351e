//! Deleting purged log segments off the consensus path.
//!
//! openraft's core awaits `RaftLogStorage::purge` inside its command loop: while it waits, the
//! node sends no heartbeat (leader) and answers no AppendEntries (follower). A purge after a
//! snapshot once deleted thousands of sled keys there and stalled the core under write load long
//! enough for a pre-vote to win (docs/benchmarks.md, "Issue 24: snapshots under load (session
//! 11)"); since the log lives in segment files ([`crate::wal`]) a purge deletes whole files, but
//! the purge point must still be durable first, and that flush is not the core's to wait for.
//!
//! The log store records the purge point (in memory first) and takes the segments wholly below
//! it out of the log, then hands their files to the [`Purger`]: a background task flushes (so the
//! purge point is durable) and only then deletes the files on the blocking pool. Purges run one
//! at a time, in order. A crash before the flush leaves the old purge point and every file; a
//! crash after it leaves files below the durable purge point, which opening the log deletes:
//! never a hole.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::flusher::Flusher;

/// Runs purges in the background, one at a time (cheap to clone: clones share the queue).
#[derive(Debug, Clone, Default)]
pub(crate) struct Purger {
    /// Held by the running purge; a new purge takes it before it is spawned, so purges keep
    /// their order and [`Purger::settled`] sees every purge requested before it.
    running: Arc<Mutex<()>>,
}

impl Purger {
    /// Deletes `files` (segments holding only purged entries) once a flush made the purge point
    /// durable. Returns once the purge is queued; waits only while an earlier purge is still
    /// deleting. Nothing to delete: nothing is spawned (the purge point rides along with the
    /// next flush; losing it only keeps entries a while longer).
    pub(crate) async fn delete_files(&self, flusher: Flusher, files: Vec<PathBuf>) {
        if files.is_empty() {
            return;
        }
        let guard = self.running.clone().lock_owned().await;
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = flusher.flush().await {
                tracing::warn!("purge: flush failed, segments kept: {e}");
                return;
            }
            let started = std::time::Instant::now();
            let deleted = tokio::task::spawn_blocking(move || {
                let mut n = 0;
                for path in &files {
                    match std::fs::remove_file(path) {
                        Ok(()) => n += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!(
                            "purge: cannot delete {}: {e} (deleted at the next open)",
                            path.display()
                        ),
                    }
                }
                n
            })
            .await;
            match deleted {
                Ok(n) => tracing::debug!(
                    deleted = n,
                    "purge: segments deleted in {:?}",
                    started.elapsed()
                ),
                Err(e) => tracing::warn!("purge: deletion task failed: {e}"),
            }
        });
    }

    /// Waits until every purge requested so far has finished deleting.
    pub(crate) async fn settled(&self) {
        drop(self.running.lock().await);
    }
}
