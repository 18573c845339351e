//! The thread a pipeline's engine runs on, fed through a bounded queue.
//!
//! Engine work is CPU-bound and may spin for a whole step budget; run on the async reactor it
//! would stall every request of the worker (`/health` included). Each pipeline therefore owns
//! one OS thread that takes closures from a bounded queue and runs them in order; async
//! callers await the answer. A full queue makes callers wait (backpressure), one slow pipeline
//! never delays another, and jobs whose caller is gone (a timed-out request) are skipped.

use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Stack of a pipeline thread: evaluation is recursive (nested expressions, user functions up
/// to the runtime's recursion limit), so more than tokio's 2 MiB default.
const STACK_SIZE: usize = 8 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecError {
    /// The thread is gone (the pipeline was stopped) or the job panicked.
    Stopped,
}

/// A pipeline's engine thread and the sending end of its queue.
#[derive(Debug)]
pub struct Executor {
    /// `None` once closed: the thread ends after the jobs already queued.
    tx: Mutex<Option<mpsc::Sender<Job>>>,
}

impl Executor {
    /// Starts the thread (named `name`) with a queue of `capacity` jobs.
    pub fn start(name: String, capacity: usize) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Job>(capacity.max(1));
        std::thread::Builder::new()
            .name(name)
            .stack_size(STACK_SIZE)
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    // A panic is a bug in the engine; the pipeline keeps serving the next jobs
                    // (its engine lock recovers from poisoning) and the caller gets an error.
                    if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!(
                            thread = ?std::thread::current().name(),
                            "pipeline job panicked"
                        );
                    }
                }
            })?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
        })
    }

    /// Runs `f` on the thread after the jobs queued before it and returns its result. Waits
    /// while the queue is full. `f` is skipped when this future is dropped before `f` starts.
    pub async fn run<R, F>(&self, f: F) -> Result<R, ExecError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let sender = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(ExecError::Stopped)?;
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(f());
        });
        sender.send(job).await.map_err(|_| ExecError::Stopped)?;
        answer.await.map_err(|_| ExecError::Stopped)
    }

    /// Stops taking jobs; the thread ends once the queued ones ran.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_run_in_order_off_the_caller_thread() {
        let ex = Executor::start("t-exec".into(), 2).unwrap();
        let caller = std::thread::current().id();
        let (a, b) = tokio::join!(
            ex.run(move || (1, std::thread::current().id() != caller)),
            ex.run(|| 2)
        );
        assert_eq!(a.unwrap(), (1, true));
        assert_eq!(b.unwrap(), 2);
        ex.close();
        assert_eq!(ex.run(|| 3).await, Err(ExecError::Stopped));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let ex = Executor::start("t-panic".into(), 2).unwrap();
        let r: Result<(), _> = ex.run(|| panic!("boom")).await;
        assert_eq!(r, Err(ExecError::Stopped));
        assert_eq!(ex.run(|| 7).await, Ok(7));
    }

    #[tokio::test]
    async fn an_abandoned_job_is_skipped() {
        let ex = std::sync::Arc::new(Executor::start("t-skip".into(), 4).unwrap());
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Occupy the thread, then queue a job and give up on it before it starts.
        let busy = {
            let ex = ex.clone();
            tokio::spawn(async move {
                ex.run(|| std::thread::sleep(Duration::from_millis(300)))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let flag = ran.clone();
        let skipped = ex.run(move || flag.store(true, std::sync::atomic::Ordering::SeqCst));
        assert!(tokio::time::timeout(Duration::from_millis(20), skipped)
            .await
            .is_err());
        busy.await.unwrap().unwrap();
        assert_eq!(ex.run(|| ()).await, Ok(()));
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }
}
