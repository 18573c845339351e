//! A pipeline's state as bytes: checkpoint and restore, on its engine thread (queued behind
//! the events before them, so a checkpoint is a consistent point of the event stream).
//! After a hand-over both go to the new version.

use super::Pipeline;
use crate::error::WorkerError;
use base64::Engine as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use varpulis_api::worker::Checkpoint;

/// Format version of `Checkpoint::state` (the base64 of the runtime's checksummed bytes).
pub const CHECKPOINT_VERSION: u32 = 1;

impl Pipeline {
    /// The engine state and the number of events it reflects.
    pub async fn checkpoint(self: &Arc<Self>) -> Result<(Vec<u8>, u64), WorkerError> {
        let target = self.processing_target();
        let p = target.clone();
        target
            .on_engine_thread(move || p.checkpoint_now())
            .await?
            .map_err(WorkerError::Internal)
    }

    /// [`Pipeline::checkpoint`] as the API's `Checkpoint` (what `POST .../checkpoint` answers
    /// and `--state-dir` stores).
    pub async fn checkpoint_record(self: &Arc<Self>) -> Result<Checkpoint, WorkerError> {
        let (bytes, events_processed) = self.checkpoint().await?;
        Ok(Checkpoint {
            pipeline_id: self.id.clone(),
            events_processed,
            version: CHECKPOINT_VERSION,
            state: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// Replaces the engine state and the processed-events counter (rejects corrupt bytes and
    /// another program's state with `BadCheckpoint`).
    pub async fn restore(
        self: &Arc<Self>,
        state: Vec<u8>,
        events_processed: u64,
    ) -> Result<(), WorkerError> {
        let target = self.processing_target();
        let p = target.clone();
        target
            .on_engine_thread(move || p.restore_now(&state, events_processed))
            .await?
            .map_err(WorkerError::BadCheckpoint)
    }

    /// [`Pipeline::checkpoint`] on the calling thread (blocks while the engine runs).
    pub fn checkpoint_now(&self) -> Result<(Vec<u8>, u64), String> {
        if let Some(next) = self.forward_target() {
            return next.checkpoint_now();
        }
        let slot = self.lock_engine();
        let bytes = slot.engine.checkpoint()?;
        Ok((bytes, self.counters.events_in.load(Ordering::Relaxed)))
    }

    /// [`Pipeline::restore`] on the calling thread (blocks while the engine runs).
    pub fn restore_now(&self, state: &[u8], events_processed: u64) -> Result<(), String> {
        if let Some(next) = self.forward_target() {
            return next.restore_now(state, events_processed);
        }
        self.lock_engine().engine.restore(state)?;
        self.counters
            .events_in
            .store(events_processed, Ordering::Relaxed);
        Ok(())
    }
}
