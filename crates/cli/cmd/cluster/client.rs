//! The HTTP client of `varpulis cluster`: one request over the list of coordinators.
//!
//! A request goes to the first URL of `--coordinator`; on a connection error, `421 Misdirected
//! Request` or `503 Service Unavailable` the next URL is tried (a 421 or 503 naming a
//! `leader_url` moves that URL to the front). When every coordinator refused with 421 or 503
//! (an election in progress, e.g. right after the leader removed itself), the whole list is
//! tried again with a growing pause (0.25 s to 1 s) for up to [`REFUSAL_RETRY`] (at most
//! `--timeout`), then the last refusal is the answer. Every write (`POST`, `PUT`, `DELETE`) carries one
//! `Idempotency-Key` for all its attempts, so a write that timed out on one coordinator ("outcome
//! unknown") and is retried on the next applies at most once.

use anyhow::{bail, Context};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use varpulis_api::{ErrorBody, API_KEY_HEADER, IDEMPOTENCY_KEY_HEADER};

/// How long a request is retried while every coordinator answers 421 or 503.
pub const REFUSAL_RETRY: Duration = Duration::from_secs(10);

/// Failures the server reported, or no server could be reached.
#[derive(Debug)]
pub enum ClientError {
    /// The server answered with an error status.
    Http {
        /// Method of the request.
        method: Method,
        /// Path of the request.
        path: String,
        /// Coordinator that answered.
        url: String,
        /// Its status.
        status: StatusCode,
        /// Its `error` and `code` (or the body text).
        message: String,
    },
    /// No coordinator could be reached.
    Unreachable {
        /// Method of the request.
        method: Method,
        /// Path of the request.
        path: String,
        /// One reason per coordinator tried.
        details: String,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http {
                method,
                path,
                url,
                status,
                message,
            } => write!(f, "{method} {path}: HTTP {status} from {url}: {message}"),
            Self::Unreachable {
                method,
                path,
                details,
            } => write!(f, "{method} {path}: no coordinator reachable ({details})"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Http { status, .. } => Some(*status),
            Self::Unreachable { .. } => None,
        }
    }
}

/// The TLS of `varpulis cluster` from `--tls-ca`, `--tls-cert` and `--tls-key`.
pub fn tls(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<varpulis_tls::ClientTls> {
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(varpulis_tls::keys::KeyStore::load(cert, key)?),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    Ok(varpulis_tls::ClientTls::new(ca, identity)?)
}

/// A request body.
pub enum Body {
    /// Sent as `application/json`.
    Json(Value),
    /// Sent as `text/plain` (`.evt` batches).
    Text(String),
}

/// A client over the list of coordinators.
pub struct Client {
    /// The HTTP client (per-request timeout from `--timeout`).
    pub http: reqwest::Client,
    /// Coordinator base URLs, in the order given.
    pub urls: Vec<String>,
    /// API key, sent as `x-api-key`.
    pub key: Option<String>,
    /// `--timeout`.
    pub timeout: Duration,
}

impl Client {
    /// Checks the URLs and builds the HTTP client.
    pub fn new(urls: &[String], key: Option<String>, timeout_secs: f64) -> anyhow::Result<Self> {
        let urls: Vec<String> = urls
            .iter()
            .map(|u| trim_url(u))
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            bail!("no coordinator URL given (--coordinator or VARPULIS_COORDINATOR)");
        }
        for u in &urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("coordinator URL `{u}` must start with http:// or https://");
            }
        }
        let timeout = Duration::try_from_secs_f64(timeout_secs)
            .ok()
            .filter(|t| !t.is_zero())
            .with_context(|| format!("--timeout must be a positive number, got {timeout_secs}"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3).min(timeout))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            http,
            urls,
            key: key.filter(|k| !k.is_empty()),
            timeout,
        })
    }

    /// Rebuilds the HTTP client with `tls` (custom CA, client certificate).
    pub fn with_tls(mut self, tls: &varpulis_tls::ClientTls) -> anyhow::Result<Self> {
        if tls.is_custom() {
            self.http = tls
                .reqwest_builder()
                .timeout(self.timeout)
                .connect_timeout(Duration::from_secs(3).min(self.timeout))
                .build()
                .context("cannot build the HTTPS client")?;
        }
        Ok(self)
    }

    /// A request to `url + path` with the API key.
    pub fn builder(&self, url: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{url}{path}"));
        if let Some(k) = &self.key {
            req = req.header(API_KEY_HEADER, k);
        }
        req
    }

    /// One request against `url` only; the status and the body text.
    pub async fn send_to(
        &self,
        url: &str,
        method: &Method,
        path: &str,
        body: Option<&Body>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let mut req = self.builder(url, method.clone(), path);
        if let Some(k) = idempotency_key {
            req = req.header(IDEMPOTENCY_KEY_HEADER, k);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(v),
            Some(Body::Text(t)) => req
                .header(reqwest::header::CONTENT_TYPE, "text/plain")
                .body(t.clone()),
            None => req,
        };
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, text))
    }

    /// Sends to the coordinators in turn; returns the body of the first success, or the first
    /// answer that is neither a transport failure, nor 421, nor 503 (or the last such answer
    /// when every coordinator fails that way).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<String, ClientError> {
        let key = is_write(&method).then(|| format!("varpulis-cli-{}", uuid::Uuid::new_v4()));
        let deadline = tokio::time::Instant::now() + REFUSAL_RETRY.min(self.timeout);
        let mut pause = Duration::from_millis(250);
        loop {
            let refused = match self
                .request_pass(&method, path, body.as_ref(), key.as_deref())
                .await
            {
                Ok(text) => return Ok(text),
                Err(Pass::Final(err)) => return Err(err),
                Err(Pass::Refused(err)) => err,
            };
            if tokio::time::Instant::now() + pause > deadline {
                return Err(refused);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// One pass over the coordinators (see [`Client::request`]).
    async fn request_pass(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Body>,
        key: Option<&str>,
    ) -> Result<String, Pass> {
        let mut queue: Vec<String> = self.urls.clone();
        let mut tried: Vec<String> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut last_refusal: Option<ClientError> = None;
        while !queue.is_empty() {
            let url = queue.remove(0);
            if tried.contains(&url) {
                continue;
            }
            tried.push(url.clone());
            match self.send_to(&url, method, path, body, key).await {
                Err(e) => failures.push(format!("{url}: {}", transport_reason(&e))),
                Ok((status, text)) if status.is_success() => return Ok(text),
                Ok((status, text)) => match refusal(method, path, &url, status, &text) {
                    Refusal::TryNext { err, leader } => {
                        if let Some(leader) = leader {
                            queue.insert(0, leader);
                        }
                        failures.push(format!("{url}: HTTP {status}"));
                        last_refusal = Some(err);
                    }
                    Refusal::Final(err) => return Err(Pass::Final(err)),
                },
            }
        }
        Err(match last_refusal {
            Some(err) => Pass::Refused(err),
            None => Pass::Final(ClientError::Unreachable {
                method: method.clone(),
                path: path.to_owned(),
                details: failures.join("; "),
            }),
        })
    }

    /// `GET path`, decoded as `T` and kept as raw JSON (for `--json`).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, Value)> {
        let text = self.request(Method::GET, path, None).await?;
        decode(path, &text)
    }

    /// A write with a JSON body (or none), decoded as `T` and kept as raw JSON.
    pub async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(T, Value)> {
        let text = self.request(method, path, body.map(Body::Json)).await?;
        decode(path, &text)
    }
}

