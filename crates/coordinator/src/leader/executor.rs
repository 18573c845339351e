//! Carries out the leader's planned actions (`varpulis_cluster::plan`): proposes commands,
//! calls workers through the worker client, and records the results through Raft.
//!
//! Planners decide; this module only acts. It gives new migrations their ids, fences every
//! result with the epoch the plan was made against (a stale result is refused by the state
//! machine), retries deploys with the reconciler's [`Backoff`], and logs what it cannot do:
//! nothing here is lost by a failure, since the next plan sees the same replicated state.

use std::time::Duration;
use tokio::time::Instant;
use varpulis_api::worker::{Checkpoint, HandoverRequest};
use varpulis_cluster::migration::MigrationReason;
use varpulis_cluster::placement::PlannedMigration;
use varpulis_cluster::plan::{
    Action, CheckpointJob, DeployJob, LiveSource, MigrationJob, RolloutAbort, RolloutFinish,
    RolloutSwitch,
};
use varpulis_cluster::version::RolloutTarget;
use varpulis_cluster::{Command, PlacementStatus};

use crate::leader::backoff::Backoff;
use crate::leader::context::LeaderCtx;
use crate::leader::error::{DriveError, LeaderError};
use crate::metrics::Metrics;
use crate::transport::worker_client::WorkerRef;

/// Failed deploy attempts after which a migration is declared failed.
pub const MIGRATION_ATTEMPTS: u32 = 3;

/// The worker `id` as registered now.
fn worker(ctx: &LeaderCtx, id: &str) -> Option<WorkerRef> {
    ctx.store.read(|s| WorkerRef::find(s, id))
}

/// What [`run`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Migrations started, with their new ids.
    pub started: Vec<(String, PlannedMigration)>,
    /// Deploys (placements and migrations) that succeeded.
    pub deployed: usize,
}

/// Carries out `actions` in order, logging failures; deploys and migrations back off per
/// decision with `backoff` (a decision still backing off is skipped).
pub async fn run(ctx: &LeaderCtx, actions: Vec<Action>, backoff: &mut Backoff) -> Report {
    let mut report = Report::default();
    for action in actions {
        match action {
            Action::Propose(command) => {
                let name = command.name();
                if let Err(err) = ctx.store.write(command).await {
                    tracing::warn!(command = name, "cannot apply a planned command: {err}");
                }
            }
            Action::StartMigration { planned, reason } => {
                if let Some(id) = start_migration(ctx, &planned, reason).await {
                    report.started.push((id, planned));
                }
            }
            Action::Deploy(job) => {
                let key = format!(
                    "{}/{}/{}/{}",
                    job.group_id, job.pipeline_name, job.replica, job.epoch
                );
                if !backoff.ready(&key, Instant::now()) {
                    continue;
                }
                if deploy_and_record(ctx, &job).await {
                    backoff.succeeded(&key);
                    report.deployed += 1;
                } else {
                    backoff.failed(key, Instant::now());
                }
            }
            Action::Migrate(job) => {
                if migrate(ctx, &job, backoff).await {
                    report.deployed += 1;
                }
            }
            Action::Undeploy {
                worker_id,
                pipeline_id,
            } => {
                undeploy(ctx, &worker_id, &pipeline_id).await;
            }
            Action::Checkpoint(job) => {
                checkpoint(ctx, &job).await;
            }
            Action::SetRebalanceWanted(wanted) => ctx.rebalance.set(wanted),
            Action::RolloutSwitch(step) => {
                if let Err(e) = rollout_switch(ctx, &step).await {
                    tracing::debug!(group_id = %step.group_id, "rolling update step: {e:?}");
                }
            }
            Action::RolloutAbort(abort) => {
                let _ = rollout_abort(ctx, &abort).await;
            }
            Action::RolloutFinish(step) => {
                if let Err(e) = rollout_finish(ctx, &step).await {
                    tracing::debug!(group_id = %step.group_id, "rolling update step: {e:?}");
                }
            }
        }
    }
    report
}

