//! The format version of peer RPC bodies (`/raft/vote`, `/raft/append`, `/raft/snapshot-chunk`,
//! ...) and how two nodes agree on one.
//!
//! Every peer request and every answer to one carries [`FORMAT_HEADER`] with the version of its
//! body:
//! - version 1: JSON (`Content-Type: application/json`, the openraft request types as
//!   `serde_json` writes them). Every route reads it. A request without the header comes from a
//!   binary older than the header (issue 24), whose bodies are version 1 too.
//! - version 2: the binary bodies of `rpc_codec` (`Content-Type:
//!   application/vnd.varpulis.raft`), on `/raft/append`, `/raft/vote` and `/raft/snapshot-chunk`
//!   only (the other peer routes are rare and stay JSON).
//!
//! **Negotiation.** A node that reads version 2 says so in every answer to a peer request:
//! [`ACCEPT_HEADER`] `: 1,2`. A sender starts every peer in version 1 and switches to version 2
//! only once that peer's answers carry the advertisement; an answer without it (an older binary,
//! or a node that was downgraded at the same address) switches it back to version 1. An answer is
//! always in the version of its request, so an older sender, which reads only version 1 answers,
//! never receives anything else. A mixed ensemble (older and newer binaries) therefore keeps
//! committing during a rolling upgrade. A request or answer naming a version this node does not
//! read is refused (`400 bad_request` with the versions it reads, or a network error on the
//! sender's side), never guessed at (docs/raft.md, "Format versions").

use axum::http::HeaderMap;

/// Header naming the format version of a peer RPC body.
pub const FORMAT_HEADER: &str = "x-varpulis-raft-format";
/// Answer header listing the body format versions the answering node reads (`1,2`).
pub const ACCEPT_HEADER: &str = "x-varpulis-raft-formats";
/// Version 1: JSON bodies.
pub const WIRE_JSON: u8 = 1;
/// Version 2: binary bodies (`rpc_codec`).
pub const WIRE_BINARY: u8 = 2;
/// The newest version this binary reads and sends.
pub const WIRE_NEWEST: u8 = WIRE_BINARY;
/// [`WIRE_JSON`] as a header value.
pub const WIRE_JSON_STR: &str = "1";
/// [`WIRE_BINARY`] as a header value.
pub const WIRE_BINARY_STR: &str = "2";
/// The [`ACCEPT_HEADER`] value of a node that reads versions 1 and 2.
pub const ACCEPT_BINARY: &str = "1,2";
/// Content type of a version-2 body.
pub const CONTENT_TYPE_BINARY: &str = "application/vnd.varpulis.raft";

/// Why a body's format version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("raft RPC body in format version {got:?}, which this node cannot read (it reads {}); upgrade this node or the sender", reads(*.newest))]
pub struct UnknownWireFormat {
    /// The version named (at most 32 characters of it).
    pub got: String,
    /// The newest version this node reads.
    pub newest: u8,
}

fn reads(newest: u8) -> &'static str {
    if newest >= WIRE_BINARY {
        "versions 1 (JSON) and 2 (binary)"
    } else {
        "version 1, JSON"
    }
}

/// The format version named by `headers` (absent: an older peer's JSON, version 1), refused
/// when it is above `newest` (the newest version this node reads) or not a version at all.
pub fn check(headers: &HeaderMap, newest: u8) -> Result<u8, UnknownWireFormat> {
    let Some(value) = headers.get(FORMAT_HEADER) else {
        return Ok(WIRE_JSON);
    };
    let text = value.to_str().unwrap_or("(not text)").trim();
    match text.parse::<u8>() {
        Ok(v) if (WIRE_JSON..=newest.min(WIRE_NEWEST)).contains(&v) => Ok(v),
        _ => Err(UnknownWireFormat {
            got: text.chars().take(32).collect(),
            newest,
        }),
    }
}

/// Whether an answer's headers advertise version 2 ([`ACCEPT_HEADER`] lists `2`).
pub fn advertises_binary(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| list.split(',').any(|v| v.trim() == WIRE_BINARY_STR))
}

/// The header value naming `version`.
pub fn version_str(version: u8) -> &'static str {
    if version == WIRE_BINARY {
        WIRE_BINARY_STR
    } else {
        WIRE_JSON_STR
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn absent_json_or_binary_is_read_anything_else_is_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(check(&h, WIRE_NEWEST), Ok(WIRE_JSON));
        h.insert(FORMAT_HEADER, HeaderValue::from_static("1"));
        assert_eq!(check(&h, WIRE_NEWEST), Ok(WIRE_JSON));
        h.insert(FORMAT_HEADER, HeaderValue::from_static("2"));
        assert_eq!(check(&h, WIRE_NEWEST), Ok(WIRE_BINARY));
        // A node pinned to JSON (what an older binary does) refuses version 2.
        let err = check(&h, WIRE_JSON).unwrap_err();
        assert!(err.to_string().contains("version \"2\""), "{err}");
        assert!(err.to_string().contains("reads version 1, JSON"), "{err}");
        h.insert(FORMAT_HEADER, HeaderValue::from_static("3"));
        let err = check(&h, WIRE_NEWEST).unwrap_err();
        assert!(err.to_string().contains("version \"3\""), "{err}");
        assert!(err.to_string().contains("1 (JSON) and 2 (binary)"), "{err}");
        h.insert(FORMAT_HEADER, HeaderValue::from_static("json"));
        assert!(check(&h, WIRE_NEWEST).is_err());
        h.insert(FORMAT_HEADER, HeaderValue::from_static("0"));
        assert!(check(&h, WIRE_NEWEST).is_err());
    }

    #[test]
    fn only_an_answer_listing_version_two_advertises_it() {
        let mut h = HeaderMap::new();
        assert!(!advertises_binary(&h));
        h.insert(ACCEPT_HEADER, HeaderValue::from_static("1"));
        assert!(!advertises_binary(&h));
        h.insert(ACCEPT_HEADER, HeaderValue::from_static(ACCEPT_BINARY));
        assert!(advertises_binary(&h));
        h.insert(ACCEPT_HEADER, HeaderValue::from_static("1, 2, 3"));
        assert!(advertises_binary(&h));
        h.insert(ACCEPT_HEADER, HeaderValue::from_static("12"));
        assert!(!advertises_binary(&h));
    }
}
