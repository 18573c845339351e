//! The JSON error body every Varpulis server answers with.

use serde::{Deserialize, Serialize};

/// `{"error": "...", "code": "..."}` plus optional machine-readable details.
///
/// `code` is a stable snake_case identifier (`bad_request`, `unauthorized`, `not_found`,
/// `conflict`, `payload_too_large`, `not_leader`, `no_leader`, `invalid_vpl`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable message.
    pub error: String,
    /// Stable machine-readable code.
    pub code: String,
    /// VPL diagnostics when the error is a compile error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<DiagnosticBody>,
    /// Id of the current leader (only with code `not_leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_id: Option<u64>,
    /// API URL of the current leader (only with code `not_leader`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
}

impl ErrorBody {
    /// An error with a message and a code and nothing else.
    pub fn new(code: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code: code.into(),
            diagnostics: Vec::new(),
            leader_id: None,
            leader_url: None,
        }
    }
}

/// One VPL diagnostic as it travels over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticBody {
    /// `error` or `warning`.
    pub severity: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// What went wrong.
    pub message: String,
    /// A hint, when one is cheap to give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The rendered diagnostic with the source line and a caret.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rendered: String,
    /// Name of the pipeline whose source it belongs to (coordinator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
}
