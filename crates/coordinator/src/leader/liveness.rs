//! In-memory worker liveness: the leader's last-seen time and deadline of every worker.
//!
//! Heartbeats never enter the Raft log (DESIGN.md "What is replicated"): the leader records them
//! here and only a *change* of state (Ready ↔ Unhealthy) is proposed. The map is sharded so that
//! 100,000 workers heartbeating never contend on one lock. Followers keep an empty map: they
//! forward heartbeats to the leader.
//!
//! Every sign of life grants the worker a deadline (`now + timeout`, the timeout in force for
//! that grant: it grows with the number of workers, `LeaderSettings::grant`); a deadline never
//! moves backwards, so a lease granted once is never cut short. Each shard keeps its ids in a
//! [`Deadlines`] wheel, and [`Liveness::expired`] (the sweep) touches only the workers whose
//! deadline has passed: O(expired), not O(workers).
//!
//! [`Detector`] is the spec's fixed `Timeout` (default 15 s), or `Phi` accrual
//! ([`crate::leader::phi`]) over a sliding window of each worker's heartbeat intervals, bounded
//! by the timeout. A worker is never marked before its deadline (its lease must have run out),
//! so phi can only confirm the timeout; [`Liveness::suspected`] answers the detector's question
//! for tools and tests.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

use crate::leader::deadlines::Deadlines;
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

    /// The timeout bound of the detector.
    fn timeout(&self) -> Duration {
        match self {
            Detector::Timeout(t) | Detector::Phi { timeout: t, .. } => *t,
        }
    }
}

/// One worker's entry: the public figures, its deadline, and the interval history.
#[derive(Debug, Clone)]
struct Entry {
    /// The map's key, shared with the wheel's copies.
    id: Arc<str>,
    seen: Seen,
    /// Until when the worker is considered alive (the latest grant's end; never decreases).
    deadline: Instant,
    /// The wheel bucket holding the worker's live copy; `None` once it expired (the sweep
    /// took it out) until the next sign of life or [`Liveness::requeue`].
    queued: Option<u64>,
    /// Whether `beat_at` is a real heartbeat (not a registration or a grace touch), so the
    /// next heartbeat measures a true interval.
    from_heartbeat: bool,
    /// When the last heartbeat (or registration, grace) happened: intervals are measured
    /// between heartbeats only, session renewals in between do not shorten them.
    beat_at: Instant,
    intervals: Intervals,
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

/// One shard: its entries and the wheel of their deadlines.
#[derive(Debug)]
struct Shard {
    map: HashMap<Arc<str>, Entry>,
    wheel: Deadlines,
}

impl Shard {
    /// The entry of `id`, created (seen at `at`, deadline `at`) when missing; `true` when new.
    fn entry(&mut self, id: &str, at: Instant) -> Option<(&mut Entry, bool)> {
        if !self.map.contains_key(id) {
            let key: Arc<str> = Arc::from(id);
            let entry = self.map.entry(key.clone()).or_insert(Entry {
                id: key,
                seen: Seen::at(at),
                deadline: at,
                queued: None,
                from_heartbeat: false,
                beat_at: at,
                intervals: Intervals::new(WINDOW),
            });
            return Some((entry, true));
        }
        self.map.get_mut(id).map(|e| (e, false))
    }

    /// Extends `id`'s deadline to `until` (never shortens it) and queues it in the wheel.
    fn extend(&mut self, id: &str, until: Instant) {
        let Some(entry) = self.map.get_mut(id) else {
            return;
        };
        if until > entry.deadline {
            entry.deadline = until;
        }
        let bucket = self.wheel.bucket_of(entry.deadline);
        if entry.queued != Some(bucket) {
            entry.queued = Some(bucket);
            self.wheel.push(bucket, entry.id.clone());
        }
    }
}

/// Sharded map worker id → [`Seen`] and deadline (plus its heartbeat interval history).
#[derive(Debug)]
pub struct Liveness {
    shards: Vec<Mutex<Shard>>,
    len: AtomicUsize,
}

impl Default for Liveness {
    fn default() -> Self {
        let origin = Instant::now();
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::new(),
                        wheel: Deadlines::new(origin),
                    })
                })
                .collect(),
            len: AtomicUsize::new(0),
        }
    }
}

