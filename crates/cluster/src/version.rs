//! Group versions and rolling updates, as replicated records.
//!
//! A rolling update changes the VPL of some pipelines of a group. Every step is a
//! [`RolloutCommand`] in the log, so a new leader sees exactly how far the previous one got
//! and finishes (or aborts) it:
//!
//! 1. [`RolloutCommand::Start`]: the leader planned one [`RolloutTarget`] per replica of each
//!    changed pipeline — the new version runs next to the old one on the same worker under a
//!    new pipeline id. Refused while another rollout or a migration of the group is active, or
//!    when a target no longer matches its placement (worker, epoch, pipeline id).
//! 2. The leader deploys the new pipelines and hands each old one over to its new one on the
//!    worker (state transferred when kept; the old id forwards to the new one from then on).
//! 3. [`RolloutCommand::Switch`]: the group's spec, version and routes switch atomically; each
//!    target placement now names the new pipeline (epoch + 1, which fences checkpoints of the
//!    old one). The rollout enters `draining`.
//! 4. The leader stops the old pipelines, then [`RolloutCommand::Finish`] clears the rollout.
//!
//! [`RolloutCommand::Abort`] ends a rollout that has not switched yet: nothing of the group
//! changed, and the leader removes the new pipelines it had started.
//!
//! The group keeps a bounded history of its versions ([`MAX_HISTORY`]); a rollback is a rolling
//! update to the spec of an earlier version, recorded as a new version (versions only grow).

use serde::{Deserialize, Serialize};
use varpulis_api::cluster::PipelineGroupSpec;

use crate::error::Error;
use crate::group::{Group, PlacementStatus};

/// Versions kept in a group's history (oldest dropped first).
pub const MAX_HISTORY: usize = 20;

/// What a rolling update does with the state of the pipelines it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateMode {
    /// The new version continues from the old one's state (compatible state shape).
    Keep,
    /// The new version starts empty (asked for explicitly).
    Reset,
}

impl StateMode {
    /// The API name (`keep`, `reset`).
    pub fn as_str(self) -> &'static str {
        match self {
            StateMode::Keep => "keep",
            StateMode::Reset => "reset",
        }
    }
}

/// One replica of a changed pipeline: where the new version starts and which pipeline it
/// replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutTarget {
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Worker running the old version (the new one starts there too).
    pub worker_id: String,
    /// Placement epoch when the rollout was planned.
    pub epoch: u64,
    /// Pipeline id of the old version on the worker.
    pub old_pipeline_id: String,
    /// Pipeline id of the new version on the worker.
    pub new_pipeline_id: String,
}

/// Progress of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// New pipelines are being started and handed over; the group still runs the old version.
    Deploying,
    /// Routes switched; the old pipelines are being stopped.
    Draining,
}

/// A rolling update in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Version the group had when the rollout started.
    pub from_version: u64,
    /// Version the group gets when it switches (`from_version + 1`).
    pub to_version: u64,
    /// The complete new spec (only pipeline sources differ from the current one).
    pub spec: PipelineGroupSpec,
    /// Names of the pipelines whose source changes.
    pub changed: Vec<String>,
    /// State handling.
    pub state: StateMode,
    /// One entry per replica of each changed pipeline.
    pub targets: Vec<RolloutTarget>,
    /// Progress.
    pub status: RolloutStatus,
    /// The version whose spec this restores, for a rollback.
    pub restores: Option<u64>,
    /// When it started (leader's clock).
    pub started_at_ms: u64,
}

/// One version of a group in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Version number.
    pub version: u64,
    /// The spec of that version.
    pub spec: PipelineGroupSpec,
    /// Pipelines changed from the previous version (empty for the first).
    pub changed: Vec<String>,
    /// How state was carried into this version (`None` for the first).
    pub state: Option<StateMode>,
    /// The version whose spec this one restores (rollbacks).
    pub restores: Option<u64>,
    /// When the group switched to it (leader's clock).
    pub at_ms: u64,
}

/// A group's version history and its rollout, if one is in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupVersions {
    /// Versions, oldest first; the last is the current one. At most [`MAX_HISTORY`].
    pub history: Vec<VersionRecord>,
    /// The rollout in progress.
    pub rollout: Option<Rollout>,
    /// Why the last rollout was aborted, if it was.
    pub last_error: Option<String>,
}

