//! `varpulis run FILE.vpl --events FILE.evt|-`: run a program over an event file and print output
//! events as JSON lines (VPL.md §13), in emission order.
//!
//! Compile errors and unreadable/unparsable event files print to stderr and exit 1. Runtime errors
//! on single events are printed to stderr as warnings and processing continues. `--stats` prints
//! counters and throughput to stderr at the end.

use anyhow::Context;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use varpulis_runtime::{evt, Engine, EngineOptions, DEFAULT_STEP_BUDGET};

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
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let file_name = args.file.display().to_string();
    let opts = EngineOptions {
        step_budget: args.step_budget,
        file_name,
        ..EngineOptions::default()
    };
    let mut engine = match Engine::compile(&source, &opts) {
        Ok(e) => e,
        Err(e) => {
            eprint!("{}", e.rendered);
            return Ok(ExitCode::from(1));
        }
    };
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
    let events = match evt::parse_evt(&text) {
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
    for event in &events {
        out.clear();
        engine.process(event, &mut out)?;
        write_outputs(&mut w, &out)?;
        for err in engine.take_errors() {
            eprintln!("warning: runtime error: {err}");
        }
    }
    out.clear();
    engine.finish(&mut out);
    write_outputs(&mut w, &out)?;
    w.flush()?;
    if args.stats {
        let secs = started.elapsed().as_secs_f64();
        let s = engine.stats();
        let rate = if secs > 0.0 {
            s.events_in as f64 / secs
        } else {
            0.0
        };
        eprintln!(
            "events in: {}, outputs: {}, errors: {} (budgets: {}), divisions by zero: {}, {:.3}s, {:.0} events/s",
            s.events_in, s.events_out, s.errors, s.budget_exceeded, s.division_by_zero, secs, rate
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn write_outputs(w: &mut impl Write, out: &[varpulis_runtime::OutputEvent]) -> anyhow::Result<()> {
    for o in out.iter().filter(|o| o.is_output) {
        serde_json::to_writer(&mut *w, &o.to_json())?;
        w.write_all(b"\n")?;
    }
    Ok(())
}
