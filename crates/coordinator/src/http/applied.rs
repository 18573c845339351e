//! Waiting until this node has applied a log index (read-your-writes of proxied writes).
//!
//! A follower answers a write it forwarded only once it applied the write itself, so that the
//! client's next read on this node sees it. Waiting on the applied-index `watch` directly
//! wakes *every* waiter on *every* apply: with 64 proxied writes in flight that is 64 task
//! wake-ups (each polling its whole HTTP connection) per applied batch, nearly all of them
//! for nothing. [`AppliedWaiters`] keeps the waiters in a map keyed by the index they wait
//! for; one task follows the watch and wakes exactly the waiters whose index was reached
//! (issue 24 item 3, docs/benchmarks.md "Issue 24: write path (session 10)").

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

type Waiting = BTreeMap<u64, Vec<oneshot::Sender<()>>>;

/// Waiters for applied indexes (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppliedWaiters {
    waiting: Arc<Mutex<Waiting>>,
    applied: watch::Receiver<Option<u64>>,
}

fn reached(applied: Option<u64>, index: u64) -> bool {
    applied.is_some_and(|a| a >= index)
}

impl AppliedWaiters {
    /// Waiters over the applied-index feed `applied`; spawns the task that releases them (it
    /// ends when the feed's sender is gone, releasing everyone as not reached).
    pub fn start(applied: watch::Receiver<Option<u64>>) -> Self {
        let waiters = Self {
            waiting: Arc::default(),
            applied: applied.clone(),
        };
        tokio::spawn(release(applied, waiters.waiting.clone()));
        waiters
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        lock(&self.waiting)
    }

    /// Whether this node has applied `index`, waiting for it at most `patience`.
    pub async fn wait(&self, index: u64, patience: Duration) -> bool {
        let notified = {
            let mut waiting = self.lock();
            // Read under the lock: the release task reads the feed under it too, so a waiter
            // either sees an index or is in the map when the task looks (no lost wake-up).
            if reached(*self.applied.borrow(), index) {
                return true;
            }
            let (tx, rx) = oneshot::channel();
            waiting.entry(index).or_default().push(tx);
            rx
        };
        match tokio::time::timeout(patience, notified).await {
            Ok(released) => released.is_ok(),
            Err(_) => {
                // Gone: drop this waiter's place (and any other abandoned one at that index).
                let mut waiting = self.lock();
                if let Some(senders) = waiting.get_mut(&index) {
                    senders.retain(|s| !s.is_closed());
                    if senders.is_empty() {
                        waiting.remove(&index);
                    }
                }
                reached(*self.applied.borrow(), index)
            }
        }
    }

    /// The last index this node applied.
    pub fn current(&self) -> Option<u64> {
        *self.applied.borrow()
    }

    /// Waiters registered now (for tests).
    pub fn waiting(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

fn lock(waiting: &Mutex<Waiting>) -> MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(|p| p.into_inner())
}

async fn release(mut applied: watch::Receiver<Option<u64>>, waiting: Arc<Mutex<Waiting>>) {
    while applied.changed().await.is_ok() {
        let ready = {
            let mut map = lock(&waiting);
            let Some(index) = *applied.borrow_and_update() else {
                continue;
            };
            match index.checked_add(1) {
                Some(next) => {
                    let later = map.split_off(&next);
                    std::mem::replace(&mut *map, later)
                }
                None => std::mem::take(&mut *map),
            }
        };
        for sender in ready.into_values().flatten() {
            let _ = sender.send(());
        }
    }
    // The node stops: nobody is waiting for anything any more.
    lock(&waiting).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_their_index_is_applied_and_not_before() {
        let (tx, rx) = watch::channel(Some(3));
        let waiters = AppliedWaiters::start(rx);
        assert!(
            waiters.wait(3, Duration::from_secs(1)).await,
            "already applied"
        );
        let early = tokio::spawn({
            let w = waiters.clone();
            async move { w.wait(5, Duration::from_secs(5)).await }
        });
        let late = tokio::spawn({
            let w = waiters.clone();
            async move { w.wait(9, Duration::from_secs(5)).await }
        });
        while waiters.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        tx.send_replace(Some(4));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(waiters.waiting(), 2, "4 releases neither");
        tx.send_replace(Some(6));
        assert!(early.await.unwrap());
        assert_eq!(waiters.waiting(), 1, "only the waiter of 5 was released");
        tx.send_replace(Some(9));
        assert!(late.await.unwrap());
        assert_eq!(waiters.waiting(), 0);
    }

    #[tokio::test]
    async fn a_timed_out_waiter_leaves_no_trace_and_a_stopped_feed_releases_everyone() {
        let (tx, rx) = watch::channel(None);
        let waiters = AppliedWaiters::start(rx);
        assert!(!waiters.wait(1, Duration::from_millis(10)).await);
        assert_eq!(waiters.waiting(), 0);
        let pending = tokio::spawn({
            let w = waiters.clone();
            async move { w.wait(7, Duration::from_secs(30)).await }
        });
        while waiters.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        drop(tx);
        assert!(!pending.await.unwrap(), "released as not reached");
    }
}
