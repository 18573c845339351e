//! Who may call which `/raft/*` route: the peer secret, the cluster API key, and the hook for
//! mutual TLS.
//!
//! Two kinds of callers reach a coordinator's Raft routes:
//! - **peers** (the other coordinators) call the consensus RPCs `vote`, `append`, `snapshot`,
//!   `snapshot-chunk` and `install-snapshot`. They prove it with the peer secret in the
//!   [`PEER_SECRET_HEADER`] header, or with a client certificate the TLS layer recognised as a
//!   peer's (it then inserts a [`PeerCertificate`] into the request's extensions). When no peer
//!   secret is configured, the cluster API key (`x-api-key`) opens these routes as it always did
//!   (the node warns at start-up). With a peer secret configured, the API key does **not** open
//!   them: a client that holds the API key cannot forge log entries or votes.
//! - **operators** call the admin routes `add-learner` and `change-membership` with the cluster
//!   API key. A cluster without an API key but with a peer secret takes the peer secret there
//!   (so a peer secret alone never leaves membership changes open).
//!
//! Secrets are compared in constant time over their SHA-256 digests (so neither the content nor
//! the length of the expected secret leaks through timing) and never printed: [`Credentials`]
//! redacts them in `Debug`.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// Header carrying the cluster API key (admin calls; peer RPCs when no peer secret is set).
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header carrying the peer secret on peer RPCs.
pub const PEER_SECRET_HEADER: &str = "x-varpulis-peer-secret";

/// Proof, set by a mutual-TLS acceptor in a request's extensions, that the connection's client
/// certificate belongs to a coordinator peer of this cluster.
///
/// It stands in for the peer secret: a request carrying it may call the peer RPCs. The TLS layer
/// must insert it only for certificates that identify a *coordinator* (verified against the
/// configured client CA and recognised as a peer, e.g. by a name the operator chose), never for
/// any certificate the CA signed: workers present certificates from the same CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// How the certificate identified the peer (subject or SAN), for logs.
    pub identity: String,
}

/// The secrets of one node: what it requires from callers and sends to its peers.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The peer secret (`--peer-secret`), if any.
    peer_secret: Option<String>,
    /// The cluster API key (`--api-key`), if any.
    api_key: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials")
            .field("peer_secret", &redact(&self.peer_secret))
            .field("api_key", &redact(&self.api_key))
            .finish()
    }
}

/// Which check a route applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Consensus RPCs: vote, append, snapshots.
    Peer,
    /// Membership administration: add-learner, change-membership.
    Admin,
}

impl Credentials {
    /// Credentials from the configured secrets (empty strings count as absent).
    pub fn new(peer_secret: Option<String>, api_key: Option<String>) -> Self {
        Self {
            peer_secret: peer_secret.filter(|s| !s.is_empty()),
            api_key: api_key.filter(|s| !s.is_empty()),
        }
    }

    /// Whether a peer secret is configured.
    pub fn has_peer_secret(&self) -> bool {
        self.peer_secret.is_some()
    }

    /// Whether an API key is configured.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// The start-up warning this configuration deserves, if any (the text never holds a secret).
    pub fn startup_warning(&self) -> Option<&'static str> {
        match (&self.peer_secret, &self.api_key) {
            (Some(_), _) => None,
            (None, Some(_)) => Some(
                "no --peer-secret set: the Raft RPCs (/raft/vote, /raft/append, snapshots) accept \
                 the cluster API key, so any API client can forge Raft traffic \
                 (set VARPULIS_PEER_SECRET on every coordinator)",
            ),
            (None, None) => Some(
                "no --peer-secret and no --api-key set: anyone who can reach this node can send \
                 it Raft votes and log entries (set VARPULIS_PEER_SECRET on every coordinator)",
            ),
        }
    }

    /// Whether a request with these `headers` (and, for mutual TLS, this peer certificate) may
    /// call a route of kind `access`.
    pub fn allows(
        &self,
        access: Access,
        headers: &HeaderMap,
        certificate: Option<&PeerCertificate>,
    ) -> bool {
        match access {
            Access::Peer => {
                if certificate.is_some() {
                    return true;
                }
                match (&self.peer_secret, &self.api_key) {
                    (Some(secret), _) => header_matches(headers, PEER_SECRET_HEADER, secret),
                    (None, Some(key)) => header_matches(headers, API_KEY_HEADER, key),
                    (None, None) => true,
                }
            }
            Access::Admin => match (&self.api_key, &self.peer_secret) {
                (Some(key), _) => header_matches(headers, API_KEY_HEADER, key),
                (None, Some(secret)) => header_matches(headers, PEER_SECRET_HEADER, secret),
                (None, None) => true,
            },
        }
    }

    /// What a peer request carries, as [`Credentials::sign_peer_request`] adds it: the peer
    /// secret and the API key, each when configured.
    pub fn peer_headers(&self) -> (Option<&str>, Option<&str>) {
        (self.peer_secret.as_deref(), self.api_key.as_deref())
    }

    /// Adds what a peer RPC must carry to an outbound request: the peer secret, and the API key
    /// too so that peers not yet configured with the secret (a rolling change of the
    /// configuration) still accept it.
    pub fn sign_peer_request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut builder = builder;
        if let Some(secret) = &self.peer_secret {
            builder = builder.header(PEER_SECRET_HEADER, secret);
        }
        if let Some(key) = &self.api_key {
            builder = builder.header(API_KEY_HEADER, key);
        }
        builder
    }

    /// Adds what an admin call must carry: the API key, or the peer secret when the cluster has
    /// no API key.
    pub fn sign_admin_request(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.api_key, &self.peer_secret) {
            (Some(key), _) => builder.header(API_KEY_HEADER, key),
            (None, Some(secret)) => builder.header(PEER_SECRET_HEADER, secret),
            (None, None) => builder,
        }
    }
}

