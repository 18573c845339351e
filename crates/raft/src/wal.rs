//! The Raft log's write-ahead files (storage layout 3): segment files of framed records,
//! appended with `write` and made durable with `fdatasync`.
//!
//! Until layout 3 the log lived in a sled tree. sled 0.34 makes its writes "durable" with
//! `sync_file_range`, which neither flushes the device's write cache nor the file's size, and it
//! hands every flush to its thread pool (which wakes all its idle threads). Measured on the leader
//! of the Raft write bench, a sled flush took 300–750 µs where `fdatasync` of the same bytes
//! takes ≈ 180 µs, and openraft 0.9's core waits for that flush on every append before it
//! replicates (docs/benchmarks.md, "Issue 24: the log in its own files (session 12)").
//!
//! Layout: `<raft dir>/wal/<first index, 20 digits>.wal`. A segment starts with [`MAGIC`] and a
//! little-endian `u32` version ([`VERSION`]; a segment of another version is refused), then
//! records:
//!
//! ```text
//! len: u32 LE | crc32: u32 LE | index: u64 LE | term: u64 LE | leader node: u64 LE | payload
//! ```
//!
//! `payload` is the entry in the storage format of [`crate::codec`] (which carries its own format
//! byte), `len` its length, and the CRC-32 covers everything after the CRC. Indexes are
//! contiguous inside a segment; a new segment starts when the active one passes
//! [`SEGMENT_BYTES`], and also when an append does not follow the last entry (the log was
//! emptied by a purge, e.g. after a snapshot was installed; openraft never leaves a gap in a live
//! log, its storage suite does): the entries before such a jump are forgotten, and opening keeps
//! the entries after the last jump (the log store then checks that they start right above the
//! durable purge point).
//!
//! Preallocation: a segment is filled with zeros ahead of its writes, [`PREALLOC_STEP`] at a
//! time, so an append overwrites blocks the file already has and `fdatasync` need not commit the
//! file system's journal for a new file size (ext4: one journal commit, serialized across every
//! file of the file system, per sync that grows a file). Measured here: `fdatasync` of a 5 KB
//! overwrite p50 0.10 ms against 0.18 ms for an append. The end of a segment's records is the
//! first all-zero frame.
//!
//! Durability: [`Wal::append`] writes (page cache only); the caller then syncs the files named by
//! [`Wal::take_pending`] (the flusher thread, `flusher.rs`: `fdatasync` of each, and of the directory
//! when a segment was created) before reporting the entries as durable. Truncation deletes the
//! later segments first and then cuts the segment holding the first removed entry, so a crash in
//! between leaves a prefix of the old log, never a hole.
//!
//! Recovery ([`Wal::open`]): every segment is read and every record checked. In the newest
//! segment the first record that does not check out (incomplete, bad checksum) starts what the
//! crash left of the writes made since the last sync (never acknowledged: acknowledgement follows
//! the sync): the log is cut there and the rest zeroed, as etcd's WAL repair does. Anything else
//! that does not check out (a bad record in an older segment, an unknown segment version,
//! indexes out of order) refuses the open with the file and offset.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::CommittedLeaderId;

use crate::types::LogId;

/// First bytes of every segment.
pub const MAGIC: &[u8; 12] = b"VARPULIS-WAL";
/// The segment format this build writes and reads.
pub const VERSION: u32 = 1;
/// Size of the segment header ([`MAGIC`] + version).
const SEGMENT_HEADER: u64 = 16;
/// Size of a record's frame before its payload.
const FRAME: usize = 32;
/// A segment is closed (the next append opens a new one) once it is this large.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Zeros written ahead of the last record at a time (module docs).
pub const PREALLOC_STEP: u64 = 1024 * 1024;
/// Largest payload accepted when reading (a record claiming more is corrupt).
const MAX_PAYLOAD: u64 = 1 << 31;

