//! Kafka source → filter → Kafka sink throughput of one pipeline (docs/connectors.md, figures in
//! docs/benchmarks.md), against a local `tansu` broker (in-memory storage; skipped with a
//! message when the binary is missing, like tests/kafka).
//!
//! Loads `--events` records (default 300,000; half pass the filter) into a 1-partition input
//! topic first, then deploys `Reading.from(K) .where(temp >= 50) .emit(…) .to(K)` on an
//! in-process worker and times from the deploy until the sink reported every passing record
//! delivered (acks=all), then checks the output topic holds them. Figures: input events per
//! second from the deploy (consumer-group join included), the join alone (deploy → first event
//! processed), the steady-state rate (first event processed → last output delivered), and their
//! ratio to the same program fed by `events-batch` inject with no connector (the same-process
//! baseline). The output topic is then read back whole (every record counted, next to its
//! high watermark), and the CPU time the worker's process and the broker spent during the
//! steady state is printed per input event (a figure that moves less with the machine's load
//! than the rate). `KAFKA_BENCH_PROPERTIES='{"linger.ms": "20"}'` adds client properties to the
//! connector (A/B runs of client settings in one build).
//! Run: `cargo bench --bench kafka` (optionally `-- --events 500000`).

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/proc_stats.rs"]
#[allow(dead_code)]
mod proc_stats;

#[path = "common/inproc_worker.rs"]
#[allow(dead_code)] // the shared bench support has more than this bench uses
mod inproc_worker;

use inproc_worker::{arg, BoxError, InProcessWorker};

fn tansu() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Some(p.into());
    }
    // The patched build of .ci/tansu/build.sh first, then PATH (as tests/kafka does).
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = std::env::var("PATH").unwrap_or_default();
    std::iter::once(std::path::PathBuf::from(format!(
        "{home}/.cache/varpulis/tansu-0.6.0-p1/bin"
    )))
    .chain(path.split(':').map(std::path::PathBuf::from))
    .map(|d| d.join("tansu"))
    .find(|p| p.is_file())
}

async fn info(url: &str, id: &str) -> Result<Value, BoxError> {
    Ok(reqwest::Client::new()
        .get(format!("{url}/api/v1/pipelines/{id}"))
        .send()
        .await?
        .json()
        .await?)
}

fn reading(i: u64) -> Value {
    json!({"event_type": "Reading", "id": format!("s{}", i % 50), "temp": (i % 100) as i64})
}

/// The same program fed by inject (1,000-event batches, 4 clients) with no connector.
async fn baseline(worker: &InProcessWorker, events: u64) -> Result<f64, BoxError> {
    let url = &worker.url;
    let id = worker
        .deploy(
            "baseline",
            "stream Hot = Reading .where(temp >= 50) .emit(id: id, temp: temp)\n",
        )
        .await?;
    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"event_type": "Reading", "fields": {"id": format!("s{}", i % 50), "temp": (i % 100) as i64}}))
        .collect();
    let body = serde_json::to_vec(&json!({ "events": batch }))?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (http, body, u) = (
            reqwest::Client::new(),
            body.clone(),
            format!("{url}/api/v1/pipelines/{id}/events-batch"),
        );
        let n = events / 4000;
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                http.post(&u)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?
                    .error_for_status()?;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((events / 4000 * 4000) as f64 / started.elapsed().as_secs_f64())
}

