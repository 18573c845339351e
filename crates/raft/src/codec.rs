//! The storage format of the Raft records kept in sled: a format version byte, then a compact
//! binary layout.
//!
//! Versions:
//! - **1** (implicit): the JSON written before issue 24 (`serde_json` of the openraft types, no
//!   version byte). Still read, never written: a JSON value always starts with one of
//!   `{ [ " n t f -` or a digit.
//! - **2** ([`FORMAT_BINARY`]): the first byte is `2`, then fixed little-endian fields:
//!   - log entry: kind (`0` blank, `1` command, `2` membership), term, leader node id, index (3 ×
//!     u64), then the body: nothing, the `Command` as JSON, or the `Membership` as JSON;
//!   - vote: term, node id (u64 each), committed (u8);
//!   - log id (`last_purged`): term, node id, index; `committed`: a presence byte, then a log id;
//!   - string (`cluster_id`): UTF-8 bytes; snapshot meta: its JSON; snapshot data: the JSON
//!     state bytes.
//! - **3** ([`FORMAT_SNAPSHOT_FILE`]), snapshot `data` record only: the state is in a file of
//!   `<raft dir>/snapshots/` (module `snapshot_dir`) and the record names it: data length (u64),
//!   SHA-256 of the data (32 bytes), then the file name (UTF-8). A binary that predates version 3
//!   refuses the record as a newer format (open fails with a clear error) instead of taking the
//!   reference for the state. Records of other kinds stay in version 2.
//!
//! A record whose first byte is neither JSON nor a known version is refused with
//! [`CodecError::UnknownVersion`]: a binary never guesses at a layout it does not know. Versions
//! are kept below `0x20` so they can never be mistaken for the first byte of a JSON value.
//!
//! Why not bincode or postcard for the command: the commands (`varpulis_cluster::Command`, the
//! `varpulis_api` specs inside) use `skip_serializing_if` and carry `serde_json::Value` connector
//! parameters, which formats that are not self-describing cannot read back. The command body
//! therefore stays JSON inside the binary envelope (it is also what the peer RPCs carry), and the
//! fixed-size parts (log ids, votes, entry kinds) are written by hand: no new dependency, no
//! ambiguity, and the layout is spelled out here.

use openraft::{CommittedLeaderId, EntryPayload, Membership};

use crate::types::{BasicNode, Entry, LogId, NodeId, SnapshotMeta, Vote};

/// The format version this binary writes.
pub const FORMAT_BINARY: u8 = 2;
/// The legacy JSON format (no version byte in the records).
pub const FORMAT_JSON: u8 = 1;
/// The snapshot `data` record that names a data file instead of holding the state.
pub const FORMAT_SNAPSHOT_FILE: u8 = 3;

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
/// Bytes of an entry record before its body: version, kind, term, node id, index.
pub const ENTRY_HEADER_LEN: usize = 2 + 3 * 8;

/// Why a stored record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The record says it is in a format version this binary does not know.
    #[error(
        "raft storage record in format version {0}, which this binary cannot read (it reads \
         versions {FORMAT_JSON} (JSON) and {FORMAT_BINARY}); was the data dir written by a newer \
         varpulis? Refusing to guess"
    )]
    UnknownVersion(u8),
    /// The record is empty.
    #[error("empty raft record")]
    Empty,
    /// The record ends before its layout does.
    #[error("truncated raft record or body ({0})")]
    Truncated(&'static str),
    /// A field holds a value the layout does not allow.
    #[error("malformed raft record or body: {0}")]
    Malformed(String),
    /// The JSON part (a version-1 record, or a JSON body) does not decode.
    #[error("raft record or body: {0}")]
    Json(#[from] serde_json::Error),
}

/// The format of one stored record, told by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Version 1: JSON.
    Json,
    /// Version 2: binary.
    Binary,
}

/// The format of `bytes` (an error for an empty record or an unknown version).
pub fn format_of(bytes: &[u8]) -> Result<Format, CodecError> {
    match bytes.first() {
        None => Err(CodecError::Empty),
        Some(&FORMAT_BINARY) => Ok(Format::Binary),
        Some(b) if starts_json(*b) => Ok(Format::Json),
        Some(b) => Err(CodecError::UnknownVersion(*b)),
    }
}

fn starts_json(b: u8) -> bool {
    matches!(
        b,
        b'{' | b'[' | b'"' | b'n' | b't' | b'f' | b'-' | b'0'..=b'9'
    )
}

