//! Hand-over of a pipeline to its next version (the last step of a rolling update): the
//! state moves, the old pipeline forwards every later event and checkpoint, and the sources
//! switch at the same point, so no input is processed by both versions or by neither.
//!
//! Hand-overs take both engine locks (old, then new); they are serialized per process so two
//! in opposite directions cannot deadlock. They run on the old pipeline's engine thread.

use super::{Pipeline, SourceSwitch};
use crate::error::WorkerError;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

/// One hand-over at a time (lock order: this, then the old engine, then the new one).
static HANDOVERS: Mutex<()> = Mutex::new(());

/// What a hand-over did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOver {
    /// Events the old pipeline had processed.
    pub events_processed: u64,
    /// It was handed over to the same pipeline before (nothing changed).
    pub already: bool,
    /// What happened to the sources.
    pub sources: SourceSwitch,
}

impl Pipeline {
    /// Hands this pipeline over to `to` on its engine thread (see [`Pipeline::handover_now`]).
    pub async fn handover_to(
        self: &Arc<Self>,
        to: &Arc<Pipeline>,
        keep_state: bool,
    ) -> Result<HandedOver, WorkerError> {
        let (from, to) = (self.clone(), to.clone());
        self.on_engine_thread(move || from.handover_now(&to, keep_state))
            .await?
            .map_err(WorkerError::BadRequest)
    }

    /// Under both engine locks: optionally moves the engine state and event count into `to`,
    /// makes this pipeline forward every later event and checkpoint to `to`, and switches the
    /// sources ([`SourceSwitch`]). Blocks while either engine runs: call it off the reactor.
    pub fn handover_now(&self, to: &Arc<Pipeline>, keep_state: bool) -> Result<HandedOver, String> {
        if std::ptr::eq(self, Arc::as_ptr(to)) {
            return Err("a pipeline cannot hand over to itself".into());
        }
        let _one = HANDOVERS.lock().unwrap_or_else(|p| p.into_inner());
        let engine = self.lock_engine();
        let events_processed = self.counters.events_in.load(Ordering::Relaxed);
        if let Some(current) = self.forward_target() {
            return if Arc::ptr_eq(&current, to) {
                Ok(HandedOver {
                    events_processed,
                    already: true,
                    sources: SourceSwitch::Unchanged,
                })
            } else {
                Err(format!("already handed over to '{}'", current.id))
            };
        }
        let sources = {
            let mut target = to.lock_engine();
            if keep_state {
                let state = engine.engine.checkpoint()?;
                target.engine.restore_compatible(&state)?;
                to.counters
                    .events_in
                    .store(events_processed, Ordering::Relaxed);
            }
            // A reverse handover (rollback of a half-done update) takes the traffic back.
            to.set_forward(None);
            self.set_forward(Some(to.clone()));
            self.switch_sources(to)
        };
        drop(engine);
        Ok(HandedOver {
            events_processed,
            already: false,
            sources,
        })
    }
}
