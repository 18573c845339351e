//! `.enrich` over an HTTP connector: fields merged, cache hits, TTL expiry, timeouts, 404s and
//! errors passing events on unenriched and counted.

use crate::harness::*;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get as get_route;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reference data: `GET /customers/{id}`; counts the requests per id.
#[derive(Clone, Default)]
struct Reference {
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl Reference {
    fn hits(&self, id: &str) -> u64 {
        self.hits.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

async fn customer(
    State(r): State<Reference>,
    Path(id): Path<String>,
) -> Result<Json<Value>, StatusCode> {
    *r.hits.lock().unwrap().entry(id.clone()).or_default() += 1;
    match id.as_str() {
        "missing" => Err(StatusCode::NOT_FOUND),
        "broken" => Err(StatusCode::INTERNAL_SERVER_ERROR),
        "slow" => {
            // Far longer than the 200 ms timeout, so a loaded machine cannot blur the two.
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(Json(json!({"name": "Slow", "tier": "gold"})))
        }
        _ => Ok(Json(
            json!({"name": format!("Customer {id}"), "tier": "silver", "secret": "s3cr3t"}),
        )),
    }
}

async fn start_reference() -> (Reference, String) {
    let r = Reference::default();
    let app = Router::new()
        .route("/customers/{id}", get_route(customer))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (r, url)
}

/// Injects one order and returns its single output's fields.
async fn order(w: &Worker, id: &str, customer: &str) -> Value {
    let (s, b) = post(
        &format!("{}/api/v1/pipelines/{id}/events", w.url),
        json!({"event_type": "Order", "fields": {"customer": customer, "amount": 5}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let outs = b["output_events"].as_array().unwrap();
    assert_eq!(outs.len(), 1, "{b}");
    outs[0]["fields"].clone()
}

async fn enrich_counts(w: &Worker, id: &str) -> Value {
    let (_, i) = get(&format!("{}/api/v1/pipelines/{id}", w.url)).await;
    i["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["enrich"].is_object())
        .map(|c| c["enrich"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrich_merges_fields_caches_answers_and_expires_them() {
    let (r, url) = start_reference().await;
    let w = start_worker(config()).await;
    let src = format!(
        "connector Ref = http(url: \"{url}/customers\")\n\
         stream Enriched = Order .enrich(Ref, key: customer, fields: [name, tier], ttl: 1s, timeout: 500ms) .emit()\n"
    );
    let id = deploy(&w, "enrich", &src).await;
    let first = order(&w, &id, "c1").await;
    assert_eq!(
        first,
        json!({"customer": "c1", "amount": 5, "name": "Customer c1", "tier": "silver"}),
        "only the listed fields are merged"
    );
    assert_eq!(order(&w, &id, "c1").await["name"], "Customer c1");
    assert_eq!(order(&w, &id, "c2").await["name"], "Customer c2");
    assert_eq!(order(&w, &id, "c1").await["tier"], "silver");
    assert_eq!(
        (r.hits("c1"), r.hits("c2")),
        (1, 1),
        "answers come from the cache"
    );
    let c = enrich_counts(&w, &id).await;
    assert_eq!(
        (
            c["lookups"].as_u64(),
            c["cache_hits"].as_u64(),
            c["fetched"].as_u64()
        ),
        (Some(4), Some(2), Some(2)),
        "{c}"
    );
    // Past the TTL the key is asked again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(order(&w, &id, "c1").await["name"], "Customer c1");
    assert_eq!(r.hits("c1"), 2);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_404s_and_errors_pass_events_on_unenriched_and_count_them() {
    let (r, url) = start_reference().await;
    let w = start_worker(config()).await;
    // `{key}` in the URL; all returned fields merged (no `fields:`).
    let src = format!(
        "connector Ref = http(url: \"{url}/customers/{{key}}\")\n\
         stream Enriched = Order .enrich(Ref, key: customer, ttl: 60s, timeout: 200ms) .emit()\n"
    );
    let id = deploy(&w, "enrich", &src).await;
    let started = Instant::now();
    let slow = order(&w, &id, "slow").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the event waited for the slow answer: {:?}",
        started.elapsed()
    );
    assert_eq!(slow, json!({"customer": "slow", "amount": 5}));
    let (_, i) = get(&format!("{}/api/v1/pipelines/{id}", w.url)).await;
    assert_eq!(i["status"], "degraded", "{i}");
    assert!(
        i["status_reason"].as_str().unwrap().contains("timed out"),
        "{i}"
    );
    assert_eq!(
        order(&w, &id, "missing").await,
        json!({"customer": "missing", "amount": 5})
    );
    assert_eq!(
        order(&w, &id, "broken").await,
        json!({"customer": "broken", "amount": 5})
    );
    let ok = order(&w, &id, "c9").await;
    assert_eq!(
        ok["secret"], "s3cr3t",
        "all fields merged without `fields:`"
    );
    assert_eq!(ok["name"], "Customer c9");
    // A 404 is an answer (cached); an error is not.
    order(&w, &id, "missing").await;
    order(&w, &id, "broken").await;
    assert_eq!((r.hits("missing"), r.hits("broken")), (1, 2));
    let c = enrich_counts(&w, &id).await;
    assert_eq!(c["timeouts"], 1, "{c}");
    assert_eq!(c["not_found"], 1, "{c}");
    assert_eq!(c["errors"], 2, "{c}");
    assert_eq!(c["cache_hits"], 1, "{c}");
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrich_needs_an_http_connector() {
    let w = start_worker(config()).await;
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        json!({"name": "bad", "source": "connector M = mqtt(host: \"h\")\nstream S = A .enrich(M, key: k) .emit()"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("needs an `http` connector"),
        "{b}"
    );
    w.shutdown().await;
}
