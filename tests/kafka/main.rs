//! Kafka connector tests against a real Kafka-protocol broker (`tansu`, in-memory storage)
//! started on a free loopback port (docs/connectors.md, "Kafka"): consume → process →
//! produce, a worker killed mid-stream and replaced (nothing lost, duplicates counted), a
//! consumer-group rebalance across two workers, and a pipeline moved by a migration (a drain)
//! resuming from the committed offsets.
//!
//! When the `tansu` binary is missing each test prints `SKIPPED: tansu not found (…)` and
//! returns; `.ci/run` installs it (`cargo install tansu`, cached under
//! `~/.cache/varpulis/tansu`).

#[allow(dead_code)]
#[path = "../worker/harness.rs"]
mod harness;

#[path = "../cluster/harness.rs"]
mod procs;

mod broker;
mod crash;
mod migration;
mod pipeline;
mod rebalance;

pub use broker::{start_broker, Broker};
