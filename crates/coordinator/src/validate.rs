//! VPL validation of pipeline group specs, done BEFORE anything is proposed to Raft.
//!
//! Every pipeline's source is checked with `varpulis_vpl::check`, treating the connectors of the
//! cluster registry as declared (the coordinator ships them to workers by name). All errors of all
//! pipelines are collected so one 400 answer lists every problem, each with the pipeline's name.

use varpulis_api::cluster::PipelineGroupSpec;
use varpulis_api::error::DiagnosticBody;
use varpulis_vpl::{CheckOptions, Diagnostic, Severity};

/// Checks every pipeline of `spec`; `Err` carries every error diagnostic found.
pub fn check_group(
    spec: &PipelineGroupSpec,
    connectors: Vec<String>,
) -> Result<(), Vec<DiagnosticBody>> {
    let options = CheckOptions {
        external_connectors: connectors,
    };
    let mut errors = Vec::new();
    for pipeline in &spec.pipelines {
        if let Err(diagnostics) = varpulis_vpl::check(&pipeline.source, &options) {
            let file = format!("{}.vpl", pipeline.name);
            errors.extend(
                diagnostics
                    .iter()
                    .map(|d| to_body(d, &pipeline.source, &file, &pipeline.name)),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn to_body(d: &Diagnostic, source: &str, file: &str, pipeline: &str) -> DiagnosticBody {
    DiagnosticBody {
        severity: match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
        .to_string(),
        line: d.line(),
        column: d.column(),
        message: d.message.clone(),
        hint: d.hint.clone(),
        rendered: d.render(source, file),
        pipeline: Some(pipeline.to_string()),
    }
}
