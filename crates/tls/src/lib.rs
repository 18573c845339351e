//! TLS for every Varpulis connection (issue 18 item 7), in one place.
//!
//! - [`TlsSettings`]: the four files a process is given (`--tls-cert`, `--tls-key`, `--tls-ca`,
//!   `--tls-client-ca`) and what they switch on.
//! - [`ServerTls`]: the HTTPS side. Its [`rustls::ServerConfig`] is rebuilt from the files on
//!   [`ServerTls::reload`] (the process calls it on SIGHUP, see [`reload`]); new handshakes use
//!   the new certificate, open connections keep theirs.
//! - [`ClientTls`]: the client side, shared by every outbound client of a process (Raft peers,
//!   the leader proxy, the worker client, the worker's coordinator client, the CLI, sessions):
//!   [`ClientTls::reqwest_builder`] and [`ClientTls::rustls_config`].
//! - [`listener`]: a listener that is plain TCP or TLS.
//! - [`serve()`] / [`serve_with`]: serve an axum router on it within the connection limits of
//!   [`conns`] (timeouts, a cap sized from the file-descriptor limit, peers served past it),
//!   putting the remote address and the verified client certificate into each request.
//! - [`placement`]: connections served on another runtime, chosen from their first bytes.
//! - [`ratelimit`]: per-client token buckets on write routes (`429 too_many_requests`).
//! - [`secs`]: durations in configuration files, written as (fractional) seconds.
//! - [`throwaway`]: a generated CA and leaf certificates (rcgen) for `varpulis local --tls`
//!   and tests.

pub mod body_timeout;
pub mod client;
pub mod conns;
pub mod error;
pub mod keys;
pub mod listener;
pub mod pem;
pub mod placement;
pub mod ratelimit;
pub mod reload;
pub mod secs;
pub mod serve;
pub mod server;
pub mod settings;
pub mod throwaway;
pub mod verifier;

pub use client::ClientTls;
pub use conns::ConnLimits;
pub use error::TlsError;
pub use listener::{AnyListener, VerifiedClientCert};
pub use serve::{serve, serve_service_with, serve_with, ServeOptions};
pub use server::ServerTls;
pub use settings::TlsSettings;

/// The one crypto provider of the workspace (ring; no aws-lc, no OpenSSL).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
