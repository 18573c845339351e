//! Rolling updates of pipeline groups, driven by the leader from replicated records.
//!
//! `PUT /api/v1/cluster/pipeline-groups/{id}` (and `POST .../rollback`) validate the new VPL,
//! check the state shape, plan one target per replica of each changed pipeline and commit
//! `Rollout::Start`. [`drive`] then takes the rollout to its end, reading only replicated state,
//! so the new leader's loop ([`run`]) resumes a rollout the old leader left half done:
//!
//! Each step is planned by `varpulis_cluster::plan::plan_rollout_step` and carried out by
//! [`crate::leader::executor`]:
//! * `deploying`: deploy the new version next to the old one on the same worker (pipeline id of
//!   the next epoch, so a retried deploy is idempotent), `paused` so it consumes no source yet,
//!   then ask each old pipeline to hand over (worker `POST /api/v1/pipelines/{old}/handover`:
//!   state moved when kept, the old id forwards events from then on, the new pipeline takes the
//!   old one's MQTT/route/NATS sources over), then commit `Switch` — spec, version and
//!   placements change in one entry, so every node routes to the new pipelines from the same
//!   log index. Any failure before the switch takes the handovers back (new → old, state
//!   included), removes the new pipelines and commits `Abort`: the group is unchanged.
//! * `draining`: wait a grace period (1 s) so nodes still routing with an older state reach the
//!   old id (which forwards), stop the old pipelines, commit `Finish`.
//!
//! State compatibility: the old state is carried over only when every changed pipeline keeps
//! the same state shape — the same top-level variables and the same streams with the same
//! operators in the same order (`varpulis_vpl::shape`). Otherwise the update needs
//! `"state": "reset"`.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use varpulis_api::cluster::PipelineGroupSpec;
use varpulis_cluster::plan::deploy::pipeline_id;
use varpulis_cluster::plan::{plan_rollout_step, Action};
use varpulis_cluster::version::{Rollout, RolloutStatus, RolloutTarget, StateMode};
use varpulis_cluster::ClusterState;

use crate::leader::context::LeaderCtx;
use crate::leader::error::{DriveError, LeaderError};
use crate::leader::executor;

/// Why the state of `old` cannot continue in `new` (empty when compatible), each reason
/// prefixed with the pipeline's name (`varpulis_vpl::shape`).
pub fn incompatibilities(pipeline: &str, old: &str, new: &str) -> Vec<String> {
    varpulis_vpl::shape::shape_changes(old, new)
        .into_iter()
        .map(|why| format!("{pipeline}: {why}"))
        .collect()
}

/// Plans a rollout of `group_id` to `spec` (which differs only in the sources of `changed`).
pub fn plan(
    s: &ClusterState,
    group_id: &str,
    spec: PipelineGroupSpec,
    changed: Vec<String>,
    state: StateMode,
    restores: Option<u64>,
    now_ms: u64,
) -> Result<Rollout, LeaderError> {
    let g = s
        .group(group_id)
        .ok_or_else(|| LeaderError::NotFound(format!("pipeline group '{group_id}' not found")))?;
    let mut targets = Vec::new();
    for p in g
        .placements
        .iter()
        .filter(|p| changed.contains(&p.pipeline_name))
    {
        let (Some(worker_id), Some(old_pipeline_id)) = (&p.worker_id, &p.pipeline_id) else {
            return Err(LeaderError::NotRunning(format!(
                "'{}' replica {} is not running on a worker; retry once the group runs",
                p.pipeline_name, p.replica
            )));
        };
        targets.push(RolloutTarget {
            pipeline_name: p.pipeline_name.clone(),
            replica: p.replica,
            worker_id: worker_id.clone(),
            epoch: p.epoch,
            old_pipeline_id: old_pipeline_id.clone(),
            new_pipeline_id: pipeline_id(group_id, &p.pipeline_name, p.replica, p.epoch + 1),
        });
    }
    Ok(Rollout {
        from_version: g.version,
        to_version: g.version + 1,
        spec,
        changed,
        state,
        targets,
        status: RolloutStatus::Deploying,
        restores,
        started_at_ms: now_ms,
    })
}

/// Takes the rollout of `group_id` to its end (or abort). Returns the version reached.
pub async fn drive(ctx: &LeaderCtx, group_id: &str) -> Result<u64, DriveError> {
    if !ctx.start_driving(group_id) {
        return wait_for_end(ctx, group_id).await;
    }
    let result = drive_locked(ctx, group_id).await;
    ctx.stop_driving(group_id);
    result
}

/// Waits (bounded) for another driver of the same rollout to end it.
async fn wait_for_end(ctx: &LeaderCtx, group_id: &str) -> Result<u64, DriveError> {
    for _ in 0..600 {
        let (rollout, version, error) = ctx.store.read(|s| {
            let v = s.group_versions(group_id);
            (
                v.and_then(|v| v.rollout.clone()),
                s.group(group_id).map(|g| g.version),
                v.and_then(|v| v.last_error.clone()),
            )
        });
        match (rollout, version) {
            (None, Some(v)) => {
                return match error {
                    Some(e) => Err(DriveError::Aborted(e)),
                    None => Ok(v),
                }
            }
            (_, None) => return Err(DriveError::Aborted("the group was deleted".into())),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Err(DriveError::Interrupted(LeaderError::NotRunning(
        "the rolling update is still in progress".into(),
    )))
}

async fn drive_locked(ctx: &LeaderCtx, group_id: &str) -> Result<u64, DriveError> {
    loop {
        let view = ctx.view();
        let now_ms = ctx.now_ms();
        let step = ctx
            .store
            .read(|s| plan_rollout_step(s, &view, now_ms, group_id));
        let Some(action) = step.into_iter().next() else {
            let version = ctx.store.read(|s| s.group(group_id).map(|g| g.version));
            return version.ok_or_else(|| DriveError::Aborted("the group was deleted".into()));
        };
        match action {
            Action::RolloutSwitch(step) => executor::rollout_switch(ctx, &step).await?,
            Action::RolloutAbort(abort) => executor::rollout_abort(ctx, &abort).await?,
            Action::RolloutFinish(step) => return executor::rollout_finish(ctx, &step).await,
            other => tracing::warn!(?other, "unexpected rolling update action"),
        }
    }
}

/// Leader loop: resumes every rollout in progress (after a leader change, or an interrupted
/// request), until shutdown.
pub async fn run(ctx: LeaderCtx, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ctx.settings.reconcile_interval) => {}
        }
        if !ctx.store.is_leader() {
            continue;
        }
        let groups: Vec<String> = ctx.store.read(|s| {
            s.active_rollouts()
                .into_iter()
                .map(|(g, _)| g.to_string())
                .collect()
        });
        for group_id in groups {
            if ctx.is_driving(&group_id) {
                continue;
            }
            match drive(&ctx, &group_id).await {
                Ok(version) => tracing::info!(%group_id, version, "resumed rolling update done"),
                Err(DriveError::Aborted(e)) => {
                    tracing::warn!(%group_id, "resumed rolling update aborted: {e}")
                }
                Err(DriveError::Interrupted(e)) => {
                    tracing::debug!(%group_id, "rolling update interrupted: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_pipeline() {
        let why = incompatibilities("p", "stream S = A .emit(v: 1)", "stream T = A .emit(v: 1)");
        assert_eq!(why.len(), 2);
        assert!(why.iter().all(|w| w.starts_with("p: ")), "{why:?}");
        assert!(incompatibilities("p", "var x = 1", "var x = 2").is_empty());
    }
}
