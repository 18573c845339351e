//! Serving a connection on another Tokio runtime, chosen from the first bytes its client sent.
//!
//! A coordinator's Raft core runs on a runtime of its own (one thread). A follower's
//! `POST /raft/append` served on the HTTP runtime costs two thread wake-ups per RPC: the HTTP
//! worker hands the request to the core's thread and is woken again for the answer. Served on
//! the core's runtime instead, the connection's reads, the core's work (append, `fdatasync`) and
//! the answer's write happen on one thread (issue 24). The accept loop cannot know what a
//! connection is for, so [`place`] peeks at the first bytes of a clear-text connection
//! (without consuming them), asks the server's [`Placement`], and moves the socket to the runtime
//! it names: deregistered from this runtime's reactor and registered with the other's, so that
//! its readiness wakes that runtime's thread directly.
//!
//! While it waits for those bytes a connection is already registered with the connection cap's
//! registry: a client that connects and stays silent is reclaimed like any idle connection.
//!
//! TLS connections are served where they were accepted: their first bytes are ciphertext. So is
//! a connection whose first bytes do not arrive within the header timeout, or do not decide.
//!
//! **A moved connection serves only what it was moved for.** Its requests run on the runtime it
//! was moved to (a consensus thread): a request the [`Placement`] does not [`Placement::serves`]
//! is answered `400` and the connection closed, and so is a connection on which a request was
//! refused `401`/`403` (a client must not keep a consensus thread's connection to try secrets
//! on). The placement should only move connections whose first request carries valid
//! credentials.

use crate::listener::Conn;
use axum::extract::Request;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// Which connections are served on another runtime, and what they may carry there.
pub trait Placement: Send + Sync {
    /// The runtime of a connection whose client sent `head` first (at most [`HEAD_BYTES`],
    /// whatever had arrived: possibly a part of the first request); `None` serves it on the
    /// runtime that accepted it.
    fn runtime_for(&self, head: &[u8]) -> Option<Handle>;
    /// Whether a moved connection serves `req` (else `400` and the connection closes).
    fn serves(&self, req: &Request) -> bool;
}

/// A shared [`Placement`].
pub type SharedPlacement = Arc<dyn Placement>;

/// Bytes of a connection looked at by a [`Placement`] (a request line and its headers).
pub const HEAD_BYTES: usize = 2048;

/// Where a connection is served.
pub(crate) enum Placed {
    /// On this runtime.
    Here(Conn),
    /// On the runtime of `Handle`, the socket deregistered from this one.
    There(Handle, std::net::TcpStream),
    /// Nowhere: the socket could not be moved (it is closed; its client reconnects).
    Gone,
}

/// Peeks at the first bytes of `conn` (waiting at most `wait`) and asks `placement`.
pub(crate) async fn place(conn: Conn, placement: &dyn Placement, wait: Duration) -> Placed {
    let Conn::Plain(stream) = conn else {
        return Placed::Here(conn);
    };
    let mut head = vec![0u8; HEAD_BYTES];
    let seen = match tokio::time::timeout(wait, stream.peek(&mut head)).await {
        Ok(Ok(n)) => n,
        // A silent client or a failed read: hyper meets the same and ends the connection.
        _ => return Placed::Here(Conn::Plain(stream)),
    };
    let Some(handle) = placement.runtime_for(&head[..seen]) else {
        return Placed::Here(Conn::Plain(stream));
    };
    match stream.into_std() {
        Ok(std) => Placed::There(handle, std),
        Err(err) => {
            tracing::debug!("cannot move a connection to its runtime: {err}");
            Placed::Gone
        }
    }
}

