//! Worker commands: register, deregister, set status (transition table in `crate::registry`).

use varpulis_api::events::{ClusterEvent, WorkerLeft, WorkerStatusChange};

use super::{ClusterState, Events};
use crate::command::{Outcome, RegisterWorker};
use crate::error::Error;
use crate::group::PlacementStatus;
use crate::migration::MigrationStatus;
use crate::registry::{self, Worker, WorkerStatus};

impl ClusterState {
    pub(super) fn register(
        &mut self,
        r: &RegisterWorker,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
        registry::validate_registration(&r.worker_id, &r.address)?;
        if r.max_pipelines == 0 {
            return Err(Error::InvalidWorker(
                "capacity.max_pipelines must be at least 1".into(),
            ));
        }
        if r.labels.keys().any(|k| k.trim().is_empty()) {
            return Err(Error::InvalidWorker("label names must not be empty".into()));
        }
        let (created, status) = match self.workers.get_mut(&r.worker_id) {
            Some(w) => {
                crate::identity::check_rebinding(w, r)?;
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
                (false, w.status)
            }
            None => {
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
                (true, WorkerStatus::Ready)
            }
        };
        events.push(ClusterEvent::WorkerJoined {
            worker_id: r.worker_id.clone(),
            address: r.address.clone(),
            rejoined: !created,
            status: status.to_string(),
        });
        Ok(Outcome::WorkerRegistered {
            worker_id: r.worker_id.clone(),
            created,
            status,
        })
    }

    pub(super) fn deregister(
        &mut self,
        worker_id: &str,
        events: &mut Events,
    ) -> Result<Outcome, Error> {
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
                // A failed program stays failed, without a worker, until the group is updated.
                let failed = p.is_program_failed();
                p.move_to(None);
                if failed {
                    p.program_failed = true;
                } else if p.status != PlacementStatus::Migrating {
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
        events.push(ClusterEvent::WorkerLeft(WorkerLeft::Deregistered {
            worker_id: worker_id.to_string(),
            reason: "deregistered".to_string(),
        }));
        Ok(Outcome::WorkerDeregistered {
            worker_id: worker_id.to_string(),
            orphaned_placements: orphaned,
        })
    }

    pub(super) fn set_status(
        &mut self,
        worker_id: &str,
        status: WorkerStatus,
        now_ms: u64,
        reason: Option<&str>,
        events: &mut Events,
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
            let change = WorkerStatusChange {
                worker_id: worker_id.to_string(),
                from: from.to_string(),
                to: status.to_string(),
                reason: reason.map(str::to_string),
            };
            events.push(match status {
                WorkerStatus::Ready => ClusterEvent::WorkerReady(change),
                WorkerStatus::Unhealthy => ClusterEvent::WorkerUnhealthy(change),
                WorkerStatus::Dead => ClusterEvent::WorkerLeft(WorkerLeft::Dead(change)),
                _ => ClusterEvent::WorkerStatusChanged(change),
            });
        }
        Ok(Outcome::WorkerStatusChanged {
            worker_id: worker_id.to_string(),
            from,
            to: status,
        })
    }
}
