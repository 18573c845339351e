//! One listener type for plain TCP and TLS.
//!
//! [`AnyListener::tls`] accepts TCP connections and runs each handshake on its own task (with a
//! deadline), so a slow or silent client never holds up the accept loop. `varpulis_tls::serve`
//! serves a router on it and puts into every request an `axum::extract::ConnectInfo<SocketAddr>`
//! (the remote address) and, when the client presented a certificate the client CA verified, a
//! [`VerifiedClientCert`].

use crate::conns::AcceptErrors;
use crate::server::ServerTls;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Deadline of one TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 128;
pub use crate::conns::MAX_PENDING_HANDSHAKES;

/// The leaf certificate a client presented and the client CA verified (mutual TLS).
#[derive(Debug, Clone)]
pub struct VerifiedClientCert(pub Arc<CertificateDer<'static>>);

impl VerifiedClientCert {
    /// Whether the certificate is valid for the DNS name (or IP) `name`.
    pub fn is_valid_for(&self, name: &str) -> bool {
        let Ok(server_name) = ServerName::try_from(name.to_string()) else {
            return false;
        };
        match webpki::EndEntityCert::try_from(self.0.as_ref()) {
            Ok(cert) => cert.verify_is_valid_for_subject_name(&server_name).is_ok(),
            Err(_) => false,
        }
    }
}

/// A plain TCP listener, or one that terminates TLS.
pub enum AnyListener {
    /// Clear text.
    Plain(TcpListener),
    /// TLS (handshakes run in the background; see [`AnyListener::tls`]).
    Tls(TlsListener),
}

/// The TLS side of [`AnyListener`].
pub struct TlsListener {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl AnyListener {
    /// `listener` as is when `tls` is `None`, TLS-terminating otherwise.
    pub fn new(listener: TcpListener, tls: Option<Arc<ServerTls>>) -> io::Result<Self> {
        match tls {
            None => Ok(Self::Plain(listener)),
            Some(tls) => Self::tls(listener, tls),
        }
    }

    /// A listener that accepts on `listener` and hands over connections once their TLS
    /// handshake (with the configuration current at accept time) completed.
    pub fn tls(listener: TcpListener, tls: Arc<ServerTls>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let handshakes = crate::conns::ConnLimits::default().budget().handshakes;
        let accept_loop = tokio::spawn(accept_loop(listener, tls, tx, handshakes));
        Ok(Self::Tls(TlsListener {
            ready,
            local,
            accept_loop,
        }))
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
    handshakes: usize,
) {
    let pending = Arc::new(tokio::sync::Semaphore::new(handshakes));
    let mut errors = AcceptErrors::default();
    loop {
        let permit = tokio::select! {
            () = tx.closed() => return,
            permit = pending.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => {
                errors.succeeded();
                pair
            }
            Err(err) => {
                // Out of file descriptors and the like: back off instead of spinning.
                if let Some(pause) = errors.failed(&err) {
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = TlsAcceptor::from(tls.config());
        let tx = tx.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            match handshake {
                Ok(Ok(tls)) => {
                    let _ = tx.send((Conn::Tls(Box::new(tls)), addr)).await;
                }
                Ok(Err(err)) => tracing::debug!(%addr, "TLS handshake failed: {err}"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

impl AnyListener {
    /// The next connection (after its TLS handshake, for TLS). Errors are the plain listener's
    /// accept errors (the TLS accept loop handles its own).
    pub async fn accept(&mut self) -> io::Result<(Conn, SocketAddr)> {
        match self {
            Self::Plain(listener) => {
                let (stream, addr) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((Conn::Plain(stream), addr))
            }
            Self::Tls(listener) => match listener.ready.recv().await {
                Some(pair) => Ok(pair),
                // The accept loop only ends when the receiver is gone: never here.
                None => std::future::pending().await,
            },
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Self::Plain(listener) => listener.local_addr(),
            Self::Tls(listener) => Ok(listener.local),
        }
    }
}

/// One accepted connection.
pub enum Conn {
    /// Clear text.
    Plain(TcpStream),
    /// After a completed TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// The verified client certificate, if the client presented one.
    pub fn client_certificate(&self) -> Option<VerifiedClientCert> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(stream) => stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| VerifiedClientCert(Arc::new(leaf.clone().into_owned()))),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
