//! REST API: deploy/inject/checkpoint/restore, batch forms, auth and every error path.

use crate::harness::*;
use serde_json::{json, Value};
use varpulis_worker::WorkerConfig;

const FILTER: &str = "stream Hot = Reading .where(temp > 50) .emit(id: id, temp: temp)\n";

const COUNTER: &str = "var count = 0\n\
fn bump(v: int):\n    count := count + 1\n    emit Count(n: count, v: v)\n\
stream Counted = Tick .process(bump(value))\n";

fn last_n(body: &Value) -> i64 {
    body["output_events"].as_array().unwrap().last().unwrap()["fields"]["n"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_state_survives_checkpoint_and_restore_on_another_worker() {
    let w1 = start_worker(config()).await;
    let id = deploy(&w1, "counter", COUNTER).await;
    let mut last = Value::Null;
    for v in 1..=3 {
        let (s, b) = post(
            &format!("{}/api/v1/pipelines/{id}/events", w1.url),
            json!({"event_type": "Tick", "fields": {"value": v}}),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["accepted"], true);
        last = b;
    }
    assert_eq!(last_n(&last), 3);
    assert_eq!(last["output_events"][0]["event_type"], "Count");
    assert!(last["output_events"][0]["timestamp"].is_string());

    let (s, cp) = post(
        &format!("{}/api/v1/pipelines/{id}/checkpoint", w1.url),
        json!({}),
    )
    .await;
    assert_eq!(s, 200, "{cp}");
    assert_eq!(cp["events_processed"], 3);
    assert_eq!(cp["pipeline_id"], id.as_str());

    // Restore into a second pipeline on a second worker: the counter continues.
    let w2 = start_worker(config()).await;
    let id2 = deploy(&w2, "counter-copy", COUNTER).await;
    let (s, b) = post(
        &format!("{}/api/v1/pipelines/{id2}/restore", w2.url),
        cp.clone(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b, json!({"restored": true, "events_processed": 3}));
    let (_, b) = post(
        &format!("{}/api/v1/pipelines/{id2}/events", w2.url),
        json!({"event_type": "Tick", "fields": {"value": 9}}),
    )
    .await;
    assert_eq!(last_n(&b), 4);

    // A deploy carrying the checkpoint starts from it too (migration path).
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w2.url),
        json!({"name": "migrated", "source": COUNTER, "checkpoint": cp, "id": "mig-1", "epoch": 7}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (_, b) = post(
        &format!("{}/api/v1/pipelines/mig-1/events", w2.url),
        json!({"event_type": "Tick", "fields": {"value": 1}}),
    )
    .await;
    assert_eq!(last_n(&b), 4);
    let (_, info) = get(&format!("{}/api/v1/pipelines/mig-1", w2.url)).await;
    assert_eq!(info["epoch"], 7);
    assert_eq!(info["events_in"], 4);

    // A checkpoint of another program is refused and changes nothing.
    let other = deploy(&w2, "filter", FILTER).await;
    let (s, b) = post(&format!("{}/api/v1/pipelines/{other}/restore", w2.url), cp).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("bad_checkpoint")),
        "{b}"
    );
    w1.shutdown().await;
    w2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_get_metrics_delete_and_idempotent_deploy() {
    let w = start_worker(config()).await;
    let base = format!("{}/api/v1/pipelines", w.url);
    let (s, b) = post(&base, json!({"name": "f", "source": FILTER, "id": "fixed"})).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b, json!({"id": "fixed", "name": "f", "status": "running"}));
    let (s, _) = post(&base, json!({"name": "f", "source": FILTER, "id": "fixed"})).await;
    assert_eq!(s, 200, "same id and source is idempotent");
    let (s, b) = post(
        &base,
        json!({"name": "f", "source": "stream X = Y .emit()", "id": "fixed"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("conflict")));

    let (_, b) = post(
        &format!("{base}/fixed/events"),
        json!({"event_type": "Reading", "fields": {"id": "a", "temp": 70}}),
    )
    .await;
    assert_eq!(
        b["output_events"][0],
        json!({"event_type": "Hot", "timestamp": b["output_events"][0]["timestamp"], "fields": {"id": "a", "temp": 70}})
    );
    let (_, b) = post(
        &format!("{base}/fixed/events"),
        json!({"event_type": "Reading", "fields": {"id": "b", "temp": 10}}),
    )
    .await;
    assert_eq!(b["output_events"], json!([]));

    let (s, list) = get(&base).await;
    assert_eq!(s, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["pipelines"][0]["id"], "fixed");
    let (_, m) = get(&format!("{base}/fixed/metrics")).await;
    assert_eq!(
        m,
        json!({"pipeline_id": "fixed", "events_in": 2, "events_out": 1, "errors": 0})
    );

    let text = metrics_text(&w).await;
    assert!(
        text.contains("varpulis_worker_events_in_total{pipeline=\"fixed\",name=\"f\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("varpulis_worker_pipelines_running 1"),
        "{text}"
    );
    assert!(
        text.contains("varpulis_worker_inject_latency_seconds_count 2"),
        "{text}"
    );

    let (s, _) = call(client().delete(format!("{base}/fixed"))).await;
    assert_eq!(s, 200);
    let (s, b) = get(&format!("{base}/fixed")).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_inject_accepts_wrapped_bare_and_evt_forms() {
    let w = start_worker(config()).await;
    let id = deploy(&w, "f", FILTER).await;
    let url = format!("{}/api/v1/pipelines/{id}/events-batch", w.url);
    let events = json!([
        {"event_type": "Reading", "fields": {"id": "a", "temp": 70}},
        {"event_type": "Reading", "fields": {"id": "b", "temp": 1}},
        {"event_type": "Reading", "fields": {"id": "c", "temp": 99}}
    ]);
    let (s, b) = post(&url, json!({"events": events})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["accepted"], 3);
    assert_eq!(b["output_events"].as_array().unwrap().len(), 2);
    let (s, b) = post(&url, events).await;
    assert_eq!((s, b["accepted"].as_u64()), (200, Some(3)));
    let evt = "# comment\nReading { id: \"x\", temp: 80 }\n@5s Reading(\"y\", 3)\nReading { id: \"z\", temp: 51 }\n";
    let (s, b) = call(
        client()
            .post(&url)
            .header("content-type", "text/plain")
            .body(evt),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["accepted"], 3);
    let ids: Vec<&str> = b["output_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["fields"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["x", "z"]);
    // A large batch (processed on the blocking pool) keeps order and counts.
    let many: Vec<Value> = (0..5000)
        .map(|i| json!({"event_type": "Reading", "fields": {"id": i.to_string(), "temp": if i % 10 == 0 { 60 } else { 5 }}}))
        .collect();
    let (s, b) = post(&url, Value::Array(many)).await;
    assert_eq!((s, b["accepted"].as_u64()), (200, Some(5000)));
    let outs = b["output_events"].as_array().unwrap();
    assert_eq!(outs.len(), 500);
    assert_eq!(outs[1]["fields"]["id"], "10");
    let (_, m) = get(&format!("{}/api/v1/pipelines/{id}/metrics", w.url)).await;
    assert_eq!(m["events_in"], 5009);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_the_right_status() {
    let w = start_worker(WorkerConfig {
        body_limit: 4096,
        ..config()
    })
    .await;
    let base = format!("{}/api/v1/pipelines", w.url);

    // Bad VPL: 400 with line and column.
    let (s, b) = post(
        &base,
        json!({"name": "bad", "source": "stream A = EventA\n    .where(x > )\n"}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("invalid_vpl")), "{b}");
    let d = &b["diagnostics"][0];
    assert_eq!(d["line"], 2, "{b}");
    assert!(d["column"].as_u64().unwrap() > 1, "{b}");
    assert!(d["message"].is_string() && d["rendered"].is_string(), "{b}");
    let (_, list) = get(&base).await;
    assert_eq!(list["total"], 0, "a rejected deploy changes nothing");

    // Malformed JSON: serde's message.
    let (s, b) = call(
        client()
            .post(&base)
            .header("content-type", "application/json")
            .body("{\"name\": "),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("bad_request")), "{b}");
    assert!(b["error"].as_str().unwrap().contains("line 1"), "{b}");
    // Missing field.
    let (s, b) = post(&base, json!({"name": "x"})).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("source"), "{b}");

    // Unknown ids and routes.
    for path in [
        "/api/v1/pipelines/nope",
        "/api/v1/pipelines/nope/metrics",
        "/api/v1/nothing",
    ] {
        let (s, b) = get(&format!("{}{path}", w.url)).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {b}"
        );
    }
    let (s, b) = post(
        &format!("{base}/nope/events"),
        json!({"event_type": "A", "fields": {}}),
    )
    .await;
    assert_eq!(s, 404, "{b}");

    // Wrong method.
    let (s, b) = call(client().delete(format!("{}/api/v1/drain", w.url))).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{b}"
    );

    // Oversized body (declared length and streamed).
    let big = "x".repeat(10_000);
    let (s, b) = post(&base, json!({"name": "big", "source": big})).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (413, Some("payload_too_large")),
        "{b}"
    );

    let id = deploy(&w, "f", FILTER).await;
    let batch = format!("{base}/{id}/events-batch");
    // Wrong content types.
    let (s, b) = call(
        client()
            .post(&batch)
            .header("content-type", "application/xml")
            .body("<a/>"),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{b}"
    );
    let (s, b) = call(
        client()
            .post(&base)
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(s, 415, "{b}");
    // Bad .evt line names the line; nothing is processed.
    let (s, b) = call(
        client()
            .post(&batch)
            .header("content-type", "text/plain")
            .body("Reading { temp: 90 }\n@@ nonsense {\n"),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (400, Some("bad_request")), "{b}");
    assert!(b["error"].as_str().unwrap().contains("line 2"), "{b}");
    let (_, m) = get(&format!("{base}/{id}/metrics")).await;
    assert_eq!(m["events_in"], 0);
    // Bad batch JSON.
    let (s, b) = call(
        client()
            .post(&batch)
            .header("content-type", "application/json")
            .body("[{\"event_type\": 3}]"),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // Bad checkpoint.
    let (s, b) = post(
        &format!("{base}/{id}/restore"),
        json!({"pipeline_id": "x", "events_processed": 1, "version": 1, "state": "!!"}),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (400, Some("bad_checkpoint")),
        "{b}"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_required_except_on_health_and_ready() {
    let w = start_worker(config()).await;
    let c = client();
    for (key, expect) in [(None, 401), (Some("wrong"), 401), (Some(KEY), 200)] {
        let mut req = c.get(format!("{}/api/v1/pipelines", w.url));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), expect);
        if expect == 401 {
            let b: Value = resp.json().await.unwrap();
            assert_eq!(b["code"], "unauthorized");
            assert!(b["error"].is_string());
        }
    }
    let resp = c.get(format!("{}/metrics", w.url)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let h: Value = c
        .get(format!("{}/health", w.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["role"], "worker");
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["worker_id"], "w-test");
    assert!(h["version"].is_string());
    let r = c.get(format!("{}/ready", w.url)).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "standalone workers are ready at once"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_refuses_new_deploys_but_keeps_pipelines() {
    let w = start_worker(WorkerConfig {
        max_pipelines: 1,
        ..config()
    })
    .await;
    let id = deploy(&w, "f", FILTER).await;
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        json!({"name": "g", "source": FILTER}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (503, Some("at_capacity")), "{b}");
    let (s, b) = post(&format!("{}/api/v1/drain", w.url), json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(b, json!({"draining": true, "pipelines_running": 1}));
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        json!({"name": "g", "source": FILTER}),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (503, Some("draining")), "{b}");
    let (s, _) = post(
        &format!("{}/api/v1/pipelines/{id}/events", w.url),
        json!({"event_type": "Reading", "fields": {"temp": 99}}),
    )
    .await;
    assert_eq!(s, 200);
    let r = client()
        .get(format!("{}/ready", w.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_an_older_epoch_of_a_placement_are_refused_as_stale() {
    let w = start_worker(config()).await;
    let (s, b) = post(
        &format!("{}/api/v1/pipelines", w.url),
        json!({"name": "g/echo", "source": FILTER, "id": "echo-g1-r0-e2", "epoch": 2}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let event = json!({"event_type": "Reading", "fields": {"id": "a", "temp": 70}});
    // The current epoch takes events.
    let (s, b) = post(
        &format!("{}/api/v1/pipelines/echo-g1-r0-e2/events", w.url),
        event.clone(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // An older epoch of the same placement: refused, single and batch.
    let (s, b) = post(
        &format!("{}/api/v1/pipelines/echo-g1-r0-e1/events", w.url),
        event.clone(),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["code"], "stale_epoch", "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("echo-g1-r0-e2"),
        "{b}"
    );
    let (s, b) = post(
        &format!("{}/api/v1/pipelines/echo-g1-r0-e1/events-batch", w.url),
        json!([event.clone()]),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (409, Some("stale_epoch")), "{b}");
    // A newer epoch that is not here, another placement, a hand-made id: plain 404.
    for id in ["echo-g1-r0-e3", "echo-g1-r1-e1", "nothing"] {
        let (s, b) = post(
            &format!("{}/api/v1/pipelines/{id}/events", w.url),
            event.clone(),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (404, Some("not_found")),
            "{id}: {b}"
        );
    }
}
