//! Bounded input to the Raft log (issue 18, attacks 2 and 5).
//!
//! Before: labels were unbounded up to the 16 MiB body limit; five 9 MB registrations (no
//! credentials needed) stopped every write for about 90 s (term 6 → 99, `no_quorum`). Now each is
//! refused with `413 limit_exceeded` before anything is proposed, and writes keep committing.

use crate::common::{term, wait_converged, Writer};
use crate::harness::{fake_worker, Api, Ensemble, Opts};
use serde_json::{json, Value};
use std::time::Duration;

fn quiet() -> Opts {
    Opts {
        heartbeat_timeout: 600.0,
        ..Opts::default()
    }
}

fn with_labels(id: &str, labels: Value) -> Value {
    let mut body = fake_worker(id);
    body["labels"] = labels;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_labels_under_write_load_are_refused_and_writes_keep_committing() {
    let ens = Ensemble::start(3, 0, quiet()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let terms_before: Vec<u64> = {
        let mut t = Vec::new();
        for i in 0..3 {
            t.push(term(&ens, i).await);
        }
        t
    };
    // Five 9 MB registrations, without any credential, encoded before the clock starts (the
    // writers below time the cluster, not this process's JSON encoder).
    let stranger = Api::new(None).with_timeout(Duration::from_secs(60));
    let blob = "x".repeat(9 * 1024 * 1024);
    let bodies: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            let body = with_labels(&format!("big-{i}"), json!({ "blob": blob }));
            serde_json::to_vec(&body).expect("json")
        })
        .collect();

    let via_leader = Writer::start(&ens.api, &ens.coords[leader].url);
    let via_follower = Writer::start(&ens.api, &ens.coords[follower].url);
    via_leader.wait_progress(10, Duration::from_secs(20)).await;

    // All five at once, through every coordinator.
    let mut attacks = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let url = ens.cluster_url(i % 3, "/workers/register");
        let api = stranger.clone();
        attacks.push(tokio::spawn(async move {
            api.post_raw(&url, body, "application/json").await
        }));
    }
    for a in attacks {
        let r = a.await.expect("task").expect("an answer, not a reset");
        // Refused before it is parsed (the registration body limit follows the label limits).
        r.expect_error(413);
        assert_eq!(r.body["code"], "limit_exceeded", "{}", r.text);
        assert!(r.text.contains("limits.max_label_bytes"), "{}", r.text);
        assert!(r.text.len() < 1000, "the answer does not echo the label");
    }
    // A label just over its limit (in a small body) is refused by the limit check.
    let over = json!({ "zone": "z".repeat(257) });
    let r = stranger
        .post(
            &ens.cluster_url(1, "/workers/register"),
            &with_labels("over", over),
        )
        .await
        .unwrap();
    r.expect_error(413);
    assert_eq!(r.body["code"], "limit_exceeded", "{}", r.text);
    assert!(r.text.contains("limits.max_label_bytes"), "{}", r.text);
    // Too many labels, and a key too long: refused too. At the limit: accepted.
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = stranger
        .post(
            &ens.cluster_url(0, "/workers/register"),
            &with_labels("many", Value::Object(many)),
        )
        .await
        .unwrap();
    r.expect_error(413);
    let long_key = json!({ "k".repeat(300): "v" });
    let r = stranger
        .post(
            &ens.cluster_url(1, "/workers/register"),
            &with_labels("long-key", long_key),
        )
        .await
        .unwrap();
    r.expect_error(413);
    let full: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("{i:0>256}"), json!("v".repeat(256))))
        .collect();
    let r = stranger
        .post(
            &ens.cluster_url(2, "/workers/register"),
            &with_labels("full", Value::Object(full)),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text);

    via_leader.wait_progress(20, Duration::from_secs(20)).await;
    via_follower
        .wait_progress(20, Duration::from_secs(20))
        .await;
    for (name, w) in [("leader", via_leader), ("follower", via_follower)] {
        let stats = w.finish().await;
        eprintln!(
            "writes via the {name}: {} acknowledged, slowest {:?}",
            stats.ok, stats.slowest
        );
        assert!(
            stats.failed.is_empty(),
            "writes via the {name} failed: {:?}",
            stats.failed
        );
        // Before: every write stopped for about 90 s. A loaded test machine may be slow, but
        // not that slow.
        assert!(
            stats.slowest < Duration::from_secs(5),
            "a write via the {name} took {:?}",
            stats.slowest
        );
    }
    for (i, before) in terms_before.iter().enumerate() {
        assert_eq!(
            term(&ens, i).await,
            *before,
            "no election on coordinator {}",
            i + 1
        );
    }
    wait_converged(&ens, &[0, 1, 2], Duration::from_secs(20)).await;
    let ids: Vec<String> = ens
        .worker_list(0)
        .await
        .expect("list")
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        ids.iter()
            .all(|id| !id.starts_with("big-") && id != "many" && id != "over"),
        "{ids:?}"
    );
    assert!(ids.iter().any(|id| id == "full"), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_limits_refuse_groups_and_connectors_before_anything_is_stored() {
    let opts = Opts {
        coord_extra_args: [
            "--limit",
            "max_pipelines_per_group=3",
            "--limit",
            "max_program_bytes=2048",
            "--limit",
            "max_connectors=2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..quiet()
    };
    let ens = Ensemble::start(1, 0, opts).await;
    let groups = ens.cluster_url(0, "/pipeline-groups");
    let pipeline =
        |i: usize| json!({"name": format!("p{i}"), "source": "stream A = EventA .emit(v: 1)"});

    let four = json!({"name": "wide", "pipelines": (0..4).map(pipeline).collect::<Vec<_>>()});
    let r = ens.api.post(&groups, &four).await.unwrap();
    r.expect_error(413);
    assert_eq!(r.body["code"], "limit_exceeded", "{}", r.text);
    assert!(
        r.text.contains("limits.max_pipelines_per_group"),
        "{}",
        r.text
    );

    let source = format!("# {}\nstream A = EventA .emit(v: 1)", "x".repeat(3000));
    let big = json!({"name": "big", "pipelines": [{"name": "p", "source": source}]});
    let r = ens.api.post(&groups, &big).await.unwrap();
    r.expect_error(413);
    assert!(r.text.contains("limits.max_program_bytes"), "{}", r.text);

    let long_name = json!({"name": "g".repeat(200), "pipelines": [pipeline(0)]});
    let r = ens.api.post(&groups, &long_name).await.unwrap();
    r.expect_error(413);
    assert!(r.text.contains("limits.max_name_bytes"), "{}", r.text);

    let r = ens.api.get(&groups).await.unwrap();
    assert_eq!(r.body["total"], 0, "nothing stored: {}", r.text);

    let connectors = ens.cluster_url(0, "/connectors");
    let connector = |name: &str| json!({"name": name, "connector_type": "mqtt", "params": {"host": "localhost", "port": "1883"}});
    for name in ["a", "b"] {
        ens.api
            .post(&connectors, &connector(name))
            .await
            .unwrap()
            .expect_status(201);
    }
    let r = ens.api.post(&connectors, &connector("c")).await.unwrap();
    r.expect_error(400);
    assert_eq!(r.body["code"], "limit_exceeded", "{}", r.text);
    assert!(r.text.contains("limits.max_connectors"), "{}", r.text);
    // Replacing an existing connector is not a new one; after a delete there is room again.
    let r = ens
        .api
        .send(
            reqwest::Method::PUT,
            &format!("{connectors}/a"),
            Some((
                serde_json::to_vec(&connector("a")).unwrap(),
                "application/json",
            )),
        )
        .await
        .unwrap();
    r.expect_ok();
    ens.api
        .delete(&format!("{connectors}/b"))
        .await
        .unwrap()
        .expect_ok();
    ens.api
        .post(&connectors, &connector("c"))
        .await
        .unwrap()
        .expect_status(201);
    let mut huge_param = connector("d");
    huge_param["params"]["password"] = json!("p".repeat(20_000));
    ens.api
        .delete(&format!("{connectors}/c"))
        .await
        .unwrap()
        .expect_ok();
    let r = ens.api.post(&connectors, &huge_param).await.unwrap();
    r.expect_error(413);
    assert!(r.text.contains("limits.max_param_bytes"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_at_the_size_limits_replicates_while_writes_keep_committing() {
    // Four pipelines just under the program limit: one log entry of almost 1 MiB, larger than
    // what an AppendEntries may carry in one heartbeat interval on a busy machine.
    let ens = Ensemble::start(3, 0, quiet()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let terms_before: Vec<u64> = {
        let mut t = Vec::new();
        for i in 0..3 {
            t.push(term(&ens, i).await);
        }
        t
    };
    let comment = format!("# {}\n", "x".repeat(240 * 1024));
    let pipelines: Vec<Value> = (0..4)
        .map(|i| {
            json!({"name": format!("p{i}"), "source": format!("{comment}stream A{i} = EventA .emit(v: {i})")})
        })
        .collect();
    let spec = json!({"name": "large", "pipelines": pipelines});
    let writer = Writer::start(&ens.api, &ens.coords[leader].url);
    writer.wait_progress(10, Duration::from_secs(20)).await;
    let started = std::time::Instant::now();
    let r = ens
        .api
        .with_timeout(Duration::from_secs(30))
        .post(&ens.cluster_url(leader, "/pipeline-groups"), &spec)
        .await
        .expect("create");
    assert_eq!(r.status, 201, "{}", r.text);
    eprintln!(
        "a group of about 1 MiB committed in {:?}",
        started.elapsed()
    );
    writer.wait_progress(20, Duration::from_secs(20)).await;
    let stats = writer.finish().await;
    eprintln!(
        "writes meanwhile: {} acknowledged, slowest {:?}",
        stats.ok, stats.slowest
    );
    assert!(stats.failed.is_empty(), "{:?}", stats.failed);
    let (_, hash) = wait_converged(&ens, &[0, 1, 2], Duration::from_secs(30)).await;
    assert!(!hash.is_empty());
    for (i, before) in terms_before.iter().enumerate() {
        assert_eq!(
            term(&ens, i).await,
            *before,
            "no election on coordinator {}",
            i + 1
        );
    }
    // A fifth such pipeline takes the spec over the whole-spec limit: refused, nothing stored.
    let over = json!({"name": "larger", "pipelines": (0..5).map(|i| json!({"name": format!("q{i}"), "source": format!("{comment}stream B{i} = EventA .emit(v: {i})")})).collect::<Vec<_>>()});
    let r = ens
        .api
        .post(&ens.cluster_url(leader, "/pipeline-groups"), &over)
        .await
        .expect("create");
    r.expect_error(413);
    assert!(r.text.contains("limits.max_spec_bytes"), "{}", r.text);
}
