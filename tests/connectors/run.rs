//! `varpulis run` with file and console sinks, and `varpulis check` on connector mistakes.

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_varpulis");

/// `varpulis run p.vpl --events e.evt` with both files written in `dir`.
fn run(dir: &std::path::Path, program: &str, events: &str) -> std::process::Output {
    let vpl = dir.join("p.vpl");
    std::fs::write(&vpl, program).unwrap();
    let evt = dir.join("e.evt");
    std::fs::write(&evt, events).unwrap();
    Command::new(BIN)
        .args([
            "run",
            vpl.to_str().unwrap(),
            "--events",
            evt.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

#[test]
fn run_writes_file_sinks_and_prints_console_sinks_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hot.jsonl");
    let program = format!(
        "connector F = file(path: \"{}\", rotate_bytes: 100)\nconnector C = console()\n\
         stream Hot = Reading .where(temp > 50) .emit(id: id, temp: temp) .to(F) .to(C)\n\
         stream Raw = Reading .where(temp < 0) .to(C)\n",
        out.display()
    );
    let o = run(
        dir.path(),
        &program,
        "Reading { id: \"a\", temp: 70 }\nReading { id: \"b\", temp: 10 }\n\
         Reading { id: \"c\", temp: 90 }\nReading { id: \"d\", temp: -5 }\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Output events once each; the pass-through `Raw` event only because of `.to(C)`.
    let types: Vec<&str> = stdout
        .iter()
        .map(|v| v["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Hot", "Hot", "Reading"], "{stdout:?}");
    assert_eq!(stdout[2]["fields"]["id"], "d");
    // Two lines of ~70 bytes with rotate_bytes 100: one per file, the older rotated away.
    let rotated = std::fs::read_to_string(format!("{}.1", out.display())).unwrap();
    let current = std::fs::read_to_string(&out).unwrap();
    let a: Value = serde_json::from_str(rotated.trim()).unwrap();
    let c: Value = serde_json::from_str(current.trim()).unwrap();
    assert_eq!(
        (a["event_type"].as_str(), a["id"].as_str()),
        (Some("Hot"), Some("a"))
    );
    assert_eq!(c["id"], "c");
    assert_eq!(c["temp"], 90);
}

#[test]
fn run_refuses_a_file_sink_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        "connector F = file(path: \"/nonexistent-dir/q/o.jsonl\")\nstream S = A .emit(x: x) .to(F)\n",
        "A { x: 1 }\n",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot open"));
}

#[test]
fn check_reports_connector_mistakes_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let vpl = dir.path().join("p.vpl");
    std::fs::write(
        &vpl,
        "connector H = http(url: \"http://x\", timout: 5s, batch: \"big\")\n\
         connector F = file(rotate_bytes: 10)\n\
         stream S = A .emit(x: x) .to(H) .to(F)\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["check", vpl.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for needle in [
        "1:37",
        "unknown HTTP parameter `timout`",
        "did you mean `timeout`?",
        "1:56",
        "HTTP parameter `batch` must be a positive integer",
        "2:1",
        "file connector `F` needs `path`",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
}
