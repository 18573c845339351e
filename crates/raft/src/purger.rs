//! Deleting purged log entries off the consensus path.
//!
//! openraft's core awaits `RaftLogStorage::purge` inside its command loop: while it waits, the
//! node sends no heartbeat (leader) and answers no AppendEntries (follower). A purge after a
//! snapshot deletes thousands of entries (`snapshot_logs_since_last`, 5,000 by default), and
//! deleting them, then flushing, on the consensus runtime's only thread stalled the core under
//! write load long enough for a pre-vote to win (docs/benchmarks.md, "Issue 24: snapshots
//! under load (session 11)").
//!
//! The log store records the purge point (in memory first), then hands the rest to the
//! [`Purger`]: a background task flushes (so the purge point is durable) and only then deletes
//! the entries below it on the blocking pool, in batches of [`BATCH`] keys so that appends
//! interleave. Purges run one at a time, in order. A crash before the flush leaves the old purge
//! point and every entry; a crash after it leaves entries below the durable purge point, which
//! readers never ask for and the next purge deletes: never a hole.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::flusher::Flusher;

/// Keys deleted per sled batch.
const BATCH: usize = 1024;

/// Runs purges in the background, one at a time (cheap to clone: clones share the queue).
#[derive(Debug, Clone, Default)]
pub(crate) struct Purger {
    /// Held by the running purge; a new purge takes it before it is spawned, so purges keep
    /// their order and [`Purger::settled`] sees every purge requested before it.
    running: Arc<Mutex<()>>,
}

impl Purger {
    /// Deletes the keys of `log` below `end` (big-endian log indexes) once a flush made the
    /// purge point durable. Returns once the purge is queued; waits only while an earlier
    /// purge is still deleting.
    pub(crate) async fn delete_below(&self, log: sled::Tree, flusher: Flusher, end: u64) {
        let guard = self.running.clone().lock_owned().await;
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = flusher.flush().await {
                // The purge point is not durable: keep the entries (the next purge retries).
                tracing::warn!("purge: flush failed, entries kept: {e}");
                return;
            }
            let started = std::time::Instant::now();
            let deleted = tokio::task::spawn_blocking(move || delete_range(&log, end)).await;
            match deleted {
                Ok(Ok(n)) => tracing::debug!(
                    below = end,
                    deleted = n,
                    "purge: entries deleted in {:?}",
                    started.elapsed()
                ),
                Ok(Err(e)) => tracing::warn!("purge: cannot delete entries below {end}: {e}"),
                Err(e) => tracing::warn!("purge: deletion task failed: {e}"),
            }
        });
    }

    /// Waits until every purge queued before this call has finished.
    pub(crate) async fn settled(&self) {
        drop(self.running.lock().await);
    }
}

/// Deletes the keys below `end` in batches of [`BATCH`]; returns how many were deleted.
fn delete_range(log: &sled::Tree, end: u64) -> sled::Result<usize> {
    let mut deleted = 0;
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in log.range(..end.to_be_bytes()).take(BATCH) {
            let (key, _) = item?;
            batch.remove(key);
            n += 1;
        }
        if n == 0 {
            return Ok(deleted);
        }
        log.apply_batch(batch)?;
        deleted += n;
    }
}