/// Reads the fixed fields of a version-2 record (and of the binary peer RPC bodies,
/// `rpc_codec`).
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader after the version byte.
    fn after_version(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 1 }
    }

    /// A reader from the first byte.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// The position of the next byte to read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let end = self.pos.checked_add(4).ok_or(CodecError::Truncated(what))?;
        let raw = self
            .bytes
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(what))?;
        let mut buf = [0u8; 4];
        buf.copy_from_slice(raw);
        self.pos = end;
        Ok(u32::from_le_bytes(buf))
    }

    /// The next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::Truncated(what))?;
        let raw = self
            .bytes
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(what))?;
        self.pos = end;
        Ok(raw)
    }

    /// A byte that must be 0 or 1.
    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(CodecError::Malformed(format!("{what} {other}"))),
        }
    }

    /// A vote: term, node id, committed.
    pub(crate) fn vote(&mut self) -> Result<Vote, CodecError> {
        let term = self.u64("vote term")?;
        let node = self.u64("vote node")?;
        Ok(if self.bool("vote committed")? {
            Vote::new_committed(term, node)
        } else {
            Vote::new(term, node)
        })
    }

    /// A presence byte, then a log id when present.
    pub(crate) fn opt_log_id(&mut self) -> Result<Option<LogId>, CodecError> {
        if self.bool("presence byte")? {
            Ok(Some(self.log_id()?))
        } else {
            Ok(None)
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(CodecError::Truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let end = self.pos.checked_add(8).ok_or(CodecError::Truncated(what))?;
        let raw = self
            .bytes
            .get(self.pos..end)
            .ok_or(CodecError::Truncated(what))?;
        let mut buf = [0u8; 8];
        buf.copy_from_slice(raw);
        self.pos = end;
        Ok(u64::from_le_bytes(buf))
    }

    pub(crate) fn log_id(&mut self) -> Result<LogId, CodecError> {
        let term = self.u64("log id term")?;
        let node = self.u64("log id node")?;
        let index = self.u64("log id index")?;
        Ok(LogId::new(CommittedLeaderId::new(term, node), index))
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn end(&self, what: &'static str) -> Result<(), CodecError> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(CodecError::Malformed(format!(
                "{} trailing bytes after the {what}",
                self.bytes.len() - self.pos
            )))
        }
    }
}

pub(crate) fn put_log_id(out: &mut Vec<u8>, id: &LogId) {
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
}

/// Writes a vote's fields: term, node id, committed (u8).
pub(crate) fn put_vote(out: &mut Vec<u8>, vote: &Vote) {
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
}

/// Writes a presence byte, then the log id when there is one.
pub(crate) fn put_opt_log_id(out: &mut Vec<u8>, id: &Option<LogId>) {
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(out, id);
        }
    }
}

/// Encodes a log entry (version 2).
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let (kind, body) = match &entry.payload {
        EntryPayload::Blank => (KIND_BLANK, None),
        EntryPayload::Normal(cmd) => (KIND_NORMAL, Some(serde_json::to_vec(cmd)?)),
        EntryPayload::Membership(m) => (KIND_MEMBERSHIP, Some(serde_json::to_vec(m)?)),
    };
    let body_len = body.as_ref().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(ENTRY_HEADER_LEN + body_len);
    out.push(FORMAT_BINARY);
    out.push(kind);
    put_log_id(&mut out, &entry.log_id);
    if let Some(body) = body {
        out.extend_from_slice(&body);
    }
    Ok(out)
}

/// Decodes a log entry of either version.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    match format_of(bytes)? {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::Binary => {
            let mut r = Reader::after_version(bytes);
            let kind = r.u8("entry kind")?;
            let log_id = r.log_id()?;
            let payload = match kind {
                KIND_BLANK => {
                    r.end("blank entry")?;
                    EntryPayload::Blank
                }
                KIND_NORMAL => EntryPayload::Normal(serde_json::from_slice(r.rest())?),
                KIND_MEMBERSHIP => {
                    let m: Membership<NodeId, BasicNode> = serde_json::from_slice(r.rest())?;
                    EntryPayload::Membership(m)
                }
                other => {
                    return Err(CodecError::Malformed(format!("entry kind {other}")));
                }
            };
            Ok(Entry { log_id, payload })
        }
    }
}

/// Encodes a vote (version 2).
pub fn encode_vote(vote: &Vote) -> Vec<u8> {
    let mut out = Vec::with_capacity(18);
    out.push(FORMAT_BINARY);
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
    out
}

/// Decodes a vote of either version.
pub fn decode_vote(bytes: &[u8]) -> Result<Vote, CodecError> {
    match format_of(bytes)? {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::Binary => {
            let mut r = Reader::after_version(bytes);
            let term = r.u64("vote term")?;
            let node = r.u64("vote node")?;
            let committed = match r.u8("vote committed")? {
                0 => false,
                1 => true,
                other => return Err(CodecError::Malformed(format!("vote committed {other}"))),
            };
            r.end("vote")?;
            Ok(if committed {
                Vote::new_committed(term, node)
            } else {
                Vote::new(term, node)
            })
        }
    }
}

