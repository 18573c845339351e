//! Operation records and the classification of HTTP answers into ok / failed / unknown.
//!
//! Classification (why each class is safe):
//! - **ok**: any 2xx. The node acknowledged the write: it must survive (guarantee 1).
//! - **failed (definite)**: a 4xx other than 408/421/429 — the state machine or the request
//!   validation rejected the command, so it had no effect (guarantee 5). Also a TCP connect
//!   error: the request never left the client.
//! - **unknown**: timeouts, resets after connecting, 408/429, 421 (a follower could not reach
//!   the leader; the leader may have received the proxied request before the link broke) and
//!   every 5xx including 503 `no_leader`/`no_quorum`. A node answering 503 cannot prove that
//!   nothing was proposed: the entry may sit in a deposed leader's log and be committed by
//!   its successor, and a proxying follower cannot tell whether the leader appended it.
//!   Treating these as unknown never produces a false violation; it only lets the checker
//!   place the write anywhere after its invocation, or nowhere.

use crate::checker::{Input, Output};
use crate::harness::Resp;

/// How an answer is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// 2xx.
    Ok,
    /// Definitely not applied.
    Failed,
    /// May or may not have been applied.
    Unknown,
}

/// Classifies the result of one HTTP call.
pub fn classify(result: &Result<Resp, reqwest::Error>) -> Class {
    match result {
        Ok(r) if (200..300).contains(&r.status) => Class::Ok,
        Ok(r) if matches!(r.status, 408 | 421 | 429) => Class::Unknown,
        Ok(r) if (400..500).contains(&r.status) => Class::Failed,
        Ok(_) => Class::Unknown,
        Err(e) if e.is_connect() => Class::Failed,
        Err(_) => Class::Unknown,
    }
}

/// Output the checker sees for a write with this result.
pub fn write_output(class: Class, status: Option<u16>) -> Option<Output> {
    match (class, status) {
        (Class::Ok, _) => Some(Output::Ok),
        (Class::Unknown, _) => Some(Output::Unknown),
        (Class::Failed, Some(409)) => Some(Output::Exists),
        (Class::Failed, Some(404)) => Some(Output::Missing),
        // Other definite failures had no effect and observe nothing: leaving them out of
        // the history means their (unique) value must never be read back.
        (Class::Failed, _) => None,
    }
}

/// One recorded operation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    /// Sequence number.
    pub id: u64,
    /// Client task number.
    pub client: usize,
    /// Coordinator index the request was sent to.
    pub node: usize,
    /// Checker key (`conn:c1`, `worker:chaos-w2`, `group:g-0-3`).
    pub key: String,
    /// Human-readable request (`PUT /connectors/c1 = v17`).
    pub request: String,
    /// Invocation, ns since the start of the run.
    pub invoke_ns: u64,
    /// Completion, ns since the start of the run.
    pub complete_ns: u64,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Classification.
    pub class: Class,
    /// Error text or body excerpt, for the report.
    pub detail: String,
    /// Checker input.
    #[serde(skip)]
    pub input: Input,
    /// Checker output (`None`: not part of the checked history).
    #[serde(skip)]
    pub output: Option<Output>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16) -> Result<Resp, reqwest::Error> {
        Ok(Resp {
            status,
            body: serde_json::Value::Null,
            text: String::new(),
            retry_after: None,
            content_type: None,
            connection: None,
        })
    }

    #[test]
    fn classification_follows_the_documented_rules() {
        assert_eq!(classify(&resp(200)), Class::Ok);
        assert_eq!(classify(&resp(201)), Class::Ok);
        assert_eq!(classify(&resp(404)), Class::Failed);
        assert_eq!(classify(&resp(409)), Class::Failed);
        assert_eq!(classify(&resp(400)), Class::Failed);
        assert_eq!(classify(&resp(421)), Class::Unknown);
        assert_eq!(classify(&resp(408)), Class::Unknown);
        assert_eq!(classify(&resp(429)), Class::Unknown);
        assert_eq!(classify(&resp(503)), Class::Unknown);
        assert_eq!(classify(&resp(500)), Class::Unknown);
        assert_eq!(write_output(Class::Failed, Some(409)), Some(Output::Exists));
        assert_eq!(write_output(Class::Failed, Some(400)), None);
        assert_eq!(
            write_output(Class::Unknown, Some(503)),
            Some(Output::Unknown)
        );
    }
}
