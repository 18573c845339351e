//! `varpulis run` over a generated `.evt` file of sensor readings (issue 22): the whole process,
//! wall time, events/s and peak RSS, next to reading the same file alone in this process (the
//! baseline of the ratio) and to reading and parsing it with the replay's own reader
//! (`EvtStream` on this thread, the second baseline; `evt_pipe::ParsedEvents`, the reader
//! thread `varpulis run` uses, the third). Outputs go to /dev/null. The child's CPU time (user +
//! system, both threads) is printed next to its wall time.
//!
//! `cargo bench --bench run_replay` (1,000,000 events; `RUN_REPLAY_EVENTS=10000000` for ten
//! million). Program: `SensorReading .where(temperature > 50.0) .emit(sensor_id, temperature)`.

#[path = "common/proc_stats.rs"]
#[allow(dead_code)]
mod proc_stats;

use proc_stats::env_usize;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::time::Instant;
use varpulis_runtime::evt_pipe::{Batch, ParsedEvents};
use varpulis_runtime::evt_stream::{EvtStream, ReplayOrder};

const BIN: &str = env!("CARGO_BIN_EXE_varpulis");

/// Writes `n` readings: `@<i>ms SensorReading { sensor_id: "S0042", temperature: 51.25, humidity: 40.5 }`.
fn generate(path: &std::path::Path, n: usize) -> std::io::Result<u64> {
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let t = (x % 10_000) as f64 / 100.0;
        let h = ((x >> 20) % 10_000) as f64 / 100.0;
        writeln!(
            w,
            "@{i}ms SensorReading {{ sensor_id: \"S{:04}\", temperature: {t:.2}, humidity: {h:.2} }}",
            i % 1000
        )?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Seconds of a `timeval`.
fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Runs `varpulis run` and returns (wall seconds, CPU seconds, peak RSS in KiB, exit status).
fn run(dir: &std::path::Path, events: &std::path::Path) -> (f64, f64, i64, i32) {
    let started = Instant::now();
    let child = Command::new(BIN)
        .current_dir(dir)
        .args(["run", "hot.vpl", "--events"])
        .arg(events)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn varpulis");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; the pointers are to live locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    std::mem::forget(child);
    assert_eq!(r, pid, "wait4 failed");
    let cpu = self::secs(usage.ru_utime) + self::secs(usage.ru_stime);
    (secs, cpu, usage.ru_maxrss, libc::WEXITSTATUS(status))
}

fn main() {
    let n = env_usize("RUN_REPLAY_EVENTS", 1_000_000);
    let dir = std::env::temp_dir().join(format!("varpulis-run-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("hot.vpl"),
        "event SensorReading:\n    sensor_id: str\n    temperature: float\n    humidity: float\n\
         stream Hot = SensorReading .where(temperature > 50.0) .emit(sensor_id, temperature)\n",
    )
    .expect("program");
    let events = dir.join("sensors.evt");
    let bytes = generate(&events, n).expect("event file");
    // Baseline: read the file line by line in this process.
    let started = Instant::now();
    let mut lines = 0usize;
    let mut r = BufReader::with_capacity(256 * 1024, std::fs::File::open(&events).expect("open"));
    let mut line = String::new();
    while r.read_line(&mut line).expect("read") > 0 {
        lines += 1;
        line.clear();
    }
    let read_secs = started.elapsed().as_secs_f64();
    assert_eq!(lines, n);
    // Second baseline: read and parse every event (the replay's reader, in this process).
    let started = Instant::now();
    let input = std::fs::File::open(&events).expect("open");
    let mut stream = EvtStream::new(input, ReplayOrder::Time { window: 10_000 });
    let mut parsed = 0usize;
    while let Some(ev) = stream.next() {
        stream.recycle(ev.expect("event line"));
        parsed += 1;
    }
    let parse_secs = started.elapsed().as_secs_f64();
    assert_eq!(parsed, n);
    // Third baseline: the reader thread of `varpulis run`, batches handed straight back.
    let started = Instant::now();
    let input = std::fs::File::open(&events).expect("open");
    let mut piped =
        ParsedEvents::spawn(input, ReplayOrder::Time { window: 10_000 }).expect("spawn");
    let mut parsed = 0usize;
    loop {
        match piped.next_batch() {
            Batch::Events(b) => {
                parsed += b.len();
                piped.recycle(b);
            }
            Batch::End(r) => {
                r.expect("event line");
                break;
            }
        }
    }
    let pipe_secs = started.elapsed().as_secs_f64();
    assert_eq!(parsed, n);
    let runs = env_usize("RUN_REPLAY_ROUNDS", 3);
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut peak = 0;
    for _ in 0..runs {
        let (secs, cpu, rss_kib, code) = run(&dir, &events);
        assert_eq!(code, 0, "varpulis run failed");
        walls.push(secs);
        cpus.push(cpu);
        peak = peak.max(rss_kib);
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    let cpu = cpus[cpus.len() / 2];
    println!(
        "run_replay: {n} events, {:.1} MB, {runs} runs of `varpulis run` (outputs to /dev/null)",
        bytes as f64 / 1e6
    );
    println!(
        "  reading the file alone : {read_secs:.3} s ({:.0} lines/s)",
        n as f64 / read_secs
    );
    println!(
        "  varpulis run (median)  : {median:.3} s wall, {:.0} events/s (min {:.3} s, max {:.3} s)",
        n as f64 / median,
        walls[0],
        walls[walls.len() - 1]
    );
    println!(
        "  varpulis run CPU       : {cpu:.3} s user + system (median), {:.0} events per CPU-second",
        n as f64 / cpu
    );
    println!(
        "  parsing the file alone : {parse_secs:.3} s ({:.0} events/s)",
        n as f64 / parse_secs
    );
    println!(
        "  parsing, reader thread : {pipe_secs:.3} s ({:.0} events/s)",
        n as f64 / pipe_secs
    );
    println!("  peak RSS               : {:.1} MiB", peak as f64 / 1024.0);
    println!("  run / read-alone time  : {:.2}x", median / read_secs);
    println!("  run / parse-alone time : {:.2}x", median / parse_secs);
    println!("  run / reader-thread    : {:.2}x", median / pipe_secs);
    let _ = std::fs::remove_dir_all(&dir);
}
