//! Group commands: create, delete, and placement updates with epoch fencing.

use std::collections::{BTreeMap, BTreeSet};
use varpulis_api::cluster::PipelineGroupSpec;
use varpulis_api::events::ClusterEvent;

use super::{ClusterState, Events};
use crate::command::{Outcome, PlacementAssignment};
use crate::error::Error;
use crate::group::{self, Group, Placement, PlacementStatus};
use crate::migration::MigrationStatus;
use crate::registry::WorkerStatus;

/// Borrowed fields of `Command::UpdatePlacement`.
pub(super) struct PlacementUpdate<'a> {
    pub(super) group_id: &'a str,
    pub(super) pipeline: &'a str,
    pub(super) replica: u32,
    pub(super) epoch: u64,
    pub(super) worker_id: Option<&'a str>,
    pub(super) pipeline_id: Option<&'a str>,
    pub(super) status: PlacementStatus,
    pub(super) error: Option<&'a str>,
}

impl ClusterState {
    pub(super) fn create_group(
        &mut self,
        group_id: &str,
        spec: &PipelineGroupSpec,
        assignments: &[PlacementAssignment],
        next_rr_cursor: Option<u64>,
        created_at_ms: u64,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
        if group_id.trim().is_empty() {
            return Err(Error::InvalidCommand("group_id must not be empty".into()));
        }
        if self.groups.contains_key(group_id) {
            return Err(Error::DuplicateGroupId(group_id.to_string()));
        }
        if self.group_by_name(&spec.name).is_some() {
            return Err(Error::DuplicateGroupName(spec.name.clone()));
        }
        let known_workers = self
            .workers
            .values()
            .filter(|w| w.status != WorkerStatus::Dead)
            .count();
        let routes = group::validate_spec(spec, known_workers)?;

        let mut wanted: BTreeMap<(&str, u32), Option<&str>> = BTreeMap::new();
        for a in assignments {
            let Some(p) = spec.pipelines.iter().find(|p| p.name == a.pipeline_name) else {
                return Err(Error::InvalidCommand(format!(
                    "placement names unknown pipeline '{}'",
                    a.pipeline_name
                )));
            };
            if a.replica >= group::replicas_of(p) {
                return Err(Error::InvalidCommand(format!(
                    "placement names replica {} of '{}', which has {} replicas",
                    a.replica,
                    a.pipeline_name,
                    group::replicas_of(p)
                )));
            }
            if wanted
                .insert(
                    (a.pipeline_name.as_str(), a.replica),
                    a.worker_id.as_deref(),
                )
                .is_some()
            {
                return Err(Error::InvalidCommand(format!(
                    "placement of '{}' replica {} is given twice",
                    a.pipeline_name, a.replica
                )));
            }
        }

        // Assignments the leader made against a slightly older state degrade to Pending
        // (unknown or failing worker, or a second replica on the same worker).
        let mut placements = Vec::new();
        for p in &spec.pipelines {
            let mut used: BTreeSet<&str> = BTreeSet::new();
            for replica in 0..group::replicas_of(p) {
                let worker = wanted
                    .get(&(p.name.as_str(), replica))
                    .copied()
                    .flatten()
                    .filter(|w| self.can_host(w) && !used.contains(w));
                if let Some(w) = worker {
                    used.insert(w);
                }
                placements.push(Placement::new(&p.name, replica, worker.map(str::to_string)));
            }
        }
        let pending = placements.iter().filter(|p| p.worker_id.is_none()).count();
        let seq = self.next_group_seq;
        self.next_group_seq = seq.saturating_add(1);
        if let Some(c) = next_rr_cursor {
            self.rr_cursor = c;
        }
        self.groups.insert(
            group_id.to_string(),
            Group {
                id: group_id.to_string(),
                name: spec.name.clone(),
                spec: spec.clone(),
                routes,
                placements,
                created_at_ms,
                seq,
                version: 1,
            },
        );
        events.push(ClusterEvent::GroupDeployed {
            group_id: group_id.to_string(),
            name: spec.name.clone(),
            version: 1,
            pipelines: spec.pipelines.len(),
            pending,
        });
        Ok(Outcome::GroupCreated {
            group_id: group_id.to_string(),
            pending,
        })
    }

    /// Whether `worker` exists and is in a state that may host placements it is given.
    fn can_host(&self, worker: &str) -> bool {
        self.workers.get(worker).is_some_and(|w| {
            matches!(
                w.status,
                WorkerStatus::Ready | WorkerStatus::Busy | WorkerStatus::Registering
            )
        })
    }

