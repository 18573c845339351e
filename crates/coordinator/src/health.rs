//! In-memory worker liveness: the leader's last-seen time of every worker.
//!
//! Heartbeats never enter the Raft log (DESIGN.md "What is replicated"): the leader records them
//! here and only a *change* of state (Ready ↔ Unhealthy) is proposed. The map is sharded so that
//! 10,000 workers heartbeating every 5 s (2,000 updates/s) never contend on one lock. Followers keep
//! an empty map: they forward heartbeats to the leader.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 32;

/// What the leader last heard from one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// When the last heartbeat (or registration, or leadership grace) happened.
    pub at: Instant,
    /// Events processed as last reported.
    pub events_processed: u64,
    /// Pipelines running as last reported.
    pub pipelines_running: u32,
}

/// Sharded map worker id → [`Seen`].
#[derive(Debug)]
pub struct Liveness {
    shards: Vec<Mutex<HashMap<String, Seen>>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl Liveness {
    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        let index = (hasher.finish() as usize) % SHARDS;
        // A poisoned shard only means a panic elsewhere while holding it; the map stays usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a heartbeat (with its reported counters) at `now`.
    pub fn heartbeat(&self, id: &str, events_processed: u64, pipelines_running: u32, now: Instant) {
        let seen = Seen {
            at: now,
            events_processed,
            pipelines_running,
        };
        self.shard(id).insert(id.to_string(), seen);
    }

    /// Marks a worker as just seen, keeping its counters (registration, grace).
    pub fn touch(&self, id: &str, now: Instant) {
        let mut shard = self.shard(id);
        match shard.get_mut(id) {
            Some(seen) => seen.at = now,
            None => {
                shard.insert(
                    id.to_string(),
                    Seen {
                        at: now,
                        events_processed: 0,
                        pipelines_running: 0,
                    },
                );
            }
        }
    }

    /// What was last heard from `id`.
    pub fn get(&self, id: &str) -> Option<Seen> {
        self.shard(id).get(id).copied()
    }

    /// Forgets a worker (deregistered).
    pub fn remove(&self, id: &str) {
        self.shard(id).remove(id);
    }

    /// Gives every listed worker a fresh grace period (new leader): last-seen = `now`.
    pub fn grace<'a>(&self, ids: impl IntoIterator<Item = &'a str>, now: Instant) {
        for id in ids {
            self.touch(id, now);
        }
    }

    /// Among `ids`, those silent for longer than `timeout` at `now`. A worker never seen gets
    /// `now` as its last-seen time (grace) and is not reported.
    pub fn stale<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        now: Instant,
        timeout: Duration,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for id in ids {
            let mut shard = self.shard(id);
            match shard.get(id) {
                Some(seen) if now.saturating_duration_since(seen.at) > timeout => {
                    out.push(id.to_string())
                }
                Some(_) => {}
                None => {
                    shard.insert(
                        id.to_string(),
                        Seen {
                            at: now,
                            events_processed: 0,
                            pipelines_running: 0,
                        },
                    );
                }
            }
        }
        out
    }

    /// Forgets everything (this node stopped being the leader).
    pub fn clear(&self) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_workers_become_stale_after_the_timeout() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("w1", 10, 1, t0);
        live.touch("w2", t0);
        let timeout = Duration::from_secs(2);
        assert!(live
            .stale(["w1", "w2"], t0 + Duration::from_secs(1), timeout)
            .is_empty());
        live.heartbeat("w2", 0, 0, t0 + Duration::from_secs(2));
        let stale = live.stale(["w1", "w2"], t0 + Duration::from_millis(3500), timeout);
        assert_eq!(stale, vec!["w1".to_string()]);
        assert_eq!(live.get("w1").map(|s| s.events_processed), Some(10));
    }

    #[test]
    fn unknown_workers_get_grace_instead_of_being_stale() {
        let live = Liveness::default();
        let t0 = Instant::now();
        assert!(live.stale(["new"], t0, Duration::from_secs(1)).is_empty());
        assert_eq!(
            live.stale(["new"], t0 + Duration::from_secs(2), Duration::from_secs(1)),
            vec!["new"]
        );
        live.grace(["new"], t0 + Duration::from_secs(2));
        assert!(live
            .stale(["new"], t0 + Duration::from_secs(2), Duration::from_secs(1))
            .is_empty());
        live.remove("new");
        assert!(live.get("new").is_none());
    }
}
