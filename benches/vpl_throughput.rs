//! VPL runtime throughput (harness = false): prints figures, asserts nothing.
//!
//! `cargo bench --bench vpl_throughput` (optionally `-- <events>`). Measures, single-threaded:
//! * filter + emit over 1,000,000 in-memory events, and a hand-written Rust loop doing the same
//!   filter and building the same output events (the baseline ratio);
//! * filter + select;
//! * the tutorial's Mandelbrot `.process` pipeline (pixels/s).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

const FILTER_EMIT: &str =
    "stream Hot = Reading .where(temp > 80.0) .emit(sensor: sensor, temp: temp)";
const FILTER_SELECT: &str = "stream Hot = Reading .where(temp > 80.0) .select(sensor, temp)";
const MANDELBROT: &str = r#"
fn mandelbrot(cx: float, cy: float, max_iter: int) -> int:
    var zr = 0.0
    var zi = 0.0
    var i = 0
    while i < max_iter:
        let r2 = zr * zr
        let i2 = zi * zi
        if r2 + i2 > 4.0:
            return i
        zi := 2.0 * zr * zi + cy
        zr := r2 - i2 + cx
        i := i + 1
    return max_iter

fn compute_tile(x_off: int, y_off: int, size: int, max_iter: int):
    for px in 0..size:
        for py in 0..size:
            let cx = -2.0 + (x_off + px) * 3.0 / 1000.0
            let cy = -1.5 + (y_off + py) * 3.0 / 1000.0
            let iters = mandelbrot(cx, cy, max_iter)
            emit Pixel(x: x_off + px, y: y_off + py, iterations: iters, diverged: iters < max_iter)

stream Tiles = ComputeTile .process(compute_tile(x_off, y_off, 250, 256))
"#;

fn readings(n: usize) -> Vec<Event> {
    let sensors: Vec<Arc<str>> = (0..100).map(|i| Arc::from(format!("s{i}"))).collect();
    let (k_sensor, k_temp, k_seq): (Arc<str>, Arc<str>, Arc<str>) =
        (Arc::from("sensor"), Arc::from("temp"), Arc::from("seq"));
    (0..n)
        .map(|i| {
            // Deterministic pseudo-random temperatures in [0, 100): about 20 % pass the filter.
            let temp = ((i as u64).wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
            Event::new(
                "Reading",
                i as i64 * 1_000_000,
                vec![
                    (k_sensor.clone(), Value::Str(sensors[i % 100].clone())),
                    (k_temp.clone(), Value::Float(temp)),
                    (k_seq.clone(), Value::Int(i as i64)),
                ],
            )
        })
        .collect()
}

fn run_engine(src: &str, events: &[Event]) -> (f64, u64) {
    let mut engine = match Engine::compile(src, &EngineOptions::default()) {
        Ok(e) => e,
        Err(e) => panic!("bench program does not compile:\n{e}"),
    };
    let mut out = Vec::with_capacity(16);
    let mut produced = 0u64;
    let start = Instant::now();
    for e in events {
        out.clear();
        if engine.process(e, &mut out).is_err() {
            panic!("engine fault");
        }
        produced += out.len() as u64;
        black_box(&out);
    }
    (start.elapsed().as_secs_f64(), produced)
}

/// The same filter + emit written by hand: find fields by name, compare, build the output event.
fn run_baseline(events: &[Event]) -> (f64, u64) {
    let ty: Arc<str> = Arc::from("Hot");
    let (k_sensor, k_temp): (Arc<str>, Arc<str>) = (Arc::from("sensor"), Arc::from("temp"));
    let mut out: Vec<Event> = Vec::with_capacity(16);
    let mut produced = 0u64;
    let start = Instant::now();
    for e in events {
        out.clear();
        let temp = e.field("temp");
        if matches!(temp, Some(Value::Float(t)) if *t > 80.0) {
            let sensor = e.field("sensor").cloned().unwrap_or_default();
            let fields = vec![
                (k_sensor.clone(), sensor),
                (k_temp.clone(), temp.cloned().unwrap_or_default()),
            ];
            out.push(Event {
                event_type: ty.clone(),
                timestamp_ns: e.timestamp_ns,
                fields: Arc::new(fields),
            });
        }
        produced += out.len() as u64;
        black_box(&out);
    }
    (start.elapsed().as_secs_f64(), produced)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let events = readings(n);
    println!("vpl_throughput: {n} events, single thread");

    let (base_s, base_out) = run_baseline(&events);
    let (fe_s, fe_out) = run_engine(FILTER_EMIT, &events);
    assert_eq!(base_out, fe_out, "engine and baseline disagree");
    let (fs_s, _) = run_engine(FILTER_SELECT, &events);
    let rate = |s: f64| n as f64 / s;
    println!(
        "  baseline Rust loop   : {:>12.0} events/s ({} outputs)",
        rate(base_s),
        base_out
    );
    println!(
        "  filter + emit        : {:>12.0} events/s ({} outputs)",
        rate(fe_s),
        fe_out
    );
    println!("  filter + select      : {:>12.0} events/s", rate(fs_s));
    println!(
        "  engine / baseline    : {:>12.2} (filter + emit time ratio: {:.2}x slower)",
        base_s / fe_s,
        fe_s / base_s
    );

    let tiles: Vec<Event> = (0..4)
        .map(|i| {
            let fields = vec![
                (Arc::from("x_off"), Value::Int((i % 4) * 250)),
                (Arc::from("y_off"), Value::Int(250)),
            ];
            Event::new("ComputeTile", 0, fields)
        })
        .collect();
    let (mb_s, pixels) = run_engine(MANDELBROT, &tiles);
    println!(
        "  mandelbrot .process  : {:>12.0} pixels/s ({} pixels, 4 tiles of 250x250, max_iter 256, {:.2}s)",
        pixels as f64 / mb_s,
        pixels,
        mb_s
    );
}
