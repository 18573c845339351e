//! The node's vote in its own file, next to the log's segments (`<raft dir>/wal/vote`).
//!
//! A vote forgotten after a crash lets a node vote twice in one term, which allows two leaders.
//! sled 0.34 "flushes" with `sync_file_range`, which flushes neither the device's write cache
//! nor the file's size, so a vote kept in sled could be lost to a power cut (a process crash
//! keeps it: the page cache survives). Since storage layout 3 the vote is written here:
//! `vote.tmp` is written and `fdatasync`ed, renamed over `vote`, and the directory is fsynced,
//! before `save_vote` returns. Votes are rare (elections), so the cost does not matter.
//!
//! Layout: [`MAGIC`] (which ends with the file's version, 1), a little-endian `u32` length, the
//! vote in the storage format of `codec.rs`, and a little-endian CRC-32 of everything before it.
//! A file that does not check out refuses the start (a node must not guess its vote); a node
//! without the file reads the vote an older layout kept in sled.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::codec;
use crate::types::Vote;

/// First bytes of the file; the last one is its version.
pub const MAGIC: &[u8; 14] = b"VARPULIS-VOTE\x01";
/// The file's name in the log directory.
pub const FILE_NAME: &str = "vote";
const TMP_NAME: &str = "vote.tmp";

/// The vote stored in `dir`, if the file exists.
pub fn read(dir: &Path) -> Result<Option<Vote>, String> {
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let bad = |what: &str| {
        format!(
            "the vote file {} is {what} (refusing to guess this node's vote; restore the node \
             from a backup or wipe its data dir and let it rejoin)",
            path.display()
        )
    };
    let head = MAGIC.len() + 4;
    if bytes.len() < head + 4 || bytes[..MAGIC.len()] != MAGIC[..] {
        return Err(bad("not a vote file of this version"));
    }
    let mut len = [0u8; 4];
    len.copy_from_slice(&bytes[MAGIC.len()..head]);
    let len = u32::from_le_bytes(len) as usize;
    if bytes.len() != head + len + 4 {
        return Err(bad("cut short or too long"));
    }
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[head + len..]);
    if crc32fast::hash(&bytes[..head + len]) != u32::from_le_bytes(crc) {
        return Err(bad("corrupt (checksum mismatch)"));
    }
    codec::decode_vote(&bytes[head..head + len])
        .map(Some)
        .map_err(|e| bad(&format!("unreadable ({e})")))
}

/// Stores `vote` in `dir` durably (blocking: temp file, `fdatasync`, rename, directory fsync).
pub fn write(dir: &Path, vote: &Vote) -> std::io::Result<()> {
    let body = codec::encode_vote(vote);
    let mut bytes = Vec::with_capacity(MAGIC.len() + 8 + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&body);
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(TMP_NAME);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_data()?;
    }
    std::fs::rename(&tmp, dir.join(FILE_NAME))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn a_vote_reads_back_and_the_newest_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), &Vote::new(3, 1)).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(Vote::new(3, 1)));
        let mut committed = Vote::new(4, 2);
        committed.commit();
        write(dir.path(), &committed).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(committed));
        assert!(!dir.path().join(TMP_NAME).exists());
    }

    #[test]
    fn a_damaged_vote_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &Vote::new(3, 1)).unwrap();
        let path = dir.path().join(FILE_NAME);
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        let at = MAGIC.len() + 5;
        flipped[at] ^= 1;
        for (bytes, what) in [
            (flipped, "checksum"),
            (good[..good.len() - 1].to_vec(), "cut short"),
            (b"{\"term\":3}".to_vec(), "not a vote file"),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let err = read(dir.path()).unwrap_err();
            assert!(err.contains(what), "{err}");
        }
    }
}
