//! Storage format upgrades (issue 24 item 5): a data dir written by the JSON-format binary
//! (`tests/fixtures/raft-json-v1`, see its README) opens, migrates in place, shows the same
//! state at the same index and takes new writes; a data dir or record of an unknown (newer)
//! format is refused with a clear error; a peer RPC naming an unknown body format is refused
//! with `400`.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::RaftLogReader;
use varpulis_cluster::{Command, RegisterWorker};
use varpulis_raft::log_store::LogStore;
use varpulis_raft::{RaftConfig, RaftNode};

const WAIT: Duration = Duration::from_secs(30);
/// From the fixture's README (`GET /raft/metrics` before it was stopped).
const FIXTURE_HASH: &str = "76fd64c8e7546f3270b6b941fc860364dd9d01f9e77a199dfd8464c698097721";
const FIXTURE_LAST_INDEX: u64 = 5;
const FIXTURE_URL: &str = "http://127.0.0.1:58007";
const FIXTURE_CLUSTER_ID: &str = "dedcd5b4451e67ea";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for item in std::fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            std::fs::copy(item.path(), target).unwrap();
        }
    }
}

/// A copy of the fixture's node-1 data dir in `root`.
fn fixture_copy(root: &Path) -> std::path::PathBuf {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/raft-json-v1/node-1");
    let dir = root.join("node-1");
    copy_dir(&fixture, &dir);
    dir
}

fn open_db(data_dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(data_dir.join("raft"))
        .open()
        .unwrap()
}

/// True when every record of every tree (the layout marker aside) starts with the binary
/// format's version byte.
fn all_binary(db: &sled::Db) -> bool {
    ["raft_log", "raft_meta", "raft_snapshot"].iter().all(|t| {
        db.open_tree(t).unwrap().iter().all(|item| {
            let (k, v) = item.unwrap();
            k.as_ref() == b"format" || v.first() == Some(&varpulis_raft::codec::FORMAT_BINARY)
        })
    })
}

fn register(id: &str) -> Command {
    Command::RegisterWorker(RegisterWorker {
        worker_id: id.into(),
        address: "http://127.0.0.1:19009".into(),
        api_key: "wk9".into(),
        cpu_cores: 1,
        max_pipelines: 1,
        labels: BTreeMap::new(),
        now_ms: 1,
        takeover: Some(false),
    })
}

