//! `/api/v1/cluster/connectors`: the connector registry VPL refers to by name.
//!
//! Answers show secret parameters as `<redacted>` (`varpulis_api::redact`); a `PUT` that sends
//! `<redacted>` back keeps the stored value. The workers get the real values in deploys.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use std::borrow::Cow;
use varpulis_api::cluster::{ConnectorList, ConnectorSpec, DeletedResponse};
use varpulis_api::redact::{is_secret_param, redact_url_password, REDACTED};
use varpulis_api::Page;
use varpulis_cluster::{Command, Outcome};

use crate::error::ApiError;
use crate::http::extract::{ApiJson, ApiQuery, IdempotencyKey};
use crate::node::AppState;

/// A connector as answers show it (`ConnectorSpec::redacted`), serialized straight from the
/// stored spec: the write path answers every create with it, without copying the spec first.
struct Redacted<'a>(&'a ConnectorSpec);

/// The `params` of [`Redacted`].
struct RedactedParams<'a>(&'a Map<String, Value>);

/// A parameter value as an answer shows it (`varpulis_api::redact`'s rule).
fn redacted_value<'a>(name: &str, value: &'a Value) -> Cow<'a, Value> {
    match value {
        _ if !value.is_null() && is_secret_param(name) => {
            Cow::Owned(Value::String(REDACTED.to_owned()))
        }
        Value::String(s) if s.contains("://") => Cow::Owned(Value::String(redact_url_password(s))),
        other => Cow::Borrowed(other),
    }
}

impl Serialize for RedactedParams<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, redacted_value(name, value).as_ref())?;
        }
        map.end()
    }
}

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The fields of `ConnectorSpec`, in its order, with its skip rule.
        let spec = self.0;
        let fields = 3 + usize::from(spec.description.is_some());
        let mut out = serializer.serialize_struct("ConnectorSpec", fields)?;
        out.serialize_field("name", &spec.name)?;
        out.serialize_field("connector_type", &spec.connector_type)?;
        out.serialize_field("params", &RedactedParams(&spec.params))?;
        if let Some(description) = &spec.description {
            out.serialize_field("description", description)?;
        }
        out.end()
    }
}

/// `spec`, redacted, as a JSON answer with `status` (what `Json(spec.redacted())` answers).
fn answer(status: StatusCode, spec: &ConnectorSpec) -> Response {
    match serde_json::to_vec(&Redacted(spec)) {
        Ok(body) => {
            let mut response = (status, Bytes::from(body)).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => {
            ApiError::Internal(format!("cannot render the connector: {err}")).into_response()
        }
    }
}

/// A connector write without an idempotency key always answers `ConnectorSaved` (or is
/// rejected): anything else is a bug, answered 500 rather than guessed at.
fn unexpected(outcome: Outcome) -> Response {
    ApiError::Internal(format!(
        "unexpected outcome of a connector write: {outcome:?}"
    ))
    .into_response()
}

/// `POST /api/v1/cluster/connectors`: 201 with the stored (normalised) connector; 409 if it exists.
pub async fn create(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(spec): ApiJson<ConnectorSpec>,
) -> Result<Response, ApiError> {
    let key = key?;
    // The stored spec comes back in the outcome. Only a reused idempotency key can answer with
    // another command's outcome; the spec sent is the answer then, so keep a copy for it.
    let sent = key.as_ref().map(|_| spec.clone());
    let outcome = state
        .leader
        .store
        .write_keyed(Command::CreateConnector { spec }, key)
        .await?;
    Ok(match (outcome, sent) {
        (Outcome::ConnectorSaved { spec, .. }, _) => answer(StatusCode::CREATED, &spec),
        (_, Some(sent)) => answer(StatusCode::CREATED, &sent),
        (other, None) => unexpected(other),
    })
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
    IdempotencyKey(key): IdempotencyKey,
    Path(name): Path<String>,
    ApiJson(mut spec): ApiJson<ConnectorSpec>,
) -> Result<Response, ApiError> {
    if spec.name.is_empty() {
        spec.name = name.clone();
    }
    if spec.name != name {
        return Err(ApiError::BadRequest(format!(
            "connector name in the body ('{}') differs from the path ('{name}')",
            spec.name
        )));
    }
    let key = key?;
    state.read(|s| {
        if let Some(stored) = s.connector(&name) {
            spec.restore_redacted(stored);
        }
    });
    let sent = key.as_ref().map(|_| spec.clone());
    let outcome = state
        .leader
        .store
        .write_keyed(Command::UpdateConnector { spec }, key)
        .await?;
    Ok(match (outcome, sent) {
        (Outcome::ConnectorSaved { spec, .. }, _) => answer(StatusCode::OK, &spec),
        (_, Some(sent)) => answer(StatusCode::OK, &sent),
        (other, None) => unexpected(other),
    })
}

/// `DELETE /api/v1/cluster/connectors/{name}`: `{"deleted": true}`.
pub async fn delete(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    Path(name): Path<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    let key = key?;
    state
        .leader
        .store
        .write_keyed(Command::DeleteConnector { name }, key)
        .await?;
    Ok(Json(DeletedResponse { deleted: true }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_redacted_answer_is_the_redacted_spec_serialized() {
        let specs = [
            json!({"name": "M", "connector_type": "mqtt",
                   "params": {"host": "localhost", "port": 1883}}),
            json!({"name": "N", "connector_type": "nats", "description": "feed",
                   "params": {"servers": "nats://user:pw@h:4222", "password": "x",
                              "apiKey": 7, "client_auth": null, "zeta": [1, {"a": "b"}],
                              "alpha": "mqtt://u:secret@host/path", "token": ""}}),
            json!({"name": "E", "connector_type": "mqtt", "params": {}}),
        ];
        for value in specs {
            let spec: ConnectorSpec = serde_json::from_value(value).unwrap();
            assert_eq!(
                serde_json::to_vec(&Redacted(&spec)).unwrap(),
                serde_json::to_vec(&spec.redacted()).unwrap(),
                "{spec:?}"
            );
        }
    }
}
