//! The HTTP transport to the coordinators: the URL list, the worker's credentials (its API key
//! in `x-api-key`, the join token in `x-worker-token`), timeouts and the fail-over between
//! URLs.
//!
//! The URLs are tried in turn, starting at the one that answered last: a connect error, a 5xx,
//! a 421 (not the leader) or another 4xx (e.g. a wrong token on one node) moves to the next
//! one; a 2xx is success and a 404 means the coordinator does not know this worker.

use super::CallError;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One worker's HTTP link to its coordinators.
#[derive(Debug)]
pub struct HttpLink {
    http: reqwest::Client,
    urls: Vec<String>,
    api_key: Option<String>,
    worker_token: Option<String>,
    /// Index of the URL that answered last (the next call starts there).
    current: AtomicUsize,
}

/// One call: what to send and how.
pub struct Call<'a, B> {
    /// HTTP method.
    pub method: Method,
    /// Path under each base URL (`/api/v1/...`).
    pub path: String,
    /// JSON body, if any.
    pub body: Option<&'a B>,
    /// Timeout of each attempt instead of the client's.
    pub timeout: Option<Duration>,
}

impl HttpLink {
    /// A link to `urls` (tried in turn) presenting `api_key` (the key this worker registers
    /// with, which binds its id) in `x-api-key` and `worker_token` in `x-worker-token`.
    pub fn new(
        urls: Vec<String>,
        api_key: Option<String>,
        worker_token: Option<String>,
        timeout: Duration,
        tls: &varpulis_tls::ClientTls,
    ) -> Result<Self, String> {
        let http = tls
            .reqwest_builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            api_key,
            worker_token,
            current: AtomicUsize::new(0),
        })
    }

    fn request<B: serde::Serialize>(&self, base: &str, call: &Call<'_, B>) -> RequestBuilder {
        let mut req = self
            .http
            .request(call.method.clone(), format!("{base}{}", call.path));
        if let Some(body) = call.body {
            req = req.json(body);
        }
        if let Some(t) = call.timeout {
            req = req.timeout(t);
        }
        if let Some(k) = &self.api_key {
            req = req.header(varpulis_api::API_KEY_HEADER, k);
        }
        match &self.worker_token {
            Some(t) => req.header(varpulis_api::WORKER_TOKEN_HEADER, t),
            None => req,
        }
    }

    /// Sends the call to each URL in turn until one answers 2xx (returns the URL and the
    /// answer) or 404 (`UnknownWorker`).
    pub async fn send<B: serde::Serialize>(
        &self,
        call: Call<'_, B>,
    ) -> Result<(String, Response), CallError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no coordinator configured");
        for i in 0..self.urls.len() {
            let idx = (start + i) % self.urls.len();
            let base = &self.urls[idx];
            match self.request(base, &call).send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((base.clone(), resp));
                }
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Err(CallError::UnknownWorker);
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    last = format!("{base}: {status} {text}");
                }
                Err(e) => last = format!("{base}: {e}"),
            }
        }
        Err(CallError::Unavailable(last))
    }
}
