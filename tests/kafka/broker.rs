//! The test broker (`tansu broker`, in-memory storage, one per test) and the test's own Kafka
//! clients: topic creation, a producer of input events and a reader of output records.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A `tansu broker` child on `127.0.0.1:port`, killed on drop.
pub struct Broker {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tansu_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    // The patched build of .ci/tansu/build.sh first: tansu 0.6.0 as published can leave a
    // consumer group without a leader for good (see that script).
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = std::env::var("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from(format!(
        "{home}/.cache/varpulis/tansu-0.6.0-p1/bin"
    )))
    .chain(path.split(':').map(PathBuf::from))
    .map(|d| d.join("tansu"))
    .find(|p| p.is_file())
}

/// Starts a broker; `None` (after printing why) when the binary is missing.
pub fn start_broker() -> Option<Broker> {
    let Some(bin) = tansu_binary() else {
        println!(
            "SKIPPED: tansu not found (build it with `.ci/tansu/build.sh \
             ~/.cache/varpulis/tansu-0.6.0-p1`, or set TANSU_BIN; .ci/run does it)"
        );
        return None;
    };
    let (child, port) = crate::procs::spawn_listening("tansu", Duration::from_secs(20), |port| {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut c = Command::new(&bin);
        c.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ]);
        c
    });
    Some(Broker {
        addr: format!("127.0.0.1:{port}"),
        child,
    })
}

impl Broker {
    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr);
        c
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let r = admin
            .create_topics(
                &[t],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .unwrap();
        for res in r {
            res.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
        }
    }

    /// A producer for the test's input records.
    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("acks", "all")
            .set("linger.ms", "2")
            .create()
            .unwrap()
    }

    /// A reader of `topic` from the beginning (its own group).
    pub fn reader(&self, topic: &str) -> Reader {
        let consumer: BaseConsumer = self
            .config()
            .set("group.id", format!("test-reader-{}", rand::random::<u32>()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        Reader { consumer }
    }
}

/// Sends `value` to `topic` with `key`.
pub async fn send(p: &FutureProducer, topic: &str, key: &str, value: &Value) {
    let payload = value.to_string();
    p.send(
        FutureRecord::to(topic).key(key).payload(&payload),
        Duration::from_secs(10),
    )
    .await
    .map_err(|(e, _)| e)
    .unwrap();
}

/// One output record: `(partition, key, JSON payload)`.
pub type Record = (i32, Option<String>, Value);

/// Reads output records.
pub struct Reader {
    consumer: BaseConsumer,
}

impl Reader {
    /// Reads until `done(records so far)` holds or `timeout` passes; returns what was read.
    pub async fn read_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[Record]) -> bool,
    ) -> Vec<Record> {
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !done(&out) {
            match self.consumer.poll(Duration::from_millis(0)) {
                Some(Ok(m)) => {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                        .expect("output is JSON");
                    out.push((m.partition(), key, v));
                }
                Some(Err(e)) => eprintln!("reader: {e}"),
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        out
    }
}
