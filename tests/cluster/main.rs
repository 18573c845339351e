//! Process-level cluster tests: real `varpulis coordinator` and `varpulis server` processes on
//! loopback, driven over HTTP exactly as an operator would (see `docs/testing.md`).
//!
//! One test binary, one module per area. Every test starts its own small ensemble on free
//! ports, uses short timings (worker heartbeat 1 s, unhealthy after 3 s, sweep 1 s) and
//! bounds every wait.

mod bad_input;
mod cut_proxy;
mod drain;
mod events;
mod failover;
mod forwarding;
mod harness;
mod iot;
mod join;
mod live_mqtt;
mod many_clients;
mod membership;
mod migration;
mod output;
mod pagination;
mod quorum;
mod rebalance;
mod rolling;
mod sessions;
mod tier3;
mod transfer;
mod tutorial;
mod worker_health;
