//! Durations in configuration files and flags: a number of seconds, fractions allowed
//! (`heartbeat_timeout = 2.5`), shared by the coordinator's and the worker's configuration.

use serde::{Deserialize, Deserializer, Serializer};
use std::time::Duration;

/// Largest accepted number of seconds (about 31 years).
const MAX_SECS: f64 = 1.0e9;

/// Checks a number of seconds and turns it into a `Duration`.
pub fn from_f64(value: f64) -> Result<Duration, String> {
    if !value.is_finite() || !(0.0..=MAX_SECS).contains(&value) {
        return Err(format!("{value} is not a valid number of seconds"));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Parses `"2.5"` or `"5"` (seconds) into a `Duration`; used by the CLI for fractional flags.
pub fn parse(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    from_f64(value)
}

/// Writes the duration as fractional seconds (`#[serde(with = "varpulis_tls::secs")]`).
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Reads seconds, integer or fraction; negative, non-finite or absurd values are errors.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    from_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_with_fractions_and_refuse_nonsense() {
        assert_eq!(parse("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse(" 5 "), Ok(Duration::from_secs(5)));
        assert!(parse("-1").is_err());
        assert!(parse("abc").is_err());
        assert!(parse("inf").is_err());
        assert!(from_f64(2.0e9).is_err());
    }
}
