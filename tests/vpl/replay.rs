//! Streaming `varpulis run` (issue 22): a file larger than every buffer, offsets out of order
//! within and beyond the reorder window, JSON lines, a bad line after good ones, and SIGINT
//! flushing what was computed.

use super::{dir_with, text, varpulis, BIN};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `i` of every output line.
fn outputs(stdout: &str) -> Vec<i64> {
    stdout
        .lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            j["fields"]["i"].as_i64().unwrap()
        })
        .collect()
}

#[test]
fn a_file_larger_than_the_buffers_replays_sorted_within_the_window() {
    // 60,000 events (~3 MB, beyond the 256 KiB buffers); every 50th is written 40 lines late
    // (its offset smaller than the 40 before it), every 7th is a JSON line.
    let n = 60_000i64;
    let mut lines: Vec<(i64, String)> = (0..n)
        .map(|i| {
            let line = if i % 7 == 0 {
                format!("@{i} {{\"event_type\": \"R\", \"data\": {{\"i\": {i}, \"pad\": \"xxxxxxxxxxxxxxxx\"}}}}")
            } else {
                format!("@{i} R {{ i: {i}, pad: \"xxxxxxxxxxxxxxxx\" }}")
            };
            (i, line)
        })
        .collect();
    for k in (100..n as usize).step_by(50) {
        let moved = lines.remove(k - 40);
        lines.insert(k, moved);
    }
    let file: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    assert!(file.len() > 2_000_000);
    let d = dir_with(&[
        ("p.vpl", "stream S = R .where(i % 3 == 0) .emit(i: i)\n"),
        ("ev.evt", &file),
    ]);
    let out = varpulis(d.path(), &["run", "p.vpl", "--events", "ev.evt"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = outputs(&text(&out.stdout));
    let expected: Vec<i64> = (0..n).filter(|i| i % 3 == 0).collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "not replayed in offset order");
    assert!(
        !text(&out.stderr).contains("displaced"),
        "{}",
        text(&out.stderr)
    );
    // File order keeps the displacement.
    let out = varpulis(
        d.path(),
        &["run", "p.vpl", "--events", "ev.evt", "--order", "file"],
    );
    let got = outputs(&text(&out.stdout));
    assert_eq!(got.len(), expected.len());
    assert!(got != expected);
}

#[test]
fn offsets_displaced_beyond_the_window_come_late_and_are_counted() {
    let mut file = String::new();
    for i in 10..30 {
        file.push_str(&format!("@{i} R {{ i: {i} }}\n"));
    }
    file.push_str("@0 R { i: 0 }\n@5 R { i: 5 }\n");
    let d = dir_with(&[("p.vpl", "stream S = R .emit(i: i)\n"), ("ev.evt", &file)]);
    let out = varpulis(
        d.path(),
        &[
            "run",
            "p.vpl",
            "--events",
            "ev.evt",
            "--reorder-window",
            "4",
        ],
    );
    assert!(out.status.success());
    let got = outputs(&text(&out.stdout));
    assert_eq!(got.len(), 22, "nothing is dropped");
    assert!(got.windows(2).any(|w| w[1] < w[0]));
    let err = text(&out.stderr);
    assert!(
        err.contains("2 event(s) displaced by more than 4 lines"),
        "{err}"
    );
    // The default window sorts them.
    let out = varpulis(d.path(), &["run", "p.vpl", "--events", "ev.evt"]);
    let got = outputs(&text(&out.stdout));
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);
}

#[test]
fn a_bad_line_stops_the_replay_after_the_good_ones() {
    let d = dir_with(&[
        ("p.vpl", "stream S = R .emit(i: i)\n"),
        (
            "ev.evt",
            "R { i: 1 }\nR { i: 2 }\nR { i: \"open }\nR { i: 4 }\n",
        ),
    ]);
    let out = varpulis(
        d.path(),
        &["run", "p.vpl", "--events", "ev.evt", "--order", "file"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(outputs(&text(&out.stdout)), [1, 2]);
    assert!(
        text(&out.stderr).contains("line 3"),
        "{}",
        text(&out.stderr)
    );
}

/// Reads stdout lines of `child` until `n` have come (or 60 s passed).
fn read_lines(r: &mut impl BufRead, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    while lines.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    lines
}

fn sigint(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn sigint_while_waiting_for_input_exits_with_every_output_written() {
    let d = dir_with(&[("p.vpl", "stream S = R .emit(i: i)\n")]);
    let mut child = Command::new(BIN)
        .current_dir(d.path())
        .args(["run", "p.vpl", "--events", "-", "--order", "file"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    for i in 0..3 {
        writeln!(stdin, "R {{ i: {i} }}").unwrap();
    }
    stdin.flush().unwrap();
    // The outputs arrive while the replay waits for more input (flushed before the read).
    let got = read_lines(&mut stdout, 3);
    assert_eq!(got.len(), 3, "{got:?}");
    sigint(child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    drop(stdin);
}

#[test]
fn sigint_mid_replay_flushes_what_was_computed() {
    // A slow program over a long file: interrupted while processing.
    let mut file = String::new();
    for i in 0..200_000 {
        file.push_str(&format!("R {{ i: {i} }}\n"));
    }
    let d = dir_with(&[
        (
            "p.vpl",
            "fn slow(i: int) -> int:\n    var s = 0\n    for k in 0..3000:\n        s := s + k\n    return i\n\
             stream S = R .emit(i: slow(i))\n",
        ),
        ("ev.evt", &file),
    ]);
    let mut child = Command::new(BIN)
        .current_dir(d.path())
        .args(["run", "p.vpl", "--events", "ev.evt"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once the first outputs were flushed (the handler is installed by then).
    let mut stdout = child.stdout.take().unwrap();
    let (first, got_first) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    let _ = first.send(());
                }
            }
        }
        all
    });
    got_first.recv_timeout(Duration::from_secs(60)).unwrap();
    sigint(child.id());
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stdout = reader.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let n: usize = err
        .split("interrupted after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    let got = outputs(&text(&stdout));
    assert!(n > 0 && n < 200_000, "{n}");
    // One output per event processed, every line complete, in order.
    assert_eq!(got, (0..n as i64).collect::<Vec<_>>());
}
