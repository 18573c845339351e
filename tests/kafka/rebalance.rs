//! Two workers run the same pipeline in one consumer group: the topic's partitions are split
//! between them (both process events); when one leaves, the other takes its partitions over
//! and every event still comes out (duplicates, from records the leaver had not committed,
//! are counted).

use crate::broker::{send, start_broker};
use crate::collect_until_all;
use crate::harness::{config, deploy, get, start_worker};
use rdkafka::producer::FutureProducer;
use serde_json::json;
use std::time::{Duration, Instant};

async fn events_in(url: &str) -> u64 {
    get(url).await.1["events_in"].as_u64().unwrap_or(0)
}

/// Sends clicks `next..next + count` (keyed `k{n}`), advancing `next`.
async fn click(producer: &FutureProducer, next: &mut u64, count: u64) {
    for _ in 0..count {
        let n = *next;
        send(
            producer,
            "clicks",
            &format!("k{n}"),
            &json!({"event_type": "Click", "n": n}),
        )
        .await;
        *next += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_partitions_and_one_takes_over_when_the_other_leaves() {
    let Some(broker) = start_broker() else { return };
    broker.create_topic("clicks", 4).await;
    broker.create_topic("counted", 1).await;
    let src = format!(
        "connector K = kafka(brokers: \"{}\", group_id: \"rebalance-test\")\n\
         stream C = Click.from(K, topic: \"clicks\")\n\
         stream Counted = C .emit(n: n) .to(K, topic: \"counted\")\n",
        broker.addr
    );
    let w1 = start_worker(config()).await;
    let w2 = start_worker(config()).await;
    let id1 = deploy(&w1, "clicks", &src).await;
    let id2 = deploy(&w2, "clicks", &src).await;
    let url1 = format!("{}/api/v1/pipelines/{id1}", w1.url);
    let url2 = format!("{}/api/v1/pipelines/{id2}", w2.url);

    // Feed until both members have received events (the group rebalanced to two members).
    let producer = broker.producer();
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while events_in(&url1).await == 0 || events_in(&url2).await == 0 {
        assert!(
            Instant::now() < deadline,
            "partitions never split: {} / {}",
            events_in(&url1).await,
            events_in(&url2).await
        );
        click(&producer, &mut n, 20).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shared = n;
    println!(
        "rebalance test: split after {shared} events ({} on w1, {} on w2)",
        events_in(&url1).await,
        events_in(&url2).await
    );

    // One member leaves; the other gets every partition.
    w1.shutdown().await;
    click(&producer, &mut n, 400).await;
    let reader = broker.reader("counted");
    let all = collect_until_all(
        &reader,
        Vec::new(),
        "n",
        n as usize,
        Duration::from_secs(90),
    )
    .await;
    println!(
        "rebalance test: {n} inputs, {} outputs, {} duplicates",
        all.records.len(),
        all.duplicates
    );
    assert_eq!(all.distinct as u64, n, "events lost across the rebalance");
    assert!(
        events_in(&url2).await >= n - shared,
        "the remaining worker took the partitions over"
    );
    w2.shutdown().await;
}
