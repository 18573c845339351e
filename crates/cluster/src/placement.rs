//! Placement: pure functions the leader runs BEFORE proposing a command.
//!
//! Rules shared by every plan:
//! - only `Ready` workers with free capacity (placements < `max_pipelines`) are eligible;
//!   Busy, Draining, Unhealthy, Dead and Registering workers are skipped;
//! - a pipeline with `labels` only goes to workers carrying all of them;
//! - replicas of one pipeline go to distinct workers;
//! - `worker_affinity` is tried first (replica 0) and falls back to the strategy;
//! - `round_robin` (default) walks the workers sorted by id from the replicated cursor;
//!   `least_loaded` takes the worker with the fewest placements (ties: smallest id);
//!   `least_connections` takes the worker with the fewest *connections*: its placements plus
//!   the active migrations heading to it (pipelines in flight that will land there), so a burst
//!   of failovers does not pile onto the worker that merely looks empty (ties: smallest id).
//!
//! When nothing is eligible the slot is reported in [`PlacementPlan::unplaced`]; the group is
//! still created with that placement Pending and the reconciler fills it later
//! ([`plan_pending`] then `UpdatePlacement`).

use std::collections::{BTreeMap, BTreeSet};
use varpulis_api::cluster::{PipelineGroupSpec, PipelineSpec};

use crate::command::{Command, PlacementAssignment};
use crate::error::Error;
use crate::group::{self, Group, PlacementStatus};
use crate::migration::MigrationReason;
use crate::registry::{Worker, WorkerStatus};
use crate::state::ClusterState;
pub use crate::strategy::Strategy;

/// A slot the plan could not fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Why no worker was found.
    pub reason: String,
}

/// The leader's placement decision for a new group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementPlan {
    /// One assignment per pipeline replica (`worker_id: None` when unplaced).
    pub assignments: Vec<PlacementAssignment>,
    /// Slots without a worker.
    pub unplaced: Vec<Unplaced>,
    /// Round-robin cursor after this plan (goes into the command).
    pub next_rr_cursor: u64,
}

impl PlacementPlan {
    /// Whether every slot got a worker.
    pub fn is_complete(&self) -> bool {
        self.unplaced.is_empty()
    }

    /// A "no worker available" error describing the unplaced slots, if any.
    pub fn no_worker_error(&self) -> Option<Error> {
        let first = self.unplaced.first()?;
        Some(Error::NoWorkerAvailable(format!(
            "{} of {} placements could not be placed (first: '{}' replica {}: {})",
            self.unplaced.len(),
            self.assignments.len(),
            first.pipeline_name,
            first.replica,
            first.reason
        )))
    }

    /// The `CreateGroup` command carrying this plan.
    pub fn to_command(
        &self,
        group_id: &str,
        spec: &PipelineGroupSpec,
        created_at_ms: u64,
    ) -> Command {
        Command::CreateGroup {
            group_id: group_id.to_string(),
            spec: spec.clone(),
            placements: self.assignments.clone(),
            next_rr_cursor: Some(self.next_rr_cursor),
            created_at_ms,
        }
    }
}

/// A migration the leader may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMigration {
    /// Group id.
    pub group_id: String,
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Worker the placement leaves.
    pub from_worker: String,
    /// Target (`None`: no worker available now; the migration waits Pending).
    pub to_worker: Option<String>,
    /// Placement epoch the plan was made against.
    pub epoch: u64,
    /// Round-robin cursor after this choice.
    pub next_rr_cursor: Option<u64>,
}

impl PlannedMigration {
    /// The `StartMigration` command for this plan.
    pub fn to_command(&self, migration_id: &str, reason: MigrationReason, now_ms: u64) -> Command {
        Command::StartMigration {
            migration_id: migration_id.to_string(),
            group_id: self.group_id.clone(),
            pipeline_name: self.pipeline_name.clone(),
            replica: self.replica,
            from_worker: self.from_worker.clone(),
            to_worker: self.to_worker.clone(),
            reason,
            next_rr_cursor: self.next_rr_cursor,
            now_ms,
        }
    }
}

/// A worker for a placement that has none (or a target for a pending migration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedAssignment {
    /// Group id.
    pub group_id: String,
    /// Pipeline name.
    pub pipeline_name: String,
    /// Replica number.
    pub replica: u32,
    /// Placement epoch the plan was made against.
    pub epoch: u64,
    /// Chosen worker.
    pub worker_id: String,
    /// Pending migration this target is for, if any.
    pub migration_id: Option<String>,
    /// Round-robin cursor after this choice.
    pub next_rr_cursor: u64,
}