/// Encodes a log id (version 2).
pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(FORMAT_BINARY);
    put_log_id(&mut out, id);
    out
}

/// Decodes a log id of either version.
pub fn decode_log_id(bytes: &[u8]) -> Result<LogId, CodecError> {
    match format_of(bytes)? {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::Binary => {
            let mut r = Reader::after_version(bytes);
            let id = r.log_id()?;
            r.end("log id")?;
            Ok(id)
        }
    }
}

/// Encodes an optional log id (the commit point; version 2).
pub fn encode_opt_log_id(id: &Option<LogId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(26);
    out.push(FORMAT_BINARY);
    match id {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            put_log_id(&mut out, id);
        }
    }
    out
}

/// Decodes an optional log id of either version.
pub fn decode_opt_log_id(bytes: &[u8]) -> Result<Option<LogId>, CodecError> {
    match format_of(bytes)? {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::Binary => {
            let mut r = Reader::after_version(bytes);
            let id = match r.u8("presence")? {
                0 => None,
                1 => Some(r.log_id()?),
                other => return Err(CodecError::Malformed(format!("presence byte {other}"))),
            };
            r.end("optional log id")?;
            Ok(id)
        }
    }
}

/// Encodes a string (version 2).
pub fn encode_str(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + s.len());
    out.push(FORMAT_BINARY);
    out.extend_from_slice(s.as_bytes());
    out
}

/// Decodes a string of either version.
pub fn decode_str(bytes: &[u8]) -> Result<String, CodecError> {
    match format_of(bytes)? {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::Binary => String::from_utf8(Reader::after_version(bytes).rest().to_vec())
            .map_err(|e| CodecError::Malformed(format!("string: {e}"))),
    }
}

/// Encodes snapshot metadata (version 2: the version byte, then its JSON).
pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(meta)?;
    let mut out = Vec::with_capacity(1 + json.len());
    out.push(FORMAT_BINARY);
    out.extend_from_slice(&json);
    Ok(out)
}

/// Decodes snapshot metadata of either version.
pub fn decode_snapshot_meta(bytes: &[u8]) -> Result<SnapshotMeta, CodecError> {
    match format_of(bytes)? {
        Format::Json => Ok(serde_json::from_slice(bytes)?),
        Format::Binary => Ok(serde_json::from_slice(Reader::after_version(bytes).rest())?),
    }
}

/// Encodes stored snapshot data (version 2: the version byte, then the JSON state).
pub fn encode_snapshot_data(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + json.len());
    out.push(FORMAT_BINARY);
    out.extend_from_slice(json);
    out
}

/// The JSON state inside stored snapshot data of either version.
pub fn snapshot_data_json(bytes: &[u8]) -> Result<&[u8], CodecError> {
    match format_of(bytes)? {
        Format::Json => Ok(bytes),
        Format::Binary => Ok(Reader::after_version(bytes).rest()),
    }
}

/// Where a stored snapshot's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotData<'a> {
    /// In the record itself (versions 1 and 2): the JSON state.
    Inline(&'a [u8]),
    /// In a data file (version 3).
    File(DataFileRef),
}

/// A snapshot data file as the `data` record names it: enough to tell a missing, torn or
/// altered file from the one that was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFileRef {
    /// The file name inside `<raft dir>/snapshots/` (no directory part).
    pub name: String,
    /// The data length in bytes.
    pub len: u64,
    /// The SHA-256 of the data.
    pub sha256: [u8; 32],
}

/// Encodes a snapshot `data` record naming a data file (version 3).
pub fn encode_snapshot_data_ref(file: &DataFileRef) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 32 + file.name.len());
    out.push(FORMAT_SNAPSHOT_FILE);
    out.extend_from_slice(&file.len.to_le_bytes());
    out.extend_from_slice(&file.sha256);
    out.extend_from_slice(file.name.as_bytes());
    out
}

