//! Checkpoint bytes: versioned, self-describing and checksummed.
//!
//! Layout: the ASCII line `VPCK <version> <sha256-hex of the body>\n`, then a JSON body:
//!
//! ```json
//! {"format": "varpulis-checkpoint", "version": 1, "program_sha256": "<hex>",
//!  "stats": {...}, "vars": [["count", {"i": 3}]], "operators": {}}
//! ```
//!
//! Values are tagged so that restore is exact: `null`, `true/false`, `{"i": int}`,
//! `{"f": f64 bits}`, `{"s": str}`, `{"a": [...]}`, `{"m": [[k, v], ...]}`, `{"t": ns}`,
//! `{"d": ns}`. `operators` is reserved for stateful operators (Tier 2 windows), keyed by
//! stream and operator index; readers ignore keys they do not know, and a newer `version` is
//! rejected. The checksum catches truncation and bit flips; the program hash catches a
//! checkpoint restored into a different program.

use crate::codec::{decode_value, encode_value};
use crate::error::RuntimeError;
use crate::stats::EngineStats;
use crate::value::Value;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};

/// Current format version.
pub const VERSION: u32 = 1;
const MAGIC: &str = "VPCK";

/// A decoded checkpoint.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub program_sha256: String,
    pub stats: EngineStats,
    pub vars: Vec<(String, Value)>,
    /// State of stateful operators, keyed `"<stream>#<operator index>"` (empty object if none).
    pub operators: Json,
}

/// SHA-256 of the program source, hex.
pub(crate) fn program_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

fn err(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Checkpoint(msg.into())
}

/// Encodes the state.
#[allow(dead_code)]
pub(crate) fn encode(
    program: &str,
    stats: &EngineStats,
    vars: &[(String, Value)],
) -> Result<Vec<u8>, RuntimeError> {
    encode_with_operators(program, stats, vars, json!({}))
}

/// Encodes the state including stateful operators (an object keyed by operator).
pub(crate) fn encode_with_operators(
    program: &str,
    stats: &EngineStats,
    vars: &[(String, Value)],
    operators: Json,
) -> Result<Vec<u8>, RuntimeError> {
    let body = json!({
        "format": "varpulis-checkpoint",
        "version": VERSION,
        "program_sha256": program,
        "stats": serde_json::to_value(stats).map_err(|e| err(e.to_string()))?,
        "vars": vars.iter().map(|(n, v)| json!([n, encode_value(v)])).collect::<Vec<_>>(),
        "operators": operators,
    });
    let body = serde_json::to_vec(&body).map_err(|e| err(e.to_string()))?;
    let mut out =
        format!("{MAGIC} {VERSION} {}\n", hex::encode(Sha256::digest(&body))).into_bytes();
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes and verifies checkpoint bytes.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded, RuntimeError> {
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| err("missing header"))?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| err("header is not text"))?;
    let mut parts = header.split(' ');
    if parts.next() != Some(MAGIC) {
        return Err(err("not a Varpulis checkpoint"));
    }
    let version: u32 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| err("bad version"))?;
    if version > VERSION {
        return Err(err(format!(
            "checkpoint version {version} is newer than supported {VERSION}"
        )));
    }
    let sum = parts.next().ok_or_else(|| err("missing checksum"))?;
    let body = &bytes[nl + 1..];
    if hex::encode(Sha256::digest(body)) != sum {
        return Err(err("checksum mismatch (corrupt or truncated)"));
    }
    let v: Json = serde_json::from_slice(body).map_err(|e| err(format!("invalid body: {e}")))?;
    if v.get("format").and_then(Json::as_str) != Some("varpulis-checkpoint") {
        return Err(err("unknown format"));
    }
    let program_sha256 = v
        .get("program_sha256")
        .and_then(Json::as_str)
        .ok_or_else(|| err("missing program hash"))?
        .to_string();
    let stats: EngineStats = serde_json::from_value(v.get("stats").cloned().unwrap_or(Json::Null))
        .map_err(|e| err(format!("bad stats: {e}")))?;
    let mut vars = Vec::new();
    for entry in v
        .get("vars")
        .and_then(Json::as_array)
        .ok_or_else(|| err("missing vars"))?
    {
        let pair = entry
            .as_array()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| err("bad var entry"))?;
        let name = pair[0].as_str().ok_or_else(|| err("bad var name"))?;
        vars.push((name.to_string(), decode_value(&pair[1])?));
    }
    let operators = v.get("operators").cloned().unwrap_or_else(|| json!({}));
    Ok(Decoded {
        program_sha256,
        stats,
        vars,
        operators,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn round_trip_preserves_types() {
        let v = Value::Map(Arc::new(vec![
            (Arc::from("n"), Value::Int(3)),
            (Arc::from("x"), Value::Float(0.1)),
            (
                Arc::from("l"),
                Value::Array(Arc::new(vec![
                    Value::str("a"),
                    Value::Null,
                    Value::Timestamp(5),
                ])),
            ),
        ]));
        let stats = EngineStats {
            events_in: 4,
            ..EngineStats::default()
        };
        let bytes = encode("abc", &stats, &[("state".into(), v.clone())]).unwrap();
        let d = decode(&bytes).unwrap();
        assert_eq!(d.program_sha256, "abc");
        assert_eq!(d.stats, stats);
        assert!(d.vars[0].1.vpl_eq(&v));
    }

    #[test]
    fn corruption_is_rejected() {
        let bytes = encode(
            "abc",
            &EngineStats::default(),
            &[("c".into(), Value::Int(7))],
        )
        .unwrap();
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert!(decode(&flipped).is_err());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"garbage").is_err());
        let newer = String::from_utf8(bytes)
            .unwrap()
            .replacen("VPCK 1", "VPCK 9", 1);
        assert!(decode(newer.as_bytes()).is_err());
    }
}
