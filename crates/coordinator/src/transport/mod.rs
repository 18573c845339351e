//! How the coordinator and the workers reach each other.
//!
//! - [`worker_client`]: every call the coordinator makes to a worker (deploy, checkpoint,
//!   inject, hand-over, output streams), over HTTP or NATS behind one type.
//! - [`nats`]: the NATS cluster transport: this node's connection ([`nats::link`]) and, on the
//!   leader, the registration and heartbeat subscriptions ([`nats::server`]).

pub mod nats;
pub mod worker_client;
