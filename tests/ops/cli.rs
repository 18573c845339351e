//! `varpulis cluster` against a live ensemble: 3 coordinators + 2 workers, with a dead URL first
//! in `--coordinator` so every command also exercises the move to the next coordinator.

use crate::harness::{free_port, wait_until, Ensemble, Opts, ADMIN_KEY};
use crate::repo;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct Cli {
    coordinators: String,
    key: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_varpulis"))
            .arg("cluster")
            .args(args)
            .env("VARPULIS_COORDINATOR", &self.coordinators)
            .env("VARPULIS_API_KEY", &self.key)
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "varpulis cluster {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_cli_drives_a_live_ensemble() {
    let ens = Ensemble::start(3, 2, Opts::default()).await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut urls = vec![dead.clone()];
    urls.extend(ens.coord_urls());
    let cli = Cli {
        coordinators: urls.join(","),
        key: ADMIN_KEY.to_owned(),
    };

    // status: one row per member, the dead URL reported apart, one leader, workers by state.
    let text = cli.ok(&["status"]);
    assert!(text.contains("no member's address"), "{text}");
    assert_eq!(text.matches("Leader").count(), 1, "{text}");
    assert!(text.contains("workers: 2 total (ready=2)"), "{text}");
    assert!(text.contains("quorum: ok: 3 of 3 voters up"), "{text}");
    let status = cli.json(&["status"]);
    assert_eq!(status["status"], "healthy", "{status}");
    assert_eq!(status["exit_code"], 0);
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status}");
    assert_eq!(status["unidentified"][0]["url"], dead.as_str());
    for m in members {
        assert!(m["term"].as_u64().unwrap() >= 1, "{m}");
        assert_eq!(m["member"], "voter");
        assert_eq!(m["health"], "ok");
        assert_eq!(m["version"], env!("CARGO_PKG_VERSION"));
        assert!(m["data_size_bytes"].as_u64().unwrap() > 0, "{m}");
    }
    assert_eq!(status["workers"]["total"], 2);

    // workers
    let text = cli.ok(&["workers"]);
    for w in &ens.workers {
        assert!(text.contains(&w.id), "{text}");
    }
    assert_eq!(cli.json(&["workers"])["total"], 2);
    assert_eq!(cli.json(&["workers", "list"])["total"], 2);
    let w0 = &ens.workers[0].id;
    let one = cli.json(&["workers", "get", w0]);
    assert_eq!(one["id"], w0.as_str());

    // groups deploy / list; from now on the group is named by its name.
    let spec = repo().join("examples/iot/group.json");
    let group = cli.json(&["groups", "deploy", "-f", spec.to_str().unwrap()]);
    let gid = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["name"], "iot-monitoring");
    wait_until(
        "group running",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let list = cli.json(&["groups", "list"]);
            let running = list["pipeline_groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["id"] == gid.as_str() && g["status"] == "running");
            async move { running.then_some(()) }
        },
    )
    .await;
    let text = cli.ok(&["groups", "list"]);
    assert!(
        text.contains("iot-monitoring") && text.contains(&gid),
        "{text}"
    );
    for key in [gid.as_str(), "iot-monitoring"] {
        let text = cli.ok(&["groups", "get", key]);
        assert!(
            text.contains("temp-alerts") && text.contains("pressure-alerts"),
            "{text}"
        );
        assert_eq!(cli.json(&["groups", "get", key])["id"], gid.as_str());
    }

    // inject by name: one event, then the example's .evt file through inject-batch.
    let text = cli.ok(&[
        "inject",
        "iot-monitoring",
        "--event-type",
        "TemperatureReading",
        "--fields",
        r#"{"sensor_id": "T1", "temperature": 105.5}"#,
    ]);
    assert!(text.contains("routed to temp-alerts"), "{text}");
    assert!(
        text.contains("TempAlerts") && text.contains("HIGH_TEMP"),
        "{text}"
    );
    let evt = repo().join("examples/iot/events.evt");
    let batch = cli.json(&["inject", "iot-monitoring", "-f", evt.to_str().unwrap()]);
    assert_eq!(batch["accepted"], 4, "{batch}");
    let types: Vec<&str> = batch["output_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 2, "{batch}");
    assert!(
        types.contains(&"TempAlerts") && types.contains(&"PressureAlerts"),
        "{batch}"
    );

    // Heartbeat figures come from the leader even when only a follower is asked.
    let leader = ens.wait_leader(Duration::from_secs(20)).await;
    let follower = Cli {
        coordinators: ens.coords[ens.others(leader)[0]].url.clone(),
        key: ADMIN_KEY.into(),
    };
    wait_until(
        "events counted in the follower's worker list",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let list = follower.json(&["workers"]);
            let counted = list["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["last_heartbeat_ms_ago"].is_u64())
                && list["workers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w["events_processed"].as_u64().unwrap_or(0))
                    .sum::<u64>()
                    >= 5;
            async move { counted.then_some(()) }
        },
    )
    .await;
    let text = follower.ok(&["workers"]);
    assert!(!text.contains("no leader answered"), "{text}");

    // Live output: a follower of the group's stream sees the next injected alert.
    let mut output = Command::new(env!("CARGO_BIN_EXE_varpulis"))
        .args([
            "cluster",
            "groups",
            "output",
            "iot-monitoring",
            "--count",
            "1",
            "--json",
        ])
        .env("VARPULIS_COORDINATOR", ens.coord_urls().join(","))
        .env("VARPULIS_API_KEY", ADMIN_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "an output event on `groups output`",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            cli.ok(&[
                "inject",
                "iot-monitoring",
                "--event-type",
                "TemperatureReading",
                "--fields",
                r#"{"sensor_id": "T9", "temperature": 150}"#,
            ]);
            let done = output.try_wait().unwrap().is_some();
            async move { done.then_some(()) }
        },
    )
    .await;
    let finished = output.wait_with_output().unwrap();
    assert!(finished.status.success(), "{finished:?}");
    let line: Value = serde_json::from_str(
        String::from_utf8_lossy(&finished.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["pipeline"], "temp-alerts", "{line}");
    assert_eq!(line["event"]["event_type"], "TempAlerts", "{line}");

    // Rolling update by name (threshold 100 -> 90, same shape: the state is kept), versions,
    // rollback.
    let dir = tempfile::tempdir().unwrap();
    let vpl = dir.path().join("temp.vpl");
    std::fs::write(
        &vpl,
        "stream TempAlerts = TemperatureReading .where(temperature > 90) .emit(alert_type: \"WARM\", sensor_id: sensor_id, temperature: temperature)",
    )
    .unwrap();
    let pipeline = format!("temp-alerts={}", vpl.display());
    let upd = cli.json(&[
        "groups",
        "update",
        "iot-monitoring",
        "--pipeline",
        &pipeline,
    ]);
    assert_eq!(upd["version"], 2, "{upd}");
    assert_eq!(upd["changed"], serde_json::json!(["temp-alerts"]), "{upd}");
    assert_eq!(upd["state"], "keep", "{upd}");
    let text = cli.ok(&[
        "inject",
        "iot-monitoring",
        "--event-type",
        "TemperatureReading",
        "--fields",
        r#"{"sensor_id": "T3", "temperature": 95}"#,
    ]);
    assert!(text.contains("WARM"), "{text}");
    let text = cli.ok(&["groups", "versions", "iot-monitoring"]);
    assert!(text.contains("is at version 2"), "{text}");
    let versions = cli.json(&["groups", "versions", &gid]);
    assert_eq!(
        versions["history"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    let text = cli.ok(&["groups", "rollback", "iot-monitoring"]);
    assert!(text.contains("version 3 (restores version 1)"), "{text}");
    let out = cli.run(&[
        "groups",
        "update",
        "iot-monitoring",
        "--pipeline",
        "temp-alerts",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=FILE"));

    // topology and migrations (filtered by group name)
    let text = cli.ok(&["topology"]);
    assert!(
        text.contains("temp-alerts") && text.contains("pressure-alerts"),
        "{text}"
    );
    assert!(text.contains("Temperature*"), "{text}");
    let topo = cli.json(&["topology"]);
    assert_eq!(topo["groups"][0]["pipelines"].as_array().unwrap().len(), 2);
    let migrations = cli.json(&["migrations"]);
    assert!(migrations["migrations"].is_array(), "{migrations}");
    cli.ok(&["migrations"]);

    // connectors CRUD; update with flags changes only what they name.
    let created = cli.json(&[
        "connectors",
        "create",
        "Broker",
        "--type",
        "mqtt",
        "--param",
        "host=localhost",
        "--param",
        "port=1883",
        "--description",
        "shared broker",
    ]);
    assert_eq!(created["params"]["port"], 1883, "{created}");
    let text = cli.ok(&["connectors", "list"]);
    assert!(
        text.contains("Broker") && text.contains("host=localhost"),
        "{text}"
    );
    let updated = cli.json(&[
        "connectors",
        "update",
        "Broker",
        "--param",
        "host=mqtt.local",
    ]);
    assert_eq!(updated["params"]["host"], "mqtt.local", "{updated}");
    assert_eq!(updated["params"]["port"], 1883, "{updated}");
    assert_eq!(updated["description"], "shared broker", "{updated}");
    assert_eq!(
        cli.json(&["connectors", "get", "Broker"])["params"]["host"],
        "mqtt.local"
    );
    let out = cli.run(&[
        "connectors",
        "create",
        "Broker",
        "--type",
        "mqtt",
        "--param",
        "host=other",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("409") && err.contains("connector_exists"),
        "{err}"
    );
    cli.ok(&["connectors", "rm", "Broker"]);
    assert_eq!(cli.json(&["connectors", "list"])["total"], 0);

    // drain a worker (its pipelines move, by name filter), wait until drained, remove it;
    // then rebalance.
    let victim = ens.workers[1].id.clone();
    let text = cli.ok(&["workers", "drain", &victim, "--wait"]);
    assert!(text.contains("is drained"), "{text}");
    let moved = cli.json(&["migrations", "--group", "iot-monitoring"]);
    let all = cli.json(&["migrations"]);
    assert_eq!(moved["total"], all["total"], "one group only: {moved}");
    assert!(cli.json(&["migrations", "--active"])["migrations"].is_array());
    assert_eq!(cli.json(&["workers", "get", &victim])["status"], "draining");
    let text = cli.ok(&["workers", "remove", &victim]);
    assert!(text.contains("removed"), "{text}");
    let rebalance = cli.json(&["rebalance"]);
    assert!(rebalance["moves"].is_array(), "{rebalance}");
    cli.ok(&["rebalance"]);

    // errors: unknown id (404), wrong key (401), bad --fields, unknown member.
    let out = cli.run(&["groups", "rm", "no-such-group"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 404"), "{err}");
    let bad = Cli {
        coordinators: ens.coord_urls().join(","),
        key: "wrong".into(),
    };
    let out = bad.run(&["workers"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    let out = cli.run(&["inject", &gid, "--event-type", "X", "--fields", "[1]"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--fields must be a JSON object"));
    // Removing a node that is not a member does nothing (idempotent).
    let text = cli.ok(&["members", "remove", "9"]);
    assert!(
        text.contains("not a member") && text.contains("nothing to do"),
        "{text}"
    );
    let out = cli.run(&["members", "remove", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither a node id"));

    // All coordinators unreachable: a clear transport error, exit 2.
    let nobody = Cli {
        coordinators: dead,
        key: ADMIN_KEY.into(),
    };
    let out = nobody.run(&["workers"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no coordinator reachable"));

    // members: list; remove node 1 (named by its address) from the membership entirely, then
    // add it back (learner, caught up, voter). Adding an address where nothing listens is
    // refused before anything changes.
    let list = cli.json(&["members", "list"]);
    assert_eq!(list["voters"], serde_json::json!([1, 2, 3]), "{list}");
    let text = cli.ok(&["members", "list"]);
    assert!(
        text.contains(&ens.coords[0].url) && text.contains("voter"),
        "{text}"
    );
    let text = cli.ok(&["members", "remove", &ens.coords[0].url]);
    assert!(text.contains("voters [2, 3]"), "{text}");
    assert!(text.contains("learners []"), "{text}");
    let out = cli.run(&[
        "members",
        "add",
        "--node-id",
        "7",
        "--address",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing answers"),
        "{out:?}"
    );
    assert_eq!(
        cli.json(&["members", "list"])["voters"],
        serde_json::json!([2, 3])
    );
    let text = cli.ok(&[
        "members",
        "add",
        "--node-id",
        "1",
        "--address",
        &ens.coords[0].url,
    ]);
    assert!(text.contains("voters [1, 2, 3]"), "{text}");

    // groups rm by name
    let text = cli.ok(&["groups", "rm", "iot-monitoring"]);
    assert!(text.contains("torn down"), "{text}");
    assert_eq!(cli.json(&["groups", "list"])["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandelbrot_script_renders_a_png_through_the_coordinator() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIP: python3 is not installed");
        return;
    }
    let ens = Ensemble::start(1, 2, Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("m.png");
    let out = Command::new("python3")
        .arg(repo().join("examples/mandelbrot/mandelbrot.py"))
        .args(["--coordinator", &ens.coords[0].url, "--api-key", ADMIN_KEY])
        .args(["--size", "4", "--max-iter", "32", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["pixels"], 256, "{summary}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height 16.
    assert_eq!(&bytes[16..24], &[0, 0, 0, 16, 0, 0, 0, 16]);
}
