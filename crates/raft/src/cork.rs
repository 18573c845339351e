//! Holding the next proposal while a group of writes that arrived together is still being
//! queued (the writes of one forwarded batch).
//!
//! A follower sends the writes its clients made as one `POST /raft/forward-batch`; the leader
//! runs every item through its API router (concurrently, in one task per batch since session
//! 14; in a task each before), and each reaches the proposal batcher (`batch.rs`) whenever its
//! handler is done. Without a cork the batcher proposes as soon as
//! the first items are queued and the rest wait for the next proposal: measured on the Raft write
//! bench through a follower, a forwarded batch of 39 writes spread over 1.5 proposals on average
//! and took 3.6 ms to answer while a proposal took 1.4 ms (docs/benchmarks.md, "Issue 24: the
//! log in its own files (session 12)").
//!
//! The handler takes one [`Ticket`] per item (`RaftNode::cork_tickets`) and runs each
//! item inside [`with_ticket`]. A ticket is given back when its task's first write is queued
//! (`RaftNode::write`), or when the task ends without writing (a read, a refused
//! request). While tickets are out, the batcher waits before it takes the queued commands, until
//! [`MAX_HOLD`] after the newest tickets were issued, so one forwarded batch becomes one
//! proposal; an item that takes longer (a deploy that talks to workers) holds no later
//! proposal. Nothing else changes: a
//! write is still answered only once committed and applied, and a node without forwarded
//! batches never waits (one atomic load per proposal).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Longest the batcher holds a proposal for outstanding tickets.
pub const MAX_HOLD: Duration = Duration::from_millis(2);

/// Tickets out on one node (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Cork(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    out: AtomicUsize,
    all_back: Notify,
    /// When the newest tickets were issued.
    issued: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Shared {
    fn give_back(&self) {
        if self.out.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_back.notify_waiters();
        }
    }
}

/// One expected write of a group; given back once (when used, or when dropped).
#[derive(Debug)]
pub struct Ticket {
    cork: Arc<Shared>,
    back: AtomicBool,
}

impl Ticket {
    fn give_back(&self) {
        if !self.back.swap(true, Ordering::AcqRel) {
            self.cork.give_back();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.give_back();
    }
}

tokio::task_local! {
    static TICKET: Arc<Ticket>;
}

/// Runs `work` holding `ticket`: its first write queued gives the ticket back (or its end does).
pub async fn with_ticket<F: Future>(ticket: Ticket, work: F) -> F::Output {
    TICKET.scope(Arc::new(ticket), work).await
}

/// Gives back the ticket the current task holds, if any (its write is queued).
pub(crate) fn queued() {
    let _ = TICKET.try_with(|t| t.give_back());
}

impl Cork {
    /// `n` tickets, each expected to be given back soon.
    pub fn tickets(&self, n: usize) -> Vec<Ticket> {
        *self.0.issued.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(tokio::time::Instant::now());
        self.0.out.fetch_add(n, Ordering::AcqRel);
        (0..n)
            .map(|_| Ticket {
                cork: self.0.clone(),
                back: AtomicBool::new(false),
            })
            .collect()
    }

    /// Tickets not given back yet.
    pub fn out(&self) -> usize {
        self.0.out.load(Ordering::Acquire)
    }

    /// Returns once every ticket is back, or `max` after the newest tickets were issued;
    /// whether it waited at all.
    pub async fn wait_back(&self, max: Duration) -> bool {
        if self.out() == 0 {
            return false;
        }
        let issued = *self.0.issued.lock().unwrap_or_else(|p| p.into_inner());
        let Some(deadline) = issued.map(|t| t + max) else {
            return false;
        };
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        loop {
            let notified = self.0.all_back.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.out() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return true;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wait_ends_when_every_ticket_is_used_or_dropped() {
        let cork = Cork::default();
        let mut tickets = cork.tickets(3);
        assert_eq!(cork.out(), 3);
        let used = tickets.pop().unwrap();
        let waiter = tokio::spawn({
            let cork = cork.clone();
            async move {
                let started = tokio::time::Instant::now();
                cork.wait_back(Duration::from_secs(30)).await;
                started.elapsed()
            }
        });
        // Used by its task's write (given back once, even if the task writes again)...
        with_ticket(used, async {
            queued();
            queued();
        })
        .await;
        assert_eq!(cork.out(), 2);
        // ...or dropped without a write.
        drop(tickets.pop());
        assert_eq!(cork.out(), 1);
        assert!(!waiter.is_finished());
        with_ticket(tickets.pop().unwrap(), async {}).await;
        assert_eq!(cork.out(), 0);
        assert!(waiter.await.unwrap() < Duration::from_secs(30));
        // No ticket out: no wait; outside a ticket's task `queued` does nothing.
        queued();
        assert!(!cork.wait_back(Duration::from_secs(30)).await);
    }

    #[tokio::test]
    async fn a_ticket_never_given_back_holds_the_wait_for_its_bound_only() {
        let cork = Cork::default();
        let _kept = cork.tickets(1);
        let started = tokio::time::Instant::now();
        assert!(cork.wait_back(Duration::from_millis(20)).await);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(20), "{waited:?}");
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        // The bound runs from the tickets' issue, not from each wait: a ticket still out
        // holds no later proposal.
        assert!(!cork.wait_back(Duration::from_millis(20)).await);
        // New tickets start a new bound.
        let _next = cork.tickets(1);
        assert!(cork.wait_back(Duration::from_millis(1)).await);
    }
}
