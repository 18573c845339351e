//! Making the log durable: one flusher thread per log store.
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
//! The log's own segment files ([`crate::wal`], storage layout 3) go through the same thread:
//! [`Flusher::sync_files`] hands it the files an append wrote, and it `fdatasync`s each file named
//! by the requests it took (once, however many requests named it) and the directory when a
//! segment was created, without touching sled. A request waits only for its own kind of work.
//!
//! [`FLUSH_ENV`] set to `sled` brings back `flush_async` for the sled flushes (a diagnostic for
//! A/B measurements).

use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use crate::wal::Pending;

/// Environment switch: `sled` flushes through sled's own `flush_async` instead of the flusher
/// thread. A diagnostic for A/B measurements (docs/raft.md), not a tuning knob.
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
}

impl Flusher {
    /// Starts the flusher thread of `db` (unless [`FLUSH_ENV`] asks for sled's own flush).
    pub fn start(db: &sled::Db) -> Self {
        let sled_pool = std::env::var(FLUSH_ENV)
            .map(|v| v.trim().eq_ignore_ascii_case("sled"))
            .unwrap_or(false);
        if sled_pool {
            return Self::sled_pool(db);
        }
        let (tx, rx) = mpsc::channel::<Request>();
        let started = std::thread::Builder::new()
            .name("raft-flush".into())
            .spawn(move || run(&rx));
        match started {
            Ok(_) => Self {
                db: db.clone(),
                requests: Some(tx),
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
        }
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

    /// Makes the log segments written by an append durable (`fdatasync`, on the flusher thread;
    /// without the thread, on the blocking pool).
    pub async fn sync_files(&self, pending: Pending) -> Result<(), String> {
        if pending.is_empty() {
            return Ok(());
        }
        let Some(requests) = &self.requests else {
            return tokio::task::spawn_blocking(move || pending.sync())
                .await
                .map_err(|e| format!("log sync task: {e}"))?
                .map_err(|e| format!("cannot sync the raft log: {e}"));
        };
        let (reply, answer) = oneshot::channel();
        if requests.send(Request::Files { pending, reply }).is_err() {
            return Err("the flusher thread stopped".into());
        }
        answer
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
}
