//! Exponential backoff delays shared by every reconnecting connection.

use std::time::Duration;

/// Delay before attempt `attempt` (1-based): `initial` doubling per attempt, at most `max`.
pub fn delay(initial: Duration, attempt: usize, max: Duration) -> Duration {
    let shift = attempt.saturating_sub(1).min(16) as u32;
    initial.saturating_mul(1u32 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let (i, max) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(delay(i, 1, max), Duration::from_millis(500));
        assert_eq!(delay(i, 2, max), Duration::from_secs(1));
        assert_eq!(delay(i, 40, max), max);
        assert_eq!(delay(i, 0, max), i);
    }
}