/// The socket moved by [`place`], registered with the current runtime.
pub(crate) fn adopt(std: std::net::TcpStream) -> std::io::Result<Conn> {
    tokio::net::TcpStream::from_std(std).map(Conn::Plain)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    struct Appends(Handle);

    impl Placement for Appends {
        fn runtime_for(&self, head: &[u8]) -> Option<Handle> {
            head.starts_with(b"POST /raft/append")
                .then(|| self.0.clone())
        }
        fn serves(&self, req: &Request) -> bool {
            req.uri().path() == "/raft/append"
        }
    }

    fn other_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("placed")
            .enable_all()
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_matching_head_moves_the_socket_with_its_bytes_unread() {
        let runtime = other_runtime();
        let handle = runtime.handle().clone();
        let placement = Appends(handle);
        let (mut client, server) = pair().await;
        client
            .write_all(b"POST /raft/append HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let Placed::There(target, std) =
            place(Conn::Plain(server), &placement, Duration::from_secs(5)).await
        else {
            panic!("an append connection is placed on the other runtime");
        };
        // Served there: the request's bytes are all still to read, and the answer goes out.
        let (thread, read) = target
            .spawn(async move {
                let Conn::Plain(mut stream) = adopt(std).unwrap() else {
                    unreachable!()
                };
                let mut buf = vec![0u8; 64];
                let n = stream.read(&mut buf).await.unwrap();
                stream.write_all(b"done").await.unwrap();
                let thread = std::thread::current().name().map(str::to_owned);
                (thread, buf[..n].to_vec())
            })
            .await
            .unwrap();
        assert_eq!(thread.as_deref(), Some("placed"));
        assert_eq!(read, b"POST /raft/append HTTP/1.1\r\n\r\n");
        let mut answer = [0u8; 4];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"done");
        runtime.shutdown_background();
    }

    #[tokio::test]
    async fn other_heads_and_silent_clients_stay_here() {
        let runtime = other_runtime();
        let handle = runtime.handle().clone();
        let placement = Appends(handle);
        let (mut client, server) = pair().await;
        client
            .write_all(b"GET /health HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        assert!(matches!(
            place(Conn::Plain(server), &placement, Duration::from_secs(5)).await,
            Placed::Here(_)
        ));
        let (_silent, server) = pair().await;
        assert!(matches!(
            place(Conn::Plain(server), &placement, Duration::from_millis(50)).await,
            Placed::Here(_)
        ));
        runtime.shutdown_background();
    }

    /// Options that place append connections on `runtime`.
    fn placing(
        runtime: &tokio::runtime::Runtime,
        limits: crate::ConnLimits,
    ) -> crate::ServeOptions {
        crate::ServeOptions {
            limits,
            placement: Some(Arc::new(Appends(runtime.handle().clone()))),
            ..Default::default()
        }
    }

    /// Serves `router` with `options` on a loopback port; its address.
    async fn serve(router: axum::Router, options: crate::ServeOptions) -> std::net::SocketAddr {
        serve_until(router, options, std::future::pending()).await.0
    }

    /// [`serve`] until `shutdown` completes; the address and the server's task.
    async fn serve_until(
        router: axum::Router,
        options: crate::ServeOptions,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> (
        std::net::SocketAddr,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = crate::AnyListener::new(tcp, None).unwrap();
        let server = tokio::spawn(crate::serve_with(listener, router, options, shutdown));
        (addr, server)
    }

    /// Writes `request` and reads one answer (its head and a `content-length` body).
    async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> String {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return text;
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(
                n > 0,
                "closed before the answer: {}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }

    async fn closed(stream: &mut tokio::net::TcpStream) -> bool {
        let mut rest = Vec::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test]
    async fn a_moved_connection_is_served_there_and_only_for_what_it_was_moved_for() {
        use axum::routing::{get, post};
        let runtime = other_runtime();
        let thread = || async {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            if name == "placed" {
                (axum::http::StatusCode::OK, name)
            } else {
                (axum::http::StatusCode::UNAUTHORIZED, name)
            }
        };
        let router = axum::Router::new()
            .route("/raft/append", post(thread))
            .route("/other", get(thread));
        let addr = serve(router, placing(&runtime, crate::ConnLimits::default())).await;
        let append = "POST /raft/append HTTP/1.1\r\nhost: n\r\ncontent-length: 0\r\n\r\n";

        // Moved: its requests run on the other runtime's thread, one after another.
        let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
        for _ in 0..3 {
            let answer = exchange(&mut peer, append).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("placed"), "{answer}");
        }
        // Anything else on it: 400, and the connection closes.
        let answer = exchange(&mut peer, "GET /other HTTP/1.1\r\nhost: n\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(
            closed(&mut peer).await,
            "the moved connection closes after a 400"
        );

        // Not moved: served where it was accepted (the handler answers 401 off the placed
        // thread), and it stays open.
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut client, "GET /other HTTP/1.1\r\nhost: n\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        let answer = exchange(&mut client, append).await;
        assert!(
            answer.starts_with("HTTP/1.1 401"),
            "a later append is not moved: {answer}"
        );
        runtime.shutdown_background();
    }

    #[tokio::test]
    async fn a_refused_request_closes_a_moved_connection() {
        use axum::routing::post;
        let runtime = other_runtime();
        let router = axum::Router::new().route(
            "/raft/append",
            post(|| async { axum::http::StatusCode::UNAUTHORIZED }),
        );
        let addr = serve(router, placing(&runtime, crate::ConnLimits::default())).await;
        let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = exchange(
            &mut peer,
            "POST /raft/append HTTP/1.1\r\nhost: n\r\ncontent-length: 0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(
            closed(&mut peer).await,
            "no second try on a moved connection"
        );
        runtime.shutdown_background();
    }

    #[tokio::test]
    async fn silent_connections_being_placed_make_room_for_new_ones() {
        use axum::routing::get;
        let runtime = other_runtime();
        let router = axum::Router::new().route("/who", get(|| async { "me" }));
        let limits = crate::ConnLimits {
            max_connections: 8,
            // Longer than the test: only a reclaim closes a silent connection.
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..crate::ConnLimits::default()
        };
        let addr = serve(router, placing(&runtime, limits)).await;
        // Connections that never send a byte wait in `place` for their first bytes.
        let mut silent = Vec::new();
        for _ in 0..40 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = exchange(&mut client, "GET /who HTTP/1.1\r\nhost: n\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            closed(&mut silent.remove(0)).await,
            "the oldest silent one was reclaimed"
        );
        runtime.shutdown_background();
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_silent_connections_being_placed() {
        use axum::routing::get;
        let runtime = other_runtime();
        let router = axum::Router::new().route("/who", get(|| async { "me" }));
        let limits = crate::ConnLimits {
            header_read_timeout: Duration::from_secs(30),
            ..crate::ConnLimits::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr, server) = serve_until(router, placing(&runtime, limits), async move {
            let _ = stopped.await;
        })
        .await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let ended = tokio::time::timeout(Duration::from_secs(5), server).await;
        assert!(
            ended.is_ok(),
            "the server stops without waiting 30 s for a silent client"
        );
        assert!(closed(&mut silent).await);
        runtime.shutdown_background();
    }
}
