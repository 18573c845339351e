//! Rolling update steps (`Command::Rollout`, records in `crate::version`): start, switch,
//! finish, abort, and the read helpers of group versions.

use varpulis_api::events::ClusterEvent;

use super::{ClusterState, Events};
use crate::command::Outcome;
use crate::error::Error;
use crate::group::PlacementStatus;
use crate::version::GroupVersions;
use crate::version::{
    check_same_shape, check_target_current, conflict, Rollout, RolloutCommand, RolloutStatus,
    StateMode, VersionRecord, MAX_HISTORY,
};

impl ClusterState {
    /// The version history and rollout of a group (`None` when it never changed version).
    pub fn group_versions(&self, group_id: &str) -> Option<&GroupVersions> {
        self.versions.get(group_id)
    }

    /// Every group with a rollout in progress, with that rollout.
    pub fn active_rollouts(&self) -> Vec<(&str, &Rollout)> {
        self.versions
            .iter()
            .filter_map(|(id, v)| v.rollout.as_ref().map(|r| (id.as_str(), r)))
            .collect()
    }

    /// Applies one rollout step (called by `apply`).
    pub(super) fn apply_rollout(
        &mut self,
        cmd: &RolloutCommand,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
        match cmd {
            RolloutCommand::Start { group_id, rollout } => {
                let outcome = self.start_rollout(group_id, rollout)?;
                events.push(ClusterEvent::GroupUpdateStarted {
                    from_version: rollout.from_version,
                    changed: rollout.changed.clone(),
                    state: rollout.state.as_str().to_string(),
                    restores: rollout.restores,
                    group_id: group_id.clone(),
                    version: rollout.to_version,
                });
                Ok(outcome)
            }
            RolloutCommand::Switch {
                group_id,
                version,
                now_ms,
            } => {
                let outcome = self.switch_rollout(group_id, *version, *now_ms)?;
                events.push(ClusterEvent::GroupUpdated {
                    group_id: group_id.clone(),
                    version: *version,
                });
                Ok(outcome)
            }
            RolloutCommand::Finish { group_id, version } => {
                let r = self.rollout_at(group_id, *version)?;
                if r.status != RolloutStatus::Draining {
                    return Err(conflict(format!(
                        "rollout to version {version} has not switched yet"
                    )));
                }
                if let Some(v) = self.versions.get_mut(group_id) {
                    v.rollout = None;
                }
                events.push(ClusterEvent::GroupUpdateFinished {
                    group_id: group_id.clone(),
                    version: *version,
                });
                Ok(rollout_outcome(group_id, *version, "finished"))
            }
            RolloutCommand::Abort {
                group_id,
                version,
                error,
            } => {
                let r = self.rollout_at(group_id, *version)?;
                if r.status != RolloutStatus::Deploying {
                    return Err(conflict(format!(
                        "rollout to version {version} already switched; it can only finish"
                    )));
                }
                if let Some(v) = self.versions.get_mut(group_id) {
                    v.rollout = None;
                    v.last_error = Some(error.clone());
                }
                events.push(ClusterEvent::GroupUpdateAborted {
                    error: error.clone(),
                    group_id: group_id.clone(),
                    version: *version,
                });
                Ok(rollout_outcome(group_id, *version, "aborted"))
            }
        }
    }

    fn rollout_at(&self, group_id: &str, version: u64) -> Result<&Rollout, Error> {
        if !self.groups.contains_key(group_id) {
            return Err(Error::UnknownGroup(group_id.to_string()));
        }
        match self.versions.get(group_id).and_then(|v| v.rollout.as_ref()) {
            Some(r) if r.to_version == version => Ok(r),
            Some(r) => Err(conflict(format!(
                "the rollout in progress goes to version {}, not {version}",
                r.to_version
            ))),
            None => Err(conflict(format!(
                "no rollout in progress for group '{group_id}'"
            ))),
        }
    }

