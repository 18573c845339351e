//! NATS cluster transport, coordinator side (spec/nats-transport.txt, docs/nats.md).
//!
//! Selected with `--transport nats --nats-url URL`. Every node connects to NATS ([`link`]); the
//! HTTP API stays fully available (users keep using it, followers keep proxying writes).
//!
//! - The **leader** subscribes to `varpulis.cluster.register` (request/reply) and
//!   `varpulis.cluster.heartbeat.>` ([`server`]) and hands each message to the same
//!   registration and heartbeat service as the HTTP routes. It drops the subscriptions when it
//!   loses leadership, so a worker's request always reaches the node that can act on it; while
//!   there is no leader the worker sees "no responders" and retries.
//! - A worker that registered over NATS is marked with the label `varpulis.transport=nats`
//!   (replicated with its registration), so any node, including a new leader, sends that
//!   worker's calls over NATS (`crate::transport::worker_client`).

pub mod link;
pub mod server;
