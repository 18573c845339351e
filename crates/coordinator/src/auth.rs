//! Secrets: constant-time comparison and the worker join token check, shared by the HTTP
//! middleware (`http::auth`) and the NATS transport. Secrets are never logged.

use crate::error::ApiError;

/// Whether `presented` equals `expected`, in time independent of where they differ.
pub fn secret_matches(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(p) => constant_time_eq::constant_time_eq(p.as_bytes(), expected.as_bytes()),
        None => false,
    }
}

/// Checks a presented worker join token against the configured one (no-op when none is
/// configured). The HTTP middleware and the NATS transport both call it.
pub fn check_worker_token(expected: Option<&str>, presented: Option<&str>) -> Result<(), ApiError> {
    match expected {
        Some(expected) if !secret_matches(presented, expected) => Err(ApiError::Unauthorized(
            "missing or invalid x-worker-token header",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(secret_matches(Some("admin"), "admin"));
        assert!(!secret_matches(Some("admin2"), "admin"));
        assert!(!secret_matches(Some("Admin"), "admin"));
        assert!(!secret_matches(None, "admin"));
    }
}
