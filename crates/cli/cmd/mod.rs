//! One module per subcommand. Each exposes `Args` (clap) and `run(Args) -> anyhow::Result<ExitCode>`.

pub mod check;
pub mod cluster;
pub mod coordinator;
pub mod local;
pub mod logging;
pub mod run;
pub mod server;
