//! A worker process killed (SIGKILL) mid-stream and a new worker started with the same program:
//! the new one resumes from the consumer group's committed offsets and nothing is lost. What
//! the killed worker had processed but not yet committed (at most about one commit interval,
//! 1 s, plus its in-flight batch) is processed again: those duplicates are counted and printed
//! (docs/connectors.md, "Kafka": at-least-once).

use crate::broker::start_broker;
use crate::procs::{free_port, wait_until, Api, Proc};
use crate::{collect_until_all, feed_orders};
use serde_json::json;
use std::time::Duration;

const KEY: &str = "worker-secret";

fn worker(name: &str, logs: &std::path::Path) -> (Proc, String) {
    let port = free_port();
    let args = vec![
        "server".to_owned(),
        "--port".into(),
        port.to_string(),
        "--api-key".into(),
        KEY.into(),
        "--worker-id".into(),
        name.into(),
    ];
    (
        Proc::spawn(name, args, logs),
        format!("http://127.0.0.1:{port}"),
    )
}

async fn deploy(api: &Api, base: &str, source: &str) {
    let url = format!("{base}/api/v1/pipelines");
    let body = json!({"name": "kafka-crash", "source": source});
    let r = wait_until(
        "worker up",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { api.post(&url, &body).await.ok() },
    )
    .await;
    r.expect_status(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_without_losing_events() {
    let Some(broker) = start_broker() else { return };
    broker.create_topic("orders", 4).await;
    broker.create_topic("checked", 4).await;
    let logs = tempfile::tempdir().unwrap();
    let api = Api::new(Some(KEY));
    let source = format!(
        "connector K = kafka(brokers: \"{}\", group_id: \"crash-test\")\n\
         stream O = Order.from(K, topic: \"orders\")\n\
         stream Checked = O .emit(id: id, amount: amount) .to(K, topic: \"checked\", key: id)\n",
        broker.addr
    );
    let (mut first, base) = worker("kafka-w1", logs.path());
    deploy(&api, &base, &source).await;

    const N: usize = 3000;
    let feeder = feed_orders(broker.producer(), "orders", "o", N);

    // Kill the first worker once part of the stream went through.
    let reader = broker.reader("checked");
    let out = reader
        .read_until(Duration::from_secs(60), |r| r.len() >= N / 4)
        .await;
    assert!(
        out.len() >= N / 4,
        "first worker produced {} outputs",
        out.len()
    );
    first.kill();
    let killed_after = out.len();

    let (_second, base2) = worker("kafka-w2", logs.path());
    deploy(&api, &base2, &source).await;
    feeder.await.unwrap();

    let all = collect_until_all(&reader, out, "id", N, Duration::from_secs(120)).await;
    println!(
        "kafka crash test: {N} inputs, {} outputs, {} distinct, {} duplicates \
         (first worker killed after {killed_after} outputs)",
        all.records.len(),
        all.distinct,
        all.duplicates
    );
    assert_eq!(all.distinct, N, "events lost across the crash");
    for (_, key, v) in &all.records {
        assert_eq!(key.as_deref(), v["id"].as_str());
    }
}
