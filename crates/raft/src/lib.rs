//! The coordinator's Raft layer: openraft 0.9 with sled-backed storage and an HTTP network.
//!
//! - [`types`]: the openraft type configuration (`Command` in, `CommandResponse` out).
//! - [`log_store`]: the durable Raft log (sled, flushed before acknowledging), with an
//!   [`entry_cache`] of recent entries for replication reads.
//! - [`codec`]: the versioned storage format of every record; [`migrate`]: opening a data dir
//!   of the older (JSON) format, refusing a newer one.
//! - [`state_machine`]: applies committed commands to `ClusterState`; `snapshot_store`:
//!   the stored snapshot (metadata in sled, data in a [`snapshot_dir`] file made durable first).
//! - [`network`]: outbound RPCs with reqwest; [`routes`]: the inbound `/raft/*` axum routes
//!   ([`peer_conn`]: peers' RPC connections served on the consensus thread);
//!   [`wire`]: the format version every peer RPC body carries; [`rpc_codec`]: the binary
//!   bodies of version 2.
//! - [`auth`]: who may call which route (peer secret, API key, mutual-TLS hook).
//! - [`guard`]: sanity checks on peer RPCs (absurd terms, strangers, malformed entries).
//! - [`node`]: [`RaftNode`], the handle the coordinator uses (write, read, leader, metrics).
//! - [`join`]: joining a running group (`--join`): learner, catch up, voter.
//! - [`batch`]: merges concurrent writes into one log entry (one fsync per batch).
//! - [`snapshot_file`]: the backup file format (online snapshot, offline status);
//!   [`restore`]: building a new cluster's data dir from one; [`cluster_id`]: whose it is.

// openraft's own error types (StorageError, RPCError) are large by design and dictated by its
// traits; boxing them at every storage helper would only add allocations on the I/O path.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod batch;
pub mod cluster_id;
pub mod codec;
pub mod cork;
pub mod entry_cache;
pub mod error;
pub mod flusher;
pub mod guard;
pub mod join;
mod layout;
pub mod log_store;
pub mod migrate;
pub mod network;
pub mod node;
pub mod peer_conn;
pub mod peer_log;
pub mod private_dir;
mod purger;
pub mod restore;
pub mod routes;
pub mod rpc_codec;
pub mod snapshot_dir;
pub mod snapshot_file;
mod snapshot_store;
pub mod state_machine;
pub mod types;
pub mod vote_file;
pub mod wal;
pub mod wire;

pub use auth::{Credentials, PeerCertificate, PEER_SECRET_HEADER};
pub use error::{Error, WriteError};
pub use join::{join_group, JoinRequest, Joined};
pub use node::{RaftConfig, RaftNode};
pub use routes::{router, write_error_response};
pub use state_machine::{AppliedCommand, AppliedEvent, AppliedState, SharedState};
pub use types::{NodeId, TypeConfig};
