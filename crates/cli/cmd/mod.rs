//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<ExitCode>`.
//! `output` (printing that survives a closed pipe) comes first: the client commands use its macros.

pub mod output;

pub mod check;
pub mod cluster;
pub mod completions;
pub mod conns;
pub mod coordinator;
pub mod interrupt;
pub mod local;
pub mod logging;
pub mod manpages;
pub mod run;
pub mod run_sinks;
pub mod server;
pub mod snapshot;
pub mod tls;