async fn start(data_dir: &Path) -> RaftNode {
    let node = RaftNode::start(RaftConfig::single(1, data_dir, FIXTURE_URL))
        .await
        .unwrap();
    node.wait_for_leader(WAIT).await.unwrap();
    node.raft()
        .wait(Some(WAIT))
        .applied_index_at_least(Some(FIXTURE_LAST_INDEX), "replayed")
        .await
        .unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_data_dir_is_migrated_in_place_keeps_its_state_and_takes_writes() {
    let root = tempfile::tempdir().unwrap();
    let dir = fixture_copy(root.path());

    // The store alone: it migrates at open and reads the same entries (the initial membership
    // at 0, then 1..=5).
    {
        let db = open_db(&dir);
        assert!(!all_binary(&db), "the fixture is in the JSON format");
        let mut store = LogStore::open(&db, &dir.join("raft").join("wal")).unwrap();
        assert!(all_binary(&db), "every record rewritten");
        // The log moved on into segment files (storage layout 3).
        let meta = db.open_tree("raft_meta").unwrap();
        assert_eq!(meta.get("format").unwrap().unwrap().as_ref(), &[3u8]);
        assert!(db.open_tree("raft_log").unwrap().is_empty());
        assert!(dir.join("raft").join("wal").read_dir().unwrap().count() > 0);
        let entries = store.try_get_log_entries(0..).await.unwrap();
        assert_eq!(
            entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            (0..=FIXTURE_LAST_INDEX).collect::<Vec<_>>()
        );
        assert!(!store.is_fresh().unwrap());
        db.flush().unwrap();
    }

    // The node: same state at the same index, the same cluster id, and new writes.
    let node = start(&dir).await;
    let view = node.metrics_view();
    assert_eq!(view.state_hash, FIXTURE_HASH);
    assert!(view.last_log_index >= Some(FIXTURE_LAST_INDEX));
    assert_eq!(node.cluster_id(), FIXTURE_CLUSTER_ID);
    assert_eq!(
        node.read(|s| (1..=3)
            .filter(|i| s.worker(&format!("fixture-w{i}")).is_some())
            .count()),
        3
    );
    let answer = node.write(register("after-upgrade")).await.unwrap();
    assert!(answer.is_ok(), "{answer:?}");
    let after = node.metrics_view();
    assert_ne!(after.state_hash, FIXTURE_HASH);
    node.shutdown().await.unwrap();
    drop(node);

    // Reopened: everything binary, nothing lost.
    let db = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match sled::Config::new().path(dir.join("raft")).open() {
                Ok(db) => break db,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("sled still held: {e}"),
            }
        }
    };
    assert!(all_binary(&db));
    drop(db);
    let node = start(&dir).await;
    node.raft()
        .wait(Some(WAIT))
        .applied_index_at_least(after.last_applied, "replayed")
        .await
        .unwrap();
    assert_eq!(node.metrics_view().state_hash, after.state_hash);
    assert!(node.read(|s| s.worker("after-upgrade").is_some()));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_format_is_refused_with_a_clear_error_and_left_untouched() {
    let root = tempfile::tempdir().unwrap();

    // A data dir whose marker names a future format.
    let dir = fixture_copy(root.path());
    {
        let db = open_db(&dir);
        db.open_tree("raft_meta")
            .unwrap()
            .insert("format", &[9u8])
            .unwrap();
        db.flush().unwrap();
    }
    let err = RaftNode::start(RaftConfig::single(1, &dir, FIXTURE_URL))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("storage format version 9"), "{err}");
    assert!(err.contains("newer than this binary"), "{err}");
    assert!(!all_binary(&open_db(&dir)), "nothing was rewritten");

    // A JSON data dir with one record of an unknown version: the migration stops at it, and
    // the rest of the JSON data is still there (refused, not half-guessed).
    let dir = fixture_copy(&root.path().join("second"));
    {
        let db = open_db(&dir);
        db.open_tree("raft_log")
            .unwrap()
            .insert(6u64.to_be_bytes(), vec![5u8, 1, 2, 3])
            .unwrap();
        db.flush().unwrap();
    }
    let err = RaftNode::start(RaftConfig::single(1, &dir, FIXTURE_URL))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("format version 5"), "{err}");
    let db = open_db(&dir);
    assert!(db
        .open_tree("raft_meta")
        .unwrap()
        .get("format")
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_rpc_in_an_unknown_body_format_is_refused_with_400() {
    let root = tempfile::tempdir().unwrap();
    let node = RaftNode::start(RaftConfig::single(
        1,
        root.path().join("n1"),
        "http://127.0.0.1:1",
    ))
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = varpulis_raft::router(node.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let vote = serde_json::json!({
        "vote": {"leader_id": {"term": 1, "node_id": 1}, "committed": false},
        "last_log_id": null
    });
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{url}/raft/vote"))
        .header(varpulis_raft::wire::FORMAT_HEADER, "7")
        .json(&vote)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("format version \"7\""),
        "{body}"
    );
    // Version 1, and no header at all (an older peer), are read; answers name their version.
    for version in [Some("1"), None] {
        let mut req = http.post(format!("{url}/raft/vote")).json(&vote);
        if let Some(v) = version {
            req = req.header(varpulis_raft::wire::FORMAT_HEADER, v);
        }
        let answer = req.send().await.unwrap();
        assert_eq!(answer.status(), 200, "{version:?}");
        assert_eq!(
            answer.headers()[varpulis_raft::wire::FORMAT_HEADER],
            varpulis_raft::wire::WIRE_JSON_STR
        );
        assert_eq!(
            answer.headers()[varpulis_raft::wire::ACCEPT_HEADER],
            varpulis_raft::wire::ACCEPT_BINARY
        );
    }
    // Version 2 (binary) is read and answered in version 2.
    let binary_vote = openraft::raft::VoteRequest::<u64> {
        vote: openraft::Vote::new(1, 1),
        last_log_id: None,
    };
    let answer = http
        .post(format!("{url}/raft/vote"))
        .header(varpulis_raft::wire::FORMAT_HEADER, "2")
        .body(varpulis_raft::rpc_codec::encode_vote_request(&binary_vote))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()[varpulis_raft::wire::FORMAT_HEADER],
        varpulis_raft::wire::WIRE_BINARY_STR
    );
    let decoded =
        varpulis_raft::rpc_codec::decode_vote_answer(&answer.bytes().await.unwrap()).unwrap();
    assert!(decoded.is_ok(), "{decoded:?}");
    // A damaged binary body is refused with a clear error, before openraft sees it.
    let mut damaged = varpulis_raft::rpc_codec::encode_vote_request(&binary_vote);
    damaged.push(0);
    let refused = http
        .post(format!("{url}/raft/append"))
        .header(varpulis_raft::wire::FORMAT_HEADER, "2")
        .body(damaged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("undecodable binary append request"),
        "{body}"
    );
    server.abort();
    node.shutdown().await.unwrap();
}
