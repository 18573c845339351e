//! Backup and restore with real processes: `varpulis cluster snapshot save` from a running
//! 3-node ensemble while writes go on, `varpulis snapshot status` (sound and corrupt files),
//! `varpulis snapshot restore` into three fresh data dirs (a corrupt file and an existing dir
//! refused), then three coordinators started normally on the restored dirs resume with exactly
//! the snapshot's state (same state hash, same connectors) and accept writes.

use crate::harness::ADMIN_KEY;
use crate::harness::{coordinator_args, free_port, wait_until, Api, Ensemble, Opts, Proc};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `varpulis <args>`; exit code, stdout, stderr.
fn varpulis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_varpulis"))
        .args(args)
        .env("VARPULIS_API_KEY", ADMIN_KEY)
        .env_remove("VARPULIS_COORDINATOR")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn connector(name: &str) -> Value {
    json!({"name": name, "connector_type": "mqtt", "params": {"host": "localhost", "port": "1883"}})
}

async fn connector_names(api: &Api, url: &str) -> Vec<String> {
    let r = api
        .get(&format!("{url}/api/v1/cluster/connectors?limit=1000"))
        .await
        .unwrap();
    assert!(r.ok(), "{}", r.text);
    r.body["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn restore(file: &Path, dir: &Path, id: u64, peers: &str, force: bool) -> (i32, String, String) {
    let id = id.to_string();
    let mut args = vec![
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--raft-node-id",
        &id,
        "--raft-peers",
        peers,
    ];
    if force {
        args.push("--force");
    }
    varpulis(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_writes_restores_a_new_cluster_with_that_exact_state() {
    let ens = Ensemble::start(3, 0, Opts::default()).await;
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = ens.others(leader)[0];
    let follower_url = ens.coords[follower].url.clone();
    for i in 0..20 {
        let r = ens
            .api
            .post(
                &ens.cluster_url(leader, "/connectors"),
                &connector(&format!("seed{i}")),
            )
            .await
            .unwrap();
        assert!(r.ok(), "{}", r.text);
    }

    // A writer keeps creating connectors through the follower during the backup.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (api, url) = (ens.api.clone(), ens.cluster_url(follower, "/connectors"));
        let (acked, stop, during) = (acked.clone(), stop.clone(), during.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("live{i}");
                i += 1;
                if let Ok(r) = api.post(&url, &connector(&name)).await {
                    if r.ok() {
                        acked.lock().unwrap().push(name);
                        during.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    wait_until(
        "writes flowing",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || {
            let during = during.clone();
            async move { (during.load(Ordering::SeqCst) >= 5).then_some(()) }
        },
    )
    .await;
    let acked_before: Vec<String> = acked.lock().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap");
    let save = {
        let (url, file) = (follower_url.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            varpulis(&[
                "cluster",
                "--coordinator",
                &url,
                "--json",
                "snapshot",
                "save",
                file.to_str().unwrap(),
            ])
        })
        .await
        .unwrap()
    };
    // Let the writer show that writes kept committing around the save.
    let after_save = during.load(Ordering::SeqCst);
    wait_until(
        "writes after the save",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || {
            let during = during.clone();
            async move { (during.load(Ordering::SeqCst) > after_save).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let (code, stdout, stderr) = save;
    assert_eq!(code, 0, "save failed: {stdout}\n{stderr}");
    let header: Value = serde_json::from_str(&stdout).unwrap();
    let index = header["applied_index"].as_u64().unwrap();
    let hash = header["state_hash"].as_str().unwrap().to_string();
    assert_eq!(header["format_version"], 1);
    assert_eq!(header["source_membership"]["voters"], json!([1, 2, 3]));
    assert!(!file.with_extension("snap.part").exists());

    // `status`: sound file.
    let (code, out, err) = varpulis(&["snapshot", "status", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&hash) && out.contains(&index.to_string()),
        "{out}"
    );
    assert!(out.contains("checksum:        ok"), "{out}");

    // A corrupt copy: status exits non-zero, restore refuses and writes nothing.
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let bad = dir.path().join("bad.snap");
    std::fs::write(&bad, &bytes).unwrap();
    let (code, _, err) = varpulis(&["snapshot", "status", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("corrupt"), "{err}");
    let truncated = dir.path().join("short.snap");
    std::fs::write(&truncated, &std::fs::read(&file).unwrap()[..mid]).unwrap();
    assert_eq!(
        varpulis(&["snapshot", "status", truncated.to_str().unwrap()]).0,
        1
    );

    // Disaster: the whole old ensemble is gone.
    drop(ens);

    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let peers = urls.join(",");
    let dirs: Vec<_> = (1..=3)
        .map(|i| dir.path().join(format!("node{i}")))
        .collect();
    let (code, _, err) = restore(&bad, &dirs[0], 1, &peers, false);
    assert_eq!(code, 1, "{err}");
    assert!(!dirs[0].exists(), "a refused restore writes nothing");
    for (i, d) in dirs.iter().enumerate() {
        let (code, out, err) = restore(&file, d, i as u64 + 1, &peers, false);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(&hash), "{out}");
    }
    // An existing data dir is kept unless --force.
    let (code, _, err) = restore(&file, &dirs[0], 1, &peers, false);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    let (code, out, err) = restore(&file, &dirs[0], 1, &peers, true);
    assert_eq!(code, 0, "{out}{err}");

    // Start the new cluster normally.
    let logs = tempfile::tempdir().unwrap();
    let opts = Opts::default();
    let mut procs: Vec<Proc> = (0..3)
        .map(|i| {
            let args = coordinator_args(&opts, ports[i], i as u64 + 1, &urls, &dirs[i]);
            Proc::spawn(&format!("restored-{}", i + 1), args, logs.path())
        })
        .collect();
    let api = Api::new(Some(ADMIN_KEY));
    for url in &urls {
        let api = &api;
        wait_until(
            "restored node ready",
            Duration::from_secs(40),
            Duration::from_millis(100),
            || async move {
                let r = api.get(&format!("{url}/ready")).await.ok()?;
                (r.status == 200).then_some(())
            },
        )
        .await;
    }
    let mut cluster_ids = Vec::new();
    for url in &urls {
        let m = api.get(&format!("{url}/raft/metrics")).await.unwrap().body;
        assert!(m["last_applied"].as_u64().unwrap() >= index, "{m}");
        assert_eq!(m["state_hash"], hash.as_str(), "{url}: {m}");
        assert_eq!(m["membership"], json!([1, 2, 3]));
        cluster_ids.push(m["cluster_id"].clone());
    }
    let names = connector_names(&api, &urls[0]).await;
    assert_eq!(
        names.len() as u64,
        header["counts"]["connectors"].as_u64().unwrap()
    );
    for name in (0..20).map(|i| format!("seed{i}")).chain(acked_before) {
        assert!(
            names.contains(&name),
            "{name} acked before the save is missing"
        );
    }
    eprintln!(
        "snapshot test: index {index}, {} connectors restored",
        names.len()
    );
    // The new cluster takes writes, through any node.
    let r = api
        .post(
            &format!("{}/api/v1/cluster/connectors", urls[2]),
            &connector("after_restore"),
        )
        .await
        .unwrap();
    assert!(r.ok(), "{}", r.text);
    assert!(connector_names(&api, &urls[2])
        .await
        .contains(&"after_restore".to_string()));
    for p in &mut procs {
        p.kill();
    }
    // One new cluster id, not the source's.
    assert!(
        cluster_ids
            .iter()
            .all(|c| c == &cluster_ids[0] && c.is_string()),
        "{cluster_ids:?}"
    );
    assert_ne!(cluster_ids[0], header["cluster_id"]);
}
