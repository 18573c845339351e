//! Phi-accrual failure detection (Hayashibara et al., as used by Akka and Cassandra).
//!
//! Instead of a fixed timeout, the leader keeps a sliding window of the intervals between a
//! worker's heartbeats and models them as a normal distribution (mean `μ`, standard deviation
//! `σ`, floored at `min_std_dev`). Given the time `t` since the last heartbeat, the suspicion
//! level is
//!
//! ```text
//! phi(t) = -log10( P(interval > t) ) = -log10( 1 - F(t) ),   F = normal CDF(μ, σ)
//! ```
//!
//! so `phi = 1` means a 10 % chance that a heartbeat is still coming, `phi = 8` one chance in
//! 10^8. A worker is suspected when `phi` exceeds the threshold (default 8.0). The detector
//! adapts: a worker whose heartbeats are regular is suspected sooner than a fixed timeout would,
//! one on a jittery link later. Everything here is pure (time is passed in as durations), so
//! it is unit-tested without a clock.
//!
//! Bootstrap: a new window is seeded with two samples `interval ± interval/4` (the configured
//! heartbeat interval), as Akka does, so a freshly registered worker or a new leader's grace
//! period behaves sensibly before real samples arrive.

use std::collections::VecDeque;
use std::time::Duration;

/// Intervals kept in a worker's sliding window.
pub const WINDOW: usize = 100;
/// Real samples needed before the window is trusted on its own (until then the seeds count).
pub const MIN_SAMPLES: usize = 3;

/// Parameters of the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhiConfig {
    /// Suspicion level above which a worker is declared failed.
    pub threshold: f64,
    /// Floor of the standard deviation (very regular heartbeats would otherwise make the
    /// detector hair-triggered by scheduler jitter).
    pub min_std_dev: Duration,
    /// Expected heartbeat interval, used to seed an empty window.
    pub first_interval: Duration,
}

impl PhiConfig {
    /// Defaults for a heartbeat `interval`: σ floor of `interval / 4` (at least 100 ms).
    pub fn for_interval(threshold: f64, interval: Duration) -> Self {
        PhiConfig {
            threshold,
            min_std_dev: (interval / 4).max(Duration::from_millis(100)),
            first_interval: interval,
        }
    }
}

/// The sliding window of inter-heartbeat intervals of one worker, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Intervals {
    samples: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    capacity: usize,
}

impl Intervals {
    /// An empty window keeping at most `capacity` (at least 2) samples.
    pub fn new(capacity: usize) -> Self {
        Intervals {
            samples: VecDeque::new(),
            sum: 0.0,
            sum_sq: 0.0,
            capacity: capacity.max(2),
        }
    }

    /// A [`WINDOW`]-sized window seeded with `first ± first/4` (see the module docs).
    pub fn seeded(config: &PhiConfig) -> Self {
        let mut w = Intervals::new(WINDOW);
        w.seed(config.first_interval);
        w
    }

    /// Adds the two bootstrap samples `first ± first/4`.
    pub fn seed(&mut self, first: Duration) {
        let mean = first.as_secs_f64();
        self.push(mean - mean / 4.0);
        self.push(mean + mean / 4.0);
    }

    /// Records one interval between two heartbeats.
    pub fn record(&mut self, interval: Duration) {
        self.push(interval.as_secs_f64());
    }

