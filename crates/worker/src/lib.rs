//! The Varpulis worker (`varpulis server`): the VPL runtime behind a REST API, connectors
//! (MQTT, NATS, inter-pipeline routes), and a client that registers with and heartbeats to the
//! coordinators.
//!
//! Entry point: [`server::run`] with a [`config::WorkerConfig`], a bound listener and a
//! shutdown future. [`broker::start_embedded_broker`] runs an MQTT broker in-process.
//!
//! Modules, from the bottom up (each imports only modules above it in this list):
//! - [`config`] (a leaf), [`error`], [`event_time`], [`backoff`], [`counters`], [`lease`],
//!   [`state_dir`] (the files of `--state-dir`);
//! - [`engine`]: the only user of `varpulis-runtime`;
//! - [`connectors::plan`], [`connectors::sink`]: what a pipeline's connections do, and the
//!   trait its outputs go through;
//! - [`pipeline`]: a deployed pipeline (engine thread, budgets, sources, hand-over) and the
//!   registry;
//! - [`metrics`], [`state`]: what handlers and tasks share;
//! - [`connectors`]: the MQTT, NATS and route connections;
//! - [`coordinator`]: the one client of the coordinators (HTTP or NATS);
//! - [`routes`]: the worker API over HTTP and NATS;
//! - [`persistence`]: what goes to the state dir and when (periodic and final checkpoints,
//!   pipelines restored at start);
//! - [`server`]: ties it together; [`broker`]: the embedded MQTT broker.

pub mod backoff;
pub mod broker;
pub mod config;
pub mod connectors;
pub mod coordinator;
pub mod counters;
pub mod engine;
pub mod error;
pub mod event_codec;
pub mod event_time;
pub mod lease;
pub mod metrics;
pub mod persistence;
pub mod pipeline;
pub mod routes;
pub mod server;
pub mod state;
pub mod state_dir;

pub use broker::{
    start_embedded_broker, start_embedded_broker_at, start_embedded_broker_with, BrokerHandle,
    BrokerTls,
};
pub use config::{PipelineLimits, Transport, WorkerConfig};
pub use error::WorkerError;
pub use server::run;
