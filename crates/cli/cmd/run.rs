//! `varpulis run FILE.vpl --events FILE.evt|-`: run a program over an event file and print output
//! events as JSON lines (VPL.md §13), in emission order.
//!
//! * Replay order: by offset (stable), or in file order (recorded arrivals, event times possibly
//!   going backwards) for programs that declare `.watermark`/`.allowed_lateness`
//!   (`--order time|file|auto`, default `auto`).
//! * Timers tick in event time: anchored at the file's start (offset 0) and advanced to each
//!   event's time (the largest seen so far) before the event.
//! * `.print` lines go to stdout as plain text (never starting with `{`), before the JSON lines
//!   of the same event.
//! * Compile errors and unreadable/unparsable event files print to stderr and exit 1. Runtime
//!   errors on single events are printed to stderr as warnings and processing continues. Late
//!   events dropped are summarised on stderr; `--stats` prints every counter and the throughput.
//! * `file(...)` and `console()` connectors are opened (`run_sinks`, docs/connectors.md);
//!   other connectors are not.

use anyhow::Context;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use varpulis_runtime::{evt, Engine, EngineOptions, PrintTarget, DEFAULT_STEP_BUDGET};

/// In which order `varpulis run` replays the event file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// By offset (stable): event time never goes backwards.
    Time,
    /// As written: the file records arrival order.
    File,
    /// `file` for programs with `.watermark`/`.allowed_lateness`, else `time`.
    Auto,
}

/// Flags of `varpulis run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The VPL program to run.
    pub file: PathBuf,
    /// Event file (`.evt` format or JSON lines); `-` reads standard input.
    #[arg(long, short = 'e')]
    pub events: String,
    /// Print event counts and events/s to stderr when done.
    #[arg(long)]
    pub stats: bool,
    /// Loop steps one stream may spend on one event before that event is aborted.
    #[arg(long, default_value_t = DEFAULT_STEP_BUDGET)]
    pub step_budget: u64,
    /// Replay order of the event file.
    #[arg(long, value_enum, default_value_t = Order::Auto)]
    pub order: Order,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let file_name = args.file.display().to_string();
    let opts = EngineOptions {
        step_budget: args.step_budget,
        file_name,
        print: PrintTarget::Buffer,
        loader: Some(Arc::new(varpulis_vpl::FsLoader)),
        ..EngineOptions::default()
    };
    let mut engine = match Engine::compile(&source, &opts) {
        Ok(e) => e,
        Err(e) => {
            eprint!("{}", e.rendered);
            return Ok(ExitCode::from(1));
        }
    };
    let mut sinks = match super::run_sinks::RunSinks::open(engine.connectors()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    if !engine.warnings().is_empty() {
        eprintln!(
            "{}",
            varpulis_vpl::render_all(&source, &opts.file_name, engine.warnings())
        );
    }
    let text = if args.events == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read events from stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.events)
            .with_context(|| format!("cannot read `{}`", args.events))?
    };
    let file_order = match args.order {
        Order::File => true,
        Order::Time => false,
        Order::Auto => engine.uses_watermark(),
    };
    let parsed = if file_order {
        evt::parse_evt_in_file_order(&text)
    } else {
        evt::parse_evt(&text)
    };
    let events = match parsed {
        Ok(evs) => evs,
        Err(e) => {
            eprintln!("error: {}: {e}", args.events);
            return Ok(ExitCode::from(1));
        }
    };

    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut out = Vec::new();
    let started = Instant::now();
    // Timers are anchored at the file's start and tick as its time advances.
    let mut clock = 0i64;
    engine.advance_time(clock, &mut out);
    write_step(&mut w, &mut engine, &mut sinks, &out)?;
    for event in &events {
        out.clear();
        clock = clock.max(event.timestamp_ns);
        engine.advance_time(clock, &mut out);
        engine.process(event, &mut out)?;
        write_step(&mut w, &mut engine, &mut sinks, &out)?;
    }
    out.clear();
    engine.finish(&mut out);
    write_step(&mut w, &mut engine, &mut sinks, &out)?;
    w.flush()?;
    sinks.finish()?;
    let s = engine.stats();
    if s.late_events > 0 {
        eprintln!(
            "{} late event(s) dropped (older than the watermark minus the allowed lateness)",
            s.late_events
        );
    }
    if s.timer_ticks_skipped > 0 {
        eprintln!(
            "{} timer tick(s) skipped (time jumped)",
            s.timer_ticks_skipped
        );
    }
    if args.stats {
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            s.events_in as f64 / secs
        } else {
            0.0
        };
        eprintln!(
            "events in: {}, outputs: {}, errors: {} (budgets: {}), divisions by zero: {}, late: {}, timer ticks: {}, pattern runs dropped: {}, {:.3}s, {:.0} events/s",
            s.events_in,
            s.events_out,
            s.errors,
            s.budget_exceeded,
            s.division_by_zero,
            s.late_events,
            s.timer_ticks,
            s.runs_dropped,
            secs,
            rate
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes what one step produced: `.print` lines, output events as JSON lines, runtime errors
/// (stderr).
fn write_step(
    w: &mut impl Write,
    engine: &mut Engine,
    sinks: &mut super::run_sinks::RunSinks,
    out: &[varpulis_runtime::OutputEvent],
) -> anyhow::Result<()> {
    sinks.write(w, out)?;
    for line in engine.take_printed() {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    for o in out.iter().filter(|o| o.is_output) {
        serde_json::to_writer(&mut *w, &o.to_json())?;
        w.write_all(b"\n")?;
    }
    for err in engine.take_errors() {
        eprintln!("warning: runtime error: {err}");
    }
    Ok(())
}
