//! Golden tests: every `tests/golden/<case>.vpl` is compiled and run over `<case>.evt` (if any).
//! The outputs (JSON lines, plus `# error: …` lines for runtime errors, in order) must equal
//! `<case>.jsonl`; a program that does not compile must produce exactly `<case>.err` (rendered
//! diagnostics). A first line `# options: step_budget=N` sets engine options.
//! `UPDATE_GOLDEN=1 cargo test -p varpulis-runtime --test golden` rewrites the expected files
//! (review the diff by hand: a golden file that records a bug is worthless).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use varpulis_runtime::{evt, Engine, EngineOptions, PrintTarget, Value};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn options_for(src: &str, case: &str) -> EngineOptions {
    let mut opts = EngineOptions {
        file_name: format!("{case}.vpl"),
        print: PrintTarget::Buffer,
        ..EngineOptions::default()
    };
    if let Some(line) = src
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# options:"))
    {
        for kv in line.split_whitespace() {
            if let Some(v) = kv.strip_prefix("step_budget=") {
                opts.step_budget = v.parse().unwrap();
            }
            if let Some(v) = kv.strip_prefix("max_runs=") {
                opts.max_sequence_runs = v.parse().unwrap();
            }
        }
    }
    opts
}

/// Runs one case; returns (expected-file extension, actual text).
fn run_case(dir: &Path, case: &str) -> (&'static str, String) {
    let src = std::fs::read_to_string(dir.join(format!("{case}.vpl"))).unwrap();
    let mut engine = match Engine::compile(&src, &options_for(&src, case)) {
        Ok(e) => e,
        Err(e) => return ("err", e.rendered),
    };
    let evt_path = dir.join(format!("{case}.evt"));
    let text = std::fs::read_to_string(&evt_path).unwrap_or_default();
    // `# options: order=file` replays the events in file order (arrival order, event times
    // possibly going backwards), as `varpulis run` does for programs with `.watermark`.
    let file_order = src
        .lines()
        .next()
        .is_some_and(|l| l.starts_with("# options:") && l.contains("order=file"));
    let parsed = if file_order {
        evt::parse_evt_in_file_order(&text)
    } else {
        evt::parse_evt(&text)
    };
    let events = match parsed {
        Ok(evs) => evs,
        Err(e) => return ("jsonl", format!("# evt error: {e}\n")),
    };
    let mut actual = String::new();
    let mut out = Vec::new();
    // Timers tick in event time: anchored at the file's start, advanced to each event's time.
    let mut clock = 0i64;
    engine.advance_time(clock, &mut out);
    report(&mut engine, &out, &mut actual);
    for e in &events {
        out.clear();
        clock = clock.max(e.timestamp_ns);
        engine.advance_time(clock, &mut out);
        engine.process(e, &mut out).unwrap();
        report(&mut engine, &out, &mut actual);
    }
    out.clear();
    engine.finish(&mut out);
    for o in out.iter().filter(|o| o.is_output) {
        actual.push_str(&format!("# finish: {}\n", o.to_json()));
    }
    let s = engine.stats();
    let mut extra = String::new();
    for (name, n) in [
        ("late", s.late_events),
        ("ticks", s.timer_ticks),
        ("dropped", s.runs_dropped),
    ] {
        if n > 0 {
            extra.push_str(&format!(" {name}={n}"));
        }
    }
    actual.push_str(&format!(
        "# stats: in={} out={} errors={} div0={}{extra}\n",
        s.events_in, s.events_out, s.errors, s.division_by_zero
    ));
    ("jsonl", actual)
}

/// Appends the outputs, sink publications, runtime errors and printed lines of one step.
fn report(engine: &mut Engine, out: &[varpulis_runtime::OutputEvent], actual: &mut String) {
    for o in out.iter().filter(|o| o.is_output) {
        actual.push_str(&o.to_json().to_string());
        actual.push('\n');
    }
    for o in out.iter().filter(|o| !o.sinks.is_empty()) {
        for s in o.sinks() {
            actual.push_str(&format!(
                "# to {} {}: {}\n",
                s.connector,
                s.topic().unwrap_or("-"),
                o.event.to_json()
            ));
        }
    }
    for err in engine.take_errors() {
        actual.push_str(&format!("# error: {err}\n"));
    }
    for line in engine.take_printed() {
        actual.push_str(&format!("# print: {line}\n"));
    }
}

#[test]
fn golden_cases() {
    let dir = golden_dir();
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            if p.extension()? != "vpl" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    cases.sort();
    assert!(
        update || cases.len() >= 30,
        "expected at least 30 golden cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let (ext, actual) = run_case(&dir, case);
        let path = dir.join(format!("{case}.{ext}"));
        if update {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "--- {case}.{ext}: mismatch\n--- expected\n{expected}--- actual\n{actual}"
            )),
            Err(_) => failures.push(format!(
                "--- {case}: missing {case}.{ext}; actual:\n{actual}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing golden case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Escape time computed independently of the runtime, with the tutorial's formula.
fn escape_time(cx: f64, cy: f64, max_iter: i64) -> i64 {
    let (mut zr, mut zi) = (0.0f64, 0.0f64);
    for i in 0..max_iter {
        let (r2, i2) = (zr * zr, zi * zi);
        if r2 + i2 > 4.0 {
            return i;
        }
        zi = 2.0 * zr * zi + cy;
        zr = r2 - i2 + cx;
    }
    max_iter
}

#[test]
fn mandelbrot_pixels_match_an_independent_computation() {
    let dir = golden_dir();
    let src = std::fs::read_to_string(dir.join("mandelbrot.vpl")).unwrap();
    let mut engine = Engine::compile(&src, &EngineOptions::default()).unwrap();
    let mut out = Vec::new();
    for e in evt::parse_evt(&std::fs::read_to_string(dir.join("mandelbrot.evt")).unwrap()).unwrap()
    {
        engine.process(&e, &mut out).unwrap();
    }
    assert_eq!(engine.stats().errors, 0);
    // The golden program renders an 8x8 tile at offset (x_off, y_off) of a 1000x1000 image.
    let pixels: Vec<_> = out
        .iter()
        .filter(|o| &*o.event.event_type == "Pixel")
        .collect();
    assert_eq!(pixels.len(), 2 * 64);
    let mut checked = 0;
    for p in pixels {
        let get = |k: &str| p.event.field(k).cloned().unwrap_or(Value::Null);
        let (Value::Int(x), Value::Int(y), Value::Int(it), Value::Bool(div)) =
            (get("x"), get("y"), get("iterations"), get("diverged"))
        else {
            panic!("unexpected pixel {:?}", p.event);
        };
        let cx = -2.0 + (x as f64) * 3.0 / 1000.0;
        let cy = -1.5 + (y as f64) * 3.0 / 1000.0;
        let expected = escape_time(cx, cy, 64);
        assert_eq!(it, expected, "pixel ({x}, {y})");
        assert_eq!(div, expected < 64);
        checked += 1;
    }
    assert_eq!(checked, 128);
}
