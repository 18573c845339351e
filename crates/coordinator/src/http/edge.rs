//! What the node lets in at its edge (docs/security.md, "Connections"): which requests are
//! still served when client connections are at the cap (peers and operators), and the
//! per-client rate limit classes of the write routes.
//!
//! A request is *trusted* when it carries the peer secret, a verified peer certificate
//! (`--tls-peer-name`), or the cluster API key: the threat model trusts those holders with the
//! coordinators, and a follower forwards every client's write to the leader with the peer
//! secret (one address for all of them). Trusted requests are never rate limited and are
//! served past the connection cap, so consensus and operators never wait behind strangers.

use axum::extract::Request;
use axum::http::Method;
use std::sync::Arc;
use varpulis_api::API_KEY_HEADER;
use varpulis_raft::PEER_SECRET_HEADER;
use varpulis_tls::ratelimit::{Classify, Rate, RateLimitLayer, RateLimiter};
use varpulis_tls::serve::Reserved;
use varpulis_tls::VerifiedClientCert;

use crate::auth::secret_matches;
use crate::config::CoordinatorConfig;

/// Rate limit class of the REST API's writes.
const WRITES: usize = 0;
/// Rate limit class of the worker routes (register, heartbeat, checkpoint push, suspect).
const WORKERS: usize = 1;
/// Rate limit class of `GET /raft/metrics` (each one hashes the replicated state).
const METRICS: usize = 2;

/// The secrets a request is checked against.
#[derive(Clone)]
struct Trust {
    peer_secret: Option<String>,
    api_key: Option<String>,
    peer_name: Option<String>,
}

impl Trust {
    fn from_config(config: &CoordinatorConfig) -> Self {
        Self {
            peer_secret: config.peer_secret.clone(),
            api_key: config.api_key.clone(),
            peer_name: config.tls.peer_name.clone(),
        }
    }

    /// No secret at all: everything is open, peers included.
    fn is_open(&self) -> bool {
        self.peer_secret.is_none() && self.api_key.is_none()
    }

    fn trusted(&self, req: &Request) -> bool {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        if let Some(secret) = &self.peer_secret {
            if secret_matches(header(PEER_SECRET_HEADER), secret) {
                return true;
            }
        }
        if let Some(key) = &self.api_key {
            if secret_matches(header(API_KEY_HEADER), key) {
                return true;
            }
        }
        match (
            &self.peer_name,
            req.extensions().get::<VerifiedClientCert>(),
        ) {
            (Some(name), Some(cert)) => cert.is_valid_for(name),
            _ => false,
        }
    }
}

/// Requests served on connections past the cap: trusted ones, and with no secret configured
/// the Raft RPCs (peers then have nothing to show).
pub fn reserved(config: &CoordinatorConfig) -> Reserved {
    let trust = Trust::from_config(config);
    Arc::new(move |req: &Request| {
        trust.trusted(req) || (trust.is_open() && req.uri().path().starts_with("/raft/"))
    })
}

/// The rate limit layer of this node (`None` when every class is turned off).
pub fn rate_limit(config: &CoordinatorConfig) -> Option<RateLimitLayer> {
    let classes = vec![
        Rate::new(config.rate_limit_writes, config.rate_limit_burst),
        Rate::new(config.rate_limit_workers, config.rate_limit_workers * 2.0),
        Rate::new(config.rate_limit_metrics, config.rate_limit_metrics * 2.0),
    ];
    if classes.iter().all(Rate::is_off) {
        return None;
    }
    let trust = Trust::from_config(config);
    let classify: Classify = Arc::new(move |req: &Request| classify(&trust, req));
    Some(RateLimitLayer::new(
        Arc::new(RateLimiter::new(classes)),
        classify,
    ))
}

fn classify(trust: &Trust, req: &Request) -> Option<usize> {
    let path = req.uri().path();
    let read = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if read && path != "/raft/metrics" {
        return None;
    }
    if trust.trusted(req) {
        return None;
    }
    if read {
        return Some(METRICS);
    }
    if path.starts_with("/raft/") {
        // Without secrets the peers cannot be told apart from anyone else.
        return (!trust.is_open()).then_some(WRITES);
    }
    // No API key: the REST API is open to every client, there is no stranger to tell apart
    // from an operator, and a follower without a peer secret forwards every client's write
    // from one address; limiting them would only throttle the cluster.
    trust.api_key.as_ref()?;
    if is_worker_route(path) {
        return Some(WORKERS);
    }
    Some(WRITES)
}

/// Register, heartbeat, checkpoint push, suspect.
fn is_worker_route(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v1/cluster/workers/") else {
        return false;
    };
    rest == "register"
        || ["/heartbeat", "/checkpoints", "/suspect"]
            .iter()
            .any(|suffix| rest.ends_with(suffix))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut b = axum::http::Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    fn trust() -> Trust {
        Trust {
            peer_secret: Some("peer".into()),
            api_key: Some("key".into()),
            peer_name: None,
        }
    }

    #[test]
    fn writes_without_credentials_are_classified_by_route() {
        let t = trust();
        let c = |m, p, h: &[(&str, &str)]| classify(&t, &req(m, p, h));
        assert_eq!(c("GET", "/api/v1/cluster/workers", &[]), None);
        assert_eq!(c("GET", "/raft/metrics", &[]), Some(METRICS));
        assert_eq!(c("GET", "/raft/metrics", &[("x-api-key", "key")]), None);
        assert_eq!(c("POST", "/api/v1/cluster/connectors", &[]), Some(WRITES));
        assert_eq!(
            c(
                "POST",
                "/api/v1/cluster/connectors",
                &[("x-api-key", "bad")]
            ),
            Some(WRITES)
        );
        assert_eq!(
            c(
                "POST",
                "/api/v1/cluster/connectors",
                &[("x-api-key", "key")]
            ),
            None
        );
        assert_eq!(
            c(
                "POST",
                "/api/v1/cluster/connectors",
                &[(PEER_SECRET_HEADER, "peer")]
            ),
            None,
            "a follower's forwarded write"
        );
        assert_eq!(
            c("POST", "/api/v1/cluster/workers/register", &[]),
            Some(WORKERS)
        );
        assert_eq!(
            c("POST", "/api/v1/cluster/workers/w1/heartbeat", &[]),
            Some(WORKERS)
        );
        assert_eq!(c("DELETE", "/api/v1/cluster/workers/w1", &[]), Some(WRITES));
        assert_eq!(c("POST", "/raft/append", &[]), Some(WRITES));
        assert_eq!(
            c("POST", "/raft/append", &[(PEER_SECRET_HEADER, "peer")]),
            None
        );
    }

    #[test]
    fn without_an_api_key_only_raft_rpcs_and_metrics_are_limited() {
        let open = Trust {
            peer_secret: None,
            api_key: None,
            peer_name: None,
        };
        assert_eq!(classify(&open, &req("POST", "/raft/append", &[])), None);
        assert_eq!(
            classify(&open, &req("POST", "/api/v1/cluster/connectors", &[])),
            None,
            "no API key: no stranger to limit"
        );
        assert_eq!(
            classify(&open, &req("GET", "/raft/metrics", &[])),
            Some(METRICS)
        );
        let peers_only = Trust {
            peer_secret: Some("peer".into()),
            ..open
        };
        assert_eq!(
            classify(&peers_only, &req("POST", "/raft/append", &[])),
            Some(WRITES)
        );
        assert_eq!(
            classify(
                &peers_only,
                &req("POST", "/api/v1/cluster/workers/w1/heartbeat", &[])
            ),
            None
        );
    }
}
