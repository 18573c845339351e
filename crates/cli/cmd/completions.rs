//! `varpulis completions SHELL`: a completion script for bash, zsh, fish, elvish or PowerShell,
//! generated from the clap definitions (so it always matches the binary).
//!
//! Install, e.g.: `varpulis completions bash > /etc/bash_completion.d/varpulis`, or
//! `varpulis completions zsh > "${fpath[1]}/_varpulis"`, or
//! `varpulis completions fish > ~/.config/fish/completions/varpulis.fish`.

use std::io::Write;
use std::process::ExitCode;

/// Flags of `varpulis completions`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Writes the script for `args.shell` to stdout (a closed pipe ends quietly).
pub fn run(args: Args, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script: Vec<u8> = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "varpulis", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
