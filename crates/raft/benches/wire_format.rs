//! Replication CPU per write, wire format 1 (JSON) against wire format 2 (binary), in one
//! process: what the leader and each follower do with one AppendEntries carrying one batch entry
//! of connector creates (the write bench's command), per command in the batch.
//!
//! - leader, version 1: the log record (`codec::encode_entry`) + one JSON request per follower
//!   (two followers);
//! - leader, version 2: the log record + one binary request per follower built from that record
//!   (the entry cache hands it over);
//! - follower, version 1: decode the JSON request + encode the entry's log record;
//! - follower, version 2: decode the binary request (the received record is stored as is).
//!
//! Rounds alternate the two versions and the best round of each is printed (a loaded machine
//! slows rounds, it does not speed them up). Run: `cargo bench -p varpulis-raft --bench
//! wire_format` (`WIRE_BENCH_BATCH`, default 64 commands per entry; `WIRE_BENCH_ROUNDS`, 7).

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use openraft::raft::AppendEntriesRequest;
use openraft::{CommittedLeaderId, EntryPayload};
use varpulis_api::cluster::ConnectorSpec;
use varpulis_cluster::Command;
use varpulis_raft::codec;
use varpulis_raft::rpc_codec;
use varpulis_raft::types::{Entry, LogId, TypeConfig, Vote};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn request(batch: usize) -> AppendEntriesRequest<TypeConfig> {
    let commands = (0..batch)
        .map(|i| {
            let params = serde_json::json!({"host": "localhost", "port": 1883});
            let serde_json::Value::Object(params) = params else {
                unreachable!("an object literal")
            };
            Command::CreateConnector {
                spec: ConnectorSpec {
                    name: format!("bench-connector-{i}-12345"),
                    connector_type: "mqtt".into(),
                    params,
                    description: None,
                },
            }
        })
        .collect();
    AppendEntriesRequest {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 4_999)),
        leader_commit: Some(LogId::new(CommittedLeaderId::new(3, 1), 4_998)),
        entries: vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 5_000),
            payload: EntryPayload::Normal(Command::batch(commands)),
        }],
    }
}

/// Best time per call of `f` over `rounds` rounds of `iters` calls.
fn time(iters: usize, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed() / iters as u32
}

fn main() {
    let batch = env_usize("WIRE_BENCH_BATCH", 64).max(1);
    let rounds = env_usize("WIRE_BENCH_ROUNDS", 7).max(1);
    let req = request(batch);
    let json = serde_json::to_vec(&req).expect("encode");
    let binary = Bytes::from(rpc_codec::encode_append(&req, |_| None).expect("encode"));
    println!(
        "wire_format: one AppendEntries, one batch entry of {batch} connector creates: \
         {} bytes JSON (v1), {} bytes binary (v2)",
        json.len(),
        binary.len()
    );
    let iters = 2_000;
    let mut best = [Duration::MAX; 4];
    for _ in 0..rounds {
        let timings = [
            // Leader, v1: log record + two JSON requests.
            time(iters, || {
                let record = codec::encode_entry(&req.entries[0]).expect("encode");
                black_box(record);
                for _ in 0..2 {
                    black_box(serde_json::to_vec(&req).expect("encode"));
                }
            }),
            // Leader, v2: log record, reused for both requests.
            time(iters, || {
                let record = Bytes::from(codec::encode_entry(&req.entries[0]).expect("encode"));
                for _ in 0..2 {
                    let body = rpc_codec::encode_append(&req, |_| Some(record.clone()));
                    black_box(body.expect("encode"));
                }
            }),
            // Follower, v1: decode JSON, encode the log record.
            time(iters, || {
                let decoded: AppendEntriesRequest<TypeConfig> =
                    serde_json::from_slice(&json).expect("decode");
                black_box(codec::encode_entry(&decoded.entries[0]).expect("encode"));
                black_box(decoded);
            }),
            // Follower, v2: decode binary, keep the received record.
            time(iters, || {
                black_box(rpc_codec::decode_append(&binary).expect("decode"));
            }),
        ];
        for (b, t) in best.iter_mut().zip(timings) {
            *b = (*b).min(t);
        }
    }
    let per_write = |d: Duration| d.as_nanos() as f64 / batch as f64 / 1000.0;
    println!(
        "{:<10} {:>14} {:>14} {:>8}",
        "process", "v1 µs/write", "v2 µs/write", "v2/v1"
    );
    for (name, v1, v2) in [("leader", best[0], best[1]), ("follower", best[2], best[3])] {
        println!(
            "{:<10} {:>14.3} {:>14.3} {:>8.2}",
            name,
            per_write(v1),
            per_write(v2),
            v2.as_secs_f64() / v1.as_secs_f64()
        );
    }
    let total = |l: Duration, f: Duration| per_write(l) + 2.0 * per_write(f);
    println!(
        "ensemble (leader + 2 followers): v1 {:.3} µs/write, v2 {:.3} µs/write",
        total(best[0], best[2]),
        total(best[1], best[3])
    );
}