/// Why the write-ahead files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file operation failed.
    #[error("raft log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A segment holds something that is neither a valid record nor a cut-short last write.
    #[error("raft log {path} is corrupt at byte {offset}: {what} (refusing to guess; restore this node from a backup or wipe its data dir and let it rejoin)")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What check failed.
        what: String,
    },
    /// An append that would leave a hole or go backwards.
    #[error("raft log: append of index {got} after index {last}")]
    OutOfOrder {
        /// The log's last index.
        last: u64,
        /// The first index appended.
        got: u64,
    },
}

fn io_err(path: &Path, source: std::io::Error) -> WalError {
    WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where one entry is.
#[derive(Debug, Clone, Copy)]
struct Pos {
    /// Key of its segment (the segment's first index).
    seg: u64,
    /// Offset of its frame in the segment.
    offset: u64,
    /// Payload length.
    len: u32,
    log_id: LogId,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// End of the records (the next append's offset).
    len: u64,
    /// Length of the file (zeros from `len` on).
    allocated: u64,
}

/// Files to `fdatasync` (and the directory to `fsync`) before appended entries count as durable.
#[derive(Debug, Default)]
pub struct Pending {
    /// Segments written since the last [`Wal::take_pending`].
    pub files: Vec<Arc<File>>,
    /// The directory, when a segment was created or removed since then.
    pub dir: Option<Arc<File>>,
}

impl Pending {
    /// True when nothing needs syncing.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dir.is_none()
    }

    /// Makes the named files durable (blocking).
    pub fn sync(&self) -> std::io::Result<()> {
        for f in &self.files {
            f.sync_data()?;
        }
        if let Some(d) = &self.dir {
            d.sync_all()?;
        }
        Ok(())
    }
}

