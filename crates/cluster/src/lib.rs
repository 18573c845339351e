//! The coordinator's replicated state machine: pure, deterministic, no I/O, no clocks.
//!
//! The Raft log carries [`Command`]s; [`ClusterState::apply`] applies one and answers a
//! [`CommandResponse`] (an [`Outcome`] or an [`Error`]; a rejected command changes nothing).
//! Time, ids and placement choices are decided by the leader before proposing
//! ([`placement`]) and travel inside the command, so every replica that applies the same log
//! holds the same state, with the same [`ClusterState::state_hash`].
//!
//! Modules: [`state`] (the state and `apply`), [`command`] (commands and responses),
//! [`registry`] (workers and their transition table), [`group`] (groups, placements, spec
//! validation), [`placement`] (strategies and plans), [`routing`], [`migration`],
//! [`connector`], [`error`], [`views`] (API DTOs) and [`limits`] (checked before proposing).
//! See `docs/cluster-state.md`.

pub mod command;
pub mod connector;
pub mod error;
pub mod group;
pub mod limits;
pub mod migration;
pub mod placement;
pub mod registry;
pub mod routing;
pub mod state;
pub mod version;
pub mod views;

pub use command::{Command, CommandResponse, Outcome, PlacementAssignment, RegisterWorker};
pub use error::{Error, LimitScope};
pub use group::{Group, GroupStatus, Placement, PlacementStatus};
pub use limits::Limits;
pub use migration::{Migration, MigrationReason, MigrationStatus};
pub use registry::{Worker, WorkerStatus};
pub use state::{ClusterState, IDEMPOTENCY_CAPACITY, MAX_CHECKPOINT_BYTES};
