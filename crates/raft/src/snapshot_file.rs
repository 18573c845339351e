//! The backup file: a self-describing, checksummed copy of the replicated state
//! (`GET /api/v1/cluster/snapshot`, `varpulis cluster snapshot save`, `varpulis snapshot
//! status|restore`).
//!
//! Layout (all text, UTF-8):
//!
//! ```text
//! VARPULIS-SNAPSHOT\n                  magic line
//! {header JSON}\n                       one line: SnapshotHeader (format version, cluster id,
//!                                        applied index, state hash, data length, counts, ...)
//! <data>                                exactly `header.data_bytes` bytes: the JSON ClusterState
//! \n{"checksum":"sha256:<hex>"}\n       trailer: SHA-256 of every byte before this line
//! ```
//!
//! Verification ([`decode`]) checks, in order: the magic, the header, the format version, the
//! lengths, the trailer checksum (any flipped or missing byte), then decodes the state and
//! recomputes its hash against `header.state_hash` and its counts against `header.counts`. The
//! data is the state's canonical serialization, so its SHA-256 *is* the state hash that
//! `GET /raft/metrics` reports at the same applied index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use varpulis_cluster::ClusterState;

/// First line of every backup file.
pub const MAGIC: &str = "VARPULIS-SNAPSHOT";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Media type of the file on the wire.
pub const CONTENT_TYPE: &str = "application/vnd.varpulis.snapshot";
/// Longest header line accepted (a header is well under a kilobyte plus the membership).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Why a backup file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// Not a Varpulis snapshot, truncated, or altered (the message says which check failed).
    #[error("corrupt snapshot file: {0}")]
    Corrupt(String),
    /// Written by a newer format this build does not know.
    #[error("unsupported snapshot format version {0} (this build reads version 1)")]
    UnsupportedVersion(u32),
    /// The state could not be serialized (should not happen: string keys only).
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
}

/// Counts of what the state holds (printed by `snapshot status`, checked on decode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCounts {
    /// Registered workers.
    pub workers: usize,
    /// Pipeline groups.
    pub pipeline_groups: usize,
    /// Named connectors.
    pub connectors: usize,
    /// Migrations (active and finished ones still kept).
    pub migrations: usize,
    /// Top-level commands the state machine applied since the cluster began.
    pub commands_applied: u64,
}

impl SnapshotCounts {
    /// The counts of `state`.
    pub fn of(state: &ClusterState) -> Self {
        Self {
            workers: state.worker_count(),
            pipeline_groups: state.group_count(),
            connectors: state.connector_count(),
            migrations: state.migrations().len(),
            commands_applied: state.applied(),
        }
    }
}

/// The membership of the cluster the snapshot was taken from (informational: a restore sets
/// the new cluster's membership from `--raft-peers`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMembership {
    /// Voter ids.
    pub voters: Vec<u64>,
    /// Learner ids.
    pub learners: Vec<u64>,
    /// Node id -> base URL.
    pub nodes: BTreeMap<u64, String>,
}

/// The header line of a backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Id of the cluster the state comes from ([`crate::cluster_id`]).
    pub cluster_id: String,
    /// Raft log index of the last command reflected in the state (`None`: nothing applied).
    pub applied_index: Option<u64>,
    /// Hex SHA-256 of the state (what `GET /raft/metrics` reports as `state_hash`).
    pub state_hash: String,
    /// Length of the data section in bytes.
    pub data_bytes: u64,
    /// What the state holds.
    pub counts: SnapshotCounts,
    /// Membership of the source cluster when the snapshot was taken.
    pub source_membership: SourceMembership,
    /// Node that served the snapshot.
    pub source_node_id: u64,
    /// Version of the binary that wrote it.
    pub varpulis_version: String,
    /// Wall-clock time of the capture, milliseconds since the Unix epoch (informational).
    pub created_at_unix_ms: u64,
}

/// A verified backup file: its header and the decoded state, plus the raw data bytes
/// (what a restore stores, byte for byte).
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    /// The header.
    pub header: SnapshotHeader,
    /// The decoded state.
    pub state: ClusterState,
    /// The data section (the canonical JSON of `state`).
    pub data: Vec<u8>,
}

/// What the capturing node knows besides the state.
#[derive(Debug, Clone)]
pub struct CaptureInfo {
    /// Cluster id of the node.
    pub cluster_id: String,
    /// Applied index the state reflects.
    pub applied_index: Option<u64>,
    /// Current membership.
    pub membership: SourceMembership,
    /// The serving node.
    pub node_id: u64,
}