/// The segment files of one node's Raft log, with the position of every entry they hold.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    dir_handle: Arc<File>,
    segments: BTreeMap<u64, Segment>,
    /// Positions of the entries `first ..`, in order.
    index: VecDeque<Pos>,
    /// Index of `index[0]`.
    first: u64,
    dirty: Vec<Arc<File>>,
    dir_dirty: bool,
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.wal")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes one record's frame and payload onto `out`.
fn encode_record(out: &mut Vec<u8>, log_id: &LogId, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&log_id.index.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// One record read back from a segment's bytes.
enum Scan {
    Record {
        pos_len: u32,
        log_id: LogId,
        next: usize,
    },
    /// Nothing after this offset.
    End,
    /// Not a valid record at this offset.
    Bad(String),
}

fn scan_at(bytes: &[u8], at: usize) -> Scan {
    if at == bytes.len() {
        return Scan::End;
    }
    // Preallocated zeros: the records end here.
    if bytes.len() - at >= FRAME && bytes[at..at + FRAME].iter().all(|b| *b == 0) {
        return Scan::End;
    }
    if bytes.len() - at < FRAME {
        return Scan::Bad("incomplete record frame".into());
    }
    let len = u32_at(bytes, at);
    let end = at as u64 + FRAME as u64 + u64::from(len);
    if u64::from(len) > MAX_PAYLOAD || end > bytes.len() as u64 {
        return Scan::Bad(format!(
            "record of {len} bytes runs past the end of the file"
        ));
    }
    let end = end as usize;
    let crc = u32_at(bytes, at + 4);
    if crc32fast::hash(&bytes[at + 8..end]) != crc {
        return Scan::Bad("checksum mismatch".into());
    }
    let log_id = LogId::new(
        CommittedLeaderId::new(u64_at(bytes, at + 16), u64_at(bytes, at + 24)),
        u64_at(bytes, at + 8),
    );
    Scan::Record {
        pos_len: len,
        log_id,
        next: end,
    }
}

impl Wal {
    /// Opens the segments in `dir` (created if missing), checking every record (module docs).
    pub fn open(dir: &Path) -> Result<Self, WalError> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let dir_handle = Arc::new(File::open(dir).map_err(|e| io_err(dir, e))?);
        if created {
            if let Some(parent) = dir.parent() {
                File::open(parent)
                    .and_then(|p| p.sync_all())
                    .map_err(|e| io_err(parent, e))?;
            }
        }
        let mut keys = Vec::new();
        for item in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
            let item = item.map_err(|e| io_err(dir, e))?;
            let name = item.file_name();
            if let Some(first) = name.to_str().and_then(parse_segment_name) {
                keys.push(first);
            }
        }
        keys.sort_unstable();
        let mut wal = Self {
            dir: dir.to_owned(),
            dir_handle,
            segments: BTreeMap::new(),
            index: VecDeque::new(),
            first: 0,
            dirty: Vec::new(),
            dir_dirty: false,
        };
        let count = keys.len();
        for (i, key) in keys.into_iter().enumerate() {
            wal.load_segment(key, i + 1 == count)?;
        }
        // What a crashed *process* wrote but never synced is still in the page cache and was
        // just read as the log: make it durable before anything counts on it (a node restarting
        // as leader counts its whole log as its own progress), so an OS crash later cannot take
        // it back.
        for seg in wal.segments.values() {
            seg.file.sync_data().map_err(|e| io_err(&seg.path, e))?;
        }
        wal.dir_handle.sync_all().map_err(|e| io_err(dir, e))?;
        Ok(wal)
    }

    fn load_segment(&mut self, key: u64, last: bool) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(key));
        let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        let corrupt = |offset: u64, what: String| WalError::Corrupt {
            path: path.clone(),
            offset,
            what,
        };
        // A segment whose creation a crash cut short (its header never reached the disk) is
        // empty: only possible for the newest one.
        let header_len = SEGMENT_HEADER as usize;
        let torn_header =
            last && (bytes.len() < header_len || bytes[..header_len].iter().all(|b| *b == 0));
        if !torn_header {
            if bytes.len() < header_len || bytes[..12] != MAGIC[..] {
                return Err(corrupt(0, "not a Varpulis raft log segment".into()));
            }
            let version = u32_at(&bytes, 12);
            if version != VERSION {
                return Err(corrupt(
                    12,
                    format!("segment format version {version}, this binary reads {VERSION}"),
                ));
            }
        }
        let header_ok = !torn_header;
        let mut at = if header_ok { header_len } else { bytes.len() };
        let mut cut: Option<usize> = if header_ok { None } else { Some(0) };
        let mut positions = Vec::new();
        loop {
            if cut.is_some() {
                break;
            }
            match scan_at(&bytes, at) {
                Scan::End => break,
                Scan::Record {
                    pos_len,
                    log_id,
                    next,
                } => {
                    if let Some(prev) = positions.last().map(|p: &Pos| p.log_id.index) {
                        if log_id.index != prev + 1 {
                            // In the newest segment: an older record a crash uncovered (zeros
                            // over it were lost), part of the unsynced tail.
                            if last {
                                tracing::warn!(
                                    path = %path.display(),
                                    offset = at,
                                    "raft log: cutting off index {} after index {prev}",
                                    log_id.index
                                );
                                cut = Some(at);
                                continue;
                            }
                            return Err(corrupt(
                                at as u64,
                                format!("index {} follows index {prev}", log_id.index),
                            ));
                        }
                    }
                    positions.push(Pos {
                        seg: key,
                        offset: at as u64,
                        len: pos_len,
                        log_id,
                    });
                    at = next;
                }
                Scan::Bad(what) => {
                    // The newest segment ends with the writes made since the last sync, which a
                    // crash may have left in any state (a multi-record write may reach the disk
                    // page by page): the log is cut at the first bad record, as etcd's WAL
                    // repair does. In an older segment nothing is unsynced: refused.
                    if last {
                        tracing::warn!(
                            path = %path.display(),
                            offset = at,
                            discarded_bytes = bytes.len() - at,
                            "raft log: cutting off a write a crash left incomplete ({what})"
                        );
                        cut = Some(at);
                    } else {
                        return Err(corrupt(at as u64, what));
                    }
                }
            }
        }
        // Anything after the newest segment's last record that is not zero (older records a crash
        // left behind a lost zeroing, part of an unsynced write) is zeroed too, so no later
        // append can line up with it.
        if last && cut.is_none() && bytes[at..].iter().any(|b| *b != 0) {
            tracing::warn!(
                path = %path.display(),
                offset = at,
                "raft log: zeroing bytes left after the last record"
            );
            cut = Some(at);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let allocated = bytes.len() as u64;
        let mut len = at as u64;
        if let Some(cut) = cut {
            // Zeros over the cut-short write, so the next appends and scans never meet it.
            let from = if header_ok { cut } else { 0 };
            let zeros = vec![0u8; bytes.len() - from];
            file.write_all_at(&zeros, from as u64)
                .map_err(|e| io_err(&path, e))?;
            len = from as u64;
            if !header_ok {
                file.write_all_at(&segment_header(), 0)
                    .map_err(|e| io_err(&path, e))?;
                len = SEGMENT_HEADER;
            }
            file.sync_all().map_err(|e| io_err(&path, e))?;
        }
        let file = Arc::new(file);
        if let (Some(first), Some(prev)) = (positions.first(), self.index.back()) {
            if first.log_id.index != prev.log_id.index + 1 {
                // A jump: the older segments hold only purged entries (module docs).
                if first.log_id.index <= prev.log_id.index {
                    return Err(corrupt(
                        SEGMENT_HEADER,
                        format!(
                            "index {} does not follow index {} of the previous segment",
                            first.log_id.index, prev.log_id.index
                        ),
                    ));
                }
                self.index.clear();
            }
        }
        if self.index.is_empty() {
            if let Some(first) = positions.first() {
                self.first = first.log_id.index;
            }
        }
        self.index.extend(positions);
        self.segments.insert(
            key,
            Segment {
                path,
                file,
                len,
                allocated: allocated.max(len),
            },
        );
        Ok(())
    }

    /// Index of the first entry held (meaningless when empty).
    pub fn first_index(&self) -> Option<u64> {
        (!self.index.is_empty()).then_some(self.first)
    }

    /// The last entry's log id.
    pub fn last_log_id(&self) -> Option<LogId> {
        self.index.back().map(|p| p.log_id)
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn pos(&self, index: u64) -> Option<&Pos> {
        let i = index.checked_sub(self.first)?;
        self.index.get(usize::try_from(i).ok()?)
    }

    /// The stored payload of the entry at `index` (blocking read), with its log id.
    pub fn read(&self, index: u64) -> Result<Option<(LogId, Vec<u8>)>, WalError> {
        let Some(pos) = self.pos(index).copied() else {
            return Ok(None);
        };
        let Some(seg) = self.segments.get(&pos.seg) else {
            return Ok(None);
        };
        let mut buf = vec![0u8; FRAME + pos.len as usize];
        seg.file
            .read_exact_at(&mut buf, pos.offset)
            .map_err(|e| io_err(&seg.path, e))?;
        if crc32fast::hash(&buf[8..]) != u32_at(&buf, 4) || u64_at(&buf, 8) != index {
            return Err(WalError::Corrupt {
                path: seg.path.clone(),
                offset: pos.offset,
                what: "record changed on disk since it was written".into(),
            });
        }
        buf.drain(..FRAME);
        Ok(Some((pos.log_id, buf)))
    }

    /// Appends entries (log ids and stored payloads, contiguous, following the last entry unless
    /// the log is empty). Written to the page cache only: sync [`Wal::take_pending`] before
    /// reporting them durable.
    pub fn append<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (LogId, &'a [u8])>,
    ) -> Result<(), WalError> {
        let mut buf = Vec::new();
        let mut ids: Vec<(LogId, u64, u32)> = Vec::new();
        for (id, payload) in entries {
            if let Some((prev, _, _)) = ids.last() {
                if id.index != prev.index + 1 {
                    return Err(WalError::OutOfOrder {
                        last: prev.index,
                        got: id.index,
                    });
                }
            }
            let at = buf.len();
            encode_record(&mut buf, &id, payload);
            ids.push((id, at as u64, payload.len() as u32));
        }
        let Some((first_id, _, _)) = ids.first() else {
            return Ok(());
        };
        let follows = match self.last_log_id() {
            Some(last) if first_id.index == last.index + 1 => true,
            Some(last) if first_id.index <= last.index => {
                return Err(WalError::OutOfOrder {
                    last: last.index,
                    got: first_id.index,
                })
            }
            // Empty, or a gap (never made by openraft on a live log, but its storage suite
            // appends with gaps): a new segment, the earlier entries forgotten (module docs).
            _ => false,
        };
        let roll = !follows
            || self
                .segments
                .values()
                .next_back()
                .is_none_or(|s| s.len >= SEGMENT_BYTES);
        if roll {
            self.create_segment(first_id.index)?;
        }
        let Some((&key, seg)) = self.segments.iter_mut().next_back() else {
            return Err(io_err(
                &self.dir,
                std::io::Error::other("no active segment"),
            ));
        };
        let base = seg.len;
        seg.file
            .write_all_at(&buf, base)
            .map_err(|e| io_err(&seg.path, e))?;
        seg.len += buf.len() as u64;
        if seg.len > seg.allocated {
            seg.allocated = seg.len;
        }
        if seg.allocated - seg.len < PREALLOC_STEP / 4 {
            extend_zeros(seg)?;
        }
        if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &seg.file)) {
            self.dirty.push(seg.file.clone());
        }
        if !follows {
            self.index.clear();
            self.first = first_id.index;
        }
        for (log_id, at, len) in ids {
            self.index.push_back(Pos {
                seg: key,
                offset: base + at,
                len,
                log_id,
            });
        }
        Ok(())
    }

    fn create_segment(&mut self, first: u64) -> Result<(), WalError> {
        let path = self.dir.join(segment_name(first));
        if self.segments.contains_key(&first) {
            // Only possible when the same first index starts over (a log emptied and refilled
            // from that index): the old segment holds nothing anyone reads.
            self.remove_segment(first)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.write_all_at(&segment_header(), 0)
            .map_err(|e| io_err(&path, e))?;
        let mut seg = Segment {
            path,
            file: Arc::new(file),
            len: SEGMENT_HEADER,
            allocated: SEGMENT_HEADER,
        };
        extend_zeros(&mut seg)?;
        self.dirty.push(seg.file.clone());
        self.dir_dirty = true;
        self.segments.insert(first, seg);
        Ok(())
    }

    fn remove_segment(&mut self, key: u64) -> Result<(), WalError> {
        if let Some(seg) = self.segments.remove(&key) {
            self.dirty.retain(|f| !Arc::ptr_eq(f, &seg.file));
            std::fs::remove_file(&seg.path).map_err(|e| io_err(&seg.path, e))?;
            self.dir_dirty = true;
        }
        Ok(())
    }

    /// Removes every entry from `index` on (later segments deleted first, then the segment
    /// holding `index` cut). Sync [`Wal::take_pending`] before answering.
    pub fn truncate_from(&mut self, index: u64) -> Result<(), WalError> {
        let Some(last) = self.last_log_id() else {
            return Ok(());
        };
        if index > last.index {
            return Ok(());
        }
        let (seg_key, offset) = match self.pos(index) {
            Some(p) => (p.seg, p.offset),
            // Below the first entry held: everything goes.
            None => {
                let keys: Vec<u64> = self.segments.keys().copied().collect();
                for k in keys.into_iter().rev() {
                    self.remove_segment(k)?;
                }
                self.index.clear();
                return Ok(());
            }
        };
        let later: Vec<u64> = self
            .segments
            .range(seg_key.saturating_add(1)..)
            .map(|(k, _)| *k)
            .collect();
        let removed = !later.is_empty();
        for k in later.into_iter().rev() {
            self.remove_segment(k)?;
        }
        if removed {
            // The later segments must be gone on disk before the cut segment ends early: the
            // other order could reopen as a jump to the removed entries.
            self.dir_handle
                .sync_all()
                .map_err(|e| io_err(&self.dir, e))?;
        }
        if let Some(seg) = self.segments.get_mut(&seg_key) {
            // Zeros over the removed records: the records end at `offset` again.
            let zeros = vec![0u8; usize::try_from(seg.len - offset).unwrap_or(0)];
            seg.file
                .write_all_at(&zeros, offset)
                .map_err(|e| io_err(&seg.path, e))?;
            seg.len = offset;
            if !self.dirty.iter().any(|f| Arc::ptr_eq(f, &seg.file)) {
                self.dirty.push(seg.file.clone());
            }
        }
        let keep = usize::try_from(index - self.first).unwrap_or(usize::MAX);
        self.index.truncate(keep);
        Ok(())
    }

    /// Forgets every entry up to `index` included, and returns the segments that now hold only
    /// such entries (removed from the set; the caller deletes the files, in the background).
    /// The segment being appended to is kept.
    pub fn purge_to(&mut self, index: u64) -> Vec<PathBuf> {
        while self.index.front().is_some_and(|p| p.log_id.index <= index) {
            self.index.pop_front();
            self.first += 1;
        }
        if let Some(p) = self.index.front() {
            self.first = p.log_id.index;
        }
        let active = self.segments.keys().next_back().copied();
        let first_kept_seg = self.index.front().map(|p| p.seg);
        let mut gone = Vec::new();
        let keys: Vec<u64> = self.segments.keys().copied().collect();
        for k in keys {
            if Some(k) == active
                || Some(k) == first_kept_seg
                || first_kept_seg.is_some_and(|f| k > f)
            {
                break;
            }
            if let Some(seg) = self.segments.remove(&k) {
                self.dirty.retain(|f| !Arc::ptr_eq(f, &seg.file));
                gone.push(seg.path);
            }
        }
        gone
    }

    /// Removes every segment (the log is rewritten from scratch: format migration).
    pub fn clear(&mut self) -> Result<(), WalError> {
        let keys: Vec<u64> = self.segments.keys().copied().collect();
        for k in keys.into_iter().rev() {
            self.remove_segment(k)?;
        }
        self.index.clear();
        Ok(())
    }

    /// What must be synced for everything written so far to be durable (and forgets it).
    pub fn take_pending(&mut self) -> Pending {
        Pending {
            files: std::mem::take(&mut self.dirty),
            dir: std::mem::take(&mut self.dir_dirty).then(|| self.dir_handle.clone()),
        }
    }
}

