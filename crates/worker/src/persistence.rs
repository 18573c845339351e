//! What `--state-dir` keeps and when (docs/worker.md, "Local state"); the files themselves are
//! `state_dir.rs`'s.
//!
//! - A deploy records the pipeline before its connections start (`routes/deploy.rs`); a delete,
//!   a stale-copy removal and a hand-over forget it.
//! - [`run`] checkpoints every pipeline whose event count moved, every `state_interval`, and
//!   once more at shutdown after the sources stopped (so a clean stop loses nothing; a crash
//!   loses at most the last interval's state changes).
//! - [`restore_at_start`]: a worker without coordinators deploys every recorded pipeline again
//!   from its last checkpoint. A worker with coordinators does not (the leader decides where
//!   pipelines run and may have moved them): it uses a recorded checkpoint when the leader
//!   deploys the same pipeline id again and the record is ahead of the one shipped.

use crate::routes::deploy::deploy_pipeline;
use crate::state::AppState;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Deploys every pipeline the state dir records (worker without coordinators). Entries that
/// cannot be read or deployed are logged and left on disk; the worker starts regardless.
/// Returns how many pipelines run again.
pub async fn restore_at_start(state: &Arc<AppState>) -> usize {
    let Some(dir) = state.state_dir.clone() else {
        return 0;
    };
    let root = dir.root().to_owned();
    let stored = match tokio::task::spawn_blocking(move || dir.load_all()).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(e)) => {
            tracing::error!(dir = %root.display(), error = %e, "cannot read the state dir");
            return 0;
        }
        Err(e) => {
            tracing::error!(dir = %root.display(), error = %e, "cannot read the state dir");
            return 0;
        }
    };
    let mut restored = 0;
    for entry in stored {
        let p = match entry {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("state dir entry not restored (left on disk): {e}");
                continue;
            }
        };
        let id = p.request.id.clone().unwrap_or_default();
        let events = p
            .request
            .checkpoint
            .as_ref()
            .map_or(0, |c| c.events_processed);
        match deploy_pipeline(state, p.request).await {
            Ok(_) => {
                restored += 1;
                tracing::info!(pipeline = %id, events_processed = events, "pipeline restored from the state dir");
            }
            Err(e) => tracing::error!(
                pipeline = %id,
                path = %p.path.display(),
                error = %e,
                "pipeline in the state dir not restored (its files are kept)"
            ),
        }
    }
    restored
}

/// Checkpoints pipelines into the state dir every `state_interval` until shutdown, then once
/// more. Returns at once without a state dir.
pub async fn run(state: Arc<AppState>) {
    if state.state_dir.is_none() {
        return;
    }
    let mut saved: HashMap<String, u64> = HashMap::new();
    let mut tick = tokio::time::interval(state.config.state_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => save_changed(&state, &mut saved).await,
            () = state.shutdown.cancelled() => break,
        }
    }
    save_changed(&state, &mut saved).await;
}

/// Saves the checkpoint of every pipeline whose event count differs from the last save.
async fn save_changed(state: &Arc<AppState>, saved: &mut HashMap<String, u64>) {
    let Some(dir) = state.state_dir.clone() else {
        return;
    };
    let pipelines = state.registry.all();
    saved.retain(|id, _| pipelines.iter().any(|p| &p.id == id));
    for p in pipelines {
        // A handed-over pipeline forwards to its successor, which is saved on its own.
        if p.forward_target().is_some() || saved.get(&p.id) == Some(&p.events_in()) {
            continue;
        }
        let cp = match p.checkpoint_record().await {
            Ok(cp) => cp,
            Err(e) => {
                tracing::warn!(pipeline = %p.id, error = %e, "no local checkpoint");
                continue;
            }
        };
        let events = cp.events_processed;
        let (dir, id) = (dir.clone(), p.id.clone());
        match tokio::task::spawn_blocking(move || dir.save_checkpoint(&id, &cp)).await {
            Ok(Ok(())) => {
                saved.insert(p.id.clone(), events);
                state
                    .metrics
                    .local_checkpoints
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                state
                    .metrics
                    .local_checkpoint_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(pipeline = %p.id, error = %e, "cannot write the local checkpoint");
            }
            Err(e) => tracing::error!(pipeline = %p.id, error = %e, "local checkpoint task failed"),
        }
    }
}
