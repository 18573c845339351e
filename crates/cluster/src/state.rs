//! The replicated cluster state and its deterministic `apply`.
//!
//! Every collection is a `BTreeMap` (or a `Vec`/`VecDeque` in apply order), so iteration and
//! serialization order depend only on the commands applied. `apply` validates a command fully
//! before touching anything: a rejected command leaves the domain state unchanged (only the
//! `applied` counter and, for keyed commands, the idempotency table record it).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use varpulis_api::cluster::ConnectorSpec;

use crate::command::{Command, CommandResponse, Outcome, PlacementAssignment, RegisterWorker};
use crate::connector;
use crate::error::Error;
use crate::group::{self, Checkpoint, Group, Placement, PlacementStatus};
use crate::migration::{Migration, MigrationReason, MigrationStatus};
use crate::registry::{self, Worker, WorkerStatus};

/// Idempotency keys remembered (FIFO); older keys are forgotten.
pub const IDEMPOTENCY_CAPACITY: usize = 10_000;
/// Largest checkpoint accepted by `StoreCheckpoint`, in bytes (1 MiB).
pub const MAX_CHECKPOINT_BYTES: usize = 1 << 20;
/// Finished (completed or failed) migrations kept for `GET /migrations`; older ones are pruned.
pub const MAX_FINISHED_MIGRATIONS: usize = 1_000;
/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Remembered responses of keyed commands, bounded FIFO.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct IdempotencyTable {
    /// Keys in insertion order (oldest first).
    order: VecDeque<String>,
    /// Response by key.
    responses: BTreeMap<String, CommandResponse>,
}

impl IdempotencyTable {
    fn get(&self, key: &str) -> Option<&CommandResponse> {
        self.responses.get(key)
    }

    fn insert(&mut self, key: &str, response: CommandResponse) {
        if self.responses.insert(key.to_string(), response).is_none() {
            self.order.push_back(key.to_string());
        }
        while self.order.len() > IDEMPOTENCY_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.responses.remove(&old);
            }
        }
    }
}

/// Where a command sits inside envelopes (batches and idempotency keys do not nest).
#[derive(Debug, Clone, Copy, Default)]
struct Nesting {
    in_batch: bool,
    in_idempotent: bool,
}

/// The whole replicated state of the coordinator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Workers by id.
    workers: BTreeMap<String, Worker>,
    /// Groups by id.
    pub(crate) groups: BTreeMap<String, Group>,
    /// Connectors by name (normalised).
    connectors: BTreeMap<String, ConnectorSpec>,
    /// Migrations by id.
    pub(crate) migrations: BTreeMap<String, Migration>,
    /// Round-robin cursor, stored so a new leader continues where the old one stopped.
    rr_cursor: u64,
    /// Next group creation sequence number.
    next_group_seq: u64,
    /// Next migration sequence number.
    next_migration_seq: u64,
    /// Responses of keyed commands.
    idempotency: IdempotencyTable,
    /// Top-level commands applied (accepted or rejected).
    applied: u64,
    /// Version history and rolling update of each group that changed version ([`crate::version`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) versions: BTreeMap<String, crate::version::GroupVersions>,
}

