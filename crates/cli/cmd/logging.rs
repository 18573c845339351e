//! Tracing set-up shared by the long-running subcommands.
//!
//! Log lines are formatted on the calling thread but written to stderr by a dedicated thread
//! (`tracing-appender`'s non-blocking writer), so a slow terminal, pipe or journald never stalls
//! request handling: under heavy write load a synchronous stderr write per registration cost the
//! coordinator about 15 % of its throughput. Up to 128k lines are buffered; beyond that, lines
//! are dropped rather than blocking the server. Colours only when stderr is a terminal.

use std::io::IsTerminal;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// The filter without `RUST_LOG`: our lines at `info`; openraft's at `warn` (its `info` lines
/// dump whole state structs) and none from its replication streams, which log every failed
/// RPC to a down peer (about 40 lines a second): `varpulis_raft::peer_log` says once when a
/// peer goes down, reminds every 30 s with a count, and says when it is back.
pub const DEFAULT_FILTER: &str = "info,openraft=warn,openraft::replication=off";

/// Installs a fmt subscriber on stderr honouring `RUST_LOG` (default [`DEFAULT_FILTER`]). Keep
/// the returned guard alive until the process exits: dropping it flushes the buffered lines.
pub fn init() -> WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    // A second init (tests calling twice) is harmless: ignore the error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer)
        .try_init();
    guard
}