/// Proposes `StartMigration` for `planned` with a new id; returns the id once committed.
pub async fn start_migration(
    ctx: &LeaderCtx,
    planned: &PlannedMigration,
    reason: MigrationReason,
) -> Option<String> {
    let id = ctx.new_id();
    let command = planned.to_command(&id, reason, ctx.now_ms());
    match ctx.store.write(command).await {
        Ok(_) => {
            tracing::info!(
                migration = %id, group_id = %planned.group_id, pipeline = %planned.pipeline_name,
                from = %planned.from_worker, to = ?planned.to_worker, reason = reason.as_str(),
                "migration started"
            );
            Some(id)
        }
        Err(err) => {
            tracing::warn!(
                group_id = %planned.group_id, pipeline = %planned.pipeline_name,
                reason = reason.as_str(), "cannot start migration: {err}"
            );
            None
        }
    }
}

/// Sends a deploy to its worker; returns the pipeline id it runs under, or why not.
pub async fn deploy(ctx: &LeaderCtx, job: &DeployJob) -> Result<String, String> {
    // At most `deploy_concurrency` calls in flight on this leader; the semaphore is never closed.
    let _permit = ctx
        .deploys
        .acquire()
        .await
        .map_err(|_| "the leader is shutting down".to_string())?;
    let worker =
        worker(ctx, &job.worker_id).ok_or_else(|| format!("worker '{}' is gone", job.worker_id))?;
    ctx.workers
        .deploy(&worker, &job.request)
        .await
        .map_err(|e| e.to_string())
}

/// Deploys a placement and records `Running` or `Failed` through Raft at the job's epoch (a
/// result about a placement that moved meanwhile is refused: fencing). Returns whether it runs.
pub async fn deploy_and_record(ctx: &LeaderCtx, job: &DeployJob) -> bool {
    let result = deploy(ctx, job).await;
    let (status, pipeline_id, error) = match &result {
        Ok(id) => (PlacementStatus::Running, Some(id.clone()), None),
        Err(message) => {
            Metrics::inc(&ctx.metrics.deploy_failures);
            tracing::warn!(group = %job.group_name, pipeline = %job.pipeline_name, "deploy failed: {message}");
            (PlacementStatus::Failed, None, Some(message.clone()))
        }
    };
    let command = Command::UpdatePlacement {
        group_id: job.group_id.clone(),
        pipeline_name: job.pipeline_name.clone(),
        replica: job.replica,
        epoch: job.epoch,
        worker_id: Some(job.worker_id.clone()),
        pipeline_id,
        status,
        error,
    };
    match ctx.store.write(command).await {
        Ok(_) => result.is_ok(),
        Err(err) => {
            tracing::warn!(group = %job.group_name, pipeline = %job.pipeline_name, "cannot record deploy result: {err}");
            false
        }
    }
}

/// Best-effort delete of a pipeline on a worker; a 404 counts as done.
pub async fn undeploy(ctx: &LeaderCtx, worker_id: &str, pipeline_id: &str) -> bool {
    let Some(worker) = worker(ctx, worker_id) else {
        return false;
    };
    match ctx.workers.undeploy(&worker, pipeline_id).await {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(%pipeline_id, "undeploy failed: {err}");
            false
        }
    }
}

/// Asks a worker for a pipeline's checkpoint.
async fn fetch(ctx: &LeaderCtx, worker_id: &str, pipeline_id: &str) -> Option<Checkpoint> {
    let worker = worker(ctx, worker_id)?;
    match ctx.workers.checkpoint(&worker, pipeline_id).await {
        Ok(cp) => Some(cp),
        Err(err) => {
            tracing::debug!(%pipeline_id, "checkpoint refused: {err}");
            None
        }
    }
}

/// Stores `cp` as the checkpoint of a placement at `epoch`.
async fn store(
    ctx: &LeaderCtx,
    placement: (&str, &str, u32),
    epoch: u64,
    cp: &Checkpoint,
) -> Result<(), LeaderError> {
    let (group_id, pipeline_name, replica) = placement;
    let data = serde_json::to_string(cp).map_err(|e| LeaderError::Invalid(e.to_string()))?;
    let command = Command::StoreCheckpoint {
        group_id: group_id.to_string(),
        pipeline_name: pipeline_name.to_string(),
        replica,
        epoch,
        checkpoint: data,
        events_processed: cp.events_processed,
        taken_at_ms: ctx.now_ms(),
    };
    ctx.store.write(command).await.map(|_| ())
}

