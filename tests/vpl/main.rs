//! `varpulis check` and `varpulis run` end to end on Tier 3 programs: imports (relative paths,
//! diagnostics in the imported file, cycles, depth), template `for` expansion, `.print` side
//! output, event files whose offsets go backwards (late events summarised on stderr), timers
//! ticking in the file's time; streaming replay (`replay.rs`).

#![allow(clippy::unwrap_used)]

mod replay;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_varpulis");

/// A fresh directory with the given files.
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn varpulis(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn imports_are_relative_to_the_importing_file() {
    let d = dir_with(&[
        ("main.vpl", "import \"lib/types.vpl\"\nstream Hot = Reading .where(is_hot(temp)) .emit(s: sensor)\n"),
        ("lib/types.vpl", "import \"funcs.vpl\"\nevent Reading:\n    sensor: str\n    temp: float\n"),
        ("lib/funcs.vpl", "fn is_hot(t: float) -> bool:\n    return t > 80.0\n"),
        ("ev.evt", "Reading { sensor: \"a\", temp: 90.0 }\nReading { sensor: \"b\", temp: 10.0 }\n"),
    ]);
    let out = varpulis(d.path(), &["check", "main.vpl"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "",
        "no warnings: Reading is declared in the import"
    );
    let out = varpulis(d.path(), &["run", "main.vpl", "--events", "ev.evt"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "{\"event_type\":\"Hot\",\"timestamp\":\"1970-01-01T00:00:00Z\",\"fields\":{\"s\":\"a\"}}\n"
    );
}

#[test]
fn diagnostics_point_into_the_imported_file() {
    let d = dir_with(&[
        ("main.vpl", "import \"lib.vpl\"\n"),
        (
            "lib.vpl",
            "event X:\n    a: int\n\nstream S = X .where(foo(a))\n",
        ),
    ]);
    let out = varpulis(d.path(), &["check", "main.vpl"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error: unknown function `foo`"), "{err}");
    assert!(
        err.contains("--> ./lib.vpl:4:21") || err.contains("lib.vpl:4:21"),
        "{err}"
    );
    assert!(err.contains("4 | stream S = X .where(foo(a))"), "{err}");
}

#[test]
fn import_cycles_depth_and_missing_files_are_errors_with_positions() {
    let d = dir_with(&[
        ("a.vpl", "event A:\n    x: int\nimport \"b.vpl\"\n"),
        ("b.vpl", "import \"a.vpl\"\n"),
    ]);
    let err = text(&varpulis(d.path(), &["check", "a.vpl"]).stderr);
    assert!(
        err.contains("error: import cycle: a.vpl -> b.vpl -> a.vpl"),
        "{err}"
    );
    assert!(err.contains("b.vpl:1:8"), "{err}");

    // 20 files each importing the next: deeper than 16.
    let mut files: Vec<(String, String)> = (0..20)
        .map(|i| (format!("f{i}.vpl"), format!("import \"f{}.vpl\"\n", i + 1)))
        .collect();
    files.push(("f20.vpl".into(), "event E:\n    x: int\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let d = dir_with(&refs);
    let err = text(&varpulis(d.path(), &["check", "f0.vpl"]).stderr);
    assert!(
        err.contains("imports nested more than 16 files deep"),
        "{err}"
    );

    let d = dir_with(&[("m.vpl", "import \"nope.vpl\"\n")]);
    let err = text(&varpulis(d.path(), &["check", "m.vpl"]).stderr);
    assert!(
        err.contains("cannot read") && err.contains("m.vpl:1:8"),
        "{err}"
    );
}

#[test]
fn template_for_expands_declarations_with_the_loop_value() {
    let d = dir_with(&[
        (
            "t.vpl",
            "for i in 1..=3:\n    context c{i}\n    stream Zone{i} = Reading .context(c{i}) .where(zone == {i}) .emit(zone: zone, tag: \"z{i}\")\n",
        ),
        ("ev.evt", "Reading { zone: 2 }\nReading { zone: 3 }\nReading { zone: 9 }\n"),
    ]);
    let out = varpulis(d.path(), &["run", "t.vpl", "--events", "ev.evt"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("\"event_type\":\"Zone2\",\"timestamp\":\"1970-01-01T00:00:00Z\",\"fields\":{\"zone\":2,\"tag\":\"z2\"}"), "{stdout}");
    assert!(stdout.contains("\"event_type\":\"Zone3\""), "{stdout}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");

    // An error in the template body points at the template's line.
    let d = dir_with(&[(
        "t.vpl",
        "for i in 0..2:\n    stream S{i} = A .where(nosuch{i}(x))\n",
    )]);
    let err = text(&varpulis(d.path(), &["check", "t.vpl"]).stderr);
    assert!(
        err.contains("unknown function `nosuch0`") && err.contains("t.vpl:2:"),
        "{err}"
    );

    let d = dir_with(&[(
        "t.vpl",
        "for i in 0..100000:\n    stream S{i} = A .emit()\n",
    )]);
    let err = text(&varpulis(d.path(), &["check", "t.vpl"]).stderr);
    assert!(err.contains("exceeds the limit of 10000"), "{err}");
}

#[test]
fn print_lines_are_plain_text_before_the_json_lines_of_their_event() {
    let d = dir_with(&[
        ("p.vpl", "stream S = A .print(\"saw\", v) .emit(v: v)\n"),
        ("ev.evt", "A { v: 1 }\nA { v: 2 }\n"),
    ]);
    let out = varpulis(d.path(), &["run", "p.vpl", "--events", "ev.evt"]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0], "[S] saw 1");
    assert!(lines[1].starts_with('{'));
    assert_eq!(lines[2], "[S] saw 2");
    // Consumers filter JSON lines by their first character.
    assert!(lines
        .iter()
        .filter(|l| !l.starts_with('{'))
        .all(|l| l.starts_with('[')));
}

#[test]
fn offsets_going_backwards_are_late_events_for_watermarked_programs() {
    let d = dir_with(&[
        (
            "w.vpl",
            "stream W = M .watermark(out_of_order: 1s) .window(5s) .aggregate(n: count()) .emit()\n",
        ),
        ("ev.evt", "@1s M {}\n@7s M {}\n@2s M {}\n@3s M {}\n@6500ms M {}\n"),
    ]);
    let out = varpulis(d.path(), &["run", "w.vpl", "--events", "ev.evt", "--stats"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    // [0,5) fires at the 7s event (watermark 6s) with one event; the 2s and 3s events are late.
    assert!(
        stdout.starts_with(
            "{\"event_type\":\"W\",\"timestamp\":\"1970-01-01T00:00:05Z\",\"fields\":{\"n\":1}}\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"timestamp\":\"1970-01-01T00:00:10Z\",\"fields\":{\"n\":2}"),
        "{stdout}"
    );
    let err = text(&out.stderr);
    assert!(err.contains("2 late event(s) dropped"), "{err}");
    assert!(err.contains("late: 2"), "{err}");
    // Sorted by offset (`--order time`), nothing is late.
    let out = varpulis(
        d.path(),
        &["run", "w.vpl", "--events", "ev.evt", "--order", "time"],
    );
    assert!(!text(&out.stderr).contains("late"), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"fields\":{\"n\":3}"));
}

#[test]
fn timers_tick_in_the_files_time() {
    let d = dir_with(&[
        (
            "t.vpl",
            "stream T = timer(2s, initial_delay: 1s) .emit(at: timestamp)\n",
        ),
        ("ev.evt", "@4500ms Other {}\n"),
    ]);
    let out = varpulis(d.path(), &["run", "t.vpl", "--events", "ev.evt"]);
    let stdout = text(&out.stdout);
    let ats: Vec<&str> = stdout
        .lines()
        .map(|l| l.split("\"at\":").nth(1).unwrap().trim_end_matches("}}"))
        .collect();
    assert_eq!(ats, ["1000", "3000"], "{stdout}");
    let _ = path(&d, "t.vpl");
}
