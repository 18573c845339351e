//! [`plan_rollout_step`]: the next step of a rolling update (records in `crate::version`).
//!
//! * `deploying`: start every new pipeline next to its old one on the same worker (pipeline id
//!   of the next epoch, so a retried deploy is idempotent), `paused` so it consumes no source
//!   yet; hand each old pipeline over to its new one (state moved when kept, the old id
//!   forwards events from then on); then `Switch` — spec, version and placements change in one
//!   entry. Any failure before the switch takes the hand-overs back, commits `Abort` and
//!   removes the new pipelines: the group is unchanged.
//! * `draining`: wait [`DRAIN_GRACE_MS`] so nodes still routing with an older state reach the
//!   old id (which forwards), stop the old pipelines, commit `Finish`.

use super::deploy::{deploy_job, DeployAt, DeployJob};
use super::{Action, LivenessView};
use crate::command::Command;
use crate::state::ClusterState;
use crate::version::{Rollout, RolloutCommand, RolloutStatus, RolloutTarget, StateMode};

/// Time between the switch and stopping the old pipelines (lets lagging nodes catch up).
pub const DRAIN_GRACE_MS: u64 = 1000;

/// The deploying phase of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSwitch {
    /// Group id.
    pub group_id: String,
    /// The version the group switches to.
    pub version: u64,
    /// Hand the engine state over (`keep`) or not (`reset`).
    pub keep_state: bool,
    /// The new pipelines, paused.
    pub deploys: Vec<DeployJob>,
    /// One per replica of each changed pipeline (old → new pipeline id).
    pub targets: Vec<RolloutTarget>,
    /// The switch, proposed once every hand-over is done.
    pub switch: Command,
}

impl RolloutSwitch {
    /// The abort of this rollout after `handed` were handed over, because of `error`.
    pub fn abort(&self, handed: &[RolloutTarget], error: String) -> RolloutAbort {
        RolloutAbort {
            group_id: self.group_id.clone(),
            version: self.version,
            error,
            hand_back: handed.to_vec(),
            remove: new_pipelines(&self.targets),
        }
    }
}

/// Ending a rollout that has not switched.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutAbort {
    /// Group id.
    pub group_id: String,
    /// The version the rollout was going to.
    pub version: u64,
    /// Why.
    pub error: String,
    /// Targets whose old pipeline already handed over: the new one hands back (state kept).
    pub hand_back: Vec<RolloutTarget>,
    /// The new pipelines to remove once `Abort` is committed: (worker id, pipeline id).
    pub remove: Vec<(String, String)>,
}

impl RolloutAbort {
    /// The `Abort` command.
    pub fn command(&self) -> Command {
        Command::Rollout(RolloutCommand::Abort {
            group_id: self.group_id.clone(),
            version: self.version,
            error: self.error.clone(),
        })
    }
}

/// The draining phase of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutFinish {
    /// Group id.
    pub group_id: String,
    /// The version now running.
    pub version: u64,
    /// How long to wait before stopping the old pipelines.
    pub grace_ms: u64,
    /// The old pipelines: (worker id, pipeline id).
    pub stop: Vec<(String, String)>,
}

impl RolloutFinish {
    /// The `Finish` command.
    pub fn command(&self) -> Command {
        Command::Rollout(RolloutCommand::Finish {
            group_id: self.group_id.clone(),
            version: self.version,
        })
    }
}

fn new_pipelines(targets: &[RolloutTarget]) -> Vec<(String, String)> {
    targets
        .iter()
        .map(|t| (t.worker_id.clone(), t.new_pipeline_id.clone()))
        .collect()
}

/// The new version's deploy of one target, or why it cannot be made.
fn new_deploy(
    state: &ClusterState,
    group_id: &str,
    rollout: &Rollout,
    t: &RolloutTarget,
    mqtt_url: Option<&str>,
) -> Result<DeployJob, String> {
    let source = rollout
        .spec
        .pipelines
        .iter()
        .find(|p| p.name == t.pipeline_name)
        .map(|p| p.source.as_str())
        .ok_or_else(|| format!("pipeline '{}' is not in the new spec", t.pipeline_name))?;
    let placement = state
        .group(group_id)
        .and_then(|g| g.placement(&t.pipeline_name, t.replica));
    let Some(worker_id) = placement.and_then(|p| p.worker_id.as_deref()) else {
        return Err(format!(
            "'{}' replica {} has no worker",
            t.pipeline_name, t.replica
        ));
    };
    let at = DeployAt {
        worker_id,
        epoch: t.epoch.saturating_add(1),
        paused: true,
    };
    let job = deploy_job(
        state,
        (group_id, &t.pipeline_name, t.replica),
        at,
        Some(source),
        mqtt_url,
    )
    .ok_or_else(|| format!("'{}' replica {} has no worker", t.pipeline_name, t.replica))?;
    if job.pipeline_id() != t.new_pipeline_id || job.worker_id != t.worker_id {
        return Err(format!(
            "'{}' replica {} moved since the update started",
            t.pipeline_name, t.replica
        ));
    }
    Ok(job)
}

/// The next step of the rolling update of `group_id` (nothing when none is in progress).
pub fn plan_rollout_step(
    state: &ClusterState,
    live: &LivenessView,
    now_ms: u64,
    group_id: &str,
) -> Vec<Action> {
    let Some(rollout) = state
        .group_versions(group_id)
        .and_then(|v| v.rollout.as_ref())
    else {
        return Vec::new();
    };
    match rollout.status {
        RolloutStatus::Deploying => {
            let mqtt_url = live.policy.mqtt_url.as_deref();
            let mut deploys = Vec::new();
            for t in &rollout.targets {
                match new_deploy(state, group_id, rollout, t, mqtt_url) {
                    Ok(job) => deploys.push(job),
                    Err(error) => {
                        return vec![Action::RolloutAbort(RolloutAbort {
                            group_id: group_id.to_string(),
                            version: rollout.to_version,
                            error,
                            hand_back: Vec::new(),
                            remove: new_pipelines(&rollout.targets),
                        })]
                    }
                }
            }
            vec![Action::RolloutSwitch(RolloutSwitch {
                group_id: group_id.to_string(),
                version: rollout.to_version,
                keep_state: rollout.state == StateMode::Keep,
                deploys,
                targets: rollout.targets.clone(),
                switch: Command::Rollout(RolloutCommand::Switch {
                    group_id: group_id.to_string(),
                    version: rollout.to_version,
                    now_ms,
                }),
            })]
        }
        RolloutStatus::Draining => vec![Action::RolloutFinish(RolloutFinish {
            group_id: group_id.to_string(),
            version: rollout.to_version,
            grace_ms: DRAIN_GRACE_MS,
            stop: rollout
                .targets
                .iter()
                .map(|t| (t.worker_id.clone(), t.old_pipeline_id.clone()))
                .collect(),
        })],
    }
}
