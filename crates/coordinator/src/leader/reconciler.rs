//! The leader's reconciler: makes the workers match the desired state held in Raft.
//!
//! Each pass (every `reconcile_interval`, or sooner when woken) works from replicated state only:
//! 1. failover (when `auto_failover`): for every Unhealthy or Dead worker, start a migration of
//!    each of its placements (`varpulis_cluster::placement::plan_failover`, reason `worker_unhealthy`);
//!    drains: the same for every Draining worker (reason `drain`, [`crate::leader::drain`]);
//! 2. give Pending placements and target-less migrations a worker (`plan_pending`);
//! 3. deploy every migration that has a target, then `CompleteMigration` (the placement moves
//!    atomically, epoch + 1) — after 3 failed attempts `FailMigration`, and the next pass starts
//!    a fresh one. When the source worker is still alive (drain, rebalance) a fresh checkpoint is
//!    taken from it first (and stored in Raft), and its pipeline is deleted once the move is
//!    complete; otherwise the last stored checkpoint is restored;
//! 4. deploy every placement whose worker is Ready/Busy but which is not Running;
//! 5. when a rebalance is wanted, one rate-limited round ([`crate::leader::rebalance`]).
//!
//! Deploys back off per decision (1 s doubling to 30 s). Nothing depends on the previous leader
//! having finished: a half-done deploy or migration is simply retried, and the deterministic
//! pipeline id makes a retried deploy idempotent on the worker.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use varpulis_cluster::migration::{MigrationReason, MigrationStatus};
use varpulis_cluster::registry::WorkerStatus;
use varpulis_cluster::{placement, Command};

use tokio_util::sync::CancellationToken;

use crate::leader::context::LeaderCtx;
use crate::leader::deploy::{self, Target};
use crate::leader::drain;
use crate::transport::worker_client::WorkerRef;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Failed deploy attempts after which a migration is declared failed.
const MIGRATION_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy)]
struct Retry {
    delay: Duration,
    next: Instant,
    attempts: u32,
}

/// Per-decision retry schedule, kept in memory by the leader (a new leader starts afresh).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Retry>,
}

impl Backoff {
    fn ready(&self, key: &str, now: Instant) -> bool {
        self.entries.get(key).is_none_or(|r| now >= r.next)
    }

    /// Records a failure; returns the number of failures so far.
    fn failed(&mut self, key: String, now: Instant) -> u32 {
        let retry = match self.entries.get(&key) {
            Some(r) => {
                let delay = (r.delay * 2).min(BACKOFF_MAX);
                Retry {
                    delay,
                    next: now + delay,
                    attempts: r.attempts + 1,
                }
            }
            None => Retry {
                delay: BACKOFF_START,
                next: now + BACKOFF_START,
                attempts: 1,
            },
        };
        self.entries.insert(key, retry);
        retry.attempts
    }