/// Decodes a snapshot `data` record of any version: the state itself, or the file holding it.
pub fn decode_snapshot_data(bytes: &[u8]) -> Result<SnapshotData<'_>, CodecError> {
    if bytes.first() != Some(&FORMAT_SNAPSHOT_FILE) {
        return snapshot_data_json(bytes).map(SnapshotData::Inline);
    }
    let mut r = Reader::after_version(bytes);
    let len = r.u64("snapshot data length")?;
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(r.take(32, "snapshot data checksum")?);
    let name = std::str::from_utf8(r.rest())
        .map_err(|e| CodecError::Malformed(format!("snapshot data file name: {e}")))?;
    if name.is_empty() {
        return Err(CodecError::Truncated("snapshot data file name"));
    }
    Ok(SnapshotData::File(DataFileRef {
        name: name.to_owned(),
        len,
        sha256,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use varpulis_cluster::Command;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn entries() -> Vec<Entry> {
        let membership = Membership::new(
            vec![BTreeSet::from([1, 2])],
            BTreeMap::from([
                (1, BasicNode::new("http://127.0.0.1:1")),
                (2, BasicNode::new("http://127.0.0.1:2")),
            ]),
        );
        vec![
            Entry {
                log_id: log_id(1, 1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(u64::MAX, 3, u64::MAX - 1),
                payload: EntryPayload::Normal(Command::DeregisterWorker {
                    worker_id: "w\"1".into(),
                }),
            },
            Entry {
                log_id: log_id(2, 2, 7),
                payload: EntryPayload::Membership(membership),
            },
        ]
    }

    #[test]
    fn entries_round_trip_and_read_json_too() {
        for entry in entries() {
            let bin = encode_entry(&entry).unwrap();
            assert_eq!(bin[0], FORMAT_BINARY);
            assert_eq!(decode_entry(&bin).unwrap(), entry);
            let json = serde_json::to_vec(&entry).unwrap();
            assert!(bin.len() < json.len(), "{} < {}", bin.len(), json.len());
            assert_eq!(decode_entry(&json).unwrap(), entry);
        }
    }

    #[test]
    fn metadata_round_trips_in_both_versions() {
        for vote in [Vote::new(3, 2), Vote::new_committed(9, 1)] {
            assert_eq!(decode_vote(&encode_vote(&vote)).unwrap(), vote);
            assert_eq!(
                decode_vote(&serde_json::to_vec(&vote).unwrap()).unwrap(),
                vote
            );
        }
        let id = log_id(4, 1, 40);
        assert_eq!(decode_log_id(&encode_log_id(&id)).unwrap(), id);
        assert_eq!(
            decode_log_id(&serde_json::to_vec(&id).unwrap()).unwrap(),
            id
        );
        for c in [None, Some(id)] {
            assert_eq!(decode_opt_log_id(&encode_opt_log_id(&c)).unwrap(), c);
            assert_eq!(
                decode_opt_log_id(&serde_json::to_vec(&c).unwrap()).unwrap(),
                c
            );
        }
        assert_eq!(decode_str(&encode_str("abc")).unwrap(), "abc");
        assert_eq!(decode_str(b"\"abc\"").unwrap(), "abc");
        assert_eq!(
            snapshot_data_json(&encode_snapshot_data(b"{}")).unwrap(),
            b"{}"
        );
        assert_eq!(snapshot_data_json(b"{}").unwrap(), b"{}");
    }

    #[test]
    fn a_snapshot_data_record_holds_the_state_or_names_its_file() {
        let file = DataFileRef {
            name: "snapshot-7.json".into(),
            len: 1234,
            sha256: [9; 32],
        };
        let record = encode_snapshot_data_ref(&file);
        assert_eq!(
            decode_snapshot_data(&record).unwrap(),
            SnapshotData::File(file)
        );
        assert_eq!(
            decode_snapshot_data(&encode_snapshot_data(b"{}")).unwrap(),
            SnapshotData::Inline(b"{}")
        );
        assert_eq!(
            decode_snapshot_data(b"{}").unwrap(),
            SnapshotData::Inline(b"{}")
        );
        // A reference cut short is refused, not read as a shorter name or a state.
        assert!(decode_snapshot_data(&record[..20]).is_err());
        assert!(decode_snapshot_data(&record[..41]).is_err());
        // What a binary that predates version 3 does with it: refuse it as a newer format.
        let err = snapshot_data_json(&record).unwrap_err();
        assert!(matches!(err, CodecError::UnknownVersion(3)), "{err}");
    }

    #[test]
    fn unknown_versions_and_damage_are_refused_not_guessed() {
        let mut future = encode_entry(&entries()[1]).unwrap();
        future[0] = 3;
        let err = decode_entry(&future).unwrap_err();
        assert!(matches!(err, CodecError::UnknownVersion(3)), "{err}");
        assert!(err.to_string().contains("format version 3"), "{err}");
        assert!(matches!(
            decode_vote(&[0x1f, 0, 0]),
            Err(CodecError::UnknownVersion(0x1f))
        ));
        assert!(matches!(decode_vote(&[]), Err(CodecError::Empty)));
        let bin = encode_entry(&entries()[1]).unwrap();
        assert!(matches!(
            decode_entry(&bin[..10]),
            Err(CodecError::Truncated(_))
        ));
        let mut bad_kind = bin.clone();
        bad_kind[1] = 9;
        assert!(matches!(
            decode_entry(&bad_kind),
            Err(CodecError::Malformed(_))
        ));
        let mut long_vote = encode_vote(&Vote::new(1, 1));
        long_vote.push(0);
        assert!(decode_vote(&long_vote).is_err());
    }
}
