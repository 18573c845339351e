//! Peer RPC bodies in wire format version 2 ([`crate::wire`]): binary, little-endian, written
//! by hand like the storage records of [`crate::codec`], whose entry records they carry as is.
//!
//! Fields: a vote is term (u64), node id (u64), committed (u8 0/1); a log id is term, node id,
//! index (u64 each); an optional log id is a presence byte (0/1) then the log id.
//!
//! | body | layout |
//! |---|---|
//! | AppendEntries request | vote, `prev_log_id` (optional), `leader_commit` (optional), entry count (u32), then per entry its length (u32) and its storage record ([`crate::codec::encode_entry`]: `0x02`, kind, log id, the command's JSON) |
//! | AppendEntries answer | tag: `0` success, `1` partial success + optional log id, `2` conflict, `3` higher vote + vote, `0xEE` remote Raft error + its JSON |
//! | Vote request | vote, `last_log_id` (optional) |
//! | Vote answer | tag `0`, vote, granted (u8), `last_log_id` (optional); or `0xEE` + the error's JSON |
//! | Snapshot chunk | vote, offset (u64), done (u8), meta length (u32), meta JSON, then the chunk's bytes (the rest of the body) |
//! | Snapshot chunk answer | tag `0` + vote, or `0xEE` + the error's JSON |
//!
//! Entries travel as their storage records: the leader sends the bytes it stored (no second
//! encoding, [`crate::entry_cache::EntryCache::record`]) and a follower can store the bytes it
//! received ([`crate::log_store::Received`]); the command stays JSON inside (why: docs/raft.md,
//! "Format versions"). Remote errors are rare and keep openraft's JSON. A body that ends early,
//! has bytes left over, or holds an impossible value is refused ([`CodecError`]), never guessed
//! at; counts are checked against the bytes present before anything is allocated for them.

use axum::body::Bytes;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::codec::{self, put_opt_log_id, put_vote, CodecError, Reader};
use crate::types::{Entry, LogId, NodeId, TypeConfig};

/// The answer to an AppendEntries, as openraft's `Raft::append_entries` returns it.
pub type AppendAnswer = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
/// The answer to a vote request.
pub type VoteAnswer = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
/// The answer to a snapshot chunk.
pub type ChunkAnswer =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

const TAG_OK: u8 = 0;
const TAG_PARTIAL: u8 = 1;
const TAG_CONFLICT: u8 = 2;
const TAG_HIGHER_VOTE: u8 = 3;
const TAG_REMOTE_ERROR: u8 = 0xEE;

/// Bytes of a vote on the wire.
const VOTE_LEN: usize = 17;

/// An AppendEntries decoded from a version-2 body, with the storage record of each entry.
#[derive(Debug)]
pub struct DecodedAppend {
    /// The request, for openraft.
    pub request: AppendEntriesRequest<TypeConfig>,
    /// The storage record each entry arrived as (a slice of the body: no copy), in order.
    pub records: Vec<(LogId, Bytes)>,
}

/// Encodes an AppendEntries request; `stored` gives the storage record of an entry when one is
/// at hand (the leader's entry cache), otherwise the entry is encoded here.
pub fn encode_append(
    req: &AppendEntriesRequest<TypeConfig>,
    stored: impl Fn(&Entry) -> Option<Bytes>,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut records = Vec::with_capacity(req.entries.len());
    let mut total = 0usize;
    for entry in &req.entries {
        let record = match stored(entry) {
            Some(bytes) => bytes,
            None => Bytes::from(codec::encode_entry(entry)?),
        };
        total = total.saturating_add(4 + record.len());
        records.push(record);
    }
    let mut out = Vec::with_capacity(VOTE_LEN + 2 * 25 + 4 + total);
    put_vote(&mut out, &req.vote);
    put_opt_log_id(&mut out, &req.prev_log_id);
    put_opt_log_id(&mut out, &req.leader_commit);
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for record in &records {
        out.extend_from_slice(&(record.len() as u32).to_le_bytes());
        out.extend_from_slice(record);
    }
    Ok(out)
}