/// Writes [`PREALLOC_STEP`] zeros at the end of `seg`'s file (module docs).
fn extend_zeros(seg: &mut Segment) -> Result<(), WalError> {
    const CHUNK: usize = 256 * 1024;
    let zeros = vec![0u8; CHUNK];
    let mut at = seg.allocated;
    let end = seg.allocated + PREALLOC_STEP;
    while at < end {
        let n = usize::try_from(end - at).map_or(CHUNK, |n| n.min(CHUNK));
        seg.file
            .write_all_at(&zeros[..n], at)
            .map_err(|e| io_err(&seg.path, e))?;
        at += n as u64;
    }
    seg.allocated = end;
    Ok(())
}

fn segment_header() -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[..12].copy_from_slice(MAGIC);
    h[12..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn payload(index: u64) -> Vec<u8> {
        format!("entry-{index}-{}", "x".repeat((index % 7) as usize)).into_bytes()
    }

    fn append(wal: &mut Wal, term: u64, range: std::ops::Range<u64>) {
        let data: Vec<(LogId, Vec<u8>)> = range.map(|i| (id(term, i), payload(i))).collect();
        wal.append(data.iter().map(|(i, p)| (*i, &p[..]))).unwrap();
        wal.take_pending().sync().unwrap();
    }

    /// Appends entries `1..=n`, each over half a segment (two per segment), and syncs them.
    fn append_half_segments(wal: &mut Wal, n: u64) {
        let big = vec![7u8; (SEGMENT_BYTES / 2) as usize + 1];
        for i in 1..=n {
            wal.append([(id(1, i), &big[..])]).unwrap();
        }
        wal.take_pending().sync().unwrap();
    }

    fn indexes(wal: &Wal) -> Vec<u64> {
        wal.index.iter().map(|p| p.log_id.index).collect()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn entries_survive_a_reopen_with_their_log_ids_and_payloads() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path()).unwrap();
            append(&mut wal, 1, 1..50);
            append(&mut wal, 2, 50..60);
        }
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&wal), (1..60).collect::<Vec<_>>());
        assert_eq!(wal.last_log_id(), Some(id(2, 59)));
        let (got, bytes) = wal.read(49).unwrap().unwrap();
        assert_eq!((got, bytes), (id(1, 49), payload(49)));
        assert!(wal.read(60).unwrap().is_none());
        assert!(wal.read(0).unwrap().is_none());
    }

    #[test]
    fn an_append_that_leaves_a_hole_or_goes_back_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        append(&mut wal, 1, 1..5);
        let p = payload(3);
        assert!(matches!(
            wal.append([(id(1, 3), &p[..])]),
            Err(WalError::OutOfOrder { last: 4, got: 3 })
        ));
        assert_eq!(indexes(&wal), vec![1, 2, 3, 4]);
        // A gap inside one append.
        let q = payload(7);
        assert!(matches!(
            wal.append([(id(1, 5), &q[..]), (id(1, 7), &q[..])]),
            Err(WalError::OutOfOrder { last: 5, got: 7 })
        ));
        assert_eq!(indexes(&wal), vec![1, 2, 3, 4]);
    }

    #[test]
    fn records_a_crash_left_behind_the_end_are_zeroed_and_never_line_up_with_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let offsets: Vec<u64> = {
            let mut wal = Wal::open(dir.path()).unwrap();
            append(&mut wal, 1, 1..11);
            wal.index.iter().map(|p| p.offset).collect()
        };
        let seg = segment_files(dir.path()).pop().unwrap();
        let full = std::fs::read(&seg).unwrap();
        // The frame of entry 5 reads as zeros (a lost write), entries 6..=10 are still there.
        let mut torn = full.clone();
        let at = offsets[4] as usize;
        torn[at..at + FRAME].fill(0);
        std::fs::write(&seg, &torn).unwrap();
        {
            let mut wal = Wal::open(dir.path()).unwrap();
            assert_eq!(indexes(&wal), vec![1, 2, 3, 4]);
            // Same-sized records from another term: without the zeroing, the old entry 6 would
            // follow them at the next open.
            append(&mut wal, 2, 5..6);
        }
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&wal), vec![1, 2, 3, 4, 5]);
        assert_eq!(wal.read(5).unwrap().unwrap().0, id(2, 5));
        // An index out of order in the newest segment is cut there too.
        let mut swapped = full.clone();
        let (a, b) = (offsets[2] as usize, offsets[3] as usize);
        swapped[a + 8..a + 16].copy_from_slice(&9u64.to_le_bytes());
        let crc = crc32fast::hash(&swapped[a + 8..b]);
        swapped[a + 4..a + 8].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg, &swapped).unwrap();
        assert_eq!(indexes(&Wal::open(dir.path()).unwrap()), vec![1, 2]);
    }

    #[test]
    fn truncation_cuts_the_tail_and_appends_go_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path()).unwrap();
            append(&mut wal, 1, 1..20);
            wal.truncate_from(10).unwrap();
            wal.take_pending().sync().unwrap();
            assert_eq!(wal.last_log_id(), Some(id(1, 9)));
            append(&mut wal, 3, 10..12);
        }
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&wal), (1..12).collect::<Vec<_>>());
        assert_eq!(wal.last_log_id(), Some(id(3, 11)));
        assert_eq!(wal.read(10).unwrap().unwrap().0, id(3, 10));
    }

    #[test]
    fn segments_roll_and_truncation_across_them_removes_the_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        append_half_segments(&mut wal, 5);
        // 2 records per segment: [1,2] [3,4] [5]
        assert_eq!(segment_files(dir.path()).len(), 3);
        wal.truncate_from(2).unwrap();
        wal.take_pending().sync().unwrap();
        assert_eq!(segment_files(dir.path()).len(), 1);
        drop(wal);
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&wal), vec![1]);
    }

    #[test]
    fn purge_returns_whole_segments_below_the_point_and_keeps_the_active_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        append_half_segments(&mut wal, 5);
        // [1,2] [3,4] [5]: purging to 3 frees the first segment only.
        let gone = wal.purge_to(3);
        assert_eq!(gone, vec![dir.path().join(segment_name(1))]);
        assert_eq!(indexes(&wal), vec![4, 5]);
        let gone = wal.purge_to(5);
        assert_eq!(gone, vec![dir.path().join(segment_name(3))]);
        assert!(wal.is_empty());
        for p in gone {
            std::fs::remove_file(p).unwrap();
        }
        // Empty after a purge: the next append may start anywhere above; it opens a segment.
        append(&mut wal, 2, 100..102);
        drop(wal);
        let wal = Wal::open(dir.path()).unwrap();
        assert_eq!(indexes(&wal), vec![100, 101]);
    }

    /// Offset where the records of `wal`'s newest segment end.
    fn records_end(wal: &Wal) -> usize {
        wal.segments.values().next_back().unwrap().len as usize
    }

    #[test]
    fn a_write_cut_short_at_the_end_is_dropped_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let end = {
            let mut wal = Wal::open(dir.path()).unwrap();
            append(&mut wal, 1, 1..9);
            let before = records_end(&wal);
            // The last write holds two records (9 and 10).
            append(&mut wal, 1, 9..11);
            (before, records_end(&wal))
        };
        let seg = segment_files(dir.path()).pop().unwrap();
        let full = std::fs::read(&seg).unwrap();
        // Zeros (pages never written) or garbage, over any part of the last write.
        for (from, to, fill) in [
            (end.1 - 1, end.1, 0u8),
            (end.1 - 5, end.1, 0xAB),
            (end.0 + FRAME + 2, end.1, 0),
            (end.0, end.0 + 3, 0x11),
            (end.0 + 4, end.0 + 5, 0),
        ] {
            let mut torn = full.clone();
            torn[from..to].fill(fill);
            std::fs::write(&seg, &torn).unwrap();
            let mut wal = Wal::open(dir.path()).unwrap();
            let kept = indexes(&wal);
            assert!(
                kept == (1..9).collect::<Vec<_>>() || kept == (1..10).collect::<Vec<_>>(),
                "{from}..{to}: {kept:?}"
            );
            let next = kept.len() as u64 + 1;
            append(&mut wal, 2, next..12);
            drop(wal);
            let wal = Wal::open(dir.path()).unwrap();
            assert_eq!(indexes(&wal), (1..12).collect::<Vec<_>>());
            assert_eq!(wal.read(11).unwrap().unwrap().0, id(2, 11));
            std::fs::write(&seg, &full).unwrap();
        }
        // A segment cut short by the file system (no preallocated zeros) reads the same.
        std::fs::write(&seg, &full[..end.1 - 3]).unwrap();
        assert_eq!(indexes(&Wal::open(dir.path()).unwrap()).len(), 9);
    }

    #[test]
    fn a_bad_record_in_an_older_segment_refuses_the_open() {
        let dir = tempfile::tempdir().unwrap();
        append_half_segments(&mut Wal::open(dir.path()).unwrap(), 3);
        let first = segment_files(dir.path()).remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[SEGMENT_HEADER as usize + FRAME + 10] ^= 0x40;
        std::fs::write(&first, &bytes).unwrap();
        let err = Wal::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, WalError::Corrupt { offset, .. } if *offset == SEGMENT_HEADER),
            "{err}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn a_segment_of_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut wal = Wal::open(dir.path()).unwrap();
            append(&mut wal, 1, 1..3);
        }
        let seg = segment_files(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[12] = 9;
        std::fs::write(&seg, &bytes).unwrap();
        let err = Wal::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
    }

    #[test]
    fn pending_names_each_written_segment_once_and_the_dir_after_a_creation() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = Wal::open(dir.path()).unwrap();
        let p = payload(1);
        wal.append([(id(1, 1), &p[..])]).unwrap();
        wal.append([(id(1, 2), &p[..])]).unwrap();
        let pending = wal.take_pending();
        assert_eq!(pending.files.len(), 1);
        assert!(pending.dir.is_some());
        wal.append([(id(1, 3), &p[..])]).unwrap();
        let pending = wal.take_pending();
        assert_eq!(pending.files.len(), 1);
        assert!(pending.dir.is_none());
        assert!(wal.take_pending().is_empty());
    }
}
