//! Per-decision retry schedule of the reconciler: 1 s doubling to 30 s, kept in leader memory
//! (a new leader starts afresh). Time is tokio's, so paused-time tests drive it.

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
struct Retry {
    delay: Duration,
    next: Instant,
    attempts: u32,
}

/// Retry schedule per decision key.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Retry>,
}

impl Backoff {
    /// Whether the decision `key` may be tried at `now`.
    pub fn ready(&self, key: &str, now: Instant) -> bool {
        self.entries.get(key).is_none_or(|r| now >= r.next)
    }

    /// Records a failure; returns the number of failures so far.
    pub fn failed(&mut self, key: String, now: Instant) -> u32 {
        let retry = match self.entries.get(&key) {
            Some(r) => {
                let delay = (r.delay * 2).min(BACKOFF_MAX);
                Retry {
                    delay,
                    next: now + delay,
                    attempts: r.attempts + 1,
                }
            }
            None => Retry {
                delay: BACKOFF_START,
                next: now + BACKOFF_START,
                attempts: 1,
            },
        };
        self.entries.insert(key, retry);
        retry.attempts
    }

    /// Forgets `key` (it succeeded, or was given up).
    pub fn succeeded(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.ready("k", t0));
        assert_eq!(b.failed("k".into(), t0), 1);
        assert!(!b.ready("k", t0));
        assert!(b.ready("k", t0 + Duration::from_secs(1)));
        let mut attempts = 0;
        for _ in 0..10 {
            attempts = b.failed("k".into(), t0);
        }
        assert_eq!(attempts, 11);
        assert!(b.ready("k", t0 + BACKOFF_MAX));
        assert!(!b.ready("k", t0 + BACKOFF_MAX - Duration::from_millis(1)));
        b.succeeded("k");
        assert!(b.ready("k", t0));
    }
}
