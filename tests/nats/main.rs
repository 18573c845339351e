//! NATS tests against a real `nats-server` started on a free loopback port (docs/nats.md):
//! the NATS connector (`.from`/`.to`) on one worker, and the NATS cluster transport (three
//! coordinators and two workers with `--transport nats`), also over TLS (`tls://`).
//!
//! When the `nats-server` binary is missing each test prints
//! `SKIPPED: nats-server not found (install with apt-get install nats-server)` and returns;
//! `.ci/run` installs it.

#[path = "../cluster/harness.rs"]
mod harness;

mod cluster;
mod connector;
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// A `nats-server` child on `127.0.0.1:port`, killed on drop.
pub struct NatsServer {
    /// Client URL (`nats://127.0.0.1:PORT`).
    pub url: String,
    child: Child,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/usr/local/bin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A worker with `--transport nats --nats-url URL` (and `extra` flags) that advertises an HTTP
/// address nobody listens on: every deploy and inject that works went over NATS.
pub fn nats_worker(id: &str, nats_url: &str, extra: &[String], logs: &Path) -> harness::Worker {
    let port = harness::free_port();
    let advertise = format!("http://127.0.0.1:{}", harness::free_port());
    let mut args = vec![
        "server".to_owned(),
        "--port".into(),
        port.to_string(),
        "--api-key".into(),
        harness::WORKER_KEY.into(),
        "--worker-id".into(),
        id.into(),
        "--advertise-address".into(),
        advertise.clone(),
        "--heartbeat-interval".into(),
        "1".into(),
        "--transport".into(),
        "nats".into(),
        "--nats-url".into(),
        nats_url.into(),
    ];
    args.extend_from_slice(extra);
    harness::Worker {
        id: id.into(),
        port,
        url: advertise,
        proc: harness::Proc::spawn(id, args, logs),
    }
}

/// Coordinators in NATS mode on `nats_url` (with `extra` flags).
pub fn nats_opts(nats_url: &str, extra: &[String]) -> harness::Opts {
    let mut coord_extra_args = vec![
        "--transport".to_owned(),
        "nats".into(),
        "--nats-url".into(),
        nats_url.into(),
    ];
    coord_extra_args.extend_from_slice(extra);
    harness::Opts {
        coord_extra_args,
        ..harness::Opts::default()
    }
}

/// Waits up to 30 s until every worker of `ids` is `ready`; panics with the logs otherwise
/// (`over` names the transport in the message).
pub async fn wait_ready_over(ens: &harness::Ensemble, ids: &[String], over: &str) {
    let ready = harness::try_wait_until(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async move { ens.workers_in_status(ids, "ready").await.then_some(()) },
    )
    .await;
    if ready.is_none() {
        panic!("workers never ready over {over}:\n{}", ens.all_logs(40));
    }
}

/// Starts `nats-server -a 127.0.0.1 -p PORT`; `None` (after printing why) when the binary is
/// missing.
pub fn start_nats() -> Option<NatsServer> {
    start_nats_with(&[], "nats")
}

/// Like [`start_nats`] with extra arguments (e.g. TLS files) and the URL scheme clients use.
pub fn start_nats_with(extra: &[String], scheme: &str) -> Option<NatsServer> {
    let Some(bin) = nats_server_binary() else {
        println!("SKIPPED: nats-server not found (install with apt-get install nats-server)");
        return None;
    };
    let (child, port) = harness::spawn_listening("nats-server", Duration::from_secs(10), |port| {
        let mut c = Command::new(&bin);
        c.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(extra);
        c
    });
    Some(NatsServer {
        url: format!("{scheme}://127.0.0.1:{port}"),
        child,
    })
}

/// Waits (bounded) for the next message of `sub`.
pub async fn next_message(
    sub: &mut async_nats::Subscriber,
    timeout: Duration,
) -> Option<async_nats::Message> {
    use futures::StreamExt;
    tokio::time::timeout(timeout, sub.next())
        .await
        .ok()
        .flatten()
}
