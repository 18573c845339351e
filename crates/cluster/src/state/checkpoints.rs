//! `StoreCheckpoint`: the newest checkpoint of a placement, size-capped and epoch-fenced.

use super::{ClusterState, MAX_CHECKPOINT_BYTES};
use crate::command::Outcome;
use crate::error::Error;
use crate::group::Checkpoint;

impl ClusterState {
    pub(super) fn store_checkpoint(
        &mut self,
        group_id: &str,
        pipeline: &str,
        replica: u32,
        checkpoint: Checkpoint,
    ) -> Result<Outcome, Error> {
        let epoch = checkpoint.epoch;
        let size = checkpoint.data.len();
        if size > MAX_CHECKPOINT_BYTES {
            return Err(Error::CheckpointTooLarge {
                size,
                max: MAX_CHECKPOINT_BYTES,
            });
        }
        let (g, idx) = self.fenced_placement_ref(group_id, pipeline, replica, epoch)?;
        let p = &g.placements[idx];
        if let Some(old) = &p.checkpoint {
            if old.epoch == epoch && old.taken_at_ms > checkpoint.taken_at_ms {
                return Err(Error::StaleCheckpoint {
                    stored_ms: old.taken_at_ms,
                });
            }
        }
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        g.placements[idx].checkpoint = Some(checkpoint);
        Ok(Outcome::CheckpointStored {
            group_id: group_id.to_string(),
            pipeline_name: pipeline.to_string(),
            replica,
            size,
        })
    }
}