impl ClusterState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command deterministically. Never panics; a rejection is a response.
    pub fn apply(&mut self, cmd: &Command) -> CommandResponse {
        self.applied = self.applied.wrapping_add(1);
        self.apply_nested(cmd, Nesting::default())
    }

    /// Hex SHA-256 of the canonical (JSON) serialization; equal states give equal hashes.
    pub fn state_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        // Serialization of these types cannot fail (string keys only); an error would hash
        // as the partial output, which still differs from any correct state.
        let _ = serde_json::to_writer(HashWriter(&mut hasher), self);
        hex::encode(hasher.finalize())
    }

    fn apply_nested(&mut self, cmd: &Command, nesting: Nesting) -> CommandResponse {
        match cmd {
            Command::Batch(items) => {
                if nesting.in_batch {
                    return CommandResponse::err(Error::InvalidCommand(
                        "batches cannot be nested".into(),
                    ));
                }
                let inner = Nesting {
                    in_batch: true,
                    ..nesting
                };
                let responses = items.iter().map(|c| self.apply_nested(c, inner)).collect();
                CommandResponse::ok(Outcome::Batch(responses))
            }
            Command::Idempotent { key, command } => {
                if nesting.in_idempotent {
                    return CommandResponse::err(Error::InvalidCommand(
                        "idempotency keys cannot be nested".into(),
                    ));
                }
                if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
                    return CommandResponse::err(Error::InvalidCommand(format!(
                        "idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} bytes"
                    )));
                }
                if let Some(previous) = self.idempotency.get(key) {
                    return previous.clone();
                }
                let response = self.apply_nested(
                    command,
                    Nesting {
                        in_idempotent: true,
                        ..nesting
                    },
                );
                self.idempotency.insert(key, response.clone());
                response
            }
            other => self.apply_one(other).into(),
        }
    }

    fn apply_one(&mut self, cmd: &Command) -> Result<Outcome, Error> {
        match cmd {
            Command::Noop => Ok(Outcome::Noop),
            Command::RegisterWorker(r) => self.register(r),
            Command::DeregisterWorker { worker_id } => self.deregister(worker_id),
            Command::SetWorkerStatus {
                worker_id,
                status,
                now_ms,
                reason,
            } => self.set_status(worker_id, *status, *now_ms, reason.as_deref()),
            Command::CreateGroup {
                group_id,
                spec,
                placements,
                next_rr_cursor,
                created_at_ms,
            } => self.create_group(group_id, spec, placements, *next_rr_cursor, *created_at_ms),
            Command::DeleteGroup { group_id } => self.delete_group(group_id),
            Command::Rollout(step) => self.apply_rollout(step),
            Command::UpdatePlacement {
                group_id,
                pipeline_name,
                replica,
                epoch,
                worker_id,
                pipeline_id,
                status,
                error,
            } => self.update_placement(
                group_id,
                pipeline_name,
                *replica,
                *epoch,
                worker_id.as_deref(),
                pipeline_id.as_deref(),
                *status,
                error.as_deref(),
            ),
            Command::CreateConnector { spec } => self.save_connector(spec, ConnectorMode::Create),
            Command::UpdateConnector { spec } => self.save_connector(spec, ConnectorMode::Update),
            Command::PutConnector { spec } => self.save_connector(spec, ConnectorMode::Upsert),
            Command::DeleteConnector { name } => match self.connectors.remove(name) {
                Some(_) => Ok(Outcome::ConnectorDeleted { name: name.clone() }),
                None => Err(Error::UnknownConnector(name.clone())),
            },
            Command::StartMigration {
                migration_id,
                group_id,
                pipeline_name,
                replica,
                from_worker,
                to_worker,
                reason,
                next_rr_cursor,
                now_ms,
            } => self.start_migration(StartMigration {
                migration_id,
                group_id,
                pipeline_name,
                replica: *replica,
                from_worker,
                to_worker: to_worker.as_deref(),
                reason: *reason,
                next_rr_cursor: *next_rr_cursor,
                now_ms: *now_ms,
            }),
            Command::ProgressMigration {
                migration_id,
                to_worker,
                next_rr_cursor,
                now_ms,
            } => self.progress_migration(migration_id, to_worker, *next_rr_cursor, *now_ms),
            Command::CompleteMigration {
                migration_id,
                pipeline_id,
                restored_from_checkpoint,
                now_ms,
            } => self.complete_migration(
                migration_id,
                pipeline_id,
                *restored_from_checkpoint,
                *now_ms,
            ),
            Command::FailMigration {
                migration_id,
                error,
                now_ms,
            } => self.fail_migration(migration_id, error, *now_ms),
            Command::StoreCheckpoint {
                group_id,
                pipeline_name,
                replica,
                epoch,
                checkpoint,
                events_processed,
                taken_at_ms,
            } => self.store_checkpoint(
                group_id,
                pipeline_name,
                *replica,
                *epoch,
                Checkpoint {
                    epoch: *epoch,
                    data: checkpoint.clone(),
                    events_processed: *events_processed,
                    taken_at_ms: *taken_at_ms,
                },
            ),
            // Envelopes are handled by `apply_nested`; reaching here means a nested envelope
            // slipped through, which `apply_nested` already answers.
            Command::Batch(_) | Command::Idempotent { .. } => {
                Err(Error::InvalidCommand("unexpected envelope".into()))
            }
        }
    }

    // ----- workers -----

    fn register(&mut self, r: &RegisterWorker) -> Result<Outcome, Error> {
        registry::validate_registration(&r.worker_id, &r.address)?;
        if r.max_pipelines == 0 {
            return Err(Error::InvalidWorker(
                "capacity.max_pipelines must be at least 1".into(),
            ));
        }
        if r.labels.keys().any(|k| k.trim().is_empty()) {
            return Err(Error::InvalidWorker("label names must not be empty".into()));
        }
        if let Some(w) = self.workers.get_mut(&r.worker_id) {
            w.address.clone_from(&r.address);
            w.api_key.clone_from(&r.api_key);
            w.cpu_cores = r.cpu_cores;
            w.max_pipelines = r.max_pipelines;
            w.labels.clone_from(&r.labels);
            w.registrations = w.registrations.saturating_add(1);
            if matches!(
                w.status,
                WorkerStatus::Registering | WorkerStatus::Unhealthy | WorkerStatus::Dead
            ) {
                w.status = WorkerStatus::Ready;
                w.status_reason = None;
                w.status_changed_at_ms = r.now_ms;
            }
            return Ok(Outcome::WorkerRegistered {
                worker_id: r.worker_id.clone(),
                created: false,
                status: w.status,
            });
        }
        self.workers.insert(
            r.worker_id.clone(),
            Worker {
                id: r.worker_id.clone(),
                address: r.address.clone(),
                api_key: r.api_key.clone(),
                cpu_cores: r.cpu_cores,
                max_pipelines: r.max_pipelines,
                labels: r.labels.clone(),
                status: WorkerStatus::Ready,
                status_reason: None,
                registered_at_ms: r.now_ms,
                status_changed_at_ms: r.now_ms,
                registrations: 1,
            },
        );
        Ok(Outcome::WorkerRegistered {
            worker_id: r.worker_id.clone(),
            created: true,
            status: WorkerStatus::Ready,
        })
    }

    fn deregister(&mut self, worker_id: &str) -> Result<Outcome, Error> {
        if self.workers.remove(worker_id).is_none() {
            return Err(Error::UnknownWorker(worker_id.to_string()));
        }
        let mut orphaned = 0;
        for g in self.groups.values_mut() {
            for p in g
                .placements
                .iter_mut()
                .filter(|p| p.worker_id.as_deref() == Some(worker_id))
            {
                p.move_to(None);
                if p.status != PlacementStatus::Migrating {
                    p.status = PlacementStatus::Pending;
                }
                orphaned += 1;
            }
        }
        // Active migrations towards the removed worker wait for a new target.
        for m in self.migrations.values_mut() {
            if m.status.is_active() && m.to_worker.as_deref() == Some(worker_id) {
                m.to_worker = None;
                m.status = MigrationStatus::Pending;
            }
        }
        Ok(Outcome::WorkerDeregistered {
            worker_id: worker_id.to_string(),
            orphaned_placements: orphaned,
        })
    }

    fn set_status(
        &mut self,
        worker_id: &str,
        status: WorkerStatus,
        now_ms: u64,
        reason: Option<&str>,
    ) -> Result<Outcome, Error> {
        let w = self
            .workers
            .get_mut(worker_id)
            .ok_or_else(|| Error::UnknownWorker(worker_id.to_string()))?;
        let from = w.status;
        if !from.can_transition_to(status) {
            return Err(Error::InvalidTransition {
                worker: worker_id.to_string(),
                from: from.to_string(),
                to: status.to_string(),
            });
        }
        if from != status {
            w.status = status;
            w.status_reason = reason.map(str::to_string);
            w.status_changed_at_ms = now_ms;
        }
        Ok(Outcome::WorkerStatusChanged {
            worker_id: worker_id.to_string(),
            from,
            to: status,
        })
    }

    // ----- groups -----

    fn create_group(
        &mut self,
        group_id: &str,
        spec: &varpulis_api::cluster::PipelineGroupSpec,
        assignments: &[PlacementAssignment],
        next_rr_cursor: Option<u64>,
        created_at_ms: u64,
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

    fn delete_group(&mut self, group_id: &str) -> Result<Outcome, Error> {
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
        Ok(Outcome::GroupDeleted {
            group_id: g.id,
            name: g.name,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn update_placement(
        &mut self,
        group_id: &str,
        pipeline: &str,
        replica: u32,
        epoch: u64,
        worker_id: Option<&str>,
        pipeline_id: Option<&str>,
        status: PlacementStatus,
        error: Option<&str>,
    ) -> Result<Outcome, Error> {
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
    fn fenced_placement_ref(
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

    fn placement_ref(
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
    fn check_target(
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

    // ----- connectors -----

    fn save_connector(
        &mut self,
        spec: &ConnectorSpec,
        mode: ConnectorMode,
    ) -> Result<Outcome, Error> {
        let normalized = connector::normalize(spec)?;
        let exists = self.connectors.contains_key(&normalized.name);
        match mode {
            ConnectorMode::Create if exists => {
                return Err(Error::DuplicateConnector(normalized.name))
            }
            ConnectorMode::Update if !exists => {
                return Err(Error::UnknownConnector(normalized.name))
            }
            _ => {}
        }
        self.connectors
            .insert(normalized.name.clone(), normalized.clone());
        Ok(Outcome::ConnectorSaved {
            spec: normalized,
            created: !exists,
        })
    }

    // ----- migrations -----

    fn start_migration(&mut self, s: StartMigration<'_>) -> Result<Outcome, Error> {
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
        Ok(Outcome::MigrationUpdated {
            migration_id: s.migration_id.to_string(),
            status,
            epoch,
        })
    }

    /// The active migration `id` with its placement, or the matching error.
    fn active_migration(&self, id: &str) -> Result<(&Migration, &Group, usize), Error> {
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

    fn progress_migration(
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

    fn complete_migration(
        &mut self,
        id: &str,
        pipeline_id: &str,
        restored: bool,
        now_ms: u64,
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
        let group_id = m.group_id.clone();
        let g = self
            .groups
            .get_mut(&group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.clone()))?;
        let p = &mut g.placements[idx];
        p.move_to(Some(target));
        p.pipeline_id = Some(pipeline_id.to_string());
        p.status = PlacementStatus::Running;
        p.error = None;
        let epoch = p.epoch;
        let m = self
            .migrations
            .get_mut(id)
            .ok_or_else(|| Error::UnknownMigration(id.to_string()))?;
        m.status = MigrationStatus::Completed;
        m.updated_at_ms = now_ms;
        m.completed_at_ms = Some(now_ms);
        m.restored_from_checkpoint = restored;
        m.error = None;
        self.prune_migrations();
        Ok(Outcome::MigrationUpdated {
            migration_id: id.to_string(),
            status: MigrationStatus::Completed,
            epoch,
        })
    }

    fn fail_migration(&mut self, id: &str, error: &str, now_ms: u64) -> Result<Outcome, Error> {
        let (m, _, idx) = self.active_migration(id)?;
        let group_id = m.group_id.clone();
        let g = self
            .groups
            .get_mut(&group_id)
            .ok_or_else(|| Error::UnknownGroup(group_id.clone()))?;
        let p = &mut g.placements[idx];
        p.status = PlacementStatus::Failed;
        p.error = Some(error.to_string());
        let epoch = p.epoch;
        let m = self
            .migrations
            .get_mut(id)
            .ok_or_else(|| Error::UnknownMigration(id.to_string()))?;
        m.status = MigrationStatus::Failed;
        m.error = Some(error.to_string());
        m.updated_at_ms = now_ms;
        m.completed_at_ms = Some(now_ms);
        self.prune_migrations();
        Ok(Outcome::MigrationUpdated {
            migration_id: id.to_string(),
            status: MigrationStatus::Failed,
            epoch,
        })
    }

    /// Drops the oldest finished migrations beyond [`MAX_FINISHED_MIGRATIONS`].
    fn prune_migrations(&mut self) {
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

    // ----- checkpoints -----

    fn store_checkpoint(
        &mut self,
        group_id: &str,
        pipeline: &str,
        replica: u32,
        epoch: u64,
        checkpoint: Checkpoint,
    ) -> Result<Outcome, Error> {
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

    // ----- read helpers -----

    /// Top-level commands applied so far (accepted or rejected).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The round-robin cursor the next placement starts from.
    pub fn rr_cursor(&self) -> u64 {
        self.rr_cursor
    }

    /// A worker by id.
    pub fn worker(&self, id: &str) -> Option<&Worker> {
        self.workers.get(id)
    }

    /// Every worker, sorted by id.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// Number of registered workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Number of workers in each status (every status present, zero included).
    pub fn worker_counts(&self) -> BTreeMap<WorkerStatus, usize> {
        let mut counts: BTreeMap<WorkerStatus, usize> =
            WorkerStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        for w in self.workers.values() {
            *counts.entry(w.status).or_insert(0) += 1;
        }
        counts
    }

    /// A group by id.
    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    /// A group by name.
    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.groups.values().find(|g| g.name == name)
    }

    /// A group by id, or else by name.
    pub fn find_group(&self, id_or_name: &str) -> Option<&Group> {
        self.group(id_or_name)
            .or_else(|| self.group_by_name(id_or_name))
    }

    /// Every group, in creation order.
    pub fn groups(&self) -> Vec<&Group> {
        let mut groups: Vec<&Group> = self.groups.values().collect();
        groups.sort_by_key(|g| g.seq);
        groups
    }

    /// Number of groups.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// A connector by name.
    pub fn connector(&self, name: &str) -> Option<&ConnectorSpec> {
        self.connectors.get(name)
    }

    /// Every connector, sorted by name.
    pub fn connectors(&self) -> impl Iterator<Item = &ConnectorSpec> {
        self.connectors.values()
    }

    /// A migration by id.
    pub fn migration(&self, id: &str) -> Option<&Migration> {
        self.migrations.get(id)
    }

    /// Every migration kept, in start order.
    pub fn migrations(&self) -> Vec<&Migration> {
        let mut all: Vec<&Migration> = self.migrations.values().collect();
        all.sort_by_key(|m| m.seq);
        all
    }

    /// Migrations still pending or deploying, in start order.
    pub fn active_migrations(&self) -> Vec<&Migration> {
        let mut all: Vec<&Migration> = self
            .migrations
            .values()
            .filter(|m| m.status.is_active())
            .collect();
        all.sort_by_key(|m| m.seq);
        all
    }

    /// The active migration of one placement, if any.
    pub fn active_migration_for(
        &self,
        group_id: &str,
        pipeline: &str,
        replica: u32,
    ) -> Option<&Migration> {
        self.migrations.values().find(|m| {
            m.status.is_active()
                && m.group_id == group_id
                && m.pipeline_name == pipeline
                && m.replica == replica
        })
    }

    /// Placements on `worker_id`, with their groups, in group creation order.
    pub fn placements_on(&self, worker_id: &str) -> Vec<(&Group, &Placement)> {
        self.groups()
            .into_iter()
            .flat_map(|g| {
                g.placements
                    .iter()
                    .filter(move |p| p.worker_id.as_deref() == Some(worker_id))
                    .map(move |p| (g, p))
            })
            .collect()
    }

    /// Placements per worker id (every worker present, zero included); Stopped ones do not count.
    pub fn worker_loads(&self) -> BTreeMap<&str, u32> {
        let mut loads: BTreeMap<&str, u32> = self.workers.keys().map(|k| (k.as_str(), 0)).collect();
        for g in self.groups.values() {
            for p in &g.placements {
                if p.status == PlacementStatus::Stopped {
                    continue;
                }
                if let Some(w) = p.worker_id.as_deref() {
                    if let Some(n) = loads.get_mut(w) {
                        *n = n.saturating_add(1);
                    }
                }
            }
        }
        loads
    }

    /// Whether `worker_id` is Draining with nothing left to move: no placement on it and no
    /// active migration leaving it. Such a worker may be deregistered or stopped.
    pub fn is_drained(&self, worker_id: &str) -> bool {
        self.workers
            .get(worker_id)
            .is_some_and(|w| w.status == WorkerStatus::Draining)
            && self.placements_on(worker_id).is_empty()
            && !self
                .migrations
                .values()
                .any(|m| m.status.is_active() && m.from_worker == worker_id)
    }

    /// Active migrations per target worker (pipelines about to arrive there).
    pub fn inbound_migrations(&self) -> BTreeMap<&str, u32> {
        let mut out: BTreeMap<&str, u32> = BTreeMap::new();
        for m in self.migrations.values().filter(|m| m.status.is_active()) {
            if let Some(to) = m.to_worker.as_deref() {
                *out.entry(to).or_insert(0) += 1;
            }
        }
        out
    }

    /// Names of the pipelines placed on each worker (every worker present).
    pub fn assigned_pipelines(&self) -> BTreeMap<&str, Vec<String>> {
        let mut out: BTreeMap<&str, Vec<String>> = self
            .workers
            .keys()
            .map(|k| (k.as_str(), Vec::new()))
            .collect();
        for g in self.groups() {
            for p in &g.placements {
                if let Some(list) = p.worker_id.as_deref().and_then(|w| out.get_mut(w)) {
                    list.push(p.pipeline_name.clone());
                }
            }
        }
        out
    }

    /// The response remembered for an idempotency key, if the key is still in the table.
    pub fn idempotent_response(&self, key: &str) -> Option<&CommandResponse> {
        self.idempotency.get(key)
    }
}

/// How `save_connector` treats an existing name.
#[derive(Debug, Clone, Copy)]
enum ConnectorMode {
    Create,
    Update,
    Upsert,
}

/// Borrowed fields of `Command::StartMigration`.
struct StartMigration<'a> {
    migration_id: &'a str,
    group_id: &'a str,
    pipeline_name: &'a str,
    replica: u32,
    from_worker: &'a str,
    to_worker: Option<&'a str>,
    reason: MigrationReason,
    next_rr_cursor: Option<u64>,
    now_ms: u64,
}

/// Feeds serialized bytes straight into the hasher (no intermediate buffer).
struct HashWriter<'a>(&'a mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
