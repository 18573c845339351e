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

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
    for _ in 0..3 {
        let port = harness::free_port();
        let mut child = Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(NatsServer {
                    url: format!("{scheme}://127.0.0.1:{port}"),
                    child,
                });
            }
            if let Ok(Some(_)) = child.try_wait() {
                break; // port taken: try another one
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("nats-server did not start");
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