impl PlannedAssignment {
    /// The command that records the choice: `ProgressMigration` for a migration, otherwise an
    /// `UpdatePlacement` moving the placement to the worker with status Pending (to deploy).
    pub fn to_command(&self, now_ms: u64) -> Command {
        match &self.migration_id {
            Some(id) => Command::ProgressMigration {
                migration_id: id.clone(),
                to_worker: self.worker_id.clone(),
                next_rr_cursor: Some(self.next_rr_cursor),
                now_ms,
            },
            None => Command::UpdatePlacement {
                group_id: self.group_id.clone(),
                pipeline_name: self.pipeline_name.clone(),
                replica: self.replica,
                epoch: self.epoch,
                worker_id: Some(self.worker_id.clone()),
                pipeline_id: None,
                status: PlacementStatus::Pending,
                error: None,
            },
        }
    }
}

/// Working copy of the cluster's capacity while one plan is made.
struct Planner<'a> {
    /// Ready workers, sorted by id.
    ready: Vec<&'a Worker>,
    /// Placements per worker, including the ones this plan added.
    loads: BTreeMap<&'a str, u32>,
    /// Active migrations heading to each worker (for `least_connections`).
    inbound: BTreeMap<&'a str, u32>,
    cursor: u64,
}

impl<'a> Planner<'a> {
    fn new(state: &'a ClusterState) -> Self {
        let ready = state
            .workers()
            .filter(|w| w.status.accepts_placements())
            .collect();
        Planner {
            ready,
            loads: sparse_loads(state),
            inbound: state.inbound_migrations(),
            cursor: state.rr_cursor(),
        }
    }

    fn eligible(
        &self,
        w: &Worker,
        labels: &BTreeMap<String, String>,
        exclude: &BTreeSet<String>,
    ) -> bool {
        w.status == WorkerStatus::Ready
            && self.loads.get(w.id.as_str()).copied().unwrap_or(0) < w.max_pipelines
            && w.matches_labels(labels)
            && !exclude.contains(&w.id)
    }

    /// Placements plus inbound migrations of a worker (`least_connections`).
    fn connections(&self, id: &str) -> u32 {
        let placed = self.loads.get(id).copied().unwrap_or(0);
        placed.saturating_add(self.inbound.get(id).copied().unwrap_or(0))
    }

    fn take(&mut self, w: &'a Worker) -> String {
        *self.loads.entry(w.id.as_str()).or_insert(0) += 1;
        w.id.clone()
    }

    /// Picks a worker or says why none fits.
    fn pick(
        &mut self,
        strategy: Strategy,
        labels: &BTreeMap<String, String>,
        affinity: Option<&str>,
        exclude: &BTreeSet<String>,
    ) -> Result<String, String> {
        if let Some(a) = affinity {
            if let Some(w) = self.ready.iter().copied().find(|w| w.id == a) {
                if self.eligible(w, labels, exclude) {
                    return Ok(self.take(w));
                }
            }
        }
        let n = self.ready.len();
        if n == 0 {
            return Err("no worker is ready".into());
        }
        let chosen = match strategy {
            Strategy::RoundRobin => {
                let start = (self.cursor % n as u64) as usize;
                (0..n)
                    .find_map(|k| {
                        let w = self.ready[(start + k) % n];
                        self.eligible(w, labels, exclude).then_some((w, k))
                    })
                    .map(|(w, k)| {
                        self.cursor = self.cursor.wrapping_add(k as u64 + 1);
                        w
                    })
            }
            Strategy::LeastLoaded => self
                .ready
                .iter()
                .copied()
                .filter(|w| self.eligible(w, labels, exclude))
                .min_by_key(|w| {
                    (
                        self.loads.get(w.id.as_str()).copied().unwrap_or(0),
                        w.id.as_str(),
                    )
                }),
            Strategy::LeastConnections => self
                .ready
                .iter()
                .copied()
                .filter(|w| self.eligible(w, labels, exclude))
                .min_by_key(|w| (self.connections(w.id.as_str()), w.id.as_str())),
        };
        match chosen {
            Some(w) => Ok(self.take(w)),
            None if labels.is_empty() => {
                Err("every ready worker is full or already runs this pipeline".into())
            }
            None => Err(format!(
                "no ready worker with free capacity carries the labels {}",
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        }
    }
}

/// Placements per worker that has any (Stopped ones do not count); O(placements), so planning
/// stays cheap with thousands of idle workers.
fn sparse_loads(state: &ClusterState) -> BTreeMap<&str, u32> {
    let mut loads: BTreeMap<&str, u32> = BTreeMap::new();
    for g in state.groups() {
        for p in g
            .placements
            .iter()
            .filter(|p| p.status != PlacementStatus::Stopped)
        {
            if let Some(w) = p.worker_id.as_deref() {
                *loads.entry(w).or_insert(0) += 1;
            }
        }
    }
    loads
}

/// Plans placements for a new group (also validates the spec, as `CreateGroup` will).
pub fn plan_group(state: &ClusterState, spec: &PipelineGroupSpec) -> Result<PlacementPlan, Error> {
    let known = state
        .workers()
        .filter(|w| w.status != WorkerStatus::Dead)
        .count();
    group::validate_spec(spec, known)?;
    let strategy = Strategy::parse(spec.placement.as_deref())?;
    let mut planner = Planner::new(state);
    let mut assignments = Vec::new();
    let mut unplaced = Vec::new();
    for p in &spec.pipelines {
        let mut used = BTreeSet::new();
        for replica in 0..group::replicas_of(p) {
            let affinity = if replica == 0 {
                p.worker_affinity.as_deref()
            } else {
                None
            };
            let worker = match planner.pick(strategy, &p.labels, affinity, &used) {
                Ok(w) => {
                    used.insert(w.clone());
                    Some(w)
                }
                Err(reason) => {
                    unplaced.push(Unplaced {
                        pipeline_name: p.name.clone(),
                        replica,
                        reason,
                    });
                    None
                }
            };
            assignments.push(PlacementAssignment {
                pipeline_name: p.name.clone(),
                replica,
                worker_id: worker,
            });
        }
    }
    Ok(PlacementPlan {
        assignments,
        unplaced,
        next_rr_cursor: planner.cursor,
    })
}

fn spec_of<'g>(g: &'g Group, pipeline: &str) -> Option<&'g PipelineSpec> {
    g.spec.pipelines.iter().find(|p| p.name == pipeline)
}

