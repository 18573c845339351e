//! Secrets in answers and at rest, and a header only peers may set (issue 18, attack 7).
//!
//! Before: `GET connectors` returned connector passwords, the data dir was world-readable, and
//! a client that set `x-varpulis-forwarded-by` on a write sent to a follower had it handled as
//! if it came from a peer (refused: the follower is not the leader). Now secret parameters
//! read as `<redacted>` (a `PUT` sending that back keeps the stored value), the Raft files are
//! owner-only, and the header is trusted only with the peer secret.

use crate::harness::{Ensemble, Opts};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_secrets_never_appear_in_answers() {
    let ens = Ensemble::start(1, 0, Opts::default()).await;
    let api = &ens.api;
    let base = ens.cluster_url(0, "/connectors");
    let spec = json!({
        "name": "secure_broker", "connector_type": "mqtt",
        "params": {"host": "127.0.0.1", "port": 1883, "username": "bob",
                   "password": "hunter2-password", "auth_token": "tok-123456",
                   "url": "mqtt://bob:url-pass-789@127.0.0.1:1883"}
    });
    let secrets = ["hunter2-password", "tok-123456", "url-pass-789"];
    let check = |what: &str, text: &str| {
        for s in secrets {
            assert!(!text.contains(s), "{what} shows a secret: {text}");
        }
    };
    let created = api.post(&base, &spec).await.unwrap();
    created.expect_status(201);
    check("POST", &created.text);
    assert_eq!(created.body["params"]["password"], "<redacted>");
    assert_eq!(created.body["params"]["username"], "bob");
    assert_eq!(created.body["params"]["port"], 1883);
    let one = api.get(&format!("{base}/secure_broker")).await.unwrap();
    one.expect_ok();
    check("GET one", &one.text);
    let list = api.get(&base).await.unwrap();
    list.expect_ok();
    check("GET list", &list.text);

    // Round trip: what was read goes back with one change; the answer still hides the
    // secrets (that the stored values are the real ones, not the marker, is checked on the
    // deploy a worker receives: deploys::only_the_connectors_a_pipeline_uses_are_shipped).
    let mut edited = one.body.clone();
    edited["params"]["username"] = json!("alice");
    let body = serde_json::to_vec(&edited).unwrap();
    let put = api
        .send(
            reqwest::Method::PUT,
            &format!("{base}/secure_broker"),
            Some((body, "application/json")),
        )
        .await
        .unwrap();
    put.expect_ok();
    check("PUT", &put.text);
    assert_eq!(put.body["params"]["username"], "alice");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let ens = Ensemble::start(1, 0, Opts::default()).await;
    let raft = ens.coords[0].data_dir.path().join("raft");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&raft), 0o700, "{}", raft.display());
    let mut files = 0;
    for entry in std::fs::read_dir(&raft).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            files += 1;
            assert_eq!(mode(&entry.path()) & 0o077, 0, "{}", entry.path().display());
        }
    }
    assert!(files > 0, "sled wrote files in {}", raft.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_set_forwarded_by_header_does_not_break_its_write() {
    let ens = Ensemble::start(3, 0, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let client = reqwest::Client::new();
    for (n, via) in ens.others(leader).into_iter().chain([leader]).enumerate() {
        for value in ["1", "2", "3", "banana"] {
            let name = format!("fwd_{n}_{value}");
            let r = client
                .post(ens.cluster_url(via, "/connectors"))
                .header("x-api-key", ens.opts.api_key.as_str())
                .header("x-varpulis-forwarded-by", value)
                .json(&json!({"name": name, "connector_type": "mqtt",
                              "params": {"host": "127.0.0.1", "port": 1883}}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            assert_eq!(status, 201, "via node {via} with header {value}: {text}");
        }
    }
}
