//! The Varpulis coordinator: REST API, follower → leader proxy and leader-only tasks around a
//! Raft-replicated [`varpulis_cluster::ClusterState`].
//!
//! Every coordinator serves reads from its applied state; writes go through Raft on the leader
//! (followers forward them, [`proxy`]). Heartbeats stay out of the log ([`health`], [`sweep`]); the
//! leader deploys placements on workers ([`deploy`]) and keeps them running ([`reconciler`]).
//! Start a node with [`server::run`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod auth;
pub mod body_cap;
pub mod checkpoint;
pub mod config;
pub mod deploy;
pub mod drain;
pub mod error;
pub mod events;
pub mod health;
#[cfg(feature = "k8s")]
pub mod k8s;
pub mod metrics;
pub mod nats;
pub mod proxy;
pub mod reconciler;
pub mod rolling;
pub mod routes;
pub mod server;
pub mod state;
pub mod sweep;
// Self-healing: phi-accrual detection and rebalancing.
pub mod phi;
pub mod rebalance;
pub mod validate;

pub use config::CoordinatorConfig;
pub use error::ApiError;
pub use server::run;
