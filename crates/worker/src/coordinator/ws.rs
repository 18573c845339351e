//! The worker's persistent session with a coordinator: one WebSocket
//! (`GET /api/v1/cluster/workers/{id}/session`, the worker's key in `x-api-key`, the join token
//! in `x-worker-token`) held open while the worker runs.
//!
//! The coordinator counts it (`ws_connections` on its `/health`) and takes its loss as a hint to
//! probe the worker at once, so a killed worker's pipelines move in about a second instead of
//! after the heartbeat timeout. The worker pings every [`PING_EVERY`]; a session silent for
//! [`SILENT_FOR`] (or closed) is dropped and the next coordinator of the list (configured, then
//! discovered) is tried, after [`RETRY_AFTER`].
//!
//! The session renews the lease too ([`SessionMessage`], docs/worker.md "Session"): with a ping,
//! four times per lease (at most every second, at least every 5 s), goes a numbered `renew`; the leader answers `lease` with the same number, and the lease
//! runs from when that `renew` was sent, as for a heartbeat. A follower answers `not_leader`
//! with the leader's URL, and the session moves there. Heartbeats still renew the lease every
//! `heartbeat_interval` (the fallback while no session is open), and only a heartbeat answer
//! lifts a fence (it names the stale copies to drop first).

use super::CoordinatorClient;
use futures::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use varpulis_api::session::SessionMessage;

/// Interval of the worker's pings.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// A session that received nothing for this long is dropped.
pub const SILENT_FOR: Duration = Duration::from_secs(3);
/// Pause before the next connection attempt.
pub const RETRY_AFTER: Duration = Duration::from_millis(250);
/// Renewals remembered while waiting for their answers (older answers are ignored).
const RENEWALS_KEPT: usize = 16;
/// Longest pause between two renewals, whatever the lease.
const RENEW_AT_MOST_EVERY: Duration = Duration::from_secs(5);

/// How often to renew a lease of `lease_ms`: a quarter of it, between one ping interval and
/// [`RENEW_AT_MOST_EVERY`] (default 15 s heartbeat timeout: a 13.5 s lease renewed every 4 s,
/// three chances before it runs out; the heartbeats renew it too).
fn renew_every(lease_ms: u64) -> Duration {
    (Duration::from_millis(lease_ms) / 4).clamp(PING_EVERY, RENEW_AT_MOST_EVERY)
}

/// Renewals sent on one session and when, to count each granted lease from its request.
#[derive(Debug)]
struct Renewals {
    next: u64,
    sent: VecDeque<(u64, Instant)>,
    /// Pause between renewals (every ping until a lease says how long it lasts).
    every: Duration,
}

impl Default for Renewals {
    fn default() -> Self {
        Self {
            next: 0,
            sent: VecDeque::new(),
            every: PING_EVERY,
        }
    }
}

impl Renewals {
    /// Whether a renewal is due now (with a little slack for the ping ticks' jitter).
    fn due(&self) -> bool {
        self.sent
            .back()
            .is_none_or(|(_, at)| at.elapsed() + PING_EVERY / 10 >= self.every)
    }

    /// Numbers a new renewal sent now.
    fn send(&mut self) -> u64 {
        self.next += 1;
        if self.sent.len() == RENEWALS_KEPT {
            self.sent.pop_front();
        }
        self.sent.push_back((self.next, Instant::now()));
        self.next
    }

    /// When renewal `seq` was sent, if it is still remembered.
    fn sent_at(&self, seq: u64) -> Option<Instant> {
        self.sent.iter().find(|(s, _)| *s == seq).map(|(_, at)| *at)
    }
}