/// Constant-time comparison of header `name` with `expected` (over SHA-256 digests).
fn header_matches(headers: &HeaderMap, name: &str, expected: &str) -> bool {
    let Some(given) = headers.get(name) else {
        return false;
    };
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    constant_time_eq::constant_time_eq_32(&given.into(), &expected.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn with_a_peer_secret_the_api_key_no_longer_opens_peer_rpcs() {
        let c = Credentials::new(Some("peer".into()), Some("key".into()));
        assert!(c.allows(
            Access::Peer,
            &headers(&[(PEER_SECRET_HEADER, "peer")]),
            None
        ));
        assert!(!c.allows(Access::Peer, &headers(&[(API_KEY_HEADER, "key")]), None));
        assert!(!c.allows(
            Access::Peer,
            &headers(&[(PEER_SECRET_HEADER, "peer2")]),
            None
        ));
        assert!(!c.allows(Access::Peer, &headers(&[(PEER_SECRET_HEADER, "pee")]), None));
        assert!(!c.allows(Access::Peer, &HeaderMap::new(), None));
        // Admin calls keep using the API key, and only it.
        assert!(c.allows(Access::Admin, &headers(&[(API_KEY_HEADER, "key")]), None));
        assert!(!c.allows(
            Access::Admin,
            &headers(&[(PEER_SECRET_HEADER, "peer")]),
            None
        ));
    }

    #[test]
    fn without_a_peer_secret_the_api_key_opens_everything_as_before() {
        let c = Credentials::new(None, Some("key".into()));
        assert!(c.allows(Access::Peer, &headers(&[(API_KEY_HEADER, "key")]), None));
        assert!(!c.allows(Access::Peer, &headers(&[(API_KEY_HEADER, "nope")]), None));
        assert!(c.allows(Access::Admin, &headers(&[(API_KEY_HEADER, "key")]), None));
        assert!(c.startup_warning().is_some());
    }

    #[test]
    fn a_peer_secret_alone_also_guards_admin_calls() {
        let c = Credentials::new(Some("peer".into()), None);
        assert!(!c.allows(Access::Admin, &HeaderMap::new(), None));
        assert!(c.allows(
            Access::Admin,
            &headers(&[(PEER_SECRET_HEADER, "peer")]),
            None
        ));
        assert!(c.startup_warning().is_none());
    }

    #[test]
    fn nothing_configured_is_open_with_a_warning() {
        let c = Credentials::new(Some(String::new()), None);
        assert!(c.allows(Access::Peer, &HeaderMap::new(), None));
        assert!(c.allows(Access::Admin, &HeaderMap::new(), None));
        assert!(c.startup_warning().is_some());
    }

    #[test]
    fn a_peer_certificate_stands_in_for_the_secret_on_peer_rpcs_only() {
        let c = Credentials::new(Some("peer".into()), Some("key".into()));
        let cert = PeerCertificate {
            identity: "coordinator-2".into(),
        };
        assert!(c.allows(Access::Peer, &HeaderMap::new(), Some(&cert)));
        assert!(!c.allows(Access::Admin, &HeaderMap::new(), Some(&cert)));
    }

    #[test]
    fn debug_never_shows_the_secrets() {
        let c = Credentials::new(Some("peer-topsecret".into()), Some("key-topsecret".into()));
        let text = format!("{c:?}");
        assert!(!text.contains("topsecret"), "{text}");
    }

    #[test]
    fn outbound_peer_requests_carry_the_secret_and_the_key() {
        let c = Credentials::new(Some("peer".into()), Some("key".into()));
        let client = reqwest::Client::new();
        let req = c
            .sign_peer_request(client.post("http://127.0.0.1:1/raft/vote"))
            .build()
            .unwrap();
        assert_eq!(req.headers()[PEER_SECRET_HEADER], "peer");
        assert_eq!(req.headers()[API_KEY_HEADER], "key");
        let req = c
            .sign_admin_request(client.post("http://127.0.0.1:1/raft/add-learner"))
            .build()
            .unwrap();
        assert_eq!(req.headers()[API_KEY_HEADER], "key");
        assert!(req.headers().get(PEER_SECRET_HEADER).is_none());
    }
}
