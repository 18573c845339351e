//! Migration commands: start, progress (target chosen), complete (the placement moves
//! atomically, epoch + 1), fail; finished migrations beyond the cap are pruned.

use varpulis_api::events::ClusterEvent;

use super::{ClusterState, Events, MAX_FINISHED_MIGRATIONS};
use crate::command::Outcome;
use crate::error::Error;
use crate::group::{Group, Placement, PlacementStatus};
use crate::migration::{Migration, MigrationReason, MigrationStatus};

/// Borrowed fields of `Command::StartMigration`.
pub(super) struct StartMigration<'a> {
    pub(super) migration_id: &'a str,
    pub(super) group_id: &'a str,
    pub(super) pipeline_name: &'a str,
    pub(super) replica: u32,
    pub(super) from_worker: &'a str,
    pub(super) to_worker: Option<&'a str>,
    pub(super) reason: MigrationReason,
    pub(super) next_rr_cursor: Option<u64>,
    pub(super) now_ms: u64,
}

impl ClusterState {
    pub(super) fn start_migration(
        &mut self,
        s: StartMigration<'_>,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
        if s.migration_id.trim().is_empty() {
            return Err(Error::InvalidCommand(
                "migration_id must not be empty".into(),
            ));
        }
        if self.migrations.contains_key(s.migration_id) {
            return Err(Error::DuplicateMigration(s.migration_id.to_string()));
        }
        let (g, idx) = self.placement_ref(s.group_id, s.pipeline_name, s.replica)?;
        if let Some(m) = self.active_migration_for(s.group_id, s.pipeline_name, s.replica) {
            return Err(Error::MigrationInProgress(m.id.clone()));
        }
        let p = &g.placements[idx];
        let actual = p.worker_id.as_deref().unwrap_or("");
        if actual != s.from_worker {
            return Err(Error::WrongWorker {
                expected: s.from_worker.to_string(),
                actual: actual.to_string(),
            });
        }
        if let Some(to) = s.to_worker {
            if to == s.from_worker {
                return Err(Error::WorkerUnavailable {
                    worker: to.to_string(),
                    reason: "it is the worker the placement leaves".into(),
                });
            }
            self.check_target(g, s.pipeline_name, s.replica, to)?;
        }
        let epoch = p.epoch;
        let seq = self.next_migration_seq;
        self.next_migration_seq = seq.saturating_add(1);
        if let Some(c) = s.next_rr_cursor {
            self.rr_cursor = c;
        }
        if let Some(g) = self.groups.get_mut(s.group_id) {
            g.placements[idx].status = PlacementStatus::Migrating;
        }
        let status = if s.to_worker.is_some() {
            MigrationStatus::Deploying
        } else {
            MigrationStatus::Pending
        };
        self.migrations.insert(
            s.migration_id.to_string(),
            Migration {
                id: s.migration_id.to_string(),
                group_id: s.group_id.to_string(),
                pipeline_name: s.pipeline_name.to_string(),
                replica: s.replica,
                from_worker: s.from_worker.to_string(),
                to_worker: s.to_worker.map(str::to_string),
                status,
                reason: s.reason,
                epoch_at_start: epoch,
                started_at_ms: s.now_ms,
                updated_at_ms: s.now_ms,
                completed_at_ms: None,
                error: None,
                restored_from_checkpoint: false,
                seq,
            },
        );
        events.push(ClusterEvent::MigrationStarted {
            migration_id: s.migration_id.to_string(),
            group_id: s.group_id.to_string(),
            pipeline: s.pipeline_name.to_string(),
            replica: s.replica,
            from_worker: s.from_worker.to_string(),
            to_worker: s.to_worker.map(str::to_string),
            reason: s.reason.as_str().to_string(),
        });
        Ok(Outcome::MigrationUpdated {
            migration_id: s.migration_id.to_string(),
            status,
            epoch,
        })
    }

    /// The active migration `id` with its placement, or the matching error.
    pub(super) fn active_migration(&self, id: &str) -> Result<(&Migration, &Group, usize), Error> {
        let m = self
            .migrations
            .get(id)
            .ok_or_else(|| Error::UnknownMigration(id.to_string()))?;
        if !m.status.is_active() {
            return Err(Error::MigrationFinished {
                id: id.to_string(),
                status: m.status.to_string(),
            });
        }
        let (g, idx) = self.placement_ref(&m.group_id, &m.pipeline_name, m.replica)?;
        Ok((m, g, idx))
    }

