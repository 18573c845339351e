//! Kafka connector tests against a real Kafka-protocol broker (`tansu`, in-memory storage)
//! started on a free loopback port (docs/connectors.md, "Kafka"): consume → process →
//! produce, a worker killed mid-stream and replaced (nothing lost, duplicates counted), a
//! consumer-group rebalance across two workers, and a pipeline moved by a migration (a drain)
//! resuming from the committed offsets.
//!
//! When the `tansu` binary is missing each test prints `SKIPPED: tansu not found (…)` and
//! returns; `.ci/run` builds it with a consumer-group fix (`.ci/tansu/build.sh`, cached under
//! `~/.cache/varpulis/tansu-0.6.0-p1`).

#[allow(dead_code)]
#[path = "../worker/harness.rs"]
mod harness;

#[path = "../cluster/harness.rs"]
mod procs;

mod broker;
mod crash;
mod group;
mod migration;
mod pipeline;
mod rebalance;

pub use broker::{start_broker, Broker};

use broker::{send, Reader, Record};
use rdkafka::producer::FutureProducer;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

/// Sends `n` orders `{"event_type":"Order","id":"{prefix}{i}","amount":i}` to `topic`, keyed
/// by id, 100 at a time with a 100 ms pause after each hundred (a stream that lasts a few
/// seconds, so a worker can be killed or moved in the middle of it).
pub fn feed_orders(
    producer: FutureProducer,
    topic: &'static str,
    prefix: &'static str,
    n: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0..n {
            let id = format!("{prefix}{i}");
            let order = json!({"event_type": "Order", "id": id, "amount": i});
            send(&producer, topic, &id, &order).await;
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// What [`collect_until_all`] read.
pub struct Collected {
    /// Every record read, in order (the ones passed in first).
    pub records: Vec<Record>,
    /// How many distinct values of the id field they hold.
    pub distinct: usize,
    /// Records beyond the first of their id.
    pub duplicates: usize,
}

/// The id of a record: the JSON text of its `field` (strings quoted, numbers as they are).
fn id_of(record: &Record, field: &str) -> String {
    record.2[field].to_string()
}

/// Reads `reader` on from `records` (what was read before) until `n` distinct values of the
/// `field` of the payloads have come (at most `timeout`), then 2 s more so late duplicates
/// arrive before counting.
pub async fn collect_until_all(
    reader: &Reader,
    mut records: Vec<Record>,
    field: &str,
    n: usize,
    timeout: Duration,
) -> Collected {
    let mut seen: HashSet<String> = records.iter().map(|r| id_of(r, field)).collect();
    let mut counted = 0;
    let more = reader
        .read_until(timeout, |r| {
            seen.extend(
                r.get(counted..)
                    .unwrap_or_default()
                    .iter()
                    .map(|r| id_of(r, field)),
            );
            counted = r.len();
            seen.len() >= n
        })
        .await;
    records.extend(more);
    records.extend(reader.read_until(Duration::from_secs(2), |_| false).await);
    let distinct = records
        .iter()
        .map(|r| id_of(r, field))
        .collect::<HashSet<_>>()
        .len();
    Collected {
        duplicates: records.len() - distinct,
        distinct,
        records,
    }
}