/// Serializes `state` into a complete backup file.
pub fn encode(state: &ClusterState, info: CaptureInfo) -> Result<Vec<u8>, SnapshotFileError> {
    let data = serde_json::to_vec(state).map_err(|e| SnapshotFileError::Encode(e.to_string()))?;
    let header = SnapshotHeader {
        format_version: FORMAT_VERSION,
        cluster_id: info.cluster_id,
        applied_index: info.applied_index,
        state_hash: hex::encode(Sha256::digest(&data)),
        data_bytes: data.len() as u64,
        counts: SnapshotCounts::of(state),
        source_membership: info.membership,
        source_node_id: info.node_id,
        varpulis_version: varpulis_api::VERSION.to_string(),
        created_at_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    let header =
        serde_json::to_vec(&header).map_err(|e| SnapshotFileError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(MAGIC.len() + header.len() + data.len() + 96);
    out.extend_from_slice(MAGIC.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&header);
    out.push(b'\n');
    out.extend_from_slice(&data);
    let checksum = hex::encode(Sha256::digest(&out));
    out.extend_from_slice(format!("\n{{\"checksum\":\"sha256:{checksum}\"}}\n").as_bytes());
    Ok(out)
}

#[derive(Deserialize)]
struct Trailer {
    checksum: String,
}

fn corrupt(what: impl Into<String>) -> SnapshotFileError {
    SnapshotFileError::Corrupt(what.into())
}

/// Verifies a whole backup file and decodes it; see the module docs for the checks.
pub fn decode(bytes: &[u8]) -> Result<SnapshotFile, SnapshotFileError> {
    let magic_end = MAGIC.len();
    if bytes.len() <= magic_end || &bytes[..magic_end] != MAGIC.as_bytes() {
        return Err(corrupt("not a Varpulis snapshot (magic line missing)"));
    }
    if bytes[magic_end] != b'\n' {
        return Err(corrupt("not a Varpulis snapshot (magic line missing)"));
    }
    let header_start = magic_end + 1;
    let header_len = bytes[header_start..]
        .iter()
        .take(MAX_HEADER_BYTES)
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("header line not terminated"))?;
    let header_end = header_start + header_len;
    // The version first, so a newer file is reported as such rather than as corrupt.
    let raw: serde_json::Value = serde_json::from_slice(&bytes[header_start..header_end])
        .map_err(|e| corrupt(format!("header is not JSON: {e}")))?;
    let version = raw
        .get("format_version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| corrupt("header has no format_version"))?;
    if version != u64::from(FORMAT_VERSION) {
        return Err(SnapshotFileError::UnsupportedVersion(
            u32::try_from(version).unwrap_or(u32::MAX),
        ));
    }
    let header: SnapshotHeader =
        serde_json::from_value(raw).map_err(|e| corrupt(format!("bad header: {e}")))?;
    let data_start = header_end + 1;
    let data_len = usize::try_from(header.data_bytes)
        .map_err(|_| corrupt("data length does not fit in memory"))?;
    let data_end = data_start
        .checked_add(data_len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| corrupt("file is shorter than its header says (truncated?)"))?;
    let rest = &bytes[data_end..];
    let trailer = rest
        .strip_prefix(b"\n")
        .and_then(|t| t.strip_suffix(b"\n"))
        .ok_or_else(|| corrupt("checksum line missing (truncated?)"))?;
    let trailer: Trailer =
        serde_json::from_slice(trailer).map_err(|e| corrupt(format!("bad checksum line: {e}")))?;
    let expected = hex::encode(Sha256::digest(&bytes[..data_end]));
    match trailer.checksum.strip_prefix("sha256:") {
        Some(sum) if sum == expected => {}
        _ => {
            return Err(corrupt(
                "checksum mismatch: the file was altered or damaged",
            ))
        }
    }
    let data = bytes[data_start..data_end].to_vec();
    let state: ClusterState = serde_json::from_slice(&data)
        .map_err(|e| corrupt(format!("state does not decode: {e}")))?;
    let hash = state.state_hash();
    if hash != header.state_hash {
        return Err(corrupt(format!(
            "state hash {hash} differs from the header's {}",
            header.state_hash
        )));
    }
    if SnapshotCounts::of(&state) != header.counts {
        return Err(corrupt("the state's counts differ from the header's"));
    }
    Ok(SnapshotFile {
        header,
        state,
        data,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use varpulis_api::cluster::ConnectorSpec;
    use varpulis_cluster::Command;

    fn sample_state() -> ClusterState {
        let mut state = ClusterState::default();
        for i in 0..3 {
            let cmd = Command::CreateConnector {
                spec: ConnectorSpec {
                    name: format!("bus{i}"),
                    connector_type: "mqtt".into(),
                    params: serde_json::Map::from_iter([("host".to_string(), "localhost".into())]),
                    description: None,
                },
            };
            assert!(state.apply(&cmd).is_ok());
        }
        state
    }

    fn info() -> CaptureInfo {
        CaptureInfo {
            cluster_id: "abc".into(),
            applied_index: Some(42),
            membership: SourceMembership::default(),
            node_id: 1,
        }
    }

    #[test]
    fn a_file_round_trips_with_the_state_hash() {
        let state = sample_state();
        let bytes = encode(&state, info()).unwrap();
        let file = decode(&bytes).unwrap();
        assert_eq!(file.state, state);
        assert_eq!(file.header.state_hash, state.state_hash());
        assert_eq!(file.header.applied_index, Some(42));
        assert_eq!(file.header.counts.connectors, 3);
    }

    #[test]
    fn any_flipped_byte_or_truncation_is_refused() {
        let bytes = encode(&sample_state(), info()).unwrap();
        for i in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
        }
        for len in [0, 5, 30, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                decode(&bytes[..len]).is_err(),
                "truncation at {len} accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"x");
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn a_newer_format_is_named_as_such() {
        let bytes = encode(&sample_state(), info()).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let newer = text.replacen("\"format_version\":1", "\"format_version\":9", 1);
        assert!(matches!(
            decode(newer.as_bytes()),
            Err(SnapshotFileError::UnsupportedVersion(9))
        ));
    }
}