impl Liveness {
    fn shard(&self, id: &str) -> MutexGuard<'_, Shard> {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        let index = (hasher.finish() as usize) % SHARDS;
        lock(&self.shards[index])
    }

    /// Counts a new entry.
    fn created(&self, created: bool) {
        if created {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a heartbeat (with its reported counters) at `now`; the worker is alive until
    /// `now + timeout` at least.
    pub fn heartbeat(
        &self,
        id: &str,
        events_processed: u64,
        pipelines_running: u32,
        now: Instant,
        timeout: Duration,
    ) {
        let mut shard = self.shard(id);
        let Some((entry, created)) = shard.entry(id, now) else {
            return;
        };
        if entry.from_heartbeat && !created {
            let interval = now.saturating_duration_since(entry.beat_at);
            entry.intervals.record(interval);
        }
        entry.seen = Seen {
            at: now,
            events_processed,
            pipelines_running,
        };
        entry.beat_at = now;
        entry.from_heartbeat = true;
        shard.extend(id, now + timeout);
        drop(shard);
        self.created(created);
    }

    /// A (re-)registration: a new process, so its interval history starts afresh (the gap
    /// since the previous process's last heartbeat says nothing about this one).
    pub fn registered(&self, id: &str, pipelines_running: u32, now: Instant, timeout: Duration) {
        let mut shard = self.shard(id);
        let Some((entry, created)) = shard.entry(id, now) else {
            return;
        };
        entry.seen = Seen {
            at: now,
            events_processed: 0,
            pipelines_running,
        };
        entry.beat_at = now;
        entry.from_heartbeat = true;
        entry.intervals = Intervals::new(WINDOW);
        shard.extend(id, now + timeout);
        drop(shard);
        self.created(created);
    }

    /// Marks a worker as just seen, keeping its counters (grace): alive until `now + timeout`
    /// at least.
    pub fn touch(&self, id: &str, now: Instant, timeout: Duration) {
        let mut shard = self.shard(id);
        let Some((entry, created)) = shard.entry(id, now) else {
            return;
        };
        entry.seen.at = now;
        entry.beat_at = now;
        entry.from_heartbeat = false;
        shard.extend(id, now + timeout);
        drop(shard);
        self.created(created);
    }

    /// A lease renewal over the worker's session at `now`: a sign of life (the sweep and the
    /// lease count from it) that keeps the counters and the heartbeat interval history.
    pub fn renewed(&self, id: &str, now: Instant, timeout: Duration) {
        let mut shard = self.shard(id);
        let Some((entry, created)) = shard.entry(id, now) else {
            return;
        };
        if now > entry.seen.at {
            entry.seen.at = now;
        }
        shard.extend(id, now + timeout);
        drop(shard);
        self.created(created);
    }

    /// What was last heard from `id`.
    pub fn get(&self, id: &str) -> Option<Seen> {
        self.shard(id).map.get(id).map(|e| e.seen)
    }

    /// Until when `id` counts as alive.
    pub fn deadline(&self, id: &str) -> Option<Instant> {
        self.shard(id).map.get(id).map(|e| e.deadline)
    }

    /// Forgets a worker (deregistered).
    pub fn remove(&self, id: &str) {
        if self.shard(id).map.remove(id).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Workers known here.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no worker is known here.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives every listed worker a fresh grace period (new leader): last-seen = `now`, alive
    /// until `now + timeout` at least.
    pub fn grace<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        now: Instant,
        timeout: Duration,
    ) {
        for id in ids {
            self.touch(id, now, timeout);
        }
    }

    /// Brings the map in line with the replicated worker list `ids` (`count` of them): a
    /// worker missing here gets a grace period until `now + timeout` (it registered through
    /// another leader, or before this node led), one no longer listed is forgotten. Walks the
    /// list only when the counts differ, so a steady sweep stays O(expired).
    pub fn sync<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        count: usize,
        now: Instant,
        timeout: Duration,
    ) {
        if self.len() == count {
            return;
        }
        let listed: std::collections::HashSet<&str> = ids.into_iter().collect();
        for id in &listed {
            let known = self.shard(id).map.contains_key(*id);
            if !known {
                self.touch(id, now, timeout);
            }
        }
        for shard in &self.shards {
            let mut shard = lock(shard);
            let before = shard.map.len();
            shard.map.retain(|id, _| listed.contains(&**id));
            let gone = before - shard.map.len();
            self.len.fetch_sub(gone, Ordering::Relaxed);
        }
    }

    /// Takes out every worker whose deadline passed before `now` (each reported once: it is
    /// not looked at again until its next sign of life or [`Liveness::requeue`]). Touches only
    /// the wheel buckets that came due.
    pub fn expired(&self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let shard = &mut *shard;
            for (bucket, ids) in shard.wheel.take_due(now) {
                for id in ids {
                    let Some(entry) = shard.map.get_mut(&*id) else {
                        // Forgotten since it was queued.
                        continue;
                    };
                    if entry.queued != Some(bucket) {
                        // A stale copy: the worker was queued again later.
                        continue;
                    }
                    if entry.deadline < now {
                        entry.queued = None;
                        out.push(id.to_string());
                    } else {
                        // The bucket holding `now`: not yet.
                        shard.wheel.push(bucket, id);
                    }
                }
            }
        }
        out
    }

    /// Looks at an expired worker again at the first sweep after `at` (its deadline is
    /// unchanged): a mark that could not be proposed, or a worker not eligible for one now.
    pub fn requeue(&self, id: &str, at: Instant) {
        let mut shard = self.shard(id);
        let shard = &mut *shard;
        let Some(entry) = shard.map.get_mut(id) else {
            return;
        };
        let bucket = shard.wheel.bucket_of(at.max(entry.deadline));
        if entry.queued.is_some_and(|q| q <= bucket) {
            return;
        }
        entry.queued = Some(bucket);
        shard.wheel.push(bucket, entry.id.clone());
    }

    /// Ids queued in the wheels, stale copies included (memory accounting, tests).
    pub fn queued(&self) -> usize {
        self.shards.iter().map(|s| lock(s).wheel.queued()).sum()
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

    /// Among `ids`, those `detector` declares failed at `now` (a query over the listed ids,
    /// whatever their deadline). A worker never seen gets `now` as its last-seen time (grace)
    /// and is not reported.
    pub fn suspected<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        now: Instant,
        detector: &Detector,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for id in ids {
            let verdict = self.shard(id).map.get(id).map(|entry| {
                let elapsed = now.saturating_duration_since(entry.seen.at);
                detector.suspects(elapsed, &entry.intervals)
            });
            match verdict {
                Some(true) => out.push(id.to_string()),
                Some(false) => {}
                None => self.touch(id, now, detector.timeout()),
            }
        }
        out
    }

    /// Forgets everything (this node stopped being the leader).
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.map.clear();
            shard.wheel.clear();
        }
        self.len.store(0, Ordering::Relaxed);
    }
}

