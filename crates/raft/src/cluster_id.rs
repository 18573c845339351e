//! The cluster id: a short name for one Raft group's history, written into backup files so an
//! operator can tell which cluster a file comes from.
//!
//! A cluster started from `--raft-peers` derives its id from that list ([`from_peers`]): every
//! node of a fresh group is started with the same list, so they agree without storing or
//! exchanging anything. A cluster built by `varpulis snapshot restore` is a *new* cluster: its
//! id is derived from the source cluster's id, the snapshot's index and hash and the new peer
//! list ([`for_restore`]), and stored in each node's `raft_meta` tree, where it takes
//! precedence. (A node added with `--join` derives its id from its own `--raft-peers`, which
//! may differ from the group's: a limitation noted in docs/operations.md.)

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::types::NodeId;

/// Hex characters of an id (64 bits).
const ID_HEX_LEN: usize = 16;

fn short_hash(text: &str) -> String {
    let mut id = hex::encode(Sha256::digest(text.as_bytes()));
    id.truncate(ID_HEX_LEN);
    id
}

fn peer_lines(peers: &BTreeMap<NodeId, String>) -> String {
    peers
        .iter()
        .map(|(id, url)| format!("{id}={}\n", url.trim_end_matches('/')))
        .collect()
}

/// The id of a cluster founded with `peers` (node id -> base URL).
pub fn from_peers(peers: &BTreeMap<NodeId, String>) -> String {
    short_hash(&format!("varpulis-cluster\n{}", peer_lines(peers)))
}

/// The id of the new cluster a restore builds from a snapshot of `source_id` at
/// `applied_index` with `state_hash`, with the members `peers`. The same inputs on every node
/// give the same id.
pub fn for_restore(
    source_id: &str,
    applied_index: Option<u64>,
    state_hash: &str,
    peers: &BTreeMap<NodeId, String>,
) -> String {
    short_hash(&format!(
        "varpulis-restore\n{source_id}\n{applied_index:?}\n{state_hash}\n{}",
        peer_lines(peers)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_the_peers_and_the_source() {
        let a = BTreeMap::from([(1, "http://a:1/".to_string()), (2, "http://b:2".into())]);
        let same = BTreeMap::from([(1, "http://a:1".to_string()), (2, "http://b:2".into())]);
        let other = BTreeMap::from([(1, "http://a:1".to_string()), (2, "http://c:2".into())]);
        assert_eq!(from_peers(&a), from_peers(&same));
        assert_ne!(from_peers(&a), from_peers(&other));
        assert_eq!(from_peers(&a).len(), ID_HEX_LEN);
        let r = for_restore("x", Some(3), "h", &a);
        assert_eq!(r, for_restore("x", Some(3), "h", &same));
        assert_ne!(r, for_restore("x", Some(4), "h", &a));
        assert_ne!(r, from_peers(&a));
    }
}
