//! A deadline-ordered index of worker ids (a bucketed timer wheel with lazy invalidation), so
//! that the health sweep touches only the workers whose deadline has passed, not all of them.
//!
//! Time is cut into buckets of [`BUCKET`]; a worker id sits in the bucket of its current
//! deadline. A heartbeat that moves the deadline into another bucket queues the id there again
//! and leaves the old copy behind: the owner (the liveness map) remembers the
//! bucket each worker is queued in, and a copy found in any other bucket is stale and dropped
//! when its bucket comes due. Each worker therefore costs one queue push per heartbeat that
//! crosses a bucket (a reference-count increment, no allocation beyond the bucket's vector) and
//! at most `timeout / interval + 1` copies in memory.
//!
//! Pure data structure: no clock (the caller passes `now`) and no locking.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Width of one bucket. A sweep pops every bucket that starts before `now` and checks the
/// exact deadline of the ids in the last one, so the width costs no precision; it only sets
/// how many ids a sweep may look at without marking them (those of one bucket).
pub const BUCKET: Duration = Duration::from_millis(250);

/// Worker ids ordered by the bucket of their deadline.
#[derive(Debug)]
pub struct Deadlines {
    origin: Instant,
    buckets: BTreeMap<u64, Vec<Arc<str>>>,
    queued: usize,
}

impl Deadlines {
    /// An empty index; bucket numbers count from `origin`.
    pub fn new(origin: Instant) -> Self {
        Deadlines {
            origin,
            buckets: BTreeMap::new(),
            queued: 0,
        }
    }

    /// The bucket holding `deadline`: bucket `b` covers `[b, b + 1) × BUCKET` after the origin
    /// (deadlines before the origin land in bucket 0).
    pub fn bucket_of(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.origin);
        (since.as_nanos() / BUCKET.as_nanos()) as u64
    }

    /// When bucket `bucket` starts.
    fn start_of(&self, bucket: u64) -> Instant {
        let nanos = u128::from(bucket) * BUCKET.as_nanos();
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Queues `id` in `bucket`.
    pub fn push(&mut self, bucket: u64, id: Arc<str>) {
        self.buckets.entry(bucket).or_default().push(id);
        self.queued += 1;
    }

    /// Takes out every bucket that started at or before `now`, oldest first (they hold every
    /// deadline that may have passed). The caller checks each id's exact deadline and queues
    /// again those whose deadline is still ahead (only ids of the bucket holding `now` can be).
    pub fn take_due(&mut self, now: Instant) -> Vec<(u64, Vec<Arc<str>>)> {
        let mut due = Vec::new();
        while let Some(&bucket) = self.buckets.keys().next() {
            if self.start_of(bucket) > now {
                break;
            }
            let ids = self.buckets.remove(&bucket).unwrap_or_default();
            self.queued -= ids.len();
            due.push((bucket, ids));
        }
        due
    }

    /// Ids queued, stale copies included.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Empties the index.
    pub fn clear(&mut self) {
        self.buckets.clear();
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn buckets_cover_half_open_ranges_from_the_origin() {
        let t0 = Instant::now();
        let d = Deadlines::new(t0);
        assert_eq!(d.bucket_of(t0), 0);
        assert_eq!(d.bucket_of(t0 + BUCKET - Duration::from_nanos(1)), 0);
        assert_eq!(d.bucket_of(t0 + BUCKET), 1);
        assert_eq!(d.bucket_of(t0 + BUCKET * 40 + BUCKET / 2), 40);
        assert_eq!(d.start_of(40), t0 + BUCKET * 40);
    }

    #[test]
    fn only_buckets_that_started_come_due_in_deadline_order() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        for (k, name) in [(5u64, "e"), (1, "a"), (3, "c"), (1, "a2"), (9, "i")] {
            d.push(k, id(name));
        }
        assert_eq!(d.queued(), 5);
        assert!(d.take_due(t0 + BUCKET - Duration::from_nanos(1)).is_empty());
        // Bucket 3 starts at 3 × BUCKET: due at that instant, not a nanosecond before.
        let due = d.take_due(t0 + BUCKET * 3 - Duration::from_nanos(1));
        let names: Vec<Vec<&str>> = due
            .iter()
            .map(|(_, ids)| ids.iter().map(|s| &**s).collect())
            .collect();
        assert_eq!(names, vec![vec!["a", "a2"]]);
        let due = d.take_due(t0 + BUCKET * 3);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, 3);
        assert_eq!(d.queued(), 2);
        let due = d.take_due(t0 + BUCKET * 100);
        assert_eq!(due.iter().map(|(b, _)| *b).collect::<Vec<_>>(), vec![5, 9]);
        assert_eq!(d.queued(), 0);
        assert!(d.take_due(t0 + BUCKET * 1000).is_empty());
    }

    #[test]
    fn a_sweep_with_nothing_due_touches_nothing() {
        let t0 = Instant::now();
        let mut d = Deadlines::new(t0);
        for k in 0..100_000u64 {
            d.push(40 + k % 20, id("w"));
        }
        assert!(d.take_due(t0 + BUCKET * 39).is_empty());
        assert_eq!(d.queued(), 100_000);
        d.clear();
        assert_eq!(d.queued(), 0);
        assert!(d.take_due(t0 + BUCKET * 100).is_empty());
    }
}
