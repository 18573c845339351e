//! Proposal batching (group commit at the proposal layer).
//!
//! openraft 0.9 handles client writes one at a time: each `client_write` becomes its own log
//! entry, and the Raft core waits for that entry's append (our sled `flush_async`) before it looks
//! at the next request. Throughput is then bounded by one fsync per write on the leader.
//!
//! The [`Batcher`] sits in front of `client_write`: concurrent [`RaftNode::write`] calls queue
//! their command, and a single task proposes everything queued as one [`Command::Batch`] entry
//! (one append, one fsync on the leader and on each follower), then hands every caller the
//! response of its own item. A lone command is proposed as is, so an idle node pays nothing.
//! At most [`MAX_IN_FLIGHT`] proposals are outstanding: while they commit, new commands pile up
//! and form the next, larger batch, which is how the batch size follows the load. A batch is
//! also bounded in bytes (`max_bytes`, the serialized size of its commands, measured by the
//! caller when it submits): one log entry stays within one AppendEntries' byte budget, so large
//! commands under load do not merge into entries that take long to replicate. A command larger
//! than the budget on its own is proposed alone.
//!
//! Semantics are those of separate entries: `Batch` applies its items in order, each on its own,
//! and every caller is answered only after the entry holding its command is committed (durable on
//! a quorum) and applied on the leader. Commands that are themselves batches (or wrap one) are
//! not merged, because batches do not nest; they go straight to `client_write`.
//!
//! [`RaftNode::write`]: crate::RaftNode::write

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use varpulis_cluster::{Command, CommandResponse, Outcome};

use crate::cork::Cork;
use crate::types::{BasicNode, NodeId, Raft};

/// Largest number of commands merged into one log entry.
pub const MAX_BATCH: usize = 256;
/// Proposals (batches or lone commands) outstanding at once. One: openraft appends and flushes
/// proposals one after another, so one large batch commits sooner than several small ones.
pub const MAX_IN_FLIGHT: usize = 1;
/// Environment override of [`MAX_IN_FLIGHT`] (1 to 8), a diagnostic for A/B measurements
/// (docs/raft.md), not a tuning knob.
pub const IN_FLIGHT_ENV: &str = "VARPULIS_RAFT_IN_FLIGHT";

/// [`MAX_IN_FLIGHT`], or its override from [`IN_FLIGHT_ENV`].
fn in_flight() -> usize {
    std::env::var(IN_FLIGHT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=8).contains(n))
        .unwrap_or(MAX_IN_FLIGHT)
}
/// Commands that may wait for a proposal at once. Beyond, a write is refused at once (503
/// `overloaded` with `Retry-After`) instead of queueing without bound: at the measured 5–20k
/// commits a second this is about a second of waiting, and memory stays bounded whatever the
/// number of clients (issue 24 item 6).
pub const MAX_QUEUED: usize = 16_384;

/// Why a command was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The batching task is gone (the node is shutting down).
    Stopped,
    /// [`MAX_QUEUED`] commands are waiting already.
    Full,
}

/// Counts the commands queued and refuses one beyond the bound.
#[derive(Debug, Clone)]
struct QueueBound {
    queued: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

impl QueueBound {
    fn new(max: usize) -> Self {
        Self {
            queued: Arc::default(),
            max,
        }
    }

    /// Takes a place in the queue, or `false` when it is full.
    fn enter(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives a place back (the command left the queue).
    fn leave(&self) {
        self.queued
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What `client_write` answers, as seen by one caller.
pub(crate) type ProposeResult =
    Result<CommandResponse, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

/// One queued command and where its answer goes.
struct Pending {
    command: Command,
    /// Serialized size of `command` in bytes.
    bytes: usize,
    reply: oneshot::Sender<ProposeResult>,
}

/// Counts the bytes serde writes, without keeping them.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON size of `command` (what it weighs in the log and on the wire).
pub(crate) fn encoded_len(command: &Command) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, command) {
        Ok(()) => counter.0,
        // Cannot happen for our types; weigh it as too large to share an entry.
        Err(_) => usize::MAX,
    }
}

/// Handle to the batching task; dropping every handle stops it.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
    bound: QueueBound,
}

impl Batcher {
    /// Spawns the batching task for `raft` (must run inside a Tokio runtime); a batch holds at
    /// most `max_bytes` of serialized commands (or one command).
    /// While `cork` has tickets out, a proposal waits for them (at most [`crate::cork::MAX_HOLD`]).
    pub(crate) fn spawn(raft: Raft, max_bytes: usize, cork: Cork) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let bound = QueueBound::new(MAX_QUEUED);
        tokio::spawn(run(raft, rx, max_bytes, bound.clone(), cork));
        Self { queue, bound }
    }

