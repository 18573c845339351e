//! `/api/v1/cluster/connectors`: the connector registry VPL refers to by name.
//!
//! Answers show secret parameters as `<redacted>` (`varpulis_api::redact`); a `PUT` that sends
//! `<redacted>` back keeps the stored value. The workers get the real values in deploys.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use varpulis_api::cluster::{ConnectorList, ConnectorSpec, DeletedResponse};
use varpulis_api::Page;
use varpulis_cluster::{Command, Outcome};

use crate::error::ApiError;
use crate::http::extract::idempotency_key;
use crate::http::extract::{ApiJson, ApiQuery};
use crate::node::AppState;

fn saved(outcome: Outcome, fallback: ConnectorSpec) -> (bool, ConnectorSpec) {
    match outcome {
        Outcome::ConnectorSaved { spec, created } => (created, spec),
        _ => (false, fallback),
    }
}

/// `POST /api/v1/cluster/connectors`: 201 with the stored (normalised) connector; 409 if it exists.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(spec): ApiJson<ConnectorSpec>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let outcome = state
        .leader
        .store
        .write_keyed(Command::CreateConnector { spec: spec.clone() }, key)
        .await?;
    let (_, stored) = saved(outcome, spec);
    Ok((StatusCode::CREATED, Json(stored.redacted())).into_response())
}

/// `GET /api/v1/cluster/connectors`.
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<Page>,
) -> Json<ConnectorList> {
    let all: Vec<ConnectorSpec> = state.read(|s| s.connectors().map(|c| c.redacted()).collect());
    let (connectors, total, pagination) = page.apply(all);
    Json(ConnectorList {
        connectors,
        total,
        pagination,
    })
}

/// `GET /api/v1/cluster/connectors/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConnectorSpec>, ApiError> {
    state
        .read(|s| s.connector(&name).map(ConnectorSpec::redacted))
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("connector '{name}' not found")))
}

/// `PUT /api/v1/cluster/connectors/{name}`: replaces an existing connector (404 otherwise).
pub async fn update(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    ApiJson(mut spec): ApiJson<ConnectorSpec>,
) -> Result<Json<ConnectorSpec>, ApiError> {
    if spec.name.is_empty() {
        spec.name = name.clone();
    }
    if spec.name != name {
        return Err(ApiError::BadRequest(format!(
            "connector name in the body ('{}') differs from the path ('{name}')",
            spec.name
        )));
    }
    let key = idempotency_key(&headers)?;
    if let Some(stored) = state.read(|s| s.connector(&name).cloned()) {
        spec.restore_redacted(&stored);
    }
    let outcome = state
        .leader
        .store
        .write_keyed(Command::UpdateConnector { spec: spec.clone() }, key)
        .await?;
    Ok(Json(saved(outcome, spec).1.redacted()))
}

/// `DELETE /api/v1/cluster/connectors/{name}`: `{"deleted": true}`.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let key = idempotency_key(&headers)?;
    state
        .leader
        .store
        .write_keyed(Command::DeleteConnector { name }, key)
        .await?;
    Ok(Json(DeletedResponse { deleted: true }))
}
