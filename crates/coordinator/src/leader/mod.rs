//! Work only the Raft leader does: keeping the workers in line with the replicated state.
//!
//! Every task gets a [`context::LeaderCtx`] (store, worker client, leader memory, settings),
//! never the HTTP server's state, and acts only while this node leads; it reads replicated
//! state only, so a new leader resumes whatever the old one left half done.
//!
//! - [`store`]: reads and Raft writes of the replicated state; [`error`]: what can fail.
//! - [`liveness`] + [`deadlines`] + [`phi`]: the in-memory heartbeat table, its deadline wheel
//!   and the failure detectors;
//!   [`sweep`]: marks silent workers unhealthy.
//! - [`reconciler`]: failovers, pending placements, migrations, (re)deploys, rebalance rounds.
//! - [`checkpoint`], [`drain`], [`rebalance`], [`rolling`], [`orphans`]: the operations the
//!   reconciler and the API handlers start.
//! - [`executor`]: carries out the actions the pure planners of `varpulis_cluster::plan`
//!   decide (the leader logic itself is there); [`backoff`]: its retry schedule.

pub mod backoff;
pub mod checkpoint;
pub mod context;
pub mod deadlines;
pub mod drain;
pub mod error;
pub mod executor;
pub mod failed;
pub mod liveness;
pub mod orphans;
pub mod phi;
pub mod rebalance;
pub mod reconciler;
pub mod rolling;
pub mod store;
pub mod suspect;
pub mod sweep;
