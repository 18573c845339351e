//! Guarantee 5 of DESIGN.md: bad input gets a clear JSON error with the right status and
//! changes nothing.

use crate::harness::{Ensemble, Opts, Resp};
use serde_json::json;

fn assert_json_error(r: &Resp, status: u16) {
    r.expect_error(status);
    let ct = r.content_type.clone().unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error not answered as JSON ({ct}): {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_changes_nothing() {
    let ens = Ensemble::start(1, 1, Opts::default()).await;
    let api = &ens.api;
    let groups = ens.cluster_url(0, "/pipeline-groups");

    // Malformed JSON, and well-formed JSON of the wrong shape.
    let r = api
        .post_raw(
            &groups,
            b"{\"name\": \"g\", \"pipelines\": [".to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    assert_json_error(&r, 400);
    let r = api
        .post(&groups, &json!({"pipelines": "nope"}))
        .await
        .unwrap();
    assert_json_error(&r, 400);
    let r = api
        .post_raw(
            &ens.cluster_url(0, "/workers/register"),
            b"not json".to_vec(),
            "application/json",
        )
        .await
        .unwrap();
    assert_json_error(&r, 400);

    // Bad VPL: 400 with line and column; nothing stored.
    let bad = json!({
        "name": "bad-vpl",
        "pipelines": [
            {"name": "ok", "source": "stream A = EventA .emit(result: \"ok\")"},
            {"name": "broken", "source": "stream B = EventB\n    .where(x > )\n    .emit(v: 1)"}
        ]
    });
    let r = api.post(&groups, &bad).await.unwrap();
    assert_json_error(&r, 400);
    let diags = r.body["diagnostics"]
        .as_array()
        .unwrap_or_else(|| panic!("no diagnostics: {}", r.text));
    assert!(!diags.is_empty(), "{}", r.text);
    assert_eq!(diags[0]["line"], 2, "{}", r.text);
    assert!(diags[0]["column"].as_u64().unwrap_or(0) >= 1, "{}", r.text);
    let r = api.get(&groups).await.unwrap();
    r.expect_status(200);
    assert_eq!(r.body["total"], 0, "{}", r.text);
    assert_eq!(r.body["pipeline_groups"], json!([]), "{}", r.text);
    let worker_api = api.with_key(Some(&ens.opts.worker_key));
    let r = worker_api
        .get(&format!("{}/api/v1/pipelines", ens.workers[0].url))
        .await
        .unwrap();
    assert_eq!(
        r.body["pipelines"],
        json!([]),
        "bad group reached a worker: {}",
        r.text
    );

    // Unknown ids.
    for url in [
        ens.cluster_url(0, "/workers/no-such-worker"),
        ens.cluster_url(0, "/pipeline-groups/00000000-0000-0000-0000-000000000000"),
        ens.cluster_url(0, "/pipeline-groups/not-a-uuid"),
    ] {
        assert_json_error(&api.get(&url).await.unwrap(), 404);
    }
    assert_json_error(
        &api.delete(&ens.cluster_url(0, "/workers/no-such-worker"))
            .await
            .unwrap(),
        404,
    );
    assert_json_error(
        &api.delete(&ens.cluster_url(0, "/pipeline-groups/no-such-group"))
            .await
            .unwrap(),
        404,
    );
    let r = api
        .post(
            &ens.cluster_url(0, "/pipeline-groups/no-such-group/inject"),
            &json!({"event_type": "X", "fields": {}}),
        )
        .await
        .unwrap();
    assert_json_error(&r, 404);

    // Duplicate group name.
    let good = json!({
        "name": "dup",
        "pipelines": [{"name": "p", "source": "stream A = EventA .emit(v: 1)"}]
    });
    api.post(&groups, &good).await.unwrap().expect_status(201);
    assert_json_error(&api.post(&groups, &good).await.unwrap(), 409);
    let r = api.get(&groups).await.unwrap();
    assert_eq!(r.body["total"], 1, "{}", r.text);

    // Oversized body (20 MiB of VPL comment).
    let huge = format!(
        "# {}\nstream A = EventA .emit(v: 1)",
        "x".repeat(20 * 1024 * 1024)
    );
    let big = json!({"name": "huge", "pipelines": [{"name": "p", "source": huge}]});
    let r = api
        .post(&groups, &big)
        .await
        .expect("oversized body must get an answer, not a reset");
    assert_json_error(&r, 413);
    // Answered before the body was read: the connection must not be reused.
    assert_eq!(r.connection.as_deref(), Some("close"), "{}", r.text);
    let r = api.get(&groups).await.unwrap();
    assert_eq!(r.body["total"], 1, "{}", r.text);

    // Missing and wrong key; /health stays open.
    for key in [None, Some("wrong-key")] {
        let a = api.with_key(key);
        assert_json_error(&a.get(&ens.cluster_url(0, "/workers")).await.unwrap(), 401);
        assert_json_error(&a.get(&ens.cluster_url(0, "/topology")).await.unwrap(), 401);
        let r = a
            .post(&groups, &json!({"name": "sneaky", "pipelines": []}))
            .await
            .unwrap();
        assert_json_error(&r, 401);
        a.get(&format!("{}/health", ens.coords[0].url))
            .await
            .unwrap()
            .expect_status(200);
    }
    let r = api.get(&groups).await.unwrap();
    assert_eq!(r.body["total"], 1, "{}", r.text);
}