    fn push(&mut self, x: f64) {
        if self.samples.len() == self.capacity {
            if let Some(old) = self.samples.pop_front() {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
        }
        self.samples.push_back(x);
        self.sum += x;
        self.sum_sq += x * x;
    }

    /// Number of samples in the window.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the window is empty (never, once seeded).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Mean interval, seconds.
    pub fn mean(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.sum / self.samples.len() as f64
    }

    /// Population standard deviation, seconds.
    pub fn std_dev(&self) -> f64 {
        let n = self.samples.len() as f64;
        if n == 0.0 {
            return 0.0;
        }
        let mean = self.sum / n;
        (self.sum_sq / n - mean * mean).max(0.0).sqrt()
    }

    /// Suspicion level after `elapsed` without a heartbeat.
    pub fn phi(&self, elapsed: Duration, config: &PhiConfig) -> f64 {
        let sigma = self.std_dev().max(config.min_std_dev.as_secs_f64());
        phi(elapsed.as_secs_f64(), self.mean(), sigma)
    }

    /// Whether the worker is suspected after `elapsed` without a heartbeat.
    pub fn suspects(&self, elapsed: Duration, config: &PhiConfig) -> bool {
        self.phi(elapsed, config) > config.threshold
    }
}

/// `-log10(P(X > t))` for `X ~ N(mean, sigma)`; grows without bound as `t` grows.
pub fn phi(t: f64, mean: f64, sigma: f64) -> f64 {
    if sigma.is_nan() || sigma <= 0.0 || !t.is_finite() {
        return if t > mean { f64::INFINITY } else { 0.0 };
    }
    let z = (t - mean) / sigma;
    let p_later = 0.5 * erfc(z / std::f64::consts::SQRT_2);
    if p_later <= f64::MIN_POSITIVE {
        // Beyond what f64 represents: use the asymptotic tail log10(φ(z)/z) directly.
        let ln_tail = -0.5 * z * z - (z * (2.0 * std::f64::consts::PI).sqrt()).ln();
        return -ln_tail / std::f64::consts::LN_10;
    }
    -p_later.log10()
}

/// Complementary error function (Numerical Recipes `erfcc`, relative error < 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps
    }

    #[test]
    fn erfc_matches_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-7));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-7));
        assert!(close(erfc(2.0), 0.004_677_735, 1e-8));
    }

    #[test]
    fn phi_follows_the_normal_tail() {
        // At the mean half the heartbeats are still to come: phi = log10(2).
        assert!(close(phi(1.0, 1.0, 0.1), 2f64.log10(), 1e-6));
        // One sigma later: P = 0.1587, phi = 0.7995.
        assert!(close(phi(1.1, 1.0, 0.1), 0.799_5, 1e-3));
        // Monotone in t.
        let mut last = 0.0;
        for k in 0..200 {
            let p = phi(k as f64 * 0.05, 1.0, 0.1);
            assert!(p >= last, "phi decreased at step {k}");
            last = p;
        }
        // Far in the tail it keeps growing (no infinity, no NaN).
        let far = phi(100.0, 1.0, 0.1);
        assert!(far.is_finite() && far > 1000.0, "{far}");
        assert_eq!(phi(0.5, 1.0, 0.0), 0.0);
        assert_eq!(phi(1.5, 1.0, 0.0), f64::INFINITY);
    }

    #[test]
    fn the_window_slides_and_tracks_mean_and_deviation() {
        let mut w = Intervals::new(4);
        assert!(w.is_empty());
        w.seed(Duration::from_secs(1));
        assert_eq!(w.len(), 2);
        assert!(close(w.mean(), 1.0, 1e-9));
        assert!(close(w.std_dev(), 0.25, 1e-9));
        for _ in 0..4 {
            w.record(Duration::from_millis(2000));
        }
        assert_eq!(w.len(), 4, "the seeds slid out");
        assert!(close(w.mean(), 2.0, 1e-9));
        assert!(close(w.std_dev(), 0.0, 1e-6));
        w.record(Duration::from_millis(1000));
        assert!(close(w.mean(), 1.75, 1e-9));
    }

    #[test]
    fn regular_heartbeats_are_suspected_sooner_than_jittery_ones() {
        let cfg = PhiConfig::for_interval(8.0, Duration::from_secs(1));
        assert_eq!(cfg.min_std_dev, Duration::from_millis(250));
        let mut regular = Intervals::seeded(&cfg);
        let mut jittery = Intervals::seeded(&cfg);
        for k in 0..50 {
            regular.record(Duration::from_millis(1000 + (k % 3) * 10));
            jittery.record(Duration::from_millis(if k % 2 == 0 { 400 } else { 2600 }));
        }
        let first_suspicion = |w: &Intervals| {
            (1..200)
                .map(|k| Duration::from_millis(k * 100))
                .find(|t| w.suspects(*t, &cfg))
                .unwrap()
        };
        let r = first_suspicion(&regular);
        let j = first_suspicion(&jittery);
        // Regular: mean 1.01 s, sigma floored at 0.25 s: phi 8 at about mean + 5.6 sigma.
        assert!(
            r >= Duration::from_millis(2000) && r <= Duration::from_millis(2700),
            "{r:?}"
        );
        assert!(
            j > r + Duration::from_secs(2),
            "jittery {j:?} vs regular {r:?}"
        );
        // Nothing is suspected right after a heartbeat.
        assert!(!regular.suspects(Duration::from_millis(900), &cfg));
    }

    #[test]
    fn a_higher_threshold_waits_longer() {
        let low = PhiConfig::for_interval(1.0, Duration::from_secs(1));
        let high = PhiConfig::for_interval(12.0, Duration::from_secs(1));
        let w = Intervals::seeded(&low);
        let t = Duration::from_millis(1500);
        assert!(w.suspects(t, &low));
        assert!(!w.suspects(t, &high));
    }
}
