//! The worker's lease: how long its coordinator-deployed pipelines may run without news from
//! the leader.
//!
//! Every registration and heartbeat answer grants `lease_ms`; the lease runs from the moment
//! the *request was sent* (never later than the leader's grant, so the worker's view ends
//! first). Once it has run out the worker is **fenced**: its coordinator-deployed pipelines
//! (those with an epoch) take no events and publish nothing, and their sources are paused
//! (`coordinator::fence`). The check is also made at the point of use ([`Lease::holds`],
//! called before each batch and each publish), so a worker that was stalled past its lease
//! never publishes before its fence task ran. A renewal alone does not lift a fence: the
//! worker first drops the copies the leader no longer places here, then [`Lease::lift`]s it.
//!
//! A worker that never received a lease (standalone, or an older coordinator) is never
//! fenced.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The lease of one worker (shared by its pipelines).
#[derive(Debug, Default)]
pub struct Lease {
    /// End of the lease; `None` until a coordinator granted one.
    deadline: Mutex<Option<Instant>>,
    /// Set when the lease ran out; cleared only by [`Lease::lift`].
    fenced: AtomicBool,
    /// Times the worker fenced itself (for `/metrics`).
    fences: AtomicU64,
    /// Leases granted over the worker session (for `/metrics`).
    session_renewals: AtomicU64,
}

impl Lease {
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Extends the lease to `sent + duration` (`sent`: when the answered request left).
    pub fn renew(&self, sent: Instant, duration: Duration) {
        let until = sent + duration;
        let mut d = self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        match *d {
            Some(current) if current >= until => {}
            _ => *d = Some(until),
        }
    }

    /// Whether the lease has run out at `now` (never without a lease).
    pub fn expired_at(&self, now: Instant) -> bool {
        self.deadline().is_some_and(|d| now >= d)
    }

    /// When the lease ends, if one was granted.
    pub fn ends_at(&self) -> Option<Instant> {
        self.deadline()
    }

    /// Whether coordinator-deployed pipelines may run now: not fenced and not expired.
    pub fn holds(&self) -> bool {
        !self.is_fenced() && !self.expired_at(Instant::now())
    }

    /// Whether the worker is fenced (set by [`Lease::fence`], or the lease ran out).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire) || self.expired_at(Instant::now())
    }

    /// Records the fence; returns whether it was newly set.
    pub fn fence(&self) -> bool {
        let newly = !self.fenced.swap(true, Ordering::AcqRel);
        if newly {
            self.fences.fetch_add(1, Ordering::Relaxed);
        }
        newly
    }

    /// Whether a fence is recorded (the lease may have been renewed since).
    pub fn fence_recorded(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Lifts the fence (after the stale copies were removed and the lease renewed).
    pub fn lift(&self) {
        self.fenced.store(false, Ordering::Release);
    }

    /// How many times the worker fenced itself.
    pub fn fence_count(&self) -> u64 {
        self.fences.load(Ordering::Relaxed)
    }

    /// Counts a lease granted over the worker session (`coordinator::ws`).
    pub fn note_session_renewal(&self) {
        self.session_renewals.fetch_add(1, Ordering::Relaxed);
    }

    /// Leases granted over the worker session so far.
    pub fn session_renewals(&self) -> u64 {
        self.session_renewals.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_lease_never_fences() {
        let l = Lease::default();
        assert!(l.holds());
        assert!(!l.is_fenced());
    }

    #[test]
    fn a_lease_runs_from_the_send_time_and_renewals_only_extend_it() {
        let l = Lease::default();
        let t0 = Instant::now();
        l.renew(t0, Duration::from_secs(10));
        assert!(!l.expired_at(t0 + Duration::from_secs(9)));
        assert!(l.expired_at(t0 + Duration::from_secs(10)));
        // An answer to an older request never shortens the lease.
        l.renew(t0 - Duration::from_secs(5), Duration::from_secs(10));
        assert_eq!(l.ends_at(), Some(t0 + Duration::from_secs(10)));
        l.renew(t0 + Duration::from_secs(3), Duration::from_secs(10));
        assert!(!l.expired_at(t0 + Duration::from_secs(12)));
    }

    #[test]
    fn an_expired_lease_fences_until_lifted() {
        let l = Lease::default();
        l.renew(
            Instant::now() - Duration::from_secs(2),
            Duration::from_secs(1),
        );
        assert!(l.is_fenced());
        assert!(!l.holds());
        assert!(l.fence());
        assert!(!l.fence());
        l.renew(Instant::now(), Duration::from_secs(60));
        assert!(l.is_fenced(), "a renewal alone does not lift the fence");
        l.lift();
        assert!(l.holds());
        assert_eq!(l.fence_count(), 1);
    }
}
