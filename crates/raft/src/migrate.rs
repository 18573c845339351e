//! Opening a Raft database written in an older storage format, and refusing a newer one.
//!
//! The `format` key of `raft_meta` ([`KEY_FORMAT`]) names the format of the whole database:
//! - absent: written before issue 24 (JSON records, version 1) or never written at all: every
//!   record is rewritten in version 2 ([`crate::codec`]), in place, then the marker is set;
//! - [`FORMAT_BINARY`]: binary records, log in sled: nothing to do here (the log store then moves
//!   the log into segment files, `log_store.rs`);
//! - `LAYOUT_WAL` (3): current, nothing to do;
//! - anything else: written by a newer binary: the open fails with [`MigrateError::Newer`],
//!   nothing is touched.
//!
//! Crash safety: a record is only ever replaced by the same value in the new encoding, readers
//! take either version record by record, and the marker is written (and flushed) only after every
//! converted record was flushed. A crash in the middle leaves a mixed database that reads
//! correctly and is converted again (the rest of it) at the next open.

use crate::codec::{self, CodecError, Format, FORMAT_BINARY};
use crate::layout::{
    KEY_CLUSTER_ID, KEY_COMMITTED, KEY_DATA, KEY_FORMAT, KEY_LAST_PURGED, KEY_META, KEY_VOTE,
    LAYOUT_WAL, LOG_TREE, META_TREE, SNAPSHOT_TREE,
};

/// Log entries converted per sled batch.
const BATCH: usize = 1024;

/// Why a database could not be brought to the current format.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The marker names a format this binary does not know.
    #[error(
        "the raft data dir is in storage format version {0}, newer than this binary's ({LAYOUT_WAL}); \
         refusing to open it (run the newer varpulis, or restore a backup with `varpulis snapshot restore`)"
    )]
    Newer(u8),
    /// The marker is not one byte.
    #[error("the raft data dir's format marker is malformed ({0} bytes)")]
    BadMarker(usize),
    /// A record could not be read in any known format.
    #[error("cannot migrate {tree} record {key}: {source}")]
    Record {
        /// The sled tree.
        tree: &'static str,
        /// The record's key (hex).
        key: String,
        /// What was wrong with it.
        source: CodecError,
    },
    /// A JSON body could not be encoded again (not expected: it was just decoded).
    #[error("cannot encode {0}")]
    Encode(String),
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
}

/// What [`ensure_current`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Records rewritten from version 1 (0: the database already was current, or empty).
    pub records: usize,
    /// The layout the database is in now: [`FORMAT_BINARY`] (log still in sled) or
    /// `LAYOUT_WAL`.
    pub layout: u8,
}

/// Brings `db` to the current storage format (see the module docs), or refuses a newer one.
pub fn ensure_current(db: &sled::Db) -> Result<Migrated, MigrateError> {
    let meta = db.open_tree(META_TREE)?;
    if let Some(marker) = meta.get(KEY_FORMAT)? {
        return match marker.as_ref() {
            [v @ (FORMAT_BINARY | LAYOUT_WAL)] => Ok(Migrated {
                records: 0,
                layout: *v,
            }),
            [v] => Err(MigrateError::Newer(*v)),
            other => Err(MigrateError::BadMarker(other.len())),
        };
    }
    let mut records = migrate_log(db)?;
    records += migrate_meta(&meta)?;
    records += migrate_snapshot(db)?;
    // Every converted record durable before the marker says so.
    db.flush()?;
    meta.insert(KEY_FORMAT, &[FORMAT_BINARY])?;
    db.flush()?;
    if records > 0 {
        tracing::info!(
            records,
            "raft data dir migrated from the JSON storage format (version 1) to version {FORMAT_BINARY}"
        );
    }
    Ok(Migrated {
        records,
        layout: FORMAT_BINARY,
    })
}

fn record_err(tree: &'static str, key: &[u8], source: CodecError) -> MigrateError {
    MigrateError::Record {
        tree,
        key: hex::encode(key),
        source,
    }
}