/// A replicated rollout step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutCommand {
    /// Starts a rolling update of a group.
    Start {
        /// Group id.
        group_id: String,
        /// The planned rollout (status `Deploying`).
        rollout: Box<Rollout>,
    },
    /// Switches the group to the rollout's version atomically.
    Switch {
        /// Group id.
        group_id: String,
        /// The rollout's `to_version`.
        version: u64,
        /// Leader's clock.
        now_ms: u64,
    },
    /// Clears a drained rollout.
    Finish {
        /// Group id.
        group_id: String,
        /// The rollout's `to_version`.
        version: u64,
    },
    /// Ends a rollout that has not switched; the group keeps its version.
    Abort {
        /// Group id.
        group_id: String,
        /// The rollout's `to_version`.
        version: u64,
        /// Why.
        error: String,
    },
}

impl RolloutCommand {
    /// The group the step is about.
    pub fn group_id(&self) -> &str {
        match self {
            RolloutCommand::Start { group_id, .. }
            | RolloutCommand::Switch { group_id, .. }
            | RolloutCommand::Finish { group_id, .. }
            | RolloutCommand::Abort { group_id, .. } => group_id,
        }
    }
}

/// A [`Error::RolloutConflict`] with `message`.
pub(crate) fn conflict(message: impl Into<String>) -> Error {
    Error::RolloutConflict(message.into())
}

/// The target's placement still is where the rollout found it, and Running (or its program
/// failed there: updating the group is how a failed program is started again).
pub(crate) fn check_target_current(
    g: &Group,
    group_id: &str,
    t: &RolloutTarget,
) -> Result<(), Error> {
    let p = g
        .placement(&t.pipeline_name, t.replica)
        .ok_or_else(|| Error::UnknownPlacement {
            group: group_id.to_string(),
            pipeline: t.pipeline_name.clone(),
            replica: t.replica,
        })?;
    if p.epoch != t.epoch {
        return Err(Error::StaleEpoch {
            group: group_id.to_string(),
            pipeline: t.pipeline_name.clone(),
            replica: t.replica,
            current: p.epoch,
            given: t.epoch,
        });
    }
    if p.worker_id.as_deref() != Some(t.worker_id.as_str()) {
        return Err(Error::WrongWorker {
            expected: t.worker_id.clone(),
            actual: p.worker_id.clone().unwrap_or_default(),
        });
    }
    if p.pipeline_id.as_deref() != Some(t.old_pipeline_id.as_str())
        || !(p.status == PlacementStatus::Running || p.is_program_failed())
    {
        return Err(conflict(format!(
            "'{}' replica {} is not running as '{}' any more",
            t.pipeline_name, t.replica, t.old_pipeline_id
        )));
    }
    Ok(())
}