    pub(super) fn delete_group(
        &mut self,
        group_id: &str,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
        let g = self
            .groups
            .remove(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        self.versions.remove(group_id);
        for m in self.migrations.values_mut() {
            if m.group_id == group_id && m.status.is_active() {
                m.status = MigrationStatus::Failed;
                m.error = Some("pipeline group deleted".into());
                m.completed_at_ms = Some(m.updated_at_ms);
            }
        }
        self.prune_migrations();
        events.push(ClusterEvent::GroupDeleted {
            group_id: g.id.clone(),
            name: g.name.clone(),
        });
        Ok(Outcome::GroupDeleted {
            group_id: g.id,
            name: g.name,
        })
    }

    pub(super) fn update_placement(&mut self, u: PlacementUpdate<'_>) -> Result<Outcome, Error> {
        let PlacementUpdate {
            group_id,
            pipeline,
            replica,
            epoch,
            worker_id,
            pipeline_id,
            status,
            error,
        } = u;
        let (g, idx) = self.fenced_placement_ref(group_id, pipeline, replica, epoch)?;
        let p = &g.placements[idx];
        let moving = worker_id.filter(|w| p.worker_id.as_deref() != Some(*w));
        let has_worker = moving.is_some() || p.worker_id.is_some();
        if !has_worker
            && matches!(
                status,
                PlacementStatus::Deploying | PlacementStatus::Running
            )
        {
            return Err(Error::InvalidCommand(format!(
                "'{pipeline}' replica {replica} has no worker and cannot be {status}"
            )));
        }
        if let Some(w) = moving {
            if let Some(m) = self.active_migration_for(group_id, pipeline, replica) {
                return Err(Error::MigrationInProgress(m.id.clone()));
            }
            self.check_target(g, pipeline, replica, w)?;
        }
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        let p = &mut g.placements[idx];
        if let Some(w) = moving {
            p.move_to(Some(w.to_string()));
        }
        if let Some(id) = pipeline_id {
            p.pipeline_id = Some(id.to_string());
        }
        p.status = status;
        p.error = error.map(str::to_string);
        p.program_failed = false;
        Ok(Outcome::PlacementUpdated {
            group_id: group_id.to_string(),
            pipeline_name: pipeline.to_string(),
            replica,
            epoch: p.epoch,
        })
    }

    /// `Command::FailPipeline`: the placement's program failed on its worker.
    pub(super) fn fail_pipeline(
        &mut self,
        (group_id, pipeline, replica): (&str, &str, u32),
        epoch: u64,
        pipeline_id: &str,
        reason: &str,
    ) -> Result<Outcome, Error> {
        let (_, idx) = self.fenced_placement_ref(group_id, pipeline, replica, epoch)?;
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        let p = &mut g.placements[idx];
        if p.pipeline_id.as_deref() != Some(pipeline_id) || p.status == PlacementStatus::Stopped {
            // Redeployed since (another pipeline id) or stopped on purpose: nothing to record.
            return Ok(Outcome::Noop);
        }
        p.status = PlacementStatus::Failed;
        p.error = Some(format!("pipeline failed on its worker: {reason}"));
        p.program_failed = true;
        Ok(Outcome::PlacementUpdated {
            group_id: group_id.to_string(),
            pipeline_name: pipeline.to_string(),
            replica,
            epoch: p.epoch,
        })
    }

    /// The group and index of a placement, or the matching 404.
    /// [`Self::placement_ref`] plus epoch fencing: a command carrying another epoch than the
    /// placement's current one comes from before a move and is refused.
    pub(super) fn fenced_placement_ref(
        &self,
        group_id: &str,
        pipeline: &str,
        replica: u32,
        epoch: u64,
    ) -> Result<(&Group, usize), Error> {
        let (g, idx) = self.placement_ref(group_id, pipeline, replica)?;
        let current = g.placements[idx].epoch;
        if current != epoch {
            return Err(Error::StaleEpoch {
                group: group_id.to_string(),
                pipeline: pipeline.to_string(),
                replica,
                current,
                given: epoch,
            });
        }
        Ok((g, idx))
    }

    pub(super) fn placement_ref(
        &self,
        group_id: &str,
        pipeline: &str,
        replica: u32,
    ) -> Result<(&Group, usize), Error> {
        let g = self
            .groups
            .get(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        let idx = g
            .placement_index(pipeline, replica)
            .ok_or_else(|| Error::UnknownPlacement {
                group: group_id.to_string(),
                pipeline: pipeline.to_string(),
                replica,
            })?;
        Ok((g, idx))
    }

    /// Checks that `worker` may receive `pipeline`/`replica` of `g`.
    pub(super) fn check_target(
        &self,
        g: &Group,
        pipeline: &str,
        replica: u32,
        worker: &str,
    ) -> Result<(), Error> {
        let w = self
            .workers
            .get(worker)
            .ok_or_else(|| Error::UnknownWorker(worker.to_string()))?;
        if !matches!(w.status, WorkerStatus::Ready | WorkerStatus::Busy) {
            return Err(Error::WorkerUnavailable {
                worker: worker.to_string(),
                reason: format!("it is {}", w.status),
            });
        }
        if g.hosts_other_replica(pipeline, replica, worker) {
            return Err(Error::WorkerUnavailable {
                worker: worker.to_string(),
                reason: format!("it already runs another replica of '{pipeline}'"),
            });
        }
        Ok(())
    }
}
