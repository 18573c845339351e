//! What an output-only connector (kinds `http`, `file`, `console`; docs/connectors.md) does for
//! one pipeline: its parameters, read and checked before anything connects, and the streams
//! whose `.to` uses it.
//!
//! Durations (`timeout`, `max_backoff`) are VPL duration literals (nanoseconds once compiled);
//! in a deploy's `connectors` map they may also be strings with a unit (`"500ms"`, `"5s"`,
//! `"1m"`), and plain numbers are nanoseconds like the compiled literals.

use super::mqtt::param_str;
use crate::error::WorkerError;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Default `timeout` of an HTTP request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `queue` bound of an HTTP connector, in events.
pub const HTTP_QUEUE: usize = 10_000;
/// Default `retries` of an HTTP request before its events are given up.
pub const HTTP_RETRIES: u32 = 10;
/// Default `max_backoff` between retries.
pub const HTTP_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First delay between retries (doubling up to `max_backoff`).
pub const HTTP_FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Largest accepted `batch`.
pub const HTTP_MAX_BATCH: usize = 100_000;
/// Largest accepted `queue`.
pub const HTTP_MAX_QUEUE: usize = 10_000_000;

/// Parameters of an `http(...)` connector.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpParams {
    /// Target URL (`http://` or `https://`).
    pub url: String,
    /// Method (`POST` by default).
    pub method: String,
    /// Extra request headers, in written order.
    pub headers: Vec<(String, String)>,
    /// Timeout of each request.
    pub timeout: Duration,
    /// Events per request: 1 sends one JSON object, more send a JSON array of up to `batch`.
    pub batch: usize,
    /// Bound of the queue in events; a full queue makes the pipeline wait.
    pub queue: usize,
    /// Retries of a failed request before its events are given up.
    pub retries: u32,
    /// Largest delay between retries.
    pub max_backoff: Duration,
}

/// Parameters of a `file(...)` connector.
#[derive(Debug, Clone, PartialEq)]
pub struct FileParams {
    /// File the JSON lines are appended to.
    pub path: PathBuf,
    /// Size past which the file is rotated (`path.1`, `path.2`, … oldest highest), if any.
    pub rotate_bytes: Option<u64>,
}

/// The kind of an output-only connector, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputKind {
    /// `http(url:, method:, headers:, timeout:, batch:, queue:, retries:, max_backoff:)`.
    Http(HttpParams),
    /// `file(path:, rotate_bytes:)`.
    File(FileParams),
    /// `console()`: JSON lines on stdout.
    Console,
}

impl OutputKind {
    /// The kind's name (`http`, `file`, `console`).
    pub fn name(&self) -> &'static str {
        match self {
            OutputKind::Http(_) => "http",
            OutputKind::File(_) => "file",
            OutputKind::Console => "console",
        }
    }
}

/// One output-only connector of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputPlan {
    /// Connector name.
    pub name: String,
    /// Kind and parameters.
    pub kind: OutputKind,
    /// Streams whose `.to` uses it.
    pub sinks: Vec<String>,
}

/// Whether `kind` is an output-only connector kind.
pub fn is_output_kind(kind: &str) -> bool {
    matches!(kind, "http" | "file" | "console")
}

/// Known parameters of each output kind (others are refused: a typo must not pass silently).
fn known(kind: &str) -> &'static [&'static str] {
    match kind {
        "http" => &[
            "url",
            "method",
            "headers",
            "timeout",
            "batch",
            "queue",
            "retries",
            "max_backoff",
        ],
        "file" => &["path", "rotate_bytes"],
        _ => &[],
    }
}

impl OutputPlan {
    /// Reads connector `name` of output `kind` (`http`, `file`, `console`).
    pub fn new(name: &str, kind: &str, params: &Map<String, Value>) -> Result<Self, WorkerError> {
        let bad = |m: String| WorkerError::Connector(format!("connector `{name}`: {m}"));
        if let Some(k) = params.keys().find(|k| !known(kind).contains(&k.as_str())) {
            return Err(bad(format!("unknown {kind} parameter `{k}`")));
        }
        let kind = match kind {
            "http" => OutputKind::Http(http_params(params).map_err(bad)?),
            "file" => OutputKind::File(file_params(params).map_err(bad)?),
            "console" => OutputKind::Console,
            other => return Err(bad(format!("`{other}` is not an output connector kind"))),
        };
        Ok(Self {
            name: name.to_owned(),
            kind,
            sinks: Vec::new(),
        })
    }
}