async fn bench() -> Result<(), BoxError> {
    let events = arg("--events", 300_000);
    let Some(bin) = tansu() else {
        println!(
            "SKIPPED: tansu not found (see docs/connectors.md, \"Kafka\"; .ci/run installs it)"
        );
        return Ok(());
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let listener = format!("tcp://{addr}");
    let mut broker = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &listener,
            "--advertised-listener-url",
            &listener,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let up = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        if up.elapsed() > Duration::from_secs(20) {
            let _ = broker.kill();
            return Err("tansu did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = run(&addr, events, broker.id()).await;
    let _ = broker.kill();
    let _ = broker.wait();
    result
}

async fn run(addr: &str, events: u64, broker_pid: u32) -> Result<(), BoxError> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", addr);
    let admin: AdminClient<DefaultClientContext> = cfg.create()?;
    let topics = [
        NewTopic::new("bench-in", 1, TopicReplication::Fixed(1)),
        NewTopic::new("bench-out", 1, TopicReplication::Fixed(1)),
    ];
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| format!("create {t}: {e}"))?;
    }
    let producer: ThreadedProducer<DefaultProducerContext> = cfg
        .clone()
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()?;
    let load = Instant::now();
    for i in 0..events {
        let payload = reading(i).to_string();
        let mut record = BaseRecord::<(), String>::to("bench-in").payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    println!(
        "loaded {events} records in {:.2}s",
        load.elapsed().as_secs_f64()
    );

    let worker = InProcessWorker::start().await?;
    let url = worker.url.clone();

    let properties = match std::env::var("KAFKA_BENCH_PROPERTIES") {
        Ok(p) if !p.trim().is_empty() => format!(", properties: {p}"),
        _ => String::new(),
    };
    let src = format!(
        "connector K = kafka(brokers: \"{addr}\", group_id: \"bench\"{properties})\n\
         stream R = Reading.from(K, topic: \"bench-in\")\n\
         stream Hot = R .where(temp >= 50) .emit(id: id, temp: temp) .to(K, topic: \"bench-out\", key: id)\n"
    );
    let started = Instant::now();
    let id = worker.deploy("bench", &src).await?;
    let expected = events / 2;
    // Polled every 5 ms: the first processed input marks the end of the group join (deploy →
    // subscribed → assigned → first fetch), the last delivery the end of the run.
    let mut first_in: Option<Instant> = None;
    let me = std::process::id();
    let mut cpu_at_first = (0, 0);
    loop {
        let i = info(&url, &id).await?;
        if first_in.is_none() && i["events_in"].as_u64().unwrap_or(0) > 0 {
            first_in = Some(Instant::now());
            cpu_at_first = (proc_stats::cpu_ticks(me), proc_stats::cpu_ticks(broker_pid));
        }
        let sent = i["connectors"][0]["events_sent"].as_u64().unwrap_or(0);
        if sent >= expected {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {sent} of {expected} records delivered: {i}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let done = Instant::now();
    let cpu_at_done = (proc_stats::cpu_ticks(me), proc_stats::cpu_ticks(broker_pid));
    let first_in = first_in.unwrap_or(done);
    let stats = info(&url, &id).await?;
    let read_in = stats["events_in"].as_u64().unwrap_or(0);
    let watermark = high_watermark(addr, "bench-out")?;
    let back = read_back(addr, "bench-out", expected).await?;
    println!(
        "output topic read back: {} records (offsets 0..{}); high watermark {watermark}; \
         {read_in} input events processed",
        back.records, back.next_offset
    );
    if back.records < expected {
        return Err(format!(
            "only {} of {expected} acknowledged records on the output topic",
            back.records
        )
        .into());
    }
    let took = (done - started).as_secs_f64();
    let join = (first_in - started).as_secs_f64();
    let steady = (done - first_in).as_secs_f64();
    let rate = events as f64 / took;
    let steady_rate = events as f64 / steady;
    let hz = proc_stats::ticks_per_second();
    let per_event = |ticks: u64| ticks as f64 / hz * 1e6 / events as f64;
    let worker_us = per_event(cpu_at_done.0.saturating_sub(cpu_at_first.0));
    let broker_us = per_event(cpu_at_done.1.saturating_sub(cpu_at_first.1));
    let base = baseline(&worker, events).await?;
    println!("inject baseline (no connector): {base:.0} events/s");
    println!(
        "kafka source -> filter -> kafka sink: {events} events ({} on the output topic) in \
         {took:.2}s from the deploy = {rate:.0} events/s ({:.2} x baseline; group join included)",
        back.records,
        rate / base
    );
    println!(
        "  group join (deploy -> first event processed): {join:.2}s; steady state (first event \
         processed -> last output delivered): {steady:.2}s = {steady_rate:.0} events/s ({:.2} x baseline)",
        steady_rate / base
    );
    println!(
        "  CPU in the steady state per input event: worker process {worker_us:.2} us, broker \
         {broker_us:.2} us (load average {})",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    worker.stop().await
}

/// What reading an output topic back found.
struct ReadBack {
    /// Records read.
    records: u64,
    /// The offset after the last record read.
    next_offset: i64,
}

/// Reads partition 0 of `topic` from its start until `expected` records came, or nothing came
/// for 5 s.
async fn read_back(addr: &str, topic: &str, expected: u64) -> Result<ReadBack, BoxError> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bench-read-back")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut back = ReadBack {
        records: 0,
        next_offset: 0,
    };
    let mut last = Instant::now();
    while back.records < expected && last.elapsed() < Duration::from_secs(5) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                back.records += 1;
                back.next_offset = back.next_offset.max(m.offset() + 1);
                last = Instant::now();
            }
            Some(Err(e)) => return Err(format!("reading {topic} back: {e}").into()),
            None => tokio::task::yield_now().await,
        }
    }
    Ok(back)
}

/// The high watermark of partition 0 of `topic` (how many records it holds).
fn high_watermark(addr: &str, topic: &str) -> Result<i64, BoxError> {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "bench-watermarks")
        .create()?;
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    Ok(high)
}

fn main() -> Result<(), BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}
