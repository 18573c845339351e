//! The coordinator's replicated state machine: pure, deterministic, no I/O, no clocks.
//!
//! The Raft log carries [`Command`]s; [`ClusterState::apply`] applies one and answers
//! [`Applied`]: the [`CommandResponse`] (an [`Outcome`] or an [`Error`]; a rejected command
//! changes nothing) and the typed events it produced (`varpulis_api::events::ClusterEvent`).
//! Time, ids and placement choices are decided by the leader before proposing ([`placement`],
//! [`plan`]) and travel inside the command, so every replica that applies the same log holds
//! the same state, with the same [`ClusterState::state_hash`], and reports the same events.
//!
//! Modules, bottom up: [`error`]; the records [`registry`] (workers and their transition
//! table), [`migration`], [`connector`], [`strategy`], [`group`] (groups, placements, spec
//! validation), [`version`] (versions and rolling updates); [`command`] (commands and
//! responses); [`state`] (the state, `apply`, and one `impl` block per concept); then what
//! reads the state: [`placement`] (strategies and plans), [`routing`], [`views`] (API DTOs),
//! [`plan`] (the leader's decisions as pure planners) and [`limits`] (what may enter the log,
//! checked before proposing). See `docs/cluster-state.md`.

pub mod command;
pub mod connector;
pub mod error;
pub mod group;
pub mod identity;
pub mod limits;
pub mod migration;
pub mod placement;
pub mod plan;
pub mod registry;
pub mod routing;
pub mod state;
pub mod strategy;
pub mod version;
pub mod views;

pub use command::{Command, CommandResponse, Outcome, PlacementAssignment, RegisterWorker};
pub use error::{Error, LimitScope};
pub use group::{Group, GroupStatus, Placement, PlacementStatus};
pub use limits::Limits;
pub use migration::{Migration, MigrationReason, MigrationStatus};
pub use registry::{Worker, WorkerStatus};
pub use state::{Applied, ClusterState, IDEMPOTENCY_CAPACITY, MAX_CHECKPOINT_BYTES};
