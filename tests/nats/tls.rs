//! The NATS cluster transport over TLS: a `nats-server` with a certificate from a throwaway
//! CA, coordinators and workers on `tls://` with `--tls-ca`; a worker trusting another CA
//! never registers.

use crate::harness::{wait_until, Ensemble, Worker};
use crate::start_nats_with;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use varpulis_tls::throwaway::ThrowawayCa;

fn tls_worker(id: &str, nats_url: &str, ca: &Path, logs: &Path) -> Worker {
    let tls_ca = ["--tls-ca".to_owned(), ca.display().to_string()];
    crate::nats_worker(id, nats_url, &tls_ca, logs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_transport_runs_over_tls_and_refuses_an_unknown_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ThrowawayCa::new("nats test CA").expect("CA");
    let ca_file = dir.path().join("ca.pem");
    ca.write_cert(&ca_file).expect("write CA");
    let leaf = ca
        .issue_files(dir.path(), "nats", &["localhost", "127.0.0.1"])
        .expect("leaf");
    let other = ThrowawayCa::new("another CA").expect("CA");
    let other_file = dir.path().join("other.pem");
    other.write_cert(&other_file).expect("write CA");
    let args = vec![
        "--tls".to_owned(),
        "--tlscert".into(),
        leaf.cert.display().to_string(),
        "--tlskey".into(),
        leaf.key.display().to_string(),
    ];
    let Some(nats) = start_nats_with(&args, "tls") else {
        return;
    };
    let tls_ca = ["--tls-ca".to_owned(), ca_file.display().to_string()];
    let opts = crate::nats_opts(&nats.url, &tls_ca);
    let mut ens = Ensemble::start(3, 0, opts).await;
    let logs = tempfile::tempdir().expect("logs");
    ens.workers
        .push(tls_worker("tls-w0", &nats.url, &ca_file, logs.path()));
    ens.workers
        .push(tls_worker("stranger", &nats.url, &other_file, logs.path()));
    let ids = vec!["tls-w0".to_string()];
    crate::wait_ready_over(&ens, &ids, "nats+tls").await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let group = json!({
        "name": "tls-group",
        "pipelines": [
            {"name": "a", "source": "stream A = EventA .emit(result: \"over-tls\")",
             "worker_affinity": "tls-w0"}
        ],
        "routes": [
            {"from_pipeline": "_external", "to_pipeline": "a", "event_types": ["EventA"]}
        ]
    });
    let gid = ens.create_group(leader, &group).await;
    wait_until(
        "group running over nats+tls",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (ens.group_view(leader, &gid).await?["status"] == "running").then_some(()) },
    )
    .await;
    let inject = ens.cluster_url(leader, &format!("/pipeline-groups/{gid}/inject"));
    let r = ens
        .api
        .post(&inject, &json!({"event_type": "EventA", "fields": {}}))
        .await
        .expect("inject");
    r.expect_status(200);
    assert_eq!(r.body["worker_id"], "tls-w0", "{}", r.text);
    // The worker that trusts another CA cannot reach the NATS server: never registered (it
    // started with the other one, which registered seconds ago).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list = ens.worker_list(leader).await.expect("worker list");
    assert!(
        list.iter().all(|w| w["id"] != "stranger"),
        "a worker with the wrong CA registered: {list:?}"
    );
}
