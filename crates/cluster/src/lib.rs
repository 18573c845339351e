//! The coordinator's replicated state machine: pure, deterministic, no I/O, no clocks.
//!
//! INTERFACE SKELETON (to be replaced by the real implementation). The `raft` crate relies on:
//! - `ClusterState: Clone + Default + Debug + Serialize + Deserialize + Send + Sync + 'static`
//! - `Command: Clone + Debug + Serialize + Deserialize + Send + Sync + 'static`
//! - `CommandResponse: Clone + Debug + Serialize + Deserialize + Send + Sync + 'static`
//! - `ClusterState::apply(&mut self, &Command) -> CommandResponse` (deterministic)
//! - `ClusterState::state_hash(&self) -> String` (hex, equal for equal states)

use serde::{Deserialize, Serialize};

/// A replicated command (skeleton).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Does nothing; used by tests and leader no-ops.
    Noop,
}

/// The result of applying one command (skeleton).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Applied with nothing to report.
    Ok,
}

/// The whole replicated state (skeleton).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Commands applied.
    pub applied: u64,
}

impl ClusterState {
    /// Applies one command deterministically.
    pub fn apply(&mut self, _cmd: &Command) -> CommandResponse {
        self.applied += 1;
        CommandResponse::Ok
    }

    /// Hex digest of the canonical serialization of the state.
    pub fn state_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }
}
