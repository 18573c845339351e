//! How the worker talks to the coordinators: HTTP ([`crate::coordinator_client`], the default)
//! or NATS ([`nats`], `--transport nats --nats-url URL`, spec/nats-transport.txt).

pub mod nats;

use crate::error::WorkerError;
use crate::server::AppState;
use serde::{Deserialize, Serialize};
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

/// Coordinator ↔ worker transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Register and heartbeat over HTTP; the coordinator calls the worker's REST API.
    #[default]
    Http,
    /// Register, heartbeat and receive commands over NATS subjects.
    Nats,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "http" | "rest" => Ok(Self::Http),
            "nats" => Ok(Self::Nats),
            other => Err(format!("unknown transport `{other}` (http or nats)")),
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http => "http",
            Self::Nats => "nats",
        })
    }
}
