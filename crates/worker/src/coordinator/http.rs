//! The HTTP transport to the coordinators: the URL list, the worker's credentials (its API key
//! in `x-api-key`, the join token in `x-worker-token`), timeouts and the fail-over between
//! URLs.
//!
//! The URLs are tried in turn, starting at the one that answered last: a connect error, a 5xx,
//! a 421 (not the leader) or another 4xx (e.g. a wrong token on one node) moves to the next
//! one; a 2xx is success and a 404 means the coordinator does not know this worker.
//!
//! Discovery: the coordinators named in registration and heartbeat answers are added to the
//! list ([`HttpLink::learn`]), so a worker started with one URL fails over to every member of
//! the ensemble. Configured URLs are never dropped.

use super::CallError;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// One worker's HTTP link to its coordinators.
#[derive(Debug)]
pub struct HttpLink {
    http: reqwest::Client,
    /// Configured URLs first, then the discovered ones (only ever appended).
    urls: RwLock<Vec<String>>,
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
            urls: RwLock::new(
                urls.into_iter()
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect(),
            ),
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

    /// The URLs tried, configured first then discovered.
    pub fn urls(&self) -> Vec<String> {
        self.urls.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts the next calls at `url` when it is one of the URLs.
    pub fn prefer(&self, url: &str) {
        let url = url.trim_end_matches('/');
        if let Some(i) = self.urls().iter().position(|u| u == url) {
            self.current.store(i, Ordering::Relaxed);
        }
    }

    /// Adds the coordinators an answer named that are not known yet; returns how many.
    pub fn learn(&self, coordinators: &[String]) -> usize {
        let mut urls = self.urls.write().unwrap_or_else(|p| p.into_inner());
        let mut added = 0;
        for c in coordinators {
            let c = c.trim_end_matches('/');
            if c.is_empty() || !(c.starts_with("http://") || c.starts_with("https://")) {
                continue;
            }
            if !urls.iter().any(|u| u == c) {
                urls.push(c.to_owned());
                added += 1;
            }
        }
        added
    }

    /// Sends the call to each URL in turn until one answers 2xx (returns the URL and the
    /// answer) or 404 (`UnknownWorker`).
    pub async fn send<B: serde::Serialize>(
        &self,
        call: Call<'_, B>,
    ) -> Result<(String, Response), CallError> {
        let urls = self.urls();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no coordinator configured");
        for i in 0..urls.len() {
            let idx = (start + i) % urls.len();
            let base = &urls[idx];
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
