//! `varpulis cluster` against a live ensemble: 3 coordinators + 2 workers, with a dead URL first
//! in `--coordinator` so every command also exercises the move to the next coordinator.

use crate::harness::{free_port, wait_until, Ensemble, Opts, ADMIN_KEY};
use crate::repo;
use serde_json::Value;
use std::process::{Command, Output};
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

    // status: one row per URL (the dead one marked DOWN), one leader, workers by state.
    let text = cli.ok(&["status"]);
    assert!(text.contains("DOWN"), "{text}");
    assert_eq!(text.matches("Leader").count(), 1, "{text}");
    assert!(text.contains("workers: 2 total (ready=2)"), "{text}");
    let status = cli.json(&["status"]);
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    assert!(nodes[0]["error"].is_string());
    let terms: Vec<u64> = nodes[1..]
        .iter()
        .map(|n| n["metrics"]["current_term"].as_u64().unwrap())
        .collect();
    assert!(terms.iter().all(|t| *t >= 1), "{status}");
    assert_eq!(status["workers"]["total"], 2);

    // workers
    let text = cli.ok(&["workers"]);
    for w in &ens.workers {
        assert!(text.contains(&w.id), "{text}");
    }
    assert_eq!(cli.json(&["workers"])["total"], 2);

    // groups deploy / list
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
    let text = cli.ok(&["groups", "get", &gid]);
    assert!(
        text.contains("temp-alerts") && text.contains("pressure-alerts"),
        "{text}"
    );

    // inject: one event, then the example's .evt file through inject-batch.
    let text = cli.ok(&[
        "inject",
        &gid,
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
    let batch = cli.json(&["inject", &gid, "-f", evt.to_str().unwrap()]);
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

    // topology and migrations
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
    let out = cli.run(&["members", "remove", "9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a voter"));

    // All coordinators unreachable: a clear transport error, exit 2.
    let nobody = Cli {
        coordinators: dead,
        key: ADMIN_KEY.into(),
    };
    let out = nobody.run(&["workers"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no coordinator reachable"));

    // members: remove node 1 from the voters (it stays a learner), then make it a voter again.
    let text = cli.ok(&["members", "remove", "1"]);
    assert!(text.contains("voters [2, 3]"), "{text}");
    let text = cli.ok(&[
        "members",
        "add",
        "--node-id",
        "1",
        "--address",
        &ens.coords[0].url,
    ]);
    assert!(text.contains("voters [1, 2, 3]"), "{text}");

    // groups rm
    let text = cli.ok(&["groups", "rm", &gid]);
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
