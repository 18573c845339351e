//! `--state-dir`: each pipeline's deploy request and last checkpoint on local disk, so a worker
//! restarted with the same directory resumes its pipelines' state (docs/worker.md,
//! "Local state").
//!
//! Layout (directory 0700, files 0600, every write atomic: a temporary file, `fsync`, rename,
//! `fsync` of the directory):
//!
//! ```text
//! DIR/LOCK                       held (flock) while a worker uses DIR
//! DIR/pipelines/<key>/deploy.json     the deploy request, without its checkpoint
//! DIR/pipelines/<key>/checkpoint.json the last checkpoint (the API's `Checkpoint` JSON)
//! ```
//!
//! `<key>` is the pipeline id when it is made of `[A-Za-z0-9._-]` (and not `.`/`..`), else
//! `x` followed by the id's bytes in hex; the id itself is read back from `deploy.json`.
//! Only I/O lives here: what to save and when is `persistence.rs`'s.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use varpulis_api::worker::{Checkpoint, DeployPipelineRequest};

const DEPLOY_FILE: &str = "deploy.json";
const CHECKPOINT_FILE: &str = "checkpoint.json";

/// An opened (and locked) state directory.
#[derive(Debug)]
pub struct StateDir {
    root: PathBuf,
    /// Keeps the exclusive lock for as long as the worker runs.
    _lock: File,
}

/// One pipeline read back from the directory.
#[derive(Debug)]
pub struct StoredPipeline {
    /// The deploy request, with `checkpoint` set to the stored checkpoint (if any).
    pub request: DeployPipelineRequest,
    /// Where it was read from (for messages).
    pub path: PathBuf,
}

impl StateDir {
    /// Creates `root` (0700) if needed and locks it; fails when another process holds it.
    pub fn open(root: &Path) -> io::Result<Self> {
        create_private_dir(root)?;
        create_private_dir(&root.join("pipelines"))?;
        let lock_path = root.join("LOCK");
        let lock = private_options()
            .read(true)
            .write(true)
            .truncate(false)
            .open(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "state dir {} is in use by another worker (lock {} is held)",
                        root.display(),
                        lock_path.display()
                    ),
                ))
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Self {
            root: root.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join("pipelines").join(key_of(id))
    }

    /// Records a deployed pipeline (its checkpoint is not kept here; see
    /// [`StateDir::save_checkpoint`]). A stored checkpoint of an earlier deploy of the same id
    /// stays unless the source changed.
    pub fn save_deploy(&self, id: &str, req: &DeployPipelineRequest) -> io::Result<()> {
        let dir = self.dir_of(id);
        create_private_dir(&dir)?;
        if let Ok(old) = read_json::<DeployPipelineRequest>(&dir.join(DEPLOY_FILE)) {
            if old.source != req.source {
                remove_if_present(&dir.join(CHECKPOINT_FILE))?;
            }
        }
        let stored = DeployPipelineRequest {
            id: Some(id.to_owned()),
            checkpoint: None,
            paused: false,
            ..req.clone()
        };
        write_atomic(&dir, DEPLOY_FILE, &to_json(&stored)?)
    }

    /// Replaces the pipeline's stored checkpoint (ignored when the pipeline is not recorded).
    pub fn save_checkpoint(&self, id: &str, cp: &Checkpoint) -> io::Result<()> {
        let dir = self.dir_of(id);
        if !dir.join(DEPLOY_FILE).exists() {
            return Ok(());
        }
        write_atomic(&dir, CHECKPOINT_FILE, &to_json(cp)?)
    }

    /// The stored checkpoint of `id` if its recorded source is `source`.
    pub fn checkpoint_for(&self, id: &str, source: &str) -> io::Result<Option<Checkpoint>> {
        let dir = self.dir_of(id);
        let deploy = match read_json::<DeployPipelineRequest>(&dir.join(DEPLOY_FILE)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if deploy.source != source || deploy.id.as_deref() != Some(id) {
            return Ok(None);
        }
        match read_json::<Checkpoint>(&dir.join(CHECKPOINT_FILE)) {
            Ok(cp) => Ok(Some(cp)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets a pipeline (no error when it was not recorded).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.dir_of(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.root.join("pipelines")),
        }
    }

    /// The ids of every readable recorded pipeline.
    pub fn ids(&self) -> io::Result<Vec<String>> {
        Ok(self
            .load_all()?
            .into_iter()
            .filter_map(|r| r.ok().and_then(|p| p.request.id))
            .collect())
    }

    /// Every recorded pipeline, sorted by id; an entry that cannot be read is an `Err` naming
    /// its file (it is left on disk for the operator).
    pub fn load_all(&self) -> io::Result<Vec<Result<StoredPipeline, String>>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join("pipelines"))? {
            let dir = entry?.path();
            if !dir.is_dir() {
                continue;
            }
            out.push(load_one(&dir));
        }
        out.sort_by_key(sort_key);
        Ok(out)
    }
}