/// Takes a running placement's checkpoint and stores it, unless its event count has not moved
/// since the stored one. Returns whether one was stored.
pub async fn checkpoint(ctx: &LeaderCtx, job: &CheckpointJob) -> bool {
    let Some(cp) = fetch(ctx, &job.worker_id, &job.pipeline_id).await else {
        return false;
    };
    if job.stored_events == Some(cp.events_processed) {
        return false;
    }
    let placement = (
        job.group_id.as_str(),
        job.pipeline_name.as_str(),
        job.replica,
    );
    match store(ctx, placement, job.epoch, &cp).await {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(pipeline = %job.pipeline_name, "checkpoint not stored: {err}");
            false
        }
    }
}

/// Takes a fresh checkpoint of a live source and stores it in Raft at its epoch, so a new
/// leader restores the same state; returns it (also when storing failed, e.g. over the cap:
/// the migration can still ship it).
pub async fn take_fresh(
    ctx: &LeaderCtx,
    placement: (&str, &str, u32),
    source: &LiveSource,
) -> Option<Checkpoint> {
    let cp = fetch(ctx, &source.worker_id, &source.pipeline_id).await?;
    if let Err(err) = store(ctx, placement, source.epoch, &cp).await {
        tracing::warn!(pipeline = %placement.1, "fresh checkpoint not stored: {err}");
    }
    Some(cp)
}

/// Carries out a migration: a fresh checkpoint from a live source (the stored one otherwise),
/// the deploy on the target, then `CompleteMigration` and the removal of the source pipeline
/// — or, after [`MIGRATION_ATTEMPTS`] failed deploys (backing off in between),
/// `FailMigration`. Returns whether the deploy succeeded.
pub async fn migrate(ctx: &LeaderCtx, job: &MigrationJob, backoff: &mut Backoff) -> bool {
    let id = &job.migration_id;
    if !backoff.ready(id, Instant::now()) {
        return false;
    }
    let mut deploy_job = job.deploy.clone();
    if let Some(source) = &job.source {
        let placement = (
            deploy_job.group_id.as_str(),
            deploy_job.pipeline_name.as_str(),
            deploy_job.replica,
        );
        match take_fresh(ctx, placement, source).await {
            Some(cp) => deploy_job.request.checkpoint = Some(cp),
            None => tracing::warn!(
                migration = %id, "no fresh checkpoint from the source; using the stored one"
            ),
        }
    }
    if job.source.is_none() {
        stop_old_copy(ctx, &deploy_job).await;
    }
    let deployed = deploy(ctx, &deploy_job).await;
    let succeeded = deployed.is_ok();
    let command = match deployed {
        Ok(pipeline_id) => {
            backoff.succeeded(id);
            Command::CompleteMigration {
                migration_id: id.clone(),
                pipeline_id,
                restored_from_checkpoint: deploy_job.request.checkpoint.is_some(),
                now_ms: ctx.now_ms(),
            }
        }
        Err(error) => {
            tracing::warn!(migration = %id, to = %deploy_job.worker_id, "migration deploy failed: {error}");
            if backoff.failed(id.clone(), Instant::now()) < MIGRATION_ATTEMPTS {
                return false;
            }
            backoff.succeeded(id);
            Command::FailMigration {
                migration_id: id.clone(),
                error,
                now_ms: ctx.now_ms(),
            }
        }
    };
    match ctx.store.write(command).await {
        Ok(_) => {
            tracing::info!(migration = %id, to = %deploy_job.worker_id, "migration finished");
            if let Some(source) = job.source.as_ref().filter(|_| succeeded) {
                // The placement moved (epoch + 1): the old copy must not keep running.
                if !undeploy(ctx, &source.worker_id, &source.pipeline_id).await {
                    tracing::info!(migration = %id, "old pipeline not removed now; the orphan sweep will");
                }
            }
        }
        Err(err) => tracing::warn!(migration = %id, "cannot record migration result: {err}"),
    }
    succeeded
}

/// Longest wait for the best-effort stop of a failed-over placement's old copy.
const STOP_OLD_COPY_WAIT: Duration = Duration::from_secs(1);

