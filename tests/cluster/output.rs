//! Output streaming (issue 11): a worker's `GET /api/v1/pipelines/{id}/output` and the
//! coordinator's merged `GET /api/v1/cluster/pipeline-groups/{id}/output`, read with a real
//! streaming HTTP client; a subscriber that does not read never slows the pipeline down and is
//! told how much it missed.

use crate::events::SseReader;
use crate::harness::{Ensemble, Opts, ADMIN_KEY};
use crate::migration::{create_counters, group_view};
use serde_json::{json, Value};
use std::time::Duration;

/// Posts one `Tick { value }` to the inject URL, expecting 2xx.
async fn post_tick(ens: &Ensemble, inject: &str, value: i64) {
    let event = json!({"event_type": "Tick", "fields": {"value": value}});
    ens.api.post(inject, &event).await.unwrap().expect_ok();
}

#[tokio::test]
async fn outputs_stream_live_from_worker_and_coordinator() {
    let ens = Ensemble::start(1, 1, Opts::default()).await;
    let gid = create_counters(&ens, 0, "out", &[("count", "Tick", "worker-0")]).await;
    let g = group_view(&ens, 0, &gid).await.unwrap();
    let pid = g["placements"][0]["pipeline_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = &ens.workers[0].url;
    let key = ens.opts.worker_key.clone();

    let mut direct =
        SseReader::open(&format!("{worker}/api/v1/pipelines/{pid}/output"), &key).await;
    let mut merged = SseReader::open(
        &ens.cluster_url(0, &format!("/pipeline-groups/{gid}/output")),
        ADMIN_KEY,
    )
    .await;
    // The merged stream subscribes to the worker in the background: inject until it relays.
    let inject = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject"));
    let mut sent = 0;
    let first = loop {
        sent += 1;
        post_tick(&ens, &inject, sent).await;
        if let Some(ev) = merged.next(Duration::from_millis(300)).await {
            break ev;
        }
        assert!(sent < 50, "the merged stream relays nothing");
    };
    assert_eq!(first.event, "output");
    assert_eq!(first.data["pipeline"], "count");
    assert_eq!(first.data["worker_id"], "worker-0");
    let n_of = |v: &Value| v["fields"]["n"].as_i64().unwrap();
    let mut merged_ns = vec![n_of(&first.data["event"])];
    for _ in 0..5 {
        sent += 1;
        post_tick(&ens, &inject, sent).await;
    }
    while merged_ns.len() < 6 {
        let ev = merged
            .next(Duration::from_secs(10))
            .await
            .expect("merged output");
        merged_ns.push(n_of(&ev.data["event"]));
    }
    let start = merged_ns[0];
    assert_eq!(merged_ns, (start..start + 6).collect::<Vec<_>>());
    // The worker stream saw every output, in order, from the first one.
    let mut direct_ns = Vec::new();
    while direct_ns.len() < sent as usize {
        let ev = direct
            .next(Duration::from_secs(10))
            .await
            .expect("direct output");
        assert_eq!(ev.event, "output");
        assert_eq!(ev.data["event_type"], "Count");
        direct_ns.push(n_of(&ev.data));
    }
    assert_eq!(direct_ns, (1..=sent).collect::<Vec<_>>());

    // A subscriber that stops reading: the pipeline keeps going, the subscriber is told.
    let mut idle = SseReader::open(&format!("{worker}/api/v1/pipelines/{pid}/output"), &key).await;
    let batch: Vec<Value> = (0..50_000)
        .map(|i| json!({"event_type": "Tick", "fields": {"value": i}}))
        .collect();
    let api = ens
        .api
        .with_key(Some(&key))
        .with_timeout(Duration::from_secs(120));
    for _ in 0..4 {
        let r = api
            .post(
                &format!("{worker}/api/v1/pipelines/{pid}/events-batch"),
                &json!({"events": batch}),
            )
            .await
            .unwrap();
        r.expect_ok();
        assert_eq!(r.body["accepted"], 50_000);
    }
    let mut lagged = None;
    for _ in 0..300_000 {
        let Some(ev) = idle.next(Duration::from_secs(10)).await else {
            break;
        };
        if ev.event == "lagged" {
            lagged = Some(ev);
            break;
        }
    }
    let lagged = lagged.expect("a reader that fell behind gets a lagged event");
    assert!(lagged.data["skipped"].as_u64().unwrap() > 0);

    // Deleting the pipeline ends its stream.
    api.delete(&format!("{worker}/api/v1/pipelines/{pid}"))
        .await
        .unwrap()
        .expect_ok();
    let mut ended = false;
    while let Some(ev) = direct.next(Duration::from_secs(10)).await {
        if ev.event == "end" {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream of a deleted pipeline ends");
}