/// Workers hosting replicas of `pipeline` in `g` other than `replica`.
fn other_replica_workers(g: &Group, pipeline: &str, replica: u32) -> BTreeSet<String> {
    g.placements
        .iter()
        .filter(|p| p.pipeline_name == pipeline && p.replica != replica)
        .filter_map(|p| p.worker_id.clone())
        .collect()
}

/// Plans moving every placement off `worker_id` (no active migration yet) to other workers.
/// Targets are `None` when no worker is available: the migration then waits Pending.
pub fn plan_failover(state: &ClusterState, worker_id: &str) -> Vec<PlannedMigration> {
    let mut planner = Planner::new(state);
    let mut out = Vec::new();
    for (g, p) in state.placements_on(worker_id) {
        if p.is_program_failed()
            || state
                .active_migration_for(&g.id, &p.pipeline_name, p.replica)
                .is_some()
        {
            // A program that failed would fail on any worker: it stays where it failed.
            continue;
        }
        let strategy = Strategy::parse(g.spec.placement.as_deref()).unwrap_or_default();
        let labels = spec_of(g, &p.pipeline_name)
            .map(|s| s.labels.clone())
            .unwrap_or_default();
        let mut exclude = other_replica_workers(g, &p.pipeline_name, p.replica);
        exclude.insert(worker_id.to_string());
        let before = planner.cursor;
        let to = planner.pick(strategy, &labels, None, &exclude).ok();
        out.push(PlannedMigration {
            group_id: g.id.clone(),
            pipeline_name: p.pipeline_name.clone(),
            replica: p.replica,
            from_worker: worker_id.to_string(),
            to_worker: to,
            epoch: p.epoch,
            next_rr_cursor: (planner.cursor != before).then_some(planner.cursor),
        });
    }
    out
}

/// Plans workers for Pending placements without a worker and targets for Pending migrations.
pub fn plan_pending(state: &ClusterState) -> Vec<PlannedAssignment> {
    let unplaced = state.groups.values().any(|g| {
        g.placements
            .iter()
            .any(|p| p.worker_id.is_none() && !p.is_program_failed())
    });
    let targetless = state
        .active_migrations()
        .iter()
        .any(|m| m.to_worker.is_none());
    if !unplaced && !targetless {
        // Cheap exit: the planner indexes every worker, and this runs on every reconciler pass.
        return Vec::new();
    }
    let mut planner = Planner::new(state);
    let mut out = Vec::new();
    for m in state.active_migrations() {
        if m.to_worker.is_some() {
            continue;
        }
        let Some(g) = state.group(&m.group_id) else {
            continue;
        };
        let Some(p) = g.placement(&m.pipeline_name, m.replica) else {
            continue;
        };
        let strategy = Strategy::parse(g.spec.placement.as_deref()).unwrap_or_default();
        let labels = spec_of(g, &m.pipeline_name)
            .map(|s| s.labels.clone())
            .unwrap_or_default();
        let mut exclude = other_replica_workers(g, &m.pipeline_name, m.replica);
        exclude.insert(m.from_worker.clone());
        if let Ok(w) = planner.pick(strategy, &labels, None, &exclude) {
            out.push(PlannedAssignment {
                group_id: g.id.clone(),
                pipeline_name: m.pipeline_name.clone(),
                replica: m.replica,
                epoch: p.epoch,
                worker_id: w,
                migration_id: Some(m.id.clone()),
                next_rr_cursor: planner.cursor,
            });
        }
    }
    for g in state.groups() {
        let strategy = Strategy::parse(g.spec.placement.as_deref()).unwrap_or_default();
        for p in g
            .placements
            .iter()
            .filter(|p| p.worker_id.is_none() && !p.is_program_failed())
        {
            if state
                .active_migration_for(&g.id, &p.pipeline_name, p.replica)
                .is_some()
            {
                continue;
            }
            let spec = spec_of(g, &p.pipeline_name);
            let labels = spec.map(|s| s.labels.clone()).unwrap_or_default();
            let affinity = spec
                .and_then(|s| s.worker_affinity.as_deref())
                .filter(|_| p.replica == 0);
            let exclude = other_replica_workers(g, &p.pipeline_name, p.replica);
            if let Ok(w) = planner.pick(strategy, &labels, affinity, &exclude) {
                out.push(PlannedAssignment {
                    group_id: g.id.clone(),
                    pipeline_name: p.pipeline_name.clone(),
                    replica: p.replica,
                    epoch: p.epoch,
                    worker_id: w,
                    migration_id: None,
                    next_rr_cursor: planner.cursor,
                });
            }
        }
    }
    out
}

