//! The replicated cluster state and its deterministic `apply`.
//!
//! Every collection is a `BTreeMap` (or a `Vec`/`VecDeque` in apply order), so iteration and
//! serialization order depend only on the commands applied. `apply` validates a command fully
//! before touching anything: a rejected command leaves the domain state unchanged (only the
//! `applied` counter and, for keyed commands, the idempotency table record it).
//!
//! This module holds the state, the envelopes (batches, idempotency keys), the state hash and
//! the read helpers; the command handlers are per-concept `impl ClusterState` blocks beside it:
//! [`workers`], [`groups`], [`connectors`], [`migrations`], [`checkpoints`] and [`rollouts`].
//! Each handler validates, mutates, and reports what changed as typed
//! [`ClusterEvent`]s: [`ClusterState::apply`] returns them with the response ([`Applied`]), so
//! every replica that applies the same log produces the same events. A rejected command and a
//! repeated idempotency key produce none.
//!
//! The serialized form (snapshots, state hash) is unchanged by this split: the fields, their
//! order and their types are those of the original single-file state.

mod checkpoints;
mod connectors;
mod groups;
mod migrations;
mod rollouts;
mod workers;

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use varpulis_api::cluster::ConnectorSpec;
use varpulis_api::events::ClusterEvent;

use crate::command::{Command, CommandResponse, Outcome};
use crate::error::Error;
use crate::group::{Checkpoint, Group, Placement, PlacementStatus};
use crate::migration::Migration;
use crate::registry::{Worker, WorkerStatus};
use crate::version::GroupVersions;

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

/// The events a handler reports (pushed in the order things happened).
pub(crate) type Events = Vec<ClusterEvent>;

/// What applying one command did: the response its proposer is answered with, and the events
/// it produced (none for a rejection or a repeated idempotency key).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Success or the rejection.
    pub response: CommandResponse,
    /// What changed, in order.
    pub events: Vec<ClusterEvent>,
}

impl Applied {
    /// Whether the command was applied.
    pub fn is_ok(&self) -> bool {
        self.response.is_ok()
    }

    /// The rejection, if any.
    pub fn error(&self) -> Option<&Error> {
        self.response.error()
    }

    /// The result, by value.
    pub fn into_result(self) -> Result<Outcome, Error> {
        self.response.into_result()
    }
}

/// The whole replicated state of the coordinator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Workers by id.
    workers: BTreeMap<String, Worker>,
    /// Groups by id.
    pub(crate) groups: BTreeMap<String, Group>,
    /// Connectors by name (normalised), shared with the outcome that reported their save (the
    /// write path answers from it without copying the spec; serialized as the spec itself).
    connectors: BTreeMap<String, Arc<ConnectorSpec>>,
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
    pub(crate) versions: BTreeMap<String, GroupVersions>,
}

