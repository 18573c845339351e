//! Every example's VPL checks clean and its events give the expected output with `varpulis run`.

use crate::repo;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_varpulis");

fn check_clean(file: &Path) {
    let out = Command::new(BIN).arg("check").arg(file).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", file.display());
    assert!(!stderr.contains("warning"), "{}: {stderr}", file.display());
}

fn run(vpl: &Path, evt: &Path) -> Vec<Value> {
    let out = Command::new(BIN)
        .arg("run")
        .arg(vpl)
        .arg("--events")
        .arg(evt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        vpl.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn expected(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_example_vpl_checks_clean() {
    let mut n = 0;
    for dir in ["iot", "mandelbrot", "fraud"] {
        for entry in std::fs::read_dir(repo().join("examples").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "vpl") {
                check_clean(&path);
                n += 1;
            }
        }
    }
    assert_eq!(n, 6, "iot.vpl, row0-3.vpl, fraud.vpl");
}

#[test]
fn iot_example_raises_both_alerts() {
    let d = repo().join("examples/iot");
    assert_eq!(
        run(&d.join("iot.vpl"), &d.join("events.evt")),
        expected(&d.join("expected.jsonl"))
    );
}

#[test]
fn iot_group_spec_routes_both_sensor_types() {
    let text = std::fs::read_to_string(repo().join("examples/iot/group.json")).unwrap();
    let spec: varpulis_api::cluster::PipelineGroupSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(spec.pipelines.len(), 2);
    assert_eq!(spec.routes.len(), 2);
}

#[test]
fn fraud_example_flags_only_the_unconfirmed_new_device_transfer() {
    let d = repo().join("examples/fraud");
    let out = run(&d.join("fraud.vpl"), &d.join("events.evt"));
    assert_eq!(out, expected(&d.join("expected.jsonl")));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["fields"]["account"], "A1");
}

#[test]
fn mandelbrot_rows_compute_their_own_tiles() {
    let d = repo().join("examples/mandelbrot");
    for row in 0..4i64 {
        let out = run(&d.join(format!("row{row}.vpl")), &d.join("tiles-small.evt"));
        // size 2: 4 tiles of 2x2 pixels, all in rows 2*row and 2*row+1.
        assert_eq!(out.len(), 16, "row {row}: {out:?}");
        let mut seen = std::collections::HashSet::new();
        for e in &out {
            assert_eq!(e["event_type"], "Pixel");
            let (x, y) = (
                e["fields"]["x"].as_i64().unwrap(),
                e["fields"]["y"].as_i64().unwrap(),
            );
            assert!((0..8).contains(&x), "{e}");
            assert!(y == 2 * row || y == 2 * row + 1, "row {row}: {e}");
            let it = e["fields"]["iterations"].as_i64().unwrap();
            assert_eq!(e["fields"]["diverged"], Value::Bool(it < 32), "{e}");
            assert!(seen.insert((x, y)), "pixel twice: {e}");
        }
    }
}

#[test]
fn mandelbrot_group_spec_embeds_the_row_files() {
    let d = repo().join("examples/mandelbrot");
    let text = std::fs::read_to_string(d.join("group.json")).unwrap();
    let spec: varpulis_api::cluster::PipelineGroupSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(spec.pipelines.len(), 4);
    for (r, p) in spec.pipelines.iter().enumerate() {
        let file = std::fs::read_to_string(d.join(format!("row{r}.vpl"))).unwrap();
        assert_eq!(p.source, file, "group.json row{r} is stale");
        assert_eq!(spec.routes[r].to_pipeline, p.name);
        assert_eq!(spec.routes[r].event_types, vec![format!("ComputeTile{r}*")]);
    }
}
