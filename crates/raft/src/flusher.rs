//! Making the log durable: segment syncs on the calling thread, sled flushes on one flusher
//! thread per log store.
//!
//! sled's `flush_async` runs `flush` on sled's global thread pool, whose queue wakes *every*
//! idle pool thread (`notify_all`, seven or more threads) for each task; `flush` itself hands
//! the sealed buffer's write to the same pool (a second wake-up of all of them). With a flush per
//! log append on every node, sled's pool threads took about a quarter of the coordinators' CPU
//! in the Raft write bench; this thread removes the first wake-up (their share fell from 23.7 %
//! to 20.5 %, plus 3.0 % for this thread; docs/benchmarks.md, "Issue 24: commit pipeline
//! (session 11)"). The second one is inside sled.
//!
//! The [`Flusher`] is one dedicated thread that calls sled's blocking `flush`: a request wakes
//! that thread only, and every request that arrived while a flush ran is answered by the next
//! single flush (group commit across appends, votes and purges). A request is answered only
//! after a flush that *started after it was made* succeeded, so everything written before the
//! request is durable when it is answered.
//!
//! The log's own segment files ([`crate::wal`], storage layout 3) are synced by
//! [`Flusher::sync_files`] **on the calling thread**: the consensus thread, inside the log
//! store's `append`. openraft 0.9's core waits for an append's flush before it does anything
//! else (`append_to_log` awaits the flush callback), so the consensus thread has nothing to do
//! during the `fdatasync` anyway, while handing it to another thread and back cost two thread
//! wake-ups per append on every node. Measured on the Raft write bench (64 clients through the
//! leader, alternated): a leader append went from 0.55–0.69 ms to 0.31–0.38 ms (of which the
//! `fdatasync` is 0.28–0.33 ms); writes/s rose 11–14 % in two alternated runs (16,100–17,000 →
//! 17,900–19,400, and in quieter minutes 18,000–19,700 → 19,600–21,600; docs/benchmarks.md,
//! "Issue 24: the sync on the consensus thread (session 13)"). A disk that
//! stalls holds the consensus thread as long as the flush. openraft's core waited for that flush
//! before as well (it sends no heartbeat and answers no vote meanwhile); what else runs on that
//! thread (applying committed entries, reading replication answers) now waits with it.
//!
//! Since session 15 this holds for followers' appends only. A leader's own appends are synced
//! by the flusher thread ([`Flusher::queue_files`]) while the consensus thread
//! replicates the same entries (the vendored openraft's patch, `vendor/README.md`; docs/raft.md,
//! "The leader's flush overlaps replication"): the two wake-ups cost less than the follower
//! round trip they overlap.
//!
//! [`FLUSH_ENV`] set to `thread` syncs the segment files on the flusher thread instead (each
//! file named by the requests it took synced once, and the directory when a segment was
//! created), and set to `sled` brings back `flush_async` for the sled flushes and the blocking
//! pool for the segment files: diagnostics for A/B measurements.

use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use crate::wal::Pending;

/// Environment switch: `sled` flushes through sled's own `flush_async` instead of the flusher
/// thread; `thread` syncs the log's segment files on the flusher thread instead of the calling
/// thread. Diagnostics for A/B measurements (docs/raft.md), not tuning knobs.
pub const FLUSH_ENV: &str = "VARPULIS_RAFT_FLUSH";

type Reply = oneshot::Sender<Result<(), String>>;

/// One flush request. A sled flush carries its own handle on the database: the thread holds none
/// between requests, so once the stores are dropped the database is closed and can be opened
/// again in the same process (a node restarted in place).
enum Request {
    /// Flush sled.
    Db { db: sled::Db, reply: Reply },
    /// `fdatasync` these log segments (and fsync their directory).
    Files { pending: Pending, reply: Reply },
}

/// Flushes one sled database on request (cheap to clone; the thread ends with the last clone).
#[derive(Debug, Clone)]
pub struct Flusher {
    db: sled::Db,
    /// `None`: flush with sled's `flush_async` ([`FLUSH_ENV`]`=sled`, or no thread could start).
    requests: Option<mpsc::Sender<Request>>,
    /// Whether segment files are synced on the calling thread (the default) rather than
    /// handed to another thread.
    files_inline: bool,
}

