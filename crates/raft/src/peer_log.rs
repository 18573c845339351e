//! Log lines about peers going down and coming back: once per transition, plus a reminder at
//! most every [`REMINDER`] while a peer stays unreachable, with the number of failed RPCs.
//!
//! openraft logs every failed replication RPC (about 40 lines a second per dead peer); the
//! default log filter of `varpulis` silences `openraft::replication` and relies on these lines
//! instead (docs/operations.md, "Logs").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::types::NodeId;

/// Longest silence about a peer that stays unreachable.
pub const REMINDER: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Down {
    since: Instant,
    failures: u64,
    /// Failures since the last line about this peer.
    unreported: u64,
    last_line: Instant,
}

/// What this node knows about its peers' reachability (shared by every peer connection).
#[derive(Debug, Default)]
pub struct PeerLog {
    down: Mutex<HashMap<NodeId, Down>>,
}

impl PeerLog {
    /// Records a failed RPC to `peer` (at `url`) and logs it if it is news.
    pub fn failed(&self, peer: NodeId, url: &str, error: &str) {
        self.failed_at(peer, url, error, Instant::now());
    }

    /// Records a successful RPC to `peer`; logs its recovery if it was down.
    pub fn succeeded(&self, peer: NodeId, url: &str) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = down.remove(&peer) {
            tracing::info!(
                peer,
                url,
                "raft peer reachable again after {:.1} s ({} failed RPCs)",
                d.since.elapsed().as_secs_f64(),
                d.failures
            );
        }
    }

    /// Whether `peer` is currently considered unreachable.
    pub fn is_down(&self, peer: NodeId) -> bool {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        down.contains_key(&peer)
    }

    fn failed_at(&self, peer: NodeId, url: &str, error: &str, now: Instant) -> bool {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match down.get_mut(&peer) {
            None => {
                tracing::warn!(peer, url, "raft peer unreachable: {error}");
                down.insert(
                    peer,
                    Down {
                        since: now,
                        failures: 1,
                        unreported: 0,
                        last_line: now,
                    },
                );
                true
            }
            Some(d) => {
                d.failures += 1;
                d.unreported += 1;
                if now.duration_since(d.last_line) < REMINDER {
                    return false;
                }
                tracing::warn!(
                    peer,
                    url,
                    "raft peer still unreachable after {:.0} s ({} failed RPCs since the last \
                     line): {error}",
                    now.duration_since(d.since).as_secs_f64(),
                    d.unreported
                );
                d.unreported = 0;
                d.last_line = now;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_when_a_peer_goes_down_then_a_reminder_per_period() {
        let log = PeerLog::default();
        let t0 = Instant::now();
        assert!(log.failed_at(2, "http://b", "refused", t0));
        let lines = (1..400)
            .filter(|i| log.failed_at(2, "http://b", "refused", t0 + Duration::from_millis(25 * i)))
            .count();
        assert_eq!(lines, 0, "no line within the reminder period");
        assert!(log.failed_at(2, "http://b", "refused", t0 + REMINDER));
        assert!(log.is_down(2));
        log.succeeded(2, "http://b");
        assert!(!log.is_down(2));
        assert!(
            log.failed_at(2, "http://b", "refused", t0 + REMINDER * 2),
            "news again"
        );
    }

    #[test]
    fn peers_are_tracked_apart() {
        let log = PeerLog::default();
        let t0 = Instant::now();
        assert!(log.failed_at(2, "http://b", "x", t0));
        assert!(log.failed_at(3, "http://c", "x", t0));
        assert!(!log.failed_at(2, "http://b", "x", t0));
    }
}
