//! A state grown large through allowed writes reaches a lagging follower as a chunked snapshot
//! while writes keep committing (issue 18, attack 2: "large entries and snapshots do not fit the
//! AppendEntries deadline").

use crate::common::{raft_state, term, wait_converged, Writer};
use crate::harness::{fake_worker, wait_until, Ensemble, Opts};
use serde_json::{json, Value};
use std::time::Duration;

/// `last_applied` from `GET /ready` (cheap: no state hash) of coordinator `i`.
async fn applied(ens: &Ensemble, i: usize) -> Option<u64> {
    let api = ens.api.with_timeout(Duration::from_secs(2));
    let r = api
        .get(&format!("{}/ready", ens.coords[i].url))
        .await
        .ok()?;
    r.body["last_applied"].as_u64()
}

/// Registrations with 32 labels of 256 bytes: about 8.5 KB each in the state.
fn heavy_worker(id: &str) -> Value {
    let labels: serde_json::Map<String, Value> = (0..32)
        .map(|i| {
            (
                format!("label-{i:02}"),
                json!(format!("{id}-{}", "v".repeat(240))),
            )
        })
        .collect();
    let mut body = fake_worker(id);
    body["labels"] = Value::Object(labels);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_state_reaches_a_restarted_follower_in_chunks_while_writes_commit() {
    let config = tempfile::Builder::new()
        .prefix("varpulis-snap-")
        .suffix(".toml")
        .tempfile()
        .expect("config file");
    // Snapshots every 200 entries, 20 kept below: a follower that missed a few hundred entries
    // can only catch up from a snapshot; 256 KiB chunks: the snapshot takes dozens of them.
    std::fs::write(
        config.path(),
        "raft_snapshot_logs = 200\nraft_snapshot_keep_logs = 20\nraft_snapshot_chunk_bytes = 262144\n",
    )
    .expect("write config");
    let opts = Opts {
        heartbeat_timeout: 600.0,
        coord_extra_args: vec!["--config".into(), config.path().display().to_string()],
        ..Opts::default()
    };
    let mut ens = Ensemble::start(3, 0, opts).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let lagging = ens.others(leader)[0];
    let (_, lagging_last, _, _) = raft_state(&ens, lagging).await.expect("metrics");
    ens.coords[lagging].proc.kill();

    // Grow the state to about 14 MB through 1,600 allowed registrations (4 writers in
    // parallel, so at least 400 log entries: several snapshots, the log compacted past the
    // lagging node).
    let mut writers = Vec::new();
    for w in 0..4 {
        let api = ens.api.with_timeout(std::time::Duration::from_secs(30));
        let url = ens.cluster_url(leader, "/workers/register");
        writers.push(tokio::spawn(async move {
            for i in 0..400 {
                let r = api
                    .post(&url, &heavy_worker(&format!("heavy-{w}-{i:03}")))
                    .await
                    .expect("register");
                assert!(r.ok(), "{}: {}", r.status, r.text);
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let me = &ens;
    let snapshot_index = wait_until(
        "the leader compacted its log past the lagging node",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move {
            let m = me.metrics(leader).await?;
            let snap = m["snapshot_index"].as_u64()?;
            (snap > lagging_last + 100).then_some(snap)
        },
    )
    .await;
    let term_before = term(&ens, leader).await;

    // Bring the follower back while writes keep going through the leader, and while a stranger
    // (no credentials) polls every node's `GET /raft/metrics`, which hashes the whole state:
    // hashing must not hold up consensus.
    let writer = Writer::start(&ens.api, &ens.coords[leader].url);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let urls = ens.coord_urls();
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut polls = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for url in &urls {
                    let _ = client
                        .get(format!("{url}/raft/metrics"))
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    polls += 1;
                }
            }
            polls
        })
    };
    writer.wait_progress(5, Duration::from_secs(20)).await;
    let target = applied(&ens, leader).await.expect("leader's applied index");
    ens.coords[lagging].proc.restart();
    let me = &ens;
    let started = std::time::Instant::now();
    wait_until(
        "the restarted follower caught up",
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async move { (applied(me, lagging).await? >= target).then_some(()) },
    )
    .await;
    eprintln!("caught up in {:?}", started.elapsed());
    writer.wait_progress(20, Duration::from_secs(20)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let polls = poller.await.expect("poller");
    let stats = writer.finish().await;
    eprintln!("GET /raft/metrics polled {polls} times meanwhile");
    eprintln!(
        "writes during the transfer: {} acknowledged, slowest {:?}",
        stats.ok, stats.slowest
    );
    wait_converged(&ens, &[0, 1, 2], Duration::from_secs(60)).await;
    assert!(stats.failed.is_empty(), "{:?}", stats.failed);
    assert!(
        stats.slowest < Duration::from_secs(3),
        "a write took {:?} during the transfer",
        stats.slowest
    );
    assert_eq!(term(&ens, leader).await, term_before, "no election");
    let m = ens.metrics(lagging).await.expect("metrics");
    let installed = m["snapshot_index"].as_u64().unwrap_or(0);
    assert!(
        installed >= snapshot_index,
        "the follower installed a snapshot (at {installed}, leader's at {snapshot_index})"
    );
    let workers = ens.worker_list(lagging).await.expect("list");
    assert!(workers.len() >= 1000, "{} workers", workers.len());
}