    fn succeeded(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Shortest time between two passes started by wake-ups. A pass scans every worker and group,
/// so a burst of wake-ups (thousands of registrations per second) is coalesced into one pass
/// per interval instead of one per request; a deploy starts at most this much later.
const MIN_PASS_SPACING: Duration = Duration::from_millis(100);

/// Runs the reconciler until shutdown.
pub async fn run(ctx: LeaderCtx, shutdown: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut last_pass: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(ctx.settings.reconcile_interval) => {}
            _ = ctx.reconcile.notified() => {
                if let Some(wait) = last_pass
                    .map(|at| MIN_PASS_SPACING.saturating_sub(at.elapsed()))
                    .filter(|w| !w.is_zero())
                {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        if !ctx.store.is_leader() {
            backoff = Backoff::default();
            continue;
        }
        last_pass = Some(Instant::now());
        reconcile_once(&ctx, &mut backoff).await;
    }
}

/// One pass of the reconciler; returns how many deploys succeeded.
pub async fn reconcile_once(ctx: &LeaderCtx, backoff: &mut Backoff) -> usize {
    if ctx.settings.auto_failover {
        start_failovers(ctx).await;
    }
    resume_drains(ctx).await;
    assign_pending(ctx).await;
    let mut deployed = deploy_migrations(ctx, backoff).await;
    deployed += deploy_placements(ctx, backoff).await;
    if ctx.rebalance.is_wanted() {
        crate::leader::rebalance::round(ctx).await;
    }
    deployed
}

/// Starts drain migrations for placements of Draining workers that have none (a drain
/// requested under a previous leader, or a drain migration that failed and must be retried).
async fn resume_drains(ctx: &LeaderCtx) {
    let draining: Vec<String> = ctx.store.read(|s| {
        s.workers()
            .filter(|w| w.status == WorkerStatus::Draining)
            .filter(|w| {
                s.placements_on(&w.id).iter().any(|(g, p)| {
                    s.active_migration_for(&g.id, &p.pipeline_name, p.replica)
                        .is_none()
                })
            })
            .map(|w| w.id.clone())
            .collect()
    });
    for id in draining {
        drain::start_drain_migrations(ctx, &id).await;
    }
}

/// A migration ready to deploy, with its still-alive source (for a fresh checkpoint).
struct Job {
    id: String,
    target: Target,
    source: Option<LiveSource>,
}

/// The source placement of a migration whose worker still answers (Ready, Busy or Draining).
struct LiveSource {
    epoch: u64,
    worker: WorkerRef,
    pipeline_id: String,
}

async fn start_failovers(ctx: &LeaderCtx) {
    let planned = ctx.store.read(|s| {
        s.workers()
            .filter(|w| w.status.needs_failover())
            .flat_map(|w| placement::plan_failover(s, &w.id))
            .collect::<Vec<_>>()
    });
    for m in planned {
        let id = ctx.new_id();
        let command = m.to_command(&id, MigrationReason::WorkerUnhealthy, ctx.now_ms());
        match ctx.store.write(command).await {
            Ok(_) => tracing::info!(
                migration = %id, group_id = %m.group_id, pipeline = %m.pipeline_name,
                from = %m.from_worker, to = ?m.to_worker, "migration started"
            ),
            Err(err) => {
                tracing::warn!(group_id = %m.group_id, pipeline = %m.pipeline_name, "cannot start migration: {err}")
            }
        }
    }
}

async fn assign_pending(ctx: &LeaderCtx) {
    for a in ctx.store.read(placement::plan_pending) {
        if let Err(err) = ctx.store.write(a.to_command(ctx.now_ms())).await {
            tracing::warn!(group_id = %a.group_id, pipeline = %a.pipeline_name, "cannot assign placement: {err}");
        }
    }
}

async fn deploy_migrations(ctx: &LeaderCtx, backoff: &mut Backoff) -> usize {
    let jobs: Vec<Job> = ctx.store.read(|s| {
        s.active_migrations()
            .into_iter()
            .filter(|m| m.status == MigrationStatus::Deploying)
            .filter_map(|m| {
                let to = m.to_worker.as_deref()?;
                let placement = s
                    .group(&m.group_id)?
                    .placement(&m.pipeline_name, m.replica)?;
                let epoch = placement.epoch;
                let target =
                    deploy::target_on(s, &m.group_id, &m.pipeline_name, m.replica, to, epoch + 1)?;
                let source = placement
                    .worker_id
                    .as_deref()
                    .and_then(|w| s.worker(w))
                    .filter(|w| {
                        matches!(
                            w.status,
                            WorkerStatus::Ready | WorkerStatus::Busy | WorkerStatus::Draining
                        )
                    })
                    .zip(placement.pipeline_id.clone())
                    .map(|(w, pipeline_id)| LiveSource {
                        epoch,
                        worker: WorkerRef::of(w),
                        pipeline_id,
                    });
                Some(Job {
                    id: m.id.clone(),
                    target,
                    source,
                })
            })
            .collect()
    });
    let mut deployed = 0;
    for Job {
        id,
        target: mut t,
        source,
    } in jobs
    {
        if !backoff.ready(&id, Instant::now()) {
            continue;
        }
        if let Some(src) = &source {
            let fresh = crate::leader::checkpoint::take_fresh(
                ctx,
                (&t.group_id, &t.pipeline_name, t.replica),
                src.epoch,
                &src.worker,
                &src.pipeline_id,
            )
            .await;
            match fresh {
                Some(cp) => t.checkpoint = Some(cp),
                None => tracing::warn!(
                    migration = %id, "no fresh checkpoint from the source; using the stored one"
                ),
            }
        }
        let command = match deploy::call_deploy(ctx, &t).await {
            Ok(pipeline_id) => {
                backoff.succeeded(&id);
                deployed += 1;
                Command::CompleteMigration {
                    migration_id: id.clone(),
                    pipeline_id,
                    restored_from_checkpoint: t.checkpoint.is_some(),
                    now_ms: ctx.now_ms(),
                }
            }
            Err(error) => {
                tracing::warn!(migration = %id, to = %t.worker.id, "migration deploy failed: {error}");
                if backoff.failed(id.clone(), Instant::now()) < MIGRATION_ATTEMPTS {
                    continue;
                }
                backoff.succeeded(&id);
                Command::FailMigration {
                    migration_id: id.clone(),
                    error,
                    now_ms: ctx.now_ms(),
                }
            }
        };
        let completed = matches!(command, Command::CompleteMigration { .. });
        match ctx.store.write(command).await {
            Ok(_) => {
                tracing::info!(migration = %id, to = %t.worker.id, "migration finished");
                if let Some(src) = source.filter(|_| completed) {
                    // The placement moved (epoch + 1): the old copy must not keep running.
                    if !deploy::undeploy(ctx, &src.worker, &src.pipeline_id).await {
                        tracing::info!(migration = %id, "old pipeline not removed now; the orphan sweep will");
                    }
                }
            }
            Err(err) => tracing::warn!(migration = %id, "cannot record migration result: {err}"),
        }
    }
    deployed
}

async fn deploy_placements(ctx: &LeaderCtx, backoff: &mut Backoff) -> usize {
    let targets: Vec<Target> = ctx.store.read(|s| {
        s.groups()
            .into_iter()
            .flat_map(|g| deploy::pending_targets(s, &g.id))
            .filter(|t| {
                s.worker(&t.worker.id)
                    .is_some_and(|w| matches!(w.status, WorkerStatus::Ready | WorkerStatus::Busy))
            })
            .collect()
    });
    let mut deployed = 0;
    for t in targets {
        let key = format!(
            "{}/{}/{}/{}",
            t.group_id, t.pipeline_name, t.replica, t.epoch
        );
        if !backoff.ready(&key, Instant::now()) {
            continue;
        }
        if deploy::deploy_and_record(ctx, &t).await {
            backoff.succeeded(&key);
            deployed += 1;
        } else {
            backoff.failed(key, Instant::now());
        }
    }
    deployed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.ready("k", t0));
        assert_eq!(b.failed("k".into(), t0), 1);
        assert!(!b.ready("k", t0));
        assert!(b.ready("k", t0 + Duration::from_secs(1)));
        let mut attempts = 0;
        for _ in 0..10 {
            attempts = b.failed("k".into(), t0);
        }
        assert_eq!(attempts, 11);
        assert!(b.ready("k", t0 + BACKOFF_MAX));
        assert!(!b.ready("k", t0 + BACKOFF_MAX - Duration::from_millis(1)));
        b.succeeded("k");
        assert!(b.ready("k", t0));
    }
}