/// The new spec differs from the current one only in the sources of `changed` pipelines.
pub(crate) fn check_same_shape(
    current: &PipelineGroupSpec,
    new: &PipelineGroupSpec,
    changed: &[String],
) -> Result<(), Error> {
    let bad = |what: &str| Err(Error::InvalidSpec(format!("a rolling update {what}")));
    if current.name != new.name
        || current.routes != new.routes
        || current.placement != new.placement
    {
        return bad("cannot change the group name, routes or placement");
    }
    if current.pipelines.len() != new.pipelines.len() {
        return bad("cannot add or remove pipelines");
    }
    for (old, new) in current.pipelines.iter().zip(&new.pipelines) {
        if old.name != new.name
            || old.replicas != new.replicas
            || old.worker_affinity != new.worker_affinity
            || old.labels != new.labels
        {
            return bad("only changes pipeline sources");
        }
        let is_changed = changed.contains(&old.name);
        if is_changed == (old.source == new.source) {
            return bad("must list exactly the pipelines whose source changes");
        }
        if new.source.trim().is_empty() {
            return bad("cannot give a pipeline an empty source");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, Outcome, PlacementAssignment, RegisterWorker};
    use crate::state::ClusterState;
    use varpulis_api::cluster::PipelineSpec;

    fn spec(source_a: &str) -> PipelineGroupSpec {
        PipelineGroupSpec {
            name: "app".into(),
            pipelines: vec![
                PipelineSpec {
                    name: "a".into(),
                    source: source_a.into(),
                    worker_affinity: None,
                    replicas: None,
                    labels: Default::default(),
                },
                PipelineSpec {
                    name: "b".into(),
                    source: "stream B = Y .emit(v: 2)".into(),
                    worker_affinity: None,
                    replicas: None,
                    labels: Default::default(),
                },
            ],
            routes: vec![],
            placement: None,
        }
    }

    /// A state with one worker and group `g` (pipelines a and b running on w1).
    fn running() -> ClusterState {
        let mut s = ClusterState::new();
        let reg = Command::RegisterWorker(RegisterWorker {
            worker_id: "w1".into(),
            address: "http://w1".into(),
            api_key: "k".into(),
            cpu_cores: 1,
            max_pipelines: 10,
            labels: Default::default(),
            now_ms: 1,
            takeover: None,
        });
        assert!(s.apply(&reg).is_ok());
        let create = Command::CreateGroup {
            group_id: "g".into(),
            spec: spec("stream A = X .emit(v: 1)"),
            placements: ["a", "b"]
                .iter()
                .map(|p| PlacementAssignment {
                    pipeline_name: p.to_string(),
                    replica: 0,
                    worker_id: Some("w1".into()),
                })
                .collect(),
            next_rr_cursor: None,
            created_at_ms: 5,
        };
        assert!(s.apply(&create).is_ok());
        for p in ["a", "b"] {
            let run = Command::UpdatePlacement {
                group_id: "g".into(),
                pipeline_name: p.into(),
                replica: 0,
                epoch: 1,
                worker_id: None,
                pipeline_id: Some(format!("{p}-e1")),
                status: PlacementStatus::Running,
                error: None,
            };
            assert!(s.apply(&run).is_ok());
        }
        s
    }

    fn rollout(state: StateMode) -> Rollout {
        Rollout {
            from_version: 1,
            to_version: 2,
            spec: spec("stream A = X .emit(v: 10)"),
            changed: vec!["a".into()],
            state,
            targets: vec![RolloutTarget {
                pipeline_name: "a".into(),
                replica: 0,
                worker_id: "w1".into(),
                epoch: 1,
                old_pipeline_id: "a-e1".into(),
                new_pipeline_id: "a-e2-v2".into(),
            }],
            status: RolloutStatus::Deploying,
            restores: None,
            started_at_ms: 10,
        }
    }

    fn step(s: &mut ClusterState, cmd: RolloutCommand) -> Result<Outcome, Error> {
        s.apply(&Command::Rollout(cmd)).into_result()
    }

    fn start(s: &mut ClusterState, r: Rollout) -> Result<Outcome, Error> {
        step(
            s,
            RolloutCommand::Start {
                group_id: "g".into(),
                rollout: Box::new(r),
            },
        )
    }

    #[test]
    fn an_update_starts_a_failed_program_again() {
        let mut s = running();
        let failed = Command::FailPipeline {
            group_id: "g".into(),
            pipeline_name: "a".into(),
            replica: 0,
            epoch: 1,
            pipeline_id: "a-e1".into(),
            reason: "budgets".into(),
        };
        assert!(s.apply(&failed).is_ok());
        assert!(s
            .group("g")
            .unwrap()
            .placement("a", 0)
            .unwrap()
            .is_program_failed());
        start(&mut s, rollout(StateMode::Keep)).unwrap();
        step(
            &mut s,
            RolloutCommand::Switch {
                group_id: "g".into(),
                version: 2,
                now_ms: 20,
            },
        )
        .unwrap();
        let a = s.group("g").unwrap().placement("a", 0).unwrap().clone();
        assert_eq!(a.status, PlacementStatus::Running);
        assert!(!a.program_failed && a.error.is_none());
    }

    #[test]
    fn a_rollout_switches_spec_version_and_placement_atomically() {
        let mut s = running();
        start(&mut s, rollout(StateMode::Keep)).unwrap();
        // Nothing of the group changes before the switch.
        let g = s.group("g").unwrap();
        assert_eq!(g.version, 1);
        assert_eq!(
            g.placement("a", 0).unwrap().pipeline_id.as_deref(),
            Some("a-e1")
        );
        assert!(
            start(&mut s, rollout(StateMode::Keep)).is_err(),
            "one at a time"
        );
        step(
            &mut s,
            RolloutCommand::Switch {
                group_id: "g".into(),
                version: 2,
                now_ms: 20,
            },
        )
        .unwrap();
        let g = s.group("g").unwrap();
        assert_eq!(g.version, 2);
        assert_eq!(g.spec.pipelines[0].source, "stream A = X .emit(v: 10)");
        let a = g.placement("a", 0).unwrap();
        assert_eq!(a.pipeline_id.as_deref(), Some("a-e2-v2"));
        assert_eq!(a.epoch, 2);
        assert_eq!(g.placement("b", 0).unwrap().epoch, 1, "b untouched");
        let v = s.group_versions("g").unwrap();
        assert_eq!(v.history.len(), 2);
        assert_eq!(v.rollout.as_ref().unwrap().status, RolloutStatus::Draining);
        assert!(
            step(
                &mut s,
                RolloutCommand::Abort {
                    group_id: "g".into(),
                    version: 2,
                    error: "late".into()
                }
            )
            .is_err(),
            "a switched rollout cannot abort"
        );
        step(
            &mut s,
            RolloutCommand::Finish {
                group_id: "g".into(),
                version: 2,
            },
        )
        .unwrap();
        assert!(s.active_rollouts().is_empty());
    }

    #[test]
    fn an_aborted_rollout_changes_nothing_but_its_record() {
        let mut s = running();
        let before = s.group("g").unwrap().clone();
        start(&mut s, rollout(StateMode::Reset)).unwrap();
        step(
            &mut s,
            RolloutCommand::Abort {
                group_id: "g".into(),
                version: 2,
                error: "deploy failed".into(),
            },
        )
        .unwrap();
        assert_eq!(s.group("g").unwrap(), &before);
        let v = s.group_versions("g").unwrap();
        assert!(v.rollout.is_none());
        assert_eq!(v.last_error.as_deref(), Some("deploy failed"));
    }

    #[test]
    fn stale_or_malformed_rollouts_are_refused() {
        let mut s = running();
        let mut r = rollout(StateMode::Keep);
        r.from_version = 3;
        assert!(start(&mut s, r).is_err());
        let mut r = rollout(StateMode::Keep);
        r.targets[0].epoch = 7;
        assert!(matches!(start(&mut s, r), Err(Error::StaleEpoch { .. })));
        let mut r = rollout(StateMode::Keep);
        r.spec.routes.push(varpulis_api::cluster::RouteSpec {
            from_pipeline: "a".into(),
            to_pipeline: "b".into(),
            event_types: vec!["A".into()],
            mqtt_topic: None,
        });
        assert!(matches!(start(&mut s, r), Err(Error::InvalidSpec(_))));
        let mut r = rollout(StateMode::Keep);
        r.changed = vec!["b".into()];
        assert!(start(&mut s, r).is_err(), "changed list must match");
        let mut r = rollout(StateMode::Keep);
        r.targets.clear();
        assert!(start(&mut s, r).is_err(), "every replica is a target");
        assert!(s.group_versions("g").is_none(), "nothing recorded");
    }

    #[test]
    fn switch_is_fenced_when_a_placement_moved() {
        let mut s = running();
        start(&mut s, rollout(StateMode::Keep)).unwrap();
        // The placement fails and is redeployed at the same epoch with another id.
        let moved = Command::UpdatePlacement {
            group_id: "g".into(),
            pipeline_name: "a".into(),
            replica: 0,
            epoch: 1,
            worker_id: None,
            pipeline_id: Some("other".into()),
            status: PlacementStatus::Running,
            error: None,
        };
        assert!(s.apply(&moved).is_ok());
        let switched = step(
            &mut s,
            RolloutCommand::Switch {
                group_id: "g".into(),
                version: 2,
                now_ms: 1,
            },
        );
        assert!(switched.is_err());
        assert_eq!(s.group("g").unwrap().version, 1);
    }

    #[test]
    fn deleting_a_group_drops_its_versions() {
        let mut s = running();
        start(&mut s, rollout(StateMode::Keep)).unwrap();
        assert!(s
            .apply(&Command::DeleteGroup {
                group_id: "g".into()
            })
            .is_ok());
        assert!(s.group_versions("g").is_none());
        assert!(s.active_rollouts().is_empty());
    }
}
