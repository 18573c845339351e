//! `varpulis local` (not yet implemented; owned by its issue).

use std::process::ExitCode;

/// Flags of `varpulis local`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`varpulis local` is not implemented yet")
}
