//! `POST /api/v1/cluster/validate`: checks one VPL program the way a group create or update
//! would, without storing or deploying anything. The console's editor calls it as the
//! operator types.
//!
//! Errors come from [`crate::validate::check_group`] (the very check create and update run,
//! with the cluster's registered connectors counted as declared); when there are none, the
//! program's warnings are returned. An invalid program is an answer, not a failed request:
//! 200 with `valid: false`. Served by any node from its own state (no leader needed).

use axum::extract::State;
use axum::Json;
use varpulis_api::cluster::{PipelineGroupSpec, PipelineSpec};
use varpulis_api::console::{ValidateRequest, ValidateResponse};
use varpulis_api::error::DiagnosticBody;
use varpulis_vpl::{CheckOptions, Severity};

use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// Pipeline name used in diagnostics when the request names none.
const DEFAULT_NAME: &str = "pipeline";

/// `POST /api/v1/cluster/validate`.
pub async fn validate(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    let name = req
        .pipeline
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_NAME.to_string());
    let connectors: Vec<String> = state.read(|s| s.connectors().map(|c| c.name.clone()).collect());
    Ok(Json(check_source(&name, req.source, connectors)))
}

/// Checks `source` as pipeline `name` of a group; errors, or warnings when there are none.
pub fn check_source(name: &str, source: String, connectors: Vec<String>) -> ValidateResponse {
    let spec = PipelineGroupSpec {
        name: name.to_string(),
        pipelines: vec![PipelineSpec {
            name: name.to_string(),
            source,
            worker_affinity: None,
            replicas: None,
            labels: Default::default(),
        }],
        routes: Vec::new(),
        placement: None,
    };
    if let Err(errors) = crate::validate::check_group(&spec, connectors.clone()) {
        return ValidateResponse {
            valid: false,
            diagnostics: errors,
        };
    }
    let source = &spec.pipelines[0].source;
    let options = CheckOptions {
        external_connectors: connectors,
    };
    let file = format!("{name}.vpl");
    let warnings = match varpulis_vpl::check(source, &options) {
        Ok(checked) => checked
            .warnings
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .map(|d| DiagnosticBody {
                severity: "warning".to_string(),
                line: d.line(),
                column: d.column(),
                message: d.message.clone(),
                hint: d.hint.clone(),
                rendered: d.render(source, &file),
                pipeline: Some(name.to_string()),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    ValidateResponse {
        valid: true,
        diagnostics: warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_line_and_column() {
        let src = "stream A = X .emit(v: 1)\n\nstream B = A .where(v >) .emit(v: v)\n";
        let r = check_source("p", src.to_string(), Vec::new());
        assert!(!r.valid);
        let d = &r.diagnostics[0];
        assert_eq!(d.line, 3, "{d:?}");
        assert!(d.column > 1, "{d:?}");
        assert_eq!(d.severity, "error");
        assert_eq!(d.pipeline.as_deref(), Some("p"));
    }

    #[test]
    fn a_good_program_is_valid() {
        let r = check_source("p", "stream A = X .emit(v: 1)".into(), Vec::new());
        assert!(r.valid, "{r:?}");
        assert!(r.diagnostics.iter().all(|d| d.severity == "warning"));
    }

    #[test]
    fn registered_connectors_count_as_declared() {
        let src = "stream A = X.from(Broker, topic: \"t\") .emit(v: 1)";
        assert!(!check_source("p", src.into(), Vec::new()).valid);
        assert!(check_source("p", src.into(), vec!["Broker".into()]).valid);
    }
}
