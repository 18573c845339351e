//! The Varpulis worker (`varpulis server`): the VPL runtime behind a REST API, MQTT connectors,
//! and a client that registers with and heartbeats to the coordinators.
//!
//! Entry point: [`server::run`] with a [`config::WorkerConfig`], a bound listener and a
//! shutdown future. [`broker::start_embedded_broker`] runs an MQTT broker in-process.

pub mod broker;
pub mod config;
pub mod connectors;
pub mod coordinator_client;
pub mod dataplane;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod pipeline;
pub mod routes;
pub mod server;
pub mod timers;
pub mod transport;

pub use broker::{start_embedded_broker, BrokerHandle};
pub use config::WorkerConfig;
pub use error::WorkerError;
pub use server::run;