impl Flusher {
    /// Starts the flusher thread of `db` (unless [`FLUSH_ENV`] asks for sled's own flush).
    pub fn start(db: &sled::Db) -> Self {
        let mode = std::env::var(FLUSH_ENV).unwrap_or_default();
        let mode = mode.trim();
        if mode.eq_ignore_ascii_case("sled") {
            return Self::sled_pool(db).with_files_inline(false);
        }
        let files_inline = !mode.eq_ignore_ascii_case("thread");
        let (tx, rx) = mpsc::channel::<Request>();
        let started = std::thread::Builder::new()
            .name("raft-flush".into())
            .spawn(move || run(&rx));
        match started {
            Ok(_) => Self {
                db: db.clone(),
                requests: Some(tx),
                files_inline,
            },
            Err(err) => {
                tracing::warn!("cannot start the flusher thread ({err}); using sled's flush");
                Self::sled_pool(db)
            }
        }
    }

    /// A flusher that uses sled's `flush_async` (its thread pool).
    pub fn sled_pool(db: &sled::Db) -> Self {
        Self {
            db: db.clone(),
            requests: None,
            files_inline: true,
        }
    }

    /// The same flusher, syncing segment files on the calling thread (`true`) or on another
    /// one.
    pub fn with_files_inline(mut self, inline: bool) -> Self {
        self.files_inline = inline;
        self
    }

    /// Makes every write made to the database before this call durable.
    pub async fn flush(&self) -> Result<(), String> {
        let Some(requests) = &self.requests else {
            return self
                .db
                .flush_async()
                .await
                .map(drop)
                .map_err(|e| e.to_string());
        };
        let (reply, answer) = oneshot::channel();
        let request = Request::Db {
            db: self.db.clone(),
            reply,
        };
        if requests.send(request).is_err() {
            return Err("the flusher thread stopped".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Err("the flusher thread stopped".into()))
    }

    /// Makes the log segments written by an append durable (`fdatasync`): on the calling
    /// thread (blocking it for the sync; see the module docs), or with [`FLUSH_ENV`] on the
    /// flusher thread (without the thread, on the blocking pool).
    pub async fn sync_files(&self, pending: Pending) -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        if self.files_inline {
            return pending
                .sync()
                .map_err(|e| format!("cannot sync the raft log: {e}"));
        }
        self.sync_files_elsewhere(pending).await
    }

    /// Hands the sync of `pending` to the flusher thread **now** and returns its answer to wait
    /// for; `Err(pending)` when there is no flusher thread. The thread serves requests in the
    /// order they were queued, in rounds, so an answer also means that every sync queued before
    /// it is done: a leader's own appends rely on it (their callbacks count the whole log up to
    /// their last entry as durable; docs/raft.md, "The leader's flush overlaps replication").
    pub fn queue_files(&self, pending: Pending) -> Result<SyncAnswer, Pending> {
        let Some(requests) = &self.requests else {
            return Err(pending);
        };
        let (reply, answer) = oneshot::channel();
        match requests.send(Request::Files { pending, reply }) {
            Ok(()) => Ok(SyncAnswer(answer)),
            Err(mpsc::SendError(Request::Files { pending, .. })) => Err(pending),
            // `send` hands back the request it was given.
            Err(mpsc::SendError(Request::Db { .. })) => {
                unreachable!("a refused Files request comes back as Files")
            }
        }
    }

    /// As [`Flusher::sync_files`], but never on the calling thread: on the flusher thread (or
    /// the blocking pool without it).
    async fn sync_files_elsewhere(&self, pending: Pending) -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        match self.queue_files(pending) {
            Ok(answer) => answer.wait().await,
            // No flusher thread (or it is gone): the blocking pool.
            Err(pending) => tokio::task::spawn_blocking(move || pending.sync())
                .await
                .map_err(|e| format!("log sync task: {e}"))?
                .map_err(|e| format!("cannot sync the raft log: {e}")),
        }
    }
}