    pub(super) fn progress_migration(
        &mut self,
        id: &str,
        to_worker: &str,
        next_rr_cursor: Option<u64>,
        now_ms: u64,
    ) -> Result<Outcome, Error> {
        let (m, g, idx) = self.active_migration(id)?;
        if to_worker == m.from_worker {
            return Err(Error::WorkerUnavailable {
                worker: to_worker.to_string(),
                reason: "it is the worker the placement leaves".into(),
            });
        }
        self.check_target(g, &m.pipeline_name, m.replica, to_worker)?;
        let epoch = g.placements[idx].epoch;
        if let Some(c) = next_rr_cursor {
            self.rr_cursor = c;
        }
        let m = self
            .migrations
            .get_mut(id)
            .ok_or_else(|| Error::UnknownMigration(id.to_string()))?;
        m.to_worker = Some(to_worker.to_string());
        m.status = MigrationStatus::Deploying;
        m.updated_at_ms = now_ms;
        Ok(Outcome::MigrationUpdated {
            migration_id: id.to_string(),
            status: m.status,
            epoch,
        })
    }

    pub(super) fn complete_migration(
        &mut self,
        id: &str,
        pipeline_id: &str,
        restored: bool,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
        if pipeline_id.trim().is_empty() {
            return Err(Error::InvalidCommand(
                "pipeline_id must not be empty".into(),
            ));
        }
        let (m, g, idx) = self.active_migration(id)?;
        let Some(target) = m.to_worker.clone() else {
            return Err(Error::InvalidCommand(format!(
                "migration '{id}' has no target worker yet"
            )));
        };
        if !self.workers.contains_key(&target) {
            return Err(Error::UnknownWorker(target));
        }
        if g.hosts_other_replica(&m.pipeline_name, m.replica, &target) {
            return Err(Error::WorkerUnavailable {
                worker: target,
                reason: format!("it already runs another replica of '{}'", m.pipeline_name),
            });
        }
        let (p, m) = self.finishing(id, idx)?;
        p.move_to(Some(target));
        p.pipeline_id = Some(pipeline_id.to_string());
        p.status = PlacementStatus::Running;
        p.error = None;
        let epoch = p.epoch;
        m.status = MigrationStatus::Completed;
        m.updated_at_ms = now_ms;
        m.completed_at_ms = Some(now_ms);
        m.restored_from_checkpoint = restored;
        m.error = None;
        self.prune_migrations();
        events.push(ClusterEvent::MigrationCompleted {
            migration_id: id.to_string(),
            epoch,
            restored_from_checkpoint: restored,
        });
        Ok(Outcome::MigrationUpdated {
            migration_id: id.to_string(),
            status: MigrationStatus::Completed,
            epoch,
        })
    }

    pub(super) fn fail_migration(
        &mut self,
        id: &str,
        error: &str,
        now_ms: u64,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
        let (_, _, idx) = self.active_migration(id)?;
        let (p, m) = self.finishing(id, idx)?;
        p.status = PlacementStatus::Failed;
        p.error = Some(error.to_string());
        let epoch = p.epoch;
        m.status = MigrationStatus::Failed;
        m.error = Some(error.to_string());
        m.updated_at_ms = now_ms;
        m.completed_at_ms = Some(now_ms);
        self.prune_migrations();
        events.push(ClusterEvent::MigrationFailed {
            migration_id: id.to_string(),
            error: error.to_string(),
        });
        Ok(Outcome::MigrationUpdated {
            migration_id: id.to_string(),
            status: MigrationStatus::Failed,
            epoch,
        })
    }

    /// Drops the oldest finished migrations beyond [`MAX_FINISHED_MIGRATIONS`].
    /// The placement (at `idx` in its group) and the migration `id`, both to change, once the
    /// migration was validated by [`Self::active_migration`].
    fn finishing(
        &mut self,
        id: &str,
        idx: usize,
    ) -> Result<(&mut Placement, &mut Migration), Error> {
        let m = self
            .migrations
            .get_mut(id)
            .ok_or_else(|| Error::UnknownMigration(id.to_string()))?;
        let g = self
            .groups
            .get_mut(&m.group_id)
            .ok_or_else(|| Error::UnknownGroup(m.group_id.clone()))?;
        let p = g
            .placements
            .get_mut(idx)
            .ok_or_else(|| Error::UnknownPlacement {
                group: m.group_id.clone(),
                pipeline: m.pipeline_name.clone(),
                replica: m.replica,
            })?;
        Ok((p, m))
    }

    pub(super) fn prune_migrations(&mut self) {
        let finished = self
            .migrations
            .values()
            .filter(|m| !m.status.is_active())
            .count();
        if finished <= MAX_FINISHED_MIGRATIONS {
            return;
        }
        let mut old: Vec<(u64, String)> = self
            .migrations
            .values()
            .filter(|m| !m.status.is_active())
            .map(|m| (m.seq, m.id.clone()))
            .collect();
        old.sort();
        for (_, id) in old.into_iter().take(finished - MAX_FINISHED_MIGRATIONS) {
            self.migrations.remove(&id);
        }
    }
}