/// Plans moves of Running placements from the most to the least loaded Ready workers until
/// loads differ by at most one (or no move fits the rules). Never moves a placement twice.
pub fn rebalance_moves(state: &ClusterState) -> Vec<PlannedMigration> {
    let nothing_running = state.groups.values().all(|g| {
        g.placements
            .iter()
            .all(|p| p.status != PlacementStatus::Running)
    });
    if nothing_running {
        // Cheap exit: registrations call this often and there may be thousands of workers.
        return Vec::new();
    }
    let ready: Vec<&Worker> = state
        .workers()
        .filter(|w| w.status == WorkerStatus::Ready)
        .collect();
    if ready.len() < 2 {
        return Vec::new();
    }
    let all_loads = state.worker_loads();
    let mut loads: BTreeMap<&str, u32> = ready
        .iter()
        .map(|w| {
            (
                w.id.as_str(),
                all_loads.get(w.id.as_str()).copied().unwrap_or(0),
            )
        })
        .collect();
    let groups = state.groups();
    let mut moved: BTreeSet<(String, String, u32)> = BTreeSet::new();
    // Targets already given to a replica in this plan, per (group, pipeline).
    let mut planned_hosts: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut out = Vec::new();
    let total: u32 = loads.values().sum();
    for _ in 0..total {
        let Some((&src, &src_load)) = loads
            .iter()
            .max_by_key(|(id, l)| (**l, std::cmp::Reverse(**id)))
        else {
            break;
        };
        let Some((dst_load, dst_worker)) = ready
            .iter()
            .map(|w| (loads.get(w.id.as_str()).copied().unwrap_or(0), *w))
            .filter(|(l, w)| *l < w.max_pipelines)
            .min_by_key(|(l, w)| (*l, w.id.as_str()))
        else {
            break;
        };
        let dst = dst_worker.id.as_str();
        if src_load <= dst_load.saturating_add(1) {
            break;
        }
        let candidate = groups.iter().find_map(|g| {
            g.placements.iter().find_map(|p| {
                let key = (g.id.clone(), p.pipeline_name.clone(), p.replica);
                let fits = p.worker_id.as_deref() == Some(src)
                    && p.status == PlacementStatus::Running
                    && !moved.contains(&key)
                    && state
                        .active_migration_for(&g.id, &p.pipeline_name, p.replica)
                        .is_none()
                    && !g.hosts_other_replica(&p.pipeline_name, p.replica, dst)
                    && !planned_hosts.contains(&(
                        g.id.clone(),
                        p.pipeline_name.clone(),
                        dst.to_string(),
                    ))
                    && spec_of(g, &p.pipeline_name)
                        .is_none_or(|s| dst_worker.matches_labels(&s.labels));
                fits.then_some((*g, p, key))
            })
        });
        let Some((g, p, key)) = candidate else { break };
        moved.insert(key);
        planned_hosts.insert((g.id.clone(), p.pipeline_name.clone(), dst.to_string()));
        if let Some(l) = loads.get_mut(src) {
            *l -= 1;
        }
        if let Some(l) = loads.get_mut(dst) {
            *l += 1;
        }
        out.push(PlannedMigration {
            group_id: g.id.clone(),
            pipeline_name: p.pipeline_name.clone(),
            replica: p.replica,
            from_worker: src.to_string(),
            to_worker: Some(dst.to_string()),
            epoch: p.epoch,
            next_rr_cursor: None,
        });
    }
    out
}
