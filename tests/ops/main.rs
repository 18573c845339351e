//! Operations tests: deployment files (systemd units, Docker Compose, Helm), monitoring
//! (Prometheus rules, Grafana dashboard), the examples, the `varpulis cluster` client against
//! live ensembles (status, every command, closed pipes, completions, man pages), and
//! `docs/openapi.yaml` checked against the servers.

#[path = "../cluster/harness.rs"]
mod harness;

mod cli;
mod cli_misc;
mod cli_status;
mod deploy;
mod docs_curl;
mod examples;
mod helm;
mod monitoring;
mod openapi;
mod snapshot;

use std::path::PathBuf;

/// Whether an answer is a server-sent event stream (its body never ends, so it is not read).
pub fn is_event_stream(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The stdout of a finished command, asserting it succeeded (its stderr otherwise).
pub fn stdout_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The repository root (where `deploy/` and `examples/` live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