/// Decodes an AppendEntries request (the entries' records are slices of `body`).
pub fn decode_append(body: &Bytes) -> Result<DecodedAppend, CodecError> {
    let mut r = Reader::new(body);
    let vote = r.vote()?;
    let prev_log_id = r.opt_log_id()?;
    let leader_commit = r.opt_log_id()?;
    let count = r.u32("entry count")? as usize;
    // Each entry takes at least its length and a record header: a count the body cannot hold
    // is refused before anything is allocated for it.
    if count > r.remaining() / (4 + codec::ENTRY_HEADER_LEN) {
        return Err(CodecError::Malformed(format!(
            "{count} entries announced in {} bytes",
            r.remaining()
        )));
    }
    let mut entries = Vec::with_capacity(count);
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.u32("entry length")? as usize;
        let start = r.pos();
        let record = r.take(len, "entry record")?;
        let entry = codec::decode_entry(record)?;
        records.push((entry.log_id, body.slice(start..start + len)));
        entries.push(entry);
    }
    r.end("append request")?;
    Ok(DecodedAppend {
        request: AppendEntriesRequest {
            vote,
            prev_log_id,
            leader_commit,
            entries,
        },
        records,
    })
}

/// Appends the remote error's JSON after its tag.
fn put_remote_error<E: serde::Serialize>(out: &mut Vec<u8>, err: &E) {
    out.push(TAG_REMOTE_ERROR);
    if serde_json::to_writer(&mut *out, err).is_err() {
        // Cannot happen for openraft's error types; an empty JSON body is refused by the
        // receiver as undecodable, which it treats as a network error.
        out.truncate(1);
    }
}

/// Encodes the answer to an AppendEntries.
pub fn encode_append_answer(answer: &AppendAnswer) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 25);
    match answer {
        Ok(AppendEntriesResponse::Success) => out.push(TAG_OK),
        Ok(AppendEntriesResponse::PartialSuccess(id)) => {
            out.push(TAG_PARTIAL);
            put_opt_log_id(&mut out, id);
        }
        Ok(AppendEntriesResponse::Conflict) => out.push(TAG_CONFLICT),
        Ok(AppendEntriesResponse::HigherVote(v)) => {
            out.push(TAG_HIGHER_VOTE);
            put_vote(&mut out, v);
        }
        Err(e) => put_remote_error(&mut out, e),
    }
    out
}

/// Decodes the answer to an AppendEntries.
pub fn decode_append_answer(bytes: &[u8]) -> Result<AppendAnswer, CodecError> {
    let mut r = Reader::new(bytes);
    let answer = match r.u8("answer tag")? {
        TAG_OK => Ok(AppendEntriesResponse::Success),
        TAG_PARTIAL => Ok(AppendEntriesResponse::PartialSuccess(r.opt_log_id()?)),
        TAG_CONFLICT => Ok(AppendEntriesResponse::Conflict),
        TAG_HIGHER_VOTE => Ok(AppendEntriesResponse::HigherVote(r.vote()?)),
        TAG_REMOTE_ERROR => return Ok(Err(serde_json::from_slice(r.rest())?)),
        other => return Err(CodecError::Malformed(format!("append answer tag {other}"))),
    };
    r.end("append answer")?;
    Ok(answer)
}

/// Encodes a vote request.
pub fn encode_vote_request(req: &VoteRequest<NodeId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(VOTE_LEN + 25);
    put_vote(&mut out, &req.vote);
    put_opt_log_id(&mut out, &req.last_log_id);
    out
}

/// Decodes a vote request.
pub fn decode_vote_request(bytes: &[u8]) -> Result<VoteRequest<NodeId>, CodecError> {
    let mut r = Reader::new(bytes);
    let vote = r.vote()?;
    let last_log_id = r.opt_log_id()?;
    r.end("vote request")?;
    Ok(VoteRequest { vote, last_log_id })
}