    fn start_rollout(&mut self, group_id: &str, r: &Rollout) -> Result<Outcome, Error> {
        let g = self
            .groups
            .get(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        if let Some(active) = self.versions.get(group_id).and_then(|v| v.rollout.as_ref()) {
            return Err(conflict(format!(
                "a rolling update to version {} is already in progress",
                active.to_version
            )));
        }
        if r.status != RolloutStatus::Deploying {
            return Err(Error::InvalidCommand(
                "a rollout starts in status deploying".into(),
            ));
        }
        if r.from_version != g.version || r.to_version != g.version.saturating_add(1) {
            return Err(conflict(format!(
                "group is at version {}, the update was planned from version {}",
                g.version, r.from_version
            )));
        }
        if let Some(m) = self
            .migrations
            .values()
            .find(|m| m.group_id == group_id && m.status.is_active())
        {
            return Err(Error::MigrationInProgress(m.id.clone()));
        }
        check_same_shape(&g.spec, &r.spec, &r.changed)?;
        if r.changed.is_empty() {
            return Err(Error::InvalidCommand(
                "the update changes no pipeline".into(),
            ));
        }
        let mut expected = 0usize;
        for name in &r.changed {
            expected += g
                .placements
                .iter()
                .filter(|p| &p.pipeline_name == name)
                .count();
        }
        if expected != r.targets.len() {
            return Err(Error::InvalidCommand(format!(
                "the update names {} replicas, the changed pipelines have {expected}",
                r.targets.len()
            )));
        }
        for t in &r.targets {
            if !r.changed.contains(&t.pipeline_name) {
                return Err(Error::InvalidCommand(format!(
                    "target '{}' is not a changed pipeline",
                    t.pipeline_name
                )));
            }
            check_target_current(g, group_id, t)?;
            if t.new_pipeline_id.trim().is_empty() || t.new_pipeline_id == t.old_pipeline_id {
                return Err(Error::InvalidCommand(format!(
                    "target '{}' needs a new pipeline id",
                    t.pipeline_name
                )));
            }
        }
        let first = VersionRecord {
            version: g.version,
            spec: g.spec.clone(),
            changed: Vec::new(),
            state: None,
            restores: None,
            at_ms: g.created_at_ms,
        };
        let entry = self.versions.entry(group_id.to_string()).or_default();
        if entry.history.is_empty() {
            entry.history.push(first);
        }
        entry.rollout = Some(r.clone());
        entry.last_error = None;
        Ok(rollout_outcome(group_id, r.to_version, "started"))
    }

    fn switch_rollout(
        &mut self,
        group_id: &str,
        version: u64,
        now_ms: u64,
    ) -> Result<Outcome, Error> {
        let r = self.rollout_at(group_id, version)?.clone();
        if r.status != RolloutStatus::Deploying {
            return Err(conflict(format!(
                "rollout to version {version} already switched"
            )));
        }
        let g = self
            .groups
            .get(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        for t in &r.targets {
            check_target_current(g, group_id, t)?;
        }
        let g = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.to_string()))?;
        for t in &r.targets {
            let Some(idx) = g.placement_index(&t.pipeline_name, t.replica) else {
                continue;
            };
            let p = &mut g.placements[idx];
            p.move_to(Some(t.worker_id.clone()));
            p.pipeline_id = Some(t.new_pipeline_id.clone());
            p.status = PlacementStatus::Running;
            p.error = None;
            match r.state {
                // The old state continues in the new pipeline: its last checkpoint stays the
                // best restore point until the new one stores its own.
                StateMode::Keep => {
                    if let Some(c) = p.checkpoint.as_mut() {
                        c.epoch = p.epoch;
                    }
                }
                StateMode::Reset => p.checkpoint = None,
            }
        }
        g.spec = r.spec.clone();
        g.version = r.to_version;
        let entry = self.versions.entry(group_id.to_string()).or_default();
        entry.history.push(VersionRecord {
            version: r.to_version,
            spec: r.spec.clone(),
            changed: r.changed.clone(),
            state: Some(r.state),
            restores: r.restores,
            at_ms: now_ms,
        });
        let excess = entry.history.len().saturating_sub(MAX_HISTORY);
        entry.history.drain(..excess);
        if let Some(active) = entry.rollout.as_mut() {
            active.status = RolloutStatus::Draining;
        }
        Ok(rollout_outcome(group_id, version, "switched"))
    }
}

fn rollout_outcome(group_id: &str, version: u64, step: &str) -> Outcome {
    Outcome::RolloutUpdated {
        group_id: group_id.to_string(),
        version,
        step: step.to_string(),
    }
}
