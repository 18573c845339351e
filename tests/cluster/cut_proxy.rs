//! A TCP proxy in front of a coordinator that a test can cut for one worker.
//!
//! Every connection is relayed to the target. A connection whose client side carried the
//! worker's credential (`x-api-key: <key>`) is that worker's; while the proxy is cut, such a
//! connection is closed as soon as it is recognized (new ones after their first request, live
//! ones at once), so the worker can reach no coordinator through any proxy while the Raft
//! traffic between coordinators, which also goes through the proxies, and every other client
//! keep flowing. The coordinators advertise the proxy addresses, so discovery hands the worker
//! proxy URLs too.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy.
pub struct CutProxy {
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    cut: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free port and relays to `target`; `tag` (case-insensitive bytes) marks the
    /// connections the cut closes.
    pub async fn start(target: SocketAddr, tag: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (cut, watch_cut) = watch::channel(false);
        let tag: Arc<[u8]> = tag.to_ascii_lowercase().into_bytes().into();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let (tag, cut) = (tag.clone(), watch_cut.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        relay(client, server, tag, cut).await;
                    }
                });
            }
        });
        Self { port, cut, task }
    }

    /// The base URL of the proxy.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts (`true`) or restores (`false`) the tagged connections.
    pub fn set_cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    tag: Arc<[u8]>,
    mut cut: watch::Receiver<bool>,
) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut tagged = false;
    // The end of the previous read, so a tag split over two reads is still seen.
    let mut carry: Vec<u8> = Vec::new();
    let mut up = [0u8; 16 * 1024];
    let mut down = [0u8; 16 * 1024];
    loop {
        if tagged && *cut.borrow() {
            return;
        }
        tokio::select! {
            r = cr.read(&mut up) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                if !tagged {
                    carry.extend(up[..n].iter().map(u8::to_ascii_lowercase));
                    tagged = contains(&carry, &tag);
                    let keep = carry.len().saturating_sub(tag.len());
                    carry.drain(..keep);
                }
                if tagged && *cut.borrow() {
                    return;
                }
                if sw.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            r = sr.read(&mut down) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                if cw.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
            changed = cut.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