/// How a session ended well.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Closed (or the worker shuts down).
    Closed,
    /// The coordinator is not the leader; the next session goes to this URL.
    MoveTo(String),
}

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
        let mut leader: Option<String> = None;
        loop {
            if cancel.is_cancelled() {
                return;
            }
            let urls = self.coordinator_urls();
            if urls.is_empty() {
                return;
            }
            if self.state.is_registered() {
                let base = match leader.take() {
                    Some(url) => url,
                    None => {
                        next = next.wrapping_add(1);
                        urls[(next - 1) % urls.len()].clone()
                    }
                };
                match self.one_session(&base).await {
                    Ok(Ended::Closed) => tracing::info!(coordinator = %base, "session closed"),
                    Ok(Ended::MoveTo(url)) => {
                        tracing::info!(coordinator = %base, leader = %url, "session moves to the leader");
                        self.absorb(std::slice::from_ref(&url), None, Instant::now());
                        leader = Some(url);
                    }
                    Err(e) => tracing::debug!(coordinator = %base, "session failed: {e}"),
                }
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(RETRY_AFTER) => {},
            }
        }
    }

    /// One session with `base`, until it closes, goes silent, sends us to the leader or the
    /// worker shuts down.
    async fn one_session(&self, base: &str) -> Result<Ended, String> {
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
        let mut renewals = Renewals::default();
        loop {
            tokio::select! {
                () = self.state.shutdown.cancelled() => {
                    let _ = ws.close(None).await;
                    return Ok(Ended::Closed);
                }
                _ = ping.tick() => {
                    if heard.elapsed() > SILENT_FOR {
                        return Err("coordinator silent".into());
                    }
                    ws.send(Message::Ping(Default::default()))
                        .await
                        .map_err(|e| e.to_string())?;
                    if renewals.due() {
                        let renew = SessionMessage::Renew { seq: renewals.send() };
                        let text = serde_json::to_string(&renew).map_err(|e| e.to_string())?;
                        ws.send(Message::Text(text.into()))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Close(_))) | None => return Ok(Ended::Closed),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(Message::Text(text))) => {
                        heard = tokio::time::Instant::now();
                        if let Some(to) = self.on_message(base, text.as_str(), &mut renewals) {
                            let _ = ws.close(None).await;
                            return Ok(Ended::MoveTo(to));
                        }
                    }
                    Some(Ok(_)) => heard = tokio::time::Instant::now(),
                },
            }
        }
    }

    /// Applies one message of the coordinator: a granted lease renews ours from when its
    /// request left; `Some(url)` when the session should move to the leader at `url`.
    fn on_message(&self, base: &str, text: &str, renewals: &mut Renewals) -> Option<String> {
        let Ok(msg) = serde_json::from_str::<SessionMessage>(text) else {
            tracing::debug!(coordinator = %base, "unknown session message ignored");
            return None;
        };
        match msg {
            SessionMessage::Lease { seq, lease_ms } => {
                match renewals.sent_at(seq) {
                    Some(sent) => {
                        renewals.every = renew_every(lease_ms);
                        self.absorb(&[], Some(lease_ms), sent);
                        self.state.lease.note_session_renewal();
                        // Heartbeats go to the leader too; a fenced worker asks for the
                        // heartbeat answer that lifts its fence at once.
                        self.prefer(base);
                        if self.state.lease.fence_recorded() {
                            self.heartbeat_now.notify_one();
                        }
                    }
                    None => tracing::debug!(seq, "lease for a forgotten renewal ignored"),
                }
                None
            }
            SessionMessage::NotLeader {
                leader: Some(url), ..
            } if url.trim_end_matches('/') != base.trim_end_matches('/') => Some(url),
            SessionMessage::Refused { reason, .. } => {
                tracing::debug!(coordinator = %base, %reason, "lease renewal refused");
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{renew_every, session_url, Renewals, RENEWALS_KEPT};
    use std::time::Duration;

    #[test]
    fn renewals_come_four_times_per_lease_between_one_and_five_seconds() {
        assert_eq!(renew_every(13_500), Duration::from_millis(3_375));
        assert_eq!(renew_every(2_700), Duration::from_secs(1));
        assert_eq!(renew_every(3_600_000), Duration::from_secs(5));
        let mut r = Renewals::default();
        assert!(r.due(), "the first renewal goes at once");
        r.send();
        assert!(!r.due());
        r.every = Duration::ZERO;
        assert!(r.due());
    }

    #[test]
    fn renewals_remember_their_send_times_for_a_while() {
        let mut r = Renewals::default();
        let first = r.send();
        assert!(r.sent_at(first).is_some());
        for _ in 0..RENEWALS_KEPT {
            r.send();
        }
        assert_eq!(r.sent_at(first), None, "too old: its answer is ignored");
        let last = r.send();
        assert!(r.sent_at(last).is_some());
        assert_eq!(r.sent_at(last + 1), None);
    }

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
