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
//! and form the next, larger batch, which is how the batch size follows the load.
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

use crate::types::{BasicNode, NodeId, Raft};

/// Largest number of commands merged into one log entry.
pub const MAX_BATCH: usize = 256;
/// Proposals (batches or lone commands) outstanding at once. One: openraft appends and flushes
/// proposals one after another, so one large batch commits sooner than several small ones.
pub const MAX_IN_FLIGHT: usize = 1;

/// What `client_write` answers, as seen by one caller.
pub(crate) type ProposeResult =
    Result<CommandResponse, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

/// One queued command and where its answer goes.
struct Pending {
    command: Command,
    reply: oneshot::Sender<ProposeResult>,
}

/// Handle to the batching task; dropping every handle stops it.
#[derive(Debug, Clone)]
pub(crate) struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// Spawns the batching task for `raft` (must run inside a Tokio runtime).
    pub(crate) fn spawn(raft: Raft) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx));
        Self { queue }
    }

    /// Queues `command`; the receiver yields its response once it is committed and applied.
    /// `None` when the batching task is gone (the node is shutting down).
    pub(crate) fn submit(&self, command: Command) -> Option<oneshot::Receiver<ProposeResult>> {
        let (reply, rx) = oneshot::channel();
        self.queue.send(Pending { command, reply }).ok()?;
        Some(rx)
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

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Wait for a free slot first: whatever arrives meanwhile joins this batch.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
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
    match raft.client_write(Command::Batch(commands)).await {
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
        assert!(is_batch(&Command::Batch(vec![])));
        assert!(is_batch(&Command::Batch(vec![]).with_key("k")));
        assert!(!is_batch(&Command::Noop));
        assert!(!is_batch(&Command::Noop.with_key("k")));
    }
}