/// True when `value` needs converting (version 1); an unknown version is an error.
fn is_json(tree: &'static str, key: &[u8], value: &[u8]) -> Result<bool, MigrateError> {
    match codec::format_of(value) {
        Ok(Format::Json) => Ok(true),
        Ok(Format::Binary) => Ok(false),
        Err(e) => Err(record_err(tree, key, e)),
    }
}

fn migrate_log(db: &sled::Db) -> Result<usize, MigrateError> {
    let log = db.open_tree(LOG_TREE)?;
    let mut converted = 0;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for item in log.iter() {
        let (key, value) = item?;
        if !is_json(LOG_TREE, &key, &value)? {
            continue;
        }
        let entry = codec::decode_entry(&value).map_err(|e| record_err(LOG_TREE, &key, e))?;
        let bytes = codec::encode_entry(&entry)
            .map_err(|e| MigrateError::Encode(format!("log entry {}: {e}", entry.log_id)))?;
        batch.insert(key, bytes);
        pending += 1;
        if pending == BATCH {
            log.apply_batch(std::mem::take(&mut batch))?;
            converted += pending;
            pending = 0;
        }
    }
    if pending > 0 {
        log.apply_batch(batch)?;
        converted += pending;
    }
    Ok(converted)
}

/// Re-encodes one metadata record (version 1 in, version 2 out).
type Recode = fn(&[u8]) -> Result<Vec<u8>, CodecError>;

fn migrate_meta(meta: &sled::Tree) -> Result<usize, MigrateError> {
    let mut batch = sled::Batch::default();
    let mut converted = 0;
    let mut convert = |key: &'static [u8], f: Recode| -> Result<(), MigrateError> {
        if let Some(value) = meta.get(key)? {
            if is_json(META_TREE, key, &value)? {
                let bytes = f(&value).map_err(|e| record_err(META_TREE, key, e))?;
                batch.insert(key, bytes);
                converted += 1;
            }
        }
        Ok(())
    };
    convert(KEY_VOTE, |v| {
        Ok(codec::encode_vote(&codec::decode_vote(v)?))
    })?;
    convert(KEY_COMMITTED, |v| {
        Ok(codec::encode_opt_log_id(&codec::decode_opt_log_id(v)?))
    })?;
    convert(KEY_LAST_PURGED, |v| {
        Ok(codec::encode_log_id(&codec::decode_log_id(v)?))
    })?;
    convert(KEY_CLUSTER_ID, |v| {
        Ok(codec::encode_str(&codec::decode_str(v)?))
    })?;
    meta.apply_batch(batch)?;
    Ok(converted)
}

fn migrate_snapshot(db: &sled::Db) -> Result<usize, MigrateError> {
    let tree = db.open_tree(SNAPSHOT_TREE)?;
    let (Some(meta), Some(data)) = (tree.get(KEY_META)?, tree.get(KEY_DATA)?) else {
        // No snapshot, or only the older `current` key (JSON, read as such and replaced by the
        // next snapshot).
        return Ok(0);
    };
    let mut batch = sled::Batch::default();
    let mut converted = 0;
    if is_json(SNAPSHOT_TREE, KEY_META, &meta)? {
        let decoded = codec::decode_snapshot_meta(&meta)
            .map_err(|e| record_err(SNAPSHOT_TREE, KEY_META, e))?;
        let bytes = codec::encode_snapshot_meta(&decoded)
            .map_err(|e| MigrateError::Encode(format!("snapshot meta: {e}")))?;
        batch.insert(KEY_META, bytes);
        converted += 1;
    }
    // A reference to a data file (version 3) has nothing to convert.
    if data.first() != Some(&codec::FORMAT_SNAPSHOT_FILE)
        && is_json(SNAPSHOT_TREE, KEY_DATA, &data)?
    {
        batch.insert(KEY_DATA, codec::encode_snapshot_data(&data));
        converted += 1;
    }
    // Meta and data in one batch: a crash leaves both converted or neither.
    tree.apply_batch(batch)?;
    Ok(converted)
}