/// Encodes the answer to a vote request.
pub fn encode_vote_answer(answer: &VoteAnswer) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + VOTE_LEN + 1 + 25);
    match answer {
        Ok(resp) => {
            out.push(TAG_OK);
            put_vote(&mut out, &resp.vote);
            out.push(u8::from(resp.vote_granted));
            put_opt_log_id(&mut out, &resp.last_log_id);
        }
        Err(e) => put_remote_error(&mut out, e),
    }
    out
}

/// Decodes the answer to a vote request.
pub fn decode_vote_answer(bytes: &[u8]) -> Result<VoteAnswer, CodecError> {
    let mut r = Reader::new(bytes);
    match r.u8("answer tag")? {
        TAG_OK => {
            let vote = r.vote()?;
            let vote_granted = r.bool("vote granted")?;
            let last_log_id = r.opt_log_id()?;
            r.end("vote answer")?;
            Ok(Ok(VoteResponse {
                vote,
                vote_granted,
                last_log_id,
            }))
        }
        TAG_REMOTE_ERROR => Ok(Err(serde_json::from_slice(r.rest())?)),
        other => Err(CodecError::Malformed(format!("vote answer tag {other}"))),
    }
}

/// Encodes one snapshot chunk (its bytes travel raw, not in base64).
pub fn encode_chunk(
    req: &InstallSnapshotRequest<TypeConfig>,
) -> Result<Vec<u8>, serde_json::Error> {
    let meta = serde_json::to_vec(&req.meta)?;
    let mut out = Vec::with_capacity(VOTE_LEN + 8 + 1 + 4 + meta.len() + req.data.len());
    put_vote(&mut out, &req.vote);
    out.extend_from_slice(&req.offset.to_le_bytes());
    out.push(u8::from(req.done));
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&req.data);
    Ok(out)
}

/// Decodes one snapshot chunk.
pub fn decode_chunk(bytes: &[u8]) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    let mut r = Reader::new(bytes);
    let vote = r.vote()?;
    let offset = r.u64("chunk offset")?;
    let done = r.bool("chunk done")?;
    let meta_len = r.u32("meta length")? as usize;
    let meta = serde_json::from_slice(r.take(meta_len, "snapshot meta")?)?;
    Ok(InstallSnapshotRequest {
        vote,
        meta,
        offset,
        data: r.rest().to_vec(),
        done,
    })
}

/// Encodes the answer to a snapshot chunk.
pub fn encode_chunk_answer(answer: &ChunkAnswer) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + VOTE_LEN);
    match answer {
        Ok(resp) => {
            out.push(TAG_OK);
            put_vote(&mut out, &resp.vote);
        }
        Err(e) => put_remote_error(&mut out, e),
    }
    out
}

