//! `.enrich(H, key: e, fields: [...], ttl: 60s, timeout: 500ms)` over HTTP connectors
//! (docs/connectors.md): the worker's [`Enricher`] for one pipeline.
//!
//! The engine runs on the pipeline's own thread and calls [`HttpEnricher::lookup`]
//! synchronously. A cached answer younger than `ttl` is returned at once. Otherwise the GET
//! request is spawned on the worker's reactor and the engine thread waits for its answer at
//! most `timeout` (a std channel, so the wait never needs a runtime context); past it the event
//! goes on unenriched and the timeout is counted (the request may still finish and fill the
//! cache for later events).
//!
//! Request: `GET url` where `{key}` in the connector's `url` is replaced by the key
//! (percent-encoded), else the key is appended as a last path segment
//! (`http://ref/customers` + `42` → `http://ref/customers/42`); the connector's `headers` go
//! along. 200 with a JSON object → its fields; 404 → "no data" (cached like an answer);
//! anything else, a non-object body, a connection error → an error (not cached). The cache
//! holds at most [`MAX_CACHED`] answers; when full, expired ones are dropped, then all.

use super::plan::output::{HttpParams, OutputPlan};
use super::sink::Sink;
use super::stats::ConnectorStats;
use crate::counters::Counters;
use crate::engine::Output;
use crate::error::WorkerError;
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use varpulis_api::worker::{ConnectorParams, ConnectorStatus, EnrichCounts};
use varpulis_runtime::operators::enrich::{EnrichRequest, Enricher};

/// Most answers one pipeline's enricher caches.
pub const MAX_CACHED: usize = 100_000;

type Answer = Option<Arc<Map<String, Value>>>;

/// `(connector, key)` → (expiry, answer).
type Cache = Mutex<HashMap<(String, String), (Instant, Answer)>>;

/// One HTTP connector as a lookup target.
#[derive(Debug)]
struct Target {
    params: HttpParams,
    stats: Arc<ConnectorStats>,
    counts: Counts,
}

#[derive(Debug, Default)]
struct Counts {
    lookups: AtomicU64,
    cache_hits: AtomicU64,
    fetched: AtomicU64,
    not_found: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The `.enrich` lookups of one pipeline.
#[derive(Debug)]
pub struct HttpEnricher {
    handle: tokio::runtime::Handle,
    client: reqwest::Client,
    targets: Mutex<BTreeMap<String, Arc<Target>>>,
    cache: Arc<Cache>,
}

impl HttpEnricher {
    /// An enricher sending its requests on `handle`'s reactor; no connectors yet.
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self {
            handle,
            client: reqwest::Client::new(),
            targets: Mutex::new(BTreeMap::new()),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Registers the program's HTTP connectors (declared, else supplied by the deploy) as
    /// lookup targets; bad parameters reject the deploy.
    pub fn configure(
        &self,
        declared: &[crate::engine::ConnectorDecl],
        supplied: &BTreeMap<String, ConnectorParams>,
    ) -> Result<(), WorkerError> {
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        let declared = declared
            .iter()
            .map(|c| (c.name.clone(), c.kind.clone(), c.params.clone()));
        let supplied = supplied.iter().map(|(n, s)| {
            (
                n.clone(),
                s.connector_type.to_ascii_lowercase(),
                s.params.clone(),
            )
        });
        for (name, kind, params) in declared.chain(supplied) {
            if kind != "http" || targets.contains_key(&name) {
                continue;
            }
            let plan = OutputPlan::new(&name, "http", &params)?;
            if let super::plan::output::OutputKind::Http(params) = plan.kind {
                targets.insert(
                    name.clone(),
                    Arc::new(Target {
                        params,
                        stats: Arc::new(ConnectorStats::new(&name, "http")),
                        counts: Counts::default(),
                    }),
                );
            }
        }
        Ok(())
    }

    /// The status of every connector that was looked up through.
    pub fn statuses(&self) -> Vec<ConnectorStatus> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        targets
            .iter()
            .filter(|(_, t)| t.counts.lookups.load(Ordering::Relaxed) > 0)
            .map(|(name, t)| {
                let mut s = t.stats.status();
                let c = &t.counts;
                s.enrich = Some(EnrichCounts {
                    lookups: c.lookups.load(Ordering::Relaxed),
                    cache_hits: c.cache_hits.load(Ordering::Relaxed),
                    fetched: c.fetched.load(Ordering::Relaxed),
                    not_found: c.not_found.load(Ordering::Relaxed),
                    timeouts: c.timeouts.load(Ordering::Relaxed),
                    errors: c.errors.load(Ordering::Relaxed),
                    cached: cache.keys().filter(|(n, _)| n == name).count() as u64,
                });
                s
            })
            .collect()
    }

    fn target(&self, name: &str) -> Option<Arc<Target>> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn cached(&self, connector: &str, key: &str) -> Option<Answer> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(&(connector.to_owned(), key.to_owned())) {
            Some((expiry, answer)) if *expiry > Instant::now() => Some(answer.clone()),
            _ => None,
        }
    }
}

