//! Worker (`varpulis server`) integration tests: in-process servers on 127.0.0.1:0 and the
//! real binary for signal handling. One test binary, one module per area.

mod api;
mod budgets;
mod coordinator;
mod harness;
mod mqtt;
mod process;
mod routes;
mod state_dir;
