//! The worker's persistent session with a coordinator: one WebSocket
//! (`GET /api/v1/cluster/workers/{id}/session`, the worker's key in `x-api-key`, the join token
//! in `x-worker-token`) held open while the worker runs.
//!
//! The coordinator counts it (`ws_connections` on its `/health`) and takes its loss as a hint to
//! probe the worker at once, so a killed worker's pipelines move in about a second instead of
//! after the heartbeat timeout. The worker pings every [`PING_EVERY`]; a session silent for
//! [`SILENT_FOR`] (or closed) is dropped and the next coordinator of the list (configured, then
//! discovered) is tried, after [`RETRY_AFTER`]. Leases are renewed by heartbeats; the session
//! only carries liveness.

use super::CoordinatorClient;
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Interval of the worker's pings.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// A session that received nothing for this long is dropped.
pub const SILENT_FOR: Duration = Duration::from_secs(3);
/// Pause before the next connection attempt.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// The session URL under a coordinator base URL (`http` → `ws`, `https` → `wss`).
pub fn session_url(base: &str, worker_id: &str) -> Option<String> {
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))?;
    Some(format!(
        "{}/api/v1/cluster/workers/{worker_id}/session",
        rest.trim_end_matches('/')
    ))
}

impl CoordinatorClient {
    /// Keeps one session open with some coordinator until the worker shuts down (HTTP
    /// transport only; registered workers only).
    pub async fn hold_session(self: Arc<Self>) {
        let cancel = self.state.shutdown.clone();
        let mut next = 0usize;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let urls = self.coordinator_urls();
            if urls.is_empty() {
                return;
            }
            if self.state.is_registered() {
                let base = &urls[next % urls.len()];
                match self.one_session(base).await {
                    Ok(()) => tracing::info!(coordinator = %base, "session closed"),
                    Err(e) => tracing::debug!(coordinator = %base, "session failed: {e}"),
                }
                next = next.wrapping_add(1);
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RETRY_AFTER) => {},
            }
        }
    }

    /// One session with `base`, until it closes, goes silent or the worker shuts down.
    async fn one_session(&self, base: &str) -> Result<(), String> {
        let cfg = &self.state.config;
        let url = session_url(base, &cfg.worker_id).ok_or("not an http(s) URL")?;
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        let headers = req.headers_mut();
        if let Some(k) = &cfg.api_key {
            let v = HeaderValue::from_str(k).map_err(|e| e.to_string())?;
            headers.insert(varpulis_api::API_KEY_HEADER, v);
        }
        if let Some(t) = &cfg.worker_token {
            let v = HeaderValue::from_str(t).map_err(|e| e.to_string())?;
            headers.insert(varpulis_api::WORKER_TOKEN_HEADER, v);
        }
        // `wss://` with the worker's TLS client configuration (`--tls-ca`, mutual TLS).
        let connector = if base.starts_with("https://") {
            let tls = self
                .state
                .client_tls
                .rustls_config_or_default()
                .map_err(|e| e.to_string())?;
            Some(tokio_tungstenite::Connector::Rustls(tls))
        } else {
            None
        };
        let (mut ws, _) = tokio::time::timeout(
            cfg.coordinator_timeout,
            tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        tracing::info!(coordinator = %base, "session open");
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = self.state.shutdown.cancelled() => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                _ = ping.tick() => {
                    if heard.elapsed() > SILENT_FOR {
                        return Err("coordinator silent".into());
                    }
                    ws.send(Message::Ping(Default::default()))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(_)) => heard = tokio::time::Instant::now(),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::session_url;

    #[test]
    fn session_urls_follow_the_scheme() {
        assert_eq!(
            session_url("http://127.0.0.1:9100/", "w-1").as_deref(),
            Some("ws://127.0.0.1:9100/api/v1/cluster/workers/w-1/session")
        );
        assert_eq!(
            session_url("https://c.example", "w").as_deref(),
            Some("wss://c.example/api/v1/cluster/workers/w/session")
        );
        assert_eq!(session_url("nats://x", "w"), None);
    }
}