    /// Queues `command`; the receiver yields its response once it is committed and applied.
    /// Refused when the batching task is gone (the node is shutting down) or [`MAX_QUEUED`]
    /// commands wait already. The command is measured here, on the caller's task, not on the
    /// consensus runtime.
    pub(crate) fn submit(
        &self,
        command: Command,
    ) -> Result<oneshot::Receiver<ProposeResult>, Refused> {
        if !self.bound.enter() {
            return Err(Refused::Full);
        }
        let (reply, rx) = oneshot::channel();
        let bytes = encoded_len(&command);
        let sent = self.queue.send(Pending {
            command,
            bytes,
            reply,
        });
        if sent.is_err() {
            self.bound.leave();
            return Err(Refused::Stopped);
        }
        Ok(rx)
    }
}

/// Whether `command` cannot be an item of a batch (batches do not nest).
pub(crate) fn is_batch(command: &Command) -> bool {
    match command {
        Command::Batch(_) => true,
        Command::Idempotent { command, .. } => is_batch(command),
        _ => false,
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    max_bytes: usize,
    bound: QueueBound,
    cork: Cork,
) {
    let permits = Arc::new(Semaphore::new(in_flight()));
    // A command that did not fit the previous batch opens the next one.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => {
                    bound.leave();
                    p
                }
                None => break,
            },
        };
        // Wait for a free slot first: whatever arrives meanwhile joins this batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // The rest of a forwarded batch is on its way: let it join this proposal.
        cork.wait_back(crate::cork::MAX_HOLD).await;
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) if bytes.saturating_add(p.bytes) > max_bytes => {
                    bound.leave();
                    carried = Some(p);
                    break;
                }
                Ok(p) => {
                    bound.leave();
                    bytes = bytes.saturating_add(p.bytes);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn propose(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let res = raft.client_write(p.command).await.map(|r| r.data);
            // A caller that gave up (timeout) no longer listens: nothing to do.
            let _ = p.reply.send(res);
        }
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<oneshot::Sender<ProposeResult>>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let count = commands.len();
    match raft.client_write(Command::batch(commands)).await {
        Ok(resp) => match resp.data.result {
            Ok(Outcome::Batch(items)) if items.len() == count => {
                for (reply, item) in replies.into_iter().zip(items) {
                    let _ = reply.send(Ok(item));
                }
            }
            other => {
                // Cannot happen with a well-formed batch; answer every caller rather than hang.
                tracing::error!(?other, count, "unexpected answer to a proposal batch");
                let response = CommandResponse::err(varpulis_cluster::Error::InvalidCommand(
                    "unexpected answer to a proposal batch".into(),
                ));
                for reply in replies {
                    let _ = reply.send(Ok(response.clone()));
                }
            }
        },
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_keyed_batches_are_not_merged() {
        assert!(is_batch(&Command::batch(vec![])));
        assert!(is_batch(&Command::batch(vec![]).with_key("k")));
        assert!(!is_batch(&Command::Noop));
        assert!(!is_batch(&Command::Noop.with_key("k")));
    }

    #[test]
    fn the_queue_refuses_beyond_its_bound_and_frees_places() {
        let bound = QueueBound::new(2);
        assert!(bound.enter());
        assert!(bound.enter());
        assert!(!bound.enter(), "a third command is refused");
        assert!(!bound.enter(), "and stays refused while the queue is full");
        bound.leave();
        assert!(bound.enter(), "a place freed is taken again");
        assert!(!bound.enter());
    }

    #[test]
    fn commands_are_weighed_by_their_json_size() {
        let cmd = Command::DeleteConnector {
            name: "x".repeat(1000),
        };
        let exact = serde_json::to_vec(&cmd).map(|v| v.len()).unwrap_or(0);
        assert_eq!(encoded_len(&cmd), exact);
        assert!(exact > 1000);
    }
}