fn http_params(p: &Map<String, Value>) -> Result<HttpParams, String> {
    let url = param_str(p, "url").ok_or("`url` is required")?;
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("bad `url` `{url}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`url` `{url}` must be http:// or https://"));
    }
    let method = param_str(p, "method")
        .unwrap_or_else(|| "POST".into())
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
        return Err(format!(
            "`method` `{method}` is not one of GET, POST, PUT, PATCH, DELETE"
        ));
    }
    let mut headers = Vec::new();
    match p.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(_) | Value::Bool(_) => v.to_string(),
                    _ => return Err(format!("header `{k}` must be a string")),
                };
                reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("`{k}` is not a valid header name"))?;
                reqwest::header::HeaderValue::from_str(&v)
                    .map_err(|_| format!("the value of header `{k}` is not valid"))?;
                headers.push((k.clone(), v));
            }
        }
        Some(_) => return Err("`headers` must be a map of names to values".into()),
    }
    Ok(HttpParams {
        url,
        method,
        headers,
        timeout: duration(p, "timeout")?.unwrap_or(HTTP_TIMEOUT),
        batch: count(p, "batch", 1, HTTP_MAX_BATCH)?.unwrap_or(1),
        queue: count(p, "queue", 1, HTTP_MAX_QUEUE)?.unwrap_or(HTTP_QUEUE),
        retries: count(p, "retries", 0, 1_000_000)?
            .map(|n| n as u32)
            .unwrap_or(HTTP_RETRIES),
        max_backoff: duration(p, "max_backoff")?.unwrap_or(HTTP_MAX_BACKOFF),
    })
}

fn file_params(p: &Map<String, Value>) -> Result<FileParams, String> {
    let path = param_str(p, "path").ok_or("`path` is required")?;
    if path.is_empty() {
        return Err("`path` is empty".into());
    }
    Ok(FileParams {
        path: PathBuf::from(path),
        rotate_bytes: count(p, "rotate_bytes", 1, usize::MAX)?.map(|n| n as u64),
    })
}

/// An integer parameter in `min..=max` (a string of digits works too).
fn count(
    p: &Map<String, Value>,
    key: &str,
    min: usize,
    max: usize,
) -> Result<Option<usize>, String> {
    let Some(text) = param_str(p, key) else {
        return match p.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => Err(format!("`{key}` must be an integer")),
        };
    };
    match text.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "`{key}` `{text}` must be an integer from {min} to {max}"
        )),
    }
}

/// A duration parameter: nanoseconds (a compiled VPL duration) or a string with a unit.
fn duration(p: &Map<String, Value>, key: &str) -> Result<Option<Duration>, String> {
    let bad = |v: &dyn std::fmt::Display| format!("`{key}` `{v}` is not a duration (e.g. `5s`)");
    let d = match p.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => Duration::from_nanos(n.as_u64().ok_or_else(|| bad(n))?),
        Some(Value::String(s)) => parse_duration(s).ok_or_else(|| bad(s))?,
        Some(v) => return Err(bad(v)),
    };
    if d.is_zero() {
        return Err(format!("`{key}` must be longer than zero"));
    }
    Ok(Some(d))
}

/// `"500ms"`, `"5s"`, `"1m"`, `"1h"`, `"250us"`, `"10ns"`; a bare number is nanoseconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ns_per = match unit.trim() {
        "" | "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    };
    Some(Duration::from_nanos(n.checked_mul(ns_per)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn http_defaults_and_values() {
        let p = OutputPlan::new("H", "http", &map(json!({"url": "http://h:1/x"}))).unwrap();
        let OutputKind::Http(h) = p.kind else {
            panic!()
        };
        assert_eq!(
            (h.method.as_str(), h.batch, h.queue),
            ("POST", 1, HTTP_QUEUE)
        );
        assert_eq!(h.timeout, HTTP_TIMEOUT);
        let p = OutputPlan::new(
            "H",
            "http",
            &map(
                json!({"url": "https://h/x", "method": "put", "timeout": 2_000_000_000u64,
                "batch": "500", "headers": {"authorization": "Bearer t"}, "max_backoff": "250ms"}),
            ),
        )
        .unwrap();
        let OutputKind::Http(h) = p.kind else {
            panic!()
        };
        assert_eq!(h.method, "PUT");
        assert_eq!(h.timeout, Duration::from_secs(2));
        assert_eq!(h.batch, 500);
        assert_eq!(h.max_backoff, Duration::from_millis(250));
        assert_eq!(h.headers, vec![("authorization".into(), "Bearer t".into())]);
    }

    #[test]
    fn bad_params_are_refused_with_the_connector_name() {
        for (params, msg) in [
            (json!({}), "`url` is required"),
            (json!({"url": "ftp://h"}), "must be http:// or https://"),
            (
                json!({"url": "http://h", "batch": 0}),
                "`batch` `0` must be an integer from 1",
            ),
            (
                json!({"url": "http://h", "method": "FETCH"}),
                "`method` `FETCH`",
            ),
            (
                json!({"url": "http://h", "timeout": "soon"}),
                "`timeout` `soon` is not a duration",
            ),
            (
                json!({"url": "http://h", "headers": {"bad header": "x"}}),
                "not a valid header name",
            ),
            (
                json!({"url": "http://h", "timout": "1s"}),
                "unknown http parameter `timout`",
            ),
        ] {
            let e = OutputPlan::new("H", "http", &map(params))
                .unwrap_err()
                .to_string();
            assert!(e.contains("connector `H`") && e.contains(msg), "{e}");
        }
        let e = OutputPlan::new("F", "file", &map(json!({"path": "x", "rotate_bytes": -1})))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rotate_bytes"), "{e}");
        assert!(OutputPlan::new("C", "console", &map(json!({"path": "x"}))).is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("7"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("99999999999999999999s"), None);
    }
}
