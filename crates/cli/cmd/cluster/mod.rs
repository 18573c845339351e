//! `varpulis cluster`: a client for a running coordinator ensemble, one module per subcommand.
//!
//! Requests go to the `--coordinator` URLs in turn ([`client`]); output is a human table by
//! default and JSON with `--json` (for lists: every item of every page). Printing survives a
//! closed pipe ([`crate::cmd::output`]). Exit codes: 0 success; 1 the server refused (4xx/5xx);
//! 2 usage or transport failure; `status` has its own (0 healthy, 1 degraded, 2 no quorum).
//!
//! `leader transfer` hands Raft leadership over (`POST /raft/transfer-leader`, docs/raft.md).

mod client;
mod connectors;
mod events;
mod groups;
mod inject;
mod leader;
mod members;
mod migrations;
mod report;
mod resolve;
mod snapshot;
mod sse;
mod status;
mod topology;
mod workers;

use anyhow::Context;
use std::process::ExitCode;

use crate::cmd::output::{errln, is_broken_pipe};
use client::{Client, ClientError};

/// Flags of `varpulis cluster`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Coordinator URL(s), comma separated; the next one is tried on connection errors, 421 and 503.
    #[arg(
        long,
        env = "VARPULIS_COORDINATOR",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:9100",
        global = true
    )]
    coordinator: Vec<String>,
    /// API key of the coordinators (sent as `x-api-key`).
    #[arg(long, env = "VARPULIS_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print JSON instead of a table (lists: every item, all pages).
    #[arg(long, global = true)]
    json: bool,
    /// Per-request timeout in seconds (also how long `workers drain --wait` waits).
    #[arg(long, default_value_t = 30.0, global = true, value_name = "SECS")]
    timeout: f64,
    /// CA bundle the coordinators' certificates must chain to (https:// coordinators)
    #[arg(long, env = "VARPULIS_TLS_CA", value_name = "FILE", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for coordinators that require mutual TLS (needs --tls-key)
    #[arg(long, env = "VARPULIS_TLS_CERT", value_name = "FILE", global = true)]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, env = "VARPULIS_TLS_KEY", value_name = "FILE", global = true)]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

/// Subcommands of `varpulis cluster`.
#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Every coordinator (found from the membership): role, term, applied index, lag, version,
    /// data size, health; the quorum; workers by state. Exit 0 healthy, 1 degraded, 2 no quorum.
    Status(status::StatusArgs),
    /// Workers: list (default), get, drain, remove.
    Workers {
        #[command(subcommand)]
        command: Option<workers::WorkersCmd>,
    },
    /// Pipeline groups: list, get, deploy, rm, update, rollback, versions, output.
    #[command(subcommand)]
    Groups(groups::GroupsCmd),
    /// Send events to a pipeline group (routed by its routes).
    Inject(inject::InjectArgs),
    /// Which pipeline runs on which worker, with routes.
    Topology,
    /// Pipeline migrations (after worker failures, drains, rebalances).
    Migrations(migrations::MigrationsArgs),
    /// Even out the load: move pipelines from busy workers to idle ones.
    Rebalance,
    /// Named connectors (MQTT, NATS) that VPL refers to: list, get, create, update, rm.
    #[command(subcommand)]
    Connectors(connectors::ConnectorsCmd),
    /// Raft membership: list, add or remove a coordinator.
    #[command(subcommand)]
    Members(members::MembersCmd),
    /// Raft leadership: `leader transfer [--to N]` hands it to another voter.
    #[command(subcommand)]
    Leader(leader::LeaderCmd),
    /// Follow the cluster event stream (workers, groups, migrations, leader changes).
    Events(events::EventsArgs),
    /// Online backup: `snapshot save FILE` (restore offline with `varpulis snapshot restore`).
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tls = client::tls(
        args.tls_ca.as_deref(),
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    )?;
    let client =
        Client::new(&args.coordinator, args.api_key.clone(), args.timeout)?.with_tls(&tls)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(dispatch(&client, &args)) {
        Ok(code) => Ok(code),
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<ClientError>() {
            Some(ClientError::Http { .. }) => {
                errln!("error: {e:#}");
                Ok(ExitCode::from(1))
            }
            _ => Err(e),
        },
    }
}

async fn dispatch(c: &Client, args: &Args) -> anyhow::Result<ExitCode> {
    let json = args.json;
    match &args.command {
        Cmd::Status(a) => return status::run(c, a, json).await,
        Cmd::Workers { command } => workers::run(c, command.as_ref(), json).await?,
        Cmd::Groups(g) => groups::run(c, g, json).await?,
        Cmd::Inject(i) => inject::run(c, i, json).await?,
        Cmd::Topology => topology::run(c, json).await?,
        Cmd::Migrations(m) => migrations::run(c, m, json).await?,
        Cmd::Rebalance => workers::rebalance(c, json).await?,
        Cmd::Connectors(cmd) => connectors::run(c, cmd, json).await?,
        Cmd::Members(m) => members::run(c, m, json).await?,
        Cmd::Leader(l) => leader::run(c, l, json).await?,
        Cmd::Events(e) => events::run(c, e, json).await?,
        Cmd::Snapshot(s) => snapshot::run(c, s, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}
