//! The snapshot data files: `<raft dir>/snapshots/snapshot-<n>.json`, each the JSON
//! `ClusterState` of one stored snapshot, named by the snapshot's `data` record in sled
//! ([`crate::codec::DataFileRef`]: name, length, SHA-256).
//!
//! Why files: sled 0.34 writes a value larger than a quarter of its segment (128 KiB by default)
//! to its own file under `blobs/` and never fsyncs it (nor the `blobs/` directory); `flush`
//! syncs the main log only. A "flushed" snapshot of a large state could therefore be missing or
//! torn after a power loss while the log below it was already purged. Here the data is durable
//! before the record naming it is written: [`SnapshotDir::write`] writes a temporary file,
//! `sync_all`s it, renames it into place and fsyncs the directory.
//!
//! [`SnapshotDir::read`] checks the file against its reference (missing, torn, altered) and
//! refuses it with a [`DataFileError`] that says which, instead of decoding garbage.
//! [`SnapshotDir::open`] removes the temporary files a crash left; files no record names any more
//! are removed by [`SnapshotDir::remove_except`] once the newer record is durable.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::codec::DataFileRef;

/// The directory of the data files, inside the raft dir (next to sled's own files; sled only
/// touches `db`, `conf`, `blobs/` and `snap.*` there).
pub const DIR_NAME: &str = "snapshots";
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".json";
const TMP_SUFFIX: &str = ".tmp";

/// Why a data file cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// The record names a file that is not there.
    #[error(
        "snapshot data file {0} is missing (the stored snapshot names it; was the data dir \
         copied without it, or lost in a crash?)"
    )]
    Missing(PathBuf),
    /// The file is shorter or longer than the record says.
    #[error(
        "snapshot data file {path} is torn: {actual} bytes, the stored snapshot says {expected}"
    )]
    Length {
        /// The file.
        path: PathBuf,
        /// Its length on disk.
        actual: u64,
        /// The length the record names.
        expected: u64,
    },
    /// The file has the right length but other bytes.
    #[error("snapshot data file {0} is corrupt: its SHA-256 does not match the stored snapshot's")]
    Checksum(PathBuf),
    /// The record names something that is not a data file name (a damaged record).
    #[error("the stored snapshot names {0:?}, which is not a snapshot data file name")]
    BadName(String),
    /// The filesystem failed.
    #[error("snapshot data file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataFileError + '_ {
    move |source| DataFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The sequence number of a data file name (`snapshot-<n>.json`), `None` for any other name.
