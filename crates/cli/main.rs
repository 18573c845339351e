//! The single `varpulis` binary: parses flags with clap and hands a plain config to the
//! library crates. No logic lives here beyond wiring and exit codes.

mod cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

/// Varpulis: streaming event processing with a Raft-replicated cluster mode.
#[derive(Debug, Parser)]
#[command(name = "varpulis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a VPL program and print diagnostics (exit 1 on errors).
    Check(cmd::check::Args),
    /// Run a VPL program over an event file and print output events as JSON lines.
    Run(cmd::run::Args),
    /// Run a worker: the VPL runtime behind a REST API, optionally registered with coordinators.
    Server(Box<cmd::server::Args>),
    /// Run a coordinator node (a Raft group of one without --raft-peers).
    Coordinator(Box<cmd::coordinator::Args>),
    /// Start a local ensemble: three coordinators, workers and an embedded MQTT broker.
    Local(cmd::local::Args),
    /// Operate a running cluster: status, workers, groups, inject, topology, connectors,
    /// migrations, members, events, snapshot.
    Cluster(cmd::cluster::Args),
    /// Backup files, offline: verify one (`status`), or build a new cluster's data dir from one
    /// (`restore`).
    Snapshot(cmd::snapshot::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::Args),
    /// Print the man page, or write one per command with --out-dir.
    Man(cmd::manpages::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => cmd::check::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Server(args) => cmd::server::run(*args),
        Command::Coordinator(args) => cmd::coordinator::run(*args),
        Command::Local(args) => cmd::local::run(args),
        Command::Cluster(args) => cmd::cluster::run(args),
        Command::Snapshot(args) => cmd::snapshot::run(args),
        Command::Completions(args) => cmd::completions::run(args, Cli::command()),
        Command::Man(args) => cmd::manpages::run(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        // The reader of our stdout went away (`| head`): nothing left to say to anyone.
        Err(err) if cmd::output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            cmd::output::err_line(&format!("error: {err:#}"));
            ExitCode::from(2)
        }
    }
}