impl ClusterState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one command deterministically and returns its response and events. Never
    /// panics; a rejection is a response. Copies what it keeps out of `cmd`; [`Self::apply_owned`]
    /// moves it instead, with the same result.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        self.apply_cow(Cow::Borrowed(cmd))
    }

    /// [`Self::apply`] by value: what the state keeps (a connector's spec and params) is moved
    /// out of the command rather than copied. The replicated apply loop owns each log entry's
    /// command, and every replica applies every write (issue 24).
    pub fn apply_owned(&mut self, cmd: Command) -> Applied {
        self.apply_cow(Cow::Owned(cmd))
    }

    fn apply_cow(&mut self, cmd: Cow<'_, Command>) -> Applied {
        self.applied = self.applied.wrapping_add(1);
        let mut events = Vec::new();
        let response = self.apply_nested(cmd, Nesting::default(), &mut events);
        Applied { response, events }
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

    fn apply_nested(
        &mut self,
        cmd: Cow<'_, Command>,
        nesting: Nesting,
        events: &mut Events,
    ) -> CommandResponse {
        match cmd.as_ref() {
            Command::Batch(_) => {
                if nesting.in_batch {
                    return CommandResponse::err(Error::InvalidCommand(
                        "batches cannot be nested".into(),
                    ));
                }
                let inner = Nesting {
                    in_batch: true,
                    ..nesting
                };
                let responses = match cmd {
                    // Items taken by value when nobody else holds the batch (a log entry
                    // still cached for replication does), else applied from a reference.
                    Cow::Owned(Command::Batch(items)) => match Arc::try_unwrap(items) {
                        Ok(items) => items
                            .into_iter()
                            .map(|c| self.apply_nested(Cow::Owned(c), inner, events))
                            .collect(),
                        Err(shared) => shared
                            .iter()
                            .map(|c| self.apply_nested(Cow::Borrowed(c), inner, events))
                            .collect(),
                    },
                    Cow::Borrowed(Command::Batch(items)) => items
                        .iter()
                        .map(|c| self.apply_nested(Cow::Borrowed(c), inner, events))
                        .collect(),
                    // Matched as a batch above.
                    _ => Vec::new(),
                };
                CommandResponse::ok(Outcome::Batch(responses))
            }
            Command::Idempotent { key, .. } => {
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
                    // Applied before: nothing happens again, so nothing is reported.
                    return previous.clone();
                }
                let (key, command) = match cmd {
                    Cow::Owned(Command::Idempotent { key, command }) => (key, Cow::Owned(*command)),
                    Cow::Borrowed(Command::Idempotent { key, command }) => {
                        (key.clone(), Cow::Borrowed(command.as_ref()))
                    }
                    // Matched as an idempotency envelope above.
                    _ => {
                        return CommandResponse::err(Error::InvalidCommand(
                            "unexpected envelope".into(),
                        ))
                    }
                };
                let response = self.apply_nested(
                    command,
                    Nesting {
                        in_idempotent: true,
                        ..nesting
                    },
                    events,
                );
                self.idempotency.insert(&key, response.clone());
                response
            }
            _ => {
                let before = events.len();
                let result = self.apply_leaf(cmd, events);
                if result.is_err() {
                    // A rejected command changed nothing: it reports nothing either.
                    events.truncate(before);
                }
                result.into()
            }
        }
    }

    /// One non-envelope command; the connector saves take their spec by value when the command
    /// is owned (the other handlers copy only the little they keep).
    fn apply_leaf(&mut self, cmd: Cow<'_, Command>, events: &mut Events) -> Result<Outcome, Error> {
        use connectors::ConnectorMode;
        let (spec, mode) = match cmd {
            Cow::Owned(Command::CreateConnector { spec }) => (spec, ConnectorMode::Create),
            Cow::Owned(Command::UpdateConnector { spec }) => (spec, ConnectorMode::Update),
            Cow::Owned(Command::PutConnector { spec }) => (spec, ConnectorMode::Upsert),
            other => return self.apply_one(other.as_ref(), events),
        };
        self.save_connector(spec, mode)
    }

    fn apply_one(&mut self, cmd: &Command, events: &mut Events) -> Result<Outcome, Error> {
        match cmd {
            Command::Noop => Ok(Outcome::Noop),
            Command::RegisterWorker(r) => self.register(r, events),
            Command::DeregisterWorker { worker_id } => self.deregister(worker_id, events),
            Command::SetWorkerStatus {
                worker_id,
                status,
                now_ms,
                reason,
            } => self.set_status(worker_id, *status, *now_ms, reason.as_deref(), events),
            Command::CreateGroup {
                group_id,
                spec,
                placements,
                next_rr_cursor,
                created_at_ms,
            } => self.create_group(
                group_id,
                spec,
                placements,
                *next_rr_cursor,
                *created_at_ms,
                events,
            ),
            Command::DeleteGroup { group_id } => self.delete_group(group_id, events),
            Command::Rollout(step) => self.apply_rollout(step, events),
            Command::UpdatePlacement {
                group_id,
                pipeline_name,
                replica,
                epoch,
                worker_id,
                pipeline_id,
                status,
                error,
            } => self.update_placement(groups::PlacementUpdate {
                group_id,
                pipeline: pipeline_name,
                replica: *replica,
                epoch: *epoch,
                worker_id: worker_id.as_deref(),
                pipeline_id: pipeline_id.as_deref(),
                status: *status,
                error: error.as_deref(),
            }),
            Command::FailPipeline {
                group_id,
                pipeline_name,
                replica,
                epoch,
                pipeline_id,
                reason,
            } => self.fail_pipeline(
                (group_id, pipeline_name, *replica),
                *epoch,
                pipeline_id,
                reason,
            ),
            Command::CreateConnector { spec } => {
                self.save_connector(spec.clone(), connectors::ConnectorMode::Create)
            }
            Command::UpdateConnector { spec } => {
                self.save_connector(spec.clone(), connectors::ConnectorMode::Update)
            }
            Command::PutConnector { spec } => {
                self.save_connector(spec.clone(), connectors::ConnectorMode::Upsert)
            }
            Command::DeleteConnector { name } => self.delete_connector(name),
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
            } => self.start_migration(
                migrations::StartMigration {
                    migration_id,
                    group_id,
                    pipeline_name,
                    replica: *replica,
                    from_worker,
                    to_worker: to_worker.as_deref(),
                    reason: *reason,
                    next_rr_cursor: *next_rr_cursor,
                    now_ms: *now_ms,
                },
                events,
            ),
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
                events,
            ),
            Command::FailMigration {
                migration_id,
                error,
                now_ms,
            } => self.fail_migration(migration_id, error, *now_ms, events),
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

    /// Number of connectors (O(1): the write path checks it on every connector create).
    pub fn connector_count(&self) -> usize {
        self.connectors.len()
    }

    /// A connector by name.
    pub fn connector(&self, name: &str) -> Option<&ConnectorSpec> {
        self.connectors.get(name).map(Arc::as_ref)
    }

    /// Every connector, sorted by name.
    pub fn connectors(&self) -> impl Iterator<Item = &ConnectorSpec> {
        self.connectors.values().map(Arc::as_ref)
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
