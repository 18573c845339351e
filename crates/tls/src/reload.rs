//! Reloading certificate files on SIGHUP.

use crate::client::ClientTls;
use crate::server::ServerTls;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Spawns a task that, on every SIGHUP until aborted, calls [`ServerTls::reload`] (certificate,
/// key, client CA) and [`ClientTls::reload`] (the `--tls-ca` bundle the process verifies servers
/// with). A failed reload is logged and the previous files stay in use. Without TLS SIGHUP is
/// still caught (and logged), so `systemctl reload` never terminates a process. On non-Unix
/// targets the task does nothing.
pub fn on_sighup(
    server: Option<Arc<ServerTls>>,
    client: ClientTls,
) -> std::io::Result<JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match client.reload() {
                    Ok(()) if client.reloads_ca() => {
                        tracing::info!("SIGHUP: TLS CA bundle (--tls-ca) reloaded")
                    }
                    Ok(()) => {}
                    Err(err) => tracing::error!(
                        "SIGHUP: TLS CA reload failed, keeping the current bundle: {err}"
                    ),
                }
                match server.as_ref().map(|s| s.reload()) {
                    None => tracing::info!("SIGHUP: no TLS configured, nothing to reload"),
                    Some(Ok(())) => tracing::info!("SIGHUP: TLS certificate files reloaded"),
                    Some(Err(err)) => tracing::error!(
                        "SIGHUP: TLS reload failed, keeping the current certificate: {err}"
                    ),
                }
            }
        }))
    }
    #[cfg(not(unix))]
    {
        drop((server, client));
        Ok(tokio::spawn(async {}))
    }
}
