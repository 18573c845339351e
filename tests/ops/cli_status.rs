//! `varpulis cluster status` against a live Raft group, given one coordinator URL only: it finds
//! every member from the membership (a node added with `--join`, a learner), answers within its
//! per-node timeout when a member is frozen, and exits 0 (healthy), 1 (a member down) and 2
//! (no quorum, then nothing answering) as members go away.

use crate::harness::ADMIN_KEY;
use crate::harness::{coordinator_args, free_port, wait_until, Coordinator, Ensemble, Opts, Proc};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `varpulis cluster --coordinator URL status --node-timeout 2 [--json]`.
fn status(url: &str, json: bool) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_varpulis"));
    cmd.args([
        "cluster",
        "--coordinator",
        url,
        "status",
        "--node-timeout",
        "2",
    ])
    .env("VARPULIS_API_KEY", ADMIN_KEY)
    .env_remove("VARPULIS_COORDINATOR");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `--json` report and the exit code.
fn report(url: &str) -> (i32, Value) {
    let (code, stdout, stderr) = status(url, true);
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {stdout}\n{stderr}"));
    (code, v)
}

/// The row of node `id` in a report.
fn member(r: &Value, id: u64) -> &Value {
    r["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no member {id} in {r}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_finds_every_member_and_exits_by_health() {
    let mut ens = Ensemble::start(3, 1, Opts::default()).await;
    let seed = ens.coords[0].url.clone();

    // Healthy: three voters, one leader, every field there.
    let (code, r) = report(&seed);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["status"], "healthy");
    assert_eq!(r["quorum"]["voters"], 3);
    assert_eq!(r["quorum"]["voters_up"], 3);
    assert_eq!(r["quorum"]["needed"], 2);
    assert!(r["leader_id"].is_u64() && r["term"].is_u64(), "{r}");
    for id in 1..=3 {
        let m = member(&r, id);
        for field in [
            "address",
            "role",
            "term",
            "applied",
            "lag",
            "version",
            "data_size_bytes",
        ] {
            assert!(!m[field].is_null(), "member {id} lacks {field}: {m}");
        }
        assert_eq!(m["ready"], true, "{m}");
    }
    assert_eq!(r["workers"]["total"], 1, "{r}");

    // Node 4 joins through node 2; status, still asked at node 1 only, finds it.
    let port = free_port();
    let url4 = format!("http://127.0.0.1:{port}");
    let data_dir = tempfile::Builder::new()
        .prefix("varpulis-coord-")
        .tempdir()
        .unwrap();
    let mut args = coordinator_args(
        &ens.opts,
        port,
        4,
        std::slice::from_ref(&url4),
        data_dir.path(),
    );
    args.extend([
        "--raft-node-id".to_owned(),
        "4".to_owned(),
        "--join".to_owned(),
        ens.coords[1].url.clone(),
    ]);
    let proc = Proc::spawn("coord-4", args, ens.log_dir());
    ens.coords.push(Coordinator {
        id: 4,
        port,
        url: url4.clone(),
        data_dir,
        proc,
    });
    let seed_ref = &seed;
    let r = wait_until(
        "status shows the joined node 4 healthy",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async move {
            let (code, r) = report(seed_ref);
            let four = r["members"]
                .as_array()?
                .iter()
                .any(|m| m["id"] == 4 && m["member"] == "voter" && m["health"] == "ok");
            (code == 0 && four).then_some(r)
        },
    )
    .await;
    assert_eq!(member(&r, 4)["address"], url4.as_str());
    assert_eq!(r["quorum"]["voters"], 4);

    // Make node 4 a learner (removed, then added back with --learner-only): still a member,
    // still healthy.
    for args in [
        vec!["members", "remove", "4"],
        vec![
            "members",
            "add",
            "--node-id",
            "4",
            "--address",
            url4.as_str(),
            "--learner-only",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_varpulis"))
            .args(["cluster", "--coordinator", &seed])
            .args(&args)
            .env("VARPULIS_API_KEY", ADMIN_KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let r = wait_until(
        "node 4 listed as a learner",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async move {
            let (code, r) = report(seed_ref);
            let learner = r["members"]
                .as_array()?
                .iter()
                .any(|m| m["id"] == 4 && m["member"] == "learner" && m["health"] == "ok");
            (code == 0 && learner).then_some(r)
        },
    )
    .await;
    assert_eq!(r["quorum"]["voters"], 3, "{r}");
    let (code, text, _) = status(&seed, false);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("learner") && text.contains("Learner"),
        "{text}"
    );
    assert!(text.contains("status: healthy (exit 0)"), "{text}");

    // The learner stops: degraded.
    ens.coords[3].proc.kill();
    let (code, r) = report(&seed);
    assert_eq!(code, 1, "{r}");
    assert_eq!(r["status"], "degraded");
    assert_eq!(member(&r, 4)["health"], "down", "{r}");

    // A frozen voter: the answer still comes within the per-node timeout, and it is down.
    let leader = ens
        .wait_leader_among(&[0, 1, 2], Duration::from_secs(20))
        .await;
    let frozen = if leader == 2 { 1 } else { 2 };
    ens.coords[frozen].proc.stop();
    let started = Instant::now();
    let (code, r) = report(&seed);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(12), "status took {took:?}");
    assert_eq!(code, 1, "{r}");
    let m = member(&r, frozen as u64 + 1);
    assert_eq!(m["health"], "down", "{m}");
    assert!(m["error"].as_str().unwrap().contains("timed out"), "{m}");
    let (_, text, _) = status(&seed, false);
    assert!(text.contains("DOWN (timed out)"), "{text}");
    assert!(text.contains("quorum: ok: 2 of 3 voters up"), "{text}");

    // One voter down for good: still degraded (1).
    ens.coords[frozen].proc.kill();
    let (code, r) = report(&seed);
    assert_eq!(code, 1, "{r}");

    // Two of three voters down: no quorum (2), whatever the survivor believes.
    let survivor = 0;
    let second = (0..3).find(|&i| i != frozen && i != survivor).unwrap();
    ens.coords[second].proc.kill();
    let (code, r) = report(&seed);
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["status"], "no_quorum");
    assert_eq!(r["quorum"]["ok"], false);
    assert_eq!(r["quorum"]["voters_up"], 1);
    let (code, text, _) = status(&seed, false);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("quorum: LOST"), "{text}");

    // Nothing answers: 2.
    ens.coords[survivor].proc.kill();
    let (code, r) = report(&seed);
    assert_eq!(code, 2, "{r}");
    assert_eq!(r["status"], "unreachable");
    assert_eq!(r["unidentified"][0]["url"], seed.as_str());
}
