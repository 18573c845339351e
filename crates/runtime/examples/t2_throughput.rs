//! Tier 2 throughput (prints figures, asserts nothing): a tumbling 1s window with `avg` per key
//! over 1,000 keys, fed with events generated on the fly (generation time is included).
//!
//! `cargo run --release -p varpulis-runtime --example t2_throughput -- [events]` (default 10M).
//! Peak RSS is read from `/proc/self/status` (`VmHWM`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;
use varpulis_runtime::{Engine, EngineOptions, Event, Value};

const WINDOWED_AVG: &str = "stream Stats = Reading .partition_by(sensor) .window(1s) \
    .aggregate(n: count(), mean: avg(temp)) .emit()";

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU time of this process in seconds (`/proc/self/stat`, 100 Hz ticks).
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let mut engine = match Engine::compile(WINDOWED_AVG, &EngineOptions::default()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench program does not compile:\n{e}");
            std::process::exit(1);
        }
    };
    let sensors: Vec<Arc<str>> = (0..1000).map(|i| Arc::from(format!("s{i}"))).collect();
    let (k_sensor, k_temp): (Arc<str>, Arc<str>) = (Arc::from("sensor"), Arc::from("temp"));
    let ty: Arc<str> = Arc::from("Reading");
    let mut out = Vec::with_capacity(1024);
    let mut produced = 0u64;
    let cpu_start = cpu_secs();
    let start = Instant::now();
    for i in 0..n {
        let temp = (i.wrapping_mul(2_654_435_761) % 10_000) as f64 / 100.0;
        // 100,000 events per second of event time: each 1s window holds 100 events per key.
        let e = Event {
            event_type: ty.clone(),
            timestamp_ns: i as i64 * 10_000,
            fields: Arc::new(vec![
                (
                    k_sensor.clone(),
                    Value::Str(sensors[(i % 1000) as usize].clone()),
                ),
                (k_temp.clone(), Value::Float(temp)),
            ]),
        };
        out.clear();
        if engine.process(&e, &mut out).is_err() {
            eprintln!("engine fault");
            std::process::exit(1);
        }
        produced += out.len() as u64;
        black_box(&out);
    }
    out.clear();
    engine.finish(&mut out);
    produced += out.len() as u64;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs().zip(cpu_start).map(|(b, a)| b - a);
    println!("t2_throughput: {n} events, 1,000 keys, single thread");
    println!(
        "  tumbling 1s avg per key : {:>12.0} events/s ({produced} window results, {secs:.2}s)",
        n as f64 / secs
    );
    if let Some(cpu) = cpu.filter(|c| *c > 0.0) {
        println!(
            "  per CPU second          : {:>12.0} events/s ({cpu:.2}s CPU; wall time includes waiting on a loaded machine)",
            n as f64 / cpu
        );
    }
    match vm_hwm_kib() {
        Some(kib) => println!("  peak RSS (VmHWM)        : {:>12} KiB", kib),
        None => println!("  peak RSS (VmHWM)        : unavailable"),
    }
}
