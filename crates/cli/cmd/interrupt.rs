//! SIGINT during `varpulis run`: the replay stops after the event in hand, flushes every output
//! computed so far and exits with status 130. When the signal comes while the replay waits for
//! input (a pipe on stdin), everything computed is already flushed (the replay flushes before any
//! read that may block), so the process exits at once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

const BUSY: u8 = 0;
const READING: u8 = 1;
const STOP: u8 = 2;
const EXITING: u8 = 3;

/// Shared between the replay loop and the signal thread.
pub struct Interrupt {
    state: AtomicU8,
}

impl Interrupt {
    /// Installs the SIGINT handler (Unix; elsewhere the default handling stays).
    pub fn install() -> Arc<Interrupt> {
        let me = Arc::new(Interrupt {
            state: AtomicU8::new(BUSY),
        });
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = runtime {
                // Registered here, before the replay starts, so no early SIGINT is missed.
                let sig = rt.block_on(async { signal(SignalKind::interrupt()) });
                if let Ok(mut sig) = sig {
                    let me2 = me.clone();
                    std::thread::spawn(move || {
                        rt.block_on(async move {
                            while sig.recv().await.is_some() {
                                me2.on_signal();
                            }
                        })
                    });
                }
            }
        }
        me
    }

    fn on_signal(&self) {
        loop {
            match self.state.load(Ordering::SeqCst) {
                BUSY => {
                    if self
                        .state
                        .compare_exchange(BUSY, STOP, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        return;
                    }
                }
                READING => {
                    if self
                        .state
                        .compare_exchange(READING, EXITING, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        // Everything computed was flushed before the read.
                        std::process::exit(130);
                    }
                }
                _ => return,
            }
        }
    }

    /// Whether a SIGINT asked the replay to stop.
    pub fn stop_requested(&self) -> bool {
        self.state.load(Ordering::SeqCst) == STOP
    }

    /// Before a read that may block (outputs flushed): a SIGINT now exits at once. `false`:
    /// stop instead (a SIGINT came meanwhile).
    pub fn before_read(&self) -> bool {
        self.state
            .compare_exchange(BUSY, READING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// After that read: back to processing. If the signal thread is exiting the process, this
    /// thread must not write anything more: it waits for the exit.
    pub fn after_read(&self) {
        if self
            .state
            .compare_exchange(READING, BUSY, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
            && self.state.load(Ordering::SeqCst) == EXITING
        {
            loop {
                std::thread::park();
            }
        }
    }
}