/// Best effort, before a failover deploys elsewhere: the old worker is unhealthy (its lease has
/// expired, so it has fenced itself if it is alive) but may still answer this leader; it is
/// asked to delete the old copy, waiting at most [`STOP_OLD_COPY_WAIT`]. Whether it answers or
/// not, the move goes on; a copy that survives is removed when the worker heartbeats again.
async fn stop_old_copy(ctx: &LeaderCtx, job: &DeployJob) {
    let old = ctx.store.read(|s| {
        let p = s
            .group(&job.group_id)?
            .placement(&job.pipeline_name, job.replica)?;
        Some((p.worker_id.clone()?, p.pipeline_id.clone()?))
    });
    let Some((worker_id, pipeline_id)) = old.filter(|(w, _)| *w != job.worker_id) else {
        return;
    };
    match tokio::time::timeout(STOP_OLD_COPY_WAIT, undeploy(ctx, &worker_id, &pipeline_id)).await {
        Ok(true) => tracing::info!(%worker_id, %pipeline_id, "old copy stopped before the move"),
        _ => tracing::debug!(%worker_id, %pipeline_id, "old copy unreachable; moving anyway"),
    }
}

/// Asks the old pipeline of `t` (or the new one, `back`) to hand over to the other.
async fn handover(
    ctx: &LeaderCtx,
    t: &RolloutTarget,
    back: bool,
    keep: bool,
) -> Result<(), String> {
    let (from, to) = if back {
        (&t.new_pipeline_id, &t.old_pipeline_id)
    } else {
        (&t.old_pipeline_id, &t.new_pipeline_id)
    };
    let worker =
        worker(ctx, &t.worker_id).ok_or_else(|| format!("worker '{}' is gone", t.worker_id))?;
    let request = HandoverRequest {
        to: to.to_string(),
        state: Some(if keep { "keep" } else { "reset" }.to_string()),
    };
    ctx.workers
        .handover(&worker, from, request)
        .await
        .map(|_| ())
        .map_err(|e| format!("handover {from} -> {to}: {e}"))
}

/// The deploying phase of a rolling update: new pipelines (paused), hand-overs, `Switch`.
/// Any failure before the switch aborts the rollout ([`rollout_abort`]).
pub async fn rollout_switch(ctx: &LeaderCtx, step: &RolloutSwitch) -> Result<(), DriveError> {
    for job in &step.deploys {
        if let Err(error) = deploy(ctx, job).await {
            return rollout_abort(ctx, &step.abort(&[], error)).await;
        }
    }
    let mut handed: Vec<RolloutTarget> = Vec::new();
    for t in &step.targets {
        match handover(ctx, t, false, step.keep_state).await {
            Ok(()) => handed.push(t.clone()),
            Err(error) => return rollout_abort(ctx, &step.abort(&handed, error)).await,
        }
    }
    match ctx.store.write(step.switch.clone()).await {
        Ok(_) => {
            tracing::info!(group_id = %step.group_id, version = step.version, "rolling update switched");
            Ok(())
        }
        Err(LeaderError::Rejected(e)) => {
            rollout_abort(ctx, &step.abort(&handed, format!("switch refused: {e}"))).await
        }
        Err(e) => Err(DriveError::Interrupted(e)),
    }
}

/// Ends a rollout that has not switched: hand-overs taken back (state included), `Abort`
/// committed, new pipelines removed. Always ends in `DriveError::Aborted` (or `Interrupted`
/// when the abort could not be committed).
pub async fn rollout_abort(ctx: &LeaderCtx, abort: &RolloutAbort) -> Result<(), DriveError> {
    tracing::warn!(group_id = %abort.group_id, version = abort.version, "rolling update aborted: {}", abort.error);
    for t in &abort.hand_back {
        if let Err(e) = handover(ctx, t, true, true).await {
            tracing::warn!(group_id = %abort.group_id, pipeline = %t.pipeline_name, "cannot hand back: {e}");
        }
    }
    ctx.store
        .write(abort.command())
        .await
        .map_err(DriveError::Interrupted)?;
    for (worker_id, pipeline_id) in &abort.remove {
        undeploy(ctx, worker_id, pipeline_id).await;
    }
    Err(DriveError::Aborted(abort.error.clone()))
}

/// The draining phase of a rolling update: wait the grace period, stop the old pipelines,
/// `Finish`. Returns the version now running.
pub async fn rollout_finish(ctx: &LeaderCtx, step: &RolloutFinish) -> Result<u64, DriveError> {
    tokio::time::sleep(Duration::from_millis(step.grace_ms)).await;
    for (worker_id, pipeline_id) in &step.stop {
        undeploy(ctx, worker_id, pipeline_id).await;
    }
    ctx.store
        .write(step.command())
        .await
        .map_err(DriveError::Interrupted)?;
    tracing::info!(group_id = %step.group_id, version = step.version, "rolling update finished");
    Ok(step.version)
}
