//! The spec's example programs (tests/programs/*.vpl) parse and check cleanly, and the Tier 2
//! examples parse but are reported as not supported yet.

use varpulis_vpl::ast::{ExprKind, Item, OpKind, StmtKind};
use varpulis_vpl::{check, parse, CheckOptions};

fn program(name: &str) -> String {
    let path = format!("{}/tests/programs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn assert_clean(name: &str) -> varpulis_vpl::Checked {
    let src = program(name);
    match check(&src, &CheckOptions::default()) {
        Ok(c) => c,
        Err(d) => panic!("{}", varpulis_vpl::render_all(&src, name, &d)),
    }
}

#[test]
fn mandelbrot_worker_from_the_tutorial() {
    let checked = assert_clean("mandelbrot_worker_0.vpl");
    let p = &checked.program;
    assert_eq!(p.contexts().count(), 4);
    assert_eq!(p.functions().count(), 2);
    assert_eq!(p.streams().count(), 4);
    let tile = p
        .streams()
        .next()
        .map(|s| s.ops.iter().map(|o| o.kind()).collect::<Vec<_>>());
    assert_eq!(
        tile,
        Some(vec![OpKind::Context, OpKind::Process, OpKind::To])
    );
    // compute_tile: for px / for py / let, let, let, emit
    let f = p.functions().nth(1).map(|f| &f.body.stmts[0].kind);
    let Some(StmtKind::For { body, .. }) = f else {
        panic!("expected a for loop")
    };
    let Some(StmtKind::For { body, .. }) = body.stmts.first().map(|s| &s.kind) else {
        panic!("expected a nested for loop")
    };
    assert_eq!(body.stmts.len(), 4);
    assert!(
        matches!(&body.stmts[3].kind, StmtKind::Emit { event_type, args } if event_type.name == "Pixel" && args.len() == 4)
    );
    // Undeclared ComputeTileNN sources are warnings only.
    assert_eq!(checked.warnings.len(), 4);
}

#[test]
fn pump_examples_from_the_spec() {
    let checked = assert_clean("pumps.vpl");
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    let streams: Vec<_> = checked
        .program
        .streams()
        .map(|s| s.name.name.clone())
        .collect();
    assert_eq!(streams, ["Hot", "Readings", "Alerts", "Clean", "Busy"]);
}

#[test]
fn escape_time_example_from_the_spec() {
    let checked = assert_clean("escape_time.vpl");
    assert_eq!(checked.program.functions().count(), 2);
}

#[test]
fn every_tier1_construct() {
    let checked = assert_clean("everything.vpl");
    let p = &checked.program;
    assert!(p
        .items
        .iter()
        .any(|i| matches!(i, Item::Assign(a) if a.target.name == "total")));
    let big = p.streams().next().map(|s| s.ops.len());
    assert_eq!(big, Some(3));
}

#[test]
fn tutorial_one_liners() {
    for src in [
        "stream A = EventA .emit(result: \"from-a\")",
        "stream B = EventB .emit(result: \"ok\")",
        "stream A = X .emit(v: 1)",
        "stream TempAlerts = TemperatureReading .where(temperature > 100) .emit(alert_type: \"HIGH_TEMP\", sensor_id: sensor_id, temperature: temperature)",
        "stream PressureAlerts = PressureReading .where(pressure > 200) .emit(alert_type: \"HIGH_PRESSURE\", sensor_id: sensor_id, pressure: pressure)",
    ] {
        let c = check(src, &CheckOptions::default()).unwrap_or_else(|d| panic!("{src}: {d:?}"));
        assert_eq!(c.warnings.len(), 1, "{src}"); // undeclared source event type
        let emit = c.program.streams().next().and_then(|s| s.ops.last().cloned());
        assert!(matches!(emit.map(|o| o.kind()), Some(OpKind::Emit)));
    }
}

#[test]
fn tier2_window_example_parses_and_checks() {
    let src = "stream PumpStats = PumpReading\n    .partition_by(pump)\n    .window(1m)\n    .aggregate(n: count(), hottest: max(inlet_temp), mean_rpm: avg(rpm))\n    .having(n >= 3)\n    .emit(pump: pump, n: n, hottest: hottest, mean_rpm: mean_rpm)\n";
    let (p, d) = parse(src);
    assert!(d.is_empty(), "{d:?}");
    let ops: Vec<_> = p
        .streams()
        .flat_map(|s| s.ops.iter().map(|o| o.kind()))
        .collect();
    assert_eq!(
        ops,
        [
            OpKind::PartitionBy,
            OpKind::Window,
            OpKind::Aggregate,
            OpKind::Having,
            OpKind::Emit
        ]
    );
    let window = p
        .streams()
        .next()
        .and_then(|s| s.ops.get(1).and_then(|o| o.first_positional().cloned()));
    assert!(matches!(
        window.map(|e| e.kind),
        Some(ExprKind::Duration(60_000_000_000))
    ));
    let errs = check(src, &CheckOptions::default())
        .err()
        .unwrap_or_default();
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn takeover_sequence_example_checks() {
    let src = "stream Takeover = Login as lg\n    -> PasswordReset where account == lg.account as pr\n    -> all Transfer where account == lg.account as tx\n    -> Logout where account == lg.account as lo\n    .within(20m)\n    .not(SupportCall where account == lg.account)\n    .emit(account: lg.account, last_amount: tx.amount)\n";
    let (p, d) = parse(src);
    assert!(d.is_empty(), "{d:?}");
    let s = p.streams().next().map(|s| (s.steps.len(), s.ops.len()));
    assert_eq!(s, Some((3, 3)));
    let errs = check(src, &CheckOptions::default())
        .err()
        .unwrap_or_default();
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn rendered_errors_quote_the_line() {
    let src = "stream S = A\n    .where(foo(x) > 1)\n";
    let errs = check(src, &CheckOptions::default())
        .err()
        .unwrap_or_default();
    let out = varpulis_vpl::render_all(src, "pipeline.vpl", &errs);
    assert_eq!(
        out,
        "error: unknown function `foo`\n --> pipeline.vpl:2:12\n  |\n2 |     .where(foo(x) > 1)\n  |            ^^^ help: did you mean `floor`?\n"
    );
}
