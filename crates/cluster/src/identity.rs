//! Worker identity: a worker id is bound to the key it registered with.
//!
//! The `api_key` of a registration is the key the coordinator presents when it calls the
//! worker, and the proof of identity the worker presents back (`x-api-key` on heartbeats,
//! checkpoint pushes and its own deregistration). Rules (docs/security.md, "Worker identity"):
//!
//! - A new id may register with any key (open registration; a join token restricts who may
//!   register at all).
//! - A known id re-registers only with the same key; another key is refused with
//!   [`Error::WorkerIdTaken`] (409), whatever its state.
//! - An operator (the cluster API key, `?force=true`) may take over an id that is not alive
//!   (unhealthy or dead): the new key replaces the old one. A live id is never taken over:
//!   deregister it first.
//! - Ids and addresses are checked strictly before proposing ([`check_worker_id`],
//!   [`check_address`]): path-safe ids, `scheme://host[:port]` addresses. These checks are not
//!   in `apply` so that logs written by older versions replay unchanged.
//!
//! Keys are compared through their SHA-256 digests (fixed length, no early exit on the first
//! differing byte of the secret). The key itself stays in the replicated state: the
//! coordinator must present it when it calls the worker.

use sha2::{Digest, Sha256};

use crate::command::RegisterWorker;
use crate::error::Error;
use crate::registry::{Worker, WorkerStatus};

/// Whether `presented` is the key `stored` (digest comparison; see the module doc).
pub fn key_matches(presented: &str, stored: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(stored.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether a worker in `status` counts as alive (heartbeating) for takeover purposes.
pub fn is_alive(status: WorkerStatus) -> bool {
    !matches!(status, WorkerStatus::Unhealthy | WorkerStatus::Dead)
}

/// Checks a registration of a known worker `existing` against its key binding (used in
/// `apply`, deterministic; `r.takeover == None` is a command from before identity existed).
pub fn check_rebinding(existing: &Worker, r: &RegisterWorker) -> Result<(), Error> {
    let Some(takeover) = r.takeover else {
        return Ok(());
    };
    if key_matches(&r.api_key, &existing.api_key) {
        return Ok(());
    }
    if !takeover {
        return Err(Error::WorkerIdTaken(format!(
            "worker id '{}' is registered with another key; only that key can re-register it \
             (an operator may take over an unhealthy or dead id with the cluster API key and \
             ?force=true)",
            existing.id
        )));
    }
    if is_alive(existing.status) {
        return Err(Error::WorkerIdTaken(format!(
            "worker id '{}' is {} and registered with another key: a live id cannot be taken \
             over (deregister it first)",
            existing.id, existing.status
        )));
    }
    Ok(())
}

/// Checks that a worker id is safe in a URL path and a file name: ASCII letters, digits and
/// `-_.:@`, not `.` or `..`.
pub fn check_worker_id(id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::InvalidWorker("worker_id must not be empty".into()));
    }
    if id == "." || id == ".." {
        return Err(Error::InvalidWorker(format!(
            "worker_id '{id}' is not a valid id"
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')))
    {
        return Err(Error::InvalidWorker(format!(
            "worker_id must contain only ASCII letters, digits and '-', '_', '.', ':', '@' \
             (found {c:?})"
        )));
    }
    Ok(())
}

/// Checks that a worker address is `http[s]://host[:port]` and nothing else (a trailing `/`
/// is tolerated): no path, query, fragment or userinfo, so the coordinator only ever calls the
/// worker's own API routes on that host.
pub fn check_address(address: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::InvalidWorker(format!(
            "address must be scheme://host:port (http or https) with nothing after the port: \
             {why}"
        )))
    };
    let lower = address.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return bad("the scheme is not http:// or https://");
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return bad("no host");
    }
    if let Some(c) = authority.chars().find(|c| {
        matches!(c, '/' | '?' | '#' | '@' | '\\' | '%') || c.is_whitespace() || c.is_control()
    }) {
        return bad(&format!(
            "{c:?} is not allowed (path, query, fragment or userinfo)"
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return bad("junk after the IPv6 address"),
            },
            None => return bad("unclosed '[' in the host"),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = if authority.starts_with('[') {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    if !host_ok {
        return bad("the host is not a name or an IP address");
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => {}
            _ => return bad("the port is not a number from 1 to 65535"),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn worker(key: &str, status: WorkerStatus) -> Worker {
        Worker {
            id: "w1".into(),
            address: "http://h:1".into(),
            api_key: key.into(),
            cpu_cores: 1,
            max_pipelines: 1,
            labels: BTreeMap::new(),
            status,
            status_reason: None,
            registered_at_ms: 0,
            status_changed_at_ms: 0,
            registrations: 1,
        }
    }

    fn registration(key: &str, takeover: Option<bool>) -> RegisterWorker {
        RegisterWorker {
            worker_id: "w1".into(),
            address: "http://h:2".into(),
            api_key: key.into(),
            cpu_cores: 1,
            max_pipelines: 1,
            labels: BTreeMap::new(),
            now_ms: 1,
            takeover,
        }
    }

    #[test]
    fn same_key_rebinds_another_key_is_taken() {
        let w = worker("k1", WorkerStatus::Ready);
        assert!(check_rebinding(&w, &registration("k1", Some(false))).is_ok());
        let err = check_rebinding(&w, &registration("k2", Some(false))).unwrap_err();
        assert_eq!(err.code(), varpulis_api::Code::WorkerIdTaken);
        assert!(!err.to_string().contains("k1"), "never echo the key");
        // A live id cannot be taken over, even by an operator.
        assert!(check_rebinding(&w, &registration("k2", Some(true))).is_err());
        // Legacy commands (no binding) replay as before.
        assert!(check_rebinding(&w, &registration("k2", None)).is_ok());
    }

    #[test]
    fn operators_take_over_dead_or_unhealthy_ids_only() {
        for st in [WorkerStatus::Dead, WorkerStatus::Unhealthy] {
            let w = worker("k1", st);
            assert!(check_rebinding(&w, &registration("k2", Some(true))).is_ok());
            assert!(check_rebinding(&w, &registration("k2", Some(false))).is_err());
        }
        for st in [
            WorkerStatus::Ready,
            WorkerStatus::Busy,
            WorkerStatus::Draining,
        ] {
            let w = worker("k1", st);
            assert!(check_rebinding(&w, &registration("k2", Some(true))).is_err());
        }
    }

    #[test]
    fn keys_compare_exactly() {
        assert!(key_matches("abc", "abc"));
        assert!(!key_matches("abc", "abd"));
        assert!(!key_matches("", "a"));
        assert!(key_matches("", ""));
    }

    #[test]
    fn ids_must_be_path_safe() {
        for ok in ["worker-0", "w_1", "node1.example.com", "pod:7", "w@eu"] {
            assert!(check_worker_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".", "..", "a/b", "a\\b", "a b", "a?b", "a#b", "a%2f", "é", "a\nb",
        ] {
            assert!(check_worker_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses_are_scheme_host_port_only() {
        for ok in [
            "http://127.0.0.1:9000",
            "https://worker-1.internal:443",
            "http://localhost",
            "http://h:9000/",
            "HTTP://H:1",
            "http://[::1]:9000",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://h:1",
            "http://",
            "http://h:9000/api",
            "http://h:9000/?x=1",
            "http://h:9000#frag",
            "http://user:pw@h:9000",
            "http://h:0",
            "http://h:70000",
            "http://h:12ab",
            "http://h:9000//",
            "http://[::1",
            "http://h h:1",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
