//! A local HTTP target for the HTTP sink: records every request and can fail the first N
//! requests, answer slowly, refuse with a status, or not be listening yet.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use axum::Router;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// One request the target received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// The status it answered.
    pub status: u16,
}

/// How the target behaves.
#[derive(Default)]
pub struct Behaviour {
    /// Answer 503 to this many requests first.
    pub fail_first: u64,
    /// Answer every request with this status (after `fail_first`), else 200.
    pub always: Option<u16>,
    /// Wait this long before answering.
    pub delay: Duration,
}

#[derive(Clone)]
pub struct Target {
    inner: Arc<Inner>,
}

struct Inner {
    behaviour: Behaviour,
    seen: AtomicU64,
    received: Mutex<Vec<Received>>,
}

impl Target {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            inner: Arc::new(Inner {
                behaviour,
                seen: AtomicU64::new(0),
                received: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Serves on `listener` until the sender fires (or is dropped).
    pub fn serve(&self, listener: tokio::net::TcpListener) -> oneshot::Sender<()> {
        let app = Router::new()
            .route("/{*path}", any(handle))
            .with_state(self.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        tx
    }

    pub fn requests(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// The events of every request answered 2xx, in arrival order (arrays flattened).
    pub fn delivered(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .flat_map(|r| match r.body {
                Value::Array(items) => items,
                v => vec![v],
            })
            .collect()
    }
}

async fn handle(
    State(t): State<Target>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = t.inner.seen.fetch_add(1, Ordering::SeqCst);
    let b = &t.inner.behaviour;
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    let status = if n < b.fail_first {
        503
    } else {
        b.always.unwrap_or(200)
    };
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    t.inner.received.lock().unwrap().push(Received {
        method: method.to_string(),
        headers,
        body,
        status,
    });
    StatusCode::from_u16(status).unwrap()
}

/// A target listening on a fresh loopback port; returns it, its base URL and its stopper.
pub async fn start(behaviour: Behaviour) -> (Target, String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let t = Target::new(behaviour);
    let stop = t.serve(listener);
    (t, url, stop)
}
