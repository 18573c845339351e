//! In-memory worker liveness: the leader's last-seen time of every worker.
//!
//! Heartbeats never enter the Raft log (DESIGN.md "What is replicated"): the leader records them
//! here and only a *change* of state (Ready ↔ Unhealthy) is proposed. The map is sharded so that
//! 10,000 workers heartbeating every 5 s (2,000 updates/s) never contend on one lock. Followers keep
//! an empty map: they forward heartbeats to the leader.
//!
//! Failure detection is a [`Detector`]: the spec's fixed `Timeout` (default 15 s), or
//! `Phi` accrual ([`crate::leader::phi`]) over a sliding window of each worker's heartbeat intervals,
//! still bounded by the timeout (a worker is never kept longer than with the timeout detector).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use crate::leader::phi::{Intervals, PhiConfig, MIN_SAMPLES, WINDOW};

const SHARDS: usize = 32;

/// How the leader decides that a silent worker has failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detector {
    /// Silent for longer than the duration.
    Timeout(Duration),
    /// Phi above the threshold, or silent for longer than `timeout` (upper bound).
    Phi {
        /// Detector parameters.
        config: PhiConfig,
        /// Upper bound: the heartbeat timeout.
        timeout: Duration,
    },
}

impl Detector {
    /// Whether a worker last heard from `elapsed` ago, with this interval history, has failed.
    fn suspects(&self, elapsed: Duration, intervals: &Intervals) -> bool {
        match self {
            Detector::Timeout(timeout) => elapsed > *timeout,
            Detector::Phi { config, timeout } => {
                if elapsed > *timeout {
                    return true;
                }
                if intervals.len() >= MIN_SAMPLES {
                    return intervals.suspects(elapsed, config);
                }
                let mut seeded = intervals.clone();
                seeded.seed(config.first_interval);
                seeded.suspects(elapsed, config)
            }
        }
    }
}

/// One worker's entry: the public figures plus the interval history.
#[derive(Debug, Clone)]
struct Entry {
    seen: Seen,
    /// Whether `beat_at` is a real heartbeat (not a registration or a grace touch), so the
    /// next heartbeat measures a true interval.
    from_heartbeat: bool,
    /// When the last heartbeat (or registration, grace) happened: intervals are measured
    /// between heartbeats only, session renewals in between do not shorten them.
    beat_at: Instant,
    intervals: Intervals,
}

impl Entry {
    fn new(seen: Seen, from_heartbeat: bool) -> Self {
        Entry {
            beat_at: seen.at,
            seen,
            from_heartbeat,
            intervals: Intervals::new(WINDOW),
        }
    }
}

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

impl Seen {
    /// Seen at `at`, no counters yet.
    fn at(at: Instant) -> Self {
        Seen {
            at,
            events_processed: 0,
            pipelines_running: 0,
        }
    }
}

/// Sharded map worker id → [`Seen`] (plus its heartbeat interval history).
#[derive(Debug)]
pub struct Liveness {
    shards: Vec<Mutex<HashMap<String, Entry>>>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl Liveness {
    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
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
        let mut shard = self.shard(id);
        match shard.get_mut(id) {
            Some(entry) => {
                if entry.from_heartbeat {
                    let interval = now.saturating_duration_since(entry.beat_at);
                    entry.intervals.record(interval);
                }
                entry.seen = seen;
                entry.beat_at = now;
                entry.from_heartbeat = true;
            }
            None => {
                shard.insert(id.to_string(), Entry::new(seen, true));
            }
        }
    }

    /// A (re-)registration: a new process, so its interval history starts afresh (the gap
    /// since the previous process's last heartbeat says nothing about this one).
    pub fn registered(&self, id: &str, pipelines_running: u32, now: Instant) {
        let seen = Seen {
            at: now,
            events_processed: 0,
            pipelines_running,
        };
        self.shard(id)
            .insert(id.to_string(), Entry::new(seen, true));
    }

    /// Marks a worker as just seen, keeping its counters (registration, grace).
    pub fn touch(&self, id: &str, now: Instant) {
        let mut shard = self.shard(id);
        match shard.get_mut(id) {
            Some(entry) => {
                entry.seen.at = now;
                entry.beat_at = now;
                entry.from_heartbeat = false;
            }
            None => {
                shard.insert(id.to_string(), Entry::new(Seen::at(now), false));
            }
        }
    }

    /// A lease renewal over the worker's session at `now`: a sign of life (the sweep and the
    /// lease count from it) that keeps the counters and the heartbeat interval history.
    pub fn renewed(&self, id: &str, now: Instant) {
        let mut shard = self.shard(id);
        match shard.get_mut(id) {
            Some(entry) => {
                if now > entry.seen.at {
                    entry.seen.at = now;
                }
            }
            None => {
                shard.insert(id.to_string(), Entry::new(Seen::at(now), false));
            }
        }
    }

    /// What was last heard from `id`.
    pub fn get(&self, id: &str) -> Option<Seen> {
        self.shard(id).get(id).map(|e| e.seen)
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
        self.suspected(ids, now, &Detector::Timeout(timeout))
    }