/// Decodes the answer to a snapshot chunk.
pub fn decode_chunk_answer(bytes: &[u8]) -> Result<ChunkAnswer, CodecError> {
    let mut r = Reader::new(bytes);
    match r.u8("answer tag")? {
        TAG_OK => {
            let vote = r.vote()?;
            r.end("snapshot chunk answer")?;
            Ok(Ok(InstallSnapshotResponse { vote }))
        }
        TAG_REMOTE_ERROR => Ok(Err(serde_json::from_slice(r.rest())?)),
        other => Err(CodecError::Malformed(format!("chunk answer tag {other}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use crate::types::{BasicNode, Vote};
    use openraft::error::SnapshotMismatch;
    use openraft::{CommittedLeaderId, EntryPayload, Membership, SnapshotMeta, StoredMembership};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};
    use varpulis_cluster::Command;

    fn vote() -> impl Strategy<Value = Vote> {
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(t, n, c)| {
            if c {
                Vote::new_committed(t, n)
            } else {
                Vote::new(t, n)
            }
        })
    }

    fn log_id() -> impl Strategy<Value = LogId> {
        (any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(t, n, i)| LogId::new(CommittedLeaderId::new(t, n), i))
    }

    fn membership() -> Membership<NodeId, BasicNode> {
        Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([
                (1, BasicNode::new("http://127.0.0.1:1")),
                (2, BasicNode::new("http://127.0.0.1:2")),
                (3, BasicNode::new("http://[::1]:3")),
            ]),
        )
    }

    fn payload() -> impl Strategy<Value = EntryPayload<TypeConfig>> {
        prop_oneof![
            Just(EntryPayload::Blank),
            ".{0,40}".prop_map(|name| EntryPayload::Normal(Command::DeleteConnector { name })),
            proptest::collection::vec(".{0,12}", 0..6).prop_map(|ids| {
                EntryPayload::Normal(Command::batch(
                    ids.into_iter()
                        .map(|worker_id| Command::DeregisterWorker { worker_id })
                        .collect(),
                ))
            }),
            Just(EntryPayload::Membership(membership())),
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (log_id(), payload()).prop_map(|(log_id, payload)| Entry { log_id, payload })
    }

    fn append_request() -> impl Strategy<Value = AppendEntriesRequest<TypeConfig>> {
        (
            vote(),
            proptest::option::of(log_id()),
            proptest::option::of(log_id()),
            proptest::collection::vec(entry(), 0..8),
        )
            .prop_map(
                |(vote, prev_log_id, leader_commit, entries)| AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    leader_commit,
                    entries,
                },
            )
    }

    fn same_append(a: &AppendEntriesRequest<TypeConfig>, b: &AppendEntriesRequest<TypeConfig>) {
        assert_eq!(a.vote, b.vote);
        assert_eq!(a.prev_log_id, b.prev_log_id);
        assert_eq!(a.leader_commit, b.leader_commit);
        assert_eq!(a.entries, b.entries);
    }

    fn append_answer() -> impl Strategy<Value = AppendAnswer> {
        (0u8..5, proptest::option::of(log_id()), vote()).prop_map(|(tag, id, v)| match tag {
            0 => Ok(AppendEntriesResponse::Success),
            1 => Ok(AppendEntriesResponse::PartialSuccess(id)),
            2 => Ok(AppendEntriesResponse::Conflict),
            3 => Ok(AppendEntriesResponse::HigherVote(v)),
            _ => Err(RaftError::Fatal(openraft::error::Fatal::Stopped)),
        })
    }

    proptest! {
        #[test]
        fn append_requests_round_trip(req in append_request()) {
            let body = Bytes::from(encode_append(&req, |_| None).unwrap());
            let decoded = decode_append(&body).unwrap();
            same_append(&decoded.request, &req);
            // Each record is the entry's storage record, byte for byte.
            prop_assert_eq!(decoded.records.len(), req.entries.len());
            for ((id, record), entry) in decoded.records.iter().zip(&req.entries) {
                prop_assert_eq!(*id, entry.log_id);
                prop_assert_eq!(&record[..], &codec::encode_entry(entry).unwrap()[..]);
            }
            // Cut anywhere, the body is refused, never misread.
            for cut in [0, body.len() / 2, body.len().saturating_sub(1)] {
                if cut < body.len() {
                    prop_assert!(decode_append(&body.slice(..cut)).is_err());
                }
            }
            let mut longer = body.to_vec();
            longer.push(0);
            prop_assert!(decode_append(&Bytes::from(longer)).is_err());
        }

        #[test]
        fn append_answers_round_trip(answer in append_answer()) {
            let bytes = encode_append_answer(&answer);
            let back = decode_append_answer(&bytes).unwrap();
            prop_assert_eq!(format!("{back:?}"), format!("{answer:?}"));
        }

        #[test]
        fn votes_round_trip(v in vote(), last in proptest::option::of(log_id()), granted in any::<bool>()) {
            let req = VoteRequest { vote: v, last_log_id: last };
            let back = decode_vote_request(&encode_vote_request(&req)).unwrap();
            prop_assert_eq!(back.vote, v);
            prop_assert_eq!(back.last_log_id, last);
            let answer: VoteAnswer = Ok(VoteResponse { vote: v, vote_granted: granted, last_log_id: last });
            let back = decode_vote_answer(&encode_vote_answer(&answer)).unwrap();
            prop_assert_eq!(format!("{back:?}"), format!("{answer:?}"));
        }

        #[test]
        fn snapshot_chunks_round_trip(
            v in vote(),
            offset in any::<u64>(),
            done in any::<bool>(),
            data in proptest::collection::vec(any::<u8>(), 0..300),
            last in proptest::option::of(log_id()),
        ) {
            let req = InstallSnapshotRequest {
                vote: v,
                meta: SnapshotMeta {
                    last_log_id: last,
                    last_membership: StoredMembership::new(last, membership()),
                    snapshot_id: "1-2-3".into(),
                },
                offset,
                data: data.clone(),
                done,
            };
            let bytes = encode_chunk(&req).unwrap();
            // Raw bytes, not base64.
            let meta_len = serde_json::to_vec(&req.meta).unwrap().len();
            prop_assert_eq!(bytes.len(), VOTE_LEN + 8 + 1 + 4 + meta_len + data.len());
            let back = decode_chunk(&bytes).unwrap();
            prop_assert_eq!(back.vote, v);
            prop_assert_eq!(back.offset, offset);
            prop_assert_eq!(back.done, done);
            prop_assert_eq!(&back.data, &data);
            prop_assert_eq!(&back.meta, &req.meta);
            let answer: ChunkAnswer = Ok(InstallSnapshotResponse { vote: v });
            let back = decode_chunk_answer(&encode_chunk_answer(&answer)).unwrap();
            prop_assert_eq!(format!("{back:?}"), format!("{answer:?}"));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let body = Bytes::from(bytes.clone());
            let _ = decode_append(&body);
            let _ = decode_append_answer(&bytes);
            let _ = decode_vote_request(&bytes);
            let _ = decode_vote_answer(&bytes);
            let _ = decode_chunk(&bytes);
            let _ = decode_chunk_answer(&bytes);
        }
    }

    #[test]
    fn remote_errors_keep_their_detail() {
        let fwd: AppendAnswer = Err(RaftError::Fatal(openraft::error::Fatal::Panicked));
        let back = decode_append_answer(&encode_append_answer(&fwd)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{fwd:?}"));
        let chunk: ChunkAnswer = Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
            SnapshotMismatch {
                expect: openraft::SnapshotSegmentId {
                    id: "a".into(),
                    offset: 0,
                },
                got: openraft::SnapshotSegmentId {
                    id: "b".into(),
                    offset: 7,
                },
            },
        )));
        let back = decode_chunk_answer(&encode_chunk_answer(&chunk)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{chunk:?}"));
    }

    #[test]
    fn counts_the_body_cannot_hold_are_refused_before_allocating() {
        let mut body = Vec::new();
        put_vote(&mut body, &Vote::new(1, 1));
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_append(&Bytes::from(body)).unwrap_err();
        assert!(err.to_string().contains("entries announced"), "{err}");
        // An entry record of an unknown storage version is refused too.
        let req = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: vec![Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
                payload: EntryPayload::Blank,
            }],
        };
        let mut bytes = encode_append(&req, |_| None).unwrap();
        let record_start = VOTE_LEN + 2 + 4 + 4;
        bytes[record_start] = 9;
        let err = decode_append(&Bytes::from(bytes)).unwrap_err();
        assert!(matches!(err, CodecError::UnknownVersion(9)), "{err}");
        // Unknown answer tags.
        assert!(decode_append_answer(&[7]).is_err());
        assert!(decode_vote_answer(&[7]).is_err());
        assert!(decode_vote_answer(&[]).is_err());
    }
}