/// Locks a shard; a poisoned one only means a panic elsewhere while holding it, and the map
/// stays usable.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::deadlines::BUCKET;

    /// The timeout of the grants in these tests.
    const T: Duration = Duration::from_secs(15);

    #[test]
    fn silent_workers_become_stale_after_the_timeout() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("w1", 10, 1, t0, T);
        live.touch("w2", t0, T);
        let timeout = Duration::from_secs(2);
        assert!(live
            .stale(["w1", "w2"], t0 + Duration::from_secs(1), timeout)
            .is_empty());
        live.heartbeat("w2", 0, 0, t0 + Duration::from_secs(2), T);
        let stale = live.stale(["w1", "w2"], t0 + Duration::from_millis(3500), timeout);
        assert_eq!(stale, vec!["w1".to_string()]);
        assert_eq!(live.get("w1").map(|s| s.events_processed), Some(10));
    }

    #[test]
    fn session_renewals_keep_a_worker_alive_without_skewing_its_intervals() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let beat = Duration::from_secs(5);
        live.heartbeat("w", 7, 2, t0, T);
        // Renewals every second between two heartbeats 5 s apart.
        for k in 1..5u32 {
            live.renewed("w", t0 + Duration::from_secs(u64::from(k)), T);
        }
        live.heartbeat("w", 9, 2, t0 + beat, T);
        let (n, mean) = live
            .shard("w")
            .map
            .get("w")
            .map_or((0, 0.0), |e| (e.intervals.len(), e.intervals.mean()));
        assert_eq!(n, 1, "one interval: renewals are not heartbeats");
        assert!(
            (mean - beat.as_secs_f64()).abs() < 1e-6,
            "intervals are measured between heartbeats: {mean}"
        );
        // Renewals alone keep it from going stale, and never move `seen` backwards.
        let timeout = Duration::from_secs(2);
        live.renewed("w", t0 + Duration::from_secs(7), T);
        live.renewed("w", t0 + Duration::from_secs(6), T);
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
            live.heartbeat("w", k, 1, t0 + interval * k as u32, T);
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
        live.touch("w", t0, T);
        live.heartbeat("w", 0, 0, t0 + Duration::from_millis(200), T);
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
            slow.heartbeat("s", 0, 0, t0 + Duration::from_secs(10) * k, T);
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
            live.heartbeat("w", 0, 0, t0 + s * k, T);
        }
        // Killed after t0 + 9 s, restarted and registered at t0 + 20 s, then regular again.
        live.registered("w", 0, t0 + s * 20, T);
        for k in 21..24u32 {
            live.heartbeat("w", 0, 0, t0 + s * k, T);
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
        live.grace(["new"], t0 + Duration::from_secs(2), T);
        assert!(live
            .stale(["new"], t0 + Duration::from_secs(2), Duration::from_secs(1))
            .is_empty());
        live.remove("new");
        assert!(live.get("new").is_none());
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn a_worker_expires_once_after_its_deadline_and_again_after_the_next_one() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("w", 0, 0, t0, T);
        assert!(
            live.expired(t0 + T).is_empty(),
            "at the deadline it still lives"
        );
        assert_eq!(live.expired(t0 + T + Duration::from_millis(1)), vec!["w"]);
        assert!(
            live.expired(t0 + T * 2).is_empty(),
            "reported once, not at every sweep"
        );
        // It comes back: a new deadline, a new report once that passes.
        let back = t0 + T * 2;
        live.heartbeat("w", 0, 0, back, T);
        assert!(live.expired(back + T - Duration::from_millis(1)).is_empty());
        assert_eq!(live.expired(back + T + Duration::from_millis(1)), vec!["w"]);
    }

    #[test]
    fn heartbeats_move_the_deadline_and_leave_only_stale_copies_behind() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        for k in 0..100u32 {
            live.heartbeat("w", u64::from(k), 0, t0 + every * k, T);
            // Sweeps in between never see it: its deadline is always ahead.
            assert!(live
                .expired(t0 + every * k + Duration::from_secs(1))
                .is_empty());
        }
        // Copies are dropped as their buckets come due: at most timeout/interval + 1 remain.
        assert!(live.queued() <= 4, "queued copies: {}", live.queued());
        let last = t0 + every * 99;
        assert_eq!(live.expired(last + T + Duration::from_millis(1)), vec!["w"]);
        assert_eq!(live.queued(), 0);
    }

    #[test]
    fn a_deadline_never_moves_backwards() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("w", 0, 0, t0, Duration::from_secs(60));
        // A later grant with a shorter timeout (fewer workers now) does not cut the first short.
        live.heartbeat("w", 0, 0, t0 + Duration::from_secs(1), T);
        assert_eq!(live.deadline("w"), Some(t0 + Duration::from_secs(60)));
        assert!(live.expired(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(live.expired(t0 + Duration::from_secs(61)), vec!["w"]);
    }

    #[test]
    fn renewals_registrations_and_grace_extend_the_deadline_too() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        live.registered("a", 0, t0, T);
        live.heartbeat("b", 0, 0, t0, T);
        live.heartbeat("c", 0, 0, t0, T);
        live.renewed("b", t0 + s * 10, T);
        live.grace(["c"], t0 + s * 12, T);
        assert_eq!(live.expired(t0 + s * 16), vec!["a"]);
        assert_eq!(live.expired(t0 + s * 26), vec!["b"]);
        assert_eq!(live.expired(t0 + s * 28), vec!["c"]);
    }

    #[test]
    fn a_removed_worker_is_never_reported() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("gone", 0, 0, t0, T);
        live.heartbeat("kept", 0, 0, t0, T);
        assert_eq!(live.len(), 2);
        live.remove("gone");
        live.remove("gone");
        assert_eq!(live.len(), 1);
        assert_eq!(live.expired(t0 + T * 2), vec!["kept"]);
    }

    #[test]
    fn a_requeued_worker_is_reported_again_after_the_given_time() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("w", 0, 0, t0, T);
        let first = t0 + T + Duration::from_secs(1);
        assert_eq!(live.expired(first), vec!["w"]);
        // The mark could not be proposed: look again at the next sweep.
        live.requeue("w", first);
        live.requeue("w", first);
        assert_eq!(live.expired(first + Duration::from_secs(1)), vec!["w"]);
        // Not eligible (draining): look again a timeout later, not at every sweep.
        let second = first + Duration::from_secs(1);
        live.requeue("w", second + T);
        assert!(live.expired(second + Duration::from_secs(5)).is_empty());
        assert_eq!(live.expired(second + T + Duration::from_secs(1)), vec!["w"]);
        // A heartbeat in between wins over a requeue.
        live.requeue("w", second + T * 2);
        live.heartbeat("w", 0, 0, second + T * 3, T);
        assert!(live.expired(second + T * 3).is_empty());
    }

    #[test]
    fn a_new_leaders_grace_keeps_everyone_for_one_timeout() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let ids: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
        // Last heard long ago (by the old leader), or never heard here at all.
        for id in &ids[..500] {
            live.heartbeat(id, 0, 0, t0, T);
        }
        let elected = t0 + T * 10;
        live.grace(ids.iter().map(String::as_str), elected, T);
        assert_eq!(live.len(), 1000);
        assert!(live.expired(elected).is_empty());
        assert!(live.expired(elected + T).is_empty());
        assert_eq!(
            live.expired(elected + T + Duration::from_millis(1)).len(),
            1000
        );
    }

    #[test]
    fn sync_grants_grace_to_missing_workers_and_forgets_deregistered_ones() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("old", 0, 0, t0, T);
        live.heartbeat("kept", 0, 0, t0, T);
        let listed = ["kept", "new", "third"];
        let later = t0 + Duration::from_secs(10);
        live.sync(listed, listed.len(), later, T);
        assert_eq!(live.len(), 3);
        assert!(live.get("old").is_none());
        assert_eq!(live.get("new").map(|s| s.at), Some(later));
        assert_eq!(
            live.expired(t0 + T + Duration::from_millis(1)),
            vec!["kept"]
        );
        assert_eq!(
            sorted(live.expired(later + T + Duration::from_millis(1))),
            vec!["new", "third"]
        );
        // Same count: no walk (an unlisted id would survive; the counts are what is checked).
        live.sync(["x", "y", "z"], 3, later, T);
        assert!(live.get("x").is_none());
    }

    #[test]
    fn clear_forgets_everything() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.heartbeat("w", 0, 0, t0, T);
        live.clear();
        assert!(live.is_empty());
        assert_eq!(live.queued(), 0);
        assert!(live.expired(t0 + T * 2).is_empty());
    }

    /// Random heartbeats, renewals, removals, requeues and sweeps against a plain model: the
    /// wheel reports exactly the workers whose deadline passed, each once per expiry.
    #[test]
    fn the_wheel_agrees_with_a_brute_force_model() {
        use std::collections::BTreeMap;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let live = Liveness::default();
        let t0 = Instant::now();
        // id -> (deadline, reported since its last extension, requeue time)
        let mut model: BTreeMap<String, (Instant, bool, Option<Instant>)> = BTreeMap::new();
        let mut now = t0;
        for _ in 0..20_000 {
            now += Duration::from_millis(rnd(400));
            let id = format!("w{}", rnd(200));
            let timeout = Duration::from_millis(1000 + rnd(20_000));
            match rnd(10) {
                0..=4 => {
                    live.heartbeat(&id, 0, 0, now, timeout);
                    let e = model.entry(id).or_insert((now, false, None));
                    e.0 = e.0.max(now + timeout);
                    e.1 = false;
                    e.2 = None;
                }
                5 => {
                    live.renewed(&id, now, timeout);
                    let e = model.entry(id).or_insert((now, false, None));
                    e.0 = e.0.max(now + timeout);
                    e.1 = false;
                    e.2 = None;
                }
                6 => {
                    live.remove(&id);
                    model.remove(&id);
                }
                7 => {
                    if let Some(e) = model.get_mut(&id) {
                        if e.1 {
                            let at = now + Duration::from_millis(rnd(5000));
                            live.requeue(&id, at);
                            e.2 = Some(e.2.map_or(at, |q| q.min(at)));
                        }
                    }
                }
                _ => {
                    let got = sorted(live.expired(now));
                    let mut want = Vec::new();
                    for (id, e) in model.iter_mut() {
                        let due = if e.1 {
                            // Reported already: again only through a requeue that came due.
                            e.2.is_some_and(|at| at.max(e.0) <= now)
                        } else {
                            e.0 < now
                        };
                        if due {
                            want.push(id.clone());
                            e.1 = true;
                            e.2 = None;
                        }
                    }
                    // A requeued worker comes due at the start of its bucket, up to one bucket
                    // before the requested time: allowed, for those only.
                    let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).collect();
                    for g in extra {
                        let e = model.get_mut(g.as_str()).expect("reported ids are known");
                        assert!(
                            e.1 && e.2.is_some_and(|at| at.max(e.0) < now + BUCKET),
                            "{g} reported early at {:?}",
                            now - t0
                        );
                        e.2 = None;
                    }
                    for w in &want {
                        assert!(got.contains(w), "{w} not reported at {:?}", now - t0);
                    }
                    assert_eq!(live.len(), model.len());
                }
            }
        }
    }
}
