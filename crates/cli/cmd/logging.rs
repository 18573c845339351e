//! Tracing set-up shared by the long-running subcommands.

use tracing_subscriber::EnvFilter;

/// Installs a fmt subscriber on stderr honouring `RUST_LOG` (default `info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests calling twice) is harmless: ignore the error.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
