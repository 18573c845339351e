//! The coordinator's inject-batch (issue 22 item 6): a mixed batch is regrouped per pipeline
//! without re-encoding, each pipeline gets its events in order, the answer carries every
//! pipeline's outputs (what the workers answer to the same parts posted directly), and bad
//! input gets the same clear errors.

use super::{broker, deploy, opts, placement};
use crate::harness::{Api, Ensemble, WORKER_KEY};
use serde_json::{json, Value};
use std::time::Duration;

/// Output events without their timestamps (processing time differs between two runs).
fn untimed(events: &Value) -> Vec<Value> {
    events
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut e| {
            if let Some(o) = e.as_object_mut() {
                o.remove("timestamp");
            }
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coordinator_inject_batch_regroups_per_pipeline_like_direct_worker_calls() {
    let broker = broker();
    let ens = Ensemble::start(1, 2, opts(&broker, &["w-a", "w-b"])).await;
    let gid = deploy(
        &ens,
        &json!({
            "name": "split",
            "pipelines": [
                {"name": "pa", "source": "stream OutA = A .where(v > 1) .emit(v: v, tag: tag)", "worker_affinity": "w-a"},
                {"name": "pb", "source": "stream OutB = B .emit(w: w * 2)", "worker_affinity": "w-b"}
            ],
            "routes": [
                {"from_pipeline": "_external", "to_pipeline": "pa", "event_types": ["A"]},
                {"from_pipeline": "_external", "to_pipeline": "pb", "event_types": ["B*"]}
            ]
        }),
    )
    .await;
    let url = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject-batch"));
    // Mixed types, odd spacing, escapes and numbers that must reach the worker as written.
    let body = r#"{"events": [
        {"event_type": "B", "fields": {"w": 1}},
        {"event_type": "A", "fields": {"v": 2, "tag": "x\"y\u00e9"}, "timestamp": 1000},
        {"fields": {"w": 2.5}, "event_type": "Bx"},
        {"event_type":"A","fields":{"v":1}},
        {"event_type": "A", "fields": {"v": 30, "tag": null}, "extra": [1, {"k": 2}]}
    ]}"#;
    let r = ens
        .api
        .post_raw(&url, body.as_bytes().to_vec(), "application/json")
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["accepted"], 5, "{}", r.text);
    assert_eq!(r.body["routed"], json!({"pa": 3, "pb": 2}), "{}", r.text);
    let types: Vec<&str> = r.body["output_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect();
    // `pb` was routed to first: its outputs come first (its stream reads `B`, not `Bx`).
    assert_eq!(types, ["OutB", "OutA", "OutA"], "{}", r.text);

    // The same parts posted to the workers directly give the same outputs.
    let worker = Api::new(Some(WORKER_KEY)).with_timeout(Duration::from_secs(10));
    let mut direct = Vec::new();
    for (name, part) in [
        (
            "pb",
            r#"[{"event_type": "B", "fields": {"w": 1}}, {"fields": {"w": 2.5}, "event_type": "Bx"}]"#,
        ),
        (
            "pa",
            r#"[{"event_type": "A", "fields": {"v": 2, "tag": "x\"y\u00e9"}, "timestamp": 1000},
                {"event_type":"A","fields":{"v":1}},
                {"event_type": "A", "fields": {"v": 30, "tag": null}}]"#,
        ),
    ] {
        let (_, address, id) = placement(&ens, &gid, name).await;
        let d = worker
            .post_raw(
                &format!("{address}/api/v1/pipelines/{id}/events-batch"),
                part.as_bytes().to_vec(),
                "application/json",
            )
            .await
            .unwrap();
        d.expect_status(200);
        direct.extend(untimed(&d.body["output_events"]));
    }
    assert_eq!(untimed(&r.body["output_events"]), direct);
    assert_eq!(r.body["output_events"][1]["fields"]["tag"], "x\"yé");

    // .evt text: comments go to both parts, each pipeline gets its own lines.
    let evt = "# readings\nB { w: 5 }\nA { v: 9, tag: \"t\" }\n// end\n";
    let r = ens
        .api
        .post_raw(&url, evt.as_bytes().to_vec(), "text/plain")
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["routed"], json!({"pa": 1, "pb": 1}), "{}", r.text);
    assert_eq!(
        untimed(&r.body["output_events"]),
        [
            json!({"event_type": "OutB", "fields": {"w": 10}}),
            json!({"event_type": "OutA", "fields": {"v": 9, "tag": "t"}})
        ]
    );

    // A single target: the body goes through as sent (bare array).
    let r = ens
        .api
        .post_raw(
            &url,
            br#"[{"event_type": "A", "fields": {"v": 7, "tag": "s"}}]"#.to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["routed"], json!({"pa": 1}));
    assert_eq!(
        untimed(&r.body["output_events"]),
        [json!({"event_type": "OutA", "fields": {"v": 7, "tag": "s"}})]
    );

    // Bad input: a clear 400 naming the event, nothing forwarded.
    for (bad, needle) in [
        (
            r#"[{"event_type": "A"}, {"event_type": "B", "fields": 3}]"#,
            "event 1: invalid type",
        ),
        (
            r#"[{"event_type": "A"}, {"fields": {}}]"#,
            "event 1: missing field `event_type`",
        ),
        (
            r#"[{"event_type": ""}]"#,
            "event 0: `event_type` must not be empty",
        ),
        (r#"{"nope": []}"#, "missing field `events`"),
        ("[1, 2", "expected a JSON array of events"),
    ] {
        let r = ens
            .api
            .post_raw(&url, bad.as_bytes().to_vec(), "application/json")
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(
            r.body["error"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{bad}: {}",
            r.text
        );
    }
    let r = ens
        .api
        .post_raw(&url, b"A { v: 1 }".to_vec(), "application/xml")
        .await
        .unwrap();
    r.expect_error(415);
    // Nothing of the refused batches reached the pipelines.
    let (_, address, id) = placement(&ens, &gid, "pa").await;
    let p = super::worker_pipeline(&address, &id).await;
    assert_eq!(p["events_in"], 3 + 3 + 1 + 1, "{p}");
}
