//! `varpulis run FILE.vpl --events FILE.evt|-`: run a program over an event file and print output
//! events as JSON lines (VPL.md §13), in emission order.
//!
//! * Streaming: the file (or stdin) is read and parsed on a reader thread (`evt_pipe`: batches
//!   of at most 512 events, at most 4 batches ahead) while this thread runs the engine; outputs
//!   go through one buffered writer, so memory does not grow with the file.
//! * Replay order: by offset (stable) within a reorder window of `--reorder-window` events
//!   (default 10,000; an event displaced further comes late and is counted on stderr), or in
//!   file order (recorded arrivals, event times possibly going backwards) for programs that
//!   declare `.watermark`/`.allowed_lateness` (`--order time|file|auto`, default `auto`).
//! * Timers tick in event time: anchored at the file's start (offset 0) and advanced to each
//!   event's time (the largest seen so far) before the event.
//! * `.print` lines go to stdout as plain text (never starting with `{`), before the JSON lines
//!   of the same event.
//! * Compile errors print to stderr and exit 1; a bad line of the event file stops the replay
//!   with its line number (outputs of the events before it are written) and exits 1. Runtime
//!   errors on single events are printed to stderr as warnings and processing continues. Late
//!   events dropped are summarised on stderr; `--stats` prints every counter and the throughput.
//! * `file(...)` and `console()` connectors are opened (`run_sinks`, docs/connectors.md);
//!   other connectors are not.
//! * SIGINT stops the replay, flushes every output computed so far and exits with 130
//!   (`interrupt.rs`); end of input is not simulated (open windows do not fire).

use super::interrupt::Interrupt;
use anyhow::Context;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use varpulis_runtime::evt_pipe::{self, Batch, ParsedEvents};
use varpulis_runtime::evt_stream::{ReplayOrder, DEFAULT_REORDER_WINDOW};
use varpulis_runtime::{json_out, Engine, EngineOptions, PrintTarget, DEFAULT_STEP_BUDGET};

/// In which order `varpulis run` replays the event file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// By offset (stable) within the reorder window: event time never goes backwards.
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
    /// With `--order time`: events held to sort by offset; an event displaced by more lines is
    /// replayed late (counted on stderr), never dropped.
    #[arg(long, default_value_t = DEFAULT_REORDER_WINDOW)]
    pub reorder_window: usize,
}

/// Output buffer size (the input buffer is `evt_scan::READ_BUFFER`).
const BUFFER: usize = 256 * 1024;

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
    let file_order = match args.order {
        Order::File => true,
        Order::Time => false,
        Order::Auto => engine.uses_watermark(),
    };
    let order = if file_order {
        ReplayOrder::File
    } else {
        ReplayOrder::Time {
            window: args.reorder_window.max(1),
        }
    };
    let interrupt = Interrupt::install();
    // Dynamic dispatch only on buffer refills (every MiB).
    let input: Box<dyn Read + Send> = if args.events == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(&args.events)
                .with_context(|| format!("cannot read `{}`", args.events))?,
        )
    };
    let events = ParsedEvents::spawn(input, order).context("cannot start the event reader")?;
    replay(&args, &mut engine, &mut sinks, events, &interrupt)
}

/// Replays `events` through `engine`, writing outputs as they come.
fn replay(
    args: &Args,
    engine: &mut Engine,
    sinks: &mut super::run_sinks::RunSinks,
    mut events: ParsedEvents,
    interrupt: &Interrupt,
) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::with_capacity(BUFFER, stdout.lock());
    let mut out = Vec::new();
    let started = Instant::now();
    // Timers are anchored at the file's start and tick as its time advances.
    let mut clock = 0i64;
    engine.advance_time(clock, &mut out);
    write_step(&mut w, engine, sinks, &out)?;
    out.clear();
    let mut interrupted = false;
    'replay: loop {
        if interrupt.stop_requested() {
            interrupted = true;
            break;
        }
        let batch = match events.try_next() {
            Some(b) => b,
            None => {
                // Waiting for the reader (a pipe, or parsing behind): flush what was computed
                // first, so a SIGINT while waiting loses nothing.
                w.flush()?;
                if !interrupt.before_read() {
                    interrupted = true;
                    break;
                }
                let b = events.next_batch();
                interrupt.after_read();
                b
            }
        };
        let batch = match batch {
            Batch::Events(batch) => {
                evt_pipe::warm(&batch);
                batch
            }
            Batch::End(Ok(())) => break,
            Batch::End(Err(e)) => {
                w.flush()?;
                sinks.finish()?;
                eprintln!("error: {}: {e}", args.events);
                return Ok(ExitCode::from(1));
            }
        };
        for event in &batch {
            if interrupt.stop_requested() {
                interrupted = true;
                break 'replay;
            }
            clock = clock.max(event.timestamp_ns);
            engine.advance_time(clock, &mut out);
            engine.process(event, &mut out)?;
            write_step(&mut w, engine, sinks, &out)?;
            // Outputs may share the event's fields: drop them first, so the event's field list
            // can be reused by the reader once the batch goes back.
            out.clear();
        }
        events.recycle(batch);
    }
    if !interrupted {
        out.clear();
        engine.finish(&mut out);
        write_step(&mut w, engine, sinks, &out)?;
    }
    w.flush()?;
    sinks.finish()?;
    let s = engine.stats();
    if interrupted {
        eprintln!(
            "interrupted after {} event(s); outputs so far written",
            s.events_in
        );
    }
    if events.late() > 0 {
        eprintln!(
            "{} event(s) displaced by more than {} lines were replayed after later offsets (--reorder-window)",
            events.late(),
            args.reorder_window
        );
    }
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
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
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
        json_out::write_event(w, &o.event)?;
        w.write_all(b"\n")?;
    }
    for err in engine.take_errors() {
        eprintln!("warning: runtime error: {err}");
    }
    Ok(())
}