fn seq_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Fsyncs a directory, making the creation, rename or removal of its entries durable (no-op off
/// Unix, where a directory cannot be opened to sync it).
pub fn sync_dir(dir: &Path) -> Result<(), DataFileError> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The data files of one raft dir.
#[derive(Debug)]
pub struct SnapshotDir {
    path: PathBuf,
    /// Sequence number of the next file written (above every file found at open).
    next: AtomicU64,
}

impl SnapshotDir {
    /// Opens (creating it durably if needed) `<raft_dir>/snapshots` and removes the temporary
    /// files a crash left there.
    pub fn open(raft_dir: &Path) -> Result<Self, DataFileError> {
        let path = raft_dir.join(DIR_NAME);
        if !path.is_dir() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(&path).map_err(io_err(&path))?;
            sync_dir(raft_dir)?;
        }
        let mut last = 0;
        let mut removed = false;
        for name in Self::names(&path)? {
            if name.ends_with(TMP_SUFFIX) {
                let file = path.join(&name);
                std::fs::remove_file(&file).map_err(io_err(&file))?;
                tracing::info!(file = %file.display(), "removed an unfinished snapshot data file");
                removed = true;
            } else if let Some(seq) = seq_of(&name) {
                last = last.max(seq);
            }
        }
        if removed {
            sync_dir(&path)?;
        }
        Ok(Self {
            path,
            next: AtomicU64::new(last + 1),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn names(dir: &Path) -> Result<Vec<String>, DataFileError> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Writes `data` to a new data file, durably (temporary file, `sync_all`, rename, directory
    /// fsync), and returns the reference to store. Blocking: call it off the consensus runtime.
    pub fn write(&self, data: &[u8]) -> Result<DataFileRef, DataFileError> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{seq}{SUFFIX}");
        let tmp = self.path.join(format!("{name}{TMP_SUFFIX}"));
        let file = self.path.join(&name);
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            // The state holds secrets in clear: owner only (docs/security.md).
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()
        })();
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &file)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(DataFileError::Io {
                path: tmp,
                source: e,
            });
        }
        sync_dir(&self.path)?;
        Ok(DataFileRef {
            name,
            len: data.len() as u64,
            sha256: Sha256::digest(data).into(),
        })
    }

    /// Reads the data file `file` names, checked against its length and SHA-256. Blocking.
    pub fn read(&self, file: &DataFileRef) -> Result<Vec<u8>, DataFileError> {
        if seq_of(&file.name).is_none() {
            return Err(DataFileError::BadName(file.name.clone()));
        }
        let path = self.path.join(&file.name);
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataFileError::Missing(path))
            }
            Err(e) => return Err(DataFileError::Io { path, source: e }),
        };
        let actual = f.metadata().map_err(io_err(&path))?.len();
        if actual != file.len {
            return Err(DataFileError::Length {
                path,
                actual,
                expected: file.len,
            });
        }
        let capacity = usize::try_from(actual).unwrap_or(0);
        let mut data = Vec::with_capacity(capacity);
        f.read_to_end(&mut data).map_err(io_err(&path))?;
        if data.len() as u64 != file.len {
            return Err(DataFileError::Length {
                path,
                actual: data.len() as u64,
                expected: file.len,
            });
        }
        if Sha256::digest(&data).as_slice() != file.sha256 {
            return Err(DataFileError::Checksum(path));
        }
        Ok(data)
    }

    /// Removes the data file `name` (one no record names: a write whose record failed).
    pub fn remove(&self, name: &str) -> Result<(), DataFileError> {
        if seq_of(name).is_none() {
            return Err(DataFileError::BadName(name.to_owned()));
        }
        let file = self.path.join(name);
        std::fs::remove_file(&file).map_err(io_err(&file))
    }

    /// Removes every data file but `keep` (the one the durable record names; `None`: all of
    /// them), and returns how many were removed. Blocking.
    pub fn remove_except(&self, keep: Option<&str>) -> Result<usize, DataFileError> {
        let mut removed = 0;
        for name in Self::names(&self.path)? {
            if seq_of(&name).is_some() && Some(name.as_str()) != keep {
                let file = self.path.join(&name);
                std::fs::remove_file(&file).map_err(io_err(&file))?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.path)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_strictly() {
        assert_eq!(seq_of("snapshot-12.json"), Some(12));
        for bad in [
            "snapshot-.json",
            "snapshot-1.json.tmp",
            "snapshot--1.json",
            "snapshot-1.json/../x",
            "../snapshot-1.json",
            "snap.0001",
        ] {
            assert_eq!(seq_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_written_file_reads_back_and_the_next_one_gets_a_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotDir::open(dir.path()).unwrap();
        let a = files.write(b"{\"a\":1}").unwrap();
        let b = files.write(b"{}").unwrap();
        assert_ne!(a.name, b.name);
        assert_eq!(files.read(&a).unwrap(), b"{\"a\":1}");
        assert_eq!(files.read(&b).unwrap(), b"{}");
        // Reopened: numbering continues above what is there.
        let reopened = SnapshotDir::open(dir.path()).unwrap();
        let c = reopened.write(b"[]").unwrap();
        assert_eq!(seq_of(&c.name), Some(3));
        assert_eq!(reopened.remove_except(Some(&c.name)).unwrap(), 2);
        assert!(matches!(reopened.read(&a), Err(DataFileError::Missing(_))));
        assert_eq!(reopened.read(&c).unwrap(), b"[]");
    }

    #[test]
    fn a_reference_to_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotDir::open(dir.path()).unwrap();
        let mut r = files.write(b"{}").unwrap();
        r.name = "../snapshot-1.json".into();
        assert!(matches!(files.read(&r), Err(DataFileError::BadName(_))));
    }
}