/// Stores an answer, keeping the cache bounded.
fn store(cache: &Cache, key: (String, String), ttl: Duration, answer: Answer) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_CACHED {
        let now = Instant::now();
        cache.retain(|_, (expiry, _)| *expiry > now);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
    }
    cache.insert(key, (Instant::now() + ttl, answer));
}

/// `url` with `key` in place of `{key}`, else appended as the last path segment.
pub fn lookup_url(url: &str, key: &str) -> String {
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    if url.contains("{key}") {
        url.replace("{key}", &encoded)
    } else if url.ends_with('/') {
        format!("{url}{encoded}")
    } else {
        format!("{url}/{encoded}")
    }
}

/// How one request ended.
enum Fetched {
    Found(Arc<Map<String, Value>>),
    NotFound,
    Failed(String),
    /// The request's own `timeout` ran out (it races the engine's wait of the same length:
    /// either way the lookup timed out).
    TimedOut,
}

async fn fetch(client: reqwest::Client, t: Arc<Target>, url: String, timeout: Duration) -> Fetched {
    ConnectorStats::add(&t.stats.requests, 1);
    let mut req = client.get(&url).timeout(timeout);
    for (k, v) in &t.params.headers {
        req = req.header(k, v);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Fetched::TimedOut,
        Err(e) => return Fetched::Failed(format!("GET {url} failed: {e}")),
    };
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Fetched::NotFound;
    }
    if !status.is_success() {
        return Fetched::Failed(format!("GET {url} answered {status}"));
    }
    match resp.json::<Value>().await {
        Ok(Value::Object(m)) => Fetched::Found(Arc::new(m)),
        Ok(_) => Fetched::Failed(format!("GET {url}: the answer is not a JSON object")),
        Err(e) if e.is_timeout() => Fetched::TimedOut,
        Err(e) => Fetched::Failed(format!("GET {url}: unreadable answer: {e}")),
    }
}

impl Enricher for HttpEnricher {
    fn lookup(&self, req: &EnrichRequest<'_>) -> Answer {
        let t = self.target(req.connector)?;
        bump(&t.counts.lookups);
        if let Some(answer) = self.cached(req.connector, req.key) {
            bump(&t.counts.cache_hits);
            return answer;
        }
        let url = lookup_url(&t.params.url, req.key);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let cache = self.cache.clone();
        let cache_key = (req.connector.to_owned(), req.key.to_owned());
        let ttl = req.ttl;
        let task_target = t.clone();
        let client = self.client.clone();
        let timeout = req.timeout;
        self.handle.spawn(async move {
            let got = fetch(client, task_target, url, timeout).await;
            // Answers are cached even when the engine stopped waiting.
            match &got {
                Fetched::Found(m) => store(&cache, cache_key, ttl, Some(m.clone())),
                Fetched::NotFound => store(&cache, cache_key, ttl, None),
                Fetched::Failed(_) | Fetched::TimedOut => {}
            }
            let _ = tx.send(got);
        });
        match rx.recv_timeout(req.timeout) {
            Ok(Fetched::Found(m)) => {
                bump(&t.counts.fetched);
                t.stats.set_ok();
                Some(m)
            }
            Ok(Fetched::NotFound) => {
                bump(&t.counts.not_found);
                t.stats.set_ok();
                None
            }
            Ok(Fetched::Failed(e)) => {
                bump(&t.counts.errors);
                tracing::warn!(connector = %req.connector, error = %e, "enrich lookup failed");
                t.stats.set_down(e);
                None
            }
            Ok(Fetched::TimedOut) | Err(_) => {
                bump(&t.counts.timeouts);
                tracing::warn!(connector = %req.connector, key = %req.key,
                    timeout = ?req.timeout, "enrich lookup timed out");
                t.stats.set_down(format!(
                    "lookup of `{}` timed out after {:?}",
                    req.key, req.timeout
                ));
                None
            }
        }
    }
}

/// Shows an enricher's connectors in the pipeline's status and metrics (it publishes nothing).
#[derive(Debug)]
pub struct EnrichStatus(pub Arc<HttpEnricher>);

impl Sink for EnrichStatus {
    fn publish<'a>(&'a self, _: &'a [Output], _: &'a Counters) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn status(&self) -> Vec<ConnectorStatus> {
        self.0.statuses()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_goes_in_the_placeholder_or_the_path() {
        assert_eq!(
            lookup_url("http://r/c/{key}?x=1", "a b"),
            "http://r/c/a%20b?x=1"
        );
        assert_eq!(lookup_url("http://r/c", "42"), "http://r/c/42");
        assert_eq!(lookup_url("http://r/c/", "a/b"), "http://r/c/a%2Fb");
        assert_eq!(
            lookup_url("http://r/q?id={key}", "é"),
            "http://r/q?id=%C3%A9"
        );
    }
}
