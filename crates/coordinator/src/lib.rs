//! The Varpulis coordinator: REST API, follower → leader proxy and leader-only tasks around a
//! Raft-replicated [`varpulis_cluster::ClusterState`].
//!
//! Layers, top down (each imports only the ones below it):
//! - [`server`]: starts a node ([`server::run`]) and wires everything together;
//! - [`http`]: the REST API (routes, auth, follower → leader [`http::proxy`], error rendering);
//! - [`transport`]: the worker client (HTTP or NATS) and the NATS registration subjects;
//! - [`workers`]: registration and heartbeats, whatever transport carried them;
//! - [`leader`]: leader-only work (sweep, reconciler, deploy, checkpoints, drain, rebalance,
//!   rolling updates) over a narrow [`leader::context::LeaderCtx`];
//! - leaves: [`config`], [`metrics`], [`error`], [`auth`], [`validate`], [`events`], [`node`].
//!
//! Every coordinator serves reads from its applied state; writes go through Raft on the leader.
//! Heartbeats stay out of the log ([`leader::liveness`]). See `docs/architecture.md`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod http;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod leader;
pub mod metrics;
pub mod node;
pub mod server;
pub mod tls;
pub mod transport;
pub mod validate;
pub mod workers;

pub use config::CoordinatorConfig;
pub use error::ApiError;
pub use server::run;
