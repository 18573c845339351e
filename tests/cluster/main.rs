//! Process-level cluster tests: real `varpulis coordinator` and `varpulis server` processes on
//! loopback, driven over HTTP exactly as an operator would (see `docs/testing.md`).
//!
//! One test binary, one module per area. Every test starts its own small ensemble on free
//! ports, uses short timings (worker heartbeat 1 s, unhealthy after 3 s, sweep 1 s) and
//! bounds every wait.

mod bad_input;
mod events;
mod drain;
mod failover;
mod harness;
mod iot;
mod output;
mod join;
mod migration;
mod pagination;
mod quorum;
mod rolling;
mod rebalance;
mod tutorial;
mod worker_health;
