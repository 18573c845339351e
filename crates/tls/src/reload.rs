//! Reloading certificate files on SIGHUP.

use crate::server::ServerTls;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Spawns a task that calls [`ServerTls::reload`] on every SIGHUP until aborted. A failed
/// reload is logged and the previous certificate stays in use. Without TLS (`None`) SIGHUP is
/// still caught (and logged), so `systemctl reload` never terminates a process. On non-Unix
/// targets the task does nothing.
pub fn on_sighup(server: Option<Arc<ServerTls>>) -> std::io::Result<JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
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
        drop(server);
        Ok(tokio::spawn(async {}))
    }
}
