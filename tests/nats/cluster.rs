//! The NATS cluster transport end to end: three coordinators and two workers with
//! `--transport nats`. Workers advertise HTTP addresses nobody listens on, so every deploy and
//! inject that succeeds went over NATS request/reply.

use crate::harness::{event_field, wait_until, Ensemble, Opts, Worker};
use crate::start_nats;
use serde_json::json;
use std::time::Duration;

fn nats_worker(id: &str, nats_url: &str, logs: &std::path::Path) -> Worker {
    crate::nats_worker(id, nats_url, &[], logs)
}

/// Coordinators in NATS mode on `nats_url`.
fn nats_opts(nats_url: &str) -> Opts {
    crate::nats_opts(nats_url, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_transport_register_heartbeat_deploy_inject_and_failure() {
    let Some(nats) = start_nats() else { return };
    let opts = nats_opts(&nats.url);
    let mut ens = Ensemble::start(3, 0, opts).await;
    let logs = tempfile::tempdir().unwrap();
    for id in ["nats-w0", "nats-w1"] {
        ens.workers.push(nats_worker(id, &nats.url, logs.path()));
    }
    let ids: Vec<String> = vec!["nats-w0".into(), "nats-w1".into()];

    // Register + heartbeat over NATS: both become ready.
    crate::wait_ready_over(&ens, &ids, "nats").await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let list = ens.worker_list(follower).await.expect("worker list");
    for w in &list {
        assert_eq!(w["labels"]["varpulis.transport"], "nats", "{w}");
        assert!(w.get("api_key").is_none(), "{w}");
    }

    // Deploy a group through a follower: the leader deploys over NATS.
    let group = json!({
        "name": "nats-group",
        "pipelines": [
            {"name": "pipeline-a", "source": "stream A = EventA .where(x > 0) .emit(result: \"from-a\", x: x)",
             "worker_affinity": "nats-w0"},
            {"name": "pipeline-b", "source": "stream B = EventB .emit(result: \"from-b\")",
             "worker_affinity": "nats-w1"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "pipeline-a", "event_types": ["EventA*"]},
            {"from_pipeline": "_external", "to_pipeline": "pipeline-b", "event_types": ["EventB*"]}
        ]
    });
    let api = &ens.api;
    let gid = ens.create_group(follower, &group).await;
    let running = wait_until(
        "group running",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let g = api
                .get(&ens.cluster_url(leader, &format!("/pipeline-groups/{gid}")))
                .await
                .ok()?;
            (g.body["status"] == "running").then_some(g)
        },
    )
    .await;
    assert_eq!(running.body["pipeline_count"], 2, "{}", running.text);

    // Inject through the coordinators' HTTP API (leader and follower): routed over NATS.
    for via in [leader, follower] {
        let inject = ens.cluster_url(via, &format!("/pipeline-groups/{gid}/inject"));
        let r = api
            .post(
                &inject,
                &json!({"event_type": "EventA", "fields": {"x": 5}}),
            )
            .await
            .unwrap();
        r.expect_status(200);
        assert_eq!(r.body["worker_id"], "nats-w0", "{}", r.text);
        let out = r.body["worker_response"]["output_events"]
            .as_array()
            .unwrap();
        assert_eq!(out.len(), 1, "{}", r.text);
        assert_eq!(event_field(&out[0], "result"), "from-a", "{}", r.text);
        assert_eq!(event_field(&out[0], "x"), 5, "{}", r.text);

        let r = api
            .post(&inject, &json!({"event_type": "EventB", "fields": {}}))
            .await
            .unwrap();
        r.expect_status(200);
        assert_eq!(r.body["worker_id"], "nats-w1", "{}", r.text);
        let out = r.body["worker_response"]["output_events"]
            .as_array()
            .unwrap();
        assert_eq!(event_field(&out[0], "result"), "from-b", "{}", r.text);
    }

    // A batch (JSON array) and `.evt` text go over inject_batch.
    let batch = ens.cluster_url(follower, &format!("/pipeline-groups/{gid}/inject-batch"));
    let events = json!([
        {"event_type": "EventA", "fields": {"x": 1}},
        {"event_type": "EventA", "fields": {"x": -1}},
        {"event_type": "EventB", "fields": {}}
    ]);
    let r = api.post(&batch, &events).await.unwrap();
    r.expect_status(200);
    assert_eq!(r.body["accepted"], 3, "{}", r.text);
    assert_eq!(
        r.body["output_events"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );
    let r = api
        .post_raw(
            &batch,
            b"EventA { x: 7 }\nEventA { x: 8 }\n".to_vec(),
            "text/plain",
        )
        .await
        .unwrap();
    r.expect_status(200);
    assert_eq!(r.body["accepted"], 2, "{}", r.text);
    assert_eq!(
        r.body["output_events"].as_array().unwrap().len(),
        2,
        "{}",
        r.text
    );

    // Kill worker 1: no more heartbeats, the leader marks it unhealthy.
    let idx = ens.worker_index("nats-w1");
    ens.workers[idx].proc.kill();
    ens.wait_workers_in_status(&["nats-w1"], "unhealthy", Duration::from_secs(30))
        .await;
    assert!(
        ens.workers_in_status(&ids[..1], "ready").await,
        "nats-w0 must stay ready:\n{}",
        ens.all_logs(30)
    );
}

/// Mixed cluster (one HTTP worker, one NATS worker, one coordinator in NATS mode) and a rough
/// latency figure of sequential injects through the coordinator over each transport. Prints
/// figures, asserts only correctness. Run with
/// `cargo test -p varpulis --test nats -- --ignored --nocapture inject_latency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run by hand"]
async fn inject_latency_http_vs_nats_worker() {
    let Some(nats) = start_nats() else { return };
    let opts = Opts {
        worker_ids: vec!["http-w".into()],
        ..nats_opts(&nats.url)
    };
    let mut ens = Ensemble::start(1, 1, opts).await;
    let logs = tempfile::tempdir().unwrap();
    ens.workers
        .push(nats_worker("nats-w", &nats.url, logs.path()));
    ens.wait_workers_in_status(&["http-w", "nats-w"], "ready", Duration::from_secs(30))
        .await;
    let group = json!({
        "name": "latency",
        "pipelines": [
            {"name": "over-http", "source": "stream H = EventH .emit(x: x)", "worker_affinity": "http-w"},
            {"name": "over-nats", "source": "stream N = EventN .emit(x: x)", "worker_affinity": "nats-w"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "over-http", "event_types": ["EventH"]},
            {"from_pipeline": "_external", "to_pipeline": "over-nats", "event_types": ["EventN"]}
        ]
    });
    let gid = ens.create_group(0, &group).await;
    let inject = ens.cluster_url(0, &format!("/pipeline-groups/{gid}/inject"));
    const N: usize = 500;
    for (ty, worker) in [("EventH", "http-w"), ("EventN", "nats-w")] {
        let event = json!({"event_type": ty, "fields": {"x": 1}});
        // Warm-up (deploy may still be settling).
        wait_until(
            "inject works",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                let r = ens.api.post(&inject, &event).await.ok()?;
                r.ok().then_some(())
            },
        )
        .await;
        let start = std::time::Instant::now();
        for _ in 0..N {
            let r = ens.api.post(&inject, &event).await.unwrap();
            r.expect_status(200);
            assert_eq!(r.body["worker_id"], worker, "{}", r.text);
        }
        let per = start.elapsed() / N as u32;
        println!("inject via coordinator to {worker}: {N} sequential, {per:?} per event");
    }
}
