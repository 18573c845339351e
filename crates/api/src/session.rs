//! Messages of the worker session (`GET /api/v1/cluster/workers/{id}/session`, WebSocket), one
//! JSON object per text frame, tagged by `type` (docs/worker.md "Session").
//!
//! The worker asks for a lease renewal four times per lease ([`SessionMessage::Renew`], numbered;
//! at least every second, at most every 5 s); the
//! leader answers each with a [`SessionMessage::Lease`] naming the same `seq`, which the worker
//! counts from the moment it *sent* that renewal, exactly like a heartbeat answer. A follower
//! holding the session cannot grant leases: it answers [`SessionMessage::NotLeader`] with the
//! leader's URL when it knows it, and the worker moves its session there. Heartbeats keep
//! renewing the lease too (the fallback when no session is open).

use serde::{Deserialize, Serialize};

/// One session message, either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionMessage {
    /// Worker → coordinator: renew my lease (`seq` increases with every request).
    Renew {
        /// The request's number.
        seq: u64,
    },
    /// Leader → worker: the lease is renewed for `lease_ms`, counted from when renewal `seq`
    /// was sent.
    Lease {
        /// The renewal answered.
        seq: u64,
        /// Lease length in milliseconds.
        lease_ms: u64,
    },
    /// Follower → worker: only the leader grants leases; `leader` is its URL when known.
    NotLeader {
        /// The renewal answered.
        seq: u64,
        /// The leader's advertised base URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
    },
    /// Leader → worker: no lease for this worker now (`reason`: it is not ready, e.g. marked
    /// unhealthy); its next heartbeat settles its state.
    Refused {
        /// The renewal answered.
        seq: u64,
        /// Why.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_type_tag() {
        let m = SessionMessage::Lease {
            seq: 3,
            lease_ms: 13_500,
        };
        let s = serde_json::to_string(&m).unwrap_or_default();
        assert_eq!(s, r#"{"type":"lease","seq":3,"lease_ms":13500}"#);
        let back: SessionMessage = serde_json::from_str(r#"{"type":"renew","seq":7}"#)
            .unwrap_or(SessionMessage::Renew { seq: 0 });
        assert_eq!(back, SessionMessage::Renew { seq: 7 });
        assert!(serde_json::from_str::<SessionMessage>(r#"{"type":"bogus"}"#).is_err());
        let nl = SessionMessage::NotLeader {
            seq: 1,
            leader: None,
        };
        assert_eq!(
            serde_json::to_string(&nl).unwrap_or_default(),
            r#"{"type":"not_leader","seq":1}"#
        );
    }
}