/// How one pass over the coordinators failed.
enum Pass {
    /// Every coordinator that answered refused with 421 or 503: worth another pass.
    Refused(ClientError),
    /// A definite answer (or nobody answered at all).
    Final(ClientError),
}

/// Whether `method` changes state (and so carries an idempotency key).
fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    )
}

/// `url` without surrounding blanks and trailing slashes.
pub fn trim_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// A short reason for a transport failure.
pub fn transport_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection refused or unreachable".to_owned()
    } else {
        e.to_string()
    }
}

/// The server's `error` and `code` (with VPL diagnostics), else the body text (shortened).
pub fn error_message(parsed: Option<&ErrorBody>, text: &str) -> String {
    match parsed {
        Some(b) => {
            let mut m = format!("{} ({})", b.error, b.code);
            for d in &b.diagnostics {
                m.push_str(&format!("\n  {}:{}: {}", d.line, d.column, d.message));
            }
            m
        }
        None if text.trim().is_empty() => "empty body".to_owned(),
        None => text.chars().take(500).collect(),
    }
}

/// What to do with a coordinator's error answer.
pub enum Refusal {
    /// 421 or 503: try the next coordinator (first the leader it names, if any).
    TryNext {
        /// The answer, kept in case no coordinator does better.
        err: ClientError,
        /// The leader URL the answer names.
        leader: Option<String>,
    },
    /// Any other error: the answer.
    Final(ClientError),
}

/// Classifies the error answer `status`/`text` of `method path` at `url` (shared by every
/// request loop that fails over between coordinators).
pub fn refusal(method: &Method, path: &str, url: &str, status: StatusCode, text: &str) -> Refusal {
    let parsed: Option<ErrorBody> = serde_json::from_str(text).ok();
    let err = ClientError::Http {
        method: method.clone(),
        path: path.to_owned(),
        url: url.to_owned(),
        status,
        message: error_message(parsed.as_ref(), text),
    };
    if status == StatusCode::MISDIRECTED_REQUEST || status == StatusCode::SERVICE_UNAVAILABLE {
        let leader = parsed.and_then(|p| p.leader_url).map(|l| trim_url(&l));
        Refusal::TryNext { err, leader }
    } else {
        Refusal::Final(err)
    }
}

/// Parses `text` as `T` and as a raw value (for `--json`).
pub fn decode<T: DeserializeOwned>(path: &str, text: &str) -> anyhow::Result<(T, Value)> {
    let raw: Value = serde_json::from_str(text).with_context(|| {
        format!(
            "{path}: the answer is not JSON: {}",
            text.chars().take(200).collect::<String>()
        )
    })?;
    let typed = serde_json::from_value(raw.clone())
        .with_context(|| format!("{path}: unexpected answer shape"))?;
    Ok((typed, raw))
}

/// Reads a file, or stdin for `-`.
pub fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
    }
}

/// Percent-encodes one path segment (ids and names typed by the user).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("worker-1"), "worker-1");
        assert_eq!(segment("a b/c?"), "a%20b%2Fc%3F");
        assert_eq!(segment("é"), "%C3%A9");
    }

    #[test]
    fn urls_and_timeouts_are_checked() {
        assert!(Client::new(&["ftp://x".into()], None, 1.0).is_err());
        assert!(Client::new(&[" ".into()], None, 1.0).is_err());
        assert!(Client::new(&["http://x".into()], None, 0.0).is_err());
        assert!(Client::new(&["http://x".into()], None, -1.0).is_err());
        let c = Client::new(
            &["http://x/ ".into(), "https://y//".into()],
            Some(String::new()),
            2.0,
        )
        .unwrap();
        assert_eq!(c.urls, ["http://x", "https://y"]);
        assert!(c.key.is_none());
    }
}
