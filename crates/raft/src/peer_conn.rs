//! Which inbound connections are peers' Raft RPC connections, served on the consensus runtime
//! (issue 24; the mechanism is `varpulis_tls::placement`).
//!
//! A peer's network client ([`crate::network`]) keeps pooled keep-alive connections that carry
//! only [`CORE_RPC_PATHS`]. Served on the consensus runtime, such a connection's reads, the core's
//! work (an append and its `fdatasync`) and the answer's write run on one thread, without handing
//! each RPC to that thread and back. A connection is moved only when its first request, as far as
//! it had arrived, is a `POST` to one of those paths **and carries the peer credentials**
//! ([`Credentials::allows`] for [`Access::Peer`]; anything goes when none are configured, as for
//! the routes themselves): a client without them must not get its requests run on the consensus
//! thread. A moved connection then serves those paths only (`400` and closed otherwise) and is
//! closed after a `401`/`403`.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tokio::runtime::Handle;
use varpulis_tls::placement::{Placement, SharedPlacement};

use crate::auth::{Access, Credentials};

/// The paths of the peer RPCs that go to the core: what [`crate::network`] sends.
pub const CORE_RPC_PATHS: [&str; 3] = ["/raft/append", "/raft/vote", "/raft/snapshot-chunk"];

/// Most headers looked at in a connection's first bytes.
const MAX_HEADERS: usize = 32;

/// Moves peers' Raft RPC connections to the consensus runtime.
pub(crate) struct PeerRpcPlacement {
    runtime: Handle,
    credentials: Credentials,
}

impl PeerRpcPlacement {
    /// A placement onto `runtime` of connections that show `credentials`.
    pub(crate) fn shared(runtime: Handle, credentials: Credentials) -> SharedPlacement {
        Arc::new(Self {
            runtime,
            credentials,
        })
    }
}

impl Placement for PeerRpcPlacement {
    fn runtime_for(&self, head: &[u8]) -> Option<Handle> {
        is_peer_rpc(head, &self.credentials).then(|| self.runtime.clone())
    }

    fn serves(&self, req: &Request) -> bool {
        is_core_rpc_path(req.uri().path())
    }
}

fn is_core_rpc_path(path: &str) -> bool {
    CORE_RPC_PATHS.contains(&path)
}

/// Whether `head`, the first bytes a client sent (possibly part of its first request), is a peer
/// RPC to the core carrying the peer credentials.
pub(crate) fn is_peer_rpc(head: &[u8], credentials: &Credentials) -> bool {
    let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut parsed);
    // A partial request fills what it has (the request line, the headers received so far); a
    // credential not yet received counts as missing.
    if request.parse(head).is_err() {
        return false;
    }
    let path = request.path.map(|p| p.split('?').next().unwrap_or(p));
    if request.method != Some("POST") || !path.is_some_and(is_core_rpc_path) {
        return false;
    }
    let mut headers = HeaderMap::new();
    for header in request.headers.iter().take_while(|h| !h.name.is_empty()) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) {
            headers.append(name, value);
        }
    }
    credentials.allows(Access::Peer, &headers, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(path: &str, headers: &str) -> Vec<u8> {
        format!("POST {path} HTTP/1.1\r\nhost: n1\r\n{headers}").into_bytes()
    }

    #[test]
    fn a_peer_rpc_with_the_secret_is_moved() {
        let creds = Credentials::new(Some("s3cret".into()), Some("key".into()));
        for path in CORE_RPC_PATHS {
            let full = head(
                path,
                "x-varpulis-peer-secret: s3cret\r\ncontent-length: 3\r\n\r\nabc",
            );
            assert!(is_peer_rpc(&full, &creds), "{path}");
        }
        // The headers received so far are enough once the secret is among them.
        let partial = head(
            "/raft/append",
            "x-varpulis-peer-secret: s3cret\r\ncontent-le",
        );
        assert!(is_peer_rpc(&partial, &creds));
    }

    #[test]
    fn anything_else_stays_where_it_was_accepted() {
        let creds = Credentials::new(Some("s3cret".into()), Some("key".into()));
        let refused = [
            // Wrong or missing secret; the API key does not open peer RPCs once a secret is set.
            head("/raft/append", "x-varpulis-peer-secret: guess\r\n\r\n"),
            head("/raft/append", "x-api-key: key\r\n\r\n"),
            head("/raft/append", "\r\n"),
            // The secret not received yet.
            head("/raft/append", "content-length: 3\r\nx-varpulis-peer-se"),
            // Other routes and methods.
            head(
                "/raft/forward-batch",
                "x-varpulis-peer-secret: s3cret\r\n\r\n",
            ),
            head("/raft/append/x", "x-varpulis-peer-secret: s3cret\r\n\r\n"),
            b"GET /raft/append HTTP/1.1\r\nx-varpulis-peer-secret: s3cret\r\n\r\n".to_vec(),
            b"POST /raft/app".to_vec(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            Vec::new(),
        ];
        for bytes in refused {
            assert!(
                !is_peer_rpc(&bytes, &creds),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
    }

    #[test]
    fn without_secrets_the_path_decides_and_the_api_key_stands_in_for_the_secret() {
        let open = Credentials::new(None, None);
        assert!(is_peer_rpc(&head("/raft/vote", "\r\n"), &open));
        assert!(!is_peer_rpc(
            &head("/api/v1/cluster/connectors", "\r\n"),
            &open
        ));
        let key_only = Credentials::new(None, Some("key".into()));
        assert!(is_peer_rpc(
            &head("/raft/append", "x-api-key: key\r\n\r\n"),
            &key_only
        ));
        assert!(!is_peer_rpc(
            &head("/raft/append", "x-api-key: no\r\n\r\n"),
            &key_only
        ));
    }
}
