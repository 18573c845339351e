//! How the worker talks to the coordinators: HTTP ([`crate::coordinator_client`], the default)
//! or NATS ([`nats`], `--transport nats --nats-url URL`, spec/nats-transport.txt).

pub mod nats;

/// Coordinator ↔ worker transport (shared with the coordinator).
pub use varpulis_api::nats::Transport;

use crate::error::WorkerError;
use crate::server::AppState;
use std::sync::Arc;

/// Starts the NATS transport when the config selects it; returns its task.
pub async fn spawn(
    state: &Arc<AppState>,
) -> Result<Option<tokio::task::JoinHandle<()>>, WorkerError> {
    if state.config.transport != Transport::Nats {
        return Ok(None);
    }
    let router = crate::routes::router(state.clone());
    let link = Arc::new(nats::NatsWorker::connect(state.clone(), router).await?);
    Ok(Some(tokio::spawn(link.run())))
}