    /// Among `ids`, those `detector` declares failed at `now`. A worker never seen gets `now`
    /// as its last-seen time (grace) and is not reported.
    pub fn suspected<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        now: Instant,
        detector: &Detector,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for id in ids {
            let mut shard = self.shard(id);
            match shard.get(id) {
                Some(entry) => {
                    let elapsed = now.saturating_duration_since(entry.seen.at);
                    if detector.suspects(elapsed, &entry.intervals) {
                        out.push(id.to_string());
                    }
                }
                None => {
                    shard.insert(id.to_string(), Entry::new(Seen::at(now), false));
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
    fn session_renewals_keep_a_worker_alive_without_skewing_its_intervals() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let beat = Duration::from_secs(5);
        live.heartbeat("w", 7, 2, t0);
        // Renewals every second between two heartbeats 5 s apart.
        for k in 1..5u32 {
            live.renewed("w", t0 + Duration::from_secs(u64::from(k)));
        }
        live.heartbeat("w", 9, 2, t0 + beat);
        let (n, mean) = live
            .shard("w")
            .get("w")
            .map_or((0, 0.0), |e| (e.intervals.len(), e.intervals.mean()));
        assert_eq!(n, 1, "one interval: renewals are not heartbeats");
        assert!(
            (mean - beat.as_secs_f64()).abs() < 1e-6,
            "intervals are measured between heartbeats: {mean}"
        );
        // Renewals alone keep it from going stale, and never move `seen` backwards.
        let timeout = Duration::from_secs(2);
        live.renewed("w", t0 + Duration::from_secs(7));
        live.renewed("w", t0 + Duration::from_secs(6));
        assert!(live
            .stale(["w"], t0 + Duration::from_secs(8), timeout)
            .is_empty());
        assert_eq!(
            live.stale(["w"], t0 + Duration::from_millis(9100), timeout),
            vec!["w".to_string()]
        );
        assert_eq!(live.get("w").map(|s| s.events_processed), Some(9));
    }

    #[test]
    fn phi_suspects_a_regular_worker_before_the_timeout() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let interval = Duration::from_secs(1);
        for k in 0..20u64 {
            live.heartbeat("w", k, 1, t0 + interval * k as u32);
        }
        let last = t0 + interval * 19;
        let timeout = Duration::from_secs(15);
        let phi = Detector::Phi {
            config: PhiConfig::for_interval(8.0, interval),
            timeout,
        };
        let plain = Detector::Timeout(timeout);
        let at = |ms: u64| last + Duration::from_millis(ms);
        assert!(live.suspected(["w"], at(1500), &phi).is_empty());
        assert_eq!(live.suspected(["w"], at(3000), &phi), vec!["w"]);
        assert!(live.suspected(["w"], at(3000), &plain).is_empty());
        assert_eq!(live.suspected(["w"], at(15_001), &plain), vec!["w"]);
    }

    #[test]
    fn phi_bootstraps_from_the_interval_and_respects_the_timeout_bound() {
        let live = Liveness::default();
        let t0 = Instant::now();
        // Registration touch only, then a single heartbeat: seeds carry the detector.
        live.touch("w", t0);
        live.heartbeat("w", 0, 0, t0 + Duration::from_millis(200));
        let phi = Detector::Phi {
            config: PhiConfig::for_interval(8.0, Duration::from_secs(1)),
            timeout: Duration::from_secs(15),
        };
        let base = t0 + Duration::from_millis(200);
        assert!(live
            .suspected(["w"], base + Duration::from_millis(1200), &phi)
            .is_empty());
        assert_eq!(
            live.suspected(["w"], base + Duration::from_secs(4), &phi),
            vec!["w"]
        );
        // Very slow heartbeats: phi alone would wait long, the timeout still bounds it.
        let slow = Liveness::default();
        for k in 0..10u32 {
            slow.heartbeat("s", 0, 0, t0 + Duration::from_secs(10) * k);
        }
        let last = t0 + Duration::from_secs(90);
        let bounded = Detector::Phi {
            config: PhiConfig::for_interval(8.0, Duration::from_secs(1)),
            timeout: Duration::from_secs(12),
        };
        assert!(slow
            .suspected(["s"], last + Duration::from_secs(11), &bounded)
            .is_empty());
        assert_eq!(
            slow.suspected(["s"], last + Duration::from_secs(13), &bounded),
            vec!["s"]
        );
    }

    #[test]
    fn a_registration_starts_a_fresh_interval_history() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        for k in 0..10u32 {
            live.heartbeat("w", 0, 0, t0 + s * k);
        }
        // Killed after t0 + 9 s, restarted and registered at t0 + 20 s, then regular again.
        live.registered("w", 0, t0 + s * 20);
        for k in 21..24u32 {
            live.heartbeat("w", 0, 0, t0 + s * k);
        }
        let phi = Detector::Phi {
            config: PhiConfig::for_interval(8.0, s),
            timeout: Duration::from_secs(15),
        };
        // Without the reset the 11 s gap would inflate sigma and delay detection to the timeout.
        let last = t0 + s * 23;
        assert_eq!(
            live.suspected(["w"], last + Duration::from_millis(2600), &phi),
            vec!["w"]
        );
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