/// The answer to a sync queued with [`Flusher::queue_files`].
#[derive(Debug)]
pub struct SyncAnswer(oneshot::Receiver<Result<(), String>>);

impl SyncAnswer {
    /// Waits until the sync (and every sync queued before it) is done.
    pub async fn wait(self) -> Result<(), String> {
        self.0
            .await
            .unwrap_or_else(|_| Err("the flusher thread stopped".into()))
    }
}

/// The flusher thread: waits for a request, takes every request queued meanwhile, does the work
/// once (one sled flush for all sled requests; one `fdatasync` per distinct segment file) and
/// answers them all (requests made meanwhile wait for the next round). Ends when every
/// [`Flusher`] is dropped.
fn run(requests: &mpsc::Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut db: Option<sled::Db> = None;
        let mut db_replies = Vec::new();
        let mut files: Vec<Arc<std::fs::File>> = Vec::new();
        let mut dir: Option<Arc<std::fs::File>> = None;
        let mut file_replies = Vec::new();
        for request in std::iter::once(first).chain(requests.try_iter()) {
            match request {
                Request::Db { db: d, reply } => {
                    db.get_or_insert(d);
                    db_replies.push(reply);
                }
                Request::Files { pending, reply } => {
                    for f in pending.files {
                        if !files.iter().any(|g| Arc::ptr_eq(g, &f)) {
                            files.push(f);
                        }
                    }
                    dir = dir.or(pending.dir);
                    file_replies.push(reply);
                }
            }
        }
        if !file_replies.is_empty() {
            let result = Pending { files, dir }
                .sync()
                .map_err(|e| format!("cannot sync the raft log: {e}"));
            for reply in file_replies {
                // A caller that went away (shutdown) needs no answer.
                let _ = reply.send(result.clone());
            }
        }
        if let Some(db) = db {
            let result = db.flush().map(drop).map_err(|e| e.to_string());
            // The database handle goes before the answers: an answered caller may close the
            // database and open it again at once.
            drop(db);
            for reply in db_replies {
                let _ = reply.send(result.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> sled::Db {
        sled::Config::new().path(dir).open().expect("open sled")
    }

    #[tokio::test]
    async fn a_flushed_write_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let db = open(dir.path());
            let flusher = Flusher::start(&db);
            db.insert(b"k", b"v".to_vec()).expect("insert");
            flusher.flush().await.expect("flush");
        }
        let db = open(dir.path());
        assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_are_all_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let flusher = Flusher::start(&db);
        let mut tasks = Vec::new();
        for i in 0u32..64 {
            let (db, flusher) = (db.clone(), flusher.clone());
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), b"x".to_vec()).expect("insert");
                flusher.flush().await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(()));
        }
        let pool = Flusher::sled_pool(&db);
        assert_eq!(pool.flush().await, Ok(()));
    }

    /// The three ways to sync segment files: on the caller's thread (the default), on the
    /// flusher thread, on the blocking pool. Each reports success, and a failed `fdatasync`
    /// (here of `/dev/null`, which refuses it) as an error rather than as durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segment_syncs_succeed_or_fail_in_every_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        let segment = Arc::new(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(dir.path().join("seg"))
                .expect("segment"),
        );
        let refuses = Arc::new(std::fs::File::open("/dev/null").expect("/dev/null"));
        let pending = |file: &Arc<std::fs::File>| Pending {
            files: vec![file.clone()],
            dir: None,
        };
        let modes = [
            ("inline", Flusher::start(&db)),
            ("thread", Flusher::start(&db).with_files_inline(false)),
            ("pool", Flusher::sled_pool(&db).with_files_inline(false)),
        ];
        for (mode, flusher) in modes {
            assert_eq!(
                flusher.sync_files(pending(&segment)).await,
                Ok(()),
                "{mode}"
            );
            let failed = flusher.sync_files(pending(&refuses)).await;
            assert!(
                failed.is_err_and(|e| e.contains("cannot sync the raft log")),
                "{mode}"
            );
            let nothing = Pending {
                files: Vec::new(),
                dir: None,
            };
            assert_eq!(flusher.sync_files(nothing).await, Ok(()), "{mode}");
        }
    }
}
