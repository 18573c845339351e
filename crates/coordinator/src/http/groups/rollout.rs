//! Rolling updates: `PUT /api/v1/cluster/pipeline-groups/{id}`, `POST .../{id}/rollback` and
//! `GET .../{id}/versions` (the work is `crate::leader::rolling`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use varpulis_api::cluster::{
    GroupUpdateResponse, PipelineGroupSpec, RollbackRequest, UpdateGroupRequest,
};
use varpulis_cluster::version::{RolloutCommand, StateMode};
use varpulis_cluster::Command;

use crate::error::ApiError;
use crate::http::extract::ApiJson;
use crate::http::groups::{check_vpl, group_view};
use crate::leader::error::DriveError;
use crate::leader::rolling;
use crate::node::AppState;

/// Parses the `state` field of an update: `keep` (default) or `reset`.
fn parse_state(state: Option<&str>) -> Result<Option<StateMode>, ApiError> {
    match state {
        None => Ok(None),
        Some("keep") => Ok(Some(StateMode::Keep)),
        Some("reset") => Ok(Some(StateMode::Reset)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "state must be \"keep\" or \"reset\", not \"{other}\""
        ))),
    }
}

/// Validates, plans and runs a rolling update of `group_id` to `spec`; the answer of
/// `PUT .../{id}` and `POST .../{id}/rollback`.
async fn roll(
    state: &AppState,
    group_id: &str,
    spec: PipelineGroupSpec,
    state_mode: Option<StateMode>,
    restores: Option<u64>,
) -> Result<Response, ApiError> {
    check_vpl(state, &spec)?;
    let current = state
        .read(|s| s.group(group_id).map(|g| g.spec.clone()))
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{group_id}' not found")))?;
    let mut changed = Vec::new();
    let mut why = Vec::new();
    for (old, new) in current.pipelines.iter().zip(&spec.pipelines) {
        if old.source != new.source {
            changed.push(old.name.clone());
            why.extend(rolling::incompatibilities(
                &old.name,
                &old.source,
                &new.source,
            ));
        }
    }
    if changed.is_empty() {
        return Err(ApiError::BadRequest(
            "the update changes no pipeline source".into(),
        ));
    }
    let mode = match state_mode {
        Some(m) => m,
        None if why.is_empty() => StateMode::Keep,
        None => {
            return Err(ApiError::StateIncompatible {
                message: "the state shape changes (streams, operators or variables); \
                          send \"state\": \"reset\" to start the new version without the old state"
                    .into(),
                details: why,
            })
        }
    };
    if mode == StateMode::Keep && !why.is_empty() {
        return Err(ApiError::StateIncompatible {
            message: "the old state cannot continue in the new version; use \"state\": \"reset\""
                .into(),
            details: why,
        });
    }
    let previous_version = state.read(|s| s.group(group_id).map(|g| g.version).unwrap_or(0));
    let ctx = &state.leader;
    let now_ms = ctx.now_ms();
    let rollout = state
        .read(|s| rolling::plan(s, group_id, spec, changed.clone(), mode, restores, now_ms))?;
    ctx.store
        .write(Command::Rollout(RolloutCommand::Start {
            group_id: group_id.to_string(),
            rollout: Box::new(rollout),
        }))
        .await?;
    match rolling::drive(ctx, group_id).await {
        Ok(version) => {
            let group = group_view(state, group_id)?;
            tracing::info!(%group_id, version, "pipeline group updated");
            Ok(Json(GroupUpdateResponse {
                group_id: group_id.to_string(),
                version,
                previous_version,
                changed,
                state: mode.as_str().to_string(),
                restores,
                group,
            })
            .into_response())
        }
        Err(DriveError::Aborted(error)) => Err(ApiError::UpdateAborted(format!(
            "rolling update aborted, the group keeps version {previous_version}: {error}"
        ))),
        Err(DriveError::Interrupted(e)) => Err(e.into()),
    }
}

/// `PUT /api/v1/cluster/pipeline-groups/{id}`: rolling update of some pipelines' VPL.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateGroupRequest>,
) -> Result<Response, ApiError> {
    let mode = parse_state(req.state.as_deref())?;
    let mut spec = state
        .read(|s| s.group(&id).map(|g| g.spec.clone()))
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))?;
    if req.pipelines.is_empty() {
        return Err(ApiError::BadRequest("`pipelines` must not be empty".into()));
    }
    for update in &req.pipelines {
        let Some(p) = spec.pipelines.iter_mut().find(|p| p.name == update.name) else {
            return Err(ApiError::BadRequest(format!(
                "the group has no pipeline named '{}'",
                update.name
            )));
        };
        p.source.clone_from(&update.source);
    }
    roll(&state, &id, spec, mode, None).await
}

/// `POST /api/v1/cluster/pipeline-groups/{id}/rollback`: rolling update back to the spec of
/// an earlier version (default: the previous one), recorded as a new version.
pub async fn rollback(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid rollback request: {e}")))?
    };
    let mode = parse_state(req.state.as_deref())?;
    let (version, history) = state
        .read(|s| {
            s.group(&id).map(|g| {
                let history = s
                    .group_versions(&id)
                    .map(|v| v.history.clone())
                    .unwrap_or_default();
                (g.version, history)
            })
        })
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))?;
    let wanted = req.version.unwrap_or(version.saturating_sub(1));
    if wanted == version {
        return Err(ApiError::BadRequest(format!(
            "version {version} is already running"
        )));
    }
    let Some(record) = history.iter().find(|r| r.version == wanted) else {
        return Err(ApiError::NotFound(format!(
            "version {wanted} of group '{id}' is not in its history"
        )));
    };
    roll(&state, &id, record.spec.clone(), mode, Some(wanted)).await
}

/// `GET /api/v1/cluster/pipeline-groups/{id}/versions`: current version, history (oldest
/// first) and the rolling update in progress, if any.
pub async fn versions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .read(|s| {
            let g = s.group(&id)?;
            let v = s.group_versions(&id);
            let history: Vec<serde_json::Value> = match v {
                Some(v) => v.history.iter().map(|r| serde_json::json!(r)).collect(),
                None => vec![serde_json::json!({
                    "version": g.version, "spec": g.spec, "changed": [], "state": null,
                    "restores": null, "at_ms": g.created_at_ms
                })],
            };
            Some(Json(serde_json::json!({
                "group_id": g.id,
                "version": g.version,
                "history": history,
                "rollout": v.and_then(|v| v.rollout.as_ref()),
                "last_error": v.and_then(|v| v.last_error.as_ref()),
            })))
        })
        .ok_or_else(|| ApiError::NotFound(format!("pipeline group '{id}' not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_mode_parses_keep_and_reset_only() {
        assert_eq!(parse_state(None).unwrap(), None);
        assert_eq!(parse_state(Some("keep")).unwrap(), Some(StateMode::Keep));
        assert_eq!(parse_state(Some("reset")).unwrap(), Some(StateMode::Reset));
        assert!(parse_state(Some("wipe")).is_err());
    }
}
