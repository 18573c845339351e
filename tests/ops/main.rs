//! Operations tests: deployment files (systemd units, Docker Compose), the examples, the
//! `varpulis cluster` client against a live local ensemble (3 coordinators + 2 workers), and
//! `docs/openapi.yaml` checked against the servers.

#[path = "../cluster/harness.rs"]
mod harness;

mod cli;
mod deploy;
mod docs_curl;
mod examples;
mod helm;
mod openapi;

use std::path::PathBuf;

/// The repository root (where `deploy/` and `examples/` live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