fn sort_key(r: &Result<StoredPipeline, String>) -> String {
    match r {
        Ok(p) => p.request.id.clone().unwrap_or_default(),
        Err(e) => e.clone(),
    }
}

fn load_one(dir: &Path) -> Result<StoredPipeline, String> {
    let deploy_path = dir.join(DEPLOY_FILE);
    let mut request: DeployPipelineRequest =
        read_json(&deploy_path).map_err(|e| format!("{}: {e}", deploy_path.display()))?;
    let Some(id) = request.id.as_deref() else {
        return Err(format!("{}: no `id`", deploy_path.display()));
    };
    if dir.file_name().and_then(|n| n.to_str()) != Some(key_of(id).as_str()) {
        return Err(format!(
            "{}: id `{id}` does not match its directory",
            deploy_path.display()
        ));
    }
    let cp_path = dir.join(CHECKPOINT_FILE);
    request.checkpoint = match read_json::<Checkpoint>(&cp_path) {
        Ok(cp) => Some(cp),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", cp_path.display())),
    };
    Ok(StoredPipeline {
        request,
        path: dir.to_owned(),
    })
}

/// The directory name of a pipeline id (see the module docs).
pub fn key_of(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && !id.starts_with('x')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if plain {
        id.to_owned()
    } else {
        let mut hex = String::with_capacity(1 + 2 * id.len());
        hex.push('x');
        for b in id.bytes() {
            hex.push_str(&format!("{b:02x}"));
        }
        hex
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(io::Error::other)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<T> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Writes `dir/name` so that a crash leaves either the old or the new content.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = private_options().write(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    let _ = dir;
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(source: &str) -> DeployPipelineRequest {
        DeployPipelineRequest {
            name: "n".into(),
            source: source.into(),
            connectors: Default::default(),
            checkpoint: None,
            id: None,
            epoch: None,
            routes: None,
            paused: true,
        }
    }

    fn cp(events: u64) -> Checkpoint {
        Checkpoint {
            pipeline_id: "p".into(),
            events_processed: events,
            version: 1,
            state: "AAAA".into(),
        }
    }

    #[test]
    fn ids_map_to_safe_directory_names() {
        assert_eq!(key_of("echo-5a9803f5-r0-e12"), "echo-5a9803f5-r0-e12");
        assert_eq!(key_of(".."), "x2e2e");
        assert_eq!(key_of("a/b"), "x612f62");
        // `x…` ids are hex-encoded too, so no plain id collides with an encoded one.
        assert_eq!(key_of("x1"), "x7831");
        assert_ne!(key_of("x2e2e"), key_of(".."));
    }

    #[test]
    fn a_pipeline_round_trips_with_its_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.save_deploy("../evil", &req("stream A = B")).unwrap();
        dir.save_checkpoint("../evil", &cp(7)).unwrap();
        dir.save_checkpoint("unknown", &cp(1)).unwrap();
        let all = dir.load_all().unwrap();
        assert_eq!(all.len(), 1);
        let p = all[0].as_ref().unwrap();
        assert_eq!(p.request.id.as_deref(), Some("../evil"));
        assert!(!p.request.paused, "stored pipelines restart running");
        assert_eq!(p.request.checkpoint.as_ref().unwrap().events_processed, 7);
        assert_eq!(
            dir.checkpoint_for("../evil", "stream A = B")
                .unwrap()
                .unwrap()
                .events_processed,
            7
        );
        assert!(dir.checkpoint_for("../evil", "other").unwrap().is_none());
        dir.remove("../evil").unwrap();
        dir.remove("../evil").unwrap();
        assert!(dir.load_all().unwrap().is_empty());
    }

    #[test]
    fn a_new_source_drops_the_old_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.save_deploy("p", &req("v1")).unwrap();
        dir.save_checkpoint("p", &cp(3)).unwrap();
        dir.save_deploy("p", &req("v1")).unwrap();
        assert!(dir.checkpoint_for("p", "v1").unwrap().is_some());
        dir.save_deploy("p", &req("v2")).unwrap();
        assert!(dir.checkpoint_for("p", "v2").unwrap().is_none());
    }

    #[test]
    fn a_second_worker_cannot_open_the_same_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = StateDir::open(tmp.path()).unwrap();
        let err = StateDir::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn unreadable_entries_are_reported_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        dir.save_deploy("good", &req("s")).unwrap();
        dir.save_deploy("bad", &req("s")).unwrap();
        fs::write(
            tmp.path().join("pipelines/bad/checkpoint.json"),
            b"{not json",
        )
        .unwrap();
        let all = dir.load_all().unwrap();
        assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 1);
        let err = all.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(err.contains("checkpoint.json"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("state");
        let dir = StateDir::open(&root).unwrap();
        dir.save_deploy("p", &req("s")).unwrap();
        dir.save_checkpoint("p", &cp(1)).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("pipelines/p")), 0o700);
        assert_eq!(mode(&root.join("pipelines/p/deploy.json")), 0o600);
        assert_eq!(mode(&root.join("pipelines/p/checkpoint.json")), 0o600);
    }
}
