//! The format version of peer RPC bodies (`/raft/vote`, `/raft/append`, `/raft/snapshot-chunk`,
//! ...).
//!
//! Every peer request and every answer to one carries [`FORMAT_HEADER`] with the version of its
//! body. Version 1 is JSON (`Content-Type: application/json`, the openraft request types as
//! `serde_json` writes them): the only one so far. A request without the header comes from a
//! binary older than the header (issue 24), whose bodies are version 1 too, so a mixed ensemble
//! keeps committing during a rolling upgrade. A request or answer naming a version this binary
//! does not know is refused (`400 bad_request` with the versions it reads, or a network error on
//! the sender's side), never guessed at. A later body format would be sent to a peer only once
//! that peer's answers advertise it (docs/raft.md, "Format versions").

use axum::http::HeaderMap;

/// Header naming the format version of a peer RPC body.
pub const FORMAT_HEADER: &str = "x-varpulis-raft-format";
/// Version 1: JSON bodies.
pub const WIRE_JSON: u8 = 1;
/// [`WIRE_JSON`] as a header value.
pub const WIRE_JSON_STR: &str = "1";

/// Why a body's format version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("raft RPC body in format version {0:?}, which this node cannot read (it reads version {WIRE_JSON}, JSON); upgrade this node or the sender")]
pub struct UnknownWireFormat(pub String);

/// The format version named by `headers` (absent: an older peer's JSON, version 1).
pub fn check(headers: &HeaderMap) -> Result<u8, UnknownWireFormat> {
    let Some(value) = headers.get(FORMAT_HEADER) else {
        return Ok(WIRE_JSON);
    };
    let text = value.to_str().unwrap_or("(not text)").trim();
    match text.parse::<u8>() {
        Ok(WIRE_JSON) => Ok(WIRE_JSON),
        _ => Err(UnknownWireFormat(text.chars().take(32).collect())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn absent_or_json_is_read_anything_else_is_refused() {
        let mut h = HeaderMap::new();
        assert_eq!(check(&h), Ok(WIRE_JSON));
        h.insert(FORMAT_HEADER, HeaderValue::from_static("1"));
        assert_eq!(check(&h), Ok(WIRE_JSON));
        h.insert(FORMAT_HEADER, HeaderValue::from_static("2"));
        let err = check(&h).unwrap_err();
        assert!(err.to_string().contains("version \"2\""), "{err}");
        h.insert(FORMAT_HEADER, HeaderValue::from_static("json"));
        assert!(check(&h).is_err());
    }
}
