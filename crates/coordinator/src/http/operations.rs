//! Operator actions: `POST /api/v1/cluster/workers/{id}/drain` and
//! `POST /api/v1/cluster/rebalance` (the work is `crate::leader::drain` and
//! `crate::leader::rebalance`).

use axum::extract::{Path, State};
use axum::Json;
use varpulis_api::cluster::{DrainResponse, RebalanceResponse};

use crate::error::ApiError;
use crate::leader::{drain, rebalance};
use crate::node::AppState;

/// `POST /api/v1/cluster/workers/{id}/drain`: 200 with the migrations started; 404 unknown
/// worker; 409 when some pipeline has nowhere to go (its migration stays pending and completes
/// as soon as a worker can take it).
pub async fn drain(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DrainResponse>, ApiError> {
    let drained = drain::drain_worker(&state.leader, &id).await?;
    if drained.without_target > 0 {
        return Err(ApiError::Cluster(
            varpulis_cluster::Error::WorkerUnavailable {
                worker: id,
                reason: format!(
                    "no other worker can take {} of its pipelines now; the worker is draining \
                     and those migrations stay pending until one can",
                    drained.without_target
                ),
            },
        ));
    }
    Ok(Json(drained.response))
}

/// `POST /api/v1/cluster/rebalance`: the planned moves (empty when balanced); the first
/// `rebalance_max_moves` start at once, the rest in later rounds.
pub async fn rebalance(State(state): State<AppState>) -> Result<Json<RebalanceResponse>, ApiError> {
    if !state.leader.store.is_leader() {
        // Writes are forwarded to the leader by the proxy; reaching here means leadership moved.
        return Err(ApiError::NoLeader);
    }
    Ok(Json(rebalance::round(&state.leader).await))
}
