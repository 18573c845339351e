//! The distributed Mandelbrot of tutorial part 10, at a small size: four row pipelines spread
//! over two workers route their `Pixel` events to a `canvas` pipeline that publishes them to
//! MQTT (as the tutorial's `.to(MqttOut, topic: "mandelbrot/pixels")` does). The image read back
//! from MQTT must equal a single-process `varpulis run` of the same row programs.

use crate::harness::{Ensemble, BIN};
use crate::*;
use serde_json::json;
use std::collections::BTreeSet;

/// Tile side in pixels (the image is 4 * SIZE wide) and iteration limit.
const SIZE: u64 = 4;
const MAX_ITER: u64 = 64;

type Pixel = (i64, i64, i64, bool);

fn pixel(e: &Value) -> Pixel {
    (
        field(e, "x").as_i64().unwrap(),
        field(e, "y").as_i64().unwrap(),
        field(e, "iterations").as_i64().unwrap(),
        field(e, "diverged").as_bool().unwrap(),
    )
}

/// Pixels of a single-process run of every row program over the 16 tiles.
fn reference(evt: &str) -> BTreeSet<Pixel> {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("tiles.evt");
    std::fs::write(&events, evt).unwrap();
    let mut pixels = BTreeSet::new();
    for row in 0..4 {
        let program = format!(
            "{}/examples/mandelbrot/row{row}.vpl",
            env!("CARGO_MANIFEST_DIR")
        );
        let out = std::process::Command::new(BIN)
            .args(["run", &program, "--events"])
            .arg(&events)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let e: Value = serde_json::from_str(line).unwrap();
            assert_eq!(e["event_type"], "Pixel");
            pixels.insert(pixel(&e));
        }
    }
    pixels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_mandelbrot_matches_a_single_process_run() {
    let tiles: Vec<(u64, u64)> = (0..4).flat_map(|r| (0..4).map(move |c| (r, c))).collect();
    let evt: String = tiles
        .iter()
        .map(|(r, c)| format!("ComputeTile{r}{c} {{ size: {SIZE}, max_iter: {MAX_ITER} }}\n"))
        .collect();
    let expected = reference(&evt);
    assert_eq!(expected.len() as u64, 16 * SIZE * SIZE);

    let broker = broker();
    let ens = Ensemble::start(1, 2, opts(&broker, &[])).await;
    register_connector(&ens, &broker, "MqttOut").await;
    let mut canvas = Sub::new(&broker, "mandel-e2e/pixels").await;
    let mut group: Value =
        serde_json::from_str(include_str!("../../examples/mandelbrot/group.json")).unwrap();
    group["name"] = json!("mandel-e2e");
    group["pipelines"].as_array_mut().unwrap().push(json!({
        "name": "canvas",
        "source": "stream Canvas = Pixel .emit(x: x, y: y, iterations: iterations, diverged: diverged) .to(MqttOut, topic: \"mandel-e2e/pixels\")"
    }));
    for row in 0..4 {
        group["routes"].as_array_mut().unwrap().push(json!({
            "from_pipeline": format!("row{row}"), "to_pipeline": "canvas", "event_types": ["Pixel"]
        }));
    }
    let gid = deploy(&ens, &group).await;
    let mut workers = BTreeSet::new();
    for row in 0..4 {
        workers.insert(placement(&ens, &gid, &format!("row{row}")).await.0);
    }
    assert_eq!(workers.len(), 2, "rows spread over both workers");

    let events: Vec<Value> = tiles
        .iter()
        .map(|(r, c)| json!({"event_type": format!("ComputeTile{r}{c}"), "fields": {"size": SIZE, "max_iter": MAX_ITER}}))
        .collect();
    let answer = inject_batch(&ens, &gid, &events).await;
    let direct: BTreeSet<Pixel> = answer["output_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(pixel)
        .collect();
    assert_eq!(direct, expected, "pixels in the inject answer");

    let got = canvas.events(expected.len(), Duration::from_secs(20)).await;
    assert_eq!(got.len(), expected.len());
    let image: BTreeSet<Pixel> = got.iter().map(pixel).collect();
    assert_eq!(image, expected, "pixels read back from MQTT");
}
